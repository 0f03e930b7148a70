// One MDM's etcd lease and its self-fencing deadline. The lease (TTL 2 s by default) carries the
// MDM's member key and, while it leads, the leader key; a keepalive goes out every 500 ms
// (every 100 ms once they are late, below).
//
// Invariant (self-fencing): deadlineMs = send time of the last answered keepalive (or of the
// grant) + TTL - margin, on the monotonic clock. etcd ends the lease no earlier than TTL after it
// received that keepalive, which is after we sent it, so past the deadline etcd may have ended
// the lease (and another MDM may lead) but before it, it has not: alive() is false from the
// deadline on, whatever the network or a paused process did meanwhile. A keepalive answered
// without a TTL (the lease is gone) ends the session at once.
//
// Keepalives do not wait for each other (issue #12): etcd 3.4 parks a keepalive that reaches a
// member without a raft leader for whole election timeouts (EtcdServer.waitLeader sleeps 1 s per
// look), so one sent during an etcd election is answered a second or more late, while one sent
// just after the election is answered at once. So a keepalive is sent every keepaliveMs, and
// every retryMs once none sent in the last keepaliveMs + KEEPALIVE_LATE_MS was answered, whether
// earlier ones are still pending or not (at most MAX_KEEPALIVES_IN_FLIGHT); each answer moves the
// deadline by its own send time (never back). Before, one keepalive at a time rode out its
// timeouts across every endpoint (up to 3 x 800 ms) and the MDM lost a lease etcd had kept.
// fitToLead() tells a standby whether its keepalives are on time enough to begin a term.

import { consola } from "consola";
import type { EtcdClient } from "../../store/etcd_client.ts";

export interface LeaseTiming {
  ttlS: number;
  keepaliveMs: number;
  /** once keepalives are late (none answered for keepaliveMs + KEEPALIVE_LATE_MS), one goes out this often */
  retryMs: number;
  /** safety margin subtracted from the TTL for the self-fencing deadline */
  fenceMarginMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = { ttlS: 2, keepaliveMs: 500, retryMs: 100, fenceMarginMs: 250 };

/** a keepalive unanswered this long is parked or lost (etcd answers one in a few ms) */
export const KEEPALIVE_LATE_MS = 300;

/** keepalives pending at once: bounds the requests one session leaves parked in a sick etcd */
export const MAX_KEEPALIVES_IN_FLIGHT = 20;

/** a revoke etcd did not take is sent again this often (revoke(retryForMs)) */
export const REVOKE_RETRY_MS = 500;

/** The part of the etcd client a lease session uses (a test passes its own). */
export type LeaseClient = Pick<EtcdClient, "leaseGrant" | "leaseKeepAlive" | "leaseRevoke" | "preferredEndpoint">;

export class LeaseSession {
  private deadlineMs: number;
  private lostWhy: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private abandoned = false;
  private failures = 0;
  /** keepalives sent and not answered (nor failed) yet */
  private inFlight = 0;
  /** send time of the last keepalive sent */
  private lastSendMs: number;
  /** send time of the last keepalive that was answered with a TTL */
  lastGoodSendMs: number;

  private constructor(
    private readonly client: LeaseClient,
    readonly id: string,
    readonly ttlS: number,
    private readonly timing: LeaseTiming,
    sentAtMs: number,
    private readonly now: () => number,
    private readonly onLost: (why: string) => void,
  ) {
    this.lastGoodSendMs = sentAtMs;
    this.lastSendMs = sentAtMs;
    this.deadlineMs = sentAtMs + ttlS * 1000 - timing.fenceMarginMs;
  }

