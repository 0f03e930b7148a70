// The rebuild planner: a pure function of the recovery view (SDS liveness, devices, extents that
// need attention, move candidates) and the time, returning the next state of every extent it
// changes. The edge (recovery.ts) persists the plan in one transaction, then SDSs and SDCs learn
// it from their maps. Nothing here reads a clock, a database or a socket.
//
// Per extent, first its membership is repaired (no throttle):
// - a target on an SDS that is down, failed or being removed is dropped;
// - in-sync copies on failed devices are dropped, copies on disconnected SDSs leave the in-sync
//   list and are kept as the "away" copy (away-since = now), as long as one in-sync copy is up;
//   if the primary left, the secondary becomes primary and a running copy is dropped (its
//   source is gone); a move left with one in-sync copy becomes a plain rebuild (recovery_model.ts
//   withInSync), or is dropped when its target shares the fault set of the copy left;
// - a running copy that could no longer be installed when it finishes (targetMisfit: a move next
//   to one in-sync copy, a rebuild next to two; a stored state) is settled the same way, so a
//   finished copy is never refused forever and the extent gets what it needs (a rebuild);
// - when no in-sync copy is up the extent is unavailable: membership stays (its holder serves
//   again when it returns), a running copy is dropped, the away copy is kept as a recovery
//   source and promoted (loudly: writes since it left are lost) once every in-sync holder is
//   gone for good (failed device, or down for the grace period);
// - an away copy is dropped when its device failed, when its SDS is being removed, when the
//   extent has two in-sync copies again, or once the grace period is over.
// Then copies start, per pool, while fewer than maxConcurrentPerSds x (SDSs of the pool) copies
// run, in this order: resyncs (an away copy back within the grace period becomes the target,
// mode resync), rebuilds (a degraded extent whose away copy is gone gets a new target, mode
// full, placed by target_placement.ts), drain moves (a copy on an SDS being removed gets a
// target that replaces it), and rebalance moves (only in a pool with no degraded extent and no
// drain: the fullest SDS sheds copies onto the emptiest while that does not overshoot).
// Invariants: every changed extent gets epoch + 1 (exactly once per plan), passes checkExtent,
// and never has two copies on one SDS, nor (with fault sets) two in-sync copies in one fault set,
// nor a target in the fault set of a copy it stays next to (a move's target may share the fault
// set of the copy it replaces: that copy goes when the move ends).

import {
  checkExtent,
  copiesOf,
  forEachDeviceDelta,
  extentKey,
  targetMisfit,
  withInSync,
  type CopyRef,
  type ExtentState,
  type PlannedExtent,
  type TargetCopy,
} from "./recovery_model.ts";
import { addToDevice, chooseTargetDevice, domainOf, poolHasFaultSets, type SdsView } from "./target_placement.ts";
import { Limits } from "../../proto/limits.ts";

export interface PoolPolicy {
  poolId: string;
  rebuildEnabled: boolean;
  rebalanceEnabled: boolean;
  /** no rebuild rate limit: copies run as fast as the disks go (fewer at once, see startCopies) */
  unthrottled?: boolean;
}

export interface PlannerConfig {
  gracePeriodMs: number;
  maxConcurrentPerSds: number;
}

export interface RecoveryInput {
  nowMs: number;
  config: PlannerConfig;
  pools: readonly PoolPolicy[];
  sds: readonly SdsView[];
  /** every extent that is degraded, copying, keeps an away copy, or has a copy on an SDS that is
   *  disconnected or being removed or on a failed device */
  extents: readonly PlannedExtent[];
  /** healthy extents (2 in-sync copies, nothing else) with a copy on an SDS being removed or on
   *  one of the fullest SDSs of a pool; the moves are picked among them */
  moveCandidates: readonly PlannedExtent[];
  /** SDSs being removed that hold no copy of anything any more */
  emptyRemovingSds: readonly string[];
}

export interface ExtentChange {
  before: PlannedExtent;
  after: PlannedExtent;
  reasons: string[];
}

export interface PlanAlert {
  /** the same condition keeps the same key, so the edge logs it once */
  key: string;
  level: "error" | "warn";
  message: string;
}

