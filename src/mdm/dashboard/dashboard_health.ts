// Health of the cluster as the dashboard shows it (OK / WARN / ERR plus one line per raised
// check, the `ceph health detail` pattern), computed from the topology snapshot alone so the
// status card is right even before any statistics or alert service answers. Pure: snapshot in,
// checks out. Check names are the PowerFlex alert types the same condition raises.
// Invariants: the level is the worst level of the checks; no check means OK.

import type { DashSummary, HealthCheck, HealthLevel } from "./dashboard_model.ts";

export type HealthInput = Pick<DashSummary, "system" | "storagePools" | "sds" | "devices" | "sdcs" | "mappings">;

/** A pool needs this many connected SDSs (fault units) to keep two copies after one more loss. */
export const MIN_FAULT_UNITS = 3;

function poolChecks(input: HealthInput): HealthCheck[] {
  const out: HealthCheck[] = [];
  const high = input.system.capacityAlertHighPct;
  const critical = input.system.capacityAlertCriticalPct;
  for (const p of input.storagePools) {
    const r = p.rebuild;
    if (r.poolState === "Failed") {
      out.push({ level: "ERR", name: "STORAGE_POOL_HAS_FAILED_CAPACITY", message: `pool ${p.name}: ${r.unavailableExtents} extents have no reachable copy` });
    } else if (r.poolState === "Degraded") {
      out.push({ level: "WARN", name: "STORAGE_POOL_HAS_DEGRADED_CAPACITY", message: `pool ${p.name}: ${r.degradedExtents} extents on one copy (${r.activity})` });
    }
    if (r.stalled) out.push({ level: "ERR", name: "FWD_REBUILD_STUCK", message: `pool ${p.name}: recovery made no progress for ${r.noProgressSeconds} s` });
    if (p.rawBytes > 0) {
      const pct = (100 * p.inUseRawBytes) / p.rawBytes;
      if (pct >= critical) out.push({ level: "ERR", name: "CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD", message: `pool ${p.name}: ${pct.toFixed(0)} % used (critical at ${critical} %)` });
      else if (pct >= high) out.push({ level: "WARN", name: "CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD", message: `pool ${p.name}: ${pct.toFixed(0)} % used (high at ${high} %)` });
    }
    const sdsInPool = new Set(input.devices.filter((d) => d.poolId === p.id).map((d) => d.sdsId));
    const connected = input.sds.filter((s) => sdsInPool.has(s.id) && s.connection === "Connected").length;
    if (sdsInPool.size > 0 && connected < MIN_FAULT_UNITS) {
      out.push({ level: "ERR", name: "NOT_ENOUGH_FAULT_UNITS_IN_SP", message: `pool ${p.name}: ${connected} of ${sdsInPool.size} SDSs connected, ${MIN_FAULT_UNITS} needed` });
    }
  }
  return out;
}

function serverChecks(input: HealthInput): HealthCheck[] {
  const out: HealthCheck[] = [];
  const anyPoolDegraded = input.storagePools.some((p) => p.rebuild.poolState !== "Normal");
  for (const s of input.sds) {
    if (s.connection === "Disconnected") out.push({ level: anyPoolDegraded ? "ERR" : "WARN", name: "SDS_DISCONNECTED", message: `SDS ${s.name} is disconnected` });
  }
  for (const d of input.devices) {
    if (d.state === "Failed") out.push({ level: "ERR", name: "DEVICE_FAILED", message: `device ${d.name ?? d.path} of SDS ${input.sds.find((s) => s.id === d.sdsId)?.name ?? d.sdsId} failed` });
  }
  const mapped = new Set(input.mappings.map((m) => m.sdcId));
  for (const c of input.sdcs) {
    if (c.connection === "Disconnected" && mapped.has(c.id)) out.push({ level: "WARN", name: "SDC_DISCONNECTED", message: `SDC ${c.name ?? c.ip} is disconnected and has mapped volumes` });
  }
  return out;
}

export function worstLevel(levels: readonly HealthLevel[]): HealthLevel {
  if (levels.includes("ERR")) return "ERR";
  if (levels.includes("WARN")) return "WARN";
  return "OK";
}

/** The health checks raised by this snapshot, errors first, and the overall level. */
export function healthOf(input: HealthInput): { level: HealthLevel; checks: HealthCheck[] } {
  const checks = [...serverChecks(input), ...poolChecks(input)].sort((a, b) => (a.level === b.level ? 0 : a.level === "ERR" ? -1 : 1));
  return { level: worstLevel(checks.map((c) => c.level)), checks };
}
