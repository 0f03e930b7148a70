-- pf MDM schema, version 1: failure and recovery state of each extent.
-- An extent keeps its in-sync copies in primary_* / secondary_* (secondary NULL while degraded),
-- plus at most one copy being built (target_*: mode 'full' or 'resync', started_at, and the SDS
-- whose in-sync copy it replaces when it is a move, NULL for a rebuild) and at most one stale
-- copy kept while its SDS is away (away_*: since when). Invariants kept by the MDM: no two of
-- primary/secondary/target/away name one SDS; every change of these columns bumps epoch and the
-- system's map_version in the same transaction; device.assigned_bytes counts every copy
-- (in-sync, target and away) placed on the device.

ALTER TABLE extent ADD COLUMN target_sds_id TEXT;
ALTER TABLE extent ADD COLUMN target_device_id TEXT;
ALTER TABLE extent ADD COLUMN target_mode TEXT;
ALTER TABLE extent ADD COLUMN target_started_ms INTEGER;
ALTER TABLE extent ADD COLUMN target_replaces_sds_id TEXT;
ALTER TABLE extent ADD COLUMN away_sds_id TEXT;
ALTER TABLE extent ADD COLUMN away_device_id TEXT;
ALTER TABLE extent ADD COLUMN away_since_ms INTEGER;

CREATE INDEX extent_target_sds ON extent(target_sds_id) WHERE target_sds_id IS NOT NULL;
CREATE INDEX extent_away_sds ON extent(away_sds_id) WHERE away_sds_id IS NOT NULL;
-- extents that need the planner's attention (degraded, copying, or keeping an away copy); in a
-- healthy pool this index is empty, so the planner's scan costs nothing
CREATE INDEX extent_attention ON extent(volume_id, idx)
  WHERE secondary_sds_id IS NULL OR target_sds_id IS NOT NULL OR away_sds_id IS NOT NULL;
