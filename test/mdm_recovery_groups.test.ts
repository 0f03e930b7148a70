// recoveryStatus (groups of like extents counted by sqlite, recovery_groups.ts) equals the figures
// from an object per attention extent (recoveryStatusByExtent: loadAttentionExtents +
// summarizePool, what recoveryStatus computed before), on random stored states: extents with one
// or two in-sync copies, running copies (rebuild, resync, move; some with reported progress),
// away copies inside and past the grace period, copies on unknown devices; SDSs disconnected,
// being removed, with failed devices; thin and thick volumes in two pools. Plus the invariants
// of the figures, and the same equality along a real loss -> rebuild -> removal flow.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { recoveryStatus, recoveryStatusByExtent } from "../src/mdm/recovery/recovery.ts";
import { RebuildProgress } from "../src/mdm/recovery/rebuild_progress.ts";
import { loadSdsViews } from "../src/mdm/recovery/recovery_view.ts";
import type { SdsView } from "../src/mdm/recovery/target_placement.ts";
import type { RebuildStatus } from "../src/proto/powerflex_api.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

const GRACE = 30_000;
const TIMEOUT = 5_000;

let c: RecoveryCluster;
let base: SdsView[];
let vtrees: { ownerId: string; poolId: string }[];
let pool2: string;

beforeAll(async () => {
  c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE } });
  for (let i = 1; i <= 6; i++) await c.addSds(`sds${i}`, { devicesGiB: [100, 100] });
  await c.createVolume("thin1", 8);
  await c.createVolume("thin2", 8);
  await c.createVolume("thick1", 8, "ThickProvisioned");
  await c.createVolume("thick2", 8, "ThickProvisioned");
  // a second pool: a copy of the first's row; two volumes and half of the devices move to it
  pool2 = "sp2-test-pool";
  const sqlite = c.ctx.store.sqlite;
  sqlite.run("CREATE TEMP TABLE sp_copy AS SELECT * FROM storage_pool");
  sqlite.run("UPDATE sp_copy SET id = ?1, name = 'sp2'", [pool2]);
  sqlite.run("INSERT INTO storage_pool SELECT * FROM sp_copy");
  sqlite.run("UPDATE vtree SET pool_id = ?1 WHERE name IN ('thin2', 'thick2')", [pool2]);
  vtrees = sqlite.query("SELECT owner_id AS ownerId, pool_id AS poolId FROM vtree").all() as { ownerId: string; poolId: string }[];
  expect(new Set(vtrees.map((v) => v.poolId)).size).toBe(2);
  base = loadSdsViews(c.ctx).map((s) => ({ ...s, devices: s.devices.map((d, i) => ({ ...d, poolId: i === 0 ? d.poolId : pool2 })) }));
});

afterAll(() => c?.close());

/** every copy the random states may name: each real (SDS, device), a device of another SDS, an unknown one */
function copies(): { sdsId: string; deviceId: string }[] {
  const out = base.flatMap((s) => s.devices.map((d) => ({ sdsId: s.sdsId, deviceId: d.deviceId })));
  out.push({ sdsId: base[0]!.sdsId, deviceId: base[1]!.devices[0]!.deviceId });
  out.push({ sdsId: "ghost-sds", deviceId: "ghost-dev" });
  return out;
}

const sdsState = fc.record({ connected: fc.boolean(), removing: fc.boolean(), failed: fc.array(fc.boolean(), { minLength: 2, maxLength: 2 }) });
const extentArb = fc.record({
  volume: fc.nat(),
  idx: fc.nat(40),
  primary: fc.nat(),
  secondary: fc.option(fc.nat(), { nil: null }),
  target: fc.option(fc.record({ copy: fc.nat(), mode: fc.constantFrom("full", "resync"), replaces: fc.constantFrom(null, 0, 1), progress: fc.option(fc.nat(64), { nil: null }) }), { nil: null, freq: 3 }),
  away: fc.option(fc.record({ copy: fc.nat(), agoMs: fc.constantFrom(0, 1, GRACE - 1, GRACE, GRACE + 1, 10 * GRACE) }), { nil: null, freq: 2 }),
});

