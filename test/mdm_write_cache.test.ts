// A storage pool's write cache mode (pf extension), in-process: created with a pool (REST or the
// cluster YAML key), shown on the pool, changed live with setWriteCache, and handed to the SDSs
// in their assignments (writeThroughVolumes) with a mapVersion bump so they fetch it.

import { afterEach, beforeEach, expect, test } from "bun:test";
import { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
});
afterEach(() => m.close());

type Obj = Record<string, unknown>;

async function assignments(sdsId: string): Promise<SdsAssignmentsResponse> {
  return SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${sdsId}/assignments`)).json);
}

test("writeBack by default; setWriteCache switches live, bumps mapVersion and reaches the SDS assignments", async () => {
  await m.login();
  const pdId = ((await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" })).json as Obj).id as string;
  const poolId = ((await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pdId, name: "sp1" })).json as Obj).id as string;
  const wt = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: pdId, name: "sp2", writeCache: "writeThrough" });
  expect(wt.status).toBe(200);
  expect(((await m.api("GET", `/instances/StoragePool::${(wt.json as Obj).id as string}`)).json as Obj).writeCache).toBe("writeThrough");
  const sds = [await m.joinSds("sds1"), await m.joinSds("sds2")];
  const volId = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, name: "v1", volumeSizeInGb: "8", volumeType: "ThinProvisioned" })).json as Obj).id as string;

  expect(((await m.api("GET", `/instances/StoragePool::${poolId}`)).json as Obj).writeCache).toBe("writeBack");
  const before = await assignments(sds[0]!.sdsId);
  expect(before.extents.length).toBeGreaterThan(0);
  expect(before.writeThroughVolumes).toEqual([]);

  const set = await m.api("POST", `/instances/StoragePool::${poolId}/action/setWriteCache`, { writeCache: "writeThrough" });
  expect(set.status).toBe(200);
  expect(((await m.api("GET", `/instances/StoragePool::${poolId}`)).json as Obj).writeCache).toBe("writeThrough");
  for (const s of sds) {
    const a = await assignments(s.sdsId);
    expect(a.mapVersion).toBeGreaterThan(before.mapVersion);
    expect(a.writeThroughVolumes).toEqual([volId]);
  }
  // the same mode again changes nothing
  const v = (await assignments(sds[0]!.sdsId)).mapVersion;
  expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setWriteCache`, { writeCache: "writeThrough" })).status).toBe(200);
  expect((await assignments(sds[0]!.sdsId)).mapVersion).toBe(v);

  expect((await m.api("POST", `/instances/StoragePool::${poolId}/action/setWriteCache`, { writeCache: "writeBack" })).status).toBe(200);
  expect((await assignments(sds[1]!.sdsId)).writeThroughVolumes).toEqual([]);

  const bad = await m.api("POST", `/instances/StoragePool::${poolId}/action/setWriteCache`, { writeCache: "sometimes" });
  expect(bad.status).toBe(400);
  expect(((await m.api("GET", `/instances/StoragePool::${poolId}`)).json as Obj).writeCache).toBe("writeBack");
});

test("the cluster YAML takes writeCache on a pool and refuses other values", () => {
  const yaml = (wc: string) =>
    [
      "hosts: [{ name: h, address: 127.0.0.1, mdm: true }]",
      "protectionDomains:",
      "  - name: pd1",
      `    storagePools: [{ name: sp1, writeCache: ${wc} }, { name: sp2 }]`,
    ].join("\n");
  const ok = parseClusterConfig(yaml("writeThrough"), "c.yaml");
  expect(ok.protectionDomains[0]!.storagePools[0]!.writeCache).toBe("writeThrough");
  expect(ok.protectionDomains[0]!.storagePools[1]!.writeCache).toBeUndefined();
  expect(() => parseClusterConfig(yaml("sometimes"), "c.yaml")).toThrow(/writeCache/);
});