export interface RecoveryPlan {
  changes: ExtentChange[];
  removeSds: string[];
  alerts: PlanAlert[];
}

type CopyStatus = "up" | "down" | "dead";

interface Work {
  before: PlannedExtent;
  cur: PlannedExtent;
  reasons: string[];
}

/** Working copy of the view: SDS loads change as the plan places and drops copies. */
class Env {
  readonly sds: SdsView[];
  private readonly sdsById = new Map<string, SdsView>();
  private readonly deviceSds = new Map<string, { sds: SdsView; failed: boolean }>();

  constructor(
    input: RecoveryInput,
    readonly nowMs: number,
    readonly graceMs: number,
  ) {
    this.sds = input.sds.map((s) => ({ ...s, devices: s.devices.map((d) => ({ ...d })) }));
    for (const s of this.sds) {
      this.sdsById.set(s.sdsId, s);
      for (const d of s.devices) this.deviceSds.set(d.deviceId, { sds: s, failed: d.failed });
    }
  }

  status(c: CopyRef): CopyStatus {
    const d = this.deviceSds.get(c.deviceId);
    if (!d || d.failed || d.sds.sdsId !== c.sdsId) return "dead";
    return d.sds.connected ? "up" : "down";
  }

  confirmed(sdsId: string): boolean {
    return this.sdsById.get(sdsId)?.confirmed ?? false;
  }

  removing(sdsId: string): boolean {
    return this.sdsById.get(sdsId)?.removing ?? false;
  }

  /** down for at least the grace period (an unknown SDS counts as gone) */
  goneForGood(c: CopyRef): boolean {
    const st = this.status(c);
    if (st === "dead") return true;
    if (st === "up") return false;
    const since = this.sdsById.get(c.sdsId)?.downSinceMs ?? null;
    return since !== null && this.nowMs - since >= this.graceMs;
  }

  private readonly faultSetPools = new Map<string, boolean>();

  /** Whether two SDSs share a fault domain in this pool (an unknown SDS is its own domain). */
  sameDomain(a: string, b: string, poolId: string): boolean {
    let fs = this.faultSetPools.get(poolId);
    if (fs === undefined) {
      fs = poolHasFaultSets(this.sds, poolId);
      this.faultSetPools.set(poolId, fs);
    }
    const sa = this.sdsById.get(a);
    const sb = this.sdsById.get(b);
    if (!sa || !sb) return a === b;
    return domainOf(sa, fs) === domainOf(sb, fs);
  }

  sdsOf(sdsId: string): SdsView | undefined {
    return this.sdsById.get(sdsId);
  }

  /** Move the working loads from one state of an extent to the next. */
  account(before: PlannedExtent, after: ExtentState): void {
    forEachDeviceDelta(before, after, (deviceId, n) => addToDevice(this.sds, deviceId, n * before.extentBytes, before.thick));
  }
}

export function planRecovery(input: RecoveryInput): RecoveryPlan {
  const env = new Env(input, input.nowMs, input.config.gracePeriodMs);
  const work = new Map<string, Work>();
  const alerts: PlanAlert[] = [];
  const sorted = [...input.extents].sort(byKey);
  for (const e of sorted) {
    const w: Work = { before: e, cur: cloneExtent(e), reasons: [] };
    work.set(extentKey(e), w);
    repairMembership(w, env, alerts);
  }
  for (const pool of input.pools) startCopies(pool, input, env, work, alerts);
  const changes: ExtentChange[] = [];
  for (const w of work.values()) {
    if (!changed(w.before, w.cur)) continue;
    const after = { ...w.cur, epoch: w.before.epoch + 1 };
    checkExtent(after);
    changes.push({ before: w.before, after, reasons: w.reasons });
  }
  return { changes, removeSds: [...input.emptyRemovingSds].sort(), alerts };
}

/**
 * Rebuild candidates interleaved over their source (the one in-sync copy's SDS): sources with the
 * fewest copies running now come first, then one candidate per source in turn (by key within a
 * source), so a budget of k copies spreads over the sources instead of going to the first ones.
 */
