// drizzle table definitions of the MDM's sqlite state. They mirror migrations/NNNN_*.sql exactly
// (the SQL files are the schema's source of truth on disk; these give the queries their types).
// Booleans are stored as 0/1 integers, sizes in bytes, times in ms since the epoch unless named _s.

import { integer, sqliteTable, text, primaryKey } from "drizzle-orm/sqlite-core";

/** a pool's rebuild/rebalance I/O priority policies (proto/cluster_api.ts IoPriorityPolicy) */
const IO_PRIORITY_POLICIES = ["unlimited", "limitNumOfConcurrentIos", "favorAppIos", "dynamicBwThrottling"] as const;

export const systemTable = sqliteTable("system", {
  id: text("id").primaryKey(),
  name: text("name"),
  idSalt: text("id_salt").notNull(),
  nextCounter: integer("next_counter").notNull(),
  mapVersion: integer("map_version").notNull(),
  dataKey: text("data_key").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
  capacityAlertHighPct: integer("capacity_alert_high_pct").notNull(),
  capacityAlertCriticalPct: integer("capacity_alert_critical_pct").notNull(),
  // 0002_dataplane_security: PowerFlex restrictedSdcMode ("None" | "Guid")
  restrictedSdcMode: text("restricted_sdc_mode").notNull(),
});

