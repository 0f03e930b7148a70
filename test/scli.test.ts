// scli as an operator uses it: flag mistakes exit 2 naming the flag and send nothing; then a
// full walk-through against a real MDM (runMdm on 127.0.0.1, HTTPS with its generated cert,
// fake SDSs and an SDC joined through the cluster API): login, PD, pool, thin and thick
// volumes, listings, --json, map, grow, rename, unmap, remove, not-found exit 7, logout; and the
// recovery commands against a real MDM with a short heartbeat timeout: --query_rebuild (with
// --watch, plain lines and the terminal bar), --query_storage_pool state lines, --remove_sds
// draining an SDS until it is gone, a silent SDS showing as Degraded.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { ClusterPaths, SdcJoinResponse, SdsJoinResponse, HeartbeatResponse, SdsAssignmentsResponse, type RebuildReport } from "../src/proto/cluster_api.ts";
import { clusterRequest, type MdmEndpoint } from "../src/proto/mdm_http.ts";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";
import { runScli } from "../src/cmd/scli/main.ts";
import { isPfError } from "../src/proto/errors.ts";
import { allVolumesLines } from "../src/cmd/scli/cmd_volume.ts";
import { clusterLines } from "../src/cmd/scli/cmd_system.ts";
import { sizeText } from "../src/cmd/scli/text_format.ts";
import { durationText, progressLine } from "../src/cmd/scli/cmd_recovery.ts";
import type { RebuildStatus } from "../src/proto/powerflex_api.ts";
import { SessionStore, sessionDirOf } from "../src/cmd/scli/session_store.ts";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";

interface Run {
  code: number;
  out: string;
  err: string;
}

async function scli(argv: string[], env: Record<string, string | undefined>): Promise<Run> {
  let out = "";
  let err = "";
  const code = await runScli(argv, { stdout: (s) => (out += s), stderr: (s) => (err += s), env });
  return { code, out, err };
}

