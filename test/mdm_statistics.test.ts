// PowerFlex Statistics made real, in-process: an SDC writes and reads a volume, the SDSs report
// primary/secondary and device IO in their heartbeats, and every object's Statistics (Volume,
// Sdc, Sds, Device, StoragePool, ProtectionDomain, System, VTree) shows the Bwc triplets over
// the 5 s window; idle objects answer numSeconds 5 with zero counts; querySelectedStatistics in
// both forms (ids, allIds "" and [], batched selectedStatisticsList) leaves unknown property
// names and types out instead of failing; unknown ids and bad bodies get PowerFlex-style errors;
// the dashboard's /api/pf/live and /api/pf/history follow the same counters.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { grow } from "./helpers/io_reports.ts";
import { ObserveCluster, type Obj } from "./mdm_observe_fixture.ts";

let c: ObserveCluster;
let vol1: string;
let vol2: string;
beforeEach(async () => {
  c = await ObserveCluster.open();
  vol1 = await c.volume("vol1");
  vol2 = await c.volume("vol2", { map: false });
});
afterEach(() => c.close());

/** 200 write IOPS (4 KiB, 300 µs) and 50 read IOPS (64 KiB, 100 µs) on vol1, sds1 primary, sds2 secondary. */
function work(): void {
  const v = c.sdc.vol(vol1);
  grow(v.write, 200, 4096, 300);
  grow(v.read, 50, 65536, 100);
  const [p, s] = c.sds;
  grow(p!.counters.r.primaryWrite, 200, 4096, 250);
  grow(p!.counters.r.primaryRead, 50, 65536, 80);
  grow(s!.counters.r.secondaryWrite, 200, 4096, 90);
  grow(p!.counters.dev(p!.deviceIds[0]!).write, 200, 4096, 40);
  grow(p!.counters.dev(p!.deviceIds[0]!).read, 50, 65536, 60);
  grow(s!.counters.dev(s!.deviceIds[0]!).write, 200, 4096, 50);
}

async function run(seconds: number): Promise<void> {
  await c.tick(); // baseline reports
  for (let i = 0; i < seconds; i++) await c.tick(work);
}

async function stats(type: string, id: string): Promise<Obj> {
  const r = await c.m.api("GET", `/instances/${type}::${id}/relationships/Statistics`);
  expect(r.status).toBe(200);
  return r.json as Obj;
}

const idle = { numOccured: 0, numSeconds: 5, totalWeightInKb: 0 };

