// The MDM's etcd lease session (src/mdm/ha/lease_session.ts) against a scripted etcd: keepalives
// that etcd parks during a raft election (etcd 3.4 answers one that reached a member without a
// leader only at its next 1 s look for one) must not hold back the keepalives sent after the
// election (issue #12), the deadline never moves back, a session with late keepalives is not fit
// to begin a term, a sick etcd never has more than MAX_KEEPALIVES_IN_FLIGHT of ours parked, and a
// revoke etcd did not take is retried when asked.

import { expect, test } from "bun:test";
import { loopLag } from "./helpers/loop_lag.ts";
import { KEEPALIVE_LATE_MS, LeaseSession, MAX_KEEPALIVES_IN_FLIGHT, REVOKE_RETRY_MS, type LeaseClient, type LeaseTiming } from "../src/mdm/ha/lease_session.ts";

// TTL 1 s: deadline 900 ms after the last answered keepalive's send
const TIMING: LeaseTiming = { ttlS: 1, keepaliveMs: 100, retryMs: 20, fenceMarginMs: 100 };

/** A fake etcd lease API: answer(sentAtMs) decides each keepalive (a TTL, null = lease gone, or "park"). */
function scriptedEtcd(answer: (sinceStartMs: number) => number | null | { parkMs: number }, revokesRefused = 0, timing: LeaseTiming = TIMING) {
  const t0 = performance.now();
  const stats = { keepalives: 0, inFlight: 0, maxInFlight: 0, revoked: 0, revokeAttempts: 0 };
  const client: LeaseClient = {
    preferredEndpoint: "http://scripted",
    leaseGrant: async (ttlS: number) => ({ id: "7", ttlS }),
    leaseRevoke: async () => {
      if (++stats.revokeAttempts <= revokesRefused) throw new Error("etcdserver: no leader");
      stats.revoked++;
    },
    leaseKeepAlive: async () => {
      stats.keepalives++;
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      try {
        const a = answer(performance.now() - t0);
        if (a !== null && typeof a === "object") {
          await Bun.sleep(a.parkMs);
          return timing.ttlS;
        }
        return a;
      } finally {
        stats.inFlight--;
      }
    },
  };
  return { client, stats };
}

test("keepalives parked by an etcd election do not hold back the ones sent after it: the session lives through a 1200 ms election", async () => {
  // TTL 3 s (deadline 2.8 s after the last answered send): a keepalive sent after the election
  // has 1.4 s to be answered, so a loaded host that runs this process late does not end the
  // session; the parked ones alone would (they come back at 3.2 s at the earliest). retryMs 80:
  // the retries during the election stay below MAX_KEEPALIVES_IN_FLIGHT.
  const timing: LeaseTiming = { ttlS: 3, keepaliveMs: 200, retryMs: 80, fenceMarginMs: 200 };
  const election = { fromMs: 200, toMs: 1400 };
  const parkMs = 3000;
  // every keepalive that arrives during the "election" is answered only parkMs later, past the
  // deadline; the ones after it are answered at once
  const etcd = scriptedEtcd((at) => (at >= election.fromMs && at < election.toMs ? { parkMs } : timing.ttlS), 0, timing);
  const lost: string[] = [];
  const s = await LeaseSession.open(etcd.client, timing, (why) => lost.push(why));
  let minRemainingMs = Infinity;
  const lag = loopLag();
  const until = performance.now() + 3600;
  while (performance.now() < until) {
    expect(s.alive()).toBe(true);
    minRemainingMs = Math.min(minRemainingMs, s.remainingMs);
    await Bun.sleep(10);
  }
  s.stop();
  const lateMs = lag.stop();
  expect(lost).toEqual([]);
  expect(etcd.stats.maxInFlight).toBeLessThan(MAX_KEEPALIVES_IN_FLIGHT);
  // it came close (the election ate much of the budget), and it was saved by a keepalive sent
  // after it (100 ms, plus however late this process's loop ran: the samples are its own ticks)
  expect(minRemainingMs).toBeLessThan(timing.ttlS * 1000 - timing.fenceMarginMs - (election.toMs - election.fromMs) + 100 + lateMs);
  expect(s.lastGoodSendMs).toBeGreaterThan(0);
  await Bun.sleep(parkMs + 100); // the parked ones come back after stop(): ignored
  expect(lost).toEqual([]);
});

