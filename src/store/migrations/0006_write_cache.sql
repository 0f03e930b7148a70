-- pf MDM schema, version 6: a storage pool's write cache mode. writeBack (the default, what pf
-- always did): a write is acknowledged once both copies hold it through the kernel, FLUSH/FUA make
-- it durable; writeThrough: every write is durable on both copies before it is acknowledged.
-- Invariant kept by the MDM: write_cache is 'writeBack' or 'writeThrough'.

ALTER TABLE storage_pool ADD COLUMN write_cache TEXT NOT NULL DEFAULT 'writeBack';
