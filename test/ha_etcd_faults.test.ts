// HA mode under operator actions and etcd faults, on one cluster from one YAML (helpers/ha_cluster.ts:
// 3 etcd members beside 3 MDMs on 127.0.0.11..13, a data host with 3 SDSs and the SDC; compiled
// dist/pf, Debian's etcd), each scenario under a fio verify job:
// 1. scli --switch_mdm_ownership: the active MDM hands over to the named standby and resigns;
//    the term grows, fio sees no error, scli shows the new master.
// 2. kill -9 of the etcd raft leader: at most one MDM failover (the MDMs' own takeover counters:
//    a term too short for the 100 ms role sampling counts too; issue #12), no IO error.
// 3. etcd quorum lost (2 of 3 members SIGSTOPped): the active MDM steps down, nobody leads, IO
//    goes on while the SDS leases hold, then waits (the SDC retries), and resumes without a client
//    error after SIGCONT.
// 4. the active MDM cut off from etcd (its etcd traffic runs through black-holing TCP proxies),
//    not from the SDSs: it stops acting before the new active MDM begins; every SDS and the SDC
//    move from the old term to the new one once, and none is offered an old-term answer after.
// Every process is killed by PID in afterAll (stopped etcd members are continued first).

import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Socket } from "bun";
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
  await c?.keepLogs();
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

/** IO completion times from fio's per-IO latency log (first column; unix epoch ms with --log_unix_epoch=1). */
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
  // a standby learns the new leader's record by watch, a moment after it stepped down
  const oldRole = await c.waitRole(old, (x) => x.role === "standby" && x.leader?.name === target, 10_000);
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

/** Takeovers so far, summed over every MDM (each MDM counts the terms it began to lead). */
async function takeoversNow(): Promise<number> {
  let n = 0;
  for (const r of (await roles()).values()) {
    if (r === null) throw new Error("an MDM did not answer /api/pf/mdmRole");
    n += r.stats.takeovers;
  }
  return n;
}

test("kill -9 of the etcd leader under fio verify: at most one MDM failover, no IO error", async () => {
  const before = await c.leader();
  const takeoversBefore = await takeoversNow();
  const w = watchTerms();
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 48, rateIops: 800 }), { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const killed = (await waitFor("an etcd leader", 15_000, async () => {
    const i = await c.etcd.leaderIndex();
    return i >= 0 ? { i } : null;
  })).i;
  c.etcd.kill(killed);
  const killedAt = performance.now();
  c.mark(`etcd leader e${killed + 1} killed (MDM ${before.host} leads, term ${before.role.term})`);
  try {
    const elected = await waitFor("a new etcd leader", 20_000, async () => {
      const i = await c.etcd.leaderIndex();
      return i >= 0 && i !== killed ? performance.now() : null;
    });
    c.mark(`new etcd leader seen ${Math.round(elected - killedAt)} ms after the kill`);
    const result = await writing;
    c.mark("fio done");
    expect(result.json.jobs[0]!.error).toBe(0);
    const after = await c.leader(20_000);
    const seen = await w.stop();
    const terms = [...new Set([before.role.term, ...seen.terms, after.role.term])];
    // every term some MDM began to lead counts, however short (the 100 ms sampling may miss one)
    const failovers = (await takeoversNow()) - takeoversBefore;
    process.stderr.write(`etcd leader e${killed + 1} killed: new etcd leader after ${Math.round(elected - killedAt)} ms; MDM failovers ${failovers}, terms seen ${terms.join(", ")} (leader ${before.host} -> ${after.host})\n`);
    expect(failovers).toBeLessThanOrEqual(1);
    expect(terms.length).toBeLessThanOrEqual(2);
    expect(c.hosts.get("data")!.output).not.toContain("map version went back");
  } finally {
    // the member comes back pass or fail: the tests after this one need all three
    c.etcd.restart(killed);
    await waitFor("the etcd member back", 20_000, async () => {
      const r = await fetch(`${c.etcd.members[killed]!.clientUrl}/health`, { signal: AbortSignal.timeout(1000) }).catch(() => null);
      return r?.ok ? true : null;
    });
  }
}, 120_000);