test("while keepalives are late the session is not fit to begin a term; an answer makes it fit again", async () => {
  let park = false;
  const etcd = scriptedEtcd(() => (park ? { parkMs: 5000 } : TIMING.ttlS));
  const s = await LeaseSession.open(etcd.client, TIMING, () => {});
  await Bun.sleep(250);
  expect(s.fitToLead()).toBe(true);
  park = true;
  // no answer for keepaliveMs + KEEPALIVE_LATE_MS and more: below the budget a term needs
  await Bun.sleep(TIMING.keepaliveMs + KEEPALIVE_LATE_MS + 150);
  expect(s.alive()).toBe(true);
  expect(s.remainingMs).toBeLessThan(s.minLeadBudgetMs);
  expect(s.fitToLead()).toBe(false);
  park = false;
  await Bun.sleep(3 * TIMING.retryMs + 20); // retries go out every retryMs meanwhile
  expect(s.fitToLead()).toBe(true);
  s.stop();
});

test("an etcd that answers no keepalive: at most MAX_KEEPALIVES_IN_FLIGHT parked, the session ends at its deadline", async () => {
  // TTL 2 s: retries every 20 ms from 400 ms on would be 75 by the 1.9 s deadline, so the cap is
  // reached even when a loaded host runs this process's timers late
  const timing: LeaseTiming = { ...TIMING, ttlS: 2 };
  const etcd = scriptedEtcd(() => ({ parkMs: 5000 }), 0, timing);
  const lost: { why: string; atMs: number }[] = [];
  const t0 = performance.now();
  const lag = loopLag();
  const s = await LeaseSession.open(etcd.client, timing, (why) => lost.push({ why, atMs: performance.now() - t0 }));
  await Bun.sleep(2300);
  const lateMs = lag.stop();
  expect(lost.length).toBe(1);
  expect(lost[0]!.why).toContain("no keepalive answered");
  // deadline = grant + TTL - margin = 1900 ms (the 100 ms fence checks are the session's own
  // ticks, which run as late as this process's loop does)
  expect(lost[0]!.atMs).toBeGreaterThanOrEqual(timing.ttlS * 1000 - timing.fenceMarginMs - 5);
  expect(lost[0]!.atMs).toBeLessThan(timing.ttlS * 1000 - timing.fenceMarginMs + 100 + lateMs);
  // the cap stops the retries
  expect(etcd.stats.maxInFlight).toBe(MAX_KEEPALIVES_IN_FLIGHT);
  const sent = etcd.stats.keepalives;
  await Bun.sleep(200);
  expect(etcd.stats.keepalives).toBe(sent); // none after the session ended
  expect(s.alive()).toBe(false);
});

test("a keepalive answered without a TTL (the lease is gone) ends the session at once; revoke stops the keepalives", async () => {
  let gone = false;
  const etcd = scriptedEtcd(() => (gone ? null : TIMING.ttlS));
  const lost: string[] = [];
  const s = await LeaseSession.open(etcd.client, TIMING, (why) => lost.push(why));
  await Bun.sleep(150);
  gone = true;
  await Bun.sleep(150);
  expect(lost).toEqual(["etcd says lease 7 no longer exists"]);
  expect(s.alive()).toBe(false);
  const etcd2 = scriptedEtcd(() => TIMING.ttlS);
  const s2 = await LeaseSession.open(etcd2.client, TIMING, () => {});
  await Bun.sleep(250);
  await s2.revoke();
  const sent = etcd2.stats.keepalives;
  expect(sent).toBeGreaterThanOrEqual(1);
  expect(etcd2.stats.revoked).toBe(1);
  await Bun.sleep(250);
  expect(etcd2.stats.keepalives).toBe(sent);
});

test("a revoke etcd does not take (no leader) is sent again every REVOKE_RETRY_MS while retryForMs lasts; without it, one attempt", async () => {
  const once = scriptedEtcd(() => TIMING.ttlS, 2);
  const s1 = await LeaseSession.open(once.client, TIMING, () => {});
  expect(await s1.revoke()).toBe(false);
  expect(once.stats.revokeAttempts).toBe(1);
  const retried = scriptedEtcd(() => TIMING.ttlS, 2);
  const s2 = await LeaseSession.open(retried.client, TIMING, () => {});
  const t0 = performance.now();
  expect(await s2.revoke(10_000)).toBe(true);
  expect(retried.stats).toMatchObject({ revokeAttempts: 3, revoked: 1 });
  expect(performance.now() - t0).toBeGreaterThanOrEqual(2 * REVOKE_RETRY_MS - 20);
});
