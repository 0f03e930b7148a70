// scli's upkeep of the object tree against a real MDM (runMdm on 127.0.0.1 over HTTPS, SDSs and
// an SDC joined through the cluster API): renames of SDS, SDC, pool, protection domain and fault
// set; the spare policy; removals that the MDM refuses while the object still holds something
// (exit 4, nothing changed) and that succeed once it is empty; a device its SDS no longer opens
// (Failed at the SDS's join) removed once its copies are gone; flag mistakes exit 2.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { ClusterPaths, SdcJoinResponse, SdsJoinResponse } from "../src/proto/cluster_api.ts";
import { clusterRequest, type MdmEndpoint } from "../src/proto/mdm_http.ts";
import { runScli } from "../src/cmd/scli/main.ts";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";

const GiB = 1024 ** 3;
let mdm: MdmHandle;
let env: Record<string, string | undefined>;
let cluster: MdmEndpoint;
const dirs: string[] = [];

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runScli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), env });
  return { code, out, err };
}
async function ok(...argv: string[]): Promise<string> {
  const r = await run(...argv);
  if (r.code !== 0) throw new Error(`scli ${argv.join(" ")} exited ${r.code}: ${r.err}`);
  return r.out;
}
async function json<T>(schema: z.ZodType<T>, ...argv: string[]): Promise<T> {
  return schema.parse(JSON.parse(await ok(...argv, "--json")));
}
async function joinSds(name: string, port: number, devices: string[], faultSetName?: string, pool = { pd: "pd1", sp: "sp1" }): Promise<string> {
  const r = await clusterRequest(cluster, {
    method: "POST",
    path: ClusterPaths.sdsJoin,
    body: {
      name,
      host: "127.0.0.1",
      dataPort: port,
      protectionDomainName: pool.pd,
      storagePoolName: pool.sp,
      ...(faultSetName ? { faultSetName } : {}),
      devices: devices.map((path) => ({ path, capacityBytes: 64 * GiB })),
    },
    schema: SdsJoinResponse,
  });
  return r.sdsId;
}