type ExtentSpec = typeof extentArb extends fc.Arbitrary<infer T> ? T : never;

/** stores the extents (replacing every row) and the running copies' progress; returns the SDS views */
function apply(states: { connected: boolean; removing: boolean; failed: boolean[] }[], extents: ExtentSpec[]): SdsView[] {
  const all = copies();
  const pick = (n: number) => all[n % all.length]!;
  const sqlite = c.ctx.store.sqlite;
  const now = c.now();
  const rt = c.ctx.recovery;
  rt.progress.retain(new Set());
  sqlite.run("DELETE FROM extent");
  const ins = sqlite.prepare(
    `INSERT OR IGNORE INTO extent (volume_id, idx, epoch, primary_sds_id, primary_device_id, secondary_sds_id, secondary_device_id,
       target_sds_id, target_device_id, target_mode, target_started_ms, target_replaces_sds_id, away_sds_id, away_device_id, away_since_ms)
     VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const e of extents) {
    const v = vtrees[e.volume % vtrees.length]!;
    const p = pick(e.primary);
    const s = e.secondary === null ? null : pick(e.secondary);
    const t = e.target === null ? null : pick(e.target.copy);
    const replaces = e.target === null || e.target.replaces === null ? null : e.target.replaces === 0 ? p.sdsId : (s?.sdsId ?? p.sdsId);
    const a = e.away === null ? null : pick(e.away.copy);
    ins.run(v.ownerId, e.idx, p.sdsId, p.deviceId, s?.sdsId ?? null, s?.deviceId ?? null, t?.sdsId ?? null, t?.deviceId ?? null, e.target?.mode ?? null,
      e.target === null ? null : now, replaces, a?.sdsId ?? null, a?.deviceId ?? null, e.away === null ? null : now - e.away.agoMs);
    if (t !== null && e.target!.progress !== null) {
      const total = 64 * 1024 * 1024;
      rt.progress.report(v.poolId, RebuildProgress.copyKey(v.ownerId, e.idx, 1, t.sdsId), e.target!.progress * 1024 * 1024, total, now);
    }
  }
  return base.map((s, i) => {
    const st = states[i % states.length]!;
    return { ...s, connected: st.connected, removing: st.removing, devices: s.devices.map((d, j) => ({ ...d, failed: st.failed[j] ?? false })) };
  });
}

/** the invariants of recovery_summary.ts on one pool's figures, given its extent count */
function checkInvariants(s: RebuildStatus, extentsInPool: number): void {
  const active = s.numOfActiveRebuildExtents + s.numOfActiveMoveExtents;
  expect(s.numOfUnavailableExtents + s.numOfWaitingExtents + s.numOfPendingRebuildExtents + active).toBeLessThanOrEqual(extentsInPool);
  expect(s.remainingInKb).toBeGreaterThanOrEqual(0);
  if (s.remainingInKb === 0 && s.pendingRebalanceCapacityInKb === 0 && s.numOfPendingRebuildExtents === 0 && active === 0) expect(s.rebuildProgressPercent).toBe(100);
  if (s.rebuildRateInKbps === 0 && s.remainingInKb > 0) expect(s.rebuildEtaSeconds).toBeNull();
}

describe("recovery figures from groups", () => {
  test("equal the figures from an object per extent on random states (and keep the invariants)", () => {
    let withWork = 0;
    fc.assert(
      fc.property(fc.array(sdsState, { minLength: 6, maxLength: 6 }), fc.array(extentArb, { maxLength: 60 }), (states, extents) => {
        const sds = apply(states, extents);
        const byGroups = recoveryStatus(c.ctx, undefined, sds);
        const byExtent = recoveryStatusByExtent(c.ctx, undefined, sds);
        expect([...byGroups.keys()].sort()).toEqual([...byExtent.keys()].sort());
        expect(byGroups.size).toBe(2);
        for (const [id, s] of byGroups) {
          expect(s).toEqual(byExtent.get(id)!);
          const n = (c.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent e JOIN vtree v ON v.owner_id = e.volume_id WHERE v.pool_id = ?").get(id) as { n: number }).n;
          checkInvariants(s, n);
          if (s.rebuildState !== "Idle") withWork++;
        }
      }),
      { numRuns: 300, seed: 10 },
    );
    // the states exercised recovery work, not only idle pools
    expect(withWork).toBeGreaterThan(100);
  });

  test("random states reach every category of the figures", () => {
    const seen = { unavailable: 0, waiting: 0, pending: 0, rebuild: 0, resync: 0, move: 0, copied: 0, drain: 0, failed: 0, degraded: 0 };
    fc.assert(
      fc.property(fc.array(sdsState, { minLength: 6, maxLength: 6 }), fc.array(extentArb, { maxLength: 60 }), (states, extents) => {
        for (const s of recoveryStatus(c.ctx, undefined, apply(states, extents)).values()) {
          if (s.numOfUnavailableExtents > 0) seen.unavailable++;
          if (s.numOfWaitingExtents > 0) seen.waiting++;
          if (s.numOfPendingRebuildExtents > 0) seen.pending++;
          if (s.numOfActiveRebuildExtents > s.numOfActiveResyncExtents) seen.rebuild++;
          if (s.numOfActiveResyncExtents > 0) seen.resync++;
          if (s.numOfActiveMoveExtents > 0) seen.move++;
          if (s.copiedInKb > 0) seen.copied++;
          if (s.pendingRebalanceCapacityInKb > 0) seen.drain++;
          if (s.storagePoolState === "Failed") seen.failed++;
          if (s.storagePoolState === "Degraded") seen.degraded++;
        }
      }),
      { numRuns: 200, seed: 11 },
    );
    for (const [k, n] of Object.entries(seen)) expect({ k, reached: n > 0 }).toEqual({ k, reached: true });
  });
});

describe("recovery figures along a real flow", () => {
  test("equal the figures from an object per extent through a loss, the grace period, copies with progress and a removal", async () => {
    const f = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE } });
    try {
      for (let i = 1; i <= 4; i++) await f.addSds(`sds${i}`, { devicesGiB: [100] });
      await f.createVolume("v1", 4);
      await f.createVolume("v2", 4, "ThickProvisioned");
      const same = (why: string) => {
        const a = recoveryStatus(f.ctx);
        expect({ why, s: [...a] }).toEqual({ why, s: [...recoveryStatusByExtent(f.ctx)] });
        return [...a.values()][0]!;
      };
      expect(same("healthy").rebuildState).toBe("Idle");
      f.alive.delete("sds3");
      await f.advance(TIMEOUT);
      expect(same("down, in the grace period").numOfWaitingExtents).toBeGreaterThan(0);
      await f.advance(GRACE);
      const running = await f.runningCopies();
      expect(running.length).toBeGreaterThan(0);
      const r = running[0]!;
      await f.heartbeat(r.primary, [{ ...r.report, copiedBytes: Math.floor(r.report.totalBytes / 2), done: false }]);
      const mid = same("rebuilding, one copy half done");
      expect(mid.numOfActiveRebuildExtents).toBeGreaterThan(0);
      expect(mid.copiedInKb).toBeGreaterThan(0);
      await f.settle();
      expect(same("rebuilt").rebuildState).toBe("Idle");
      const rm = await f.m.api("POST", `/instances/Sds::${f.id("sds4")}/action/removeSds`, {});
      expect(rm.status).toBe(200);
      expect(same("removal requested").rebuildState).toBe("Draining");
      f.tick();
      same("draining");
    } finally {
      f.close();
    }
  });
});
