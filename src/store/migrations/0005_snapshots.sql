-- pf MDM schema, version 2: snapshots, clones and consistency groups, and per-mapping QoS.
-- A V-Tree (vtree) is a base volume and every snapshot descending from it. Its extents belong to
-- the V-Tree, not to a volume: extent.volume_id holds the V-Tree's OWNER id, the id of the base
-- volume that created it, kept after that volume is removed. Every volume of the V-Tree (its
-- members) writes exactly one open layer; a layer no member writes is frozen and never written
-- again; layers form a tree by parent_layer_id. The owner's first layer has the owner's id.
-- layer_merge lists layers folded into their only child (metadata only) that some SDS holding
-- the V-Tree may not have applied yet (rows go once every holder applied a map version >= theirs).
-- Invariants kept by the MDM: graph_version grows with every change of a V-Tree's layers or
-- open layers (and map_version with it); at most Limits.maxSnapshotsPerVTree snapshots per
-- V-Tree; after every change each frozen layer has at least two children.

CREATE TABLE vtree (
  owner_id TEXT PRIMARY KEY NOT NULL,
  id TEXT NOT NULL,
  pool_id TEXT NOT NULL REFERENCES storage_pool(id),
  extent_bytes INTEGER NOT NULL,
  volume_type TEXT NOT NULL,
  name TEXT,
  graph_version INTEGER NOT NULL DEFAULT 1,
  created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX vtree_rest_id ON vtree(id);
CREATE INDEX vtree_pool ON vtree(pool_id);

CREATE TABLE vtree_layer (
  layer_id TEXT PRIMARY KEY NOT NULL,
  owner_id TEXT NOT NULL REFERENCES vtree(owner_id),
  parent_layer_id TEXT,
  created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX vtree_layer_owner ON vtree_layer(owner_id);

CREATE TABLE layer_merge (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_id TEXT NOT NULL,
  from_layer_id TEXT NOT NULL,
  into_layer_id TEXT NOT NULL,
  map_version INTEGER NOT NULL
);
CREATE INDEX layer_merge_owner ON layer_merge(owner_id, seq);

ALTER TABLE volume ADD COLUMN owner_id TEXT NOT NULL DEFAULT '';
ALTER TABLE volume ADD COLUMN open_layer_id TEXT NOT NULL DEFAULT '';
ALTER TABLE volume ADD COLUMN ancestor_volume_id TEXT;
ALTER TABLE volume ADD COLUMN consistency_group_id TEXT;
UPDATE volume SET owner_id = id, open_layer_id = id;
INSERT INTO vtree (owner_id, id, pool_id, extent_bytes, volume_type, name, graph_version, created_at_ms)
  SELECT id, vtree_id, pool_id, extent_bytes, volume_type, name, 1, creation_time_s * 1000 FROM volume;
INSERT INTO vtree_layer (layer_id, owner_id, parent_layer_id, created_at_ms)
  SELECT id, id, NULL, creation_time_s * 1000 FROM volume;
CREATE INDEX volume_owner ON volume(owner_id);
CREATE INDEX volume_ancestor ON volume(ancestor_volume_id) WHERE ancestor_volume_id IS NOT NULL;
CREATE INDEX volume_group ON volume(consistency_group_id) WHERE consistency_group_id IS NOT NULL;

ALTER TABLE volume_mapping ADD COLUMN limit_iops INTEGER NOT NULL DEFAULT 0;
ALTER TABLE volume_mapping ADD COLUMN limit_bw_kbps INTEGER NOT NULL DEFAULT 0;