beforeAll(async () => {
  const d = mkdtempSync(join(tmpdir(), "pf-scli-objects-"));
  dirs.push(d);
  mdm = await runMdm({ dataDir: join(d, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw" });
  env = { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile!, PF_SCLI_SESSION_DIR: join(d, "session"), HOME: d };
  cluster = { url: mdm.url, caPem: mdm.certPem, clusterSecret: mdm.clusterSecret };
  await ok("--login", "--username", "admin", "--password", "test-admin-pw");
  await ok("--add_protection_domain", "--protection_domain_name", "pd1");
  await ok("--add_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1");
});
afterAll(async () => {
  await mdm?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("renames", () => {
  test("SDS, SDC, pool, protection domain and fault set; the new name is what the MDM shows", async () => {
    await ok("--add_fault_set", "--protection_domain_name", "pd1", "--fault_set_name", "rack1");
    await joinSds("sds-r", 17101, ["/fake/r/d0"], "rack1");
    await clusterRequest(cluster, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "GUID-R", name: "host-r", host: "127.0.0.9" }, schema: SdcJoinResponse });

    expect(await ok("--rename_sds", "--sds_name", "sds-r", "--new_name", "sds-renamed")).toBe("Successfully renamed SDS sds-r to sds-renamed\n");
    expect((await json(z.looseObject({ name: z.string() }), "--query_sds", "--sds_name", "sds-renamed")).name).toBe("sds-renamed");
    expect(await ok("--rename_sdc", "--sdc_ip", "127.0.0.9", "--new_name", "host-renamed")).toBe("Successfully renamed SDC host-r to host-renamed\n");
    expect(await ok("--query_all_sdc")).toContain("Name: host-renamed IP: 127.0.0.9");
    expect(await ok("--rename_fault_set", "--protection_domain_name", "pd1", "--fault_set_name", "rack1", "--new_name", "rack-a")).toBe("Successfully renamed fault set rack1 to rack-a\n");
    expect(await ok("--query_protection_domain", "--protection_domain_name", "pd1")).toContain("Name: rack-a");

    await ok("--add_protection_domain", "--protection_domain_name", "pd-tmp");
    await ok("--add_storage_pool", "--protection_domain_name", "pd-tmp", "--storage_pool_name", "sp-tmp");
    expect(await ok("--rename_storage_pool", "--protection_domain_name", "pd-tmp", "--storage_pool_name", "sp-tmp", "--new_name", "sp-b")).toBe("Successfully renamed storage pool sp-tmp to sp-b\n");
    expect(await ok("--rename_protection_domain", "--protection_domain_name", "pd-tmp", "--new_name", "pd-b")).toBe("Successfully renamed protection domain pd-tmp to pd-b\n");
    expect(await ok("--query_storage_pool", "--protection_domain_name", "pd-b", "--storage_pool_name", "sp-b")).toContain("Storage Pool sp-b");
    // a name taken in the same domain is a conflict (exit 4)
    await ok("--add_storage_pool", "--protection_domain_name", "pd-b", "--storage_pool_name", "sp-c");
    const taken = await run("--rename_storage_pool", "--protection_domain_name", "pd-b", "--storage_pool_name", "sp-c", "--new_name", "sp-b");
    expect(taken.code).toBe(4);
  });
});

describe("spare policy", () => {
  test("set and shown; out of range is refused (exit 2), the pool unchanged", async () => {
    expect(await ok("--modify_spare_policy", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--spare_percentage", "25")).toBe(
      "Successfully set the spare policy of storage pool sp1 to 25% of total\n",
    );
    expect(await ok("--query_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1")).toContain("Spare policy: 25% of total");
    for (const bad of ["100", "-1", "ten"]) {
      const r = await run("--modify_spare_policy", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--spare_percentage", bad);
      expect(r.code).toBe(2);
      expect(r.err).toContain("--spare_percentage");
    }
    expect(await ok("--query_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1")).toContain("Spare policy: 25% of total");
  });
});

describe("removals", () => {
  test("refused while the object holds something (exit 4, still there); done once empty", async () => {
    await ok("--add_protection_domain", "--protection_domain_name", "pd-x");
    await ok("--add_storage_pool", "--protection_domain_name", "pd-x", "--storage_pool_name", "sp-x");
    await ok("--add_fault_set", "--protection_domain_name", "pd-x", "--fault_set_name", "fs-x");
    const pdBusy = await run("--remove_protection_domain", "--protection_domain_name", "pd-x");
    expect(pdBusy.code).toBe(4);
    expect(pdBusy.err).toStartWith("Error: MDM failed command.  Status: ");
    expect(await ok("--remove_storage_pool", "--protection_domain_name", "pd-x", "--storage_pool_name", "sp-x")).toMatch(/^Successfully removed storage pool sp-x \([0-9a-f]{16}\)\n$/);
    expect(await ok("--remove_fault_set", "--protection_domain_name", "pd-x", "--fault_set_name", "fs-x")).toMatch(/^Successfully removed fault set fs-x/);
    expect(await ok("--remove_protection_domain", "--protection_domain_name", "pd-x")).toMatch(/^Successfully removed protection domain pd-x/);
    expect((await run("--query_protection_domain", "--protection_domain_name", "pd-x")).code).toBe(7);
  });

  test("an SDC with a mapped volume is kept; unmapped, it is removed", async () => {
    for (let i = 1; i <= 2; i++) await joinSds(`sds${i}`, 17110 + i, [`/fake/s${i}/d0`]);
    await clusterRequest(cluster, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "GUID-M", name: "host-m", host: "127.0.0.10" }, schema: SdcJoinResponse });
    await ok("--add_volume", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--size_gb", "8", "--volume_name", "vm");
    await ok("--map_volume_to_sdc", "--volume_name", "vm", "--sdc_name", "host-m");
    const busy = await run("--remove_sdc", "--sdc_name", "host-m");
    expect(busy.code).toBe(4);
    expect(await ok("--query_all_sdc")).toContain("host-m");
    await ok("--unmap_volume_from_sdc", "--volume_name", "vm", "--sdc_name", "host-m");
    expect(await ok("--remove_sdc", "--sdc_name", "host-m")).toMatch(/^Successfully removed SDC host-m \([0-9a-f]{16}\)\n$/);
    expect(await ok("--query_all_sdc")).not.toContain("host-m");
  });

  test("a device its SDS no longer opens: Failed at the join; removed once it holds no copies", async () => {
    // a pool of its own: in sp1 the recovery tick may start moving the earlier tests' copies
    // (rebalance onto the new, empty devices, or a rebuild once those fake SDSs that never beat
    // count as down) onto d1 before the second join, and a device holding targets is kept
    await ok("--add_protection_domain", "--protection_domain_name", "pd-d");
    await ok("--add_storage_pool", "--protection_domain_name", "pd-d", "--storage_pool_name", "sp-d");
    const own = { pd: "pd-d", sp: "sp-d" };
    const id = await joinSds("sds-d", 17120, ["/fake/d/d0", "/fake/d/d1"], undefined, own);
    // the SDS comes back without d1: the MDM marks it Failed (it holds nothing here)
    await joinSds("sds-d", 17120, ["/fake/d/d0"], undefined, own);
    expect(await ok("--query_sds", "--sds_id", id)).toMatch(/Path: \/fake\/d\/d1 .*\n.*State: Failed/);
    // by path without an SDS: refused before any request
    const noSds = await run("--remove_sds_device", "--device_path", "/fake/d/d1");
    expect(noSds.code).toBe(2);
    expect(await ok("--remove_sds_device", "--sds_name", "sds-d", "--device_path", "/fake/d/d1")).toMatch(/^Successfully removed device \/fake\/d\/d1 \([0-9a-f]{16}\) of SDS /);
    expect(await ok("--query_sds", "--sds_name", "sds-d")).not.toContain("/fake/d/d1");
    expect((await run("--remove_sds_device", "--sds_name", "sds-d", "--device_path", "/fake/d/d1")).code).toBe(7);
    // a device holding copies (sds1's only one holds a copy of every extent of vm) is kept
    const held = await run("--remove_sds_device", "--sds_name", "sds1", "--device_path", "/fake/s1/d0");
    expect(held.code).toBe(4);
    expect(held.err).toContain("holds");
    expect(await ok("--query_sds", "--sds_name", "sds1")).toContain("/fake/s1/d0");
  });
});
