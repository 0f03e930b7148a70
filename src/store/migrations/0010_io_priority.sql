-- pf MDM schema, version 10: a storage pool's I/O priority policies for its copies (PowerFlex
-- rebuildIoPriorityPolicy / rebalanceIoPriorityPolicy; semantics in src/sds/copy_throttle.ts).
-- Rebuild (and resync) copies: rebuild_io_policy with rebuild_io_concurrency copy IOs per device
-- and the existing rebuild_rate_limit_kbps as the bandwidth per device; moves (drain, rebalance):
-- rebalance_io_policy, rebalance_io_concurrency, rebalance_bw_limit_kbps. Defaults are PowerFlex's:
-- rebuild limitNumOfConcurrentIos with 1 IO, rebalance favorAppIos with 1 IO and 10240 KB/s. A pool
-- whose rebuild rate limit was 0 (pf's "unthrottled") becomes policy unlimited, as it behaved.
-- Invariants kept by the MDM: the policies are one of the four names, concurrency 1..20, a
-- dynamicBwThrottling policy has a bandwidth limit above 0.

ALTER TABLE storage_pool ADD COLUMN rebuild_io_policy TEXT NOT NULL DEFAULT 'limitNumOfConcurrentIos';
ALTER TABLE storage_pool ADD COLUMN rebuild_io_concurrency INTEGER NOT NULL DEFAULT 1;
ALTER TABLE storage_pool ADD COLUMN rebalance_io_policy TEXT NOT NULL DEFAULT 'favorAppIos';
ALTER TABLE storage_pool ADD COLUMN rebalance_io_concurrency INTEGER NOT NULL DEFAULT 1;
ALTER TABLE storage_pool ADD COLUMN rebalance_bw_limit_kbps INTEGER NOT NULL DEFAULT 10240;
UPDATE storage_pool SET rebuild_io_policy = 'unlimited' WHERE rebuild_rate_limit_kbps = 0;
