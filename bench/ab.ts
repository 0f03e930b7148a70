// A/B of two pf builds in one run: a one-host cluster from each (A = AB_BIN_A, e.g. the build
// before a change; B = dist/pf), each job run on both, several rounds (A B, B A, A B ...). Volumes:
// "one" (64 MiB, one extent: CPU per role is unambiguous: the busiest SDS is its primary, the next
// its secondary) and, with AB_BIG=1, "big" (1 GiB, 16 extents over 3 SDSs). Prints median and
// spread of IOPS (or MB/s) and CPU µs per IO per role for both, the ratio of the medians and the
// median of each round's B/A ("paired"; the builds swap order every round).
//
// Run: git worktree/stash the old build to e.g. /tmp/pf-a, then npx bun bench/ab.ts
// Env: AB_BIN_A (required), AB_BIN_B (default dist/pf), AB_ROUNDS (3), AB_SECONDS (8),
//      AB_JOBS ("qd16,qd1,read,seq", see JOBS; a job prefixed "wt:" runs with the pool in
//      writeThrough, "wb:" in writeBack, else AB_WRITE_CACHE), AB_WRITE_CACHE (writeBack|writeThrough),
//      AB_ENV_A / AB_ENV_B ("K=V,K=V": environment of that cluster's processes, e.g. one build
//      with and without PF_GROUP_COMMIT_MAX_SYNCS=2).
// Also printed per job: fdatasyncs per IO (device and metadata WAL, from the SDSs' /status group
// commit counters) of the primary and the secondary, so "how many syncs per durable write" is
// measured, not guessed.

import { TestCluster, PF_BIN } from "../test/helpers/cluster.ts";
import { runFio } from "../test/helpers/real_clients.ts";
import { CpuSampler, median } from "./proc_cpu.ts";

const binA = process.env.AB_BIN_A;
if (!binA) throw new Error("set AB_BIN_A to the build to compare against");
const binB = process.env.AB_BIN_B ?? PF_BIN;
const rounds = Number(process.env.AB_ROUNDS ?? 3);
const seconds = Number(process.env.AB_SECONDS ?? 8);
const mode = process.env.AB_WRITE_CACHE ?? "writeBack";
const volume = process.env.AB_BIG === "1" ? "big" : "one";
const volSize = volume === "big" ? "1GiB" : "64MiB";

const JOBS: Record<string, { args: string[]; bw?: boolean }> = {
  qd16: { args: ["--rw=randwrite", "--bs=4k", "--iodepth=16"] },
  qd1: { args: ["--rw=randwrite", "--bs=4k", "--iodepth=1"] },
  qd1flush: { args: ["--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"] },
  read: { args: ["--rw=randread", "--bs=4k", "--iodepth=16"] },
  read1: { args: ["--rw=randread", "--bs=4k", "--iodepth=1"] },
  seq: { args: ["--rw=write", "--bs=1M", "--iodepth=8"], bw: true },
};
const jobs = (process.env.AB_JOBS ?? "qd16,qd1,read,seq").split(",");

interface Sample {
  value: number;
  p50us: number;
  sdc: number;
  primary: number;
  secondary: number;
  /** device fdatasyncs per IO on the primary / the secondary (the two busiest SDSs) */
  devSyncsP: number;
  devSyncsS: number;
  /** metadata WAL fdatasyncs per IO, all SDSs */
  walSyncs: number;
  /** mean device sync time (start to completion on the event loop, µs) on the primary / the secondary */
  syncUsP: number;
  syncUsS: number;
}

type WriteCache = "writeBack" | "writeThrough";
const modeOf = new Map<TestCluster, WriteCache>();

interface CommitStats {
  syncs: number;
  syncUs?: number;
}
/** Per SDS: device syncs (all devices), their summed wall time (µs) and WAL syncs so far. */
async function syncCounts(c: TestCluster): Promise<{ dev: number; devUs: number; wal: number }[]> {
  const out: { dev: number; devUs: number; wal: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as {
      writeCache?: { groupCommit?: { devices: CommitStats[]; metadata: CommitStats } };
    };
    const gc = st.writeCache?.groupCommit;
    out.push({
      dev: gc?.devices.reduce((a, d) => a + d.syncs, 0) ?? Number.NaN,
      devUs: gc?.devices.reduce((a, d) => a + (d.syncUs ?? Number.NaN), 0) ?? Number.NaN,
      wal: gc?.metadata.syncs ?? Number.NaN,
    });
  }
  return out;
}

