// Per-mapping QoS of one volume on this SDC (setMappedSdcLimits; snapshots-qos.md §6.4): an IOPS
// bucket and a bytes bucket shared by every NBD connection of the volume, each holding one second
// of its limit (the burst). The NBD session asks before it takes a request off the connection;
// when a bucket is empty it stops reading that connection until the bucket refills, so the
// client sees backpressure (its requests wait in its own queue and the socket), never an error
// and never a queue inside the SDC that grows without bound.
//
// Counting: 1 token per READ, WRITE, TRIM or WRITE_ZEROES of any size; bytes = READ/WRITE
// payload (TRIM and WRITE_ZEROES move no payload). FLUSH is never throttled. A request larger
// than a whole bucket is let through once the bucket is full and drives it negative (the long-run
// rate stays exact). A limit of 0 is unlimited; limits change live (setLimits).
// Invariants: tokens never exceed one second of the limit; admit() either takes the tokens and
// returns 0 or takes nothing and returns how long to wait (>= 1 ms).

import { Limits } from "../proto/limits.ts";

export type QosCost = "io" | "flush";

class Bucket {
  /** per second; 0 = unlimited */
  private rate = 0;
  private tokens = 0;
  private lastMs = 0;

  set(ratePerSec: number, nowMs: number): void {
    if (ratePerSec === this.rate) return;
    this.refill(nowMs);
    const capacity = (ratePerSec * Limits.qosBurstMs) / 1000;
    // a new limit starts with a full burst; a lower one keeps no more than it allows
    this.tokens = this.rate === 0 ? capacity : Math.min(this.tokens, capacity);
    this.rate = ratePerSec;
    this.lastMs = nowMs;
  }

  get unlimited(): boolean {
    return this.rate === 0;
  }

  private refill(nowMs: number): void {
    if (this.rate === 0) return;
    const capacity = (this.rate * Limits.qosBurstMs) / 1000;
    this.tokens = Math.min(capacity, this.tokens + ((nowMs - this.lastMs) * this.rate) / 1000);
    this.lastMs = nowMs;
  }

  /** ms until `cost` may be taken (0: now); takes nothing */
  waitMs(cost: number, nowMs: number): number {
    if (this.rate === 0 || cost === 0) return 0;
    this.refill(nowMs);
    const need = Math.min(cost, (this.rate * Limits.qosBurstMs) / 1000);
    if (this.tokens >= need) return 0;
    return Math.max(1, Math.ceil(((need - this.tokens) * 1000) / this.rate));
  }

  take(cost: number): void {
    if (this.rate !== 0) this.tokens -= cost;
  }
}

export class QosGate {
  private readonly iops = new Bucket();
  private readonly bytes = new Bucket();
  /** requests let through and times a connection had to wait (tests, logs) */
  admitted = 0;
  throttled = 0;

  constructor(private readonly nowMs: () => number = () => performance.now()) {}

  /** Limits of the mapping: IOPS and bytes per second, 0 = unlimited. */
  setLimits(iopsPerSec: number, bytesPerSec: number): void {
    const now = this.nowMs();
    this.iops.set(iopsPerSec, now);
    this.bytes.set(bytesPerSec, now);
  }

  get unlimited(): boolean {
    return this.iops.unlimited && this.bytes.unlimited;
  }

  /**
   * A request of `payloadBytes` wants in: 0 when admitted (tokens taken), else how many ms to
   * wait before asking again. FLUSH always passes.
   */
  admit(cost: QosCost, payloadBytes: number): number {
    if (cost === "flush" || this.unlimited) return 0;
    const now = this.nowMs();
    const wait = Math.max(this.iops.waitMs(1, now), this.bytes.waitMs(payloadBytes, now));
    if (wait > 0) {
      this.throttled++;
      return wait;
    }
    this.iops.take(1);
    this.bytes.take(payloadBytes);
    this.admitted++;
    return 0;
  }
}