function rebuildOrder(mine: readonly Work[], wanted: (e: PlannedExtent) => boolean): Work[] {
  const running = new Map<string, number>();
  const bySource = new Map<string, Work[]>();
  for (const w of mine) {
    const e = w.cur;
    const src = e.inSync[0]?.sdsId;
    if (src === undefined) continue;
    if (e.target !== null) running.set(src, (running.get(src) ?? 0) + 1);
    else if (wanted(e)) {
      const list = bySource.get(src);
      if (list === undefined) bySource.set(src, [w]);
      else list.push(w);
    }
  }
  const queues = [...bySource].sort((a, b) => (running.get(a[0]) ?? 0) - (running.get(b[0]) ?? 0) || (a[0] < b[0] ? -1 : 1)).map(([, ws]) => ws.sort((x, y) => byKey(x.cur, y.cur)));
  const out: Work[] = [];
  for (let i = 0; out.length < queues.reduce((n, q) => n + q.length, 0); i++) for (const q of queues) if (i < q.length) out.push(q[i]!);
  return out;
}

function byKey(a: { volumeId: string; idx: number }, b: { volumeId: string; idx: number }): number {
  return a.volumeId < b.volumeId ? -1 : a.volumeId > b.volumeId ? 1 : a.idx - b.idx;
}

function cloneExtent(e: PlannedExtent): PlannedExtent {
  return { ...e, inSync: e.inSync.map((c) => ({ ...c })), target: e.target ? { ...e.target } : null, away: e.away ? { ...e.away } : null };
}

function sameCopy(a: CopyRef | null, b: CopyRef | null): boolean {
  if (a === null || b === null) return a === b;
  return a.sdsId === b.sdsId && a.deviceId === b.deviceId;
}

function changed(a: ExtentState, b: ExtentState): boolean {
  if (a.inSync.length !== b.inSync.length || a.inSync.some((c, i) => !sameCopy(c, b.inSync[i] ?? null))) return true;
  if (!sameCopy(a.target, b.target) || a.target?.mode !== b.target?.mode || a.target?.replacesSdsId !== b.target?.replacesSdsId) return true;
  return !sameCopy(a.away, b.away);
}

function set(w: Work, env: Env, next: PlannedExtent, reason: string): void {
  env.account(w.cur, next);
  w.cur = next;
  w.reasons.push(reason);
}

// ---- membership repair ----

function repairMembership(w: Work, env: Env, alerts: PlanAlert[]): void {
  dropBadTarget(w, env);
  dropLostInSync(w, env);
  settleMisfitTarget(w, env);
  handleUnavailable(w, env, alerts);
  dropStaleAway(w, env);
}

function dropBadTarget(w: Work, env: Env): void {
  const t = w.cur.target;
  if (!t) return;
  const st = env.status(t);
  if (st === "up" && !env.removing(t.sdsId)) return;
  const why = st === "dead" ? "its device failed" : st === "down" ? "its SDS is disconnected" : "its SDS is being removed";
  set(w, env, { ...w.cur, target: null }, `dropped the ${t.mode} copy to SDS ${t.sdsId}: ${why}`);
}

function dropLostInSync(w: Work, env: Env): void {
  const e = w.cur;
  const alive = e.inSync.filter((c) => env.status(c) !== "dead");
  const ups = e.inSync.filter((c) => env.status(c) === "up");
  // keep the best non-empty set: the up copies, else the ones not known dead
  const keep = ups.length > 0 ? ups : alive;
  if (keep.length === 0 || keep.length === e.inSync.length) return;
  const primaryChanged = keep[0]!.sdsId !== e.inSync[0]!.sdsId;
  // the away copy first (from the copies leaving), then the target against the copies kept
  let next: PlannedExtent = { ...e };
  const reasons: string[] = [];
  for (const c of e.inSync) {
    if (keep.includes(c)) continue;
    const st = env.status(c);
    if (st === "down" && !env.removing(c.sdsId)) {
      if (next.away) reasons.push(`dropped the older away copy on SDS ${next.away.sdsId}`);
      next = { ...next, away: { sdsId: c.sdsId, deviceId: c.deviceId, sinceMs: env.nowMs } };
      reasons.push(`SDS ${c.sdsId} is disconnected: its copy leaves the in-sync set and is kept away`);
    } else {
      reasons.push(`the copy on SDS ${c.sdsId} is lost (${st === "dead" ? "device failed" : "SDS being removed is disconnected"})`);
    }
  }
  const settled = withInSync(next, keep, (a, b) => env.sameDomain(a, b, e.poolId));
  next = { ...next, ...settled.next };
  reasons.push(...settled.reasons);
  if (primaryChanged) reasons.push(`SDS ${keep[0]!.sdsId} becomes primary`);
  set(w, env, next, reasons.join("; "));
}

