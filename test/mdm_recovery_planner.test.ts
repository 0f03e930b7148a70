// The rebuild planner as a pure function under random event sequences (fast-check): SDSs go down
// and come back, devices fail, time passes, primaries report copies done (or report with a stale
// epoch). After every event the planner runs on the model's view and its plan is applied, and
// these must hold:
// - no extent has two copies on one SDS, nor in-sync copies in one fault set, nor a target in the
//   fault set of a copy it stays next to (a move's target may share the moved-from copy's);
// - epochs only grow, and grow whenever membership changed;
// - an extent that had a reachable in-sync copy keeps one of those in its in-sync set;
// - after a step every in-sync copy is reachable unless none is (degrade is complete in one step);
// - a step starts no more copies than the throttle allows; a stale report changes nothing;
// - SDSs being removed are drained and removed once they hold nothing; in the end, with every
//   SDS back, every extent that still has data has two in-sync copies again.
// Plus scripted cases: a whole copy set down keeps membership (unavailable, alert), then the
// away copy is promoted only once the holders are gone for good.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { judgeReport } from "../src/mdm/recovery/rebuild_completion.ts";
import { planRecovery, type RecoveryPlan } from "../src/mdm/recovery/rebuild_planner.ts";
import { checkExtent, extentKey, type CopyRef, type PlannedExtent } from "../src/mdm/recovery/recovery_model.ts";
import type { SdsView } from "../src/mdm/recovery/target_placement.ts";
import { Limits } from "../src/proto/limits.ts";

const EXTENT = 64 << 20;
const GRACE = 10_000;
const PER_SDS = 2;
const POOL = "p";

interface Model {
  now: number;
  sds: SdsView[];
  /** SDSs the planner removed after a drain */
  removed: Set<string>;
  extents: PlannedExtent[];
  faultSets: boolean;
}

function sdsId(i: number): string {
  return (0x1000 + i).toString(16).padStart(16, "0");
}
function devId(i: number): string {
  return (0x2000 + i).toString(16).padStart(16, "0");
}

function newModel(nSds: number, nExtents: number, faultSets: boolean): Model {
  const sds: SdsView[] = [];
  for (let i = 0; i < nSds; i++) {
    sds.push({
      sdsId: sdsId(i),
      faultSetId: faultSets ? `fs${i % 3}` : null,
      connected: true,
      confirmed: true,
      downSinceMs: null,
      removing: false,
      devices: [{ deviceId: devId(i), poolId: POOL, capacityBytes: 1000 * EXTENT, assignedBytes: 0, thickAssignedBytes: 0, usedBytes: 0, failed: false }],
    });
  }
  const domain = (i: number) => (faultSets ? `fs${i % 3}` : `sds${i}`);
  const extents: PlannedExtent[] = [];
  for (let x = 0; x < nExtents; x++) {
    const p = x % nSds;
    let s = (p + 1 + (x % (nSds - 1))) % nSds;
    while (s === p || domain(s) === domain(p)) s = (s + 1) % nSds;
    extents.push({
      volumeId: "00000000000000aa",
      idx: x,
      epoch: 1,
      inSync: [
        { sdsId: sdsId(p), deviceId: devId(p) },
        { sdsId: sdsId(s), deviceId: devId(s) },
      ],
      target: null,
      away: null,
      poolId: POOL,
      extentBytes: EXTENT,
      thick: false,
    });
  }
  return { now: 1_000_000, sds, extents, faultSets, removed: new Set() };
}

function withLoads(m: Model): SdsView[] {
  const per = new Map<string, number>();
  for (const e of m.extents) {
    for (const c of [...e.inSync, ...(e.target ? [e.target] : []), ...(e.away ? [e.away] : [])]) per.set(c.deviceId, (per.get(c.deviceId) ?? 0) + EXTENT);
  }
  return m.sds.filter((s) => !m.removed.has(s.sdsId)).map((s) => ({ ...s, devices: s.devices.map((d) => ({ ...d, assignedBytes: per.get(d.deviceId) ?? 0 })) }));
}

function isUp(m: Model, c: CopyRef): boolean {
  const s = m.sds.find((x) => x.sdsId === c.sdsId && !m.removed.has(x.sdsId));
  return !!s && s.connected && !s.devices.find((d) => d.deviceId === c.deviceId)?.failed;
}