describe("Statistics Bwc follow the heartbeat counters", () => {
  test("volume, SDC, pool, protection domain, system: user IO; SDS and device: back-end IO; idle objects: numSeconds 5, zero counts", async () => {
    await run(8);
    const writes = { numOccured: 1000, numSeconds: 5, totalWeightInKb: 4000 };
    const reads = { numOccured: 250, numSeconds: 5, totalWeightInKb: 16000 };
    for (const [type, id] of [
      ["Volume", vol1],
      ["Sdc", c.sdcId],
      ["StoragePool", c.poolId],
      ["ProtectionDomain", c.pdId],
      ["System", c.ctx.systemId],
    ] as const) {
      const s = await stats(type, id);
      expect({ type, w: s.userDataWriteBwc, r: s.userDataReadBwc }).toEqual({ type, w: writes, r: reads });
      expect(s.userDataSdcWriteLatency).toEqual({ numOccured: 1000, numSeconds: 5, totalWeightInKb: 300_000 });
      expect(s.userDataSdcReadLatency).toEqual({ numOccured: 250, numSeconds: 5, totalWeightInKb: 25_000 });
      expect(s.userDataTrimBwc).toEqual(idle);
    }
    const pool = await stats("StoragePool", c.poolId);
    expect(pool.primaryWriteBwc).toEqual(writes);
    expect(pool.secondaryWriteBwc).toEqual(writes);
    expect(pool.primaryReadBwc).toEqual(reads);
    expect(pool.totalWriteBwc).toEqual({ numOccured: 2000, numSeconds: 5, totalWeightInKb: 8000 });
    expect(pool.fwdRebuildWriteBwc).toEqual(idle);
    const s1 = await stats("Sds", c.sds[0]!.id);
    expect(s1.primaryWriteBwc).toEqual(writes);
    expect(s1.secondaryWriteBwc).toEqual(idle);
    expect((await stats("Sds", c.sds[1]!.id)).secondaryWriteBwc).toEqual(writes);
    expect((await stats("Sds", c.sds[2]!.id)).totalWriteBwc).toEqual(idle);
    const d1 = await stats("Device", c.sds[0]!.deviceIds[0]!);
    expect(d1).toMatchObject({ totalWriteBwc: writes, totalReadBwc: reads, avgWriteLatencyInMicrosec: 40, avgReadLatencyInMicrosec: 60, avgWriteSizeInBytes: 4096, avgReadSizeInBytes: 65536 });
    const vt = (await c.m.api("GET", `/instances/Volume::${vol1}`)).json as Obj;
    expect((await stats("VTree", vt.vtreeId as string)).userDataWriteBwc).toEqual(writes);
    for (const n of ["userDataReadBwc", "userDataWriteBwc", "userDataTrimBwc", "userDataSdcReadLatency"]) expect((await stats("Volume", vol2))[n]).toEqual(idle);
  });

  test("after the writer stops, the window drains to zero within 5 s", async () => {
    await run(6);
    for (let i = 0; i < 6; i++) await c.tick();
    expect((await stats("Volume", vol1)).userDataWriteBwc).toEqual(idle);
    expect((await stats("System", c.ctx.systemId)).userDataWriteBwc).toEqual(idle);
  });

  test("an SDC restart (new incarnation) never shows negative or doubled IO", async () => {
    await run(6);
    c.sdc.restart("sdc-inc-2");
    await c.tick(work);
    const w = (await stats("Volume", vol1)).userDataWriteBwc as { numOccured: number };
    expect(w.numOccured).toBeGreaterThan(0);
    expect(w.numOccured).toBeLessThanOrEqual(1000);
    for (let i = 0; i < 6; i++) await c.tick(work);
    expect((await stats("Volume", vol1)).userDataWriteBwc).toEqual({ numOccured: 1000, numSeconds: 5, totalWeightInKb: 4000 });
  });

  test("every object carries the Statistics link, and the link answers", async () => {
    for (const type of ["System", "ProtectionDomain", "StoragePool", "Sds", "Device", "Sdc", "Volume", "VTree"]) {
      const list = (await c.m.api("GET", `/types/${type}/instances`)).json as Obj[];
      expect(list.length).toBeGreaterThan(0);
      for (const o of list) {
        const link = (o.links as { rel: string; href: string }[]).find((l) => l.rel === `/api/${type}/relationship/Statistics`);
        expect(link?.href).toBe(`/api/instances/${type}::${o.id as string}/relationships/Statistics`);
        const r = await c.m.raw("GET", link!.href, { headers: { authorization: `Basic ${Buffer.from(`admin:${c.m.token}`).toString("base64")}` } });
        expect(r.status).toBe(200);
      }
    }
  });
});

