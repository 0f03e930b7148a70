// HA mode across hosts in network namespaces (helpers/ha_netns.ts): three etcd hosts e1..e3 on an
// "etcd" network; three MDM hosts m1..m3, each with one link to the etcd network and one to the
// "data" network; SDS hosts d1..d3 (one SDS each) and the SDC host c1 on the data network; every
// host runs `pf up FILE --host NAME` (or its etcd member) inside its own namespace, from one YAML.
// fio runs from the test process through its own link on the data network. Operator scenarios:
// 1. kill -9 of the active MDM under fio verify: a standby answers SDS heartbeats within 3 s, no
//    IO error, the term grows, mapVersion never goes back;
// 2. then kill -9 of an SDS: the new active MDM rebuilds it and every block verifies;
// 3. the active MDM's etcd link taken down (its data link stays up): it stops acting before the
//    new active MDM starts; from the SDS logs, each SDS moves from the old term to the new one
//    exactly once, after the new MDM began, and refuses (or is offered) no old-term answer after.
// The namespaces are created and deleted by the test, pass or fail.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { EtcdCluster } from "./helpers/etcd.ts";
import { ADMIN_PASSWORD, HaCluster, MDM_HOSTS, type MdmHost } from "./helpers/ha_cluster.ts";
import { HaNetwork } from "./helpers/ha_netns.ts";
import { runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitFor, waitPoolHealthy } from "./helpers/recovery.ts";
import { loopLag } from "./helpers/loop_lag.ts";

const TAKEOVER_LIMIT_MS = 3000;
const HEARTBEAT_TIMEOUT = "5s";

let net: HaNetwork | undefined;
let c: HaCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  net = new HaNetwork(3);
  const n = net;
  const etcd = await EtcdCluster.start(3, { hosts: n.etcdAddresses, ports: { client: 2379, peer: 2380 }, wrap: (i) => n.exec(`e${i + 1}`) });
  c = await HaCluster.create({ layout: n.layout(), etcd, ports: { mdm: 6611, nbd: 10809, sds: 7072 }, heartbeatTimeout: HEARTBEAT_TIMEOUT, rebuildGrace: "4s", deviceSize: "256MiB", volumeSize: "128MiB" });
  try {
    await c.start();
  } catch (e) {
    for (const h of c.hosts.values()) process.stderr.write(`--- ${h.name}\n${h.output.slice(-3000)}\n`);
    throw e;
  }
  const login = await scli(["--login", "--username", "admin", "--password", ADMIN_PASSWORD]);
  expect(login.code).toBe(0);
}, 150_000);

afterAll(async () => {
  await c?.keepLogs();
  try {
    await c?.destroy();
  } finally {
    net?.destroy();
  }
}, 30_000);

async function leaderOther(than: MdmHost, minTerm: number, timeoutMs: number) {
  return waitFor("another MDM to lead", timeoutMs, async () => {
    for (const h of MDM_HOSTS.filter((x) => x !== than)) {
      const r = await c.role(h);
      if (r?.role === "leader" && r.term > minTerm) return { host: h, role: r };
    }
    return null;
  });
}

test("kill -9 of the active MDM under fio verify across namespaces: a standby answers the SDSs within 3 s, no IO error, term up, mapVersion never back", async () => {
  const { host: old, role } = await c.leader();
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 48, rateIops: 600 }), { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  const t0 = performance.now();
  const argv = c.killRole(old, "mdm");
  const next = await leaderOther(old, role.term, 10_000);
  const leaderAt = performance.now();
  const answered = await waitFor("an SDS heartbeat answered after the kill", 10_000, async () => c.dataLines(/sds \w+: MDM reachable again/).find((l) => l.atMs > t0) ?? null);
  const result = await writing;
  process.stderr.write(`netns: kill -9 of ${old} -> ${next.host} leads ${Math.round(leaderAt - t0)} ms, first SDS heartbeat answered (${answered.host}) ${Math.round(answered.atMs - t0)} ms; term ${role.term} -> ${next.role.term}\n`);
  expect(answered.atMs - t0).toBeLessThan(TAKEOVER_LIMIT_MS);
  expect(next.role.term).toBeGreaterThan(role.term);
  expect(next.role.mapVersion).toBeGreaterThanOrEqual(role.mapVersion);
  expect(result.json.jobs[0]!.error).toBe(0);
  expect(c.dataLines(/map version went back/)).toEqual([]);
  // the killed MDM comes back (in its namespace) as a standby of the new term
  c.restartRole(old, "mdm", argv);
  await c.waitRole(old, (r) => r.role === "standby" && r.term === next.role.term, 30_000);
}, 120_000);