/**
 * A running copy that could not be installed when it finishes (a stored state from before every
 * path settled its target, see recovery_model.ts withInSync) is re-planned now, never left
 * running: a move left with one in-sync copy becomes a rebuild (or is dropped), anything else is
 * dropped, and the steps below start what the extent needs.
 */
function settleMisfitTarget(w: Work, env: Env): void {
  const e = w.cur;
  if (targetMisfit(e) === null) return;
  const settled = withInSync(e, e.inSync, (a, b) => env.sameDomain(a, b, e.poolId));
  set(w, env, { ...e, ...settled.next }, settled.reasons.join("; "));
}

function handleUnavailable(w: Work, env: Env, alerts: PlanAlert[]): void {
  const e = w.cur;
  if (e.inSync.some((c) => env.status(c) === "up")) return;
  const key = extentKey(e);
  const away = e.away;
  if (away && env.status(away) === "up" && env.confirmed(away.sdsId) && !env.removing(away.sdsId) && e.inSync.every((c) => env.goneForGood(c))) {
    const lostSinceMs = away.sinceMs;
    set(
      w,
      env,
      { ...e, inSync: [{ sdsId: away.sdsId, deviceId: away.deviceId }], away: null, target: null },
      `every in-sync copy is gone: promoted the stale copy on SDS ${away.sdsId}`,
    );
    alerts.push({
      key: `promoted:${key}:${e.epoch}`,
      level: "error",
      message: `extent ${key}: every in-sync copy (${e.inSync.map((c) => c.sdsId).join(", ")}) is gone; serving the stale copy of SDS ${away.sdsId}: writes since ${new Date(lostSinceMs).toISOString()} to this extent are LOST`,
    });
    return;
  }
  if (e.target) set(w, env, { ...e, target: null }, `dropped the copy to SDS ${e.target.sdsId}: no in-sync copy is reachable`);
  alerts.push({
    key: `unavailable:${key}`,
    level: "error",
    message: `extent ${key} is UNAVAILABLE: no in-sync copy is reachable (holders ${e.inSync.map((c) => `${c.sdsId} ${env.status(c)}`).join(", ")})${away ? `; keeping the away copy on SDS ${away.sdsId} as a recovery source` : ""}`,
  });
}

function dropStaleAway(w: Work, env: Env): void {
  const e = w.cur;
  const away = e.away;
  if (!away) return;
  if (!e.inSync.some((c) => env.status(c) === "up")) {
    // unavailable: only a copy whose data is gone is worth nothing as a recovery source
    if (env.status(away) === "dead") set(w, env, { ...e, away: null }, `dropped the away copy on SDS ${away.sdsId}: its device failed`);
    return;
  }
  let why: string | null = null;
  if (env.status(away) === "dead") why = "its device failed";
  else if (env.removing(away.sdsId)) why = "its SDS is being removed";
  else if (e.inSync.length === 2) why = "the extent has two in-sync copies again";
  else if (env.nowMs - away.sinceMs >= env.graceMs) why = "the grace period is over";
  if (why !== null) set(w, env, { ...e, away: null }, `dropped the away copy on SDS ${away.sdsId}: ${why}`);
}

// ---- starting copies ----

