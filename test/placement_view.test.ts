// The in-memory placement view (src/mdm/topology/placement_view.ts) agrees with the database, as
// placement and as the recovery view's SDSs and devices read it,
// after every kind of change that touches what placement reads: creates, extends, removals,
// heartbeats changing usage and device state, SDSs joining with devices, a device's capacity
// changing at a rejoin, an SDS entering maintenance-like states, transactions that rolled back
// after placing (once or twice, and one that built the view), a device moving between pools,
// and an MDM restart on the same data directory.

import { afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { Limits } from "../src/proto/limits.ts";
import { inTransaction, type MdmContext } from "../src/mdm/core/context.ts";
import { getPool } from "../src/mdm/core/lookup.ts";
import { adjustDevice, placementSdsOf } from "../src/mdm/topology/volumes.ts";
import { placementViewOf } from "../src/mdm/topology/placement_view.ts";
import type { PlacementSds } from "../src/mdm/topology/placement.ts";
import { MdmFixture } from "./mdm_fixture.ts";
import { loadSdsViews, SDS_REMOVING } from "../src/mdm/recovery/recovery_view.ts";

let m: MdmFixture | null = null;
let keepDir: string | null = null;
afterEach(() => {
  m?.close();
  m = null;
  if (keepDir !== null) rmSync(keepDir, { recursive: true, force: true });
  keepDir = null;
});

/** What placement took before the view: every device and SDS row of the pool, read now. */
function fromDatabase(ctx: MdmContext, poolId: string, thick: boolean): PlacementSds[] {
  const pool = getPool(ctx, poolId);
  type Dev = { id: string; sdsId: string; capacityBytes: number; assignedBytes: number; thickAssignedBytes: number; usedBytes: number; state: string };
  const devices = ctx.store.sqlite
    .query<Dev, [string]>("SELECT id, sds_id AS sdsId, capacity_bytes AS capacityBytes, assigned_bytes AS assignedBytes, thick_assigned_bytes AS thickAssignedBytes, used_bytes AS usedBytes, state FROM device WHERE pool_id = ? ORDER BY rowid")
    .all(pool.id);
  const sdsRows = ctx.store.sqlite.query<{ id: string; faultSetId: string | null; state: string }, [string]>("SELECT id, fault_set_id AS faultSetId, state FROM sds WHERE pd_id = ? ORDER BY rowid").all(pool.pdId);
  const bySds = Map.groupBy(devices, (d) => d.sdsId);
  return sdsRows
    .filter((s) => bySds.has(s.id))
    .map((s) => ({
      sdsId: s.id,
      faultSetId: s.faultSetId,
      connected: ctx.health.sdsConnected(s.id) && s.state === "Normal",
      devices: bySds.get(s.id)!.map((d) => ({
        deviceId: d.id,
        capacityBytes: thick ? d.capacityBytes : d.capacityBytes * Limits.maxThinOvercommitRatio,
        assignedBytes: thick ? Math.max(d.thickAssignedBytes, d.usedBytes) : d.assignedBytes,
        state: d.state === "Failed" ? ("Failed" as const) : ("Normal" as const),
      })),
    }));
}

/** The recovery view's SDSs and devices (loadSdsViews) as read from the database before the view. */
function sdsViewsFromDatabase(ctx: MdmContext): unknown[] {
  const devices = ctx.store.sqlite.query<{ sdsId: string }, []>("SELECT id AS deviceId, sds_id AS sdsId, pool_id AS poolId, capacity_bytes AS capacityBytes, assigned_bytes AS assignedBytes, thick_assigned_bytes AS thickAssignedBytes, used_bytes AS usedBytes, state FROM device ORDER BY rowid").all();
  const bySds = Map.groupBy(devices, (d) => d.sdsId);
  return ctx.store.sqlite
    .query<{ id: string; faultSetId: string | null; state: string }, []>("SELECT id, fault_set_id AS faultSetId, state FROM sds ORDER BY rowid")
    .all()
    .map((s) => ({
      sdsId: s.id,
      faultSetId: s.faultSetId,
      removing: s.state === SDS_REMOVING,
      devices: (bySds.get(s.id) ?? []).map((d) => {
        const { sdsId: _, state, ...rest } = d as Record<string, unknown>;
        return { ...rest, failed: state === "Failed" };
      }),
    }));
}

function expectAgrees(f: MdmFixture, poolId: string): void {
  const ctx = f.core.ctx;
  const views = loadSdsViews(ctx).map(({ sdsId, faultSetId, removing, devices }) => ({ sdsId, faultSetId, removing, devices }));
  expect(views).toEqual(sdsViewsFromDatabase(ctx) as typeof views);
  const pool = getPool(ctx, poolId);
  for (const thick of [false, true]) {
    // plain copies: the view hands out its own objects, updated in place later
    expect(structuredClone(placementSdsOf(ctx, pool, thick))).toEqual(fromDatabase(ctx, poolId, thick));
  }
}

async function createVolume(f: MdmFixture, poolId: string, name: string, gib: number, type = "ThinProvisioned"): Promise<string> {
  const r = await f.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: String(gib), name, volumeType: type });
  expect(r.status).toBe(200);
  return (r.json as { id: string }).id;
}

