// A storage pool's rebuild/rebalance I/O priority policies at the MDM (in-process REST): the
// PowerFlex defaults on a new pool, setRebuildIoPriorityPolicy / setRebalanceIoPriorityPolicy
// round trip (GET shows what was set, not fixed values), partial changes keep the rest, bad values
// refused with a message naming the field and the state unchanged, every SDS's assignments carry
// the pool's policies per device (and a change bumps mapVersion so they fetch them), the
// migration of a pool whose rebuild rate limit was 0 (unthrottled) to policy unlimited, and the
// cluster YAML keys.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { isPfError } from "../src/proto/errors.ts";
import { MDM_MIGRATIONS, migrateMdmDb } from "../src/store/mdm_migrate.ts";
import { basic, MdmFixture } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;
let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
});
afterEach(() => m.close());

async function setup(): Promise<{ poolId: string; sds: { sdsId: string; devices: { deviceId: string }[] }[] }> {
  await m.login();
  const pd = (await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" })).json as Obj;
  const sp = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pd.id, name: "sp1" });
  expect(sp.status).toBe(200);
  const sds = [await m.joinSds("sds1", { devicesGiB: [100, 50] }), await m.joinSds("sds2")];
  return { poolId: (sp.json as Obj).id as string, sds };
}

const pool = async (id: string) => (await m.api("GET", `/instances/StoragePool::${id}`)).json as Obj;
const act = (id: string, action: string, body: unknown) => m.api("POST", `/instances/StoragePool::${id}/action/${action}`, body);
const assignments = async (sdsId: string) => SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${sdsId}/assignments`)).json);

describe("I/O priority policies", () => {
  test("a new pool has PowerFlex's defaults, and its SDSs get them per device", async () => {
    const { poolId, sds } = await setup();
    expect(await pool(poolId)).toMatchObject({
      rebuildIoPriorityPolicy: "limitNumOfConcurrentIos",
      rebuildIoPriorityNumOfConcurrentIosPerDevice: 1,
      rebuildIoPriorityBwLimitPerDeviceInKbps: 10240,
      rebalanceIoPriorityPolicy: "favorAppIos",
      rebalanceIoPriorityNumOfConcurrentIosPerDevice: 1,
      rebalanceIoPriorityBwLimitPerDeviceInKbps: 10240,
    });
    const a = await assignments(sds[0]!.sdsId);
    expect(a.copyPolicies.map((p) => p.deviceId).sort()).toEqual(sds[0]!.devices.map((d) => d.deviceId).sort());
    expect(a.copyPolicies[0]).toMatchObject({
      rebuild: { policy: "limitNumOfConcurrentIos", concurrentIosPerDevice: 1, bwLimitBytesPerSec: 10240 * 1024 },
      rebalance: { policy: "favorAppIos", concurrentIosPerDevice: 1, bwLimitBytesPerSec: 10240 * 1024 },
    });
  });

  test("set rebuild and rebalance policies: GET and the assignments show them; a partial change keeps the rest", async () => {
    const { poolId, sds } = await setup();
    const v0 = (await assignments(sds[1]!.sdsId)).mapVersion;
    const sdcId = await m.joinSdc("guid-io-priority", "hostA");
    const vSdc = (await assignments(sds[1]!.sdsId)).mapVersion;
    expect((await act(poolId, "setRebuildIoPriorityPolicy", { policy: "favorAppIos", numOfConcurrentIosPerDevice: "3", bwLimitPerDeviceInKbps: "51200" })).status).toBe(200);
    expect((await act(poolId, "setRebalanceIoPriorityPolicy", { policy: "dynamicBwThrottling", bwLimitPerDeviceInKbps: 20480 })).status).toBe(200);
    expect(await pool(poolId)).toMatchObject({
      rebuildIoPriorityPolicy: "favorAppIos",
      rebuildIoPriorityNumOfConcurrentIosPerDevice: 3,
      rebuildIoPriorityBwLimitPerDeviceInKbps: 51200,
      rebuildRateLimitInKbps: 51200,
      rebalanceIoPriorityPolicy: "dynamicBwThrottling",
      rebalanceIoPriorityNumOfConcurrentIosPerDevice: 1,
      rebalanceIoPriorityBwLimitPerDeviceInKbps: 20480,
    });
    const a = await assignments(sds[1]!.sdsId);
    expect(a.mapVersion).toBeGreaterThan(v0);
    // the change concerns the pool's SDSs only: an SDC at the version before it has nothing to fetch
    expect(m.core.ctx.health.caughtUp("sdc", sdcId, vSdc, a.mapVersion)).toBe(true);
    expect(m.core.ctx.health.caughtUp("sds", sds[1]!.sdsId, vSdc, a.mapVersion)).toBe(false);
    expect(a.copyPolicies).toEqual([
      {
        deviceId: sds[1]!.devices[0]!.deviceId,
        rebuild: { policy: "favorAppIos", concurrentIosPerDevice: 3, bwLimitBytesPerSec: 51200 * 1024 },
        rebalance: { policy: "dynamicBwThrottling", concurrentIosPerDevice: 1, bwLimitBytesPerSec: 20480 * 1024 },
      },
    ]);
    // only the concurrency: policy and bandwidth stay
    expect((await act(poolId, "setRebuildIoPriorityPolicy", { numOfConcurrentIosPerDevice: 5 })).status).toBe(200);
    expect(await pool(poolId)).toMatchObject({ rebuildIoPriorityPolicy: "favorAppIos", rebuildIoPriorityNumOfConcurrentIosPerDevice: 5, rebuildIoPriorityBwLimitPerDeviceInKbps: 51200 });
    // unlimited keeps the stored figures (they return with the next limiting policy)
    expect((await act(poolId, "setRebuildIoPriorityPolicy", { policy: "unlimited" })).status).toBe(200);
    expect(await pool(poolId)).toMatchObject({ rebuildIoPriorityPolicy: "unlimited", rebuildIoPriorityNumOfConcurrentIosPerDevice: 5, rebuildIoPriorityBwLimitPerDeviceInKbps: 51200 });
    expect((await assignments(sds[1]!.sdsId)).rebuildRateBytesPerSec).toBe(0); // what an older SDS applies
    // the dashboard shows the policy, and no rate limit under unlimited
    const dash = (await m.raw("GET", "/dashboard/api/summary", { headers: { authorization: basic("admin", m.token) } })).json as { storagePools: Obj[] };
    expect(dash.storagePools.find((p) => p.id === poolId)).toMatchObject({ rebuildIoPolicy: "unlimited", rebuildIoConcurrency: 5, rebuildRateLimitKbps: 0 });
  });

  test("bad values are refused with a message naming the field, and nothing changes", async () => {
    const { poolId } = await setup();
    const before = await m.snapshot();
    const cases: [string, unknown, RegExp][] = [
      ["setRebuildIoPriorityPolicy", { policy: "fast" }, /unlimited, limitNumOfConcurrentIos, favorAppIos or dynamicBwThrottling/],
      ["setRebuildIoPriorityPolicy", { numOfConcurrentIosPerDevice: 0 }, /numOfConcurrentIosPerDevice is 1 to 20/],
      ["setRebalanceIoPriorityPolicy", { numOfConcurrentIosPerDevice: "21" }, /numOfConcurrentIosPerDevice is 1 to 20/],
      ["setRebalanceIoPriorityPolicy", { bwLimitPerDeviceInKbps: -1 }, /bwLimitPerDeviceInKbps/],
      ["setRebuildIoPriorityPolicy", {}, /give policy, numOfConcurrentIosPerDevice or bwLimitPerDeviceInKbps/],
      ["setRebalanceIoPriorityPolicy", { policy: "dynamicBwThrottling", bwLimitPerDeviceInKbps: 0 }, /dynamicBwThrottling needs a bandwidth limit/],
      // x 1024 it would be no safe integer: every SDS of the pool would refuse its assignments
      ["setRebuildIoPriorityPolicy", { bwLimitPerDeviceInKbps: "99999999999999" }, /bwLimitPerDeviceInKbps is at most 2147483647/],
    ];
    for (const [action, body, msg] of cases) {
      const r = await act(poolId, action, body);
      expect({ action, body, status: r.status }).toEqual({ action, body, status: 400 });
      expect(r.text).toMatch(msg);
    }
    expect(await m.snapshot()).toBe(before);
  });

  test("a pool created with rebuildRateLimitInKbps 0 (pf's unthrottled) gets policy unlimited", async () => {
    await m.login();
    const pd = (await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" })).json as Obj;
    const sp = (await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pd.id, name: "sp0", rebuildRateLimitInKbps: 0 })).json as Obj;
    expect(await pool(sp.id as string)).toMatchObject({ rebuildIoPriorityPolicy: "unlimited", rebuildIoPriorityBwLimitPerDeviceInKbps: 0 });
  });
});

test("migration 0010: existing pools get the defaults, a rate limit of 0 becomes unlimited", () => {
  const db = new Database(":memory:");
  try {
    migrateMdmDb(db, MDM_MIGRATIONS.filter((x) => x.version < 10));
    const cols = "id, pd_id, name, media_type, extent_bytes, granularity_bytes, spare_percentage, default_thin, rebuild_rate_limit_kbps, rebuild_enabled, rebalance_enabled, zero_padding_enabled, created_at_ms";
    db.run(`INSERT INTO storage_pool (${cols}) VALUES ('p1', 'd1', 'a', 'HDD', 1, 1, 10, 1, 20480, 1, 1, 1, 0), ('p2', 'd1', 'b', 'HDD', 1, 1, 10, 1, 0, 1, 1, 1, 0)`);
    expect(migrateMdmDb(db)).toContain(10);
    const rows = db.query("SELECT id, rebuild_io_policy AS rp, rebuild_io_concurrency AS rn, rebuild_rate_limit_kbps AS rbw, rebalance_io_policy AS bp, rebalance_io_concurrency AS bn, rebalance_bw_limit_kbps AS bbw FROM storage_pool ORDER BY id").all();
    expect(rows).toEqual([
      { id: "p1", rp: "limitNumOfConcurrentIos", rn: 1, rbw: 20480, bp: "favorAppIos", bn: 1, bbw: 10240 },
      { id: "p2", rp: "unlimited", rn: 1, rbw: 0, bp: "favorAppIos", bn: 1, bbw: 10240 },
    ]);
  } finally {
    db.close();
  }
});

describe("cluster YAML pool keys", () => {
  const yaml = (pool: string) => `
