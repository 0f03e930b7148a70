// REST API in the PowerFlex gateway shape, in-process (app.request): the flows PyPowerFlex,
// Ansible and goscaleio drive, auth and token expiry, and refused inputs leaving state unchanged.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Limits } from "../src/proto/limits.ts";
import { ADMIN_PASSWORD, basic, GiB, MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
});
afterEach(() => m.close());

type Obj = Record<string, unknown>;

async function setupPool(opts: { sds?: number; spare?: string } = {}): Promise<{ pdId: string; poolId: string; sdcId: string }> {
  await m.login();
  const pd = await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" });
  expect(pd.status).toBe(200);
  const pdId = (pd.json as Obj).id as string;
  const sp = await m.api("POST", "/types/StoragePool/instances", {
    protectionDomainId: pdId,
    name: "sp1",
    mediaType: "HDD",
    sparePercentage: opts.spare ?? "10",
    dataLayout: "MediumGranularity",
    zeroPaddingEnabled: "TRUE",
  });
  expect(sp.status).toBe(200);
  const poolId = (sp.json as Obj).id as string;
  for (let i = 1; i <= (opts.sds ?? 3); i++) await m.joinSds(`sds${i}`, { devicesGiB: [100] });
  const sdcId = await m.joinSdc("guid-host-a", "hostA");
  return { pdId, poolId, sdcId };
}

describe("login, version, logout", () => {
  test("login returns a JSON string token; the token is the Basic password with any or an empty user", async () => {
    const r = await m.raw("GET", "/api/login", { headers: { authorization: basic("admin", ADMIN_PASSWORD) } });
    expect(r.status).toBe(200);
    expect(typeof r.json).toBe("string");
    expect(r.text.startsWith('"')).toBe(true);
    m.token = r.json as string;
    for (const user of ["admin", "", "whoever"]) {
      const v = await m.api("GET", "/version", undefined, user);
      expect(v.status).toBe(200);
      expect(v.json).toBe("3.6");
      const sys = await m.api("GET", "/types/System/instances", undefined, user);
      expect(sys.status).toBe(200);
    }
  });

  test("POST /api/login with Basic auth works too; a wrong password is 401 with the PowerFlex body", async () => {
    const ok = await m.raw("POST", "/api/login", { headers: { authorization: basic("admin", ADMIN_PASSWORD) } });
    expect(ok.status).toBe(200);
    const bad = await m.raw("GET", "/api/login", { headers: { authorization: basic("admin", "nope") } });
    expect(bad.status).toBe(401);
    expect(bad.json).toEqual({ message: "Unauthorized", httpStatusCode: 401, errorCode: 0, pfCode: "UNAUTHORIZED" });
    const none = await m.raw("GET", "/api/login");
    expect(none.status).toBe(401);
  });

  test("version needs no token; everything else does", async () => {
    const v = await m.raw("GET", "/api/version");
    expect(v.status).toBe(200);
    expect(v.json).toBe("3.6");
    const list = await m.raw("GET", "/api/types/Volume/instances");
    expect(list.status).toBe(401);
    expect((list.json as Obj).pfCode).toBe("UNAUTHORIZED");
  });

  test("a forged token is 401; logout ends a token; an idle token expires", async () => {
    await m.login();
    m.token = m.token.slice(0, -2) + (m.token.endsWith("AA") ? "BB" : "AA");
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);

    await m.login();
    expect((await m.api("GET", "/logout")).status).toBe(200);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);

    await m.login();
    m.clock.advance(Limits.tokenIdleTimeoutMs - 1000);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(200); // use refreshes it
    m.clock.advance(Limits.tokenIdleTimeoutMs - 1000);
    expect((await m.api("GET", "/types/System/instances")).status).toBe(200);
    m.clock.advance(Limits.tokenIdleTimeoutMs);
    const expired = await m.api("GET", "/types/System/instances");
    expect(expired.status).toBe(401);
  });

  test("the token store is capped: beyond maxTokens the least recently used token is dropped", async () => {
    m.close();
    m = await MdmFixture.open({ tokens: { maxTokens: 3 } });
    const first = await m.login();
    await m.login();
    await m.login();
    const fourth = await m.login();
    expect(m.core.ctx.tokens.size).toBe(3);
    m.token = first;
    expect((await m.api("GET", "/types/System/instances")).status).toBe(401);
    m.token = fourth;
    expect((await m.api("GET", "/types/System/instances")).status).toBe(200);
  });
});