async function setup(f: MdmFixture): Promise<{ poolId: string; sds: { sdsId: string; devices: { deviceId: string }[] }[] }> {
  await f.login();
  const sds = [];
  for (let i = 0; i < 4; i++) sds.push(await f.joinSds(`sds${i}`, { faultSet: `fs${i % 2}`, devicesGiB: [100, 200] }));
  const poolId = await f.idOf("StoragePool", "sp1");
  return { poolId, sds };
}

describe("placement view", () => {
  test("agrees with the database after creates, extends, removals and heartbeats", async () => {
    m = await MdmFixture.open();
    const { poolId, sds } = await setup(m);
    expectAgrees(m, poolId);
    const thin = await createVolume(m, poolId, "thin1", 40);
    expectAgrees(m, poolId);
    const thick = await createVolume(m, poolId, "thick1", 24, "ThickProvisioned");
    expectAgrees(m, poolId);
    // the view really moved: the assigned bytes of the pool's devices add up to both volumes' copies
    const assigned = placementViewOf(m.core.ctx).devicesOf(poolId).reduce((a, d) => a + d.assignedBytes, 0);
    expect(assigned).toBe(2 * (40 + 24) * 2 ** 30);
    expect((await m.api("POST", `/instances/Volume::${thin}/action/setVolumeSize`, { sizeInGB: "56" })).status).toBe(200);
    expectAgrees(m, poolId);
    expect((await m.api("POST", `/instances/Volume::${thick}/action/removeVolume`, { removeMode: "ONLY_ME" })).status).toBe(200);
    expectAgrees(m, poolId);
    // a heartbeat reporting usage, then a failed device
    const s0 = sds[0]!;
    const report = (state: string, used: number) => ({
      devices: s0.devices.map((d, i) => ({ deviceId: d.deviceId, state: i === 0 ? state : "Normal", usedBytes: used })),
      rebuilds: [],
      failedForwards: [],
      appliedMapVersion: 0,
    });
    expect((await m.cluster("POST", `/sds/${s0.sdsId}/heartbeat`, report("Normal", 3 * 2 ** 30))).status).toBe(200);
    expectAgrees(m, poolId);
    expect((await m.cluster("POST", `/sds/${s0.sdsId}/heartbeat`, report("Failed", 3 * 2 ** 30))).status).toBe(200);
    expectAgrees(m, poolId);
    const failed = placementSdsOf(m.core.ctx, getPool(m.core.ctx, poolId), false).find((s) => s.sdsId === s0.sdsId)!;
    expect(failed.devices[0]!.state).toBe("Failed");
  });

  test("agrees after joins, a new device, a capacity change and an SDS leaving placement", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    await createVolume(m, poolId, "v1", 16);
    expectAgrees(m, poolId);
    // a new SDS, then an existing one rejoining with a larger first device and a third device
    await m.joinSds("sds4", { faultSet: "fs0", devicesGiB: [300] });
    expectAgrees(m, poolId);
    await m.joinSds("sds1", { faultSet: "fs1", devicesGiB: [150, 200, 50] });
    expectAgrees(m, poolId);
    const v2 = await createVolume(m, poolId, "v2", 64);
    expectAgrees(m, poolId);
    // an SDS's state changes behind placement's back (as maintenance or removal set it)
    m.core.ctx.store.sqlite.run("UPDATE sds SET state = 'RemovalInProgress' WHERE name = 'sds2'");
    expectAgrees(m, poolId);
    const sds2 = await m.idOf("Sds", "sds2");
    expect(placementSdsOf(m.core.ctx, getPool(m.core.ctx, poolId), false).find((s) => s.sdsId === sds2)!.connected).toBe(false);
    expect((await m.api("POST", `/instances/Volume::${v2}/action/removeVolume`, { removeMode: "ONLY_ME" })).status).toBe(200);
    expectAgrees(m, poolId);
  });

  test("a transaction that rolled back after placing leaves the view as the database", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    const ctx = m.core.ctx;
    const pool = getPool(ctx, poolId);
    expectAgrees(m, poolId);
    const before = structuredClone(placementSdsOf(ctx, pool, false));
    // device accounting written, the view read again (it applies those writes),
    // then the transaction fails: nothing of it may stay in the view
    expect(() =>
      inTransaction(ctx, () => {
        // what placeAndRecord writes for its copies: the devices' accounting
        const devs = placementSdsOf(ctx, pool, false).flatMap((s) => s.devices);
        for (const d of devs.slice(0, 4)) adjustDevice(ctx, d.deviceId, 4 * pool.extentBytes, false);
        const inside = placementSdsOf(ctx, pool, false).flatMap((s) => s.devices).reduce((a, d) => a + d.assignedBytes, 0);
        expect(inside).toBe(16 * pool.extentBytes);
        throw new Error("fail after placing");
      }),
    ).toThrow("fail after placing");
    expectAgrees(m, poolId);
    expect(structuredClone(placementSdsOf(ctx, pool, false))).toEqual(before);
  });

  test("a view first built inside a transaction that rolled back is built again (its TEMP triggers went with it)", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    // nothing has read the view yet: this create builds it inside its transaction, then fails
    // NO_SPACE after placing, and TEMP DDL rolls back with the transaction
    const big = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "100000", name: "big", volumeType: "ThinProvisioned" });
    expect(big.status).not.toBe(200);
    expect(big.text).not.toContain("no such table");
    await createVolume(m, poolId, "small", 8);
    expectAgrees(m, poolId);
    const { recoveryTick } = await import("../src/mdm/recovery/recovery.ts");
    expect(() => recoveryTick(m!.core.ctx)).not.toThrow();
  });

  test("two reads inside one transaction that rolls back: both reads' rows are read again", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    const ctx = m.core.ctx;
    const pool = getPool(ctx, poolId);
    const [x, y] = placementSdsOf(ctx, pool, false).flatMap((s) => s.devices.map((d) => d.deviceId));
    expect(() =>
      inTransaction(ctx, () => {
        adjustDevice(ctx, x!, 7 * pool.extentBytes, false);
        placementSdsOf(ctx, pool, false); // applies x's uncommitted figure
        adjustDevice(ctx, y!, 5 * pool.extentBytes, false);
        placementSdsOf(ctx, pool, false); // applies y's
        throw new Error("roll back");
      }),
    ).toThrow("roll back");
    expectAgrees(m, poolId);
  });

  test("a device moved to a pool whose id sorts first stays in the recovery listing", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    const ctx = m.core.ctx;
    const view = placementViewOf(ctx);
    view.sdsWithDevices();
    const db = ctx.store.sqlite;
    const cols = db.query<{ name: string }, []>("PRAGMA table_info(storage_pool)").all().map((c) => c.name);
    const row = db.query<Record<string, unknown>, [string]>("SELECT * FROM storage_pool WHERE id = ?").get(poolId)!;
    const first = "0000000000000000";
    db.run(`INSERT INTO storage_pool (${cols.join(",")}) VALUES (${cols.map(() => "?").join(",")})`, cols.map((c) => (c === "id" ? first : c === "name" ? "sp0" : row[c])) as never);
    const dev = db.query<{ id: string }, [string]>("SELECT id FROM device WHERE pool_id = ? LIMIT 1").get(poolId)!.id;
    db.run("UPDATE device SET pool_id = ? WHERE id = ?", [first, dev]);
    const all = view.sdsWithDevices();
    expect(all.sds.flatMap((s) => all.devicesOf(s.id).map((d) => d.id))).toContain(dev);
    expectAgrees(m, poolId);
  });

  test("an MDM restart builds the view from the store", async () => {
    m = await MdmFixture.open();
    const { poolId } = await setup(m);
    await createVolume(m, poolId, "v1", 32);
    const held = structuredClone(placementViewOf(m.core.ctx).devicesOf(poolId));
    const dir = m.dir;
    m.close({ keepDir: true });
    keepDir = dir;
    m = await MdmFixture.open({ dir });
    await m.login();
    expect(structuredClone(placementViewOf(m.core.ctx).devicesOf(poolId))).toEqual(held);
    await createVolume(m, poolId, "v2", 32);
    expectAgrees(m, poolId);
  });
});