test("etcd quorum lost (2 of 3 members SIGSTOPped): the active MDM steps down, nobody leads, IO goes on while the SDS leases hold, waits, and resumes without error after SIGCONT", async () => {
  const { host: old } = await c.leader();
  const logPrefix = join(c.dir, "quorum-fio");
  // fio logs each IO's completion in unix epoch ms: compared with Date.now() of the SIGSTOP
  const writing = runFio([...verifyJob(c.nbdUri("vol1"), { sizeMiB: 64, rateIops: 400 }), `--write_lat_log=${logPrefix}`, "--log_avg_msec=0", "--log_unix_epoch=1"], { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const pids = c.etcd.members.slice(0, 2).map((m) => m.proc!.pid);
  const stopAt = performance.now();
  const stopWallMs = Date.now();
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
  const contWallMs = Date.now();
  const back = await c.leader(30_000);
  const leadAgainMs = Math.round(performance.now() - contAt);
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  expect(leadersDuring).toEqual([]);
  const times = ioTimes(`${logPrefix}_clat.1`);
  const gap = longestGap(times.filter((t) => t >= stopWallMs - 1000 && t <= contWallMs + 30_000));
  const ioAfterStopMs = Math.round(gap.fromMs - stopWallMs);
  process.stderr.write(
    `quorum lost: ${old} standby ${stepDownMs} ms after SIGSTOP; IO went on ${ioAfterStopMs} ms after it, then paused ${Math.round(gap.ms)} ms; ` +
      `${back.host} leads ${leadAgainMs} ms after SIGCONT (term ${back.role.term}); fio errors 0\n`,
  );
  // IO pauses, and no earlier than the SDS lease allows: the last lease began at the last answered
  // heartbeat, at most one heartbeat interval before the quorum was lost
  expect(gap.ms).toBeGreaterThan(1000);
  expect(ioAfterStopMs).toBeGreaterThanOrEqual(SDS_LEASE_MS - 1000 - 500);
  expect(stepDownMs).toBeLessThan(15_000);
}, 150_000);

/** A TCP proxy to one etcd member that can black-hole its traffic (packets dropped, nothing closed). */
function etcdProxy(targetUrl: string): { url: Promise<string>; block(on: boolean): void; stop(): void } {
  const target = new URL(targetUrl);
  let blocked = false;
  type Side = { peer: Socket<Side> | null; out: Uint8Array[]; early: Uint8Array[] };
  const send = (s: Socket<Side> | null, q: Uint8Array[], b: Uint8Array) => {
    if (s === null) return;
    if (q.length > 0) return void q.push(b);
    const n = s.write(b);
    if (n < b.length) q.push(b.subarray(Math.max(n, 0)));
  };
  const drain = (s: Socket<Side>) => {
    const q = s.data.out;
    while (q.length > 0) {
      const b = q[0]!;
      const n = s.write(b);
      if (n < b.length) {
        q[0] = b.subarray(Math.max(n, 0));
        return;
      }
      q.shift();
    }
  };
  const server = Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        client.data = { peer: null, out: [], early: [] };
        void Bun.connect<Side>({
          hostname: target.hostname,
          port: Number(target.port),
          socket: {
            open(up) {
              up.data = { peer: client, out: [], early: [] };
              client.data.peer = up;
              for (const b of client.data.early) send(up, up.data.out, b);
              client.data.early = [];
            },
            data(up, d) {
              if (!blocked) send(up.data.peer, up.data.peer!.data.out, new Uint8Array(d));
            },
            drain,
            close(up) {
              up.data.peer?.end();
            },
            error(up) {
              up.data.peer?.end();
            },
          },
        }).catch(() => client.end());
      },
      data(client, d) {
        if (blocked) return;
        const b = new Uint8Array(d);
        if (client.data.peer === null) client.data.early.push(b);
        else send(client.data.peer, client.data.peer.data.out, b);
      },
      drain,
      close(client) {
        client.data.peer?.end();
      },
      error(client) {
        client.data.peer?.end();
      },
    },
  });
  return {
    url: Promise.resolve(`http://127.0.0.1:${server.port}`),
    block(on) {
      blocked = on;
    },
    stop() {
      server.stop(true);
    },
  };
}