const tmpDirs: string[] = [];
function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `pf-scli-${tag}-`));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
describe("flag mistakes exit 2 naming the flag, and send no request", () => {
  let requests = 0;
  let server: ReturnType<typeof Bun.serve>;
  let env: Record<string, string | undefined>;

  beforeAll(() => {
    // a plain-http loopback "MDM" that counts what reaches it; a session exists, so only the
    // flag checks stand between scli and a request
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch() {
        requests++;
        return Response.json([]);
      },
    });
    const sessionDir = tempDir("flags");
    const url = `http://127.0.0.1:${server.port}`;
    writeFileSync(
      join(sessionDir, "scli-session.json"),
      JSON.stringify({ version: 1, sessions: { [url]: { token: "t", username: "admin", systemId: "0123456789abcdef", loggedInAtMs: 0 } } }),
      { mode: 0o600 },
    );
    env = { PF_MDM: url, PF_SCLI_SESSION_DIR: sessionDir, HOME: sessionDir };
  });
  afterAll(() => {
    server.stop(true);
  });

  const cases: [string[], string][] = [
    [[], "no command given"],
    [["--query_all_volumes", "--bogus"], "--bogus"],
    [["--add_volume", "--size-gb", "8"], "--size-gb; did you mean --size_gb"],
    [["--add_volume", "--storage_pool_id", "0123456789abcdef"], "--add_volume needs --size_gb"],
    [["--add_volume", "--size_gb", "8"], "--storage_pool_id | --storage_pool_name"],
    [["--add_volume", "--size_gb", "eight", "--storage_pool_id", "0123456789abcdef"], "--size_gb"],
    [["--add_volume", "--size_gb", "0", "--storage_pool_id", "0123456789abcdef"], "--size_gb"],
    [["--add_volume", "--size_gb", "1.5", "--storage_pool_id", "0123456789abcdef"], "--size_gb"],
    [["--add_volume", "--size_gb", "8", "--storage_pool_name", "sp1"], "--storage_pool_name needs one of --protection_domain_id"],
    [["--add_volume", "--size_gb", "8", "--storage_pool_id", "0123456789abcdef", "--thin_provisioned", "--thick_provisioned"], "--thin_provisioned and --thick_provisioned"],
    [["--add_volume", "--size_gb", "8", "--storage_pool_id", "xyz"], "--storage_pool_id must be a 16-hex-digit id"],
    [["--add_volume", "--size_gb", "8", "--storage_pool_id", "0123456789abcdef", "--volume_name", "bad name!"], "--volume_name"],
    [["--add_volume", "--size_gb"], "--size_gb needs a value"],
    [["--add_volume", "--size_gb", "--thin_provisioned"], "--size_gb needs a value"],
    [["--add_volume", "--size_gb", "8", "--size_gb", "16"], "--size_gb given twice"],
    [["--add_volume", "--remove_volume"], "--add_volume and --remove_volume cannot be used together"],
    [["--remove_volume", "--volume_name", "v1"], "--i_am_sure"],
    [["--query_volume"], "--volume_id | --volume_name"],
    [["--query_volume", "--volume_name", "a", "--volume_id", "0123456789abcdef"], "--volume_id and --volume_name"],
    [["--query_volume", "--volume_name", "v1", "--size_gb", "8"], "--size_gb is not a flag of --query_volume"],
    [["--map_volume_to_sdc", "--volume_name", "v1"], "--sdc_id | --sdc_name | --sdc_ip | --sdc_guid"],
    [["--map_volume_to_sdc", "--volume_name", "v1", "--sdc_ip", "1.2.3.4", "--access_mode", "sometimes"], "--access_mode"],
    [["--unmap_volume_from_sdc", "--volume_name", "v1", "--all_sdcs", "--sdc_ip", "1.2.3.4"], "--sdc_ip and --all_sdcs"],
    [["--modify_volume_capacity", "--volume_name", "v1"], "--modify_volume_capacity needs --size_gb"],
    [["--rename_volume", "--volume_name", "v1"], "--rename_volume needs --new_name"],
    [["--login", "--username", "admin"], "--login needs --password"],
    [["--query_all", "--json=yes"], "--json takes no value"],
    [["query_all"], "unexpected argument"],
    [["--query_all", "--mdm_ip", "host:port:x"], "--mdm_ip"],
    // snapshots and QoS
    [["--snapshot_volume"], "--volume_id | --volume_name"],
    [["--snapshot_volume", "--volume_id", "0123456789abcdef,xyz"], "--volume_id must be a 16-hex-digit id"],
    [["--snapshot_volume", "--volume_name", "a,bad name!"], "--volume_name"],
    [["--query_volume", "--volume_name", "a,b"], "a list only with --snapshot_volume"],
    [["--remove_consistency_group_snapshots", "--consistency_group_id", "0123456789abcdef"], "--i_am_sure"],
    [["--remove_consistency_group_snapshots", "--i_am_sure"], "needs --consistency_group_id"],
    [["--overwrite_volume_content", "--volume_name", "v1", "--source_volume_name", "s1"], "--i_am_sure"],
    [["--overwrite_volume_content", "--volume_name", "v1", "--i_am_sure"], "--source_volume_id | --source_volume_name"],
    [["--remove_volume", "--volume_name", "v1", "--remove_with_descendant_snapshots", "--remove_entire_snapshot_tree", "--i_am_sure"], "cannot be used together"],
    [["--query_vtree"], "--vtree_id | --volume_id | --volume_name"],
    [["--set_sdc_volume_limit", "--volume_name", "v1", "--sdc_name", "s"], "--limit_iops | --limit_bandwidth_kbps | --limit_bandwidth_in_mbps"],
    [["--set_sdc_volume_limit", "--volume_name", "v1", "--sdc_name", "s", "--limit_iops", "fast"], "--limit_iops must be a whole number"],
    [["--set_sdc_volume_limit", "--volume_name", "v1", "--sdc_name", "s", "--limit_bandwidth_kbps", "1024", "--limit_bandwidth_in_mbps", "1"], "cannot be used together"],
  ];
  for (const [argv, message] of cases) {
    test(`scli ${argv.join(" ") || "(nothing)"} -> exit 2: ${message}`, async () => {
      const before = requests;
      const r = await scli(argv, env);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err).toStartWith("Error: ");
      expect(r.err).toContain(message);
      expect(r.err.trimEnd().split("\n")).toHaveLength(1);
      expect(requests).toBe(before);
    });
  }

  test("--help lists every command; <command> --help shows its usage; neither sends a request", async () => {
    const general = await scli(["--help"], env);
    expect(general.code).toBe(0);
    for (const c of ["--login", "--add_volume", "--map_volume_to_sdc", "--query_all_volumes", "--query_cluster"]) expect(general.out).toContain(c);
    const one = await scli(["--add_volume", "--help"], env);
    expect(one.code).toBe(0);
    expect(one.out).toContain("Usage: scli --add_volume");
    expect(one.out).toContain("--thin_provisioned");
    expect(one.out).toContain("--size_gb GB");
    expect(requests).toBe(0);
  });

  test("an https MDM without a certificate is refused before any connection (TLS is never skipped)", async () => {
    const r = await scli(["--query_all", "--mdm_ip", "127.0.0.1:1"], { ...env, PF_MDM: undefined });
    expect(r.code).toBe(2);
    expect(r.err).toContain("--mdm_ca");
  });
});

// ---------------------------------------------------------------------------------------------
describe("session file", () => {
  test("lives in $HOME/.pf unless PF_SCLI_SESSION_DIR says otherwise", () => {
    expect(sessionDirOf({ HOME: "/home/op" })).toBe("/home/op/.pf");
    expect(sessionDirOf({ HOME: "/home/op", PF_SCLI_SESSION_DIR: "/tmp/s" })).toBe("/tmp/s");
  });

  test("one entry per MDM URL, 0600 file in a 0700 folder; the last logout removes the file", () => {
    const dir = join(tempDir("store"), ".pf");
    const store = new SessionStore(dir);
    const s = (token: string) => ({ token, username: "admin", systemId: "0123456789abcdef", loggedInAtMs: 1 });
    store.put("https://10.0.0.1:6611", s("a"));
    store.put("https://10.0.0.2:6611", s("b"));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(store.file).mode & 0o777).toBe(0o600);
    expect(store.get("https://10.0.0.1:6611")?.token).toBe("a");
    expect(store.remove("https://10.0.0.1:6611")?.token).toBe("a");
    expect(store.get("https://10.0.0.1:6611")).toBeUndefined();
    expect(store.get("https://10.0.0.2:6611")?.token).toBe("b");
    expect(statSync(store.file).mode & 0o777).toBe(0o600);
    store.remove("https://10.0.0.2:6611");
    expect(existsSync(store.file)).toBe(false);
  });

  test("a damaged file is an error naming it, not silently replaced", async () => {
    const dir = tempDir("damaged");
    writeFileSync(join(dir, "scli-session.json"), "{not json", { mode: 0o600 });
    const r = await scli(["--query_all"], { PF_MDM: "http://127.0.0.1:1", PF_SCLI_SESSION_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.err).toContain(join(dir, "scli-session.json"));
    expect(readFileSync(join(dir, "scli-session.json"), "utf8")).toBe("{not json");
  });
});

