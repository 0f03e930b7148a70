// The recovery step's worklist (src/mdm/recovery/recovery_worklist.ts): a loss bigger than one
// step is worked through over several steps, each loading at most a slice of the attention
// extents, failovers before any copy starts, and the recovery completes; the worklist's passes
// restart on a change of SDS state.

import { afterEach, describe, expect, test } from "bun:test";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";
import { listedSource, RecoveryWorklist } from "../src/mdm/recovery/recovery_worklist.ts";
import type { SdsView } from "../src/mdm/recovery/target_placement.ts";

const TIMEOUT = 2000;
let c: RecoveryCluster;
afterEach(() => c?.close());

const count = (sql: string, ...args: string[]): number => (c.ctx.store.sqlite.query(sql).get(...args) as { n: number }).n;

describe("a loss bigger than one step", () => {
  test("is repaired over several steps of at most a slice each, failovers before copies, and the rebuild completes", async () => {
    c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: 0, stallTimeoutMs: 60_000 } });
    // three fault sets of two SDSs: both SDSs of fs1 lost at once, every extent keeps one copy
    for (let i = 1; i <= 6; i++) await c.addSds(`sds${i}`, { faultSet: `fs${Math.ceil(i / 2)}`, devicesGiB: [200] });
    await c.createVolume("v1", 20); // 320 extents of 64 MiB
    await c.createVolume("v2", 20);
    const SLICE = 16;
    c.ctx.recovery.worklist.setMaxSlice(SLICE);
    const lost = [c.id("sds1"), c.id("sds2")];
    const onLost = () => count("SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id IN (?1, ?2) OR secondary_sds_id IN (?1, ?2)", lost[0]!, lost[1]!);
    const held = onLost();
    expect(held).toBeGreaterThan(4 * SLICE);
    c.alive.delete("sds1");
    c.alive.delete("sds2");
    c.m.clock.advance(TIMEOUT + 1);
    await c.beatAll();
    // the first pass: failovers only, a slice per step
    let steps = 0;
    for (;;) {
      const running = count("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL");
      const r = c.tick();
      steps++;
      expect(r.examined).toBeLessThanOrEqual(SLICE);
      // a step changes at most its slice and the running copies
      expect(r.changed).toBeLessThanOrEqual(r.examined + running);
      if (r.failoversLeft > 0) expect(count("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL")).toBe(0);
      if (r.failoversLeft === 0) break;
      expect(steps).toBeLessThan(1000);
      c.m.clock.advance(250);
      await c.beatAll();
    }
    expect(steps).toBeGreaterThanOrEqual(Math.ceil(held / SLICE));
    expect(onLost()).toBe(0);
    // then copies start from later slices and passes, within the budget, until every extent has two copies
    for (let round = 0; count("SELECT COUNT(*) AS n FROM extent WHERE secondary_sds_id IS NULL OR target_sds_id IS NOT NULL") > 0; round++) {
      expect(round).toBeLessThan(2000);
      c.m.clock.advance(250);
      await c.beatAll();
      const running = count("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL");
      const r = c.tick();
      expect(r.examined).toBeLessThanOrEqual(SLICE);
      expect(r.changed).toBeLessThanOrEqual(r.examined + running);
      await c.completeCopies();
    }
    expect(count("SELECT COUNT(*) AS n FROM extent WHERE secondary_sds_id IS NULL OR away_sds_id IS NOT NULL")).toBe(0);
    expect(onLost()).toBe(0);
    expect(count("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IN (?1, ?2) OR away_sds_id IN (?1, ?2)", lost[0]!, lost[1]!)).toBe(0);
    expect(c.ctx.recovery.worklist.passes).toBeGreaterThan(1);
  }, 120_000);
});