/** Switch the pool and wait until every SDS serves in that mode. */
async function setMode(c: TestCluster, want: WriteCache): Promise<void> {
  if ((modeOf.get(c) ?? "writeBack") === want) return;
  const r = await c.scli(["--set_storage_pool_write_cache", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--write_cache", want]);
  if (r.code !== 0) throw new Error(r.stderr);
  const deadline = performance.now() + 15_000;
  for (;;) {
    let all = true;
    for (let i = 0; i < 3; i++) {
      const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { writeCache?: { writeThroughExtents: number; extents: number } };
      const wc = st.writeCache;
      if (wc === undefined) throw new Error("this build's SDS /status has no writeCache");
      if (wc.writeThroughExtents !== (want === "writeThrough" ? wc.extents : 0)) all = false;
    }
    if (all) break;
    if (performance.now() > deadline) throw new Error(`SDSs did not switch to ${want} within 15 s`);
    await Bun.sleep(100);
  }
  modeOf.set(c, want);
}

function envOf(spec: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (spec ?? "").split(",")) {
    const i = kv.indexOf("=");
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

async function startCluster(bin: string, env: Record<string, string>): Promise<TestCluster> {
  const c = await TestCluster.create({ bin, env, deviceSize: "1536MiB", extentSize: "64MiB", granularity: "64MiB", volumes: [{ name: volume, size: volSize }] });
  await c.start();
  await c.login();
  await setMode(c, mode as WriteCache);
  await runFio(["--name=fill", "--ioengine=nbd", `--uri=${c.nbdUri(volume)}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${volSize}`], { timeoutMs: 600_000 });
  return c;
}

async function runJob(c: TestCluster, key: string): Promise<Sample> {
  const prefix = /^(wt|wb):/.exec(key)?.[1];
  await setMode(c, prefix === "wt" ? "writeThrough" : prefix === "wb" ? "writeBack" : (mode as WriteCache));
  const job = JOBS[key.replace(/^(wt|wb):/, "")]!;
  const pids = new Map([
    ["sdc", c.pidOf("sdc")],
    ["sds1", c.pidOf("sds sds1")],
    ["sds2", c.pidOf("sds sds2")],
    ["sds3", c.pidOf("sds sds3")],
  ]);
  const s = new CpuSampler(pids);
  const syncs0 = await syncCounts(c);
  s.start();
  // p50 of the total latency (submission + completion; bench/pf.ts says why not clat)
  const f = await runFio(["--name=ab", "--ioengine=nbd", `--uri=${c.nbdUri(volume)}`, ...job.args, `--runtime=${seconds}`, "--time_based", `--size=${volSize}`, "--randrepeat=0", "--lat_percentiles=1"], {
    timeoutMs: (seconds + 60) * 1000,
  });
  const cpu = s.stop();
  const syncs1 = await syncCounts(c);
  const j = f.json.jobs[0] as unknown as { read: { iops: number; bw_bytes: number; total_ios: number; lat_ns?: { percentile?: Record<string, number> } }; write: typeof j.read };
  const side = j.write.total_ios > 0 ? j.write : j.read;
  const per = (n: number) => (1e6 * n) / side.total_ios;
  const rank = [0, 1, 2].sort((x, y) => (cpu.get(`sds${y + 1}`) ?? 0) - (cpu.get(`sds${x + 1}`) ?? 0));
  const sds = rank.map((i) => cpu.get(`sds${i + 1}`) ?? 0);
  const devSyncs = (i: number) => (syncs1[i]!.dev - syncs0[i]!.dev) / side.total_ios;
  const syncUs = (i: number) => (syncs1[i]!.devUs - syncs0[i]!.devUs) / Math.max(1, syncs1[i]!.dev - syncs0[i]!.dev);
  let wal = 0;
  for (let i = 0; i < 3; i++) wal += syncs1[i]!.wal - syncs0[i]!.wal;
  return {
    devSyncsP: devSyncs(rank[0]!),
    devSyncsS: devSyncs(rank[1]!),
    walSyncs: wal / side.total_ios,
    syncUsP: syncUs(rank[0]!),
    syncUsS: syncUs(rank[1]!),
    value: job.bw ? side.bw_bytes / 1e6 : side.iops,
    p50us: (side.lat_ns?.percentile?.["50.000000"] ?? 0) / 1000,
    sdc: per(cpu.get("sdc") ?? 0),
    primary: per(sds[0]!),
    secondary: per(sds[1]!),
  };
}

function fmt(xs: number[], d = 0): string {
  return `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
}

async function main(): Promise<void> {
  const a = await startCluster(binA!, envOf(process.env.AB_ENV_A));
  const b = await startCluster(binB, envOf(process.env.AB_ENV_B));
  const res = new Map<string, { A: Sample[]; B: Sample[] }>();
  try {
    for (let r = 0; r < rounds; r++) {
      for (const key of jobs) {
        const e = res.get(key) ?? { A: [], B: [] };
        res.set(key, e);
        // A B in odd rounds, B A in even ones: a load that grows or fades during a round is not
        // always charged to the same build
        const order = r % 2 === 0 ? ([["A", a], ["B", b]] as const) : ([["B", b], ["A", a]] as const);
        for (const [label, c] of order) {
          const s = await runJob(c, key);
          e[label].push(s);
          process.stderr.write(`[round ${r + 1}] ${key} ${label}: ${s.value.toFixed(0)} p50 ${s.p50us.toFixed(0)} µs; CPU µs/IO SDC ${s.sdc.toFixed(1)} primary ${s.primary.toFixed(1)} secondary ${s.secondary.toFixed(1)}; syncs/IO dev P ${s.devSyncsP.toFixed(2)} S ${s.devSyncsS.toFixed(2)} WAL ${s.walSyncs.toFixed(3)}; sync µs P ${s.syncUsP.toFixed(0)} S ${s.syncUsS.toFixed(0)}\n`);
        }
      }
    }
  } finally {
    await a.destroy();
    await b.destroy();
  }
  const out = [
    `A = ${binA} ${process.env.AB_ENV_A ?? ""}, B = ${binB} ${process.env.AB_ENV_B ?? ""}; ${mode}; volume ${volume}; ${rounds} rounds x ${seconds} s, interleaved; median (min–max)`,
    "",
    "| job | build | IOPS or MB/s | p50 µs | SDC µs/IO | primary µs/IO | secondary µs/IO | dev syncs/IO P | S | WAL syncs/IO | sync µs P | S |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [key, e] of res) {
    for (const [label, ss] of [["A", e.A], ["B", e.B]] as const) {
      out.push(`| ${key} | ${label} | ${fmt(ss.map((s) => s.value))} | ${fmt(ss.map((s) => s.p50us))} | ${fmt(ss.map((s) => s.sdc), 1)} | ${fmt(ss.map((s) => s.primary), 1)} | ${fmt(ss.map((s) => s.secondary), 1)} | ${fmt(ss.map((s) => s.devSyncsP), 2)} | ${fmt(ss.map((s) => s.devSyncsS), 2)} | ${fmt(ss.map((s) => s.walSyncs), 3)} | ${fmt(ss.map((s) => s.syncUsP))} | ${fmt(ss.map((s) => s.syncUsS))} |`);
    }
    out.push(`| ${key} | B/A | ${(median(e.B.map((s) => s.value)) / median(e.A.map((s) => s.value))).toFixed(2)} | | ${(median(e.B.map((s) => s.sdc)) / median(e.A.map((s) => s.sdc))).toFixed(2)} | ${(median(e.B.map((s) => s.primary)) / median(e.A.map((s) => s.primary))).toFixed(2)} | ${(median(e.B.map((s) => s.secondary)) / median(e.A.map((s) => s.secondary))).toFixed(2)} |`);
    // each round's A and B ran back to back under about the same load: the median of their
    // ratios moves less with the load than the ratio of the medians
    const paired = (f: (s: Sample) => number) => median(e.B.map((sb, i) => f(sb) / f(e.A[i]!))).toFixed(2);
    out.push(`| ${key} | B/A paired | ${paired((s) => s.value)} | ${paired((s) => s.p50us)} | ${paired((s) => s.sdc)} | ${paired((s) => s.primary)} | ${paired((s) => s.secondary)} |`);
  }
  process.stdout.write("\n" + out.join("\n") + "\n");
}

await main();