function startCopies(pool: PoolPolicy, input: RecoveryInput, env: Env, work: Map<string, Work>, alerts: PlanAlert[]): void {
  const poolSds = env.sds.filter((s) => s.devices.some((d) => d.poolId === pool.poolId));
  const hasFaultSets = poolHasFaultSets(env.sds, pool.poolId);
  const mine = [...work.values()].filter((w) => w.cur.poolId === pool.poolId);
  // a rate-limited pool queues copies behind each source's bucket (they keep its rate busy while a
  // finished one is installed); an unlimited one would run them all against the clients' disks
  const perSds = pool.unthrottled ? Math.min(input.config.maxConcurrentPerSds, Limits.maxConcurrentUnthrottledRebuildsPerSds) : input.config.maxConcurrentPerSds;
  let budget = perSds * poolSds.filter((s) => s.connected).length - mine.filter((w) => w.cur.target !== null).length;
  const start = (w: Work, target: TargetCopy, reason: string, dropAway = false): void => {
    set(w, env, { ...w.cur, target, ...(dropAway ? { away: null } : {}) }, reason);
    budget--;
  };
  const sourceUp = (e: ExtentState) => e.inSync.every((c) => env.status(c) === "up");

  // resyncs: an away copy back within the grace period
  if (pool.rebuildEnabled) {
    for (const w of mine) {
      if (budget <= 0) return;
      const e = w.cur;
      const away = e.away;
      if (e.inSync.length !== 1 || e.target || !away || !sourceUp(e)) continue;
      if (env.status(away) !== "up" || !env.confirmed(away.sdsId) || env.removing(away.sdsId) || env.nowMs - away.sinceMs >= env.graceMs) continue;
      const target: TargetCopy = { sdsId: away.sdsId, deviceId: away.deviceId, mode: "resync", startedMs: env.nowMs, replacesSdsId: null };
      start(w, target, `SDS ${away.sdsId} is back within the grace period: resync its copy`, true);
    }
    // rebuilds: degraded, no away copy left to wait for; taken round-robin over their source SDSs,
    // the least busy source first, so every source copies at its full rate from the start and
    // none runs dry while another still has a queue (each source's rate is its own limit)
    for (const w of rebuildOrder(mine, (e) => e.inSync.length === 1 && !e.target && !e.away && sourceUp(e))) {
      if (budget <= 0) return;
      const e = w.cur;
      if (e.inSync.length !== 1 || e.target || e.away || !sourceUp(e)) continue;
      const holder = env.sdsOf(e.inSync[0]!.sdsId);
      if (!holder) continue;
      const dev = chooseTargetDevice(env.sds, {
        poolId: pool.poolId,
        extentBytes: e.extentBytes,
        thick: e.thick,
        hasFaultSets,
        excludeSds: new Set([holder.sdsId]),
        avoidDomainsOf: [holder],
      });
      if (dev === null) {
        alerts.push({ key: `noroom:${extentKey(e)}`, level: "warn", message: `extent ${extentKey(e)} stays degraded: no SDS can take its second copy (placement rules or capacity)` });
        continue;
      }
      start(w, { ...dev, mode: "full", startedMs: env.nowMs, replacesSdsId: null }, `rebuild a second copy on SDS ${dev.sdsId}`);
    }
  }

  // drain moves and rebalance moves work on healthy extents
  for (const c of input.moveCandidates) {
    if (c.poolId !== pool.poolId || work.has(extentKey(c))) continue;
    const w: Work = { before: c, cur: cloneExtent(c), reasons: [] };
    work.set(extentKey(c), w);
    mine.push(w);
  }
  mine.sort((a, b) => byKey(a.cur, b.cur));
  const movable = (e: ExtentState) => e.inSync.length === 2 && !e.target && !e.away && sourceUp(e);
  let drainPending = false;
  for (const w of mine) {
    const e = w.cur;
    const leaving = e.inSync.find((c) => env.removing(c.sdsId));
    if (!leaving) continue;
    drainPending = true;
    if (budget <= 0 || !movable(e)) continue;
    const dev = moveTarget(env, pool.poolId, hasFaultSets, e, leaving.sdsId, undefined);
    if (dev === null) {
      alerts.push({ key: `nodrain:${extentKey(e)}`, level: "warn", message: `extent ${extentKey(e)} cannot leave SDS ${leaving.sdsId} being removed: no SDS can take it` });
      continue;
    }
    start(w, { ...dev, mode: "full", startedMs: env.nowMs, replacesSdsId: leaving.sdsId }, `move the copy off SDS ${leaving.sdsId} (being removed) to SDS ${dev.sdsId}`);
  }

  const degraded = mine.some((w) => w.cur.inSync.length < 2);
  if (!pool.rebalanceEnabled || degraded || drainPending || budget <= 0) return;
  rebalance(pool.poolId, hasFaultSets, env, mine.filter((w) => movable(w.cur)), budget, (w, t, why) => start(w, t, why));
}

