// The I/O priority policies from the operator's tools against a real MDM (runMdm on 127.0.0.1,
// HTTPS): scli --set_rebuild_io_priority_policy / --set_rebalance_io_priority_policy with the REST
// or scli spellings, the pool then shows them; bad flags exit 2 and send nothing; pf up's topology
// step (applyClusterObjects) sets the cluster YAML's policy keys on a new pool and on an existing
// one at the next start, and leaves a pool alone when the file gives none.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyClusterObjects, loginAdmin } from "../src/cmd/up_apply.ts";
import { runScli } from "../src/cmd/scli/main.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import type { MdmEndpoint } from "../src/proto/mdm_http.ts";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";

let dir: string;
let mdm: MdmHandle;
let env: Record<string, string | undefined>;
let ep: MdmEndpoint;

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runScli(argv, { stdout: (x) => (out += x), stderr: (x) => (err += x), env });
  return { code, out, err };
}

async function poolJson(name: string): Promise<Record<string, unknown>> {
  const r = await run(["--query_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", name, "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as Record<string, unknown>;
}

const yaml = (pool: string) => `
hosts:
  - { name: h1, address: 127.0.0.1, mdm: true, sds: [{ name: sds1, pool: pd1/sp1, devices: [{ path: d.img, size: 64MiB }] }] }
protectionDomains:
  - name: pd1
    storagePools: [${pool}]
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pf-scli-iop-"));
  mdm = await runMdm({ dataDir: join(dir, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw" });
  env = { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile ?? undefined, PF_SCLI_SESSION_DIR: join(dir, "session"), HOME: dir };
  ep = { url: mdm.url, caPem: mdm.certPem };
  ep = { ...ep, token: await loginAdmin(ep, "test-admin-pw") };
  expect((await run(["--login", "--username", "admin", "--password", "test-admin-pw"])).code).toBe(0);
});

afterAll(async () => {
  await mdm?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("pf up: the YAML's policy keys on a new pool, again on an existing one, and nothing when the file gives none", async () => {
  await applyClusterObjects(ep, parseClusterConfig(yaml("{ name: sp1, rebuildIoPriorityPolicy: favorAppIos, rebuildConcurrentIos: 2, rebalanceIoPriorityPolicy: dynamicBwThrottling, rebalanceRateLimit: 20MiB }"), "c.yaml"), "structure");
  expect(await poolJson("sp1")).toMatchObject({
    rebuildIoPriorityPolicy: "favorAppIos",
    rebuildIoPriorityNumOfConcurrentIosPerDevice: 2,
    rebuildIoPriorityBwLimitPerDeviceInKbps: 10240,
    rebalanceIoPriorityPolicy: "dynamicBwThrottling",
    rebalanceIoPriorityBwLimitPerDeviceInKbps: 20480,
  });
  // a live change by scli lasts until the next start with the file
  expect((await run(["--set_rebuild_io_priority_policy", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--policy", "unlimited"])).code).toBe(0);
  await applyClusterObjects(ep, parseClusterConfig(yaml("{ name: sp1, rebuildIoPriorityPolicy: limitNumOfConcurrentIos, rebuildRateLimit: 50MiB }"), "c.yaml"), "structure");
  expect(await poolJson("sp1")).toMatchObject({ rebuildIoPriorityPolicy: "limitNumOfConcurrentIos", rebuildIoPriorityNumOfConcurrentIosPerDevice: 2, rebuildIoPriorityBwLimitPerDeviceInKbps: 51200 });
  expect((await run(["--set_rebalance_io_priority_policy", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--policy", "favor_application_io"])).code).toBe(0);
  await applyClusterObjects(ep, parseClusterConfig(yaml("{ name: sp1 }"), "c.yaml"), "structure");
  expect(await poolJson("sp1")).toMatchObject({ rebalanceIoPriorityPolicy: "favorAppIos", rebuildIoPriorityPolicy: "limitNumOfConcurrentIos" });
}, 60_000);

test("scli sets both policies in scli or REST spelling; --query_storage_pool --json shows them", async () => {
  const POOL = ["--protection_domain_name", "pd1", "--storage_pool_name", "sp1"];
  const a = await run(["--set_rebuild_io_priority_policy", ...POOL, "--policy", "limit_concurrent_io", "--concurrent_ios_per_device", "4", "--bw_limit_per_device_kb", "40960"]);
  expect(a).toMatchObject({ code: 0, err: "" });
  expect(a.out).toContain("rebuild I/O priority policy of Storage Pool sp1");
  expect(a.out).toContain("limitNumOfConcurrentIos (concurrent IOs per device: 4, bandwidth limit per device: 40960 KB/s)");
  const b = await run(["--set_rebalance_io_priority_policy", ...POOL, "--policy", "dynamicBwThrottling", "--bw_limit_per_device_kb", "8192"]);
  expect(b.code).toBe(0);
  expect(await poolJson("sp1")).toMatchObject({
    rebuildIoPriorityPolicy: "limitNumOfConcurrentIos",
    rebuildIoPriorityNumOfConcurrentIosPerDevice: 4,
    rebuildIoPriorityBwLimitPerDeviceInKbps: 40960,
    rebalanceIoPriorityPolicy: "dynamicBwThrottling",
    rebalanceIoPriorityBwLimitPerDeviceInKbps: 8192,
  });
  // the MDM's refusal reaches the operator: dynamicBwThrottling without a bandwidth
  const refused = await run(["--set_rebalance_io_priority_policy", ...POOL, "--bw_limit_per_device_kb", "0"]);
  expect(refused.code).not.toBe(0);
  expect(refused.err).toContain("dynamicBwThrottling needs a bandwidth limit");
}, 60_000);

test("bad flags exit 2 naming the flag and change nothing", async () => {
  const before = await poolJson("sp1");
  const POOL = ["--protection_domain_name", "pd1", "--storage_pool_name", "sp1"];
  for (const [argv, want] of [
    [["--set_rebuild_io_priority_policy", ...POOL, "--policy", "turbo"], "--policy must be unlimited, limit_concurrent_io"],
    [["--set_rebuild_io_priority_policy", ...POOL, "--concurrent_ios_per_device", "0"], "--concurrent_ios_per_device must be a whole number from 1 to 20"],
    [["--set_rebalance_io_priority_policy", ...POOL, "--concurrent_ios_per_device", "21"], "--concurrent_ios_per_device must be a whole number from 1 to 20"],
    [["--set_rebalance_io_priority_policy", ...POOL, "--bw_limit_per_device_kb", "-5"], "--bw_limit_per_device_kb"],
    [["--set_rebuild_io_priority_policy", ...POOL], "--set_rebuild_io_priority_policy needs"],
  ] as const) {
    const r = await run([...argv]);
    expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
    expect(r.err).toContain(want);
  }
  expect(await poolJson("sp1")).toEqual(before);
}, 60_000);
