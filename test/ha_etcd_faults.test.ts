// HA mode under operator actions and etcd faults, on one cluster from one YAML (helpers/ha_cluster.ts:
// 3 etcd members beside 3 MDMs on 127.0.0.11..13, a data host with 3 SDSs and the SDC; compiled
// dist/pf, Debian's etcd), each scenario under a fio verify job:
// 1. scli --switch_mdm_ownership: the active MDM hands over to the named standby and resigns;
//    the term grows, fio sees no error, scli shows the new master.
// 2. kill -9 of the etcd raft leader: at most one MDM failover, no IO error.
// 3. etcd quorum lost (2 of 3 members SIGSTOPped): the active MDM steps down, nobody leads, IO
//    goes on while the SDS leases hold, then waits (the SDC retries), and resumes without a client
//    error after SIGCONT.
// Every process is killed by PID in afterAll (stopped etcd members are continued first).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { runFio } from "./helpers/real_clients.ts";
import { verifyJob } from "./helpers/recovery.ts";
import { ADMIN_PASSWORD, HaCluster, MDM_HOSTS } from "./helpers/ha_cluster.ts";


let c: HaCluster;
const stopped = new Set<number>();
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await HaCluster.create({ etcdMembers: 3, heartbeatTimeout: "5s", rebuildGrace: "4s" });
  try {
    await c.start();
  } catch (e) {
    for (const h of c.hosts.values()) process.stderr.write(`--- ${h.name}\n${h.output.slice(-4000)}\n`);
    throw e;
  }
  expect((await scli(["--login", "--username", "admin", "--password", ADMIN_PASSWORD])).code).toBe(0);
}, 180_000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // gone
    }
  }
  if (process.env.PF_HA_KEEP_LOGS) {
    const out = [...(c?.hosts.values() ?? [])].map((h) => `=== ${h.name}\n${h.output}`).join("\n");
    await Bun.write(process.env.PF_HA_KEEP_LOGS, out);
  }
  await c?.destroy();
}, 30_000);

test("scli --switch_mdm_ownership under fio verify: the named standby leads, the term grows, no IO error, scli shows the new master", async () => {
  const { host: old, role } = await c.leader();
  const target = MDM_HOSTS.find((h) => h !== old)!;
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 48, rateIops: 800 }), { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const t0 = performance.now();
  const r = await scli(["--switch_mdm_ownership", "--new_master_mdm_name", target]);
  const switchMs = Math.round(performance.now() - t0);
  if (r.code !== 0) process.stderr.write(`scli: ${r.stdout}\n${r.stderr}\n`);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`to ${target}`);
  const now = await c.waitRole(target, (x) => x.role === "leader", 10_000);
  expect(now.term).toBeGreaterThan(role.term);
  expect(now.mapVersion).toBeGreaterThanOrEqual(role.mapVersion);
  const oldRole = await c.waitRole(old, (x) => x.role === "standby", 10_000);
  expect(oldRole.leader?.name).toBe(target);
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  const q = await scli(["--query_cluster", "--json"]);
  expect(q.code).toBe(0);
  const j = JSON.parse(q.stdout) as { master: { name: string }; term: number };
  expect(j.master.name).toBe(target);
  expect(j.term).toBe(now.term);
  const text = await scli(["--query_cluster"]);
  expect(text.stdout).toMatch(new RegExp(`Master MDM:\\n    ID: \\S+ Name: ${target}\\n`));
  // by IP back to the first one (PowerFlex's flag); a wrong name is refused, nothing changes
  const bad = await scli(["--switch_mdm_ownership", "--new_master_mdm_name", "nope"]);
  expect(bad.code).not.toBe(0);
  expect((await c.role(target))?.role).toBe("leader");
  const back = await scli(["--switch_mdm_ownership", "--new_primary_mdm_ip", new URL(c.urlOf(old)).hostname]);
  expect(back.code).toBe(0);
  const again = await c.waitRole(old, (x) => x.role === "leader", 10_000);
  expect(again.term).toBeGreaterThan(now.term);
  expect(c.hosts.get("data")!.output).not.toContain("map version went back");
  process.stderr.write(`switch_mdm_ownership ${old} -> ${target}: scli answered in ${switchMs} ms, term ${role.term} -> ${now.term}\n`);
}, 120_000);
