// Health of the cluster as the console shows it (OK / WARN / ERR plus one line per raised check,
// the `ceph health detail` pattern). The checks ARE the MDM's active alerts (observe room), so
// the console, scli, /api/types/Alert/instances and pf_health_status agree: HIGH and CRITICAL
// alerts are errors, LOW and MEDIUM warnings. Pure: alerts and a name lookup in, checks out.
// Invariants: the level is the worst level of the checks; no check means OK; errors come first.

import type { AlertSeverity, HealthCheck, HealthLevel } from "./dashboard_model.ts";

export interface AlertFacts {
  id: string;
  alertType: string;
  severity: AlertSeverity;
  objectType: string;
  objectId: string;
  values: Record<string, string>;
  startMs: number;
}

/** Display name of an object by PowerFlex type and id (the id itself when unknown). */
export type NameOf = (objectType: string, objectId: string) => string;

export function levelOfSeverity(s: AlertSeverity): Exclude<HealthLevel, "OK"> {
  return s === "ALERT_HIGH" || s === "ALERT_CRITICAL" ? "ERR" : "WARN";
}

/** The operator's sentence for one alert, from its type, object and PowerFlex alertValues. */
export function alertMessage(a: AlertFacts, nameOf: NameOf): string {
  const name = nameOf(a.objectType, a.objectId);
  const v = (k: string) => a.values[k] ?? "?";
  switch (a.alertType) {
    case "SDS_DISCONNECTED":
      return `SDS ${name} is disconnected`;
    case "SDC_DISCONNECTED":
      return `SDC ${name} is disconnected with ${v("mappedVolumes")} mapped volumes`;
    case "DEVICE_FAILED":
      // an unnamed device is named by its path: not twice
      return `device ${name === v("devicePath") ? name : `${name} (${v("devicePath")})`} failed${a.values.errorMessage ? `: ${a.values.errorMessage}` : ""}`;
    case "STORAGE_POOL_HAS_DEGRADED_CAPACITY":
      return `pool ${name}: ${v("degradedExtents")} extents on one copy only`;
    case "STORAGE_POOL_HAS_FAILED_CAPACITY":
      return `pool ${name}: ${v("unavailableExtents")} extents have no reachable copy`;
    case "CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD":
    case "CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD":
      return `pool ${name}: ${v("utilizationPercent")} % used (threshold ${v("thresholdPercent")} %)`;
    case "FWD_REBUILD_STUCK":
    case "BKWD_REBUILD_STUCK":
    case "REBALANCE_STUCK":
      return `pool ${name}: ${v("rebuildState")} made no progress for ${v("noProgressSeconds")} s`;
    case "STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT":
      return `pool ${name}: thin volumes overcommit it ${v("overcommitRatio")}× (limit ${v("limit")}×)`;
    case "CERTIFICATE_ABOUT_TO_EXPIRE":
      return `the MDM's TLS certificate expires in ${v("daysLeft")} days (${v("validTo")})`;
    default: {
      const facts = Object.entries(a.values)
        .map(([k, x]) => `${k}=${x}`)
        .join(", ");
      return `${a.objectType} ${name}${facts ? `: ${facts}` : ""}`;
    }
  }
}

export function worstLevel(levels: readonly HealthLevel[]): HealthLevel {
  if (levels.includes("ERR")) return "ERR";
  if (levels.includes("WARN")) return "WARN";
  return "OK";
}

/** The health checks of these active alerts, errors first then oldest first, and the level. */
export function healthOf(alerts: readonly AlertFacts[], nameOf: NameOf): { level: HealthLevel; checks: HealthCheck[] } {
  const checks: HealthCheck[] = alerts.map((a) => ({
    level: levelOfSeverity(a.severity),
    name: a.alertType,
    message: alertMessage(a, nameOf),
    alertId: a.id,
    severity: a.severity,
    objectType: a.objectType,
    objectId: a.objectId,
    sinceMs: a.startMs,
  }));
  checks.sort((x, y) => (x.level === y.level ? x.sinceMs - y.sinceMs : x.level === "ERR" ? -1 : 1));
  return { level: worstLevel(checks.map((c) => c.level)), checks };
}
