// Heartbeats ahead of fetches: when the MDM falls behind (its event loop runs late, i.e. requests
// queue), assignment and map fetches are refused at once with 429 and a retry time, so that the
// heartbeats queued with them are answered before the heartbeat timeout. Nodes declared down
// because their beats queued behind fetches were the collapse at 200 SDS / 100 SDC under bulk
// creates (docs/design.md "MDM at scale"). A refused fetch costs the auth check and a small
// answer instead of a transaction and a serialized map.
//
// Invariants:
// - only fetches are shed, never a heartbeat, join or watch: liveness is never refused;
// - an urgent fetch is never shed: one for a change that takes access away (an unmap's grant
//   floors, ReadOnly, an NBD revocation; health.urgentPending), and one the node marks urgent
//   (urgent=1: an epoch hold or a fence in doubt holds its IO until it has its assignments), the
//   latter at most once a second per node;
// - a refused node gets a turn (its retry after), handed out in refusal order at ADMIT_PER_S a
//   second or slower when fetches are dear (FETCH_SHARE of a core), the first 0.5-1.5 s away; back at its turn it is served whatever the load, so no
//   node starves; the SDS keeps beating while it waits (src/sds/main.ts), so waiting for its
//   turn never makes it look down; it serves no new map meanwhile (its lease needs the fetch);
// - "behind" is the process using SHED_CPU cores over the last 0.5 s (Bun reads sockets only
//   when its loop polls, so a saturated MDM can keep its timers on time while requests wait in
//   the kernel), or the event loop running late (real time, performance.now: a moving average
//   over 50 ms probes, or the current turn's; SHED_LAG_MS) while the process uses at least half
//   a core: a late loop of an idle process is the host descheduling it (seen in
//   test/e2e_security.test.ts at load 7: 212 ms late, 0.02 cores), not a backlog;
// - only a real server (runMdm) measures; the in-process app of the tests never sheds unless
//   a test starts the probe.

import { MDM_BUSY_PREFIX } from "../../proto/cluster_api.ts";
import { HttpError } from "../core/http_edge.ts";

/**
 * Shed while the event loop's lateness, averaged over its recent probes, or the lateness of
 * the turn running now, is above this (ms). An average, not a peak: one long synchronous task
 * (a password hash, a big recovery step) delays one probe and is forgotten after it; a backlog
 * that keeps every turn late, or one long turn of queued requests, sheds.
 * PF_MDM_SHED_LAG_MS overrides it (0: never shed).
 */
export const SHED_LAG_MS = Number(process.env.PF_MDM_SHED_LAG_MS ?? 150);
const PROBE_MS = 50;
/** weight of the newest probe in the average */
const ALPHA = 0.3;
/**
 * Turns handed out per second at most while behind; FETCH_SHARE below spaces them further by
 * what a fetch costs. It was 20 (a full fetch at 1,000 SDSs x 20,000 volumes: ~16 ms), set before
 * the spacing by cost: with deltas (SDS assignments 1-3 KiB, SDC maps ~10 KiB, 1-4 ms) it was the
 * bound that held. After one SDS's loss at 1,000 SDS / 500 SDC / 100,000 volumes ~800 fetches
 * were refused, their turns spread over 40 s at 20 a second, and only ~1,000 of the loss's
 * ~3,200 rebuild targets reached their SDSs within 30 s. The cost spacing keeps fetches within
 * FETCH_SHARE of a core either way (a whole answer of 70 ms: one turn per 280 ms).
 */
const ADMIT_PER_S = Number(process.env.PF_MDM_SHED_ADMIT_PER_S ?? 100);
/**
 * Turns are also spaced by what a fetch costs: the MDM spends at most this share of a core on
 * fetches served at their turns (PF_MDM_SHED_FETCH_SHARE). A fixed ADMIT_PER_S held at 20,000
 * volumes (~16 ms a full answer, 0.3 cores), not at 100,000: a full answer of an SDS there is
 * ~3,200 copies, 600-700 KiB and 60-80 ms, so 20 turns a second asked 1.5 cores and the beats
 * queued behind them past the heartbeat timeout (1,000 SDS / 500 SDC, every node's first fetch
 * after an MDM start).
 */