function tick(m: Model, pool: { unthrottled?: boolean; perSds?: number } = {}): RecoveryPlan {
  const healthy = m.extents.filter((e) => e.inSync.length === 2 && !e.target && !e.away && e.inSync.every((c) => isUp(m, c)));
  const attention = m.extents.filter((e) => !healthy.includes(e));
  const plan = planRecovery({
    nowMs: m.now,
    config: { gracePeriodMs: GRACE, maxConcurrentPerSds: pool.perSds ?? PER_SDS },
    pools: [{ poolId: POOL, rebuildEnabled: true, rebalanceEnabled: true, unthrottled: pool.unthrottled }],
    sds: withLoads(m),
    extents: attention,
    moveCandidates: healthy,
    emptyRemovingSds: m.sds
      .filter((s) => s.removing && !m.removed.has(s.sdsId))
      .filter((s) => !m.extents.some((e) => [...e.inSync, ...(e.target ? [e.target] : []), ...(e.away ? [e.away] : [])].some((c) => c.sdsId === s.sdsId)))
      .map((s) => s.sdsId),
  });
  for (const id of plan.removeSds) m.removed.add(id);
  const byKey = new Map(m.extents.map((e) => [extentKey(e), e]));
  for (const c of plan.changes) {
    expect(byKey.get(extentKey(c.before))).toEqual(c.before);
    byKey.set(extentKey(c.after), c.after);
  }
  m.extents = [...byKey.values()].sort((a, b) => a.idx - b.idx);
  return plan;
}

function domainOf(m: Model, id: string): string {
  const s = m.sds.find((x) => x.sdsId === id)!;
  return m.faultSets && s.faultSetId ? s.faultSetId : id;
}

function checkStep(m: Model, before: PlannedExtent[]): void {
  const connected = m.sds.filter((s) => s.connected).length;
  const runningBefore = before.filter((e) => e.target).length;
  let started = 0;
  for (const e of m.extents) {
    checkExtent(e);
    // in-sync copies and the target (next to the copies it stays with) in distinct fault sets
    const staying = e.inSync.map((c) => c.sdsId).filter((id) => id !== e.target?.replacesSdsId);
    const live = [...staying, ...(e.target ? [e.target.sdsId] : [])];
    expect(new Set(live.map((id) => domainOf(m, id))).size).toBe(live.length);
    expect(new Set(e.inSync.map((c) => domainOf(m, c.sdsId))).size).toBe(e.inSync.length);
    const was = before.find((x) => x.idx === e.idx)!;
    expect(e.epoch).toBeGreaterThanOrEqual(was.epoch);
    if (JSON.stringify([e.inSync, e.target, e.away]) !== JSON.stringify([was.inSync, was.target, was.away])) expect(e.epoch).toBeGreaterThan(was.epoch);
    const upBefore = was.inSync.filter((c) => isUp(m, c));
    if (upBefore.length > 0) {
      expect(e.inSync.some((c) => upBefore.some((u) => u.sdsId === c.sdsId))).toBe(true);
      expect(e.inSync.every((c) => isUp(m, c))).toBe(true);
    }
    if (e.target && (!was.target || was.target.sdsId !== e.target.sdsId)) started++;
  }
  expect(started).toBeLessThanOrEqual(Math.max(0, PER_SDS * connected - Math.min(runningBefore, PER_SDS * connected)) + runningBefore);
}

type Event =
  | { kind: "down"; i: number }
  | { kind: "up"; i: number }
  | { kind: "fail"; i: number }
  | { kind: "remove"; i: number }
  | { kind: "time"; ms: number }
  | { kind: "done"; pick: number }
  | { kind: "stale"; pick: number };

