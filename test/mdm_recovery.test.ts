// Failure detection and recovery on the MDM, as an operator would see it, in-process with a fake
// clock and fake SDSs heartbeating through the cluster API: an SDS goes silent -> Disconnected
// exactly at the timeout; its extents degrade (epoch and mapVersion bumped, primary switched,
// away copies kept); after the grace period rebuild targets are placed (placement rules, fault
// sets, throttle); reports move the progress and a done report installs the copy; a stale epoch
// is ignored; a return within the grace period resyncs the same copy, a later one is freed; a
// failed device skips the grace period; an MDM restart keeps state and declares nobody down early.

import { afterEach, describe, expect, test } from "bun:test";
import { Limits } from "../src/proto/limits.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";
import { MAX_EXTENT_CHANGES_PER_TICK, firstChanges } from "../src/mdm/recovery/recovery.ts";
import type { ExtentChange } from "../src/mdm/recovery/rebuild_planner.ts";
import type { PlannedExtent } from "../src/mdm/recovery/recovery_model.ts";

const TIMEOUT = 2000;
const GRACE = 10_000;
const STALL = 5000;
const recovery = { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE, stallTimeoutMs: STALL };

let c: RecoveryCluster;
afterEach(() => c?.close());

async function fourSds(opts: { faultSets?: boolean } = {}): Promise<RecoveryCluster> {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 1; i <= 4; i++) await c.addSds(`sds${i}`, opts.faultSets ? { faultSet: `fs${((i - 1) % 2) + 1}` } : {});
  return c;
}

const onSds = (sdsId: string) => (e: { inSync: { sdsId: string }[] }) => e.inSync.some((x) => x.sdsId === sdsId);

describe("detection and degrade", () => {
  test("a silent SDS is Disconnected at the timeout and not before; its extents degrade with new epochs", async () => {
    await fourSds();
    const vol = await c.createVolume("v1", 2); // 32 extents of 64 MiB
    const sds3 = c.id("sds3");
    const before = c.extents();
    const mine = before.filter(onSds(sds3));
    expect(mine.length).toBeGreaterThan(0);
    const primaries = mine.filter((e) => e.inSync[0]!.sdsId === sds3);
    expect(primaries.length).toBeGreaterThan(0);
    const mv0 = c.mapVersion();

    c.alive.delete("sds3");
    await c.advance(TIMEOUT - 1, TIMEOUT - 1);
    expect((await c.sdsObject("sds3")).mdmConnectionState).toBe("Connected");
    expect(c.mapVersion()).toBe(mv0);
    expect(c.extents()).toEqual(before);

    await c.advance(1, 1);
    expect((await c.sdsObject("sds3")).mdmConnectionState).toBe("Disconnected");
    expect(c.mapVersion()).toBeGreaterThan(mv0);
    const after = new Map(c.extents().map((e) => [`${e.volumeId}/${e.idx}`, e]));
    for (const e of mine) {
      const now = after.get(`${e.volumeId}/${e.idx}`)!;
      expect(now.epoch).toBe(e.epoch + 1);
      expect(now.inSync.map((x) => x.sdsId)).toEqual(e.inSync.map((x) => x.sdsId).filter((x) => x !== sds3));
      expect(now.away).toMatchObject({ sdsId: sds3, sinceMs: c.now() });
      expect(now.target).toBeNull(); // within the grace period: wait for it
    }
    for (const e of before.filter((x) => !onSds(sds3)(x))) expect(after.get(`${e.volumeId}/${e.idx}`)).toEqual(e);

    // the SDC map lists the surviving copy only, primary first
    const sdc = await c.m.joinSdc("guid-1", "sdc1");
    await c.m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: sdc });
    const maps = (await c.m.cluster("GET", `/sdc/${sdc}/maps`)).json as { volumes: { extents: { epoch: number; replicas: string[] }[] }[] };
    for (const e of mine) {
      const m = maps.volumes[0]!.extents[e.idx]!;
      expect(m.replicas).toEqual([e.inSync.find((x) => x.sdsId !== sds3)!.sdsId]);
      expect(m.epoch).toBe(e.epoch + 1);
    }
    // the away SDS keeps its copies as "away"; survivors that became primary say so
    const away = await c.assignments("sds3");
    expect(away.extents.length).toBe(mine.length);
    for (const a of away.extents) expect(a.role).toBe("away");
    for (const e of primaries) {
      const survivor = c.byId(e.inSync[1]!.sdsId).name;
      const a = (await c.assignments(survivor)).extents.find((x) => x.extentIndex === e.idx)!;
      expect(a.role).toBe("primary");
      expect(a.replicas).toEqual([e.inSync[1]!.sdsId]);
    }
    const st = await c.status();
    expect(st).toMatchObject({ storagePoolState: "Degraded", rebuildState: "WaitingForReturn", numOfDegradedExtents: mine.length, numOfWaitingExtents: mine.length });
    const pool = (await c.m.api("GET", `/instances/StoragePool::${await c.poolId()}`)).json as Record<string, unknown>;
    expect(pool).toMatchObject({ storagePoolState: "Degraded", rebuildState: "WaitingForReturn", rebuildStalled: false });
  });

  test("the lease handed to SDSs derives from the timeout and stays below it; a timeout too short is refused", async () => {
    c = await RecoveryCluster.open({ recovery });
    await c.addSds("sds1");
    const hb = await c.heartbeat("sds1");
    expect(hb.leaseMs).toBe(Math.floor(TIMEOUT * Limits.leaseToTimeoutRatio));
    expect(hb.leaseMs).toBeLessThan(TIMEOUT);
    await expect(RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: 1000 } })).rejects.toThrow(/too short/);
  });
});

