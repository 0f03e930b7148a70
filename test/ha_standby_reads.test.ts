// A standby MDM (HA mode, in-process, one etcd member) answers the reads that are safe from the
// state it follows by watch, with the etcd revision it reflects in x-pf-applied-revision, and
// keeps 421 + the active MDM's address for every change, login, SDS/SDC heartbeat and every read
// that needs live heartbeat state (Sds, Sdc, StoragePool objects, statistics, alerts, dashboard).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { APPLIED_REVISION_HEADER, MDM_ROLE_HEADER } from "../src/mdm/core/leader_gate.ts";
import { servedByStandby } from "../src/mdm/rest/standby_reads.ts";
import type { EtcdMetaStore } from "../src/mdm/ha/etcd_meta_store.ts";
import { MdmFixture } from "./mdm_fixture.ts";
import { MdmPairOnEtcd, waitUntil } from "./helpers/etcd.ts";

type Obj = Record<string, unknown>;

let pair: MdmPairOnEtcd;
let a: MdmFixture;
let b: MdmFixture;


/** A REST call on MDM m with a token, answer with its headers. */
async function call(m: MdmFixture, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown; headers: Headers }> {
  const headers: Record<string, string> = { authorization: `Basic ${Buffer.from(`admin:${token}`).toString("base64")}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await m.core.app.request(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

beforeAll(async () => {
  ({ pair, a, b } = await MdmPairOnEtcd.start("sr"));
}, 60_000);

afterAll(async () => {
  await pair?.close();
});

test("a standby answers safe reads from its followed state, stamped with its applied revision", async () => {
  expect(a.core.ctx.meta.isLeader()).toBe(true);
  expect(b.core.ctx.meta.isLeader()).toBe(false);
  await a.login();
  await a.joinSds("sds1");
  await a.joinSds("sds2");
  const poolId = await a.idOf("StoragePool", "sp1");
  const made = await call(a, "POST", "/api/types/Volume/instances", a.token, { storagePoolId: poolId, volumeSizeInKb: "1048576", name: "v1" });
  expect(made.status).toBe(200);
  const leaderRev = Number(made.headers.get(APPLIED_REVISION_HEADER));
  expect(leaderRev).toBeGreaterThan(0);
  expect(made.headers.get(MDM_ROLE_HEADER)).toBe("leader");
  const sb = b.core.ctx.meta as EtcdMetaStore;
  await waitUntil("the standby to apply the volume", 5000, () => sb.appliedRev >= leaderRev);

  // the token the leader issued is valid on the standby (its replicated row), read-only
  const vols = await call(b, "GET", "/api/types/Volume/instances", a.token);
  expect(vols.status).toBe(200);
  expect(vols.headers.get(MDM_ROLE_HEADER)).toBe("standby");
  expect(Number(vols.headers.get(APPLIED_REVISION_HEADER))).toBeGreaterThanOrEqual(leaderRev);
  expect(vols.json).toEqual((await call(a, "GET", "/api/types/Volume/instances", a.token)).json);
  const volId = (made.json as Obj).id as string;
  const one = await call(b, "GET", `/api/instances/Volume::${volId}`, a.token);
  expect(one.status).toBe(200);
  expect((one.json as Obj).name).toBe("v1");
  for (const path of ["/api/types/ProtectionDomain/instances", "/api/types/Device/instances", `/api/instances/StoragePool::${poolId}/relationships/Volume`]) {
    const r = await call(b, "GET", path, a.token);
    expect({ path, status: r.status }).toEqual({ path, status: 200 });
    expect(r.json).toEqual((await call(a, "GET", path, a.token)).json);
  }
  // the System object names the active MDM (its leader record's address), not the standby
  const sys = await call(b, "GET", "/api/types/System/instances", a.token);
  expect(sys.status).toBe(200);
  const mdmCluster = ((sys.json as Obj[])[0] as Obj).mdmCluster as Obj;
  expect((mdmCluster.master as Obj).port).toBe(1); // the URL m1 registered: https://127.0.0.1:1/m1
  const byName = await call(b, "POST", "/api/types/Volume/instances/action/queryIdByKey", a.token, { name: "v1" });
  expect(byName.status).toBe(200);
  expect(byName.json).toBe(volId);
  // queryMdmCluster from the standby: the same master, the standby among the slaves
  const cl = await call(b, "POST", "/api/instances/System/queryMdmCluster", a.token, {});
  expect(cl.status).toBe(200);
  expect(((cl.json as Obj).master as Obj).name).toBe("m1");
  expect(((cl.json as Obj).slaves as Obj[]).map((s) => s.name)).toEqual(["m2"]);
  // /health and /metrics of itself, no token
  const health = await b.core.app.request("/health");
  expect(health.status).toBe(200);
  expect(((await health.json()) as Obj).role).toBe("standby");
  const metrics = await (await b.core.app.request("/metrics")).text();
  expect(metrics).toContain("pf_mdm_leader{store=\"etcd\"} 0");
  expect(metrics).toMatch(/pf_mdm_applied_revision \d+/);
  expect(metrics).not.toContain("pf_sds_up"); // live heartbeat state: leader only
  const leaderMetrics = await (await a.core.app.request("/metrics")).text();
  expect(leaderMetrics).toContain("pf_mdm_leader{store=\"etcd\"} 1");
  expect(leaderMetrics).toContain("pf_sds_up");
}, 30_000);

test("a standby keeps 421 + the leader's address for changes, login, heartbeats and reads of live state", async () => {
  const sdsId = await a.idOf("Sds", "sds1");
  const poolId = await a.idOf("StoragePool", "sp1");
  const leaderOnly: [string, string, unknown?][] = [
    ["POST", "/api/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: "1048576", name: "v2" }],
    ["GET", "/api/types/Sds/instances"],
    ["GET", "/api/types/Sdc/instances"],
    ["GET", "/api/types/StoragePool/instances"],
    ["GET", `/api/instances/Sds::${sdsId}`],
    ["GET", `/api/instances/StoragePool::${poolId}/relationships/Statistics`],
    ["GET", `/api/instances/System/relationships/Sds`],
    ["POST", "/api/types/Volume/instances/action/querySelectedStatistics", { allIds: true, properties: ["numOfVolumes"] }],
    ["POST", `/api/instances/StoragePool::${poolId}/action/queryRebuild`, {}],
    ["GET", "/api/types/Alert/instances"],
    ["GET", "/api/pf/live"],
    ["GET", "/api/login"],
    ["GET", "/dashboard/api/summary"],
  ];
  for (const [method, path, body] of leaderOnly) {
    const r = await call(b, method, path, a.token, body);
    expect({ method, path, status: r.status }).toEqual({ method, path, status: 421 });
    expect(((r.json as Obj).leader as Obj).name).toBe("m1");
  }
  const hb = await b.cluster("POST", `/sds/${sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0 });
  expect(hb.status).toBe(421);
  const join = await b.cluster("POST", "/sdc/join", { guid: "g-standby", host: "127.0.0.1" });
  expect(join.status).toBe(421);
  // and nothing the standby answered left a change behind
  expect(b.core.ctx.meta.hasPending()).toBe(false);
}, 30_000);

test("the standby-read predicate: reads of replicated rows only", () => {
  expect(servedByStandby("GET", "/api/types/Volume/instances")).toBe(true);
  expect(servedByStandby("GET", "/api/instances/VTree::0123456789abcdef")).toBe(true);
  expect(servedByStandby("GET", "/api/instances/Volume::0123456789abcdef/relationships/Statistics")).toBe(false);
  expect(servedByStandby("GET", "/api/instances/Sdc::0123456789abcdef")).toBe(false);
  expect(servedByStandby("DELETE", "/api/types/Volume/instances")).toBe(false);
  expect(servedByStandby("POST", "/api/instances/System/action/changeMdmOwnership")).toBe(false);
  expect(servedByStandby("POST", "/api/instances/System/queryMdmCluster")).toBe(true);
  expect(servedByStandby("GET", "/api/version")).toBe(false); // pf up and clients probe it for the leader
  expect(servedByStandby("GET", "/pf/v1/sds/x/heartbeat")).toBe(false);
});