function moveTarget(env: Env, poolId: string, hasFaultSets: boolean, e: PlannedExtent, leavingSdsId: string, onlySdsId: string | undefined): CopyRef | null {
  const stay = e.inSync.find((c) => c.sdsId !== leavingSdsId);
  const staySds = stay ? env.sdsOf(stay.sdsId) : undefined;
  if (!staySds) return null;
  return chooseTargetDevice(env.sds, {
    poolId,
    extentBytes: e.extentBytes,
    thick: e.thick,
    hasFaultSets,
    excludeSds: new Set(copiesOf(e).map((c) => c.sdsId)),
    avoidDomainsOf: [staySds],
    ...(onlySdsId === undefined ? {} : { onlySdsId }),
  });
}

/** how many of the fullest and of the emptiest SDSs a rebalance step pairs up */
const REBALANCE_PAIR_SCAN = 8;

interface SdsLoad {
  sds: SdsView;
  /** assigned bytes on Normal devices of the pool, minus copies already being moved off */
  bytes: number;
  capacity: number;
}

/**
 * Move copies from the fullest SDS to the emptiest while the gap exceeds one extent on each side
 * (so a move never overshoots and two SDSs never trade copies back and forth). Loads count a copy
 * being moved off as already gone.
 */
function rebalance(
  poolId: string,
  hasFaultSets: boolean,
  env: Env,
  candidates: Work[],
  budget: number,
  start: (w: Work, t: TargetCopy, why: string) => void,
): void {
  const leavingBytes = new Map<string, number>();
  for (const s of env.sds) leavingBytes.set(s.sdsId, 0);
  const loadsOf = (): SdsLoad[] => {
    const out: SdsLoad[] = [];
    for (const s of env.sds) {
      if (!s.connected || s.removing) continue;
      let bytes = 0;
      let capacity = 0;
      for (const d of s.devices) {
        if (d.poolId !== poolId || d.failed) continue;
        bytes += d.assignedBytes;
        capacity += d.capacityBytes;
      }
      if (capacity > 0) out.push({ sds: s, bytes: bytes - (leavingBytes.get(s.sdsId) ?? 0), capacity });
    }
    return out.sort((a, b) => b.bytes / b.capacity - a.bytes / a.capacity || (a.sds.sdsId < b.sds.sdsId ? -1 : 1));
  };
  const used = new Set<Work>();
  while (budget > 0) {
    const loads = loadsOf();
    let moved = false;
    // the few fullest SDSs, each against the few emptiest that can take one of its copies
    const fullest = loads.slice(0, REBALANCE_PAIR_SCAN);
    const emptiest = loads.slice(-REBALANCE_PAIR_SCAN).reverse();
    outer: for (const full of fullest) {
      for (const empty of emptiest) {
        if (empty === full) break;
        for (const w of candidates) {
          if (used.has(w)) continue;
          const e = w.cur;
          if (!e.inSync.some((c) => c.sdsId === full.sds.sdsId)) continue;
          const gap = full.bytes / full.capacity - empty.bytes / empty.capacity;
          if (gap <= e.extentBytes / full.capacity + e.extentBytes / empty.capacity) break;
          const dev = moveTarget(env, poolId, hasFaultSets, e, full.sds.sdsId, empty.sds.sdsId);
          if (dev === null) continue;
          used.add(w);
          leavingBytes.set(full.sds.sdsId, (leavingBytes.get(full.sds.sdsId) ?? 0) + e.extentBytes);
          start(w, { ...dev, mode: "full", startedMs: env.nowMs, replacesSdsId: full.sds.sdsId }, `rebalance: move the copy on SDS ${full.sds.sdsId} to SDS ${dev.sdsId}`);
          budget--;
          moved = true;
          break outer;
        }
      }
    }
    if (!moved) return;
  }
}

// ---- pool health ----

/** Failed when an extent has no reachable in-sync copy, Degraded when one has fewer than 2 (recovery_summary.ts healthWith). */
export type PoolHealth = "Normal" | "Degraded" | "Failed";
