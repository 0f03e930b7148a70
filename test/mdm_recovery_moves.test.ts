// Moving copies on purpose, and noticing when recovery does not move: removeSds drains an SDS
// (refused when the rest of the pool cannot take its copies, by placement rules or capacity;
// accepted otherwise, RemovalInProgress until every copy moved, then removed); a new SDS gets
// copies from the fullest ones (rebalance, only in a healthy pool); recovery work with no
// progress for the stall timeout raises one alert and a flag, cleared by progress.

import { afterEach, describe, expect, spyOn, test } from "bun:test";
import consola from "consola";
import { Limits } from "../src/proto/limits.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

const TIMEOUT = 2000;
const GRACE = 10_000;
const STALL = 5000;
const recovery = { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE, stallTimeoutMs: STALL };

let c: RecoveryCluster;
afterEach(() => c?.close());

async function cluster(n: number, devicesGiB = [100]): Promise<RecoveryCluster> {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 1; i <= n; i++) await c.addSds(`sds${i}`, { devicesGiB });
  return c;
}

function copiesPerSds(): Map<string, number> {
  const n = new Map<string, number>();
  for (const e of c.extents()) for (const x of e.inSync) n.set(x.sdsId, (n.get(x.sdsId) ?? 0) + 1);
  return n;
}

async function removeSds(name: string) {
  return c.m.api("POST", `/instances/Sds::${c.id(name)}/action/removeSds`, {});
}

describe("drain (removeSds)", () => {
  test("refused when no other SDS can hold the copies (two SDSs): clear error, nothing changes", async () => {
    await cluster(2);
    await c.createVolume("v1", 1);
    const before = await c.m.snapshot();
    const r = await removeSds("sds1");
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect((r.json as { message: string }).message).toMatch(/cannot be removed: it holds 16 extent copies/);
    expect(await c.m.snapshot()).toBe(before);
    expect((await c.sdsObject("sds1")).sdsState).toBe("Normal");
  });

  test("refused when the others lack capacity for its thick copies", async () => {
    await cluster(3, [10]);
    await c.createVolume("thick", 12, "ThickProvisioned");
    const r = await removeSds("sds2");
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect((r.json as { pfCode: string }).pfCode).toBe("NO_SPACE");
    expect((await c.sdsObject("sds2")).sdsState).toBe("Normal");
  });

  test("accepted: RemovalInProgress, copies move off (throttled, 2 in-sync throughout), then the SDS is removed", async () => {
    await cluster(4);
    await c.createVolume("v1", 2);
    const leaving = c.id("sds4");
    const held = copiesPerSds().get(leaving) ?? 0;
    expect(held).toBeGreaterThan(0);
    const r = await removeSds("sds4");
    expect(r.status).toBe(200);
    expect((await c.sdsObject("sds4")).sdsState).toBe("RemovalInProgress");
    const st = await c.status();
    expect(st.rebuildState).toBe("Draining");
    expect(st.pendingRebalanceCapacityInKb).toBe((held * 64 * 1024 * 1024) / 1024);
    // a new volume never lands on the SDS being removed
    await c.createVolume("v2", 1);
    c.tick();
    const moving = c.extents().filter((e) => e.target !== null);
    expect(moving.length).toBeGreaterThan(0);
    expect(moving.length).toBeLessThanOrEqual(Limits.maxConcurrentRebuildsPerSds * 4);
    for (const e of moving) {
      expect(e.target!.replacesSdsId).toBe(leaving);
      expect(e.inSync.length).toBe(2);
    }
    await c.settle();
    expect(((await c.m.api("GET", `/instances/Sds::${leaving}`)).json as { pfCode: string }).pfCode).toBe("NOT_FOUND");
    for (const e of c.extents()) {
      expect(e.inSync.length).toBe(2);
      expect(e.inSync.some((x) => x.sdsId === leaving)).toBe(false);
    }
    expect((await c.status()).rebuildState).toBe("Idle");
  });

  test("an SDS with no copies is removed at once", async () => {
    await cluster(3);
    const r = await removeSds("sds3");
    expect(r.status).toBe(200);
    expect(((await c.m.api("GET", `/instances/Sds::${c.id("sds3")}`)).json as { pfCode: string }).pfCode).toBe("NOT_FOUND");
  });

  test("a disconnected SDS being removed: its copies are rebuilt elsewhere without waiting for the grace period", async () => {
    await cluster(4);
    await c.createVolume("v1", 1);
    expect((await removeSds("sds2")).status).toBe(200);
    c.alive.delete("sds2");
    await c.advance(TIMEOUT);
    for (const e of c.extents()) expect(e.away).toBeNull();
    await c.settle();
    expect(((await c.m.api("GET", `/instances/Sds::${c.id("sds2")}`)).json as { pfCode: string }).pfCode).toBe("NOT_FOUND");
    for (const e of c.extents()) expect(e.inSync.length).toBe(2);
  });
});