export const FETCH_SHARE = Number(process.env.PF_MDM_SHED_FETCH_SHARE ?? 0.25);
/** moving average (weight FETCH_COST_ALPHA for the newest) of a served fetch's handler time, ms */
let fetchCostMs = 0;
const FETCH_COST_ALPHA = 0.2;

/** Time one served fetch (its answer built and serialised: synchronous, so its wall time is its CPU). */
export function timedFetch<T>(serve: () => T): T {
  const t0 = performance.now();
  const out = serve();
  noteFetchCost(performance.now() - t0);
  return out;
}

/** one fetch counts as at most this (ms): an outlier (a cold page cache, a GC pause) cannot space the turns for long */
const FETCH_COST_SAMPLE_MAX_MS = 200;
/** turns are never further apart than this (ms): waiting nodes serve no new map, so the queue must move */
const TURN_GAP_MAX_MS = 500;

export function noteFetchCost(ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) return;
  const sample = Math.min(ms, FETCH_COST_SAMPLE_MAX_MS);
  fetchCostMs = fetchCostMs === 0 ? sample : FETCH_COST_ALPHA * sample + (1 - FETCH_COST_ALPHA) * fetchCostMs;
}

/** The gap between two turns (ms): 1/ADMIT_PER_S, or longer when fetches cost more than FETCH_SHARE of a core at that rate, at most TURN_GAP_MAX_MS. */
export function turnGapMs(): number {
  return Math.min(TURN_GAP_MAX_MS, Math.max(1000 / ADMIT_PER_S, FETCH_SHARE > 0 ? fetchCostMs / FETCH_SHARE : 0));
}

/** Tests: forget the measured fetch cost. */
export function resetFetchCostForTests(): void {
  fetchCostMs = 0;
}

/** a node a little early for its turn is served */
const SLOT_EARLY_MS = 100;
const RETRY_MIN_MS = 500;
const RETRY_SPREAD_MS = 1000;
/** a turn further away is told as this (the node asks again, keeps its turn) */
const RETRY_MAX_MS = 60_000;

/** the MDM process's CPU over the last CPU_WINDOW probes at or above this (cores): saturated */
export const SHED_CPU = Number(process.env.PF_MDM_SHED_CPU ?? 0.9);
/** a late loop counts only while the process is this busy (cores): else the host descheduled it */
const SHED_LAG_MIN_CPU = 0.5;
const CPU_WINDOW = 10;

class LoopLag {
  private last = performance.now();
  private avg = 0;
  /** (wall ms, CPU µs) of the last CPU_WINDOW probes, oldest first */
  private readonly cpu: { wallMs: number; cpuUs: number }[] = [];
  private readonly timer: ReturnType<typeof setInterval>;

  constructor() {
    this.timer = setInterval(() => {
      const now = performance.now();
      const late = Math.max(0, now - this.last - PROBE_MS);
      this.last = now;
      this.avg = ALPHA * late + (1 - ALPHA) * this.avg;
      const u = process.cpuUsage();
      this.cpu.push({ wallMs: now, cpuUs: u.user + u.system });
      if (this.cpu.length > CPU_WINDOW) this.cpu.shift();
    }, PROBE_MS);
    this.timer.unref?.();
  }

  /**
   * How far behind the loop is (ms): the recent average, or how late the current turn already
   * runs. Bun may run a whole backlog of queued requests in one turn, during which no probe
   * fires: the requests late in that turn see it here (the ones that queued behind the others).
   */
  get behindMs(): number {
    return Math.max(this.avg, performance.now() - this.last - PROBE_MS);
  }

  /**
   * The MDM's CPU over the last half second (cores). Bun reads sockets only when its loop polls,
   * so requests wait in the kernel's buffers, not in the loop: a saturated MDM keeps its timers
   * on time and shows its backlog only as a busy core.
   */
  get cpuCores(): number {
    if (this.cpu.length < CPU_WINDOW) return 0;
    const a = this.cpu[0]!;
    const b = this.cpu[this.cpu.length - 1]!;
    return b.wallMs > a.wallMs ? (b.cpuUs - a.cpuUs) / 1000 / (b.wallMs - a.wallMs) : 0;
  }
}