describe("querySelectedStatistics", () => {
  test("per type with ids, allIds as \"\" and [], and System flat; unknown property names are left out", async () => {
    await run(6);
    const props = ["userDataWriteBwc", "numOfMappedSdcs", "noSuchProperty", "numOfScsiInitiators"];
    const byIds = await c.m.api("POST", "/types/Volume/instances/action/querySelectedStatistics", { ids: [vol1], properties: props });
    expect(byIds.status).toBe(200);
    expect(byIds.json).toEqual({ [vol1]: { userDataWriteBwc: { numOccured: 1000, numSeconds: 5, totalWeightInKb: 4000 }, numOfMappedSdcs: 1 } });
    for (const allIds of ["", []]) {
      const all = await c.m.api("POST", "/types/Volume/instances/action/querySelectedStatistics", { allIds, properties: props });
      expect(all.status).toBe(200);
      expect(Object.keys(all.json as Obj).sort()).toEqual([vol1, vol2].sort());
      expect((all.json as Record<string, Obj>)[vol2]).toEqual({ userDataWriteBwc: idle, numOfMappedSdcs: 0 });
    }
    const sys = await c.m.api("POST", "/types/System/instances/action/querySelectedStatistics", { properties: ["userDataReadBwc", "numOfVolumes", "bogus"] });
    expect(sys.json).toEqual({ userDataReadBwc: { numOccured: 250, numSeconds: 5, totalWeightInKb: 16000 }, numOfVolumes: 2 });
    const sds = await c.m.api("POST", "/types/Sds/instances/action/querySelectedStatistics", { allIds: "", properties: ["primaryWriteBwc"] });
    expect(Object.keys(sds.json as Obj).length).toBe(3);
  });

  test("batched selectedStatisticsList (netdata's form): System flat, then type -> id -> properties; an unknown type answers {}", async () => {
    await run(6);
    const r = await c.m.api("POST", "/instances/querySelectedStatistics", {
      selectedStatisticsList: [
        { type: "System", properties: ["userDataWriteBwc", "numOfSds", "thisIsNotAProperty"] },
        { type: "Volume", ids: [vol1], properties: ["userDataWriteBwc", "userDataSdcWriteLatency"] },
        { type: "Sdc", allIds: [], properties: ["userDataReadBwc", "numOfMappedVolumes"] },
        { type: "StoragePool", allIds: "", properties: ["primaryWriteBwc", "capacityInUseInKb"] },
        { type: "RfcacheDevice", allIds: [], properties: ["whatever"] },
      ],
    });
    expect(r.status).toBe(200);
    const j = r.json as Record<string, Record<string, unknown>>;
    expect(j.System).toEqual({ userDataWriteBwc: { numOccured: 1000, numSeconds: 5, totalWeightInKb: 4000 }, numOfSds: 3 });
    expect(j.Volume).toEqual({ [vol1]: { userDataWriteBwc: { numOccured: 1000, numSeconds: 5, totalWeightInKb: 4000 }, userDataSdcWriteLatency: { numOccured: 1000, numSeconds: 5, totalWeightInKb: 300_000 } } });
    expect(j.Sdc).toEqual({ [c.sdcId]: { userDataReadBwc: { numOccured: 250, numSeconds: 5, totalWeightInKb: 16000 }, numOfMappedVolumes: 1 } });
    expect(Object.keys(j.StoragePool!)).toEqual([c.poolId]);
    expect(j.RfcacheDevice).toEqual({});
  });

  test("unknown ids and malformed bodies get PowerFlex-style errors", async () => {
    const unknown = "0123456789abcdef";
    const cases: [string, string, unknown, number, number][] = [
      ["POST", "/types/Volume/instances/action/querySelectedStatistics", { ids: [unknown], properties: ["userDataWriteBwc"] }, 500, 79],
      ["POST", "/instances/querySelectedStatistics", { selectedStatisticsList: [{ type: "Sds", ids: [unknown], properties: ["primaryWriteBwc"] }] }, 500, 79],
      ["GET", `/instances/Volume::${unknown}/relationships/Statistics`, undefined, 500, 79],
      ["GET", `/instances/System::${unknown}/relationships/Statistics`, undefined, 500, 79],
      ["POST", "/types/Volume/instances/action/querySelectedStatistics", { ids: [vol1] }, 400, 2],
      ["POST", "/types/Volume/instances/action/querySelectedStatistics", { properties: ["userDataWriteBwc"] }, 400, 2],
      ["POST", "/types/Volume/instances/action/querySelectedStatistics", { ids: ["not-hex"], properties: ["x"] }, 400, 2],
      ["POST", "/instances/querySelectedStatistics", { selectedStatisticsList: "System" }, 400, 2],
      ["POST", "/instances/querySelectedStatistics", {}, 400, 2],
      ["POST", "/instances/querySelectedStatistics", { selectedStatisticsList: [{ type: "Volume", properties: [] }] }, 400, 2],
      ["POST", "/instances/querySelectedStatistics", { selectedStatisticsList: [{ type: "Volume", properties: ["userDataWriteBwc"] }] }, 400, 2],
    ];
    for (const [method, path, body, status, errorCode] of cases) {
      const r = await c.m.api(method as "GET" | "POST", path, body);
      expect({ path, body, status: r.status, errorCode: (r.json as Obj).errorCode }).toEqual({ path, body, status, errorCode });
      expect(typeof (r.json as Obj).message).toBe("string");
    }
    const notJson = await c.m.raw("POST", "/api/instances/querySelectedStatistics", {
      body: "{selectedStatisticsList:",
      headers: { authorization: `Basic ${Buffer.from(`admin:${c.m.token}`).toString("base64")}`, "content-type": "application/json" },
    });
    expect(notJson.status).toBe(400);
    expect((notJson.json as Obj).message).toContain("not valid JSON");
  });
});

