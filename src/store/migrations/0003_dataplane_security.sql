-- pf MDM schema, version 2: data-plane security (docs/design.md "Data-plane security").
-- dataplane_key: the cluster master keys, one per key id (kid); the newest is current, the one
-- before it is still accepted (rotation without downtime), older ones are deleted. Every
-- per-node, member and grant key is derived from them (src/proto/dataplane_keys.ts).
-- mdm_secret: other MDM-only secrets by name (the key of the nodes' cluster-API tokens).
-- grant_floor: a mapping grant of (volume, SDC) issued at a map version below floor_version is
-- revoked (unmap, switch to ReadOnly); rows older than the longest grant lifetime are pruned.
-- system.restricted_sdc_mode: PowerFlex restrictedSdcMode, 'None' or 'Guid'.
-- system.data_key (version 0) is no longer used: it was sent in clear on the wire.

CREATE TABLE dataplane_key (
  kid INTEGER PRIMARY KEY NOT NULL,
  key_hex TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);

CREATE TABLE mdm_secret (
  name TEXT PRIMARY KEY NOT NULL,
  value_hex TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);

CREATE TABLE grant_floor (
  volume_id TEXT NOT NULL,
  sdc_id TEXT NOT NULL,
  floor_version INTEGER NOT NULL,
  set_at_ms INTEGER NOT NULL,
  PRIMARY KEY (volume_id, sdc_id)
);

ALTER TABLE system ADD COLUMN restricted_sdc_mode TEXT NOT NULL DEFAULT 'None';