const eventArb = (nSds: number): fc.Arbitrary<Event> =>
  fc.oneof(
    fc.record({ kind: fc.constant("down" as const), i: fc.nat({ max: nSds - 1 }) }),
    fc.record({ kind: fc.constant("up" as const), i: fc.nat({ max: nSds - 1 }) }),
    fc.record({ kind: fc.constant("fail" as const), i: fc.nat({ max: nSds - 1 }) }),
    fc.record({ kind: fc.constant("remove" as const), i: fc.nat({ max: nSds - 1 }) }),
    fc.record({ kind: fc.constant("time" as const), ms: fc.constantFrom(500, 3000, GRACE, GRACE * 2) }),
    fc.record({ kind: fc.constant("done" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("done" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("stale" as const), pick: fc.nat() }),
  );

function apply(m: Model, ev: Event): void {
  switch (ev.kind) {
    case "down": {
      const s = m.sds[ev.i]!;
      if (s.connected) m.sds[ev.i] = { ...s, connected: false, confirmed: false, downSinceMs: m.now };
      return;
    }
    case "up": {
      const s = m.sds[ev.i]!;
      m.sds[ev.i] = { ...s, connected: true, confirmed: true, downSinceMs: null };
      return;
    }
    case "fail": {
      const s = m.sds[ev.i]!;
      m.sds[ev.i] = { ...s, devices: s.devices.map((d) => ({ ...d, failed: true })) };
      return;
    }
    case "remove": {
      const s = m.sds[ev.i]!;
      m.sds[ev.i] = { ...s, removing: true };
      return;
    }
    case "time":
      m.now += ev.ms;
      return;
    case "done":
    case "stale": {
      const running = m.extents.filter((e) => e.target && isUp(m, e.inSync[0]!));
      if (running.length === 0) return;
      const e = running[ev.pick % running.length]!;
      const report = {
        volumeId: e.volumeId,
        extentIndex: e.idx,
        epoch: ev.kind === "stale" ? e.epoch - 1 || e.epoch + 1 : e.epoch,
        targetSdsId: e.target!.sdsId,
        copiedBytes: EXTENT,
        totalBytes: EXTENT,
        done: true,
      };
      const v = judgeReport(e, e.inSync[0]!.sdsId, report);
      if (ev.kind === "stale") {
        expect(v.kind).toBe("stale");
        return;
      }
      expect(v.kind === "stale" ? `${v.why} ${JSON.stringify(e)}` : v.kind).toBe("complete");
      if (v.kind === "complete") m.extents = m.extents.map((x) => (x === e ? { ...e, ...v.after } : x));
      return;
    }
    default: {
      const never: never = ev;
      throw new Error(`unknown event ${JSON.stringify(never)}`);
    }
  }
}

function runScenario(nSds: number, nExtents: number, faultSets: boolean, seeds: number[]): void {
  const m = newModel(nSds, nExtents, faultSets);
  const events = fc.sample(eventArb(nSds), { numRuns: seeds.length, seed: seeds[0] ?? 0 });
  for (const ev of events) {
    const before = m.extents.map((e) => ({ ...e }));
    apply(m, ev);
    const mid = m.extents.map((e) => ({ ...e }));
    tick(m);
    checkStep(m, mid);
    for (const e of m.extents) expect(e.epoch).toBeGreaterThanOrEqual(before.find((x) => x.idx === e.idx)!.epoch);
  }
  // everything back up and reported: the pool heals to two in-sync copies everywhere
  // (with fault sets only while two fault sets still have a Normal device)
  for (let i = 0; i < nSds; i++) apply(m, { kind: "up", i });
  const working = new Set(m.sds.filter((s) => !s.devices[0]!.failed && !s.removing).map((s) => domainOf(m, s.sdsId)));
  for (let round = 0; round < 200; round++) {
    m.now += GRACE;
    tick(m);
    const running = m.extents.filter((e) => e.target);
    if (running.length === 0) break;
    for (let k = 0; k < running.length; k++) apply(m, { kind: "done", pick: 0 });
  }
  if (working.size >= 2) {
    for (const e of m.extents) {
      if (e.inSync.every((c) => !isUp(m, c))) continue; // lost for good: both copies' devices failed
      expect(e.inSync.length).toBe(2);
    }
  }
}

describe("planner properties", () => {
  test("random SDS loss/return, device failures, time and reports keep every invariant", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 4, max: 7 }),
        fc.integer({ min: 3, max: 14 }),
        fc.boolean(),
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        runScenario,
      ),
      { numRuns: Number(process.env.PF_PROPERTY_RUNS ?? 300), seed: Number(process.env.PF_PROPERTY_SEED ?? 20240611) },
    );
  });
});

