// Rate-limited logging of refused data-plane access (failed handshakes, refused grants, IO
// without a valid grant): a hostile or confused peer can cause thousands per second, so each
// kind of refusal logs at most once per interval; the lines in between are counted and the
// count is given with the next line of that kind. Counters by kind are kept for tests and stats.
//
// takeReport() hands the counts since the last report and the lines logged meanwhile (at most
// Limits.heartbeatMaxRefusalSamples) to the heartbeat, which carries them to the MDM's audit log.
//
// Invariant: memory is bounded by the number of kinds (a fixed union) and the sample cap, not by
// peer input.

import { consola } from "consola";
import { Limits } from "../proto/limits.ts";

/** What one heartbeat carries: refusals by kind since the last one, and a few of their lines. */
export interface RefusalReport {
  counts: Partial<Record<RefusalKind, number>>;
  samples: string[];
}

export type RefusalKind =
  | "hello_fail" // handshake refused (bad proof, unknown node, not a member)
  | "grant_reject" // a presented grant was refused (forged, expired, revoked, another SDC's)
  | "no_grant" // IO on a volume without a grant on this connection
  | "read_only" // write, trim or zero under a ReadOnly grant
  | "grant_expired" // IO under a grant past its expiry
  | "grant_revoked" // IO under a grant the MDM revoked (unmap, switch to ReadOnly)
  | "op_not_allowed"; // an operation the connection's role may not run

const DEFAULT_INTERVAL_MS = 5000;

export class RefusalLog {
  readonly counts: Record<RefusalKind, number> = {
    hello_fail: 0,
    grant_reject: 0,
    no_grant: 0,
    read_only: 0,
    grant_expired: 0,
    grant_revoked: 0,
    op_not_allowed: 0,
  };
  private readonly lastLogMs = new Map<RefusalKind, number>();
  private readonly muted = new Map<RefusalKind, number>();
  private readonly reported: Record<RefusalKind, number> = { ...this.counts };
  private samples: string[] = [];

  constructor(
    private readonly who: string,
    private readonly intervalMs = DEFAULT_INTERVAL_MS,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Count one refusal; log it unless one of its kind was logged within the interval. */
  refuse(kind: RefusalKind, detail: () => string): void {
    this.counts[kind]++;
    const now = this.nowMs();
    const last = this.lastLogMs.get(kind);
    if (last !== undefined && now - last < this.intervalMs) {
      this.muted.set(kind, (this.muted.get(kind) ?? 0) + 1);
      return;
    }
    this.lastLogMs.set(kind, now);
    const n = this.muted.get(kind) ?? 0;
    this.muted.set(kind, 0);
    const more = n > 0 ? ` (${n} more ${kind} since the last line)` : "";
    const line = `${this.who}: ${kind}: ${detail()}${more}`;
    if (this.samples.length < Limits.heartbeatMaxRefusalSamples) this.samples.push(line.slice(0, 300));
    consola.warn(`${line}; further ${kind} lines muted for ${this.intervalMs / 1000}s`);
  }

  /** Refusals since the last call, by kind (only kinds that occurred), and the lines logged. */
  takeReport(): RefusalReport {
    const counts: Partial<Record<RefusalKind, number>> = {};
    for (const k of Object.keys(this.counts) as RefusalKind[]) {
      const d = this.counts[k] - this.reported[k];
      if (d > 0) counts[k] = d;
      this.reported[k] = this.counts[k];
    }
    const samples = this.samples;
    this.samples = [];
    return { counts, samples };
  }
}
