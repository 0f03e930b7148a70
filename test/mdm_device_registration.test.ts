// Devices the SDS has not opened hold no data. A device registered through REST for a running SDS
// once took extents (rebalance moves, new volumes) its SDS could not serve: "assigned to unknown
// device" on the SDS and EIO for every client IO to them. And a device left out of an SDS's
// join (gone from its configuration) stayed Normal and kept taking extents.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { HeartbeatResponse } from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import { GiB, MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
});
afterEach(() => m.close());

type Obj = Record<string, unknown>;
type DeviceRow = { id: string; path: string; state: string; capacity: number; assigned: number };

function devicesOf(sdsId: string): DeviceRow[] {
  return m.core.ctx.store.sqlite
    .query<DeviceRow, [string]>("SELECT id, path, state, capacity_bytes AS capacity, assigned_bytes AS assigned FROM device WHERE sds_id = ? ORDER BY path")
    .all(sdsId);
}

function copiesOn(deviceId: string): number {
  return (
    m.core.ctx.store.sqlite
      .query<{ n: number }, [string, string, string]>("SELECT COUNT(*) AS n FROM extent WHERE primary_device_id = ? OR secondary_device_id = ? OR target_device_id = ?")
      .get(deviceId, deviceId, deviceId)?.n ?? 0
  );
}

async function pool(): Promise<{ poolId: string; sdsIds: string[] }> {
  await m.login();
  const sdsIds: string[] = [];
  for (let i = 1; i <= 3; i++) sdsIds.push((await m.joinSds(`sds${i}`, { devicesGiB: [4] })).sdsId);
  const poolId = await m.idOf("StoragePool", "sp1");
  return { poolId, sdsIds };
}

async function createVolume(poolId: string, name: string, gib: number): Promise<void> {
  const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: String(gib * 1024 * 1024), name, volumeType: "ThickProvisioned" });
  expect(r.status).toBe(200);
}