describe("dashboard endpoints: /api/pf/live and /api/pf/history", () => {
  test("live shows the Bwc window as rates per volume, SDS and SDC; history has one system sample a second, oldest first", async () => {
    await run(8);
    const live = await c.m.api("GET", "/pf/live");
    expect(live.status).toBe(200);
    const l = live.json as { t: number; volumes: Record<string, Obj>; sds: Record<string, Obj>; sdc: Record<string, Obj> };
    expect(l.t).toBe(c.m.clock.nowMs);
    expect(l.volumes[vol1]).toEqual({ readIops: 50, writeIops: 200, readBps: 50 * 65536, writeBps: 200 * 4096, readLatencyUs: 100, writeLatencyUs: 300 });
    expect(l.volumes[vol2]).toBeUndefined(); // unmapped: nobody reports it
    expect(l.sdc[c.sdcId]).toMatchObject({ writeIops: 200, readIops: 50 });
    expect(Object.keys(l.sds).sort()).toEqual(c.sds.map((s) => s.id).sort());
    expect(l.sds[c.sds[0]!.id]).toMatchObject({ readIops: 50, writeIops: 200, writeLatencyUs: 250, rebuildBps: 0, rebalanceBps: 0 });
    expect(l.sds[c.sds[1]!.id]).toMatchObject({ writeIops: 200, writeLatencyUs: 90 });

    const h = await c.m.api("GET", "/pf/history?seconds=5");
    expect(h.status).toBe(200);
    const hist = h.json as { intervalMs: number; samples: Obj[] };
    expect(hist.intervalMs).toBe(1000);
    expect(hist.samples.length).toBe(5);
    for (const s of hist.samples) expect(s).toMatchObject({ writeIops: 200, readIops: 50, writeBps: 819200, readBps: 3276800, writeLatencyUs: 300, readLatencyUs: 100, rebuildBps: 0, rebalanceBps: 0 });
    expect(hist.samples.map((s) => s.t)).toEqual([4, 3, 2, 1, 0].map((k) => c.m.clock.nowMs - k * 1000));
    const def = (await c.m.api("GET", "/pf/history")).json as { samples: Obj[] };
    expect(def.samples.length).toBe(c.ctx.observe.history.size); // everything since start (< the 300 s default)
    expect(Object.keys(def.samples[0]!).sort()).toEqual(["t", "readIops", "writeIops", "readBps", "writeBps", "readLatencyUs", "writeLatencyUs", "rebuildBps", "rebalanceBps"].sort());
  });

  test("history keeps 600 samples at most; seconds is validated; both need a token", async () => {
    for (let i = 0; i < 620; i++) await c.tick();
    expect(c.ctx.observe.history.size).toBe(600);
    expect(((await c.m.api("GET", "/pf/history?seconds=600")).json as { samples: unknown[] }).samples.length).toBe(600);
    for (const bad of ["0", "601", "abc", "-5"]) {
      const r = await c.m.api("GET", `/pf/history?seconds=${bad}`);
      expect(r.status).toBe(400);
      expect((r.json as Obj).errorCode).toBe(2);
    }
    for (const path of ["/api/pf/history", "/api/pf/live", "/api/pf/alerts", "/api/types/Alert/instances"]) expect((await c.m.raw("GET", path)).status).toBe(401);
  });
});