describe("planner scripted cases", () => {
  test("both holders down: membership stays (unavailable, alert); the away copy is promoted only once they are gone for good", () => {
    const m = newModel(4, 1, false);
    const e0 = m.extents[0]!;
    const [a, b] = e0.inSync.map((c) => m.sds.findIndex((s) => s.sdsId === c.sdsId)) as [number, number];
    // b leaves: degraded on a, b kept away
    apply(m, { kind: "down", i: b });
    tick(m);
    expect(m.extents[0]!.away?.sdsId).toBe(sdsId(b));
    // b comes back at once and resyncs; a leaves during the resync
    apply(m, { kind: "up", i: b });
    tick(m);
    expect(m.extents[0]!.target).toMatchObject({ sdsId: sdsId(b), mode: "resync" });
    apply(m, { kind: "down", i: a });
    const plan = tick(m);
    const e = m.extents[0]!;
    expect(e.inSync.map((c) => c.sdsId)).toEqual([sdsId(a)]);
    expect(e.target).toBeNull(); // dropped: its source is unreachable
    expect(plan.alerts.some((x) => x.level === "error" && x.message.includes("UNAVAILABLE"))).toBe(true);
    // nothing is promoted: b's copy was not complete and is not kept away
    m.now += GRACE * 3;
    tick(m);
    expect(m.extents[0]!.inSync.map((c) => c.sdsId)).toEqual([sdsId(a)]);
  });

  test("the sole in-sync copy's device fails while the away copy is back: the stale copy is promoted, loudly", () => {
    const m = newModel(4, 1, false);
    const [a, b] = m.extents[0]!.inSync.map((c) => m.sds.findIndex((s) => s.sdsId === c.sdsId)) as [number, number];
    apply(m, { kind: "down", i: b });
    tick(m);
    apply(m, { kind: "fail", i: a });
    const p1 = tick(m);
    expect(m.extents[0]!.inSync.map((c) => c.sdsId)).toEqual([sdsId(a)]);
    expect(p1.alerts.some((x) => x.message.includes("UNAVAILABLE") && x.message.includes("recovery source"))).toBe(true);
    m.now += GRACE * 2; // the away copy is kept past the grace period as a recovery source
    tick(m);
    expect(m.extents[0]!.away?.sdsId).toBe(sdsId(b));
    apply(m, { kind: "up", i: b });
    const p2 = tick(m);
    expect(m.extents[0]!.inSync.map((c) => c.sdsId)).toEqual([sdsId(b)]);
    expect(p2.alerts.some((x) => x.level === "error" && x.message.includes("LOST"))).toBe(true);
  });

  test("a finished move replaces the moved-from copy; a move left with one in-sync copy becomes a rebuild", () => {
    const m = newModel(4, 1, false);
    const e = m.extents[0]!;
    const spare = m.sds.find((s) => !e.inSync.some((c) => c.sdsId === s.sdsId))!;
    const moving: PlannedExtent = { ...e, target: { sdsId: spare.sdsId, deviceId: spare.devices[0]!.deviceId, mode: "full", startedMs: m.now, replacesSdsId: e.inSync[0]!.sdsId } };
    const done = judgeReport(moving, e.inSync[0]!.sdsId, { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, targetSdsId: spare.sdsId, copiedBytes: EXTENT, totalBytes: EXTENT, done: true });
    expect(done.kind).toBe("complete");
    if (done.kind === "complete") expect(done.after.inSync.map((c) => c.sdsId)).toEqual([e.inSync[1]!.sdsId, spare.sdsId]);
    // the secondary (not the moved-from copy) leaves: the move becomes a rebuild from the primary
    const replacing2: PlannedExtent = { ...moving, target: { ...moving.target!, replacesSdsId: e.inSync[1]!.sdsId } };
    m.extents = [replacing2];
    const i2 = m.sds.findIndex((s) => s.sdsId === e.inSync[1]!.sdsId);
    apply(m, { kind: "down", i: i2 });
    tick(m);
    expect(m.extents[0]!.target).toMatchObject({ sdsId: spare.sdsId, replacesSdsId: null });
    expect(m.extents[0]!.inSync.map((c) => c.sdsId)).toEqual([e.inSync[0]!.sdsId]);
  });
});

