// The MDM's alerts, the edge around the pure rules of alert_rules.ts: gather the state the rules
// need (connections, devices, pool recovery and capacity, thresholds, the TLS certificate),
// raise the alerts that became true, clear the ones that stopped being true, persist both
// (table `alert`, migration 0002) and tell the webhook. Also the PowerFlex REST shape of an
// Alert, the history listing, and the per-pool capacity thresholds (setCapacityAlertThresholds).
//
// Invariants: one active alert per key (type + object), in memory and in sqlite (a partial
// unique index); a raise and a clear are written before the webhook hears of them; during the
// settle period after an MDM start nothing is cleared (SDSs and SDCs are only presumed alive
// then, and an alert that survived the restart must not flap); lastObserved reaches sqlite at
// most every Limits.alertLastObservedFlushMs (memory has the exact value); cleared history is
// capped at Limits.maxClearedAlerts rows.

import { randomUUID } from "node:crypto";
import { desc, eq, isNotNull, isNull } from "drizzle-orm";
import consola from "consola";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import { alertTable, storagePoolTable, type AlertRow } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getPool } from "../core/lookup.ts";
import { ALERT_SEVERITIES, ALERT_TYPES, evaluateAlerts, type AffectedType, type AlertCondition, type AlertInput, type AlertSeverity, type AlertType, type PoolAlertFacts } from "./alert_rules.ts";
import { OVERCOMMIT_LIMIT, poolUsages } from "./pool_usage.ts";
import type { AlertObjectRows, AlertRecord } from "./runtime.ts";
import { observedRecoveryStatus } from "./recovery_pacing.ts";
import { observeStamp } from "./observe_cache.ts";

// ---- state -> rule input ----

export function gatherAlertInput(ctx: MdmContext): AlertInput {
  const q = ctx.store.sqlite;
  const now = ctx.clock();
  const rows = objectRows(ctx);
  const sds = rows.sds.map((s) => ({ ...s, connected: ctx.health.sdsConnected(s.id) }));
  // mappings are counted only for the SDCs not connected (the one rule that reads them): a count
  // over every mapping, once a second, was 10 ms at 100,000 mapped volumes
  const mappedTo = q.query<{ n: number }, [string]>("SELECT count(*) AS n FROM volume_mapping WHERE sdc_id = ?");
  const sdc = rows.sdc.map((s) => {
    const connected = ctx.health.sdcState(s.id) === "Connected";
    return { ...s, connected, mappedVolumes: connected ? 0 : mappedTo.get(s.id)!.n };
  });
  // why a Failed one failed: its SDS's words (volatile: health.ts), not in the cached rows
  const devices = rows.devices.some((d) => d.failed) ? rows.devices.map((d) => (d.failed ? { ...d, error: ctx.health.deviceError(d.id) } : d)) : rows.devices;
  const status = observedRecoveryStatus(ctx);
  const pools: PoolAlertFacts[] = poolUsages(ctx).map((u) => {
    const s = status.get(u.poolId);
    return {
      id: u.poolId,
      name: u.name,
      degradedExtents: s?.numOfDegradedExtents ?? 0,
      unavailableExtents: s?.numOfUnavailableExtents ?? 0,
      degradedKb: s?.degradedCapacityInKb ?? 0,
      unavailableKb: s?.unavailableCapacityInKb ?? 0,
      stalled: s?.rebuildStalled ?? false,
      rebuildState: s?.rebuildState ?? "Idle",
      activeRebuilds: (s?.numOfActiveRebuildExtents ?? 0) - (s?.numOfActiveResyncExtents ?? 0),
      activeResyncs: s?.numOfActiveResyncExtents ?? 0,
      noProgressSeconds: s?.noProgressSeconds ?? 0,
      utilizationRatio: u.utilizationRatio,
      highThresholdPct: u.highThresholdPct,
      criticalThresholdPct: u.criticalThresholdPct,
      overcommitRatio: u.overcommitRatio,
      overcommitLimit: OVERCOMMIT_LIMIT,
    };
  });
  return { nowMs: now, sds, sdc, devices, pools, systemId: ctx.systemId, certValidToMs: ctx.observe.certValidToMs, certWarnDays: Limits.certExpiryWarnDays };
}


