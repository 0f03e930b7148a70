// One MDM's etcd lease and its self-fencing deadline. The lease (TTL 2 s by default) carries the
// MDM's member key and, while it leads, the leader key; a keepalive goes out every 500 ms.
//
// Invariant (self-fencing): deadlineMs = send time of the last answered keepalive (or of the
// grant) + TTL - margin, on the monotonic clock. etcd ends the lease no earlier than TTL after it
// received that keepalive, which is after we sent it, so past the deadline etcd may have ended
// the lease (and another MDM may lead) but before it, it has not: alive() is false from the
// deadline on, whatever the network or a paused process did meanwhile. A keepalive answered
// without a TTL (the lease is gone) ends the session at once.

import { consola } from "consola";
import type { EtcdClient } from "../../store/etcd_client.ts";

export interface LeaseTiming {
  ttlS: number;
  keepaliveMs: number;
  /** safety margin subtracted from the TTL for the self-fencing deadline */
  fenceMarginMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { ttlS: 2, keepaliveMs: 500, fenceMarginMs: 250 };

export class LeaseSession {
  private deadlineMs: number;
  private lostWhy: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private failures = 0;
  /** send time of the last keepalive that was answered with a TTL */
  lastGoodSendMs: number;

  private constructor(
    private readonly client: EtcdClient,
    readonly id: string,
    readonly ttlS: number,
    private readonly timing: LeaseTiming,
    sentAtMs: number,
    private readonly now: () => number,
    private readonly onLost: (why: string) => void,
  ) {
    this.lastGoodSendMs = sentAtMs;
    this.deadlineMs = sentAtMs + ttlS * 1000 - timing.fenceMarginMs;
  }

  static async open(client: EtcdClient, timing: LeaseTiming, onLost: (why: string) => void, now: () => number = () => performance.now()): Promise<LeaseSession> {
    const sentAtMs = now();
    const g = await client.leaseGrant(timing.ttlS);
    const s = new LeaseSession(client, g.id, g.ttlS, timing, sentAtMs, now, onLost);
    s.schedule();
    return s;
  }

  /** ms left before this MDM must stop acting (negative once past). */
  get remainingMs(): number {
    return this.deadlineMs - this.now();
  }

  /** The lease surely still exists in etcd (deadline not reached, no keepalive said it is gone). */
  alive(): boolean {
    if (this.lostWhy !== null) return false;
    if (this.now() < this.deadlineMs) return true;
    this.lose(`no keepalive answered for ${Math.round(this.now() - this.lastGoodSendMs)} ms (lease TTL ${this.ttlS} s)`);
    return false;
  }

  get lost(): string | null {
    return this.lostWhy;
  }

  /** Stop keepalives and revoke the lease (best effort: it expires by itself otherwise). */
  async revoke(): Promise<void> {
    this.stop();
    try {
      await this.client.leaseRevoke(this.id);
    } catch (e) {
      consola.debug(`mdm: revoking etcd lease ${this.id} failed (${(e as Error).message}); it expires within ${this.ttlS} s`);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.keepalive(), this.timing.keepaliveMs);
  }

  private async keepalive(): Promise<void> {
    if (this.stopped || this.lostWhy !== null) return;
    const sentAtMs = this.now();
    try {
      const ttl = await this.client.leaseKeepAlive(this.id, Math.max(this.timing.keepaliveMs + 300, 800));
      if (this.stopped) return;
      if (ttl === null) {
        this.lose(`etcd says lease ${this.id} no longer exists`);
        return;
      }
      this.failures = 0;
      this.lastGoodSendMs = sentAtMs;
      this.deadlineMs = Math.max(this.deadlineMs, sentAtMs + ttl * 1000 - this.timing.fenceMarginMs);
    } catch (e) {
      if (this.failures++ === 0) consola.warn(`mdm: etcd keepalive failed (${(e as Error).message}); ${Math.round(this.remainingMs)} ms before this MDM stops acting`);
    }
    if (!this.alive()) return;
    this.schedule();
  }

  private lose(why: string): void {
    if (this.lostWhy !== null) return;
    this.lostWhy = why;
    this.stop();
    this.onLost(why);
  }
}
