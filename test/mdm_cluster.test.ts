// Internal cluster API (/pf/v1) in-process: the cluster secret, idempotent SDS/SDC joins,
// heartbeats and connection state on an injected clock, SDS assignments, SDC maps, mapVersion,
// and device usage from heartbeats feeding pool statistics.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  HeartbeatResponse,
  SdcMapsResponse,
  SdsAssignmentsResponse,
  SdsJoinResponse,
  SdcJoinResponse,
} from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import { GiB, MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

type Obj = Record<string, unknown>;

async function mapVersion(sdsId: string): Promise<number> {
  const r = await m.cluster("POST", `/sds/${sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0 });
  return HeartbeatResponse.parse(r.json).mapVersion;
}

describe("cluster secret", () => {
  test("every /pf/v1 call without the right secret is refused and changes nothing", async () => {
    const before = await m.snapshot();
    const join = { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: GiB }] };
    for (const secret of ["wrong-secret-value", ""]) {
      const r = await m.cluster("POST", "/sds/join", join, secret);
      expect(r.status).toBe(401);
      expect((r.json as Obj).pfCode).toBe("UNAUTHORIZED");
    }
    const none = await m.raw("POST", "/pf/v1/sdc/join", { body: JSON.stringify({ guid: "g", host: "h" }), headers: { "content-type": "application/json" } });
    expect(none.status).toBe(401);
    // a REST token is not a cluster secret
    const tok = await m.raw("GET", "/pf/v1/sdc/0123456789abcdef/maps", { headers: { authorization: `Basic ${Buffer.from(`:${m.token}`).toString("base64")}` } });
    expect(tok.status).toBe(401);
    expect(await m.snapshot()).toBe(before);
  });

  test("bad join bodies are refused with BAD_REQUEST", async () => {
    const before = await m.snapshot();
    const r = await m.cluster("POST", "/sds/join", { name: "sds 1", host: "h", dataPort: 0, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [] });
    expect(r.status).toBe(400);
    expect((r.json as Obj).pfCode).toBe("BAD_REQUEST");
    const dup = await m.cluster("POST", "/sds/join", {
      name: "sds1", host: "h", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1",
      devices: [{ path: "/d", capacityBytes: GiB }, { path: "/d", capacityBytes: GiB }],
    });
    expect(dup.status).toBe(400);
    expect(await m.snapshot()).toBe(before);
  });
});

describe("SDS join, heartbeat, assignments", () => {
  test("a join creates PD/pool on demand; a rejoin by name keeps the SDS id and device ids (matched by path)", async () => {
    const first = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", {
      name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1",
      devices: [{ path: "/data/a", capacityBytes: 10 * GiB }, { path: "/data/b", capacityBytes: 10 * GiB }],
    })).json);
    expect(first.devices.length).toBe(2);
    expect(first.nodeToken).toMatch(/^[0-9a-f]{64}$/);
    const sys = ((await m.api("GET", "/types/System/instances")).json as Obj[])[0] as Obj;
    expect(first.systemId).toBe(sys.id as string);
    expect(await m.idOf("ProtectionDomain", "pd1")).toMatch(/^[0-9a-f]{16}$/);

    const again = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", {
      name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1",
      devices: [{ path: "/data/b", capacityBytes: 12 * GiB }, { path: "/data/a", capacityBytes: 10 * GiB }, { path: "/data/c", capacityBytes: 5 * GiB }],
    })).json);
    expect(again.sdsId).toBe(first.sdsId);
    const idOf = (r: SdsJoinResponse, p: string) => r.devices.find((d) => d.path === p)?.deviceId;
    expect(idOf(again, "/data/a")).toBe(idOf(first, "/data/a"));
    expect(idOf(again, "/data/b")).toBe(idOf(first, "/data/b"));
    expect(idOf(again, "/data/c")).toMatch(/^[0-9a-f]{16}$/);
    expect(again.nodeToken).toBe(first.nodeToken);
    const devs = (await m.api("GET", `/instances/Sds::${first.sdsId}/relationships/Device`)).json as Obj[];
    expect(devs.length).toBe(3);
    expect(devs.find((d) => d.id === idOf(first, "/data/b"))?.maxCapacityInKb).toBe(12 * 1024 * 1024);
    expect((await m.api("GET", "/types/Sds/instances")).json as Obj[]).toHaveLength(1);
  });

  test("an SDS created through REST is claimed by the process that joins with its name", async () => {
    const pd = (await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" })).json as Obj;
    const sp = (await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pd.id, name: "sp1" })).json as Obj;
    const created = await m.api("POST", "/types/Sds/instances", {
      protectionDomainId: pd.id, name: "sdsR", sdsIpList: [{ SdsIp: { ip: "10.0.0.11", role: "all" } }],
      deviceInfoList: [{ devicePath: "/dev/sdb", storagePoolId: sp.id, deviceName: "sdb" }], sdsPort: "7072", forceClean: "FALSE",
    });
    expect(created.status).toBe(200);
    const sdsId = (created.json as Obj).id as string;
    const rest = (await m.api("GET", `/instances/Sds::${sdsId}`)).json as Obj;
    expect(rest).toMatchObject({ ipList: [{ ip: "10.0.0.11", role: "all" }], port: 7072, mdmConnectionState: "Disconnected" });
    const dev = ((await m.api("GET", `/instances/Sds::${sdsId}/relationships/Device`)).json as Obj[])[0] as Obj;

    const v0 = m.core.ctx.store.sqlite.query("SELECT map_version AS v FROM system").get() as { v: number };
    const joined = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", {
      name: "sdsR", host: "10.0.0.12", dataPort: 7073, protectionDomainName: "pd1", storagePoolName: "sp1",
      devices: [{ path: "/dev/sdb", capacityBytes: 50 * GiB }],
    })).json);
    expect(joined.sdsId).toBe(sdsId);
    expect(joined.devices).toEqual([{ deviceId: dev.id as string, path: "/dev/sdb" }]);
    const after = (await m.api("GET", `/instances/Sds::${sdsId}`)).json as Obj;
    expect(after).toMatchObject({ port: 7073, mdmConnectionState: "Connected" });
    expect((after.ipList as Obj[])[0]).toEqual({ ip: "10.0.0.12", role: "all" });
    // an address change is a map change
    expect(await mapVersion(sdsId)).toBeGreaterThan(v0.v);
    // joining into another PD than its own is refused
    const wrong = await m.cluster("POST", "/sds/join", { name: "sdsR", host: "10.0.0.12", dataPort: 7073, protectionDomainName: "pd2", storagePoolName: "sp1", devices: [{ path: "/dev/sdb", capacityBytes: GiB }] });
    expect((wrong.json as Obj).pfCode).toBe("INVALID_STATE");
  });

  test("connection state follows heartbeats on the injected clock", async () => {
    const s = await m.joinSds("sds1");
    const state = async () => ((await m.api("GET", `/instances/Sds::${s.sdsId}`)).json as Obj).mdmConnectionState;
    expect(await state()).toBe("Connected");
    m.clock.advance(Limits.heartbeatTimeoutMs + 1);
    expect(await state()).toBe("Disconnected");
    const hb = await m.cluster("POST", `/sds/${s.sdsId}/heartbeat`, { devices: [], appliedMapVersion: 1 });
    expect(hb.status).toBe(200);
    expect(HeartbeatResponse.parse(hb.json).leaseMs).toBe(Limits.sdsLeaseMs);
    expect(await state()).toBe("Connected");
    const unknown = await m.cluster("POST", "/sds/0123456789abcdef/heartbeat", { devices: [], appliedMapVersion: 1 });
    expect((unknown.json as Obj).pfCode).toBe("NOT_FOUND");
    // a disconnected SDS gets no new extents
    await m.joinSds("sds2");
    const pool = await m.idOf("StoragePool", "sp1");
    m.clock.advance(Limits.heartbeatTimeoutMs + 1);
    await m.cluster("POST", `/sds/${s.sdsId}/heartbeat`, { devices: [], appliedMapVersion: 1 });
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v", volumeType: "ThinProvisioned" });
    expect((r.json as Obj).pfCode).toBe("NOT_ENOUGH_SDS");
  });

  test("assignments list every extent copy of the SDS with replicas primary first and its device", async () => {
    const sds = [await m.joinSds("sds1"), await m.joinSds("sds2"), await m.joinSds("sds3")];
    const pool = await m.idOf("StoragePool", "sp1");
    const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "2", name: "v", volumeType: "ThickProvisioned" })).json as Obj).id as string;
    const extents = (2 * GiB) / Limits.defaultExtentBytes;
    let copies = 0;
    const seen = new Map<number, string[]>();
    for (const s of sds) {
      const a = SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${s.sdsId}/assignments`)).json);
      expect(a.extentSizeBytesByVolume[vol]).toBe(Limits.defaultExtentBytes);
      expect(a.sds!.map((x) => x.sdsId).sort()).toEqual(sds.map((x) => x.sdsId).sort());
      for (const e of a.extents) {
        copies++;
        expect(e.volumeId).toBe(vol);
        expect(e.epoch).toBe(1);
        expect(e.thick).toBe(true);
        expect(e.replicas).toContain(s.sdsId);
        expect(new Set(e.replicas).size).toBe(2);
        expect(s.devices.map((d) => d.deviceId)).toContain(e.deviceId);
        const prev = seen.get(e.extentIndex);
        if (prev) expect(prev).toEqual(e.replicas);
        seen.set(e.extentIndex, e.replicas);
      }
    }
    expect(copies).toBe(2 * extents);
    expect(seen.size).toBe(extents);
    // spread wide: every SDS holds some copies
    for (const s of sds) expect([...seen.values()].some((r) => r.includes(s.sdsId))).toBe(true);
  });

  test("fault sets: the two copies of an extent are never in one fault set", async () => {
    for (const [i, fs] of ["fsA", "fsA", "fsB", "fsB"].entries()) await m.joinSds(`sds${i + 1}`, { faultSet: fs });
    const pool = await m.idOf("StoragePool", "sp1");
    await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "4", name: "v", volumeType: "ThinProvisioned" });
    const fsOf = new Map(((await m.api("GET", "/types/Sds/instances")).json as Obj[]).map((s) => [s.id as string, s.faultSetId as string]));
    const rows = m.core.ctx.store.sqlite.query("SELECT primary_sds_id AS p, secondary_sds_id AS s FROM extent").all() as { p: string; s: string }[];
    expect(rows.length).toBe(64);
    for (const r of rows) expect(fsOf.get(r.p)).not.toBe(fsOf.get(r.s));
    const fsList = (await m.api("GET", "/types/FaultSet/instances")).json as Obj[];
    expect(fsList.map((f) => f.name).sort()).toEqual(["fsA", "fsB"]);
  });

  test("device state and usage from heartbeats feed capacity statistics", async () => {
    const sds = [await m.joinSds("sds1"), await m.joinSds("sds2"), await m.joinSds("sds3")];
    const pool = await m.idOf("StoragePool", "sp1");
    await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "10", name: "thin", volumeType: "ThinProvisioned" });
    for (const s of sds) {
      const hb = await m.cluster("POST", `/sds/${s.sdsId}/heartbeat`, { devices: [{ deviceId: s.devices[0]?.deviceId, state: "Normal", usedBytes: 2 * GiB }], appliedMapVersion: 1 });
      expect(hb.status).toBe(200);
    }
    const stats = (await m.api("GET", `/instances/StoragePool::${pool}/relationships/Statistics`)).json as Obj;
    expect(stats.capacityInUseInKb).toBe(6 * 1024 * 1024);
    expect(stats.thinCapacityInUseInKb).toBe(6 * 1024 * 1024);
    expect(stats.thinCapacityAllocatedInKm).toBe(10 * 1024 * 1024);
    // (270 GiB usable - 6 GiB used raw) / 2 = 132 GiB net
    expect(stats.capacityAvailableForVolumeAllocationInKb).toBe(132 * 1024 * 1024);
    const failed = await m.cluster("POST", `/sds/${sds[0]?.sdsId}/heartbeat`, { devices: [{ deviceId: sds[0]?.devices[0]?.deviceId, state: "Failed", usedBytes: 2 * GiB }], appliedMapVersion: 1 });
    expect(failed.status).toBe(200);
    const dev = (await m.api("GET", `/instances/Device::${sds[0]?.devices[0]?.deviceId}`)).json as Obj;
    expect(dev).toMatchObject({ deviceState: "Failed", errorState: "Error" });
    const after = (await m.api("GET", `/instances/StoragePool::${pool}/relationships/Statistics`)).json as Obj;
    expect(after.capacityLimitInKb).toBe(200 * 1024 * 1024);
    expect(after.failedCapacityInKb).toBe(100 * 1024 * 1024);
  });
});