test("then kill -9 of an SDS: the new active MDM rebuilds it and every block verifies", async () => {
  const { host: active, role } = await c.leader();
  const job = verifyJob(c.nbdUri("vol1"), { sizeMiB: 48 });
  c.killRole("d3", "sds sds3");
  await waitFor("sds3 to be declared Disconnected", 20_000, async () => {
    const r = await scli(["--query_sds", "--sds_name", "sds3", "--json"]);
    return r.code === 0 && r.stdout.includes("Disconnected");
  });
  await waitPoolHealthy(scli, 90_000);
  // the same MDM (term) led the whole rebuild
  const after = await c.role(active);
  expect(after?.role).toBe("leader");
  expect(after?.term).toBe(role.term);
  await expectIdentical(scli, "vol1");
  const verify = await runFio([...job, "--verify_only"], { timeoutMs: 120_000 });
  expect(verify.json.jobs[0]!.error).toBe(0);
}, 150_000);

test("the active MDM's etcd link cut (data link up): it stops acting before the new active starts; each SDS takes the new term once, after it began, and no old-term answer after", async () => {
  const { host: cut, role: before } = await c.leader();
  await Bun.sleep(1500); // every SDS and the SDC on a steady heartbeat of this term
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 32, rateIops: 400 }), { timeoutMs: 120_000 });
  await Bun.sleep(1000);
  const cutAt = performance.now();
  const lag = loopLag();
  net!.cut(cut, "etcd");
  let healed = false;
  try {
    const next = await leaderOther(cut, before.term, 20_000);
    const result = await writing;
    expect(result.json.jobs[0]!.error).toBe(0);
    // the cut MDM's own log says when it stopped acting; the new one's when it began
    const stepDown = c.mdmLines(cut, new RegExp(`steps down from term ${before.term}\\b`)).find((l) => l.atMs > cutAt);
    const active = c.mdmLines(next.host, new RegExp(`is the active MDM, term ${next.role.term}\\b`)).find((l) => l.atMs > cutAt);
    expect(stepDown).toBeDefined();
    expect(active).toBeDefined();
    expect(stepDown!.atMs).toBeLessThan(active!.atMs);
    // SDS logs: one move old term -> new term per live SDS, none before the new MDM began
    const moves = c.dataLines(new RegExp(`sds \\w+: MDM term ${before.term} -> ${next.role.term}\\b`)).filter((l) => l.atMs > cutAt);
    const bySds = new Map<string, number>();
    for (const m of moves) bySds.set(m.host, (bySds.get(m.host) ?? 0) + 1);
    expect([...bySds.keys()].sort()).toEqual(["d1", "d2"]); // sds3 is dead since the previous test
    for (const n of bySds.values()) expect(n).toBe(1);
    // a line is stamped when this process reads it from its role's pipe: 50 ms, plus however late
    // this process's own loop ran meanwhile (a loaded host reads one pipe's older line after
    // another's newer one by that much)
    const slackMs = 50 + lag.stop();
    for (const m of moves) expect(m.atMs).toBeGreaterThanOrEqual(active!.atMs - slackMs);
    // any other term move after the cut (the SDS going back, or skipping to a third term) would be a second term
    expect(c.dataLines(/sds \w+: MDM term \d+ -> \d+/).filter((l) => l.atMs > cutAt).length).toBe(moves.length);
    expect(c.dataLines(/refused an answer of MDM/).filter((l) => l.atMs > cutAt)).toEqual([]);
    expect(c.dataLines(/map version went back/)).toEqual([]);
    const gaps = moves.map((m) => Math.round(m.atMs - stepDown!.atMs));
    process.stderr.write(
      `netns partition of ${cut} from etcd: stopped acting ${Math.round(stepDown!.atMs - cutAt)} ms after the cut; ${next.host} active ${Math.round(active!.atMs - cutAt)} ms after it ` +
        `(gap ${Math.round(active!.atMs - stepDown!.atMs)} ms); SDS term moves ${before.term} -> ${next.role.term}: ${moves.length}, ${gaps.join("/")} ms after the old MDM stopped (stamp slack ${slackMs} ms); fio errors 0\n`,
    );
    // healed: the cut MDM follows again as a standby of the new term
    net!.heal(cut, "etcd");
    healed = true;
    await c.waitRole(cut, (r) => r.role === "standby" && r.term === next.role.term, 30_000);
  } finally {
    lag.stop();
    if (!healed) net!.heal(cut, "etcd");
  }
}, 150_000);
