// A running single-MDM cluster (sqlite, pf up, 3 SDSs, one SDC, data written by fio) moves onto
// etcd the way an operator would do it: stop the MDM, start it again with --etcd-endpoints on
// the same data dir. It exports its sqlite state into the empty etcd (bootstrap), keeps every
// volume and mapping, hands out terms above every term of its sqlite life (the SDSs and the SDC
// keep accepting it), and the data written before verifies. A second MDM then joins as a
// standby, takes ownership (--switch_mdm_ownership), and the data path follows it: the nodes,
// started with the first MDM's address only, are sent on by its 421 answers naming the leader.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { PF_BIN, TestCluster, freePort } from "./helpers/cluster.ts";
import { EtcdCluster } from "./helpers/etcd.ts";
import type { MdmRole } from "./helpers/ha_cluster.ts";
import { runFio } from "./helpers/real_clients.ts";
import { verifyJob, waitFor } from "./helpers/recovery.ts";

let c: TestCluster;
let etcd: EtcdCluster;
let m1: Subprocess | null = null;
let standby: Subprocess | null = null;

/** Start an MDM by hand (as the operator would), its output in the test dir (printed on failure). */
function spawnMdm(argv: string[], log: string): Subprocess {
  const secret = readFileSync(join(c.dataDir, "cluster-secret"), "utf8").trim();
  return Bun.spawn(argv, { stdin: "ignore", stdout: Bun.file(join(c.dir, log)), stderr: Bun.file(join(c.dir, `${log}.err`)), env: { ...process.env, PF_CLUSTER_SECRET: secret } });
}

function logs(): string {
  return ["m1.log", "m1.log.err", "m2.log", "m2.log.err"].map((f) => (existsSync(join(c.dir, f)) ? `--- ${f}\n${readFileSync(join(c.dir, f), "utf8").slice(-4000)}` : "")).join("\n");
}

beforeAll(async () => {
  c = await TestCluster.create({ volumes: [{ name: "vol1", size: "1GiB" }] });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  if (process.env.PF_TEST_LOGS) process.stderr.write(logs());
  m1?.kill("SIGKILL");
  standby?.kill("SIGKILL");
  await c?.destroy();
  await etcd?.stop();
}, 30_000);

async function roleAt(url: string): Promise<MdmRole | null> {
  try {
    const r = await fetch(`${url}/api/pf/mdmRole`, { tls: { ca: readFileSync(c.caFile, "utf8") }, signal: AbortSignal.timeout(1000) } as RequestInit);
    return r.ok ? ((await r.json()) as MdmRole) : null;
  } catch {
    return null;
  }
}

test("restarting the sqlite MDM with --etcd-endpoints moves the cluster onto etcd: volumes, maps and data stay, terms rise", async () => {
  // data under the sqlite MDM
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "before", sizeMiB: 48 }));
  const before = await roleAt(c.mdmUrl);
  expect(before?.role).toBe("leader");
  const volsBefore = (await c.scli(["--query_all_volumes"])).stdout;
  expect(volsBefore).toContain("vol1");

  etcd = await EtcdCluster.start(1);
  const argv = c.killRole("mdm");
  expect(argv).not.toContain("--etcd-endpoints");
  m1 = spawnMdm([...argv, "--etcd-endpoints", etcd.endpoints.join(","), "--name", "m1"], "m1.log");
  const after = await waitFor("the MDM back, leading in etcd mode", 30_000, async () => {
    const r = await roleAt(c.mdmUrl);
    return r?.role === "leader" && r.stats.txns >= 0 && r.term > before!.term ? r : null;
  });
  expect(after.mapVersion).toBeGreaterThanOrEqual(before!.mapVersion);
  // the rows are in etcd now (the bootstrap's export), and the cluster view says HA mode
  const cluster = await c.scli(["--query_cluster"]);
  expect(cluster.code).toBe(0);
  expect(cluster.stdout).toMatch(/Mode:/);
  expect(cluster.stdout).toContain("m1");
  expect((await c.scli(["--query_all_volumes"])).stdout).toContain("vol1");

  // the SDSs and the SDC accept the higher term: what was written verifies, new writes work
  await runFio([...verifyJob(c.nbdUri("vol1"), { name: "before", sizeMiB: 48 }), "--verify_only"]);
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "after", sizeMiB: 32, offsetMiB: 64 }));
  // a change goes through etcd
  const add = await c.scli(["--add_volume", "--storage_pool_name", "sp1", "--protection_domain_name", "pd1", "--size_gb", "1", "--volume_name", "vol2", "--thin_provisioned"]);
  expect(add.stderr + add.stdout).toContain("Successfully created volume");
  expect(add.code).toBe(0);
}, 180_000);

test("a second MDM joins as a standby and takes ownership; the data path follows it", async () => {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const dir = join(c.dir, "mdm2");
  mkdirSync(dir, { recursive: true });
  // its certificate is issued by the cluster CA, which is m1's old self-signed certificate: the
  // one CA file the nodes and scli were given verifies it too
  standby = spawnMdm([PF_BIN, "mdm", "--data-dir", dir, "--listen", `127.0.0.1:${port}`, "--etcd-endpoints", etcd.endpoints.join(","), "--name", "m2"], "m2.log");
  const st = await waitFor("the second MDM a standby that knows the leader", 30_000, async () => {
    const r = await roleAt(url);
    return r?.role === "standby" && r.leader !== null ? r : null;
  });
  const termBefore = (await roleAt(c.mdmUrl))!.term;
  expect(st.leader!.name).toBe("m1");
  const sw = await c.scli(["--switch_mdm_ownership", "--new_master_mdm_name", "m2"]);
  expect(sw.code).toBe(0);
  const led = await waitFor("m2 leading", 15_000, async () => {
    const r = await roleAt(url);
    return r?.role === "leader" ? r : null;
  });
  expect(led.term).toBeGreaterThan(termBefore);
  // the SDC and SDSs only know m1's address: its 421 names m2, and they follow it. Past a whole
  // SDS lease (4 s) IO still works, so m2 answers their heartbeats.
  await Bun.sleep(6000);
  await runFio([...verifyJob(c.nbdUri("vol1"), { name: "after", sizeMiB: 32, offsetMiB: 64 }), "--verify_only"]);
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "switched", sizeMiB: 16, offsetMiB: 128 }));
  const vols = await c.scli(["--query_all_volumes"]);
  expect(vols.stderr + vols.stdout).toContain("vol2");
  // the switch itself is in the audit chain (written before m1 resigned), and the chain verifies
  const audit = await c.scli(["--query_audit_log"]);
  // 202: written when m2 had caught up, before the outcome (m2 leading) was known
  expect(audit.stdout).toMatch(/changeMdmOwnership -> ok 202 \(resigns to MDM m2 \(/);
  const chain = await c.scli(["--verify_audit_log"]);
  expect(chain.code).toBe(0);
  expect(logs()).not.toContain("not written");
}, 120_000);