  static async open(client: LeaseClient, timing: LeaseTiming, onLost: (why: string) => void, now: () => number = () => performance.now()): Promise<LeaseSession> {
    const sentAtMs = now();
    const g = await client.leaseGrant(timing.ttlS);
    const s = new LeaseSession(client, g.id, g.ttlS, timing, sentAtMs, now, onLost);
    consola.debug(`mdm: etcd lease ${g.id} granted, TTL ${g.ttlS} s, in ${Math.round(now() - sentAtMs)} ms (via ${client.preferredEndpoint}); ${Math.round(s.remainingMs)} ms before the fencing deadline`);
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

  /**
   * Budget enough to begin a term with: the keepalives are on time (a session whose keepalives are
   * answered never has less than TTL - margin - keepaliveMs - KEEPALIVE_LATE_MS left). A session
   * below it is in trouble (an etcd election, a pause); leading on it would make a term that ends
   * within moments (issue #12: a standby won with 178 ms left and stepped down 220 ms later).
   */
  fitToLead(): boolean {
    return this.alive() && this.remainingMs >= this.minLeadBudgetMs;
  }

  get minLeadBudgetMs(): number {
    return Math.max(0, this.ttlS * 1000 - this.timing.fenceMarginMs - this.timing.keepaliveMs - KEEPALIVE_LATE_MS);
  }

  get lost(): string | null {
    return this.lostWhy;
  }

  /**
   * Stop keepalives and revoke the lease; true once etcd confirmed it. Best effort: the lease
   * expires by itself otherwise, but only TTL after the last keepalive the etcd leader saw, and a
   * new etcd leader refreshes it to TTL + its election timeout. With retryForMs, a failed revoke
   * is sent again every REVOKE_RETRY_MS for that long (an etcd without a leader or quorum takes
   * none; the first one after it has one removes the lease's keys at once).
   */
  async revoke(retryForMs = 0): Promise<boolean> {
    this.stop();
    const t0 = this.now();
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1 && this.abandoned) return false;
      try {
        await this.client.leaseRevoke(this.id);
        consola.debug(`mdm: etcd lease ${this.id} revoked in ${Math.round(this.now() - t0)} ms (attempt ${attempt})`);
        return true;
      } catch (e) {
        if (this.now() - t0 >= retryForMs) {
          consola.debug(`mdm: revoking etcd lease ${this.id} failed (${(e as Error).message}, attempt ${attempt})${retryForMs > 0 ? "; given up: it expires by itself" : ""}`);
          return false;
        }
      }
      await Bun.sleep(REVOKE_RETRY_MS);
    }
  }

  /** End a revoke still being retried (its store is closing): the lease expires by itself. */
  abandon(): void {
    this.abandoned = true;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * (Re)arm the timer: keepaliveMs after the last keepalive sent while they are answered; once
   * none sent in the last keepaliveMs + KEEPALIVE_LATE_MS was answered, every retryMs.
   */
  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const answered = this.lastGoodSendMs >= this.lastSendMs;
    const dueMs = answered ? this.lastSendMs + this.timing.keepaliveMs : Math.max(this.lastSendMs + this.timing.retryMs, this.lastGoodSendMs + this.timing.keepaliveMs + KEEPALIVE_LATE_MS);
    this.timer = setTimeout(() => this.tick(), Math.max(0, dueMs - this.now()));
  }

  private tick(): void {
    this.timer = null;
    if (this.stopped || !this.alive()) return;
    if (this.inFlight >= MAX_KEEPALIVES_IN_FLIGHT) {
      this.timer = setTimeout(() => this.tick(), this.timing.retryMs);
      return;
    }
    void this.keepalive(); // sets lastSendMs before its first await
    this.schedule();
  }

  private async keepalive(): Promise<void> {
    const sentAtMs = this.now();
    this.lastSendMs = sentAtMs;
    this.inFlight++;
    try {
      const ttl = await this.client.leaseKeepAlive(this.id, Math.max(this.timing.keepaliveMs + 300, 800));
      if (this.stopped) return;
      if (ttl === null) {
        this.lose(`etcd says lease ${this.id} no longer exists`);
        return;
      }
      if (this.failures > 0) consola.debug(`mdm: etcd keepalive of lease ${this.id} answered again after ${this.failures} failure(s)`);
      this.failures = 0;
      this.lastGoodSendMs = Math.max(this.lastGoodSendMs, sentAtMs);
      this.deadlineMs = Math.max(this.deadlineMs, sentAtMs + ttl * 1000 - this.timing.fenceMarginMs);
      consola.debug(`mdm: etcd keepalive of lease ${this.id}: TTL ${ttl} s in ${Math.round(this.now() - sentAtMs)} ms (via ${this.client.preferredEndpoint}; ${this.inFlight - 1} more pending); ${Math.round(this.remainingMs)} ms before the fencing deadline`);
      // the newest keepalive answered: back from retryMs to keepaliveMs
      if (this.lastGoodSendMs >= this.lastSendMs) this.schedule();
    } catch (e) {
      if (this.stopped) return;
      const msg = `mdm: etcd keepalive of lease ${this.id} failed after ${Math.round(this.now() - sentAtMs)} ms (${(e as Error).message}); ${Math.round(this.remainingMs)} ms before this MDM stops acting`;
      if (this.failures++ === 0) consola.warn(msg);
      else consola.debug(msg);
    } finally {
      this.inFlight--;
    }
  }

  private lose(why: string): void {
    if (this.lostWhy !== null) return;
    consola.debug(`mdm: etcd lease ${this.id} lost: ${why}`);
    this.lostWhy = why;
    this.stop();
    this.onLost(why);
  }
}