/**
 * The SDS, SDC and device rows the rules read (8,000 devices at 1,000 SDSs: a few ms a step),
 * read again only when observe_cache.ts's stamp moved (any change of those rows); on a standby
 * (no stamp) every time.
 */
function objectRows(ctx: MdmContext): AlertObjectRows {
  const stamp = observeStamp(ctx);
  const held = ctx.observe.objectRows;
  if (stamp !== null && held?.stamp === stamp) return held.rows;
  const q = ctx.store.sqlite;
  const rows: AlertObjectRows = {
    sds: q.query<{ id: string; name: string }, []>("SELECT id, name FROM sds ORDER BY id").all(),
    sdc: q.query<{ id: string; name: string | null; host: string }, []>("SELECT id, name, host FROM sdc ORDER BY id").all(),
    devices: q
      .query<{ id: string; name: string | null; path: string; sds_id: string; state: string }, []>("SELECT id, name, path, sds_id, state FROM device ORDER BY id")
      .all()
      .map((d) => ({ id: d.id, name: d.name, path: d.path, sdsId: d.sds_id, failed: d.state === "Failed" })),
  };
  if (stamp !== null) ctx.observe.objectRows = { stamp, rows };
  return rows;
}

// ---- rows ----

function recordOf(r: AlertRow): AlertRecord {
  let values: Record<string, string> = {};
  try {
    const v: unknown = JSON.parse(r.alertValues);
    if (v && typeof v === "object" && !Array.isArray(v)) values = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
  } catch (e) {
    consola.warn(`mdm: alert ${r.id} has unreadable alert_values (${(e as Error).message}); shown empty`);
  }
  return {
    id: r.id,
    key: r.alertKey,
    alertType: r.alertType as AlertType,
    severity: (ALERT_SEVERITIES as readonly string[]).includes(r.severity) ? (r.severity as AlertSeverity) : "ALERT_MEDIUM",
    objectType: r.objectType as AffectedType,
    objectId: r.objectId,
    values,
    startMs: r.startMs,
    lastObservedMs: r.lastObservedMs,
    clearedMs: r.clearedMs,
  };
}

/** MDM start: the alerts active when it stopped are active again (until the rules say otherwise). */
export function loadActiveAlerts(ctx: MdmContext): void {
  const rows = ctx.store.db.select().from(alertTable).where(isNull(alertTable.clearedMs)).all();
  ctx.observe.activeAlerts.clear();
  for (const r of rows) ctx.observe.activeAlerts.set(r.alertKey, recordOf(r));
  if (rows.length > 0) consola.info(`mdm: ${rows.length} alert(s) still active from before the restart`);
}

// ---- raise / clear ----

export interface AlertChanges {
  raised: AlertRecord[];
  cleared: AlertRecord[];
  updated: AlertRecord[];
}

/** Evaluate the rules on the current state and apply the difference (persisted, then announced). */
export function applyAlerts(ctx: MdmContext): AlertChanges {
  return applyConditions(ctx, evaluateAlerts(gatherAlertInput(ctx)));
}