test("the active MDM cut off from etcd (not from the SDSs) stops acting before the new active MDM's first answer; no SDS takes an answer of the old term after the new one", async () => {
  // one MDM reaches etcd only through black-holing proxies; make it the active one
  const { host: first } = await c.leader();
  const cut = MDM_HOSTS.find((h) => h !== first)!;
  const proxies = c.etcd.members.map((m) => etcdProxy(m.clientUrl));
  try {
    const urls = await Promise.all(proxies.map((p) => p.url));
    const argv = c.killRole(cut, "mdm");
    const at = argv.indexOf("--etcd-endpoints");
    expect(at).toBeGreaterThan(0);
    argv[at + 1] = urls.join(",");
    const proc = c.restartRole(cut, "mdm", argv);
    await c.waitRole(cut, (r) => r.role === "standby", 30_000);
    const sw = await waitFor("the switch to the proxied MDM", 30_000, async () => {
      const r = await scli(["--switch_mdm_ownership", "--new_master_mdm_name", cut]);
      return r.code === 0 ? r : null;
    });
    expect(sw.stdout).toContain(`to ${cut}`);
    const before = await c.waitRole(cut, (r) => r.role === "leader", 10_000);
    await Bun.sleep(2500); // every SDS and the SDC on its term
    const w = watchTerms();
    const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 32, rateIops: 400 }), { timeoutMs: 120_000 });
    await Bun.sleep(1000);
    const cutAt = performance.now();
    for (const p of proxies) p.block(true);
    const next = await waitFor("another MDM to lead", 20_000, async () => {
      for (const h of MDM_HOSTS.filter((x) => x !== cut)) {
        const r = await c.role(h);
        if (r?.role === "leader" && r.term > before.term) return { host: h, role: r };
      }
      return null;
    });
    const result = await writing;
    expect(result.json.jobs[0]!.error).toBe(0);
    const seen = await w.stop();
    // the cut-off MDM's own log says when it stopped acting; the new one's when it began
    const stepDown = proc.lines.find((l) => l.atMs > cutAt && l.text.includes(`steps down from term ${before.term}`));
    const active = c.linesOf(next.host, new RegExp(`is the active MDM, term ${next.role.term}\\b`))[0];
    expect(stepDown).toBeDefined();
    expect(active).toBeDefined();
    // sampled roles: never the old and the new term leading at one time
    const overlap = seen.leadersAt.filter((l) => l.term === before.term && l.atMs >= active!.atMs);
    expect(overlap).toEqual([]);
    expect(stepDown!.atMs).toBeLessThan(active!.atMs);
    // each SDS (and the SDC) moved from the old term to the new one exactly once, after the new
    // MDM began; none was refused an answer of the old term (none was given after the new one)
    const moves = c.linesOf("data", new RegExp(`MDM term ${before.term} -> ${next.role.term}\\b`));
    expect(moves.length).toBeGreaterThanOrEqual(3);
    for (const m of moves) expect(m.atMs).toBeGreaterThanOrEqual(active!.atMs - 50);
    expect(c.linesOf("data", /refused an answer of MDM/).filter((l) => l.atMs > cutAt)).toEqual([]);
    expect(c.hosts.get("data")!.output).not.toContain("map version went back");
    process.stderr.write(
      `partition of ${cut} from etcd: it stopped acting ${Math.round(stepDown!.atMs - cutAt)} ms after the cut; ${next.host} active ${Math.round(active!.atMs - cutAt)} ms after it ` +
        `(gap ${Math.round(active!.atMs - stepDown!.atMs)} ms); ${moves.length} SDS/SDC term moves ${before.term} -> ${next.role.term}; fio errors 0\n`,
    );
    // healed: the cut-off MDM follows again as a standby of the new term
    for (const p of proxies) p.block(false);
    await c.waitRole(cut, (r) => r.role === "standby" && r.term === next.role.term, 20_000);
  } finally {
    for (const p of proxies) p.stop();
  }
}, 150_000);