// ---------------------------------------------------------------------------------------------
describe("text formats (in-process)", () => {
  test("sizes read as PowerFlex prints them", () => {
    expect(sizeText(8 * 1024 * 1024)).toBe("8.0 GB (8192 MB)");
    expect(sizeText(24 * 1024 * 1024)).toBe("24.0 GB (24576 MB)");
  });

  test("query_all_volumes groups by PD and pool, and marks an empty pool", () => {
    const pd = { id: "d263a0ed00000000", name: "protection_domain1" };
    const pools = [
      { id: "91b4120f00000000", name: "capacity", protectionDomainId: pd.id },
      { id: "91b4120f00000001", name: "empty", protectionDomainId: pd.id },
    ];
    const volumes = [
      { id: "b5a167e300000000", name: "volume1", sizeInKb: 8388608, storagePoolId: pools[0]!.id, volumeType: "ThickProvisioned", mappedSdcInfo: [{ sdcId: "a" .repeat(16) }, { sdcId: "b".repeat(16) }, { sdcId: "c".repeat(16) }] },
      { id: "b5a167e400000001", name: "rexrayvol01", sizeInKb: 25165824, storagePoolId: pools[0]!.id, volumeType: "ThickProvisioned", mappedSdcInfo: null },
    ];
    expect(allVolumesLines([pd], pools, volumes)).toEqual([
      "Query-all-volumes returned 2 volumes",
      "Protection Domain d263a0ed00000000 Name: protection_domain1",
      "Storage Pool 91b4120f00000000 Name: capacity",
      " Volume ID: b5a167e300000000 Name: volume1 Size: 8.0 GB (8192 MB) Mapped to 3 SDC Thick-provisioned",
      " Volume ID: b5a167e400000001 Name: rexrayvol01 Size: 24.0 GB (24576 MB) Unmapped Thick-provisioned",
      "Storage Pool 91b4120f00000001 Name: empty",
      " <No volumes defined>",
    ]);
  });

  test("query_cluster prints the cluster, master and tie-breakers", () => {
    const lines = clusterLines({
      clusterMode: "ThreeNodes",
      clusterState: "ClusteredNormal",
      goodNodesNum: 3,
      goodReplicasNum: 2,
      master: { id: "7cbb59a95d6dcb00", ips: ["10.10.40.111"], managementIPs: ["10.10.40.111"], port: 9011, versionInfo: "3.6.2000", status: "Normal" },
      slaves: [{ id: "5da2231a3f997601", ips: ["10.10.40.112"], managementIPs: ["10.10.40.112"], port: 9011, versionInfo: "3.6.2000", status: "Normal" }],
      tieBreakers: [{ id: "77902c567cd74302", ips: ["10.10.40.113"], port: 9011, versionInfo: "3.6.2000", status: "Normal" }],
    });
    expect(lines.slice(0, 4)).toEqual(["Cluster:", "    Mode: 3_node, State: Normal, Active: 3/3, Replicas: 2/2", "    Virtual IP Addresses: N/A", "Master MDM:"]);
    expect(lines).toContain("    ID: 0x7cbb59a95d6dcb00");
    expect(lines).toContain("        IP Addresses: 10.10.40.111, Management IP Addresses: 10.10.40.111, Port: 9011");
    expect(lines).toContain("Slave MDMs:");
    expect(lines).toContain("Tie-Breakers:");
    expect(lines).toContain("        IP Addresses: 10.10.40.113, Port: 9011");
  });
});