export const protectionDomainTable = sqliteTable("protection_domain", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  state: text("state").notNull(),
  rebuildNetworkKbps: integer("rebuild_network_kbps"),
  rebalanceNetworkKbps: integer("rebalance_network_kbps"),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const storagePoolTable = sqliteTable("storage_pool", {
  id: text("id").primaryKey(),
  pdId: text("pd_id").notNull(),
  name: text("name").notNull(),
  mediaType: text("media_type").notNull(),
  extentBytes: integer("extent_bytes").notNull(),
  granularityBytes: integer("granularity_bytes").notNull(),
  sparePercentage: integer("spare_percentage").notNull(),
  defaultThin: integer("default_thin", { mode: "boolean" }).notNull(),
  rebuildRateLimitKbps: integer("rebuild_rate_limit_kbps").notNull(),
  rebuildEnabled: integer("rebuild_enabled", { mode: "boolean" }).notNull(),
  rebalanceEnabled: integer("rebalance_enabled", { mode: "boolean" }).notNull(),
  zeroPaddingEnabled: integer("zero_padding_enabled", { mode: "boolean" }).notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
  // 0002_alerts
  capacityAlertHighPct: integer("capacity_alert_high_pct").notNull().default(80),
  capacityAlertCriticalPct: integer("capacity_alert_critical_pct").notNull().default(90),
  // 0004_write_cache
  writeCache: text("write_cache", { enum: ["writeBack", "writeThrough"] }).notNull().default("writeBack"),
  // 0010_io_priority (the rebuild policy's bandwidth is rebuildRateLimitKbps)
  rebuildIoPolicy: text("rebuild_io_policy", { enum: IO_PRIORITY_POLICIES }).notNull().default("limitNumOfConcurrentIos"),
  rebuildIoConcurrency: integer("rebuild_io_concurrency").notNull().default(1),
  rebalanceIoPolicy: text("rebalance_io_policy", { enum: IO_PRIORITY_POLICIES }).notNull().default("favorAppIos"),
  rebalanceIoConcurrency: integer("rebalance_io_concurrency").notNull().default(1),
  rebalanceBwLimitKbps: integer("rebalance_bw_limit_kbps").notNull().default(10240),
});

export const faultSetTable = sqliteTable("fault_set", {
  id: text("id").primaryKey(),
  pdId: text("pd_id").notNull(),
  name: text("name").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const sdsTable = sqliteTable("sds", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  pdId: text("pd_id").notNull(),
  faultSetId: text("fault_set_id"),
  /** JSON: [{ip, role}] */
  ipList: text("ip_list").notNull(),
  host: text("host").notNull(),
  dataPort: integer("data_port").notNull(),
  state: text("state").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const deviceTable = sqliteTable("device", {
  id: text("id").primaryKey(),
  sdsId: text("sds_id").notNull(),
  poolId: text("pool_id").notNull(),
  name: text("name"),
  path: text("path").notNull(),
  mediaType: text("media_type").notNull(),
  capacityBytes: integer("capacity_bytes").notNull(),
  usedBytes: integer("used_bytes").notNull(),
  state: text("state").notNull(),
  /** bytes of extent copies placed on this device (thin and thick) */
  assignedBytes: integer("assigned_bytes").notNull(),
  /** bytes of thick extent copies placed on this device */
  thickAssignedBytes: integer("thick_assigned_bytes").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const sdcTable = sqliteTable("sdc", {
  id: text("id").primaryKey(),
  guid: text("guid").notNull(),
  name: text("name"),
  host: text("host").notNull(),
  approved: integer("approved", { mode: "boolean" }).notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const volumeTable = sqliteTable("volume", {
  id: text("id").primaryKey(),
  name: text("name"),
  poolId: text("pool_id").notNull(),
  volumeType: text("volume_type").notNull(),
  sizeBytes: integer("size_bytes").notNull(),
  extentBytes: integer("extent_bytes").notNull(),
  vtreeId: text("vtree_id").notNull(),
  accessModeLimit: text("access_mode_limit").notNull(),
  creationTimeS: integer("creation_time_s").notNull(),
  // 0002_snapshots: the V-Tree owner (extent key), the layer this volume writes, its ancestor
  // (the volume it is a snapshot of) and the consistency group (snapshotVolumes call) it came from
  ownerId: text("owner_id").notNull(),
  openLayerId: text("open_layer_id").notNull(),
  ancestorVolumeId: text("ancestor_volume_id"),
  consistencyGroupId: text("consistency_group_id"),
});

/** A V-Tree: its extents are keyed by owner_id; `id` is the VTree id of the REST API. */
export const vtreeTable = sqliteTable("vtree", {
  ownerId: text("owner_id").primaryKey(),
  id: text("id").notNull(),
  poolId: text("pool_id").notNull(),
  extentBytes: integer("extent_bytes").notNull(),
  /** ThickProvisioned | ThinProvisioned: how the V-Tree's extents are reserved and accounted */
  volumeType: text("volume_type").notNull(),
  name: text("name"),
  graphVersion: integer("graph_version").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const vtreeLayerTable = sqliteTable("vtree_layer", {
  layerId: text("layer_id").primaryKey(),
  ownerId: text("owner_id").notNull(),
  parentLayerId: text("parent_layer_id"),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const layerMergeTable = sqliteTable("layer_merge", {
  seq: integer("seq").primaryKey({ autoIncrement: true }),
  ownerId: text("owner_id").notNull(),
  fromLayerId: text("from_layer_id").notNull(),
  intoLayerId: text("into_layer_id").notNull(),
  mapVersion: integer("map_version").notNull(),
});

export const volumeMappingTable = sqliteTable(
  "volume_mapping",
  {
    volumeId: text("volume_id").notNull(),
    sdcId: text("sdc_id").notNull(),
    accessMode: text("access_mode").notNull(),
    createdAtMs: integer("created_at_ms").notNull(),
    // 0002_snapshots: per-mapping QoS (setMappedSdcLimits), 0 = unlimited
    limitIops: integer("limit_iops").notNull().default(0),
    limitBwKbps: integer("limit_bw_kbps").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.sdcId] })],
);

export const extentTable = sqliteTable(
  "extent",
  {
    volumeId: text("volume_id").notNull(),
    idx: integer("idx").notNull(),
    epoch: integer("epoch").notNull(),
    primarySdsId: text("primary_sds_id").notNull(),
    primaryDeviceId: text("primary_device_id").notNull(),
    secondarySdsId: text("secondary_sds_id"),
    secondaryDeviceId: text("secondary_device_id"),
    // 0001_recovery: the copy being built and the stale copy kept while its SDS is away
    targetSdsId: text("target_sds_id"),
    targetDeviceId: text("target_device_id"),
    /** "full" | "resync" */
    targetMode: text("target_mode"),
    targetStartedMs: integer("target_started_ms"),
    /** a move: the in-sync SDS whose copy the target replaces on completion (null: a rebuild) */
    targetReplacesSdsId: text("target_replaces_sds_id"),
    awaySdsId: text("away_sds_id"),
    awayDeviceId: text("away_device_id"),
    awaySinceMs: integer("away_since_ms"),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.idx] })],
);

export const userTable = sqliteTable("app_user", {
  name: text("name").primaryKey(),
  passwordHash: text("password_hash").notNull(),
  role: text("role").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
  // 0007_users_audit
  id: text("id"),
  passwordChangeRequired: integer("password_change_required").notNull().default(0),
});

export const tokenTable = sqliteTable("token", {
  hash: text("hash").primaryKey(),
  userName: text("user_name").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
  lastUsedMs: integer("last_used_ms").notNull(),
});

// 0008_login_lockout: a user locked out by failed logins, until locked_until_ms (wall clock)
export const loginLockoutTable = sqliteTable("login_lockout", {
  userName: text("user_name").primaryKey(),
  lockedAtMs: integer("locked_at_ms").notNull(),
  lockedUntilMs: integer("locked_until_ms").notNull(),
});

// 0009_nbd_client_cert: NBD client certificates issued by the cluster NBD CA, and their revocation
export const nbdClientCertTable = sqliteTable("nbd_client_cert", {
  serial: text("serial").primaryKey(),
  name: text("name").notNull(),
  fingerprint256: text("fingerprint256").notNull(),
  caFingerprint256: text("ca_fingerprint256").notNull(),
  notBeforeMs: integer("not_before_ms").notNull(),
  notAfterMs: integer("not_after_ms").notNull(),
  issuedBy: text("issued_by").notNull(),
  issuedAtMs: integer("issued_at_ms").notNull(),
  revokedAtMs: integer("revoked_at_ms"),
  revokedBy: text("revoked_by"),
  revokeReason: text("revoke_reason"),
});

// 0007_users_audit: the hash-chained audit log and its head (first kept record's anchor, last hash)
export const auditTable = sqliteTable("audit_log", {
  seq: integer("seq").primaryKey(),
  tsMs: integer("ts_ms").notNull(),
  kind: text("kind").notNull(),
  actor: text("actor").notNull(),
  role: text("role").notNull(),
  src: text("src").notNull(),
  method: text("method").notNull(),
  path: text("path").notNull(),
  objectType: text("object_type").notNull(),
  objectId: text("object_id").notNull(),
  action: text("action").notNull(),
  params: text("params").notNull(),
  result: text("result").notNull(),
  status: integer("status").notNull(),
  detail: text("detail").notNull(),
  durationMs: integer("duration_ms").notNull(),
  prevHash: text("prev_hash").notNull(),
  hash: text("hash").notNull(),
});

export const auditHeadTable = sqliteTable("audit_head", {
  id: integer("id").primaryKey(),
  firstSeq: integer("first_seq").notNull(),
  firstPrevHash: text("first_prev_hash").notNull(),
  lastSeq: integer("last_seq").notNull(),
  lastHash: text("last_hash").notNull(),
  pruned: integer("pruned").notNull(),
});

// 0002_alerts: alerts raised and cleared by the MDM, with history
export const alertTable = sqliteTable("alert", {
  id: text("id").primaryKey(),
  alertKey: text("alert_key").notNull(),
  alertType: text("alert_type").notNull(),
  severity: text("severity").notNull(),
  objectType: text("object_type").notNull(),
  objectId: text("object_id").notNull(),
  /** JSON object of strings */
  alertValues: text("alert_values").notNull(),
  startMs: integer("start_ms").notNull(),
  lastObservedMs: integer("last_observed_ms").notNull(),
  /** null while active */
  clearedMs: integer("cleared_ms"),
});

// 0003_dataplane_security
export const dataPlaneKeyTable = sqliteTable("dataplane_key", {
  kid: integer("kid").primaryKey(),
  keyHex: text("key_hex").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

export const mdmSecretTable = sqliteTable("mdm_secret", {
  name: text("name").primaryKey(),
  valueHex: text("value_hex").notNull(),
  createdAtMs: integer("created_at_ms").notNull(),
});

/** 0011_copy_log_handoff: a cleanly stopped MDM's copy log summary (mdm/cluster/copy_log.ts) */
export const copyLogHandoffTable = sqliteTable("copy_log_handoff", {
  one: integer("one").primaryKey(),
  logId: text("log_id").notNull(),
  endVersion: integer("end_version").notNull(),
  floor: integer("floor").notNull(),
  barrier: integer("barrier").notNull(),
  graphMax: integer("graph_max").notNull(),
  perSds: text("per_sds").notNull(),
  savedAtMs: integer("saved_at_ms").notNull(),
});

export const grantFloorTable = sqliteTable(
  "grant_floor",
  {
    volumeId: text("volume_id").notNull(),
    sdcId: text("sdc_id").notNull(),
    floorVersion: integer("floor_version").notNull(),
    setAtMs: integer("set_at_ms").notNull(),
  },
  (t) => [primaryKey({ columns: [t.volumeId, t.sdcId] })],
);

export const mdmSchema = {
  systemTable,
  protectionDomainTable,
  storagePoolTable,
  faultSetTable,
  sdsTable,
  deviceTable,
  sdcTable,
  volumeTable,
  volumeMappingTable,
  extentTable,
  vtreeTable,
  vtreeLayerTable,
  layerMergeTable,
  userTable,
  tokenTable,
  auditTable,
  auditHeadTable,
  alertTable,
  dataPlaneKeyTable,
  mdmSecretTable,
  grantFloorTable,
};

export type SystemRow = typeof systemTable.$inferSelect;
export type ProtectionDomainRow = typeof protectionDomainTable.$inferSelect;
export type StoragePoolRow = typeof storagePoolTable.$inferSelect;
export type FaultSetRow = typeof faultSetTable.$inferSelect;
export type SdsRow = typeof sdsTable.$inferSelect;
export type DeviceRow = typeof deviceTable.$inferSelect;
export type SdcRow = typeof sdcTable.$inferSelect;
export type VolumeRow = typeof volumeTable.$inferSelect;
export type VolumeMappingRow = typeof volumeMappingTable.$inferSelect;
export type ExtentRow = typeof extentTable.$inferSelect;
export type VTreeRow = typeof vtreeTable.$inferSelect;
export type VTreeLayerRow = typeof vtreeLayerTable.$inferSelect;
export type UserRow = typeof userTable.$inferSelect;
export type TokenRow = typeof tokenTable.$inferSelect;
export type AuditRow = typeof auditTable.$inferSelect;
export type AlertRow = typeof alertTable.$inferSelect;