describe("review regressions", () => {
  test("a step whose failovers exceed the commit's change cap plans the same slice again: every failover before any copy starts", async () => {
    c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: 0, stallTimeoutMs: 60_000 } });
    for (let i = 1; i <= 6; i++) await c.addSds(`sds${i}`, { faultSet: `fs${Math.ceil(i / 2)}`, devicesGiB: [200] });
    await c.createVolume("v1", 20);
    await c.createVolume("v2", 20);
    c.ctx.recovery.worklist.setMaxSlice(16);
    // an etcd commit carries fewer rows than a slice has failovers (1,024 vs 4,096 at full size)
    Object.defineProperty(c.ctx.meta, "maxRowsPerCommit", { value: 4 });
    const lost = [c.id("sds1"), c.id("sds2")];
    const onLost = () => count("SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id IN (?1, ?2) OR secondary_sds_id IN (?1, ?2)", lost[0]!, lost[1]!);
    expect(onLost()).toBeGreaterThan(64);
    c.alive.delete("sds1");
    c.alive.delete("sds2");
    c.m.clock.advance(TIMEOUT + 1);
    await c.beatAll();
    let again = 0;
    for (let steps = 0; ; steps++) {
      expect(steps).toBeLessThan(2000);
      const r = c.tick();
      expect(r.changed).toBeLessThanOrEqual(4);
      if (r.repairsLeft > 0) again++;
      // no copy runs while an extent still waits for its failover
      if (onLost() > 0) expect(count("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL")).toBe(0);
      if (r.failoversLeft === 0 && r.repairsLeft === 0) break;
      c.m.clock.advance(250);
      await c.beatAll();
    }
    expect(again).toBeGreaterThan(0);
    expect(onLost()).toBe(0); // was 323 of 427 left to the next pass, with copies starting meanwhile
  }, 120_000);

  test("a failed device of a connected SDS is read page by page like the other sources: no step plans a stale row", async () => {
    c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: 0, stallTimeoutMs: 60_000 } });
    for (let i = 1; i <= 4; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
    await c.createVolume("v1", 20);
    await c.createVolume("v2", 20);
    c.ctx.recovery.worklist.setMaxSlice(8);
    const b = c.id("sds2");
    const onB = () => count("SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id = ?1 OR secondary_sds_id = ?1", b);
    // sds1 lost and sds2's device failed in the same moment: extents on both come from two sources
    c.alive.delete("sds1");
    for (const d of c.sds.get("sds2")!.devices) c.failedDevices.add(d);
    c.m.clock.advance(TIMEOUT + 1);
    await c.beatAll();
    for (let steps = 0; ; steps++) {
      expect(steps).toBeLessThan(2000);
      const r = c.tick(); // threw "an extent changes only from the epoch it was planned on" for 40 steps in a row
      if (r.failoversLeft === 0 && r.repairsLeft === 0) break;
      c.m.clock.advance(250);
      await c.beatAll();
    }
    expect(onB()).toBe(0);
  }, 120_000);
});

describe("RecoveryWorklist", () => {
  const view = (id: string, connected: boolean): SdsView => ({ sdsId: id, faultSetId: null, connected, confirmed: connected, downSinceMs: null, removing: false, devices: [] });
  const keys = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ volumeId: "v", idx: from + i }));

  test("slices a pass over its sources (failovers first), holds copy starts until those are read, and restarts on a change", () => {
    const w = new RecoveryWorklist(4);
    let listed = 0;
    // sources listed out of order: the failover ones are read first
    const sources = (failovers: number, rest: number) => () => {
      listed++;
      return [listedSource(keys(100, rest), false), listedSource(keys(0, failovers), true)];
    };
    const a = [view("s1", false), view("s2", true)];
    const s1 = w.next(a, sources(6, 4));
    expect(s1.keys.map((k) => k.idx)).toEqual([0, 1, 2, 3]);
    expect(s1).toMatchObject({ partial: true, holdStarts: true, passDone: false, firstOfPass: true, failoversLeft: 1 });
    const s2 = w.next(a, sources(6, 4));
    expect(s2.keys.map((k) => k.idx)).toEqual([4, 5, 100, 101]);
    expect(s2).toMatchObject({ holdStarts: false, failoversLeft: 0, firstOfPass: false, passDone: false });
    // a source read to exactly its end: the look-ahead ends the pass with this slice
    const s3 = w.next(a, sources(6, 4));
    expect(s3.keys.map((k) => k.idx)).toEqual([102, 103]);
    expect(s3.passDone).toBe(true);
    expect(listed).toBe(1);
    // the pass is done: the next starts a new one with the same signature, which holds nothing back
    const s4 = w.next(a, sources(6, 4));
    expect(listed).toBe(2);
    expect(s4).toMatchObject({ firstOfPass: true, holdStarts: false, failoversLeft: 0 });
    // another SDS down mid-pass: a new pass at once, failovers first again
    const b = [view("s1", false), view("s2", false)];
    const s5 = w.next(b, sources(12, 8));
    expect(listed).toBe(3);
    expect(s5.keys.map((k) => k.idx)).toEqual([0, 1, 2, 3]);
    expect(s5).toMatchObject({ firstOfPass: true, holdStarts: true, failoversLeft: 1 });
    // a pass that fits one slice is whole
    const small = new RecoveryWorklist(4);
    expect(small.next(a, sources(3, 0))).toMatchObject({ partial: false, holdStarts: false, passDone: true });
  });

  test("the slice halves after a dear step (down to its floor) and grows back after cheap ones", () => {
    const w = new RecoveryWorklist(4096);
    w.noteCost(500);
    expect(w.nextSliceSize).toBe(2048);
    for (let i = 0; i < 10; i++) w.noteCost(500);
    expect(w.nextSliceSize).toBe(1024);
    w.noteCost(1);
    expect(w.nextSliceSize).toBe(2048);
    for (let i = 0; i < 10; i++) w.noteCost(1);
    expect(w.nextSliceSize).toBe(4096);
  });
});