/** Why a fetch may not wait for a turn: the MDM has an urgent change for the node; the node says it holds IO for it. */
export interface UrgentFetch {
  pending: boolean;
  asked: boolean;
}
const NOT_URGENT: UrgentFetch = { pending: false, asked: false };
/** a node's own urgent asks pass the shedding at most this often (it cannot use the flag to skip every turn) */
export const URGENT_MIN_GAP_MS = 1000;
const lastUrgentMs = new Map<string, number>();
let urgentServed = 0;

/** Fetches served while behind because they were urgent (tests, bench). */
export function urgentFetchesServed(): number {
  return urgentServed;
}

let lag: LoopLag | null = null;
/** each refused node's turn (performance.now ms): its retry then is served */
const slots = new Map<string, number>();
let nextSlotMs = 0;
let shedCount = 0;

/** Start measuring (runMdm, i.e. a real server; an in-process app without it never sheds). */
export function startLagProbe(): void {
  lag ??= new LoopLag();
}

/** Fetches refused so far (metrics, bench). */
export function fetchesShed(): number {
  return shedCount;
}

/**
 * Throw 429 for this node's fetch when the MDM is behind, with the time of its turn: turns are
 * handed out ADMIT_PER_S a second in the order nodes were refused, so a backlog of full fetches
 * (a cold start: every node's whole list) is served at a bounded rate, in order, while the
 * heartbeats go on. A node back at (or after) its turn is served, behind or not.
 */
export function shedIfBehind(nodeKey: string, urgent: UrgentFetch = NOT_URGENT): void {
  if (lag === null || SHED_LAG_MS <= 0) return;
  const now = performance.now();
  const slot = slots.get(nodeKey);
  // an urgent fetch never waits for a turn: a change that takes access away is pending for the
  // node (the MDM knows it), or the node asks for one (an epoch hold, a fence in doubt: it
  // holds IO until it has its assignments), at most once per URGENT_MIN_GAP_MS
  if (urgent.pending || (urgent.asked && now - (lastUrgentMs.get(nodeKey) ?? -Infinity) >= URGENT_MIN_GAP_MS)) {
    if (!urgent.pending) lastUrgentMs.set(nodeKey, now);
    if (lastUrgentMs.size > 100_000) lastUrgentMs.clear();
    // this answer is the one its turn was for: the turn goes (its retry would be a second fetch)
    if (slot !== undefined) slots.delete(nodeKey);
    urgentServed++;
    return;
  }
  if (slot !== undefined && now >= slot - SLOT_EARLY_MS) {
    slots.delete(nodeKey);
    return; // its turn
  }
  const behind = lag.behindMs;
  const cores = lag.cpuCores;
  // lateness alone is no backlog: a descheduled process (a loaded host) runs late while idle
  if (cores < SHED_CPU && (behind < SHED_LAG_MS || cores < SHED_LAG_MIN_CPU)) {
    if (slot !== undefined) slots.delete(nodeKey);
    return;
  }
  let turn = slot;
  if (turn === undefined) {
    nextSlotMs = Math.max(now + RETRY_MIN_MS + Math.random() * RETRY_SPREAD_MS, nextSlotMs + turnGapMs());
    turn = nextSlotMs;
    slots.set(nodeKey, turn);
    if (slots.size > 100_000) for (const [k, t] of slots) if (t < now - 10_000) slots.delete(k);
  }
  shedCount++;
  const retryMs = Math.round(Math.min(turn - now, RETRY_MAX_MS));
  const e = new HttpError("INVALID_STATE", 429, `${MDM_BUSY_PREFIX}: requests queue (event loop ${Math.round(behind)} ms late, ${cores.toFixed(2)} cores busy); fetch refused, retry after ${retryMs} ms`);
  e.retryAfterS = Math.ceil(retryMs / 1000);
  throw e;
}
