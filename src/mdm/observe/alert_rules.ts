// The MDM's alert rules, pure: from a snapshot of its own state (connections, devices, pool
// recovery and capacity figures, thresholds, its TLS certificate) to the set of alerts that
// should be active now, each keyed by type and affected object. alerts.ts diffs that set
// against the stored one (raise, keep, clear). PowerFlex alert type names where PowerFlex has
// one (delfin's alert_consts), pf's own otherwise (STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT,
// CERTIFICATE_ABOUT_TO_EXPIRE). Invariants: at most one alert per key; a pool over its
// critical capacity threshold has the critical alert only (not the high one as well).

export const ALERT_SEVERITIES = ["ALERT_LOW", "ALERT_MEDIUM", "ALERT_HIGH", "ALERT_CRITICAL"] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

/** Every alert type the MDM raises, with its usual severity (the certificate one escalates). */
export const ALERT_TYPES = {
  SDS_DISCONNECTED: "ALERT_HIGH",
  SDC_DISCONNECTED: "ALERT_MEDIUM",
  DEVICE_FAILED: "ALERT_HIGH",
  STORAGE_POOL_HAS_DEGRADED_CAPACITY: "ALERT_MEDIUM",
  STORAGE_POOL_HAS_FAILED_CAPACITY: "ALERT_CRITICAL",
  CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD: "ALERT_MEDIUM",
  CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD: "ALERT_CRITICAL",
  FWD_REBUILD_STUCK: "ALERT_HIGH",
  BKWD_REBUILD_STUCK: "ALERT_HIGH",
  REBALANCE_STUCK: "ALERT_MEDIUM",
  STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT: "ALERT_MEDIUM",
  CERTIFICATE_ABOUT_TO_EXPIRE: "ALERT_MEDIUM",
} as const satisfies Record<string, AlertSeverity>;
export type AlertType = keyof typeof ALERT_TYPES;
export const ALERT_TYPE_NAMES = Object.keys(ALERT_TYPES) as AlertType[];

export type AffectedType = "System" | "StoragePool" | "Sds" | "Sdc" | "Device";

export interface AlertCondition {
  /** `${alertType}/${objectId}`: one active alert per key */
  key: string;
  alertType: AlertType;
  severity: AlertSeverity;
  objectType: AffectedType;
  objectId: string;
  /** facts for the operator (PowerFlex alertValues), strings */
  values: Record<string, string>;
}

export interface PoolAlertFacts {
  id: string;
  name: string;
  degradedExtents: number;
  unavailableExtents: number;
  degradedKb: number;
  unavailableKb: number;
  stalled: boolean;
  rebuildState: "Idle" | "WaitingForReturn" | "Rebuilding" | "Draining" | "Rebalancing";
  activeRebuilds: number;
  activeResyncs: number;
  noProgressSeconds: number;
  /** used raw / usable raw (after the spare reserve), 0..n */
  utilizationRatio: number;
  highThresholdPct: number;
  criticalThresholdPct: number;
  /** (thin provisioned x copies + thick reserved raw) / usable raw */
  overcommitRatio: number;
  overcommitLimit: number;
}

export interface AlertInput {
  nowMs: number;
  sds: { id: string; name: string; connected: boolean }[];
  /** mappedVolumes: the SDC's mappings, counted for a disconnected SDC only (0 for a connected one) */
  sdc: { id: string; name: string | null; host: string; connected: boolean; mappedVolumes: number }[];
  /** error: why a failed one failed, as its SDS said (null or absent: not said) */
  devices: { id: string; name: string | null; path: string; sdsId: string; failed: boolean; error?: string | null }[];
  pools: PoolAlertFacts[];
  systemId: string;
  /** the MDM's TLS certificate's notAfter, or null when it serves plain HTTP */
  certValidToMs: number | null;
  certWarnDays: number;
}

const DAY_MS = 86_400_000;

function cond(alertType: AlertType, objectType: AffectedType, objectId: string, values: Record<string, string>, severity?: AlertSeverity): AlertCondition {
  return { key: `${alertType}/${objectId}`, alertType, severity: severity ?? ALERT_TYPES[alertType], objectType, objectId, values };
}