describe("rebuild", () => {
  test("after the grace period targets obey placement and the throttle; reports move progress; done installs the copy", async () => {
    await fourSds();
    await c.createVolume("v1", 2);
    const sds3 = c.id("sds3");
    const mine = c.extents().filter(onSds(sds3));
    c.alive.delete("sds3");
    await c.advance(TIMEOUT);
    await c.advance(GRACE - 1000);
    expect(c.extents().filter((e) => e.target !== null).length).toBe(0);
    await c.advance(1000);

    const throttle = Limits.maxConcurrentRebuildsPerSds * 3; // 3 connected SDSs
    let running = c.extents().filter((e) => e.target !== null);
    expect(running.length).toBe(Math.min(throttle, mine.length));
    for (const e of running) {
      expect(e.target!.mode).toBe("full");
      expect(e.target!.sdsId).not.toBe(sds3);
      expect(e.target!.sdsId).not.toBe(e.inSync[0]!.sdsId);
      expect(e.away).toBeNull(); // the stale copy is dropped
    }
    // the primary's assignment carries the sync target, the target's says "target"
    const first = running[0]!;
    const primary = c.byId(first.inSync[0]!.sdsId).name;
    const pa = (await c.assignments(primary)).extents.find((x) => x.volumeId === first.volumeId && x.extentIndex === first.idx)!;
    expect(pa.syncTarget).toEqual({ sdsId: first.target!.sdsId, mode: "full" });
    const ta = (await c.assignments(c.byId(first.target!.sdsId).name)).extents.find((x) => x.volumeId === first.volumeId && x.extentIndex === first.idx)!;
    expect(ta).toMatchObject({ role: "target", replicas: [first.inSync[0]!.sdsId], syncTarget: null });
    // the copy throttle handed to SDSs is the pool's rebuild rate limit (default 10240 KiB/s), 0 = unlimited
    expect((await c.assignments(primary)).rebuildRateBytesPerSec).toBe(10240 * 1024);
    await c.m.api("POST", `/instances/StoragePool::${await c.poolId()}/action/setRebuildIoPriorityPolicy`, { policy: "unlimited" });
    expect((await c.assignments(primary)).rebuildRateBytesPerSec).toBe(0);
    // the returning SDS (after the grace period) would free its copies: nothing assigned any more
    expect((await c.assignments("sds3")).extents.filter((x) => mine.some((e) => e.idx === x.extentIndex && e.volumeId === x.volumeId && running.some((r) => r.idx === e.idx))).length).toBe(0);

    // progress: half of one copy
    const half = 32 * 1024 * 1024;
    const report = { volumeId: first.volumeId, extentIndex: first.idx, epoch: first.epoch, targetSdsId: first.target!.sdsId, copiedBytes: half, totalBytes: 2 * half, done: false };
    await c.heartbeat(primary, [report]);
    let st = await c.status();
    expect(st.rebuildState).toBe("Rebuilding");
    expect(st.copiedInKb).toBe(half / 1024);
    expect(st.numOfActiveRebuildExtents).toBe(running.length);
    expect(st.numOfPendingRebuildExtents).toBe(mine.length - running.length);
    expect(st.rebuildRateInKbps).toBeGreaterThan(0);
    expect(st.rebuildEtaSeconds).not.toBeNull();
    expect(st.rebuildProgressPercent).toBeGreaterThan(0);
    expect(st.rebuildProgressPercent).toBeLessThan(100);

    // a stale epoch changes nothing; a report from a non-primary neither
    const mv = c.mapVersion();
    await c.heartbeat(primary, [{ ...report, epoch: first.epoch - 1, copiedBytes: 2 * half, done: true }]);
    await c.heartbeat(c.byId(first.target!.sdsId).name, [{ ...report, copiedBytes: 2 * half, done: true }]);
    expect(c.mapVersion()).toBe(mv);
    expect(c.extents().find((e) => e.volumeId === first.volumeId && e.idx === first.idx)).toEqual(first);

    // done: the target becomes the secondary under a new epoch
    await c.heartbeat(primary, [{ ...report, copiedBytes: 2 * half, done: true }]);
    const done = c.extents().find((e) => e.volumeId === first.volumeId && e.idx === first.idx)!;
    expect(done.epoch).toBe(first.epoch + 1);
    expect(done.inSync.map((x) => x.sdsId)).toEqual([first.inSync[0]!.sdsId, first.target!.sdsId]);
    expect(done.target).toBeNull();
    expect(c.mapVersion()).toBeGreaterThan(mv);

    // the rest: the planner keeps the throttle while it works through the queue
    for (let round = 0; round < 100; round++) {
      c.tick();
      running = c.extents().filter((e) => e.target !== null);
      expect(running.length).toBeLessThanOrEqual(throttle);
      if ((await c.completeCopies()) === 0) break;
    }
    const end = c.extents();
    for (const e of end) {
      expect(e.inSync.length).toBe(2);
      expect(e.inSync.some((x) => x.sdsId === sds3)).toBe(false);
      expect(e.away).toBeNull();
    }
    st = await c.status();
    expect(st).toMatchObject({ storagePoolState: "Normal", rebuildState: "Idle", numOfDegradedExtents: 0, remainingInKb: 0, rebuildProgressPercent: 100 });
  });

  test("with fault sets a target is never in the fault set of the surviving copy", async () => {
    await fourSds({ faultSets: true }); // sds1, sds3 in fs1; sds2, sds4 in fs2
    await c.createVolume("v1", 2);
    c.alive.delete("sds2");
    await c.advance(TIMEOUT + GRACE);
    await c.settle();
    const fs = (id: string) => c.byId(id).faultSet;
    for (const e of c.extents()) {
      expect(e.inSync.length).toBe(2);
      expect(fs(e.inSync[0]!.sdsId)).not.toBe(fs(e.inSync[1]!.sdsId));
      expect(e.inSync.some((x) => x.sdsId === c.id("sds2"))).toBe(false);
    }
  });

  test("the target SDS going down during a copy drops it (new epoch) and the planner picks another", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    c.alive.delete("sds1");
    await c.advance(TIMEOUT + GRACE);
    const running = c.extents().filter((e) => e.target !== null);
    const victim = running.find((e) => e.target!.sdsId !== c.id("sds4") && e.inSync[0]!.sdsId !== c.id("sds4")) ?? running[0]!;
    const targetName = c.byId(victim.target!.sdsId).name;
    c.alive.delete(targetName);
    await c.advance(TIMEOUT);
    const now = c.extents().find((e) => e.volumeId === victim.volumeId && e.idx === victim.idx)!;
    expect(now.epoch).toBeGreaterThan(victim.epoch);
    if (now.target) expect(now.target.sdsId).not.toBe(victim.target!.sdsId);
  });
});