export function applyConditions(ctx: MdmContext, conditions: readonly AlertCondition[]): AlertChanges {
  const now = ctx.clock();
  const obs = ctx.observe;
  const active = obs.activeAlerts;
  const want = new Map(conditions.map((c) => [c.key, c]));
  const changes: AlertChanges = { raised: [], cleared: [], updated: [] };
  const settling = now < obs.settleUntilMs;
  inTransaction(ctx, () => {
    for (const c of want.values()) {
      const a = active.get(c.key);
      if (!a) {
        const rec: AlertRecord = { id: randomUUID(), key: c.key, alertType: c.alertType, severity: c.severity, objectType: c.objectType, objectId: c.objectId, values: c.values, startMs: now, lastObservedMs: now, clearedMs: null };
        ctx.store.db
          .insert(alertTable)
          .values({ id: rec.id, alertKey: rec.key, alertType: rec.alertType, severity: rec.severity, objectType: rec.objectType, objectId: rec.objectId, alertValues: JSON.stringify(rec.values), startMs: now, lastObservedMs: now, clearedMs: null })
          .run();
        active.set(c.key, rec);
        changes.raised.push(rec);
        continue;
      }
      a.lastObservedMs = now;
      if (a.severity !== c.severity || JSON.stringify(a.values) !== JSON.stringify(c.values)) {
        a.severity = c.severity;
        a.values = c.values;
        ctx.store.db.update(alertTable).set({ severity: a.severity, alertValues: JSON.stringify(a.values), lastObservedMs: now }).where(eq(alertTable.id, a.id)).run();
        changes.updated.push(a);
      }
    }
    if (!settling) {
      for (const [key, a] of active) {
        if (want.has(key)) continue;
        a.clearedMs = now;
        ctx.store.db.update(alertTable).set({ clearedMs: now, lastObservedMs: a.lastObservedMs }).where(eq(alertTable.id, a.id)).run();
        active.delete(key);
        changes.cleared.push(a);
      }
      if (changes.cleared.length > 0) trimHistory(ctx);
    }
    if (now - obs.lastFlushMs >= Limits.alertLastObservedFlushMs) {
      for (const a of active.values()) ctx.store.db.update(alertTable).set({ lastObservedMs: a.lastObservedMs }).where(eq(alertTable.id, a.id)).run();
      obs.lastFlushMs = now;
    }
  });
  announce(ctx, changes);
  return changes;
}

function trimHistory(ctx: MdmContext): void {
  ctx.store.sqlite.run(
    "DELETE FROM alert WHERE cleared_ms IS NOT NULL AND id NOT IN (SELECT id FROM alert WHERE cleared_ms IS NOT NULL ORDER BY cleared_ms DESC LIMIT ?)",
    [Limits.maxClearedAlerts],
  );
}

function describe(a: AlertRecord): string {
  const v = Object.entries(a.values)
    .map(([k, x]) => `${k}=${x}`)
    .join(", ");
  return `${a.alertType} (${a.severity}) on ${a.objectType} ${a.objectId}${v ? `: ${v}` : ""}`;
}

function announce(ctx: MdmContext, ch: AlertChanges): void {
  const MAX_LINES = 10;
  ch.raised.slice(0, MAX_LINES).forEach((a) => (a.severity === "ALERT_CRITICAL" || a.severity === "ALERT_HIGH" ? consola.error : consola.warn)(`mdm: alert raised: ${describe(a)}`));
  ch.cleared.slice(0, MAX_LINES).forEach((a) => consola.info(`mdm: alert cleared: ${describe(a)}`));
  if (ch.raised.length + ch.cleared.length > 2 * MAX_LINES) consola.info(`mdm: ${ch.raised.length} alerts raised and ${ch.cleared.length} cleared in this step`);
  const hook = ctx.observe.webhook;
  if (!hook) return;
  for (const a of ch.raised) hook.enqueue({ event: "raised", systemId: ctx.systemId, alert: renderAlert(a) });
  for (const a of ch.cleared) hook.enqueue({ event: "cleared", systemId: ctx.systemId, alert: renderAlert(a) });
}

// ---- REST ----

const iso = (ms: number) => new Date(ms).toISOString();

/** An Alert in PowerFlex's REST shape (delfin's captured fixture), plus pf's state and clearedTime. */
export function renderAlert(a: AlertRecord): Record<string, unknown> {
  return {
    id: a.id,
    name: a.id,
    uuid: a.id,
    alertType: a.alertType,
    severity: a.severity,
    affectedObject: { type: a.objectType, id: a.objectId, objectId: a.objectId },
    alertValues: a.values,
    startTime: iso(a.startMs),
    lastObserved: iso(a.lastObservedMs),
    // pf extensions: history
    state: a.clearedMs === null ? "active" : "cleared",
    clearedTime: a.clearedMs === null ? null : iso(a.clearedMs),
    links: [{ rel: "self", href: `/api/instances/Alert::${a.id}` }],
  };
}

