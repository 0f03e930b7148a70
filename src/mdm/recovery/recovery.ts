// The edge of failure detection and recovery (settings and in-memory state: runtime.ts): the tick that runs the pure planner on the current view and
// persists its decisions, rebuild reports from SDS heartbeats (progress, completion), the start
// of an SDS drain, and the pool recovery figures served by REST.
// Invariants: every persisted extent change is compare-and-set on the epoch it was planned from,
// bumps that extent's epoch and the global mapVersion in the same transaction, and keeps
// device.assigned_bytes equal to the copies (in-sync, target, away) on the device; a membership
// change made here (failed forwards, a rebooted SDS) settles the running copy like the planner
// does (recovery_model.ts withInSync), so every stored state can finish its copy; the lease
// handed to SDSs is strictly shorter than the heartbeat timeout, so an SDS has stopped serving
// before the MDM activates an epoch without it.

import { and, eq, or } from "drizzle-orm";
import consola from "consola";
import type { FailedForward, RebuildReport } from "../../proto/cluster_api.ts";
import { assert, PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import { formatBytes } from "../../proto/sizes.ts";
import { deviceTable, extentTable, sdsTable, storagePoolTable, vtreeTable, type SdsRow } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { judgeReport } from "./rebuild_completion.ts";
import { planRecovery, type ExtentChange, type RecoveryInput, type RecoveryPlan } from "./rebuild_planner.ts";
import { RebuildProgress } from "./rebuild_progress.ts";
import { copiesOf, extentFromRow, forEachDeviceDelta, extentKey, rowColumnsOf, withInSync, type CopyRef, type ExtentState, type PlannedExtent, type SameDomain } from "./recovery_model.ts";
import { summarizeGroups, summarizePool, type SummaryContext } from "./recovery_summary.ts";
import { loadAttentionGroups } from "./recovery_groups.ts";
import { copiesHeldBy, attentionSources, drainWork, loadAttentionExtents, loadCopyingExtents, loadRecoveryView, loadSdsViews, SDS_REMOVING, type RecoveryView } from "./recovery_view.ts";
import { getSds } from "../core/lookup.ts";
import { bumpMapVersion } from "../core/system_state.ts";
import type { MapChangeScope } from "../core/health.ts";
import { addToDevice, chooseTargetDevice, domainOf, poolHasFaultSets, type SdsView } from "./target_placement.ts";
import { adjustDevice } from "../topology/volumes.ts";
import { trimAppliedMerges } from "../vtree/merge_trim.ts";

// ---- the tick ----

export interface TickResult {
  changed: number;
  /** membership repairs (failovers, dropped copies and targets) the step cap left for the next steps: they must not wait */
  repairsLeft: number;
  /** this step ended the worklist's pass (recovery_worklist.ts): the next starts a new one */
  passDone: boolean;
  /** failover sources (down SDSs, failed devices) of the first pass after a loss not read to their end: IO waits for them, the next tick must not wait */
  failoversLeft: number;
  /** attention extents this step loaded and planned from the worklist (besides the running copies) */
  examined: number;
  removedSds: string[];
  plan: RecoveryPlan;
}

function runningKey(e: ExtentState): string | null {
  return e.target ? RebuildProgress.copyKey(e.volumeId, e.idx, e.epoch, e.target.sdsId) : null;
}

/**
 * At most this many extent changes are persisted per tick; the planner sees the rest again at the
 * next tick (it plans from the stored state each time, and a prefix of a plan is the plan of its
 * first extents). A mass loss (hundreds of SDSs declared down at once, 10^5 extents) applied in one
 * transaction held the event loop for 52 s at 1,000 SDSs x 20,000 volumes: every heartbeat queued
 * past its timeout, which declared the rest down (bench/mdm_scale.ts). One SDS's loss (~1,300
 * copies at that size) still fits one tick. The worklist (recovery_worklist.ts) bounds what a step
 * loads and plans; this bounds what it writes (the running copies' changes come on top of a slice).
 */
export const MAX_EXTENT_CHANGES_PER_TICK = 4096;

/**
 * Plan the next slice of the attention extents (recovery_worklist.ts: every extent with a running
 * copy and at most a slice of the others) and persist the decisions (one transaction of at most
 * MAX_EXTENT_CHANGES_PER_TICK changes, fewer in HA mode: what one etcd commit can carry).
 */
export function recoveryTick(ctx: MdmContext): TickResult {
  const t0 = performance.now();
  const now = ctx.clock();
  const rt = ctx.recovery;
  const sds = loadSdsViews(ctx);
  const slice = rt.worklist.next(sds, (v) => attentionSources(ctx, v));
  // an extent with both copies on down SDSs comes from two sources, maybe in one slice: once each
  const extents = unionByKey(slice.partial ? loadCopyingExtents(ctx) : [], slice.keys);
  const view = loadRecoveryView(ctx, { moveCandidates: !slice.holdStarts, sds, slice: { extents, partial: slice.partial } });
  const input: RecoveryInput = {
    nowMs: now,
    config: { gracePeriodMs: rt.config.rebuildGraceMs, maxConcurrentPerSds: rt.config.maxConcurrentPerSds },
    pools: view.pools,
    sds: view.sds,
    extents: view.extents,
    moveCandidates: view.moveCandidates,
    emptyRemovingSds: view.emptyRemovingSds,
  };
  const cap = Math.min(MAX_EXTENT_CHANGES_PER_TICK, ctx.meta.maxRowsPerCommit);
  // the first pass after a loss examines every failover candidate before any copy starts
  let planned = planRecovery(slice.holdStarts ? repairsOnly(input) : input);
  // A plan over the cap with copy starts in it: plan repairs only. A failover planned with a
  // start in one change (the extent's lost copy dropped and its rebuild begun) counts as a start
  // in firstChanges, so the cap dropped its failover with the start; the starts come at later steps.
  if (planned.changes.length > cap && planned.changes.some(startsCopy)) planned = planRecovery(repairsOnly(input));
  const plan = planned.changes.length > cap ? { ...planned, changes: firstChanges(planned.changes, cap) } : planned;
  const repairsLeft = plan === planned ? 0 : countRepairs(planned.changes) - countRepairs(plan.changes);
  if (plan !== planned) consola.warn(`mdm: recovery step of ${planned.changes.length} extent changes: ${cap} now, the rest at the next ticks`);
  const removedSds = applyPlan(ctx, plan);
  // repairs the cap left wait for no other slice: the next step plans this one again
  if (repairsLeft > 0) rt.worklist.again();
  trimAppliedMerges(ctx);
  for (const id of removedSds) ctx.health.forgetSds(id);
  logPlan(plan, removedSds);
  rt.noteAlerts(plan.alerts, slice.partial ? { firstOfPass: slice.firstOfPass } : undefined);
  trackProgress(ctx, view, plan, now, slice.partial ? slice : null);
  rt.worklist.noteCost(performance.now() - t0);
  return { changed: plan.changes.length, repairsLeft, passDone: slice.passDone, failoversLeft: slice.failoversLeft, examined: slice.keys.length, removedSds, plan };
}

/** The planner's input with no copy started: rebuild and rebalance off, no move candidates. */
function repairsOnly(input: RecoveryInput): RecoveryInput {
  return { ...input, pools: input.pools.map((p) => ({ ...p, rebuildEnabled: false, rebalanceEnabled: false })), moveCandidates: [] };
}

function unionByKey(a: readonly PlannedExtent[], b: readonly PlannedExtent[]): PlannedExtent[] {
  const byKey = new Map<string, PlannedExtent>();
  for (const e of a) byKey.set(extentKey(e), e);
  for (const e of b) byKey.set(extentKey(e), e);
  return [...byKey.values()];
}

function countRepairs(changes: readonly ExtentChange[]): number {
  let n = 0;
  for (const c of changes) if (!startsCopy(c)) n++;
  return n;
}

/**
 * The changes of a plan too big for one step: membership repairs (failovers, dropped copies and
 * targets) first, then copy starts. A start may count on copy budget or device space that a
 * repair of another extent frees, so starts join only once every repair fits; the next tick plans
 * the rest from what was stored.
 */
export function firstChanges(changes: readonly ExtentChange[], cap: number): ExtentChange[] {
  const repairs: ExtentChange[] = [];
  const starts: ExtentChange[] = [];
  for (const c of changes) (startsCopy(c) ? starts : repairs).push(c);
  if (repairs.length >= cap) return repairs.slice(0, cap);
  return repairs.concat(starts.slice(0, cap - repairs.length));
}

function startsCopy(c: ExtentChange): boolean {
  const t = c.after.target;
  if (t === null) return false;
  const was = c.before.target;
  return was === null || was.sdsId !== t.sdsId || was.deviceId !== t.deviceId;
}

function applyPlan(ctx: MdmContext, plan: RecoveryPlan): string[] {
  if (plan.changes.length === 0 && plan.removeSds.length === 0) return [];
  return inTransaction(ctx, () => {
    // device accounting summed over the step: one UPDATE per device touched, not one per change
    const thin = new Map<string, number>();
    const thick = new Map<string, number>();
    const nodes = new ChangedNodes();
    for (const c of plan.changes) {
      persistExtent(ctx, c.before, c.after, c.before.extentBytes, c.before.thick, c.before.thick ? thick : thin);
      nodes.add(c.before, c.after);
    }
    for (const [deviceId, bytes] of thin) if (bytes !== 0) adjustDevice(ctx, deviceId, bytes, false);
    for (const [deviceId, bytes] of thick) if (bytes !== 0) adjustDevice(ctx, deviceId, bytes, true);
    const removed: string[] = [];
    for (const sdsId of plan.removeSds) {
      if (copiesHeldBy(ctx, sdsId) > 0) continue;
      ctx.store.db.delete(deviceTable).where(eq(deviceTable.sdsId, sdsId)).run();
      ctx.store.db.delete(sdsTable).where(eq(sdsTable.id, sdsId)).run();
      removed.push(sdsId);
    }
    // a removed SDS leaves the address list every node holds: that concerns everyone
    bumpMapVersion(ctx, removed.length > 0 ? undefined : nodes.scope(ctx));
    return removed;
  });
}

/**
 * The nodes a set of extent changes concerns (health.ts mapVersionFor: their heartbeat answers
 * send them to fetch): every SDS holding a copy of a changed extent before or after the change
 * (in-sync, target, away: its assignments list that extent, or listed it), and every SDC mapping
 * a volume of a changed V-Tree (its map carries each extent's epoch and in-sync copies). Nothing
 * else in an assignment or a map follows an extent's copies, so no other node need refetch:
 * unscoped, every copy installed during a rebuild sent all 1,500 nodes of a 1,000-SDS cluster to
 * refetch (the SDCs their whole maps), and one SDS's loss every node at once.
 */
class ChangedNodes {
  private readonly sds = new Set<string>();
  private readonly owners = new Set<string>();

  add(before: ExtentState, after: ExtentState): void {
    for (const c of copiesOf(before)) this.sds.add(c.sdsId);
    for (const c of copiesOf(after)) this.sds.add(c.sdsId);
    this.owners.add(before.volumeId);
  }

  /** the scope; call inside the changing transaction (the mappings read are those it sees) */
  scope(ctx: MdmContext): MapChangeScope {
    if (this.owners.size === 0) return { sds: this.sds, sdc: [] };
    // one statement for every owner (a statement per owner was ~45 ms of one SDS's loss at 100,000 volumes)
    const q = ctx.store.sqlite.query<{ s: string }, [string]>(
      "SELECT DISTINCT m.sdc_id AS s FROM json_each(?) o JOIN volume v ON v.owner_id = o.value JOIN volume_mapping m ON m.volume_id = v.id",
    );
    return { sds: this.sds, sdc: q.all(JSON.stringify([...this.owners])).map((r) => r.s) };
  }
}

/** Compare-and-set one extent from `before` to `after` and move the device accounting; call inside a transaction. */
function persistExtent(ctx: MdmContext, before: ExtentState, after: ExtentState, extentBytes: number, thick: boolean, deviceBytes?: Map<string, number>): void {
  assert(after.epoch === before.epoch + 1, "a membership change bumps the epoch by one");
  const c = rowColumnsOf(after);
  // a cached statement (drizzle built and prepared this UPDATE per extent: ~45 % of a big step)
  // (run, not a RETURNING list: its changes count only this statement's rows, not the triggers')
  const hit = ctx.store.sqlite
    .query<never, (string | number | null)[]>(
      "UPDATE extent SET epoch = ?, primary_sds_id = ?, primary_device_id = ?, secondary_sds_id = ?, secondary_device_id = ?, target_sds_id = ?, target_device_id = ?, target_mode = ?, " +
        "target_started_ms = ?, target_replaces_sds_id = ?, away_sds_id = ?, away_device_id = ?, away_since_ms = ? WHERE volume_id = ? AND idx = ? AND epoch = ?",
    )
    .run(
      c.epoch, c.primarySdsId, c.primaryDeviceId, c.secondarySdsId, c.secondaryDeviceId, c.targetSdsId, c.targetDeviceId, c.targetMode,
      c.targetStartedMs, c.targetReplacesSdsId, c.awaySdsId, c.awayDeviceId, c.awaySinceMs, before.volumeId, before.idx, before.epoch,
    );
  assert(hit.changes === 1, "an extent changes only from the epoch it was planned on");
  forEachDeviceDelta(before, after, (deviceId, n) => {
    if (deviceBytes) deviceBytes.set(deviceId, (deviceBytes.get(deviceId) ?? 0) + n * extentBytes);
    else adjustDevice(ctx, deviceId, n * extentBytes, thick);
  });
}

function logPlan(plan: RecoveryPlan, removedSds: string[]): void {
  const MAX_LINES = 20;
  // the lines past MAX_LINES only when debug logging is on (building 4,096 of them was ~8 % of a step)
  const debug = consola.level >= 4;
  plan.changes.forEach((c, i) => {
    if (i >= MAX_LINES && !debug) return;
    const line = `mdm: extent ${extentKey(c.after)} epoch ${c.after.epoch}: ${c.reasons.join("; ")}`;
    if (i < MAX_LINES) consola.info(line);
    else consola.debug(line);
  });
  if (plan.changes.length > MAX_LINES) consola.info(`mdm: … and ${plan.changes.length - MAX_LINES} more extent changes in this step`);
  for (const id of removedSds) consola.info(`mdm: SDS ${id} holds no data any more: removed`);
}

function mergePlan(view: RecoveryView, plan: RecoveryPlan): PlannedExtent[] {
  const byKey = new Map(view.extents.map((e) => [extentKey(e), e]));
  for (const c of plan.changes) byKey.set(extentKey(c.after), c.after);
  return [...byKey.values()];
}

/** slice: the step planned a slice of the attention extents; a pool whose extents lie in this
 *  pass or the last whole one still has work even when this slice holds none of them */
function trackProgress(ctx: MdmContext, view: RecoveryView, plan: RecoveryPlan, now: number, slice: { firstOfPass: boolean; passDone: boolean } | null): void {
  const rt = ctx.recovery;
  const pw = rt.poolsWithWork;
  if (slice === null) pw.last = pw.running = new Set();
  else {
    if (slice.firstOfPass) pw.running = new Set();
    for (const e of view.extents) pw.running.add(e.poolId);
    if (slice.passDone) {
      pw.last = pw.running;
      pw.running = new Set();
    }
  }
  for (const c of plan.changes) {
    if (c.after.target && runningKey(c.after) !== runningKey(c.before)) rt.progress.started(c.after.poolId, now);
  }
  const extents = mergePlan(view, plan);
  rt.progress.retain(new Set(extents.map(runningKey).filter((k): k is string => k !== null)));
  const statuses = summaries(ctx, view.pools.map((p) => p.poolId), view.sds, extents, view.drainCopiesByPool, now);
  for (const [poolId, s] of statuses) {
    const t = rt.progress.tick(poolId, s.hasWork || (slice !== null && (pw.last.has(poolId) || pw.running.has(poolId))), now);
    if (t.newlyStalled) {
      consola.warn(
        `mdm: recovery of Storage Pool ${poolId} is STALLED: no copy progress for ${Math.floor(t.progress.noProgressMs / 1000)} s ` +
          `with ${s.numOfPendingRebuildExtents} extents waiting for a rebuild and ${s.numOfActiveRebuildExtents + s.numOfActiveMoveExtents} copies running`,
      );
    }
  }
}

function copyStatus(sds: readonly SdsView[]): (c: CopyRef) => "up" | "down" | "dead" {
  const byDevice = new Map<string, { sdsId: string; connected: boolean; failed: boolean }>();
  for (const s of sds) for (const d of s.devices) byDevice.set(d.deviceId, { sdsId: s.sdsId, connected: s.connected, failed: d.failed });
  return (c) => {
    const d = byDevice.get(c.deviceId);
    if (!d || d.failed || d.sdsId !== c.sdsId) return "dead";
    return d.connected ? "up" : "down";
  };
}

/** What every pool's figures take besides the extents (summarizePool / summarizeGroups). */
function summaryContexts(
  ctx: MdmContext,
  poolIds: readonly string[],
  sds: readonly SdsView[],
  drainCopiesByPool: ReadonlyMap<string, number>,
  now: number,
): SummaryContext[] {
  const rt = ctx.recovery;
  const status = copyStatus(sds);
  const removing = new Set(sds.filter((s) => s.removing).map((s) => s.sdsId));
  const extentBytes = new Map(ctx.store.db.select({ id: storagePoolTable.id, e: storagePoolTable.extentBytes }).from(storagePoolTable).all().map((p) => [p.id, p.e]));
  return poolIds.map((poolId) => ({
    poolId,
    nowMs: now,
    gracePeriodMs: rt.config.rebuildGraceMs,
    isUp: (c) => status(c) === "up",
    isDown: (c) => status(c) === "down",
    removing: (id) => removing.has(id),
    removingSds: sds.filter((s) => s.removing && s.devices.some((d) => d.poolId === poolId)).length,
    runningCopy: (e) => {
      const k = runningKey(e);
      return k === null ? undefined : rt.progress.copy(k);
    },
    drainCopies: drainCopiesByPool.get(poolId) ?? 0,
    extentBytes: extentBytes.get(poolId) ?? Limits.defaultExtentBytes,
    progress: rt.progress.figures(poolId, now),
  }));
}

function summaries(
  ctx: MdmContext,
  poolIds: readonly string[],
  sds: readonly SdsView[],
  extents: readonly PlannedExtent[],
  drainCopiesByPool: ReadonlyMap<string, number>,
  now: number,
): Map<string, RebuildStatus & { hasWork: boolean }> {
  return new Map(summaryContexts(ctx, poolIds, sds, drainCopiesByPool, now).map((c) => [c.poolId, summarizePool({ ...c, extents })]));
}

const withoutWork = (m: Map<string, RebuildStatus & { hasWork: boolean }>): Map<string, RebuildStatus> =>
  new Map([...m].map(([id, { hasWork: _hasWork, ...status }]) => [id, status]));

/**
 * Recovery figures of pools (all when poolIds is omitted), from the current state. The extents
 * without a running copy are counted by sqlite in groups (recovery_groups.ts): no object per
 * extent, whatever the number of SDSs down; `sds` is the liveness to judge by (default: now's).
 */
export function recoveryStatus(ctx: MdmContext, poolIds?: readonly string[], sds: SdsView[] = loadSdsViews(ctx)): Map<string, RebuildStatus> {
  const now = ctx.clock();
  const ids = poolIds ?? ctx.store.db.select({ id: storagePoolTable.id }).from(storagePoolTable).all().map((p) => p.id);
  const { groups, copying } = loadAttentionGroups(ctx, sds, now, ctx.recovery.config.rebuildGraceMs);
  const { drainCopiesByPool } = drainWork(ctx, sds);
  return withoutWork(new Map(summaryContexts(ctx, ids, sds, drainCopiesByPool, now).map((c) => [c.poolId, summarizeGroups({ ...c, groups, copying })])));
}

/**
 * The same figures from an object per attention extent (loadAttentionExtents + summarizePool):
 * what recoveryStatus computed before the groups; the reference its equality test compares with.
 */
export function recoveryStatusByExtent(ctx: MdmContext, poolIds?: readonly string[], sds: SdsView[] = loadSdsViews(ctx)): Map<string, RebuildStatus> {
  const view = loadRecoveryView(ctx, { moveCandidates: false, sds });
  const ids = poolIds ?? view.pools.map((p) => p.poolId);
  return withoutWork(summaries(ctx, ids, view.sds, view.extents, view.drainCopiesByPool, ctx.clock()));
}

// ---- rebuild reports (SDS heartbeats) ----

/** Record progress and install finished copies reported by the primary `sdsId`. */
export function applyRebuildReports(ctx: MdmContext, sdsId: string, reports: readonly RebuildReport[]): void {
  if (reports.length === 0) return;
  const now = ctx.clock();
  const rt = ctx.recovery;
  const finished: { before: PlannedExtent; after: ExtentState; reason: string; report: RebuildReport }[] = [];
  for (const r of reports) {
    const row = ctx.store.db
      .select({ e: extentTable, poolId: vtreeTable.poolId, extentBytes: vtreeTable.extentBytes, type: vtreeTable.volumeType })
      .from(extentTable)
      .innerJoin(vtreeTable, eq(vtreeTable.ownerId, extentTable.volumeId))
      .where(and(eq(extentTable.volumeId, r.volumeId), eq(extentTable.idx, r.extentIndex)))
      .get();
    if (!row) continue;
    const e: PlannedExtent = { ...extentFromRow(row.e), poolId: row.poolId, extentBytes: row.extentBytes, thick: row.type === "ThickProvisioned" };
    const verdict = judgeReport(e, sdsId, r);
    switch (verdict.kind) {
      case "stale":
        consola.debug(`mdm: ignored a rebuild report from SDS ${sdsId} for extent ${extentKey(e)}: ${verdict.why}`);
        break;
      case "unusable":
        consola.warn(`mdm: SDS ${sdsId} finished a copy of extent ${extentKey(e)} that cannot be installed (${verdict.why}); the planner re-plans that extent`);
        break;
      case "progress":
        rt.progress.report(e.poolId, RebuildProgress.copyKey(e.volumeId, e.idx, e.epoch, r.targetSdsId), r.copiedBytes, r.totalBytes, now);
        break;
      case "complete":
        finished.push({ before: e, after: verdict.after, reason: verdict.reason, report: r });
        break;
      default: {
        const never: never = verdict;
        throw new Error(`unhandled verdict ${JSON.stringify(never)}`);
      }
    }
  }
  if (finished.length === 0) return;
  inTransaction(ctx, () => {
    const nodes = new ChangedNodes();
    for (const f of finished) {
      persistExtent(ctx, f.before, f.after, f.before.extentBytes, f.before.thick);
      nodes.add(f.before, f.after);
    }
    bumpMapVersion(ctx, nodes.scope(ctx));
  });
  for (const f of finished) {
    rt.progress.finished(f.before.poolId, RebuildProgress.copyKey(f.before.volumeId, f.before.idx, f.before.epoch, f.report.targetSdsId), f.report.totalBytes, now);
    consola.info(`mdm: extent ${extentKey(f.after)} epoch ${f.after.epoch}: ${f.reason} (${formatBytes(f.report.totalBytes)} copied)`);
  }
}

// ---- drain ----

/**
 * Whether the rest of the pool can take every copy `sds` holds (placement rules and capacity),
 * simulated copy by copy as the drain would place them; throws NO_SPACE / NOT_ENOUGH_SDS naming
 * the numbers when not. Call inside the transaction that starts the drain.
 */
export function checkDrainFeasible(ctx: MdmContext, sds: SdsRow): void {
  const views = loadSdsViews(ctx).map((s) => (s.sdsId === sds.id ? { ...s, removing: true } : s));
  const rows = ctx.store.db
    .select({ e: extentTable, poolId: vtreeTable.poolId, extentBytes: vtreeTable.extentBytes, type: vtreeTable.volumeType })
    .from(extentTable)
    .innerJoin(vtreeTable, eq(vtreeTable.ownerId, extentTable.volumeId))
    .all()
    .filter((r) => r.e.primarySdsId === sds.id || r.e.secondarySdsId === sds.id);
  checkDrainCapacity(sds, views, rows.map((r) => ({ poolId: r.poolId, bytes: r.extentBytes * (r.e.secondarySdsId === null ? 2 : 1), thick: r.type === "ThickProvisioned" })));
  const byId = new Map(views.map((s) => [s.sdsId, s]));
  let placed = 0;
  let bytes = 0;
  for (const r of rows) {
    const e = extentFromRow(r.e);
    const thick = r.type === "ThickProvisioned";
    const stay = e.inSync.filter((c) => c.sdsId !== sds.id);
    const needed = stay.length === 0 ? 2 : 1;
    const keep: SdsView[] = stay.map((c) => byId.get(c.sdsId)).filter((s): s is SdsView => s !== undefined);
    const exclude = new Set([sds.id, ...stay.map((c) => c.sdsId)]);
    for (let i = 0; i < needed; i++) {
      const dev = chooseTargetDevice(views, {
        poolId: r.poolId,
        extentBytes: r.extentBytes,
        thick,
        hasFaultSets: poolHasFaultSets(views, r.poolId),
        excludeSds: exclude,
        avoidDomainsOf: keep,
      });
      if (dev === null) {
        // capacity anywhere at all (rules aside) tells a capacity problem from a topology one
        const anywhere = chooseTargetDevice(views, { poolId: r.poolId, extentBytes: r.extentBytes, thick, hasFaultSets: false, excludeSds: new Set([sds.id]), avoidDomainsOf: [] });
        const fs = poolHasFaultSets(views, r.poolId);
        throw new PfError(
          anywhere === null ? "NO_SPACE" : "NOT_ENOUGH_SDS",
          `SDS ${sds.name} (${sds.id}) cannot be removed: it holds ${rows.length} extent copies and the rest of its pool can take only ${placed} of them ` +
            (anywhere === null
              ? `(no other SDS has room for another ${thick ? "thick " : ""}copy of ${formatBytes(r.extentBytes)}). Add capacity first`
              : `(extent ${extentKey(e)} needs an SDS${fs ? " in another fault set" : ""} other than ${[...exclude].filter((x) => x !== sds.id).join(", ") || "itself"}). Add SDSs first`),
        );
      }
      addToDevice(views, dev.deviceId, r.extentBytes, thick);
      exclude.add(dev.sdsId);
      const s = byId.get(dev.sdsId);
      if (s) keep.push(s);
      bytes += r.extentBytes;
    }
    placed++;
  }
  consola.debug(`mdm: drain of SDS ${sds.id} fits: ${placed} extents, ${formatBytes(bytes)} to copy`);
}

/** The bytes to move off an SDS against the room of the rest of each pool (thick needs real room). */
function checkDrainCapacity(sds: SdsRow, views: readonly SdsView[], copies: { poolId: string; bytes: number; thick: boolean }[]): void {
  const need = new Map<string, { thick: number; thin: number }>();
  for (const c of copies) {
    const n = need.get(c.poolId) ?? { thick: 0, thin: 0 };
    if (c.thick) n.thick += c.bytes;
    else n.thin += c.bytes;
    need.set(c.poolId, n);
  }
  for (const [poolId, n] of need) {
    let thickRoom = 0;
    let thinRoom = 0;
    for (const s of views) {
      if (s.sdsId === sds.id || !s.connected || s.removing) continue;
      for (const d of s.devices) {
        if (d.poolId !== poolId || d.failed) continue;
        thickRoom += Math.max(0, d.capacityBytes - Math.max(d.thickAssignedBytes, d.usedBytes));
        thinRoom += Math.max(0, d.capacityBytes * Limits.maxThinOvercommitRatio - d.assignedBytes);
      }
    }
    if (n.thick > thickRoom || n.thick + n.thin > thinRoom) {
      throw new PfError(
        "NO_SPACE",
        `SDS ${sds.name} (${sds.id}) cannot be removed: its copies need ${formatBytes(n.thick)} of thick room (and ${formatBytes(n.thin)} thin) ` +
          `on the rest of Storage Pool ${poolId}, which has ${formatBytes(thickRoom)} free for thick copies. Add capacity first`,
      );
    }
  }
}

/**
 * removeSds (scli --remove_sds): an SDS holding no copy is removed at once; otherwise, when the
 * rest of its pool can take its copies, it becomes RemovalInProgress and the recovery planner
 * moves every copy off it, then removes it. Refused (NO_SPACE / NOT_ENOUGH_SDS) when it cannot.
 */
export function removeSds(ctx: MdmContext, id: string): SdsRemoval {
  const outcome = inTransaction(ctx, (): SdsRemoval => {
    const sds = getSds(ctx, id);
    if (copiesHeldBy(ctx, id) > 0) return startDrain(ctx, sds);
    ctx.store.db.delete(deviceTable).where(eq(deviceTable.sdsId, id)).run();
    ctx.store.db.delete(sdsTable).where(eq(sdsTable.id, id)).run();
    bumpMapVersion(ctx);
    return "removed";
  });
  if (outcome === "removed") ctx.health.forgetSds(id);
  return outcome;
}

export type SdsRemoval = "removed" | "draining";

/** Mark the SDS RemovalInProgress (checked to fit first); call inside a transaction. */
export function startDrain(ctx: MdmContext, sds: SdsRow): SdsRemoval {
  if (sds.state === SDS_REMOVING) return "draining";
  checkDrainFeasible(ctx, sds);
  ctx.store.db.update(sdsTable).set({ state: SDS_REMOVING }).where(eq(sdsTable.id, sds.id)).run();
  consola.info(`mdm: SDS ${sds.name} (${sds.id}) is being removed: moving its ${copiesHeldBy(ctx, sds.id)} extent copies off it`);
  return "draining";
}

/** Extents of a pool that need attention (for tests and REST details). */
export function attentionExtents(ctx: MdmContext, poolId: string): PlannedExtent[] {
  return loadAttentionExtents(ctx, loadSdsViews(ctx)).filter((e) => e.poolId === poolId);
}

/**
 * An SDS whose host rebooted since it last ran (its join says so) may have lost writes that
 * were acknowledged but not yet flushed: they were in its page cache only. None of its copies
 * can be trusted as a resync base or as an in-sync copy: its away copies are dropped (a full
 * rebuild replaces them) and its in-sync copies leave the in-sync set wherever another in-sync
 * copy exists (that one is complete). A sole in-sync copy stays: it is all there is.
 * Returns how many extents changed.
 */
export function forgetVolatileCopies(ctx: MdmContext, sdsId: string): number {
  return inTransaction(ctx, () => {
    const rows = ctx.store.db
      .select({ extent: extentTable, extentBytes: vtreeTable.extentBytes, volumeType: vtreeTable.volumeType, poolId: vtreeTable.poolId })
      .from(extentTable)
      .innerJoin(vtreeTable, eq(vtreeTable.ownerId, extentTable.volumeId))
      .where(or(eq(extentTable.primarySdsId, sdsId), eq(extentTable.secondarySdsId, sdsId), eq(extentTable.awaySdsId, sdsId), eq(extentTable.targetSdsId, sdsId)))
      .all();
    let changed = 0;
    const domains = new PoolDomains(ctx);
    const nodes = new ChangedNodes();
    for (const r of rows) {
      const before = extentFromRow(r.extent);
      let after: ExtentState = before;
      if (before.away?.sdsId === sdsId) after = { ...after, away: null };
      if (before.target?.sdsId === sdsId) after = { ...after, target: null };
      if (after.inSync.length > 1 && after.inSync.some((c) => c.sdsId === sdsId)) {
        after = withInSync(after, after.inSync.filter((c) => c.sdsId !== sdsId), domains.of(r.poolId)).next;
      }
      if (after === before) continue;
      persistExtent(ctx, before, { ...after, epoch: before.epoch + 1 }, r.extentBytes, r.volumeType === "ThickProvisioned");
      nodes.add(before, after);
      changed++;
    }
    if (changed > 0) {
      bumpMapVersion(ctx, nodes.scope(ctx));
      consola.warn(`mdm: SDS ${sdsId} rejoined after its host rebooted: ${changed} of its extent copies may lack unflushed writes and will be rebuilt in full`);
    }
    return changed;
  });
}

/**
 * The primary of an extent reports that a write it forwarded to an in-sync copy was refused or
 * lost (a full thin device, a dropped connection): that copy may now differ from the primary's
 * on that range. It leaves the in-sync set (epoch bump) and is kept as the away copy, so the
 * planner resyncs it from the primary's change record, which covers the failed range. A move
 * running on the extent is settled against the one copy left (withInSync: it becomes a rebuild,
 * or is dropped), so it never waits for an install that cannot happen. Reports from an older
 * epoch, or from an SDS that is not the primary, are ignored.
 */
export function applyFailedForwards(ctx: MdmContext, reporterSdsId: string, reports: readonly FailedForward[]): void {
  if (reports.length === 0) return;
  let changed = 0;
  inTransaction(ctx, () => {
    const domains = new PoolDomains(ctx);
    const nodes = new ChangedNodes();
    for (const f of reports) {
      const row = ctx.store.db
        .select({ extent: extentTable, extentBytes: vtreeTable.extentBytes, volumeType: vtreeTable.volumeType, poolId: vtreeTable.poolId })
        .from(extentTable)
        .innerJoin(vtreeTable, eq(vtreeTable.ownerId, extentTable.volumeId))
        .where(and(eq(extentTable.volumeId, f.volumeId), eq(extentTable.idx, f.extentIndex)))
        .get();
      if (!row) continue;
      const before = extentFromRow(row.extent);
      if (before.epoch !== f.epoch || before.inSync[0]!.sdsId !== reporterSdsId || before.inSync.length < 2) continue;
      const peer = before.inSync.find((c) => c.sdsId === f.peerSdsId);
      if (!peer) continue;
      // a running move must still be installable with one in-sync copy left (withInSync): it
      // becomes a rebuild, or is dropped and the planner starts what the extent needs
      const settled = withInSync(before, before.inSync.filter((c) => c.sdsId !== f.peerSdsId), domains.of(row.poolId));
      const after: ExtentState = { ...settled.next, epoch: before.epoch + 1, away: { sdsId: peer.sdsId, deviceId: peer.deviceId, sinceMs: ctx.clock() } };
      persistExtent(ctx, before, after, row.extentBytes, row.volumeType === "ThickProvisioned");
      nodes.add(before, after);
      changed++;
      const also = settled.reasons.length > 0 ? `; ${settled.reasons.join("; ")}` : "";
      consola.warn(`mdm: extent ${extentKey(before)}: a write forwarded by ${reporterSdsId} to ${f.peerSdsId} failed; that copy leaves the in-sync set and will be resynced${also}`);
    }
    if (changed > 0) bumpMapVersion(ctx, nodes.scope(ctx));
  });
}

/** Fault domains per pool for the edge's own membership changes (SDS views read on first use). */
class PoolDomains {
  private views: SdsView[] | null = null;
  private readonly byPool = new Map<string, SameDomain>();
  constructor(private readonly ctx: MdmContext) {}

  /** Whether two SDSs share a fault domain of `poolId` (an unknown SDS is its own domain, as in the planner). */
  of(poolId: string): SameDomain {
    let f = this.byPool.get(poolId);
    if (f !== undefined) return f;
    const views = (this.views ??= loadSdsViews(this.ctx));
    const fs = poolHasFaultSets(views, poolId);
    const byId = new Map(views.map((s) => [s.sdsId, s]));
    f = (a, b) => {
      const sa = byId.get(a);
      const sb = byId.get(b);
      return sa === undefined || sb === undefined ? a === b : domainOf(sa, fs) === domainOf(sb, fs);
    };
    this.byPool.set(poolId, f);
    return f;
  }
}