describe("return of an SDS", () => {
  test("back within the grace period: its own copy becomes a resync target, then in-sync again", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    const sds2 = c.id("sds2");
    const mine = c.extents().filter(onSds(sds2));
    c.alive.delete("sds2");
    await c.advance(TIMEOUT + 3000);
    c.alive.add("sds2");
    await c.advance(1000);
    const resyncs = c.extents().filter((e) => e.target !== null);
    expect(resyncs.length).toBe(Math.min(mine.length, Limits.maxConcurrentRebuildsPerSds * 4));
    for (const e of resyncs) expect(e.target).toMatchObject({ sdsId: sds2, mode: "resync" });
    const a = await c.assignments("sds2");
    expect(a.extents.filter((x) => x.role === "target").length).toBe(resyncs.length);
    await c.settle();
    const end = c.extents();
    for (const e of mine) {
      const now = end.find((x) => x.volumeId === e.volumeId && x.idx === e.idx)!;
      expect(now.inSync.map((x) => x.sdsId)).toContain(sds2);
      expect(now.inSync.length).toBe(2);
    }
    expect((await c.status()).storagePoolState).toBe("Normal");
  });

  test("back after the grace period: its assignments no longer list the extents, rebuilt elsewhere", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    const sds2 = c.id("sds2");
    const mine = c.extents().filter(onSds(sds2));
    c.alive.delete("sds2");
    await c.advance(TIMEOUT + GRACE + 1000);
    for (const e of c.extents()) expect(e.away).toBeNull();
    c.alive.add("sds2");
    await c.heartbeat("sds2");
    const a = await c.assignments("sds2");
    for (const e of mine) expect(a.extents.some((x) => x.volumeId === e.volumeId && x.extentIndex === e.idx && x.role !== "target")).toBe(false);
    const running = c.extents().filter((e) => e.target !== null);
    expect(running.length).toBeGreaterThan(0);
    for (const e of running) expect(e.target!.mode).toBe("full");
    await c.settle();
    for (const e of c.extents()) expect(e.inSync.length).toBe(2);
  });

  test("a failed device skips the grace period: its copies are rebuilt at once, none kept away", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    const s = c.sds.get("sds1")!;
    const mine = c.extents().filter(onSds(s.id));
    c.failedDevices.add(s.devices[0]!);
    await c.heartbeat("sds1");
    c.tick();
    const dev = (await c.m.api("GET", `/instances/Device::${s.devices[0]}`)).json as Record<string, unknown>;
    expect(dev).toMatchObject({ deviceState: "Failed", errorState: "Error" });
    const now = c.extents();
    for (const e of mine) {
      const x = now.find((y) => y.volumeId === e.volumeId && y.idx === e.idx)!;
      expect(x.inSync.some((y) => y.sdsId === s.id)).toBe(false);
      expect(x.away).toBeNull();
      expect(x.epoch).toBe(e.epoch + 1);
    }
    expect(now.filter((e) => e.target !== null).length).toBe(Math.min(mine.length, Limits.maxConcurrentRebuildsPerSds * 4));
    await c.settle();
    for (const e of c.extents()) {
      expect(e.inSync.length).toBe(2);
      expect(e.inSync.some((y) => y.sdsId === s.id)).toBe(false);
    }
  });
});