/** Active alerts (memory, exact lastObserved), plus the cleared history when `all`; newest first. */
export function listAlerts(ctx: MdmContext, opts: { all: boolean }): Record<string, unknown>[] {
  const active = [...ctx.observe.activeAlerts.values()].sort((a, b) => b.startMs - a.startMs || a.key.localeCompare(b.key));
  const out = active.map(renderAlert);
  if (opts.all) {
    const cleared = ctx.store.db.select().from(alertTable).where(isNotNull(alertTable.clearedMs)).orderBy(desc(alertTable.clearedMs)).all();
    for (const r of cleared) out.push(renderAlert(recordOf(r)));
  }
  return out;
}

export function getAlert(ctx: MdmContext, id: string): Record<string, unknown> {
  for (const a of ctx.observe.activeAlerts.values()) if (a.id === id) return renderAlert(a);
  const row = ctx.store.db.select().from(alertTable).where(eq(alertTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the Alert ${id}`);
  return renderAlert(recordOf(row));
}

/** Active alerts by (severity, type), for /metrics. */
export function activeAlertCounts(ctx: MdmContext): Map<string, { severity: AlertSeverity; alertType: AlertType; count: number }> {
  const out = new Map<string, { severity: AlertSeverity; alertType: AlertType; count: number }>();
  for (const t of Object.keys(ALERT_TYPES) as AlertType[]) out.set(`${ALERT_TYPES[t]}/${t}`, { severity: ALERT_TYPES[t], alertType: t, count: 0 });
  for (const a of ctx.observe.activeAlerts.values()) {
    const k = `${a.severity}/${a.alertType}`;
    const e = out.get(k) ?? { severity: a.severity, alertType: a.alertType, count: 0 };
    e.count++;
    out.set(k, e);
  }
  return out;
}

/** 0 OK (no active alert), 1 warning (only LOW/MEDIUM ones), 2 error (a HIGH or CRITICAL one). */
export function healthStatus(ctx: MdmContext): 0 | 1 | 2 {
  let worst: 0 | 1 | 2 = 0;
  for (const a of ctx.observe.activeAlerts.values()) {
    if (a.severity === "ALERT_HIGH" || a.severity === "ALERT_CRITICAL") return 2;
    worst = 1;
  }
  return worst;
}

// ---- thresholds ----

/** PowerFlex setCapacityAlertThresholds: per pool, whole percents, high below critical. */
export function setCapacityAlertThresholds(ctx: MdmContext, poolId: string, t: { highPct?: number | undefined; criticalPct?: number | undefined }): void {
  inTransaction(ctx, () => {
    const pool = getPool(ctx, poolId);
    const high = t.highPct ?? pool.capacityAlertHighPct;
    const critical = t.criticalPct ?? pool.capacityAlertCriticalPct;
    for (const [name, v] of [
      ["capacityAlertHighThresholdPercent", high],
      ["capacityAlertCriticalThresholdPercent", critical],
    ] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 100) throw new PfError("BAD_REQUEST", `${name} must be a whole percent within 1..100 (got ${v})`);
    }
    if (high >= critical) throw new PfError("BAD_REQUEST", `the high capacity threshold (${high} %) must be below the critical one (${critical} %)`);
    ctx.store.db.update(storagePoolTable).set({ capacityAlertHighPct: high, capacityAlertCriticalPct: critical }).where(eq(storagePoolTable.id, poolId)).run();
    consola.info(`mdm: Storage Pool ${pool.name} (${pool.id}) capacity alert thresholds: high ${high} %, critical ${critical} %`);
  });
}