describe("PyPowerFlex-style volume lifecycle", () => {
  test("create PD/pool/volume with string numbers, get, map, extend, rename, unmap, remove", async () => {
    const { pdId, poolId, sdcId } = await setupPool();

    const created = await m.api("POST", "/types/Volume/instances", {
      storagePoolId: poolId,
      volumeSizeInGb: "8",
      name: "v1",
      volumeType: "ThinProvisioned",
      useRmcache: "False",
      compressionMethod: null,
      volumeClass: "defaultclass",
    });
    expect(created.status).toBe(200);
    const volId = (created.json as Obj).id as string;
    expect(volId).toMatch(/^[0-9a-f]{16}$/);

    const got = await m.api("GET", `/instances/Volume::${volId}`);
    expect(got.status).toBe(200);
    const vol = got.json as Obj;
    expect(vol).toMatchObject({
      id: volId,
      name: "v1",
      sizeInKb: 8 * 1024 * 1024,
      volumeType: "ThinProvisioned",
      storagePoolId: poolId,
      ancestorVolumeId: null,
      mappedSdcInfo: null,
      dataLayout: "MediumGranularity",
      managedBy: "ScaleIO",
    });
    const links = vol.links as { rel: string; href: string }[];
    expect(links).toContainEqual({ rel: "self", href: `/api/instances/Volume::${volId}` });
    expect(links).toContainEqual({ rel: "/api/parent/relationship/storagePoolId", href: `/api/instances/StoragePool::${poolId}` });

    const map = await m.api("POST", `/instances/Volume::${volId}/action/addMappedSdc`, {
      sdcId,
      allowMultipleMappings: "TRUE",
      accessMode: "ReadWrite",
      volumeClass: "defaultclass",
    });
    expect(map.status).toBe(200);
    expect(map.json).toEqual({});
    const mapped = (await m.api("GET", `/instances/Volume::${volId}`)).json as Obj;
    expect(mapped.mappedSdcInfo).toEqual([
      { sdcId, sdcIp: "127.0.0.1", sdcName: "hostA", accessMode: "ReadWrite", limitIops: 0, limitBwInMbps: 0, isDirectBufferMapping: false },
    ]);
    const sdcVols = await m.api("GET", `/instances/Sdc::${sdcId}/relationships/Volume`);
    expect((sdcVols.json as Obj[]).map((x) => x.id)).toEqual([volId]);

    const ext = await m.api("POST", `/instances/Volume::${volId}/action/setVolumeSize`, { sizeInGB: "16", volumeClass: "defaultclass" });
    expect(ext.status).toBe(200);
    expect(((await m.api("GET", `/instances/Volume::${volId}`)).json as Obj).sizeInKb).toBe(16 * 1024 * 1024);
    const extents = m.core.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent WHERE volume_id = ?").get(volId) as { n: number };
    expect(extents.n).toBe((16 * GiB) / Limits.defaultExtentBytes);

    expect((await m.api("POST", `/instances/Volume::${volId}/action/setVolumeName`, { newName: "v1b" })).status).toBe(200);
    expect(await m.idOf("Volume", "v1b")).toBe(volId);

    const unmap = await m.api("POST", `/instances/Volume::${volId}/action/removeMappedSdc`, { sdcId });
    expect(unmap.status).toBe(200);
    expect(((await m.api("GET", `/instances/Volume::${volId}`)).json as Obj).mappedSdcInfo).toBeNull();

    const rm = await m.api("POST", `/instances/Volume::${volId}/action/removeVolume`, { removeMode: "ONLY_ME", volumeClass: "defaultclass" });
    expect(rm.status).toBe(200);
    expect(rm.json).toEqual({});
    const gone = await m.api("GET", `/instances/Volume::${volId}`);
    expect(gone.status).toBe(500);
    expect(gone.json).toMatchObject({ httpStatusCode: 500, errorCode: 79, pfCode: "NOT_FOUND" });
    expect((gone.json as Obj).message).toContain("Could not find the volume");
    const devs = m.core.ctx.store.sqlite.query("SELECT SUM(assigned_bytes) AS a FROM device").get() as { a: number };
    expect(devs.a).toBe(0);

    // PD and pool removal once empty (devices first: the pool refuses while it has devices)
    const poolRm = await m.api("POST", `/instances/StoragePool::${poolId}/action/removeStoragePool`, {});
    expect(poolRm.status).toBe(500);
    expect((poolRm.json as Obj).pfCode).toBe("IN_USE");
    for (const s of (await m.api("GET", "/types/Sds/instances")).json as Obj[]) {
      expect((await m.api("POST", `/instances/Sds::${s.id}/action/removeSds`, { force: "FALSE" })).status).toBe(200);
    }
    expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/removeStoragePool`, {})).status).toBe(200);
    expect((await m.api("POST", `/instances/ProtectionDomain::${pdId}/action/removeProtectionDomain`, {})).status).toBe(200);
    expect((await m.api("GET", "/types/ProtectionDomain/instances")).json).toEqual([]);
  });

  test("goscaleio-style create with volumeSizeInKb and protectionDomainId; size rounds up to the 1 GiB granularity", async () => {
    const { pdId, poolId } = await setupPool();
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, protectionDomainId: pdId, volumeSizeInKb: "1500000", volumeType: "ThickProvisioned", name: "k1" });
    expect(r.status).toBe(200);
    const vol = (await m.api("GET", `/instances/Volume::${(r.json as Obj).id}`)).json as Obj;
    expect(vol.sizeInKb).toBe(2 * 1024 * 1024);
    expect(vol.volumeType).toBe("ThickProvisioned");
    // default type is thick, numbers may be JSON numbers
    const d = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: 1, name: "k2" });
    expect(((await m.api("GET", `/instances/Volume::${(d.json as Obj).id}`)).json as Obj).volumeType).toBe("ThickProvisioned");
  });

  test("ids share one counter: the low 32 bits are unique across all objects", async () => {
    await setupPool();
    const ids: string[] = [];
    for (const t of ["ProtectionDomain", "StoragePool", "Sds", "Device", "Sdc"]) {
      for (const o of (await m.api("GET", `/types/${t}/instances`)).json as Obj[]) ids.push(o.id as string);
    }
    const lows = ids.map((id) => id.slice(8));
    expect(new Set(lows).size).toBe(ids.length);
  });

  test("multiple mappings need allowMultipleMappings; a repeat map is refused", async () => {
    const { poolId, sdcId } = await setupPool();
    const sdc2 = await m.joinSdc("guid-host-b", "hostB");
    const v = (await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1", name: "shared", volumeType: "ThinProvisioned" })).json as Obj;
    expect((await m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId })).status).toBe(200);
    const again = await m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId, allowMultipleMappings: "TRUE" });
    expect(again.status).toBe(500);
    expect(again.json).toMatchObject({ message: "The volume is already mapped to this SDC", pfCode: "ALREADY_MAPPED" });
    const second = await m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId: sdc2 });
    expect(second.status).toBe(500);
    expect((second.json as Obj).pfCode).toBe("INVALID_STATE");
    const ok = await m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId: sdc2, allowMultipleMappings: "True", accessMode: "ReadOnly" });
    expect(ok.status).toBe(200);
    const info = ((await m.api("GET", `/instances/Volume::${v.id}`)).json as Obj).mappedSdcInfo as Obj[];
    expect(info.map((x) => [x.sdcId, x.accessMode]).sort()).toEqual([[sdcId, "ReadWrite"], [sdc2, "ReadOnly"]].sort());
    const mapped = await m.api("POST", `/instances/Volume::${v.id}/action/removeVolume`, { removeMode: "ONLY_ME" });
    expect((mapped.json as Obj).pfCode).toBe("IN_USE");
    expect((await m.api("POST", `/instances/Volume::${v.id}/action/removeMappedSdc`, { allSdcs: "TRUE" })).status).toBe(200);
    expect(((await m.api("GET", `/instances/Volume::${v.id}`)).json as Obj).mappedSdcInfo).toBeNull();
  });
});

describe("queries", () => {
  test("queryIdByKey returns a bare quoted id; unknown names are NOT_FOUND", async () => {
    const { poolId } = await setupPool();
    const v = (await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1", name: "qv" })).json as Obj;
    const r = await m.api("POST", "/types/Volume/instances/action/queryIdByKey", { name: "qv" });
    expect(r.status).toBe(200);
    expect(r.text).toBe(`"${v.id}"`);
    expect(await m.idOf("StoragePool", "sp1")).toBe(poolId);
    const miss = await m.api("POST", "/types/Volume/instances/action/queryIdByKey", { name: "nope" });
    expect(miss.status).toBe(500);
    expect((miss.json as Obj).pfCode).toBe("NOT_FOUND");
  });

  test("querySelectedStatistics by ids, allIds, and flat for System; Statistics relationship", async () => {
    const { poolId } = await setupPool({ spare: "10" });
    await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "10", name: "thick1", volumeType: "ThickProvisioned" });
    const props = ["maxCapacityInKb", "spareCapacityInKb", "thickCapacityInUseInKb", "capacityAvailableForVolumeAllocationInKb", "numOfVolumes"];
    const r = await m.api("POST", "/types/StoragePool/instances/action/querySelectedStatistics", { ids: [poolId], properties: props });
    expect(r.status).toBe(200);
    const raw = 300 * 1024 * 1024; // 3 x 100 GiB in KiB
    const s = (r.json as Record<string, Obj>)[poolId] as Obj;
    expect(s.maxCapacityInKb).toBe(raw);
    expect(s.spareCapacityInKb).toBe(raw / 10);
    expect(s.thickCapacityInUseInKb).toBe(2 * 10 * 1024 * 1024);
    // (270 GiB usable - 20 GiB thick raw) / 2 = 125 GiB net
    expect(s.capacityAvailableForVolumeAllocationInKb).toBe(125 * 1024 * 1024);
    expect(s.numOfVolumes).toBe(1);
    const all = await m.api("POST", "/types/StoragePool/instances/action/querySelectedStatistics", { allIds: "", properties: ["numOfVolumes"] });
    expect(all.json).toEqual({ [poolId]: { numOfVolumes: 1 } });
    const sys = await m.api("POST", "/types/System/instances/action/querySelectedStatistics", { properties: ["numOfVolumes", "numOfSds", "maxCapacityInKb"] });
    expect(sys.json).toEqual({ numOfVolumes: 1, numOfSds: 3, maxCapacityInKb: raw });
    const stats = await m.api("GET", `/instances/StoragePool::${poolId}/relationships/Statistics`);
    expect((stats.json as Obj).userDataReadBwc).toEqual({ numOccured: 0, numSeconds: 5, totalWeightInKb: 0 });
  });

  test("System carries mdmCluster and links; querySystemLimits; relationships", async () => {
    const { pdId, poolId } = await setupPool();
    const sys = ((await m.api("GET", "/types/System/instances")).json as Obj[])[0] as Obj;
    expect((sys.mdmCluster as Obj).master).toMatchObject({ versionInfo: "R3_6.0.0" });
    expect(sys.systemVersionName).toContain("R3_6");
    expect((await m.api("GET", `/instances/System::${sys.id}`)).status).toBe(200);
    const lim = await m.api("POST", "/instances/System/action/querySystemLimits", {});
    expect(lim.status).toBe(200);
    const entries = (lim.json as { systemLimitEntryList: Obj[] }).systemLimitEntryList;
    expect(entries.find((e) => e.type === "volumeSizeGb")?.maxVal).toBe(String(Limits.maxVolumeBytes / GiB));
    const pools = await m.api("GET", `/instances/ProtectionDomain::${pdId}/relationships/StoragePool`);
    expect((pools.json as Obj[]).map((p) => p.id)).toEqual([poolId]);
    const spSds = await m.api("GET", `/instances/StoragePool::${poolId}/relationships/SpSds`);
    expect((spSds.json as Obj[]).length).toBe(3);
    const sdss = (await m.api("GET", "/types/Sds/instances")).json as Obj[];
    expect(sdss[0]).toMatchObject({ mdmConnectionState: "Connected", membershipState: "Joined", protectionDomainId: pdId });
    const devs = await m.api("GET", `/instances/Sds::${sdss[0]?.id}/relationships/Device`);
    expect((devs.json as Obj[])[0]).toMatchObject({ storagePoolId: poolId, maxCapacityInKb: 100 * 1024 * 1024, deviceState: "Normal" });
    const pd = await m.api("GET", `/instances/ProtectionDomain::${pdId}`);
    expect((pd.json as Obj).systemId).toBe(sys.id);
  });
});

describe("refused inputs leave the MDM state unchanged", () => {
  test("each bad request gets a clear error and changes nothing", async () => {
    const { poolId, sdcId } = await setupPool();
    const v = (await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "2", name: "keep", volumeType: "ThinProvisioned" })).json as Obj;
    await m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId });
    const before = await m.snapshot();
    const auth = { authorization: basic("admin", m.token), "content-type": "application/json" };

    const cases: { what: string; run: () => Promise<{ status: number; json: unknown }>; status: number; pfCode: string; message?: RegExp }[] = [
      { what: "malformed JSON", run: () => m.raw("POST", "/api/types/Volume/instances", { body: "{nope", headers: auth }), status: 400, pfCode: "BAD_REQUEST", message: /not valid JSON/ },
      { what: "body not an object", run: () => m.raw("POST", "/api/types/Volume/instances", { body: "[1,2]", headers: auth }), status: 400, pfCode: "BAD_REQUEST" },
      { what: "wrong type", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "eight", name: "x" }), status: 400, pfCode: "BAD_REQUEST", message: /volumeSizeInGb/ },
      { what: "bad boolean", run: () => m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId, allowMultipleMappings: "maybe" }), status: 400, pfCode: "BAD_REQUEST", message: /allowMultipleMappings/ },
      { what: "unknown pool", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: "0123456789abcdef", volumeSizeInGb: "1", name: "x" }), status: 500, pfCode: "NOT_FOUND" },
      { what: "malformed id", run: () => m.api("GET", "/instances/Volume::xyz"), status: 400, pfCode: "BAD_REQUEST" },
      { what: "unknown volume", run: () => m.api("POST", "/instances/Volume::0123456789abcdef/action/setVolumeSize", { sizeInGB: "4" }), status: 500, pfCode: "NOT_FOUND" },
      { what: "duplicate volume name", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1", name: "keep" }), status: 500, pfCode: "ALREADY_EXISTS" },
      { what: "duplicate PD name", run: () => m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" }), status: 500, pfCode: "ALREADY_EXISTS" },
      { what: "name too long", run: () => m.api("POST", "/types/ProtectionDomain/instances", { name: "x".repeat(32) }), status: 400, pfCode: "BAD_REQUEST" },
      { what: "size zero", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "0", name: "z" }), status: 400, pfCode: "BAD_REQUEST", message: /positive/ },
      { what: "negative size", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: "-8", name: "z" }), status: 400, pfCode: "BAD_REQUEST" },
      { what: "no size", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, name: "z" }), status: 400, pfCode: "BAD_REQUEST" },
      { what: "too big", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: String(Limits.maxVolumeBytes / GiB + 1), name: "z", volumeType: "ThinProvisioned" }), status: 500, pfCode: "TOO_BIG" },
      { what: "thick over capacity", run: () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "136", name: "z", volumeType: "ThickProvisioned" }), status: 500, pfCode: "NO_SPACE", message: /Insufficient capacity/ },
      { what: "shrink", run: () => m.api("POST", `/instances/Volume::${v.id}/action/setVolumeSize`, { sizeInGB: "1" }), status: 500, pfCode: "INVALID_STATE", message: /shrinking/ },
      { what: "map twice", run: () => m.api("POST", `/instances/Volume::${v.id}/action/addMappedSdc`, { sdcId }), status: 500, pfCode: "ALREADY_MAPPED" },
      { what: "unmap unknown sdc", run: () => m.api("POST", `/instances/Volume::${v.id}/action/removeMappedSdc`, { sdcId: "0123456789abcdef" }), status: 500, pfCode: "NOT_FOUND" },
      { what: "unknown action", run: () => m.api("POST", `/instances/Volume::${v.id}/action/explode`, {}), status: 400, pfCode: "BAD_REQUEST" },
      { what: "unknown type", run: () => m.api("GET", "/types/Banana/instances"), status: 400, pfCode: "BAD_REQUEST" },
      { what: "unknown path", run: () => m.api("GET", "/nothing/here"), status: 404, pfCode: "NOT_FOUND" },
      { what: "SDC create", run: () => m.api("POST", "/types/Sdc/instances", { guid: "x" }), status: 400, pfCode: "BAD_REQUEST" },
      { what: "remove PD with pools", run: async () => m.api("POST", `/instances/ProtectionDomain::${await m.idOf("ProtectionDomain", "pd1")}/action/removeProtectionDomain`, {}), status: 500, pfCode: "IN_USE" },
      {
        what: "oversized body",
        run: () => m.raw("POST", "/api/types/ProtectionDomain/instances", { body: JSON.stringify({ name: "big", pad: "x".repeat(Limits.restMaxBodyBytes) }), headers: auth }),
        status: 413,
        pfCode: "TOO_BIG",
      },
      { what: "forged token", run: () => m.raw("POST", "/api/types/ProtectionDomain/instances", { body: '{"name":"pd9"}', headers: { ...auth, authorization: basic("admin", "forged") } }), status: 401, pfCode: "UNAUTHORIZED" },
    ];
    for (const c of cases) {
      const r = await c.run();
      const body = r.json as Obj;
      expect({ what: c.what, status: r.status, pfCode: body?.pfCode }).toEqual({ what: c.what, status: c.status, pfCode: c.pfCode });
      expect(typeof body.message).toBe("string");
      expect(body.httpStatusCode).toBe(c.status);
      expect(typeof body.errorCode).toBe("number");
      if (c.message) expect(body.message as string).toMatch(c.message);
      expect(await m.snapshot()).toBe(before);
    }
  });

  test("not enough SDSs: a volume in a pool with one SDS is refused", async () => {
    const { poolId } = await setupPool({ sds: 1 });
    const before = await m.snapshot();
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1", name: "lonely", volumeType: "ThinProvisioned" });
    expect(r.status).toBe(500);
    expect((r.json as Obj).pfCode).toBe("NOT_ENOUGH_SDS");
    expect(await m.snapshot()).toBe(before);
  });

  test("concurrent creates of one name give one object", async () => {
    const { poolId } = await setupPool();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1", name: "race", volumeType: "ThinProvisioned" })),
    );
    expect(results.filter((r) => r.status === 200).length).toBe(1);
    expect(results.filter((r) => (r.json as Obj).pfCode === "ALREADY_EXISTS").length).toBe(19);
    const pds = await Promise.all(Array.from({ length: 10 }, () => m.api("POST", "/types/ProtectionDomain/instances", { name: "racepd" })));
    expect(pds.filter((r) => r.status === 200).length).toBe(1);
    const vols = (await m.api("GET", "/types/Volume/instances")).json as Obj[];
    expect(vols.filter((x) => x.name === "race").length).toBe(1);
  });
});

describe("pool settings", () => {
  test("spare percentage: set through the action, refused when thick reservations would not fit", async () => {
    const { poolId } = await setupPool({ spare: "10" });
    expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setSparePercentage`, { sparePercentage: "20" })).status).toBe(200);
    expect(((await m.api("GET", `/instances/StoragePool::${poolId}`)).json as Obj).sparePercentage).toBe(20);
    // 300 GiB raw, 20% spare -> 240 usable -> 120 GiB net of thick fits
    expect((await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "120", name: "big", volumeType: "ThickProvisioned" })).status).toBe(200);
    const before = await m.snapshot();
    const r = await m.api("POST", `/instances/StoragePool::${poolId}/action/setSparePercentage`, { sparePercentage: "30" });
    expect(r.status).toBe(500);
    expect((r.json as Obj).pfCode).toBe("NO_SPACE");
    const bad = await m.api("POST", `/instances/StoragePool::${poolId}/action/setSparePercentage`, { sparePercentage: "100" });
    expect(bad.status).toBe(400);
    expect(await m.snapshot()).toBe(before);
    const thin = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "500", name: "thinbig", volumeType: "ThinProvisioned" });
    expect(thin.status).toBe(200); // thin volumes may overcommit
    // ... up to Limits.maxThinOvercommitRatio x raw: (500 + 1200) GiB x 2 copies > 10 x 300 GiB
    const tooMuch = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "1200", name: "thinhuge", volumeType: "ThinProvisioned" });
    expect((tooMuch.json as Obj).pfCode).toBe("NO_SPACE");
    expect(Limits.maxThinOvercommitRatio).toBe(10);
  });

  test("rebuild rate limit, rebuild/rebalance switches and renames", async () => {
    const { pdId, poolId } = await setupPool();
    expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setRebuildIoPriorityPolicy`, { policy: "limitNumOfConcurrentIos", numOfConcurrentIosPerDevice: "2", bwLimitPerDeviceInKbps: "20480" })).status).toBe(200);
    expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setRebalanceEnabled`, { rebalanceEnabled: "FALSE" })).status).toBe(200);
    expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setStoragePoolName`, { name: "sp9" })).status).toBe(200);
    expect((await m.api("POST", `/instances/ProtectionDomain::${pdId}/action/setProtectionDomainName`, { name: "pd9" })).status).toBe(200);
    const pool = (await m.api("GET", `/instances/StoragePool::${poolId}`)).json as Obj;
    expect(pool).toMatchObject({ name: "sp9", rebuildRateLimitInKbps: 20480, rebuildIoPriorityBwLimitPerDeviceInKbps: 20480, rebalanceEnabled: false, rebuildEnabled: true });
    expect(((await m.api("GET", `/instances/ProtectionDomain::${pdId}`)).json as Obj).name).toBe("pd9");
    const sds = ((await m.api("GET", "/types/Sds/instances")).json as Obj[])[0] as Obj;
    expect((await m.api("POST", `/instances/Sds::${sds.id}/action/setSdsName`, { name: "sds-a" })).status).toBe(200);
    const dup = await m.api("POST", `/instances/Sds::${sds.id}/action/setSdsName`, { name: "sds2" });
    expect((dup.json as Obj).pfCode).toBe("ALREADY_EXISTS");
    const sdc = ((await m.api("GET", "/types/Sdc/instances")).json as Obj[])[0] as Obj;
    expect((await m.api("POST", `/instances/Sdc::${sdc.id}/action/setSdcName`, { sdcName: "client-a" })).status).toBe(200);
    expect(((await m.api("GET", `/instances/Sdc::${sdc.id}`)).json as Obj).name).toBe("client-a");
  });

  test("a pool with its own extent size and granularity; an SDS and device created through REST", async () => {
    await m.login();
    const pd = ((await m.api("POST", "/types/ProtectionDomain/instances", { name: "pdx" })).json as Obj).id as string;
    const bad = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pd, name: "odd", extentSizeInKb: "3000" });
    expect(bad.status).toBe(400);
    const sp = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pd, name: "small", extentSizeInKb: String(16 * 1024), allocationGranularityInKb: String(128 * 1024), defaultVolumeType: "ThinProvisioned" });
    expect(sp.status).toBe(200);
    const poolId = (sp.json as Obj).id as string;
    const fs = ((await m.api("POST", "/types/FaultSet/instances", { protectionDomainId: pd, name: "rack1" })).json as Obj).id as string;
    const sds = await m.api("POST", "/types/Sds/instances", { protectionDomainId: pd, name: "rsds", sdsIpList: [{ ip: "10.9.9.9", role: "all" }], faultSetId: fs });
    expect(sds.status).toBe(200);
    const dev = await m.api("POST", "/types/Device/instances", { deviceCurrentPathname: "/dev/sdz", sdsId: (sds.json as Obj).id, storagePoolId: poolId, name: "z" });
    expect(dev.status).toBe(200);
    const sameIp = await m.api("POST", "/types/Sds/instances", { protectionDomainId: pd, name: "rsds2", sdsIpList: [{ SdsIp: { ip: "10.9.9.9", role: "all" } }] });
    expect((sameIp.json as Obj).pfCode).toBe("ALREADY_EXISTS");
    for (let i = 1; i <= 2; i++) await m.joinSds(`j${i}`, { pd: "pdx", pool: "small" });
    const v = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: "1", name: "tiny" });
    const vol = (await m.api("GET", `/instances/Volume::${(v.json as Obj).id}`)).json as Obj;
    expect(vol).toMatchObject({ sizeInKb: 128 * 1024, volumeType: "ThinProvisioned", extentSizeInKb: 16 * 1024 });
    const n = m.core.ctx.store.sqlite.query("SELECT COUNT(*) AS n FROM extent WHERE volume_id = ?").get(vol.id as string) as { n: number };
    expect(n.n).toBe(8);
  });
});
