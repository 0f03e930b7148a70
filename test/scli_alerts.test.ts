// scli's alert commands against a real MDM (runMdm on 127.0.0.1 over HTTPS, fake SDSs joined
// through the cluster API, a 2 s heartbeat timeout): --query_alerts lists nothing on a healthy
// system, then the SDS_DISCONNECTED and degraded-pool alerts of a silent SDS, and --all keeps
// them after it is back; --set_capacity_alert_thresholds sends PowerFlex's percent strings and
// --query_storage_pool shows them; bad threshold flags exit 2 and send nothing.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterPaths, HeartbeatResponse, SdsJoinResponse } from "../src/proto/cluster_api.ts";
import { clusterRequest, type MdmEndpoint } from "../src/proto/mdm_http.ts";
import { AlertObject } from "../src/proto/powerflex_api.ts";
import { runScli } from "../src/cmd/scli/main.ts";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";
import { waitFor } from "./helpers/recovery.ts";

const GiB = 1024 ** 3;
let dir: string;
let mdm: MdmHandle;
let env: Record<string, string | undefined>;
let cluster: MdmEndpoint;
let beats: ReturnType<typeof setInterval> | undefined;
const silent = new Set<string>();
const sds = new Map<string, string>();
const tokens = new Map<string, string>(); // per-node token each SDS got at join (heartbeats carry it)

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runScli(argv, { stdout: (x) => (out += x), stderr: (x) => (err += x), env });
  return { code, out, err };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pf-scli-alerts-"));
  mdm = await runMdm({ dataDir: join(dir, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw", heartbeatTimeoutMs: 2000, rebuildGraceMs: 60_000 });
  env = { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile ?? undefined, PF_SCLI_SESSION_DIR: join(dir, "session"), HOME: dir };
  cluster = { url: mdm.url, caPem: mdm.certPem, clusterSecret: mdm.clusterSecret };
  expect((await run(["--login", "--username", "admin", "--password", "test-admin-pw"])).code).toBe(0);
  for (let i = 1; i <= 3; i++) {
    const r = await clusterRequest(cluster, {
      method: "POST",
      path: ClusterPaths.sdsJoin,
      body: { name: `asds${i}`, host: "127.0.0.1", dataPort: 19000 + i, protectionDomainName: "apd", storagePoolName: "asp", devices: [{ path: `/fake/a${i}`, capacityBytes: 64 * GiB }] },
      schema: SdsJoinResponse,
    });
    sds.set(`asds${i}`, r.sdsId);
    tokens.set(r.sdsId, r.nodeToken);
  }
  beats = setInterval(() => {
    for (const [name, id] of sds) {
      if (silent.has(name)) continue;
      clusterRequest({ ...cluster, nodeToken: tokens.get(id) }, { method: "POST", path: ClusterPaths.sdsHeartbeat(id), body: { devices: [], appliedMapVersion: 0 }, schema: HeartbeatResponse }).catch(() => undefined);
    }
  }, 300);
  expect((await run(["--add_volume", "--protection_domain_name", "apd", "--storage_pool_name", "asp", "--size_gb", "2", "--volume_name", "av1"])).code).toBe(0);
});

afterAll(async () => {
  if (beats) clearInterval(beats);
  await mdm?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("scli alert commands", () => {
  test("--query_alerts: none, then the silent SDS's alerts; --all keeps them once cleared", async () => {
    const none = await run(["--query_alerts"]);
    expect(none).toMatchObject({ code: 0, err: "" });
    expect(none.out).toBe("0 active alerts\n");
    silent.add("asds2");
    const raised = await waitFor("SDS_DISCONNECTED", 15_000, async () => {
      const r = await run(["--query_alerts"]);
      return r.out.includes("SDS_DISCONNECTED") ? r : null;
    });
    expect(raised.out).toContain(`SDS_DISCONNECTED (ALERT_HIGH) on Sds ${sds.get("asds2")}: active, since `);
    expect(raised.out).toContain("sdsName: asds2");
    const json = await run(["--query_alerts", "--json"]);
    const list = (JSON.parse(json.out) as unknown[]).map((a) => AlertObject.parse(a));
    expect(list.map((a) => a.alertType).sort()).toEqual(["SDS_DISCONNECTED", "STORAGE_POOL_HAS_DEGRADED_CAPACITY"]);
    silent.delete("asds2");
    await waitFor("the SDS alert to clear", 15_000, async () => !(await run(["--query_alerts"])).out.includes("SDS_DISCONNECTED"));
    const all = await run(["--query_alerts", "--all"]);
    expect(all.code).toBe(0);
    expect(all.out).toMatch(/SDS_DISCONNECTED \(ALERT_HIGH\) on Sds [0-9a-f]{16}: cleared, from .* UTC to .* UTC/);
  }, 60_000);

  test("--set_capacity_alert_thresholds sets both, or one; --query_storage_pool shows them; bad values exit 2", async () => {
    const POOL = ["--protection_domain_name", "apd", "--storage_pool_name", "asp"];
    const set = await run(["--set_capacity_alert_thresholds", ...POOL, "--capacity_alert_high_threshold", "70", "--capacity_alert_critical_threshold", "85"]);
    expect(set).toMatchObject({ code: 0, err: "" });
    expect(set.out).toMatch(/^Successfully set the capacity alert thresholds of Storage Pool asp \(Id: [0-9a-f]{16}\): high 70%, critical 85%\n$/);
    expect((await run(["--set_capacity_alert_thresholds", ...POOL, "--capacity_alert_critical_threshold", "95"])).out).toContain("high 70%, critical 95%");
    const q = await run(["--query_storage_pool", ...POOL]);
    expect(q.out).toContain("Capacity alert thresholds: High: 70%, Critical: 95%");
    const refused = await run(["--set_capacity_alert_thresholds", ...POOL, "--capacity_alert_high_threshold", "96"]);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain("must be below the critical one");
    for (const [argv, msg] of [
      [["--set_capacity_alert_thresholds", ...POOL], "needs one of --capacity_alert_high_threshold | --capacity_alert_critical_threshold"],
      [["--set_capacity_alert_thresholds", ...POOL, "--capacity_alert_high_threshold", "eighty"], "must be a whole percent from 1 to 100"],
      [["--set_capacity_alert_thresholds", ...POOL, "--capacity_alert_high_threshold", "0"], "must be a whole percent from 1 to 100"],
      [["--set_capacity_alert_thresholds", "--storage_pool_name", "asp", "--capacity_alert_high_threshold", "80"], "needs one of --protection_domain_id | --protection_domain_name"],
      [["--query_alerts", "--volume_name", "av1"], "--volume_name is not a flag of --query_alerts"],
    ] as const) {
      const r = await run([...argv]);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.err).toContain(msg);
    }
  });
});