describe("double failure", () => {
  test("both holders of an extent down: the pool is Failed, membership kept; the first holder back serves again", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    const e = c.extents()[0]!;
    const [a, b] = e.inSync.map((x) => c.byId(x.sdsId).name) as [string, string];
    c.alive.delete(a);
    c.alive.delete(b);
    await c.advance(TIMEOUT);
    const now = c.extents().find((x) => x.idx === e.idx)!;
    expect(now.inSync.map((x) => x.sdsId)).toEqual(e.inSync.map((x) => x.sdsId)); // nothing to switch to
    const st = await c.status();
    expect(st.storagePoolState).toBe("Failed");
    expect(st.numOfUnavailableExtents).toBeGreaterThanOrEqual(1);
    const stats = (await c.m.api("GET", `/instances/StoragePool::${await c.poolId()}/relationships/Statistics`)).json as Record<string, number>;
    expect(stats.degradedFailedCapacityInKb).toBe(st.unavailableCapacityInKb);
    // b returns first: it becomes the only in-sync copy (primary), a is kept away
    c.alive.add(b);
    await c.advance(1000);
    const back = c.extents().find((x) => x.idx === e.idx)!;
    expect(back.inSync.map((x) => x.sdsId)).toEqual([c.id(b)]);
    expect(back.away?.sdsId).toBe(c.id(a));
    expect((await c.status()).storagePoolState).toBe("Degraded");
  });
});

