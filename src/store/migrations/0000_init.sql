-- pf MDM schema, version 0: the system, its topology (PD, pool, fault set, SDS, device, SDC),
-- volumes with their extent replica sets and SDC mappings, users and REST tokens.
-- Invariants: names are unique where PowerFlex makes them unique (unique indexes, so two
-- concurrent creates of one name give one object); an extent row names its primary first and
-- never one SDS twice; metadata grows with extents, never with 4 KiB blocks.

CREATE TABLE system (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT,
  id_salt TEXT NOT NULL,
  next_counter INTEGER NOT NULL,
  map_version INTEGER NOT NULL,
  data_key TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  capacity_alert_high_pct INTEGER NOT NULL DEFAULT 80,
  capacity_alert_critical_pct INTEGER NOT NULL DEFAULT 90
);

CREATE TABLE protection_domain (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'Active',
  rebuild_network_kbps INTEGER,
  rebalance_network_kbps INTEGER,
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX protection_domain_name ON protection_domain(name);

CREATE TABLE storage_pool (
  id TEXT PRIMARY KEY NOT NULL,
  pd_id TEXT NOT NULL REFERENCES protection_domain(id),
  name TEXT NOT NULL,
  media_type TEXT NOT NULL,
  extent_bytes INTEGER NOT NULL,
  granularity_bytes INTEGER NOT NULL,
  spare_percentage INTEGER NOT NULL,
  default_thin INTEGER NOT NULL,
  rebuild_rate_limit_kbps INTEGER NOT NULL,
  rebuild_enabled INTEGER NOT NULL,
  rebalance_enabled INTEGER NOT NULL,
  zero_padding_enabled INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX storage_pool_name ON storage_pool(pd_id, name);

CREATE TABLE fault_set (
  id TEXT PRIMARY KEY NOT NULL,
  pd_id TEXT NOT NULL REFERENCES protection_domain(id),
  name TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX fault_set_name ON fault_set(pd_id, name);

CREATE TABLE sds (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  pd_id TEXT NOT NULL REFERENCES protection_domain(id),
  fault_set_id TEXT REFERENCES fault_set(id),
  ip_list TEXT NOT NULL,
  host TEXT NOT NULL,
  data_port INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'Normal',
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX sds_name ON sds(name);
CREATE INDEX sds_pd ON sds(pd_id);

CREATE TABLE device (
  id TEXT PRIMARY KEY NOT NULL,
  sds_id TEXT NOT NULL REFERENCES sds(id),
  pool_id TEXT NOT NULL REFERENCES storage_pool(id),
  name TEXT,
  path TEXT NOT NULL,
  media_type TEXT NOT NULL,
  capacity_bytes INTEGER NOT NULL,
  used_bytes INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'Normal',
  assigned_bytes INTEGER NOT NULL DEFAULT 0,
  thick_assigned_bytes INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX device_path ON device(sds_id, path);
CREATE UNIQUE INDEX device_name ON device(sds_id, name) WHERE name IS NOT NULL;
CREATE INDEX device_pool ON device(pool_id);

CREATE TABLE sdc (
  id TEXT PRIMARY KEY NOT NULL,
  guid TEXT NOT NULL,
  name TEXT,
  host TEXT NOT NULL,
  approved INTEGER NOT NULL DEFAULT 1,
  created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX sdc_guid ON sdc(guid);
CREATE UNIQUE INDEX sdc_name ON sdc(name) WHERE name IS NOT NULL;

CREATE TABLE volume (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT,
  pool_id TEXT NOT NULL REFERENCES storage_pool(id),
  volume_type TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  extent_bytes INTEGER NOT NULL,
  vtree_id TEXT NOT NULL,
  access_mode_limit TEXT NOT NULL DEFAULT 'ReadWrite',
  creation_time_s INTEGER NOT NULL
);
CREATE UNIQUE INDEX volume_name ON volume(name) WHERE name IS NOT NULL;
-- covering index: the thick reservation of a pool is summed on every volume create
CREATE INDEX volume_pool ON volume(pool_id, volume_type, size_bytes);

CREATE TABLE volume_mapping (
  volume_id TEXT NOT NULL REFERENCES volume(id),
  sdc_id TEXT NOT NULL REFERENCES sdc(id),
  access_mode TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (volume_id, sdc_id)
) WITHOUT ROWID;
CREATE INDEX volume_mapping_sdc ON volume_mapping(sdc_id);

CREATE TABLE extent (
  volume_id TEXT NOT NULL REFERENCES volume(id),
  idx INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  primary_sds_id TEXT NOT NULL,
  primary_device_id TEXT NOT NULL,
  secondary_sds_id TEXT,
  secondary_device_id TEXT,
  PRIMARY KEY (volume_id, idx)
) WITHOUT ROWID;
CREATE INDEX extent_primary_sds ON extent(primary_sds_id);
CREATE INDEX extent_secondary_sds ON extent(secondary_sds_id);

CREATE TABLE app_user (
  name TEXT PRIMARY KEY NOT NULL,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);

CREATE TABLE token (
  hash TEXT PRIMARY KEY NOT NULL,
  user_name TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL
);
CREATE INDEX token_last_used ON token(last_used_ms);
