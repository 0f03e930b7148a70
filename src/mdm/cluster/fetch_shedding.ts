// Heartbeats ahead of fetches: when the MDM falls behind (its event loop runs late, i.e. requests
// queue), assignment and map fetches are refused at once with 429 and a retry time, so that the
// heartbeats queued with them are answered before the heartbeat timeout. Nodes declared down
// because their beats queued behind fetches were the collapse at 200 SDS / 100 SDC under bulk
// creates (docs/design.md "MDM at scale"). A refused fetch costs the auth check and a small
// answer instead of a transaction and a serialized map.
//
// Invariants:
// - only fetches are shed, never a heartbeat, join or watch: liveness is never refused;
// - a node refused once is not refused again within SHED_PARDON_MS: its retry (after the
//   retryAfterMs it was given, 0.5-1.5 s spread at random) is served, so shedding delays a
//   node's fetch by at most about one retry and never starves it (its lease waits for the fetch);
// - "behind" is the process using SHED_CPU cores over the last 0.5 s (Bun reads sockets only
//   when its loop polls, so a saturated MDM can keep its timers on time while requests wait in
//   the kernel), or the event loop running late (real time, performance.now: a moving average
//   over 50 ms probes, or the current turn's; SHED_LAG_MS) while the process uses at least half
//   a core: a late loop of an idle process is the host descheduling it (seen in
//   test/e2e_security.test.ts at load 7: 212 ms late, 0.02 cores), not a backlog;
// - only a real server (runMdm) measures; the in-process app of the tests never sheds unless
//   a test starts the probe.

import { Limits } from "../../proto/limits.ts";
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
const SHED_PARDON_MS = 3 * Limits.heartbeatIntervalMs;
const RETRY_MIN_MS = 500;
const RETRY_SPREAD_MS = 1000;

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

let lag: LoopLag | null = null;
const shedAt = new Map<string, number>();
let shedCount = 0;

/** Start measuring (runMdm, i.e. a real server; an in-process app without it never sheds). */
export function startLagProbe(): void {
  lag ??= new LoopLag();
}

/** Fetches refused so far (metrics, bench). */
export function fetchesShed(): number {
  return shedCount;
}

/** Throw 429 for this node's fetch when the MDM is behind, unless it was refused just before. */
export function shedIfBehind(nodeKey: string): void {
  if (lag === null || SHED_LAG_MS <= 0) return;
  const behind = lag.behindMs;
  const cores = lag.cpuCores;
  // lateness alone is no backlog: a descheduled process (a loaded host) runs late while idle
  if (cores < SHED_CPU && (behind < SHED_LAG_MS || cores < SHED_LAG_MIN_CPU)) return;
  const now = performance.now();
  const prev = shedAt.get(nodeKey);
  if (prev !== undefined && now - prev < SHED_PARDON_MS) return; // its retry: serve it
  shedAt.set(nodeKey, now);
  if (shedAt.size > 100_000) for (const [k, t] of shedAt) if (now - t >= SHED_PARDON_MS) shedAt.delete(k);
  shedCount++;
  const retryMs = Math.round(RETRY_MIN_MS + Math.random() * RETRY_SPREAD_MS);
  const e = new HttpError("INVALID_STATE", 429, `${MDM_BUSY_PREFIX}: requests queue (event loop ${Math.round(behind)} ms late, ${cores.toFixed(2)} cores busy); fetch refused, retry after ${retryMs} ms`);
  e.retryAfterS = Math.ceil(retryMs / 1000);
  throw e;
}