describe("MDM restart", () => {
  test("state survives; nobody is declared down before a full timeout after the restart", async () => {
    await fourSds();
    await c.createVolume("v1", 1);
    c.alive.delete("sds4");
    await c.advance(TIMEOUT);
    const degraded = c.extents();
    expect(degraded.some((e) => e.away !== null)).toBe(true);
    // the MDM is down for a long time: nobody's heartbeat arrives
    c.m.clock.advance(5000);
    c = await c.restart({ recovery });
    expect(c.extents()).toEqual(degraded);
    for (const n of ["sds1", "sds2", "sds3"]) expect((await c.sdsObject(n)).mdmConnectionState).toBe("Connected");
    c.m.clock.advance(TIMEOUT - 1);
    c.tick();
    expect(c.extents()).toEqual(degraded);
    // the live ones check in; sds4 stays silent and is Disconnected after the full timeout
    await c.beatAll();
    c.m.clock.advance(1);
    c.tick();
    expect((await c.sdsObject("sds4")).mdmConnectionState).toBe("Disconnected");
    for (const n of ["sds1", "sds2", "sds3"]) expect((await c.sdsObject(n)).mdmConnectionState).toBe("Connected");
  });
});

describe("a big loss", () => {
  test(`a step persists at most ${MAX_EXTENT_CHANGES_PER_TICK} extent changes; the next ticks do the rest`, async () => {
    c = await RecoveryCluster.open({ recovery });
    for (let i = 1; i <= 3; i++) await c.addSds(`sds${i}`, { devicesGiB: [1000] });
    // 2 x 200 GiB thin: 6,400 extents of 64 MiB; sds3 holds ~2/3 of them
    await c.createVolume("big1", 200);
    await c.createVolume("big2", 200);
    const lost = c.id("sds3");
    const held = (c.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id = ?1 OR secondary_sds_id = ?1").get(lost) as { n: number }).n;
    expect(held).toBeGreaterThan(MAX_EXTENT_CHANGES_PER_TICK);
    c.alive.delete("sds3");
    c.m.clock.advance(TIMEOUT + 1);
    await c.beatAll();
    const first = c.tick();
    expect(first.changed).toBe(MAX_EXTENT_CHANGES_PER_TICK);
    const second = c.tick();
    expect(second.changed).toBe(held - MAX_EXTENT_CHANGES_PER_TICK);
    // every copy on the lost SDS left the in-sync set, each extent once (epoch + 1)
    const left = (c.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id = ?1 OR secondary_sds_id = ?1").get(lost) as { n: number }).n;
    expect(left).toBe(0);
    const bumped = (c.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent WHERE epoch = 2").get() as { n: number }).n;
    expect(bumped).toBe(held);
    expect(c.tick().changed).toBe(0);
  }, 120_000);

  test("a step cut to its cap takes every membership repair before any copy start", () => {
    const copy = (sdsId: string) => ({ sdsId, deviceId: `${sdsId}-d` });
    const ext = (idx: number, target: ReturnType<typeof copy> | null) =>
      ({ volumeId: "v", idx, epoch: 1, inSync: [copy("a")], target, away: null }) as unknown as PlannedExtent;
    const repair = (idx: number): ExtentChange => ({ before: ext(idx, copy("x")), after: ext(idx, null), reasons: ["drop"] });
    const start = (idx: number): ExtentChange => ({ before: ext(idx, null), after: ext(idx, copy("b")), reasons: ["rebuild"] });
    const plan = [start(0), repair(1), start(2), repair(3), repair(4), start(5)];
    expect(firstChanges(plan, 4).map((c) => c.after.idx)).toEqual([1, 3, 4, 0]);
    // repairs alone over the cap: no copy start in that step (it might count on what a later repair frees)
    expect(firstChanges(plan, 2).map((c) => c.after.idx)).toEqual([1, 3]);
    expect(firstChanges(plan, 10)).toHaveLength(6);
  });
});
