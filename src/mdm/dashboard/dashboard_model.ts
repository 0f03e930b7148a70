// The dashboard's own data contract: the one snapshot GET /dashboard/api/summary answers (every
// page polls it each second), the PowerFlex-style statistics endpoints it reads besides
// (/api/pf/history, /api/pf/live, Alert instances), and the few constants both halves share.
// Plain types and constants only (no imports): the server (Bun) and the browser bundle both
// compile this file.

/** Every page refreshes this often without a reload. */
export const POLL_INTERVAL_MS = 1000;
/** Rows a table shows before it pages. */
export const TABLE_PAGE_ROWS = 25;
/** The history window the overview charts ask for by default, and the largest the API gives. */
export const HISTORY_DEFAULT_SECONDS = 300;
export const HISTORY_MAX_SECONDS = 600;
/** sessionStorage key of the login (user and token); nothing else is stored in the browser. */
export const SESSION_STORAGE_KEY = "pf.dashboard.session";
/** Prefix of the dashboard's pages, assets and data route. */
export const DASHBOARD_PREFIX = "/dashboard";

export type HealthLevel = "OK" | "WARN" | "ERR";

/** One raised health check: an active alert of the MDM, in the words the console shows. */
export interface HealthCheck {
  level: Exclude<HealthLevel, "OK">;
  /** the PowerFlex alert type, e.g. SDS_DISCONNECTED */
  name: string;
  message: string;
  alertId: string;
  severity: AlertSeverity;
  objectType: string;
  objectId: string;
  sinceMs: number;
}

export interface DashUser {
  name: string;
  role: string;
  /** the role may create, resize, map, unmap and remove volumes */
  canModify: boolean;
}

export interface DashSystem {
  id: string;
  name: string | null;
  versionName: string;
  apiVersion: string;
  mdmClusterMode: string;
  mdmClusterState: string;
  capacityAlertHighPct: number;
  capacityAlertCriticalPct: number;
  heartbeatTimeoutMs: number;
}

export interface DashProtectionDomain {
  id: string;
  name: string;
  state: string;
}

export type PoolState = "Normal" | "Degraded" | "Failed";
export type RebuildActivity = "Idle" | "WaitingForReturn" | "Rebuilding" | "Draining" | "Rebalancing";

export interface DashRebuild {
  poolState: PoolState;
  activity: RebuildActivity;
  stalled: boolean;
  degradedExtents: number;
  degradedBytes: number;
  unavailableExtents: number;
  waitingExtents: number;
  pendingRebuildExtents: number;
  pendingRebuildBytes: number;
  activeRebuildExtents: number;
  activeResyncExtents: number;
  activeMoveExtents: number;
  pendingRebalanceBytes: number;
  copiedBytes: number;
  remainingBytes: number;
  progressPercent: number;
  rateBytesPerSec: number;
  /** null while no rate is known yet ("calculating") */
  etaSeconds: number | null;
  noProgressSeconds: number;
}

/** A pool's capacity as the capacity alerts see it (raw = both copies on devices). */
export interface DashPool {
  id: string;
  name: string;
  pdId: string;
  mediaType: string;
  sparePercentage: number;
  extentBytes: number;
  /** the rebuild policy's bandwidth per device in force (0 under policy unlimited or when none is set) */
  rebuildRateLimitKbps: number;
  /** the pool's rebuild I/O priority policy and its copy IOs per device (mdm/topology/io_priority.ts) */
  rebuildIoPolicy: string;
  rebuildIoConcurrency: number;
  /** raw bytes of the pool's Normal devices */
  rawBytes: number;
  /** raw bytes of Failed devices (gone until rebuilt) */
  failedBytes: number;
  spareBytes: number;
  /** raw minus the spare reserve */
  usableRawBytes: number;
  /** thick reservations plus thin data written (both copies) */
  usedRawBytes: number;
  /** what the devices report as written */
  inUseRawBytes: number;
  /** used / usable, the share the capacity alerts compare with the thresholds */
  utilizationPct: number;
  highThresholdPct: number;
  criticalThresholdPct: number;
  /** net bytes (one copy) a new volume may still take */
  availableForVolumeBytes: number;
  /** net bytes of every volume's size */
  provisionedBytes: number;
  volumes: number;
  rebuild: DashRebuild;
}

export interface DashFaultSet {
  id: string;
  name: string;
  pdId: string;
}

export interface DashSds {
  id: string;
  name: string;
  pdId: string;
  faultSetId: string | null;
  ips: string[];
  port: number;
  /** Normal, or Removing while it drains */
  state: string;
  connection: "Connected" | "Disconnected";
  lastHeartbeatMs: number | null;
  extentCopies: number;
  capacityBytes: number;
  usedBytes: number;
}

export interface DashDevice {
  id: string;
  name: string | null;
  sdsId: string;
  poolId: string;
  path: string;
  mediaType: string;
  capacityBytes: number;
  usedBytes: number;
  /** Normal or Failed */
  state: string;
}

export interface DashMapping {
  volumeId: string;
  sdcId: string;
  accessMode: string;
}

export interface DashSdc {
  id: string;
  name: string | null;
  guid: string;
  ip: string;
  approved: boolean;
  connection: "Connected" | "Disconnected";
  lastHeartbeatMs: number | null;
}

export interface DashVolume {
  id: string;
  name: string | null;
  poolId: string;
  sizeBytes: number;
  volumeType: string;
  extentBytes: number;
  creationTimeS: number;
}

export interface DashSummary {
  tMs: number;
  user: DashUser;
  system: DashSystem;
  health: { level: HealthLevel; checks: HealthCheck[] };
  protectionDomains: DashProtectionDomain[];
  storagePools: DashPool[];
  faultSets: DashFaultSet[];
  sds: DashSds[];
  devices: DashDevice[];
  sdcs: DashSdc[];
  volumes: DashVolume[];
  mappings: DashMapping[];
}

// ---- the observe contract (/api/pf/*, Alert instances), read by the browser ----

export interface IoRates {
  readIops: number;
  writeIops: number;
  readBps: number;
  writeBps: number;
  readLatencyUs: number;
  writeLatencyUs: number;
}

export interface HistorySample extends IoRates {
  t: number;
  rebuildBps: number;
  rebalanceBps: number;
}

export interface HistoryReply {
  intervalMs: number;
  samples: HistorySample[];
}

export interface LiveReply {
  t: number;
  volumes: Record<string, IoRates>;
  sds: Record<string, IoRates>;
  sdc: Record<string, IoRates>;
}

export type AlertSeverity = "ALERT_LOW" | "ALERT_MEDIUM" | "ALERT_HIGH" | "ALERT_CRITICAL";

export interface PfAlert {
  id: string;
  name?: string;
  uuid?: string;
  alertType: string;
  severity: AlertSeverity;
  affectedObject?: { type?: string; id?: string; objectId?: string };
  alertValues?: Record<string, unknown>;
  startTime?: string | number;
  lastObserved?: string | number;
  clearedTime?: string | number | null;
}