const pct = (ratio: number) => (ratio * 100).toFixed(1);

function poolAlerts(p: PoolAlertFacts): AlertCondition[] {
  const out: AlertCondition[] = [];
  const base = { storagePoolName: p.name };
  if (p.unavailableExtents > 0) {
    out.push(cond("STORAGE_POOL_HAS_FAILED_CAPACITY", "StoragePool", p.id, { ...base, unavailableExtents: String(p.unavailableExtents), failedCapacityInKb: String(p.unavailableKb) }));
  }
  if (p.degradedExtents > p.unavailableExtents) {
    out.push(
      cond("STORAGE_POOL_HAS_DEGRADED_CAPACITY", "StoragePool", p.id, {
        ...base,
        degradedExtents: String(p.degradedExtents - p.unavailableExtents),
        degradedCapacityInKb: String(p.degradedKb - p.unavailableKb),
      }),
    );
  }
  const used = { ...base, utilizationPercent: pct(p.utilizationRatio) };
  if (p.utilizationRatio * 100 >= p.criticalThresholdPct) {
    out.push(cond("CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD", "StoragePool", p.id, { ...used, thresholdPercent: String(p.criticalThresholdPct) }));
  } else if (p.utilizationRatio * 100 >= p.highThresholdPct) {
    out.push(cond("CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD", "StoragePool", p.id, { ...used, thresholdPercent: String(p.highThresholdPct) }));
  }
  if (p.stalled) {
    const type: AlertType =
      p.rebuildState === "Rebalancing" || p.rebuildState === "Draining"
        ? "REBALANCE_STUCK"
        : p.activeResyncs > 0 && p.activeRebuilds === 0
          ? "BKWD_REBUILD_STUCK"
          : "FWD_REBUILD_STUCK";
    out.push(cond(type, "StoragePool", p.id, { ...base, rebuildState: p.rebuildState, noProgressSeconds: String(p.noProgressSeconds) }));
  }
  if (p.overcommitRatio > p.overcommitLimit) {
    out.push(
      cond("STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT", "StoragePool", p.id, {
        ...base,
        overcommitRatio: p.overcommitRatio.toFixed(2),
        limit: String(p.overcommitLimit),
      }),
    );
  }
  return out;
}

function certAlert(input: AlertInput): AlertCondition[] {
  if (input.certValidToMs === null) return [];
  const leftMs = input.certValidToMs - input.nowMs;
  if (leftMs >= input.certWarnDays * DAY_MS) return [];
  const days = Math.floor(leftMs / DAY_MS);
  const severity: AlertSeverity = leftMs <= 0 ? "ALERT_CRITICAL" : leftMs < 7 * DAY_MS ? "ALERT_HIGH" : "ALERT_MEDIUM";
  return [cond("CERTIFICATE_ABOUT_TO_EXPIRE", "System", input.systemId, { validTo: new Date(input.certValidToMs).toISOString(), daysLeft: String(days) }, severity)];
}

/** The alerts that should be active for this state. */
export function evaluateAlerts(input: AlertInput): AlertCondition[] {
  const out: AlertCondition[] = [];
  for (const s of input.sds) if (!s.connected) out.push(cond("SDS_DISCONNECTED", "Sds", s.id, { sdsName: s.name }));
  for (const s of input.sdc) {
    if (!s.connected && s.mappedVolumes > 0) {
      out.push(cond("SDC_DISCONNECTED", "Sdc", s.id, { sdcName: s.name ?? "", sdcIp: s.host, mappedVolumes: String(s.mappedVolumes) }));
    }
  }
  for (const d of input.devices) {
    if (d.failed) out.push(cond("DEVICE_FAILED", "Device", d.id, { deviceName: d.name ?? "", devicePath: d.path, sdsId: d.sdsId, ...(d.error ? { errorMessage: d.error } : {}) }));
  }
  for (const p of input.pools) out.push(...poolAlerts(p));
  out.push(...certAlert(input));
  return out;
}
