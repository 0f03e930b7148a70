// Token bucket throttling every copy (rebuild, resync, move) this SDS drives as a primary, at
// the rate the MDM gives in its assignments (bytes/s; 0 = unlimited).
//
// Takers name a priority (lower first; the copy engine passes its job's start order): the oldest
// copy takes the whole rate and finishes first, the younger ones take what it leaves (its chunk
// round trips) and queue behind it. So copies of one source end one after another instead of all
// together, and the ones queued keep the bucket busy while the MDM installs a finished copy and
// plans the next (a done report, a planner tick and a map fetch: ~0.3–1 s in which a bucket
// serving its copies fairly, all ending at once, sat idle; bench/rebuild.ts with 16 MiB extents
// reached 51 % of its limit that way).
//
// Invariants: takers are served by (priority, arrival); the bucket starts empty and holds at
// most max(one request, a quarter second of rate), so the bytes let through by time t never
// exceed rate x t + that cap (and, from a fresh start, never exceed rate x t).

import type { SdsClock } from "./sds_clock.ts";

const BURST_SECONDS = 0.25;
const MAX_SLEEP_MS = 200;

interface Taker {
  bytes: number;
  priority: number;
  resolve: () => void;
}

export class TokenBucket {
  private tokens = 0;
  private lastMs: number;
  private rateBytesPerSec = 0;
  /** waiting takers, sorted by (priority, seq); the head is the next one served */
  private readonly waiting: Taker[] = [];
  private pumping = false;

  constructor(private readonly clock: SdsClock) {
    this.lastMs = clock.nowMs();
  }

  get rate(): number {
    return this.rateBytesPerSec;
  }

  setRate(bytesPerSec: number): void {
    if (bytesPerSec === this.rateBytesPerSec) return;
    this.refill(0);
    this.rateBytesPerSec = bytesPerSec;
  }

  /** Resolve once `bytes` may be sent; a lower `priority` is served first, equal ones in order. */
  take(bytes: number, priority = 0): Promise<void> {
    return new Promise<void>((resolve) => {
      const t: Taker = { bytes, priority, resolve };
      let i = this.waiting.length;
      while (i > 0 && this.waiting[i - 1]!.priority > priority) i--;
      this.waiting.splice(i, 0, t);
      if (!this.pumping) void this.pump();
    });
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (;;) {
        const head = this.waiting[0];
        if (head === undefined) return;
        if (this.rateBytesPerSec !== 0) {
          this.refill(head.bytes);
          if (this.tokens < head.bytes) {
            // a taker of higher priority arriving meanwhile becomes the head at the next look
            const ms = Math.ceil(((head.bytes - this.tokens) / this.rateBytesPerSec) * 1000);
            await this.clock.sleep(Math.min(MAX_SLEEP_MS, Math.max(1, ms)));
            continue;
          }
          this.tokens -= head.bytes;
        }
        this.waiting.shift();
        head.resolve();
      }
    } finally {
      this.pumping = false;
    }
  }

  private refill(request: number): void {
    const now = this.clock.nowMs();
    const cap = Math.max(request, this.rateBytesPerSec * BURST_SECONDS);
    this.tokens = Math.min(cap, this.tokens + ((now - this.lastMs) / 1000) * this.rateBytesPerSec);
    this.lastMs = now;
  }
}