// ---------------------------------------------------------------------------------------------
describe("walk-through against a real MDM over HTTPS", () => {
  let mdm: MdmHandle;
  let env: Record<string, string | undefined>;
  let sessionDir: string;
  let cluster: MdmEndpoint;
  let heartbeats: ReturnType<typeof setInterval> | undefined;
  let heartbeatError: unknown = null;
  const sdsIds: string[] = [];
  const sdsTokens = new Map<string, string>();
  const GiB = 1024 ** 3;
  const ids: Record<string, string> = {};

  const run = (...argv: string[]) => scli(argv, env);
  /** run and require success */
  const ok = async (...argv: string[]): Promise<string> => {
    const r = await run(...argv);
    if (r.code !== 0) throw new Error(`scli ${argv.join(" ")} exited ${r.code}: ${r.err}`);
    expect(r.err).toBe("");
    return r.out;
  };
  const objectId = (out: string): string => {
    const m = /Object ID ([0-9a-f]{16})/.exec(out);
    if (!m) throw new Error(`no object id in ${JSON.stringify(out)}`);
    return m[1]!;
  };

  beforeAll(async () => {
    const dataDir = tempDir("mdm");
    mdm = await runMdm({ dataDir, listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw" });
    if (!mdm.certFile) throw new Error("runMdm served no certificate file: scli tests need HTTPS");
    sessionDir = tempDir("session");
    env = { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile, PF_SCLI_SESSION_DIR: join(sessionDir, "pf"), HOME: sessionDir };
    cluster = { url: mdm.url, caPem: mdm.certPem, clusterSecret: mdm.clusterSecret };
  });

  afterAll(async () => {
    if (heartbeats) clearInterval(heartbeats);
    await mdm?.stop();
  });

  async function heartbeatAll(): Promise<void> {
    for (const id of sdsIds) {
      await clusterRequest({ ...cluster, nodeToken: sdsTokens.get(id) }, { method: "POST", path: ClusterPaths.sdsHeartbeat(id), body: { devices: [], appliedMapVersion: 0 }, schema: HeartbeatResponse });
    }
  }

  test("before login: a command says not logged in (exit 3); a wrong password is refused", async () => {
    const r = await run("--query_all_volumes");
    expect(r.code).toBe(3);
    expect(r.err).toContain("not logged in");
    const bad = await run("--login", "--username", "admin", "--password", "wrong");
    expect(bad.code).toBe(3);
    expect(bad.err).toBe("Error: MDM failed command.  Status: Unauthorized\n");
    expect(existsSync(join(sessionDir, "pf", "scli-session.json"))).toBe(false);
  });

  test("a certificate that is not the MDM's is refused (verification is never skipped)", async () => {
    const other = generateSelfSignedCert({ commonName: "not-the-mdm", hosts: ["127.0.0.1"] });
    const caFile = join(sessionDir, "other-ca.pem");
    writeFileSync(caFile, other.certPem);
    const r = await scli(["--login", "--username", "admin", "--password", "test-admin-pw", "--mdm_ca", caFile], env);
    expect(r.code).toBe(6);
    expect(r.err).toStartWith(`Error: MDM ${mdm.url} unreachable: `);
    expect(r.err).toContain("is --mdm_ca / PF_MDM_CA the MDM's certificate?");
    expect(existsSync(join(sessionDir, "pf", "scli-session.json"))).toBe(false);
  });

  test("login prints the role and system id and keeps the session 0600 in a 0700 folder", async () => {
    // --mdm_ip HOST:PORT and --mdm_ca FILE name the same MDM as PF_MDM / PF_MDM_CA
    const out = await scli(["--login", "--username", "admin", "--password", "test-admin-pw", "--mdm_ip", `127.0.0.1:${mdm.port}`, "--mdm_ca", mdm.certFile!], {
      ...env,
      PF_MDM: undefined,
      PF_MDM_CA: undefined,
    });
    expect(out.code).toBe(0);
    expect(out.out).toMatch(/^Logged in\. User role is SuperUser\. System ID is [0-9a-f]{16}\n$/);
    const file = join(sessionDir, "pf", "scli-session.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(sessionDir, "pf")).mode & 0o777).toBe(0o700);
    const saved = JSON.parse(readFileSync(file, "utf8")) as { sessions: Record<string, { token: string }> };
    expect(Object.keys(saved.sessions)).toEqual([mdm.url]);
  });

  test("add protection domain, storage pool and fault set; a duplicate name is refused", async () => {
    const pd = await ok("--add_protection_domain", "--protection_domain_name", "pd1");
    expect(pd).toMatch(/^Successfully created protection domain pd1\. Object ID [0-9a-f]{16}\n$/);
    ids.pd1 = objectId(pd);
    const dup = await run("--add_protection_domain", "--protection_domain_name", "pd1");
    expect(dup.code).toBe(4);
    expect(dup.err).toStartWith("Error: MDM failed command.  Status: ");
    const pool = await ok("--add_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--media_type", "SSD");
    expect(pool).toContain("Successfully created storage pool sp1");
    ids.sp1 = objectId(pool);
    const pd2 = await ok("--add_protection_domain", "--protection_domain_name", "pd2");
    const fs = await ok("--add_fault_set", "--protection_domain_id", objectId(pd2), "--fault_set_name", "rack1");
    expect(fs).toContain("Successfully created fault set rack1 in protection domain pd2");
    const missing = await run("--add_storage_pool", "--protection_domain_name", "nope", "--storage_pool_name", "sp9");
    expect(missing.code).toBe(7);
  });

  test("three SDSs join pd1/sp1 through the cluster API and are listed", async () => {
    for (let i = 1; i <= 3; i++) {
      const r = await clusterRequest(cluster, {
        method: "POST",
        path: ClusterPaths.sdsJoin,
        body: {
          name: `sds${i}`,
          host: "127.0.0.1",
          dataPort: 17000 + i,
          protectionDomainName: "pd1",
          storagePoolName: "sp1",
          devices: [
            { path: `/fake/sds${i}/d0`, capacityBytes: 64 * GiB },
            { path: `/fake/sds${i}/d1`, capacityBytes: 64 * GiB },
          ],
        },
        schema: SdsJoinResponse,
      });
      sdsIds.push(r.sdsId);
      sdsTokens.set(r.sdsId, r.nodeToken);
    }
    await heartbeatAll();
    heartbeats = setInterval(() => {
      heartbeatAll().catch((e: unknown) => {
        heartbeatError = e; // checked by a later test, which would also see SDSs Disconnected
      });
    }, 1000);
    const all = await ok("--query_all_sds");
    expect(all).toStartWith("Query-all-SDS returned 3 SDS nodes.\n");
    expect(all).toContain(`Protection Domain ${ids.pd1} Name: pd1`);
    expect(all).toMatch(/SDS ID: [0-9a-f]{16} Name: sds1 State: Connected, Joined IP: 127\.0\.0\.1 Port: 17001/);
    const one = await ok("--query_sds", "--sds_name", "sds2");
    expect(one).toContain(`SDS ${sdsIds[1]} Name: sds2`);
    expect(one).toContain("Device information (total 2 devices):");
    expect(one).toContain("/fake/sds2/d1");
  });

  test("add a thin and a thick volume; sizes as granted", async () => {
    const thin = await ok("--add_volume", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--size_gb", "8", "--volume_name", "v1", "--thin_provisioned");
    expect(thin).toMatch(/^Successfully created volume of size 8 GB\. Object ID [0-9a-f]{16}\n$/);
    ids.v1 = objectId(thin);
    const thick = await ok("--add_volume", "--storage_pool_id", ids.sp1!, "--size_gb", "16", "--volume_name", "v2", "--thick_provisioned");
    expect(thick).toContain("Successfully created volume of size 16 GB.");
    ids.v2 = objectId(thick);
    const dup = await run("--add_volume", "--storage_pool_id", ids.sp1!, "--size_gb", "8", "--volume_name", "v1");
    expect(dup.code).toBe(4);
  });

  test("query_all_volumes prints PowerFlex's listing; --json is machine-readable", async () => {
    const text = await ok("--query_all_volumes");
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe("Query-all-volumes returned 2 volumes");
    expect(lines).toContain(`Protection Domain ${ids.pd1} Name: pd1`);
    expect(lines).toContain(`Storage Pool ${ids.sp1} Name: sp1`);
    expect(lines).toContain(` Volume ID: ${ids.v1} Name: v1 Size: 8.0 GB (8192 MB) Unmapped Thin-provisioned`);
    expect(lines).toContain(` Volume ID: ${ids.v2} Name: v2 Size: 16.0 GB (16384 MB) Unmapped Thick-provisioned`);
    const json = z
      .array(z.object({ id: z.string(), name: z.string(), sizeInKb: z.number(), volumeType: z.string(), storagePoolId: z.string() }))
      .parse(JSON.parse(await ok("--query_all_volumes", "--json")));
    expect(json.map((v) => [v.name, v.sizeInKb, v.volumeType]).sort()).toEqual([
      ["v1", 8 * 1024 * 1024, "ThinProvisioned"],
      ["v2", 16 * 1024 * 1024, "ThickProvisioned"],
    ]);
  });

  test("map v1 to a joined SDC by IP; mapping twice is refused; the listing shows it", async () => {
    const sdc = await clusterRequest(cluster, { method: "POST", path: ClusterPaths.sdcJoin, body: { guid: "GUID-HOST-1", name: "host1", host: "127.0.0.1" }, schema: SdcJoinResponse });
    ids.sdc = sdc.sdcId;
    const sdcs = await ok("--query_all_sdc");
    expect(sdcs).toContain("Query all SDC returned 1 SDC nodes.");
    expect(sdcs).toContain(`SDC ID: ${sdc.sdcId} Name: host1 IP: 127.0.0.1`);
    const mapped = await ok("--map_volume_to_sdc", "--volume_name", "v1", "--sdc_ip", "127.0.0.1", "--access_mode", "ReadOnly");
    expect(mapped).toContain(`Successfully mapped volume v1 (ID ${ids.v1}) to SDC host1 (ID ${sdc.sdcId}) with access mode ReadOnly`);
    const again = await run("--map_volume_to_sdc", "--volume_name", "v1", "--sdc_guid", "GUID-HOST-1");
    expect(again.code).toBe(4);
    expect(again.err).toStartWith("Error: MDM failed command.  Status: ");
    expect(await ok("--query_all_volumes")).toContain(` Volume ID: ${ids.v1} Name: v1 Size: 8.0 GB (8192 MB) Mapped to 1 SDC Thin-provisioned`);
    const vol = z
      .object({ mappedSdcInfo: z.array(z.object({ sdcId: z.string(), accessMode: z.string() })) })
      .parse(JSON.parse(await ok("--query_volume", "--volume_id", ids.v1!, "--json")));
    expect(vol.mappedSdcInfo).toEqual([expect.objectContaining({ sdcId: sdc.sdcId, accessMode: "ReadOnly" })]);
  });

  test("grow v1 to 24 GB and rename it to v1b", async () => {
    expect(await ok("--modify_volume_capacity", "--volume_name", "v1", "--size_gb", "24")).toBe("Successfully modified volume size to 24 GB\n");
    expect(await ok("--rename_volume", "--volume_name", "v1", "--new_name", "v1b")).toContain(`Successfully renamed volume v1 (ID ${ids.v1}) to v1b`);
    const q = await ok("--query_volume", "--volume_name", "v1b");
    expect(q).toStartWith(`Volume ID: ${ids.v1} Name: v1b\n`);
    expect(q).toContain("Size: 24.0 GB (24576 MB)");
    expect(q).toContain("Provisioning: Thin-provisioned");
    expect(q).toContain(`SDC ID: ${ids.sdc} IP: 127.0.0.1 Name: host1 Access mode: ReadOnly`);
    const old = await run("--query_volume", "--volume_name", "v1");
    expect(old.code).toBe(7);
  });

  test("pool, protection domain, system and cluster queries", async () => {
    const pool = await ok("--query_storage_pool", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1");
    expect(pool).toStartWith(`Storage Pool sp1 (Id: ${ids.sp1}) has 2 volumes`);
    expect(pool).toContain("Media type: SSD");
    const pd = await ok("--query_protection_domain", "--protection_domain_name", "pd1");
    expect(pd).toStartWith(`Protection Domain ${ids.pd1} Name: pd1\n`);
    expect(pd).toContain("3 SDS nodes");
    const all = await ok("--query_all");
    expect(all).toStartWith("System Info:\n");
    expect(all).toContain("Query all returned 2 Protection Domains:");
    expect(all).toContain("Total 3 SDS Nodes");
    expect(all).toContain("3 SDS nodes have connection state 'Connected'");
    expect(heartbeatError).toBeNull();
    expect(all).toContain("1 thin-provisioned volume. Total size: 24.0 GB (24576 MB)");
    expect(all).toContain("1 thick-provisioned volume. Total size: 16.0 GB (16384 MB)");
    const allJson = z.object({ system: z.object({ id: z.string() }), volumes: z.array(z.unknown()) }).parse(JSON.parse(await ok("--query_all", "--json")));
    expect(allJson.volumes).toHaveLength(2);
    const c = await ok("--query_cluster");
    expect(c).toStartWith("Cluster:\n    Mode: 1_node, State: Normal");
    expect(c).toContain("Master MDM:");
    expect(c).toContain(`Port: ${mdm.port}`);
  });

  test("unmap v1b from its SDC by name, and v2 from all SDCs", async () => {
    expect(await ok("--unmap_volume_from_sdc", "--volume_name", "v1b", "--sdc_name", "host1")).toContain(`Successfully un-mapped volume v1b (ID ${ids.v1}) from SDC host1`);
    const vol = z.object({ mappedSdcInfo: z.array(z.unknown()).nullable().optional() }).parse(JSON.parse(await ok("--query_volume", "--volume_name", "v1b", "--json")));
    expect(vol.mappedSdcInfo ?? []).toEqual([]);
    const again = await run("--unmap_volume_from_sdc", "--volume_name", "v1b", "--sdc_id", ids.sdc!);
    expect(again.code).not.toBe(0);
    expect(again.err).toStartWith("Error: MDM failed command.  Status: ");
    await ok("--map_volume_to_sdc", "--volume_id", ids.v2!, "--sdc_id", ids.sdc!);
    expect(await ok("--unmap_volume_from_sdc", "--volume_id", ids.v2!, "--all_sdcs")).toContain("from all SDCs");
  });

  test("remove is refused without --i_am_sure, then removes; the volume is then not found (exit 7)", async () => {
    const refused = await run("--remove_volume", "--volume_name", "v1b");
    expect(refused.code).toBe(2);
    expect(refused.err).toContain("--i_am_sure");
    await ok("--query_volume", "--volume_name", "v1b"); // still there
    expect(await ok("--remove_volume", "--volume_name", "v1b", "--i_am_sure")).toContain(`Successfully removed volume v1b (ID ${ids.v1})`);
    const byName = await run("--query_volume", "--volume_name", "v1b");
    expect(byName.code).toBe(7);
    expect(byName.err).toBe("Error: MDM failed command.  Status: Could not find the volume with name v1b\n");
    const byId = await run("--query_volume", "--volume_id", ids.v1!);
    expect(byId.code).toBe(7);
    expect(byId.err).toStartWith("Error: MDM failed command.  Status: Could not find the volume");
    expect(await ok("--query_all_volumes")).toStartWith("Query-all-volumes returned 1 volumes\n");
  });

  test("logout removes the session; the next call says not logged in", async () => {
    const file = join(sessionDir, "pf", "scli-session.json");
    const token = (JSON.parse(readFileSync(file, "utf8")) as { sessions: Record<string, { token: string }> }).sessions[mdm.url]!.token;
    expect(await ok("--logout")).toBe("Logged out.\n");
    expect(existsSync(file)).toBe(false);
    const r = await run("--query_all_volumes");
    expect(r.code).toBe(3);
    expect(r.err).toContain("not logged in");
    // the MDM revoked the token too: a copy of the old session file gets 401
    writeFileSync(file, JSON.stringify({ version: 1, sessions: { [mdm.url]: { token, username: "admin", systemId: "x", loggedInAtMs: 0 } } }), { mode: 0o600 });
    const stale = await run("--query_all_volumes");
    expect(stale.code).toBe(3);
    expect(stale.err).toContain("not logged in");
    expect(stale.err).toContain("expired or was revoked");
    rmSync(file);
  });
});

// ---------------------------------------------------------------------------------------------
describe("recovery commands against a real MDM", () => {
  let mdm: MdmHandle;
  let env: Record<string, string | undefined>;
  let cluster: MdmEndpoint;
  let heartbeats: ReturnType<typeof setInterval> | undefined;
  const silent = new Set<string>();
  const sds = new Map<string, string>(); // name -> id
  const tokens = new Map<string, string>(); // id -> node token
  const GiB = 1024 ** 3;

  async function run(argv: string[], extra: { isTty?: boolean; sleep?: (ms: number) => Promise<void> } = {}): Promise<Run> {
    let out = "";
    let err = "";
    const code = await runScli(argv, { stdout: (x) => (out += x), stderr: (x) => (err += x), env, ...extra });
    return { code, out, err };
  }
  const ok = async (argv: string[], extra: { isTty?: boolean; sleep?: (ms: number) => Promise<void> } = {}): Promise<string> => {
    const r = await run(argv, extra);
    if (r.code !== 0) throw new Error(`scli ${argv.join(" ")} exited ${r.code}: ${r.err}`);
    return r.out;
  };

  async function heartbeat(id: string, rebuilds: RebuildReport[] = []): Promise<void> {
    await clusterRequest({ ...cluster, nodeToken: tokens.get(id) }, { method: "POST", path: ClusterPaths.sdsHeartbeat(id), body: { devices: [], appliedMapVersion: 0, rebuilds }, schema: HeartbeatResponse });
  }

  /** What the SDS primaries would do: report every copy they are asked to build as done. */
  async function completeCopies(): Promise<number> {
    let n = 0;
    for (const [name, id] of sds) {
      if (silent.has(name)) continue;
      let a: SdsAssignmentsResponse;
      try {
        a = await clusterRequest({ ...cluster, nodeToken: tokens.get(id) }, { method: "GET", path: ClusterPaths.sdsAssignments(id), schema: SdsAssignmentsResponse });
      } catch (e) {
        if (isPfError(e) && e.code === "NOT_FOUND") continue; // removed by the drain: the process would stop
        throw e;
      }
      const reports: RebuildReport[] = [];
      for (const e of a.extents) {
        if (e.role !== "primary" || e.syncTarget === null) continue;
        const total = a.extentSizeBytesByVolume[e.volumeId] ?? 0;
        reports.push({ volumeId: e.volumeId, extentIndex: e.extentIndex, epoch: e.epoch, targetSdsId: e.syncTarget.sdsId, copiedBytes: total, totalBytes: total, done: true });
      }
      if (reports.length > 0) await heartbeat(id, reports);
      n += reports.length;
    }
    return n;
  }

  beforeAll(async () => {
    const dataDir = tempDir("mdm-recovery");
    mdm = await runMdm({ dataDir, listenHost: "127.0.0.1", listenPort: 0, adminPassword: "test-admin-pw", heartbeatTimeoutMs: 2000, rebuildGraceMs: 60_000, stallTimeoutMs: 60_000 });
    if (!mdm.certFile) throw new Error("runMdm served no certificate file");
    const sessionDir = tempDir("session-recovery");
    env = { PF_MDM: mdm.url, PF_MDM_CA: mdm.certFile, PF_SCLI_SESSION_DIR: join(sessionDir, "pf"), HOME: sessionDir };
    cluster = { url: mdm.url, caPem: mdm.certPem, clusterSecret: mdm.clusterSecret };
    await ok(["--login", "--username", "admin", "--password", "test-admin-pw"]);
    for (let i = 1; i <= 4; i++) {
      const r = await clusterRequest(cluster, {
        method: "POST",
        path: ClusterPaths.sdsJoin,
        body: { name: `rsds${i}`, host: "127.0.0.1", dataPort: 18000 + i, protectionDomainName: "rpd", storagePoolName: "rsp", devices: [{ path: `/fake/r${i}`, capacityBytes: 64 * GiB }] },
        schema: SdsJoinResponse,
      });
      sds.set(`rsds${i}`, r.sdsId);
      tokens.set(r.sdsId, r.nodeToken);
    }
    heartbeats = setInterval(() => {
      for (const [name, id] of sds) if (!silent.has(name)) heartbeat(id).catch(() => undefined);
    }, 300);
    await ok(["--add_volume", "--protection_domain_name", "rpd", "--storage_pool_name", "rsp", "--size_gb", "2", "--volume_name", "rv1", "--thin_provisioned"]);
  });

  afterAll(async () => {
    if (heartbeats) clearInterval(heartbeats);
    await mdm?.stop();
  });

  const POOL = ["--protection_domain_name", "rpd", "--storage_pool_name", "rsp"];

  test("--query_rebuild and --query_storage_pool show a healthy pool; --json is the MDM's object", async () => {
    const out = await ok(["--query_rebuild", ...POOL]);
    expect(out).toMatch(/^Storage Pool rsp \(Id: [0-9a-f]{16}\) rebuild status\n/);
    expect(out).toContain("\tState: Normal, rebuild: Idle\n");
    expect(out).toContain("\tProgress: 100.0%");
    const json = JSON.parse(await ok(["--query_rebuild", ...POOL, "--json"])) as RebuildStatus;
    expect(json).toMatchObject({ storagePoolState: "Normal", rebuildState: "Idle", numOfDegradedExtents: 0 });
    expect(await ok(["--query_storage_pool", ...POOL])).toContain("\tState: Normal, rebuild: Idle\n");
    const watchTty = await ok(["--query_rebuild", ...POOL, "--watch"], { isTty: true, sleep: async () => undefined });
    expect(watchTty).toStartWith("\r\x1b[2K[##############################] 100.0%");
    const usage = await run(["--query_rebuild", "--storage_pool_name", "rsp"]);
    expect(usage.code).toBe(2);
  });

  test("--remove_sds starts a drain; --watch follows it (plain lines off a terminal) until the SDS is gone", async () => {
    const out = await ok(["--remove_sds", "--sds_name", "rsds4"]);
    expect(out).toMatch(/^Started removal of SDS rsds4 \(ID [0-9a-f]{16}\): its \d+ extent copies move to the other SDSs first \(SDS state RemovalInProgress\)\n/);
    let sleeps = 0;
    const watched = await ok(["--query_rebuild", ...POOL, "--watch"], {
      isTty: false,
      sleep: async () => {
        sleeps++;
        if (sleeps > 200) throw new Error("the drain did not finish");
        await Bun.sleep(300); // let the MDM's planner step run
        await completeCopies();
      },
    });
    const lines = watched.split("\n");
    expect(lines[0]).toMatch(/^\[[#.]{30}\] +[\d.]+% .*Normal\/(Draining|Rebalancing)/);
    expect(watched).toContain("\tState: Normal, rebuild: Idle\n");
    expect(watched).not.toContain("\r");
    const gone = await run(["--query_sds", "--sds_name", "rsds4"]);
    expect(gone.code).toBe(7);
    sds.delete("rsds4");
    const missing = await run(["--remove_sds", "--sds_name", "nope"]);
    expect(missing.code).toBe(7);
  }, 30_000);

  test("a silent SDS makes the pool Degraded in --query_storage_pool and --query_rebuild", async () => {
    // the drain may have left the pool uneven: let the rebalance finish first
    for (let i = 0, quiet = 0; quiet < 3; i++) {
      if (i > 100) throw new Error("the pool did not settle");
      await Bun.sleep(300);
      const n = await completeCopies();
      quiet = n === 0 && (await ok(["--query_rebuild", ...POOL])).includes("rebuild: Idle") ? quiet + 1 : 0;
    }
    silent.add("rsds1");
    let out = "";
    for (let i = 0; i < 40; i++) {
      await Bun.sleep(200);
      out = await ok(["--query_storage_pool", ...POOL]);
      if (out.includes("State: Degraded, rebuild: WaitingForReturn")) break;
    }
    expect(out).toContain("\tState: Degraded, rebuild: WaitingForReturn\n");
    expect(out).toMatch(/\tDegraded capacity: [\d.]+ GB \(\d+ MB\), pending rebuild: 0.0 GB \(0 MB\), progress 100.0%, ETA 0s\n/);
    const q = await ok(["--query_rebuild", ...POOL]);
    expect(q).toContain("State: Degraded, rebuild: WaitingForReturn");
    expect(q).toMatch(/Waiting for a returning SDS: \d+ extents/);
  }, 30_000);
});

describe("recovery text formats (in-process)", () => {
  test("durations and the progress bar", () => {
    expect(durationText(null)).toBe("unknown");
    expect(durationText(5)).toBe("5s");
    expect(durationText(125)).toBe("2m 05s");
    expect(durationText(3725)).toBe("1h 02m 05s");
    const s: RebuildStatus = {
      storagePoolId: "0123456789abcdef", storagePoolState: "Degraded", rebuildState: "Rebuilding", rebuildStalled: true,
      numOfDegradedExtents: 10, degradedCapacityInKb: 655360, numOfUnavailableExtents: 0, unavailableCapacityInKb: 0, numOfWaitingExtents: 0,
      numOfPendingRebuildExtents: 6, pendingRebuildCapacityInKb: 393216, numOfActiveRebuildExtents: 4, numOfActiveResyncExtents: 1,
      activeRebuildCapacityInKb: 262144, numOfActiveMoveExtents: 0, activeRebalanceCapacityInKb: 0, pendingRebalanceCapacityInKb: 0,
      copiedInKb: 1024, remainingInKb: 600000, rebuildProgressPercent: 50, rebuildRateInKbps: 10240, rebuildEtaSeconds: 59, noProgressSeconds: 31,
    };
    expect(progressLine(s)).toBe("[###############...............]  50.0%  10.0 MB/s  ETA 59s  Degraded/Rebuilding STALLED, 4 running, 6 pending");
  });
});