hosts:
  - { name: h1, address: 127.0.0.1, mdm: true, sds: [{ name: sds1, pool: pd1/sp1, devices: [{ path: d.img, size: 64MiB }] }] }
protectionDomains:
  - name: pd1
    storagePools: [${pool}]
`;
  test("the policy keys parse", () => {
    const c = parseClusterConfig(
      yaml("{ name: sp1, rebuildIoPriorityPolicy: favorAppIos, rebuildConcurrentIos: 2, rebuildRateLimit: 50MiB, rebalanceIoPriorityPolicy: dynamicBwThrottling, rebalanceRateLimit: 20MiB, rebalanceConcurrentIos: 1 }"),
      "c.yaml",
    );
    expect(c.protectionDomains[0]!.storagePools[0]).toMatchObject({
      rebuildIoPriorityPolicy: "favorAppIos",
      rebuildConcurrentIos: 2,
      rebuildRateLimit: 50 * 1024 * 1024,
      rebalanceIoPriorityPolicy: "dynamicBwThrottling",
      rebalanceRateLimit: 20 * 1024 * 1024,
    });
  });
  test("a bad policy or concurrency is refused naming the key", () => {
    for (const [pool, want] of [
      ["{ name: sp1, rebuildIoPriorityPolicy: fastest }", /rebuildIoPriorityPolicy[\s\S]*unlimited, limitNumOfConcurrentIos, favorAppIos or dynamicBwThrottling/],
      ["{ name: sp1, rebalanceConcurrentIos: 50 }", /rebalanceConcurrentIos/],
      ["{ name: sp1, rebuildIoPriorityPolicy: dynamicBwThrottling, rebuildRateLimit: 0 }", /rebuildRateLimit[\s\S]*dynamicBwThrottling needs a rebuildRateLimit above 0/],
      ["{ name: sp1, rebalanceRateLimit: 4TiB }", /rebalanceRateLimit[\s\S]*copy rate limit is at most/],
    ] as const) {
      let err: unknown;
      try {
        parseClusterConfig(yaml(pool), "c.yaml");
      } catch (e) {
        err = e;
      }
      expect(isPfError(err)).toBe(true);
      expect((err as Error).message).toMatch(want);
    }
  });
});
