// HA figures (docs/design.md "MDM high availability"): on one HA cluster from one YAML (3 etcd
// members, 3 MDM hosts on 127.0.0.11..13, 3 SDSs + SDC on 127.0.0.1; test/helpers/ha_cluster.ts):
// takeover time over N kill -9 of the active MDM (kill -> first SDS heartbeat answered), the
// longest IO stall fio sees across a kill, etcd commits per second at steady state (idle and
// under fio) and during a rebuild, and REST volume-create latency in HA mode vs sqlite mode
// (in process, no HTTP: the MDM's logic plus the commit). Run: npx bun bench/mdm_ha.ts [kills]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HaCluster, ADMIN_PASSWORD, type MdmHost } from "../test/helpers/ha_cluster.ts";
import { EtcdCluster, openMdmOnEtcd } from "../test/helpers/etcd.ts";
import { runFio } from "../test/helpers/real_clients.ts";
import { verifyJob, waitPoolHealthy } from "../test/helpers/recovery.ts";
import { MdmFixture } from "../test/mdm_fixture.ts";

const kills = Number(process.argv[2] ?? "10");
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;

async function commitsPerSecond(c: HaCluster, windowMs: number): Promise<number> {
  const a = await c.leader();
  await Bun.sleep(windowMs);
  const b = await c.role(a.host);
  return ((b!.stats.txns - a.role.stats.txns) * 1000) / windowMs;
}

async function killOnce(c: HaCluster): Promise<number> {
  const { host } = await c.leader();
  const t0 = performance.now();
  const argv = c.killRole(host, "mdm");
  let answeredAt = 0;
  while (answeredAt === 0) {
    answeredAt = c.linesOf("data", /MDM reachable again/).find((l) => l.atMs > t0)?.atMs ?? 0;
    await Bun.sleep(10);
  }
  c.restartRole(host, "mdm", argv);
  await c.waitRole(host as MdmHost, (r) => r.role === "standby", 20_000);
  await Bun.sleep(1500);
  return answeredAt - t0;
}

async function restCreate(kind: "sqlite" | "etcd", n: number): Promise<{ p50: number; p99: number }> {
  const etcd = kind === "etcd" ? await EtcdCluster.start(3) : null;
  const dir = mkdtempSync(join(tmpdir(), "pf-bench-"));
  const m = etcd ? await openMdmOnEtcd(dir, etcd, { cluster: "bench", mdmId: "b1", name: "b1", url: "https://127.0.0.1:1" }) : await MdmFixture.open({ dir });
  await m.login();
  await m.joinSds("sds1");
  await m.joinSds("sds2");
  const poolId = await m.idOf("StoragePool", "sp1");
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: "1048576", volumeType: "ThinProvisioned", name: `v${i}` });
    ms.push(performance.now() - t);
    if (r.status !== 200) throw new Error(r.text);
  }
  await m.closeAll();
  rmSync(dir, { recursive: true, force: true });
  await etcd?.stop();
  return { p50: pct(ms, 0.5), p99: pct(ms, 0.99) };
}

const c = await HaCluster.create({ etcdMembers: 3, heartbeatTimeout: "5s", rebuildGrace: "4s", volumeSize: "256MiB" });
try {
  await c.start();
  await c.scli(["--login", "--username", "admin", "--password", ADMIN_PASSWORD]);
  await Bun.sleep(2000);
  const idle = await commitsPerSecond(c, 5000);
  const fio = runFio([...verifyJob(c.nbdUri("vol1"), { sizeMiB: 128, rateIops: 1000 }), "--time_based", "--runtime=12"], { timeoutMs: 120_000 });
  await Bun.sleep(1000);
  const busy = await commitsPerSecond(c, 4000);
  const stall = await killOnce(c);
  const f = await fio;
  const write = f.json.jobs[0]!.write as unknown as { lat_ns?: { max?: number } };
  const maxLatMs = Number(write.lat_ns?.max ?? 0) / 1e6;
  const times = [stall];
  for (let i = 1; i < kills; i++) times.push(await killOnce(c));
  c.killRole("data", "sds sds3");
  await Bun.sleep(9500); // timeout + grace: the rebuild starts
  const rebuilding = await commitsPerSecond(c, 4000);
  await waitPoolHealthy((a) => c.scli(a), 120_000);
  const sqliteCreate = await restCreate("sqlite", 200);
  const etcdCreate = await restCreate("etcd", 200);
  const r = Math.round;
  process.stdout.write(
    [
      `takeover (kill -9 -> first SDS heartbeat answered) over ${times.length} kills: p50 ${r(pct(times, 0.5))} ms, max ${r(Math.max(...times))} ms`,
      `longest fio IO (write lat max) across a kill under 1000 IOPS: ${r(maxLatMs)} ms, errors ${f.json.jobs[0]!.error}`,
      `etcd commits/s: idle ${idle.toFixed(1)}, under fio ${busy.toFixed(1)}, during a rebuild ${rebuilding.toFixed(1)}`,
      `REST volume create (in process): sqlite p50 ${sqliteCreate.p50.toFixed(2)} ms p99 ${sqliteCreate.p99.toFixed(2)} ms; etcd (3 members, --unsafe-no-fsync) p50 ${etcdCreate.p50.toFixed(2)} ms p99 ${etcdCreate.p99.toFixed(2)} ms`,
      "",
    ].join("\n"),
  );
} finally {
  await c.destroy();
}
