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
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runFio } from "./helpers/real_clients.ts";
import { verifyJob, waitFor } from "./helpers/recovery.ts";
import { ADMIN_PASSWORD, HaCluster, MDM_HOSTS, type MdmHost, type MdmRole } from "./helpers/ha_cluster.ts";

const SDS_LEASE_MS = 4000; // 0.8 x heartbeatTimeout 5 s

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

async function roles(): Promise<Map<MdmHost, MdmRole | null>> {
  const m = new Map<MdmHost, MdmRole | null>();
  for (const h of MDM_HOSTS) m.set(h, await c.role(h));
  return m;
}

/** Sample every MDM's role every 100 ms until stop(): the distinct leader terms seen. */
function watchTerms(): { stop: () => Promise<{ terms: number[]; leadersAt: { atMs: number; host: MdmHost; term: number }[] }> } {
  let on = true;
  const leadersAt: { atMs: number; host: MdmHost; term: number }[] = [];
  const loop = (async () => {
    while (on) {
      for (const [h, r] of await roles()) if (r?.role === "leader") leadersAt.push({ atMs: performance.now(), host: h, term: r.term });
      await Bun.sleep(100);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return { terms: [...new Set(leadersAt.map((l) => l.term))].sort((a, b) => a - b), leadersAt };
    },
  };
}

/** IO completion times (ms since the job started) from fio's per-IO bandwidth log. */
function ioTimes(prefix: string): number[] {
  const text = readFileSync(`${prefix}.log`, "utf8");
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => Number(l.split(",")[0]))
    .sort((a, b) => a - b);
}

function longestGap(times: number[]): { fromMs: number; ms: number } {
  let best = { fromMs: 0, ms: 0 };
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > best.ms) best = { fromMs: times[i - 1]!, ms: times[i]! - times[i - 1]! };
  return best;
}

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

test("kill -9 of the etcd leader under fio verify: at most one MDM failover, no IO error", async () => {
  const before = await c.leader();
  const w = watchTerms();
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 48, rateIops: 800 }), { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const killed = (await waitFor("an etcd leader", 15_000, async () => {
    const i = await c.etcd.leaderIndex();
    return i >= 0 ? { i } : null;
  })).i;
  c.etcd.kill(killed);
  const killedAt = performance.now();
  const elected = await waitFor("a new etcd leader", 20_000, async () => {
    const i = await c.etcd.leaderIndex();
    return i >= 0 && i !== killed ? performance.now() : null;
  });
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  const after = await c.leader(20_000);
  const seen = await w.stop();
  const terms = [...new Set([before.role.term, ...seen.terms, after.role.term])];
  process.stderr.write(`etcd leader e${killed + 1} killed: new etcd leader after ${Math.round(elected - killedAt)} ms; MDM terms seen ${terms.join(", ")} (leader ${before.host} -> ${after.host})\n`);
  expect(terms.length).toBeLessThanOrEqual(2);
  expect(c.hosts.get("data")!.output).not.toContain("map version went back");
  c.etcd.restart(killed);
  await waitFor("the etcd member back", 20_000, async () => {
    const r = await fetch(`${c.etcd.members[killed]!.clientUrl}/health`, { signal: AbortSignal.timeout(1000) }).catch(() => null);
    return r?.ok ? true : null;
  });
}, 120_000);

test("etcd quorum lost (2 of 3 members SIGSTOPped): the active MDM steps down, nobody leads, IO goes on while the SDS leases hold, waits, and resumes without error after SIGCONT", async () => {
  const { host: old } = await c.leader();
  const logPrefix = join(c.dir, "quorum-fio");
  const fioAt = performance.now();
  const writing = runFio([...verifyJob(c.nbdUri("vol1"), { sizeMiB: 64, rateIops: 400 }), `--write_lat_log=${logPrefix}`, "--log_avg_msec=0"], { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const pids = c.etcd.members.slice(0, 2).map((m) => m.proc!.pid);
  const stopAt = performance.now();
  for (const pid of pids) {
    process.kill(pid, "SIGSTOP");
    stopped.add(pid);
  }
  let leadersDuring: { host: MdmHost; term: number }[] = [];
  let stepDownMs = 0;
  try {
    const down = await c.waitRole(old, (r) => r.role === "standby", 15_000);
    stepDownMs = Math.round(performance.now() - stopAt);
    expect(down.role).toBe("standby");
    // nobody claims leadership while quorum is lost (sampled for 6 s more)
    const w = watchTerms();
    await Bun.sleep(6000);
    leadersDuring = (await w.stop()).leadersAt.map((l) => ({ host: l.host, term: l.term }));
  } finally {
    for (const pid of pids) {
      process.kill(pid, "SIGCONT");
      stopped.delete(pid);
    }
  }
  const contAt = performance.now();
  const back = await c.leader(30_000);
  const leadAgainMs = Math.round(performance.now() - contAt);
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  expect(leadersDuring).toEqual([]);
  // IO completion times (fio's clock starts at most a little after fioAt: the figures are lower bounds)
  const times = ioTimes(`${logPrefix}_clat.1`);
  const stopFio = stopAt - fioAt;
  const contFio = contAt - fioAt;
  const gap = longestGap(times.filter((t) => t >= stopFio - 1000 && t <= contFio + 30_000));
  const ioAfterStopMs = Math.round(gap.fromMs - stopFio);
  process.stderr.write(
    `quorum lost: ${old} standby ${stepDownMs} ms after SIGSTOP; IO went on >= ${ioAfterStopMs} ms after it, then paused ${Math.round(gap.ms)} ms; ` +
      `${back.host} leads ${leadAgainMs} ms after SIGCONT (term ${back.role.term}); fio errors 0\n`,
  );
  // IO pauses, and no earlier than the SDS lease allows: the last lease began at the last answered
  // heartbeat, at most one heartbeat interval before the quorum was lost
  expect(gap.ms).toBeGreaterThan(1000);
  expect(ioAfterStopMs).toBeGreaterThanOrEqual(SDS_LEASE_MS - 1000 - 500);
  expect(stepDownMs).toBeLessThan(15_000);
}, 150_000);