describe("rebalance", () => {
  test("a new SDS receives copies from the fullest until the pool is even", async () => {
    await cluster(3);
    await c.createVolume("v1", 4); // 64 extents, 128 copies, ~43 per SDS
    expect(copiesPerSds().size).toBe(3);
    await c.addSds("sds4");
    c.tick();
    const moving = c.extents().filter((e) => e.target !== null);
    expect(moving.length).toBeGreaterThan(0);
    for (const e of moving) {
      expect(e.target!.sdsId).toBe(c.id("sds4"));
      expect(e.target!.replacesSdsId).not.toBeNull();
      expect(e.inSync.length).toBe(2);
    }
    expect((await c.status()).rebuildState).toBe("Rebalancing");
    await c.settle();
    const per = copiesPerSds();
    const counts = [...per.values()];
    expect(per.get(c.id("sds4"))).toBeGreaterThanOrEqual(30);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(2);
    // settled: one more step starts nothing
    expect(c.tick().changed).toBe(0);
  });

  test("no rebalance while the pool is degraded", async () => {
    await cluster(3);
    await c.createVolume("v1", 2);
    c.alive.delete("sds3");
    await c.advance(TIMEOUT);
    await c.addSds("sds4");
    c.tick();
    for (const e of c.extents()) if (e.target) expect(e.target.replacesSdsId).toBeNull();
  });
});

describe("stall detection", () => {
  test("copies with no progress for the stall timeout: one warning and the flag; progress clears it", async () => {
    const warn = spyOn(consola, "warn");
    try {
      await cluster(4);
      await c.createVolume("v1", 1);
      c.alive.delete("sds1");
      await c.advance(TIMEOUT + GRACE);
      const running = c.extents().filter((e) => e.target !== null);
      expect(running.length).toBeGreaterThan(0);
      await c.advance(STALL - 1000);
      expect((await c.status()).rebuildStalled).toBe(false);
      await c.advance(1000);
      const st = await c.status();
      expect(st.rebuildStalled).toBe(true);
      expect(st.noProgressSeconds).toBeGreaterThanOrEqual(STALL / 1000);
      const stats = (await c.m.api("GET", `/instances/StoragePool::${await c.poolId()}/relationships/Statistics`)).json as Record<string, unknown>;
      expect(stats.rebuildStalled).toBe(true);
      await c.advance(3000);
      const stalls = () => warn.mock.calls.filter((args) => String(args[0]).includes("STALLED")).length;
      expect(stalls()).toBe(1);
      // progress from one primary clears it
      const e = running[0]!;
      await c.heartbeat(c.byId(e.inSync[0]!.sdsId).name, [
        { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, targetSdsId: e.target!.sdsId, copiedBytes: 1 << 20, totalBytes: 64 << 20, done: false },
      ]);
      c.tick();
      expect((await c.status()).rebuildStalled).toBe(false);
    } finally {
      warn.mockRestore();
    }
  });
});
