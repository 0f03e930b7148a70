// The SDS half of a crash-consistent snapshot (snapshots-qos.md §6.3): while a fence holds a
// volume, new client writes/trims/zeroes of it are parked (not failed, not applied); the fence
// is acknowledged once every client write admitted before it has been replied to; commit or
// abort hands the parked writes back, in arrival order, to be served against the graph then
// current. Reads are never held.
//
// Invariants: a parked write is replied to exactly once (after release, by the normal path);
// parked writes are bounded by the data-plane server's per-connection in-flight limits (a
// parked request stays counted as in flight, so the connection stops being read); "admitted
// before" is tracked with eras: each admitted write counts in the era current at admission, a
// fence bumps the era and waits for every older era to drain. O(1) per write.

import type { FrameHeader } from "../proto/dataplane.ts";
import type { RequestConn } from "./dataplane_server.ts";

export interface ParkedWrite {
  conn: RequestConn;
  header: FrameHeader;
  payload: Uint8Array;
}

export class WriteFence {
  private era = 0;
  private readonly inflight = new Map<number, number>();
  private readonly drainWaiters: { era: number; resolve: () => void }[] = [];
  /** volume low id half -> fence ids holding it */
  private readonly held = new Map<number, Set<string>>();
  private readonly parked = new Map<string, ParkedWrite[]>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();

  /** True when some fence holds this volume's writes. */
  holds(volumeLo: number): boolean {
    return this.held.size > 0 && this.held.has(volumeLo);
  }

  /** A client write is admitted: returns the era to hand back to done(). */
  enter(): number {
    const era = this.era;
    this.inflight.set(era, (this.inflight.get(era) ?? 0) + 1);
    return era;
  }

  done(era: number): void {
    const n = (this.inflight.get(era) ?? 1) - 1;
    if (n > 0) {
      this.inflight.set(era, n);
      return;
    }
    this.inflight.delete(era);
    this.wakeDrained();
  }

  /** Park a write of a held volume (copies the header and payload: the frame's buffers are reused). */
  park(conn: RequestConn, header: FrameHeader, payload: Uint8Array): void {
    const lo = header.volumeLo;
    const fences = this.held.get(lo);
    const fenceId = fences === undefined ? undefined : [...fences][0];
    if (fenceId === undefined) return;
    const list = this.parked.get(fenceId) ?? [];
    list.push({ conn, header: { ...header }, payload: payload.byteLength === 0 ? payload : payload.slice() });
    this.parked.set(fenceId, list);
  }

  /**
   * Start holding the volumes for `fenceId`; resolves when every write admitted before now has
   * been replied to. `onTimeout` runs if neither release() nor another hold clears it in time.
   */
  hold(fenceId: string, volumeLos: readonly number[], timeoutMs: number, onTimeout: () => void): Promise<void> {
    for (const lo of volumeLos) {
      const s = this.held.get(lo) ?? new Set<string>();
      s.add(fenceId);
      this.held.set(lo, s);
    }
    if (!this.parked.has(fenceId)) this.parked.set(fenceId, []);
    const old = this.timers.get(fenceId);
    if (old !== undefined) clearTimeout(old);
    this.timers.set(fenceId, setTimeout(onTimeout, timeoutMs));
    const fenceEra = ++this.era;
    return new Promise((resolve) => {
      this.drainWaiters.push({ era: fenceEra, resolve });
      this.wakeDrained();
    });
  }

  /** Stop holding for `fenceId`; returns its parked writes in arrival order. */
  release(fenceId: string): ParkedWrite[] {
    const t = this.timers.get(fenceId);
    if (t !== undefined) clearTimeout(t);
    this.timers.delete(fenceId);
    for (const [lo, s] of this.held) {
      s.delete(fenceId);
      if (s.size === 0) this.held.delete(lo);
    }
    const out = this.parked.get(fenceId) ?? [];
    this.parked.delete(fenceId);
    return out;
  }

  /** Fences holding writes now. */
  active(): string[] {
    return [...this.parked.keys()];
  }

  /** Writes parked now (tests, logs). */
  get parkedCount(): number {
    let n = 0;
    for (const l of this.parked.values()) n += l.length;
    return n;
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private wakeDrained(): void {
    if (this.drainWaiters.length === 0) return;
    let oldest = Infinity;
    for (const e of this.inflight.keys()) if (e < oldest) oldest = e;
    for (let i = this.drainWaiters.length - 1; i >= 0; i--) {
      const w = this.drainWaiters[i]!;
      if (oldest >= w.era) {
        this.drainWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}