describe("SDC join, maps, mapVersion", () => {
  test("an SDC join is idempotent by guid; maps list mapped volumes with extent maps and SDS addresses", async () => {
    const sds = [await m.joinSds("sds1"), await m.joinSds("sds2"), await m.joinSds("sds3")];
    const j1 = SdcJoinResponse.parse((await m.cluster("POST", "/sdc/join", { guid: "g-1", name: "hostA", host: "10.1.1.1" })).json);
    const j2 = SdcJoinResponse.parse((await m.cluster("POST", "/sdc/join", { guid: "g-1", host: "10.1.1.2" })).json);
    expect(j2.sdcId).toBe(j1.sdcId);
    const sdc = (await m.api("GET", `/instances/Sdc::${j1.sdcId}`)).json as Obj;
    expect(sdc).toMatchObject({ sdcGuid: "g-1", name: "hostA", sdcIp: "10.1.1.2", mdmConnectionState: "Connected" });
    expect((await m.api("GET", "/types/Sdc/instances")).json as Obj[]).toHaveLength(1);

    const pool = await m.idOf("StoragePool", "sp1");
    const hb0 = HeartbeatResponse.parse((await m.cluster("POST", `/sdc/${j1.sdcId}/heartbeat`, { appliedMapVersion: 0 })).json).mapVersion;
    const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "mv", volumeType: "ThinProvisioned" })).json as Obj).id as string;
    // a volume mapped to no SDC changes no SDC's maps: the heartbeat keeps the SDC's version
    const hb1 = HeartbeatResponse.parse((await m.cluster("POST", `/sdc/${j1.sdcId}/heartbeat`, { appliedMapVersion: hb0 })).json).mapVersion;
    expect(hb1).toBe(hb0);
    let maps = SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${j1.sdcId}/maps`)).json);
    expect(maps.volumes).toEqual([]);

    await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: j1.sdcId, accessMode: "ReadOnly" });
    maps = SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${j1.sdcId}/maps`)).json);
    expect(maps.mapVersion).toBeGreaterThan(hb1);
    expect(maps.volumes.length).toBe(1);
    const vm = maps.volumes[0]!;
    expect(vm).toMatchObject({ volumeId: vol, name: "mv", sizeBytes: GiB, accessMode: "ReadOnly", extentSizeBytes: Limits.defaultExtentBytes });
    expect(vm.extents.length).toBe(GiB / Limits.defaultExtentBytes);
    for (const e of vm.extents) {
      expect(e.epoch).toBe(1);
      expect(e.replicas.length).toBe(2);
      expect(e.replicas[0]).not.toBe(e.replicas[1]);
    }
    expect(maps.sds!.map((s) => s.sdsId).sort()).toEqual(sds.map((s) => s.sdsId).sort());
    expect(maps.sds!.find((s) => s.sdsId === sds[0]?.sdsId)).toEqual({ sdsId: sds[0]!.sdsId, host: "127.0.0.1", port: 7001 });

    // extend, rename, unmap, remove: each moves mapVersion
    let v = maps.mapVersion;
    const steps: [string, unknown][] = [
      ["setVolumeSize", { sizeInGB: "2" }],
      ["setVolumeName", { newName: "mv2" }],
      ["removeMappedSdc", { sdcId: j1.sdcId }],
      ["removeVolume", { removeMode: "ONLY_ME" }],
    ];
    for (const [action, body] of steps) {
      expect((await m.api("POST", `/instances/Volume::${vol}/action/${action}`, body)).status).toBe(200);
      const now = HeartbeatResponse.parse((await m.cluster("POST", `/sdc/${j1.sdcId}/heartbeat`, { appliedMapVersion: v })).json).mapVersion;
      expect(now).toBeGreaterThan(v);
      v = now;
    }
    expect(SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${j1.sdcId}/maps`)).json).volumes).toEqual([]);
  });

  test("SDC connection state times out without heartbeats; unknown SDC ids are NOT_FOUND", async () => {
    const id = await m.joinSdc("g-2");
    m.clock.advance(Limits.heartbeatTimeoutMs);
    expect(((await m.api("GET", `/instances/Sdc::${id}`)).json as Obj).mdmConnectionState).toBe("Disconnected");
    await m.cluster("POST", `/sdc/${id}/heartbeat`, { appliedMapVersion: 0 });
    expect(((await m.api("GET", `/instances/Sdc::${id}`)).json as Obj).mdmConnectionState).toBe("Connected");
    const r = await m.cluster("GET", "/sdc/0123456789abcdef/maps");
    expect((r.json as Obj).pfCode).toBe("NOT_FOUND");
    const bad = await m.cluster("GET", "/sdc/xyz/maps");
    expect(bad.status).toBe(400);
  });
});