describe("a device its SDS has not opened", () => {
  test("registered through REST for a joined SDS: no capacity, no extent placed on it, even with capacityInKb in the body", async () => {
    const { poolId, sdsIds } = await pool();
    const r = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/new-disk", sdsId: sdsIds[0], storagePoolId: poolId, capacityInKb: String(64 * 1024 * 1024) });
    expect(r.status).toBe(200);
    const id = (r.json as Obj).id as string;
    const row = devicesOf(sdsIds[0]!).find((d) => d.id === id)!;
    expect(row).toMatchObject({ path: "/dev/new-disk", state: "Normal", capacity: 0 });
    // more than the other devices' free room would allow if the new one counted: 3 x 4 GiB raw, two copies
    await createVolume(poolId, "v1", 4);
    expect(copiesOn(id)).toBe(0);
    // sds1 joins again without it: never opened, so not Failed either (its beats are asked to open it)
    await m.joinSds("sds1", { devicesGiB: [4] });
    expect(devicesOf(sdsIds[0]!).find((d) => d.id === id)).toMatchObject({ capacity: 0, state: "Normal" });
  });

  test("the join that lists the registered path gives it the size the SDS opened", async () => {
    const { poolId, sdsIds } = await pool();
    // the fixture names an SDS's devices /dev/fake-<name>-<i>: register the one a two-device join brings
    const r = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/fake-sds1-1", sdsId: sdsIds[0], storagePoolId: poolId });
    const id = (r.json as Obj).id as string;
    expect(devicesOf(sdsIds[0]!).find((d) => d.id === id)).toMatchObject({ capacity: 0 });
    const joined = await m.joinSds("sds1", { devicesGiB: [4, 8] });
    expect(joined.devices.map((d) => d.deviceId)).toContain(id);
    expect(devicesOf(sdsIds[0]!).find((d) => d.id === id)).toMatchObject({ state: "Normal", capacity: 8 * GiB });
  });

  test("left out of a join: marked Failed (recovery rebuilds its copies as for any Failed device); listed again: Normal once the SDS reports it", async () => {
    const { poolId } = await pool();
    const sds4 = (await m.joinSds("sds4", { devicesGiB: [4, 4] })).sdsId;
    await createVolume(poolId, "v1", 4);
    const [d0, d1] = devicesOf(sds4);
    expect(d1!.assigned).toBeGreaterThan(0);
    // sds4 restarts with only its first disk
    await m.joinSds("sds4", { devicesGiB: [4] });
    const after = devicesOf(sds4);
    expect(after.find((d) => d.id === d0!.id)).toMatchObject({ state: "Normal" });
    expect(after.find((d) => d.id === d1!.id)).toMatchObject({ state: "Failed" });
    // nothing new goes to the Failed device
    const before = copiesOn(d1!.id);
    await createVolume(poolId, "v2", 2);
    expect(copiesOn(d1!.id)).toBeLessThanOrEqual(before);
    // the disk is back in its configuration: the SDS opens it and its heartbeat says Normal
    const back = await m.joinSds("sds4", { devicesGiB: [4, 4] });
    const beat = await m.cluster("POST", `/sds/${sds4}/heartbeat`, {
      devices: back.devices.map((d) => ({ deviceId: d.deviceId, state: "Normal", usedBytes: 0 })),
      appliedMapVersion: 0,
    });
    expect(beat.status).toBe(200);
    expect(devicesOf(sds4).find((d) => d.id === d1!.id)).toMatchObject({ state: "Normal" });
  });

  test("why a device is Failed reaches the REST object: the SDS's words while it says them, the left-out join's otherwise; cleared when Normal", async () => {
    await pool();
    const sds4 = (await m.joinSds("sds4", { devicesGiB: [4, 4] })).sdsId;
    const [d0, d1] = devicesOf(sds4);
    const device = async (id: string) => (await m.api("GET", `/instances/Device::${id}`)).json as Obj;
    expect(await device(d0!.id)).toMatchObject({ deviceState: "Normal", errorState: "None", errorMessage: null });
    const report = (d: DeviceRow, state: string, error?: string) => ({ deviceId: d.id, state, usedBytes: 0, ...(error === undefined ? {} : { error }) });
    const beat = async (devices: Obj[]) => expect((await m.cluster("POST", `/sds/${sds4}/heartbeat`, { devices, appliedMapVersion: 0 })).status).toBe(200);
    await beat([report(d0!, "Failed", "fdatasync /data/d0: EIO: i/o error"), report(d1!, "Normal")]);
    expect(await device(d0!.id)).toMatchObject({ deviceState: "Failed", errorState: "Error", errorMessage: "fdatasync /data/d0: EIO: i/o error" });
    // a longer report is cut, not refused: the beat goes through
    await beat([report(d0!, "Failed", "x".repeat(Limits.deviceErrorChars + 50)), report(d1!, "Normal")]);
    expect(String((await device(d0!.id)).errorMessage)).toBe("x".repeat(Limits.deviceErrorChars));
    await beat([report(d0!, "Normal"), report(d1!, "Normal")]);
    expect(await device(d0!.id)).toMatchObject({ deviceState: "Normal", errorMessage: null });
    // restarted without its second disk: the MDM says why it marked it Failed
    await m.joinSds("sds4", { devicesGiB: [4] });
    expect(String((await device(d1!.id)).errorMessage)).toMatch(/^SDS sds4 joined without it: gone from its configuration/);
  });

  test("a running SDS is asked by its heartbeat answers to open it; reported open with a size, it takes data", async () => {
    const { poolId, sdsIds } = await pool();
    const sds1 = sdsIds[0]!;
    const beat = async (devices: { deviceId: string; state: string; usedBytes: number; capacityBytes?: number }[]) => {
      const r = await m.cluster("POST", `/sds/${sds1}/heartbeat`, { devices, appliedMapVersion: 0 });
      expect(r.status).toBe(200);
      return r.json as { openDevices?: { deviceId: string; path: string }[]; closeDevices?: string[] };
    };
    const own = devicesOf(sds1).map((d) => ({ deviceId: d.id, state: "Normal", usedBytes: 0, capacityBytes: 4 * GiB }));
    // the usual beat: nothing to open or close
    expect(await beat(own)).not.toHaveProperty("openDevices");
    const r = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/added", sdsId: sds1, storagePoolId: poolId });
    const id = (r.json as Obj).id as string;
    expect((await beat(own)).openDevices).toEqual([{ deviceId: id, path: "/dev/added" }]);
    // the SDS opened it: its size becomes the capacity; not asked again
    const withNew = [...own, { deviceId: id, state: "Normal", usedBytes: 0, capacityBytes: 16 * GiB }];
    expect(await beat(withNew)).not.toHaveProperty("openDevices");
    expect(devicesOf(sds1).find((d) => d.id === id)).toMatchObject({ state: "Normal", capacity: 16 * GiB });
    await createVolume(poolId, "big", 8);
    expect(copiesOn(id)).toBeGreaterThan(0);
  });

  test("one the SDS cannot open comes back Failed and is not asked again; a removed one is closed", async () => {
    const { poolId, sdsIds } = await pool();
    const sds1 = sdsIds[0]!;
    const own = devicesOf(sds1).map((d) => ({ deviceId: d.id, state: "Normal", usedBytes: 0, capacityBytes: 4 * GiB }));
    const r = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/missing", sdsId: sds1, storagePoolId: poolId });
    const id = (r.json as Obj).id as string;
    const failed = await m.cluster("POST", `/sds/${sds1}/heartbeat`, { devices: [...own, { deviceId: id, state: "Failed", usedBytes: 0 }], appliedMapVersion: 0 });
    expect(failed.json).not.toHaveProperty("openDevices");
    expect(devicesOf(sds1).find((d) => d.id === id)).toMatchObject({ state: "Failed", capacity: 0 });
    const removed = await m.api("POST", `/instances/Device::${id}/action/removeDevice`, {});
    expect(removed.status).toBe(200);
    const after = await m.cluster("POST", `/sds/${sds1}/heartbeat`, { devices: [...own, { deviceId: id, state: "Failed", usedBytes: 0 }], appliedMapVersion: 0 });
    expect((after.json as { closeDevices?: string[] }).closeDevices).toEqual([id]);
  });

  test("no more devices for one SDS than its join and beats carry; a heartbeat answer names at most that many to open", async () => {
    const { poolId, sdsIds } = await pool();
    const sds1 = sdsIds[0]!;
    for (let i = devicesOf(sds1).length; i < Limits.maxDevicesPerSds; i++) {
      const r = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: `/dev/many-${i}`, sdsId: sds1, storagePoolId: poolId });
      expect(r.status).toBe(200);
    }
    const over = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/one-too-many", sdsId: sds1, storagePoolId: poolId });
    expect((over.json as Obj).pfCode).toBe("TOO_BIG");
    const beat = await m.cluster("POST", `/sds/${sds1}/heartbeat`, { devices: [], appliedMapVersion: 0 });
    expect(HeartbeatResponse.safeParse({ term: 1, ...(beat.json as Obj) }).success).toBe(true);
  });

  test("a join naming an added device the MDM removed meanwhile does not register it again", async () => {
    await m.login();
    const first = await m.cluster("POST", "/sds/join", joinBody([{ path: "/dev/base", capacityBytes: 4 * GiB }]));
    expect(first.status).toBe(200);
    const again = await m.cluster("POST", "/sds/join", joinBody([{ path: "/dev/base", capacityBytes: 4 * GiB }, { path: "/dev/gone", capacityBytes: 4 * GiB, added: true }]));
    expect(again.status).toBe(200);
    const answer = again.json as { sdsId: string; devices: { path: string }[] };
    expect(answer.devices.map((d) => d.path)).toEqual(["/dev/base"]);
    expect(devicesOf(answer.sdsId).map((d) => d.path)).toEqual(["/dev/base"]);
  });
});

function joinBody(devices: { path: string; capacityBytes: number; added?: boolean }[]): Obj {
  return { name: "sds-j", host: "127.0.0.1", dataPort: 7999, protectionDomainName: "pd1", storagePoolName: "sp1", devices };
}
