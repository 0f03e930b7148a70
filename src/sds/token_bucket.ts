// Token bucket throttling every copy (rebuild, resync, move) this SDS drives as a primary, at
// the rate the MDM gives in its assignments (bytes/s; 0 = unlimited).
//
// Invariants: takers are served first come, first served; the bucket starts empty and holds at
// most max(one request, a quarter second of rate), so the bytes let through by time t never
// exceed rate x t + that cap (and, from a fresh start, never exceed rate x t).

import type { SdsClock } from "./sds_clock.ts";

const BURST_SECONDS = 0.25;
const MAX_SLEEP_MS = 200;

export class TokenBucket {
  private tokens = 0;
  private lastMs: number;
  private rateBytesPerSec = 0;
  private tail: Promise<void> = Promise.resolve();

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

  /** Resolve once `bytes` may be sent. */
  take(bytes: number): Promise<void> {
    const next = this.tail.then(() => this.waitFor(bytes));
    this.tail = next;
    return next;
  }

  private async waitFor(bytes: number): Promise<void> {
    for (;;) {
      if (this.rateBytesPerSec === 0) return;
      this.refill(bytes);
      if (this.tokens >= bytes) {
        this.tokens -= bytes;
        return;
      }
      const ms = Math.ceil(((bytes - this.tokens) / this.rateBytesPerSec) * 1000);
      await this.clock.sleep(Math.min(MAX_SLEEP_MS, Math.max(1, ms)));
    }
  }

  private refill(request: number): void {
    const now = this.clock.nowMs();
    const cap = Math.max(request, this.rateBytesPerSec * BURST_SECONDS);
    this.tokens = Math.min(cap, this.tokens + ((now - this.lastMs) / 1000) * this.rateBytesPerSec);
    this.lastMs = now;
  }
}