describe("a drain whose staying copy left (the remove_sds deadlock)", () => {
  /**
   * The state a failed forward left during a drain: the primary is on the SDS being removed, its
   * move target replaces that primary, and the other copy left the in-sync set (away). Before the
   * fix the move stayed "running" past the grace period and its finished copy was refused forever.
   */
  function stuckDrain(faultSets: boolean): { m: Model; leaving: number; moveTo: number; away: number } {
    const m = newModel(faultSets ? 6 : 4, 1, faultSets);
    const e = m.extents[0]!;
    const leaving = m.sds.findIndex((s) => s.sdsId === e.inSync[0]!.sdsId);
    const away = m.sds.findIndex((s) => s.sdsId === e.inSync[1]!.sdsId);
    // the move target: apart from the staying copy (as the planner places it); with fault sets,
    // in the fault set of the copy it replaces, which a move may share
    const moveTo = m.sds.findIndex((s, i) => i !== leaving && i !== away && (!faultSets || s.faultSetId === m.sds[leaving]!.faultSetId));
    m.sds[leaving] = { ...m.sds[leaving]!, removing: true };
    const t = m.sds[moveTo]!;
    m.extents = [
      {
        ...e,
        epoch: 4,
        inSync: [e.inSync[0]!],
        target: { sdsId: t.sdsId, deviceId: t.devices[0]!.deviceId, mode: "full", startedMs: m.now, replacesSdsId: sdsId(leaving) },
        away: { ...e.inSync[1]!, sinceMs: m.now - 2 * GRACE },
      },
    ];
    return { m, leaving, moveTo, away };
  }

  test("the model refuses the state, and a finished copy of it is unusable, not complete", () => {
    const { m } = stuckDrain(false);
    const e = m.extents[0]!;
    expect(() => checkExtent(e)).toThrow(/only in-sync copy/);
    const v = judgeReport(e, e.inSync[0]!.sdsId, { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, targetSdsId: e.target!.sdsId, copiedBytes: EXTENT, totalBytes: EXTENT, done: true });
    expect(v.kind).toBe("unusable");
  });

  test("the planner turns the move into a rebuild; when it finishes the drain goes on and the SDS is removed", () => {
    const { m, leaving, moveTo } = stuckDrain(false);
    const plan = tick(m);
    const e = m.extents[0]!;
    checkExtent(e);
    expect(e.epoch).toBe(5);
    expect(e.target).toMatchObject({ sdsId: sdsId(moveTo), replacesSdsId: null, mode: "full" });
    expect(e.away).toBeNull(); // its grace period is over
    expect(plan.changes[0]!.reasons.join("; ")).toContain("becomes a rebuild");
    // the rebuild's report installs it
    apply(m, { kind: "done", pick: 0 });
    expect(m.extents[0]!.inSync.map((c) => c.sdsId)).toEqual([sdsId(leaving), sdsId(moveTo)]);
    // and the drain proceeds: a move off the leaving SDS, then it is empty and removed
    for (let round = 0; round < 10 && !m.removed.has(sdsId(leaving)); round++) {
      tick(m);
      if (m.extents[0]!.target) apply(m, { kind: "done", pick: 0 });
    }
    expect(m.removed.has(sdsId(leaving))).toBe(true);
    const end = m.extents[0]!;
    expect(end.inSync.length).toBe(2);
    expect(end.inSync.some((c) => c.sdsId === sdsId(leaving))).toBe(false);
  });

  test("with fault sets, a move target in the leaving copy's fault set is dropped and a rebuild is placed apart", () => {
    const { m, leaving, moveTo } = stuckDrain(true);
    tick(m);
    const e = m.extents[0]!;
    checkExtent(e);
    expect(e.inSync.map((c) => c.sdsId)).toEqual([sdsId(leaving)]);
    expect(e.target).not.toBeNull();
    expect(e.target!.sdsId).not.toBe(sdsId(moveTo));
    expect(e.target!.replacesSdsId).toBeNull();
    expect(domainOf(m, e.target!.sdsId)).not.toBe(domainOf(m, sdsId(leaving)));
    for (let round = 0; round < 10 && !m.removed.has(sdsId(leaving)); round++) {
      if (m.extents[0]!.target) apply(m, { kind: "done", pick: 0 });
      tick(m);
    }
    expect(m.removed.has(sdsId(leaving))).toBe(true);
    expect(m.extents[0]!.inSync.length).toBe(2);
  });

  test("a rebuild target next to two in-sync copies (a stored state) is dropped, never left running", () => {
    const m = newModel(4, 1, false);
    const e = m.extents[0]!;
    const spare = m.sds.find((s) => !e.inSync.some((c) => c.sdsId === s.sdsId))!;
    m.extents = [{ ...e, target: { sdsId: spare.sdsId, deviceId: spare.devices[0]!.deviceId, mode: "full", startedMs: m.now, replacesSdsId: null } }];
    tick(m);
    expect(m.extents[0]!.target).toBeNull();
    expect(m.extents[0]!.epoch).toBe(e.epoch + 1);
  });
});

describe("copies at once per pool", () => {
  test("a rate-limited pool starts maxConcurrentPerSds copies a connected SDS; one without a limit at most Limits.maxConcurrentUnthrottledRebuildsPerSds", () => {
    const started = (unthrottled: boolean): number => {
      const m = newModel(4, 200, false);
      apply(m, { kind: "down", i: 0 });
      tick(m, { unthrottled, perSds: 4 }); // its copies are kept away for the grace period
      m.now += GRACE * 2;
      tick(m, { unthrottled, perSds: 4 }); // gone for good: rebuilds start, up to the budget
      return m.extents.filter((e) => e.target !== null).length;
    };
    expect(started(false)).toBe(4 * 3);
    expect(started(true)).toBe(Limits.maxConcurrentUnthrottledRebuildsPerSds * 3);
  });
});
