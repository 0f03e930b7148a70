// Data-path benchmark: pf (one-host cluster from the compiled binary: 1 MDM, 3 SDSs, 1 SDC, two
// copies) in write-back and writeThrough against nbdkit's file plugin (one copy) plain and with
// `--filter=fua fuamode=force` (every write durable at its reply), all in ONE run and
// interleaved: every round runs each job on every variant in turn (A B C D, A B C D, ...), so the
// other load on a shared machine hits all of them alike. Prints the median and the spread
// (min-max) of every cell, the ratios, and CPU microseconds per IO per process (from
// /proc/<pid>/stat), which moves far less with that load than throughput does.
//
// Run: npm run bench   (= npm run build && npx bun bench/pf.ts)
// Env: BENCH_SECONDS (default 10) per fio run; BENCH_ROUNDS (default 3); BENCH_SIZE (default 1GiB);
//      BENCH_JOBS (comma list of job keys to run, default all: qd16,qd1,qd1flush,read,read1,seq,role);
//      BENCH_VARIANTS (comma list of pfWb,pfWt,nbdkit,nbdkitFua; default all).
//
// pf's writeThrough runs on the same volume: the pool is switched with the REST action
// StoragePool setWriteCache before those runs (and back), and the bench waits until every SDS
// reports the pool's mode in its /status.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { TestCluster, freePort } from "../test/helpers/cluster.ts";
import { run, runFio, type FioResult } from "../test/helpers/real_clients.ts";
import { CpuSampler, median } from "./proc_cpu.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const size = process.env.BENCH_SIZE ?? "1GiB";
const sizeBytes = parseSize(size);
const onlyJobs = process.env.BENCH_JOBS?.split(",");
const onlyVariants = process.env.BENCH_VARIANTS?.split(",");

type VariantKey = "pfWb" | "pfWt" | "nbdkit" | "nbdkitFua";
const VARIANT_LABEL: Record<VariantKey, string> = {
  pfWb: "pf write-back",
  pfWt: "pf writeThrough",
  nbdkit: "nbdkit file",
  nbdkitFua: "nbdkit file + fua",
};
const ALL_VARIANTS: VariantKey[] = ["pfWb", "nbdkit", "pfWt", "nbdkitFua"];

interface Job {
  key: string;
  name: string;
  args: string[];
  metric: "iops" | "bw";
  latency?: boolean;
  variants: VariantKey[];
  /** run on the single-extent volume (one primary, one secondary: CPU per role) */
  oneExtent?: boolean;
}

const JOBS: Job[] = [
  { key: "qd16", name: "4k randwrite QD16", args: ["--rw=randwrite", "--bs=4k", "--iodepth=16"], metric: "iops", variants: ALL_VARIANTS },
  { key: "qd1", name: "4k randwrite QD1", args: ["--rw=randwrite", "--bs=4k", "--iodepth=1"], metric: "iops", latency: true, variants: ALL_VARIANTS },
  {
    key: "qd1flush",
    name: "4k randwrite QD1 + FLUSH each",
    args: ["--rw=randwrite", "--bs=4k", "--iodepth=1", "--fsync=1"],
    metric: "iops",
    latency: true,
    variants: ALL_VARIANTS,
  },
  { key: "read", name: "4k randread QD16", args: ["--rw=randread", "--bs=4k", "--iodepth=16"], metric: "iops", variants: ["pfWb", "nbdkit"] },
  // the read path's latency: fio -> SDC -> SDS -> SDC -> fio (4 hops) against nbdkit's 2
  { key: "read1", name: "4k randread QD1", args: ["--rw=randread", "--bs=4k", "--iodepth=1"], metric: "iops", latency: true, variants: ["pfWb", "nbdkit"] },
  { key: "seq", name: "1M seq write QD8", args: ["--rw=write", "--bs=1M", "--iodepth=8"], metric: "bw", variants: ALL_VARIANTS },
  {
    key: "role",
    name: "4k randwrite QD16, one extent (CPU per role)",
    args: ["--rw=randwrite", "--bs=4k", "--iodepth=16"],
    metric: "iops",
    variants: ["pfWb", "pfWt"],
    oneExtent: true,
  },
];

interface Sample {
  iops: number;
  bw: number;
  p50us: number;
  p99us: number;
  ios: number;
  /** CPU seconds per process name over the run */
  cpu: Map<string, number>;
  /** device fdatasyncs of all SDSs over the run (group commit counters in /status); NaN for nbdkit */
  devSyncs: number;
  /** fio's own CPU seconds */
  fioCpu: number;
}

interface JobSide {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  /** total latency (submission + completion: --lat_percentiles=1) */
  lat_ns?: { percentile?: Record<string, number> };
}
interface JobJson {
  read: JobSide;
  write: JobSide;
  sync?: { total_ios?: number; lat_ns?: { percentile?: Record<string, number> } };
  usr_cpu: number;
  sys_cpu: number;
  job_runtime: number;
}

function parseSize(s: string): number {
  const m = /^(\d+)(KiB|MiB|GiB)?$/.exec(s);
  if (!m) throw new Error(`BENCH_SIZE ${s}: use e.g. 1GiB`);
  const mult = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2] as "KiB" | "MiB" | "GiB"] ?? 1;
  return Number(m[1]) * mult;
}

function figuresOf(f: FioResult): Omit<Sample, "cpu" | "devSyncs"> {
  const j = f.json.jobs[0] as unknown as JobJson;
  const side = j.write.iops > 0 ? j.write : j.read;
  const pct = side.lat_ns?.percentile ?? {};
  const fioCpu = ((j.usr_cpu + j.sys_cpu) / 100) * (j.job_runtime / 1000);
  return { iops: side.iops, bw: side.bw_bytes, p50us: (pct["50.000000"] ?? 0) / 1000, p99us: (pct["99.000000"] ?? 0) / 1000, ios: side.total_ios, fioCpu };
}

/** The MDM REST API as the operator's tools use it (login, then the token as basic-auth password). */
class Rest {
  private token = "";
  private ca = "";
  constructor(private readonly c: TestCluster) {}

  async login(): Promise<void> {
    this.ca = await Bun.file(this.c.caFile).text();
    this.token = (await this.call("GET", "/api/login", undefined, "admin:test-admin-pw")) as string;
  }

  async call(method: string, path: string, body?: unknown, basic = `:${this.token}`): Promise<unknown> {
    const res = await fetch(this.c.mdmUrl + path, {
      method,
      headers: { authorization: `Basic ${Buffer.from(basic).toString("base64")}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      tls: { ca: this.ca },
    } as RequestInit);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return text.length === 0 ? null : JSON.parse(text);
  }
}

class Bench {
  private mode: "writeBack" | "writeThrough" | null = null;
  private poolId = "";
  constructor(
    private readonly c: TestCluster,
    private readonly rest: Rest,
    private readonly nbdkitPids: Record<"nbdkit" | "nbdkitFua", number>,
    private readonly uris: Record<VariantKey, string>,
    private readonly oneUri: string,
  ) {}

  async init(): Promise<void> {
    this.poolId = (await this.rest.call("POST", "/api/types/StoragePool/instances/action/queryIdByKey", { name: "sp1" })) as string;
  }

  /** Switch the pool live and wait until every SDS serves in that mode. */
  async setMode(mode: "writeBack" | "writeThrough"): Promise<void> {
    if (this.mode === mode) return;
    try {
      await this.rest.call("POST", `/api/instances/StoragePool::${this.poolId}/action/setWriteCache`, { writeCache: mode });
    } catch (e) {
      // a build from before writeCache is always write-back
      if (mode === "writeBack") {
        this.mode = mode;
        return;
      }
      throw e;
    }
    const deadline = performance.now() + 15_000;
    for (;;) {
      let all = true;
      for (let i = 0; i < 3; i++) {
        const st = (await (await fetch(`${this.c.sdsControlUrl(i)}/status`)).json()) as { writeCache?: { writeThroughExtents: number; extents: number } };
        const wc = st.writeCache;
        if (wc === undefined) throw new Error("the SDS /status has no writeCache figures: is this build older than writeThrough?");
        const want = mode === "writeThrough" ? wc.extents : 0;
        if (wc.writeThroughExtents !== want) all = false;
      }
      if (all) break;
      if (performance.now() > deadline) throw new Error(`SDSs did not switch to ${mode} within 15 s`);
      await Bun.sleep(100);
    }
    this.mode = mode;
  }

  private pids(v: VariantKey): Map<string, number> {
    if (v === "nbdkit" || v === "nbdkitFua") return new Map([["nbdkit", this.nbdkitPids[v]]]);
    return new Map([
      ["sdc", this.c.pidOf("sdc")],
      ["sds1", this.c.pidOf("sds sds1")],
      ["sds2", this.c.pidOf("sds sds2")],
      ["sds3", this.c.pidOf("sds sds3")],
      ["mdm", this.c.pidOf("mdm")],
    ]);
  }

  async runOne(job: Job, v: VariantKey): Promise<Sample> {
    if (v === "pfWb") await this.setMode("writeBack");
    if (v === "pfWt") await this.setMode("writeThrough");
    const uri = job.oneExtent ? this.oneUri : this.uris[v];
    const jobSize = job.oneExtent ? "64MiB" : size;
    const isPf = v === "pfWb" || v === "pfWt";
    const syncs0 = isPf ? await this.deviceSyncs() : Number.NaN;
    const sampler = new CpuSampler(this.pids(v));
    sampler.start();
    // p50/p99 of the total latency: with the nbd engine, completion latency (clat) leaves out the
    // submission (the request's send: 8-16 µs of nbdkit's 36 µs p50 at QD1) and dropped to a few
    // µs whenever the reply was in before fio looked
    const f = await runFio(["--name=b", "--ioengine=nbd", `--uri=${uri}`, ...job.args, `--runtime=${seconds}`, "--time_based", `--size=${jobSize}`, "--randrepeat=0", "--lat_percentiles=1"], {
      timeoutMs: (seconds + 60) * 1000,
    });
    const cpu = sampler.stop();
    const devSyncs = isPf ? (await this.deviceSyncs()) - syncs0 : Number.NaN;
    return { ...figuresOf(f), cpu, devSyncs };
  }

  /** fdatasyncs of every device of every SDS so far */
  private async deviceSyncs(): Promise<number> {
    let n = 0;
    for (let i = 0; i < 3; i++) {
      const st = (await (await fetch(`${this.c.sdsControlUrl(i)}/status`)).json()) as { writeCache?: { groupCommit?: { devices: { syncs: number }[] } } };
      for (const d of st.writeCache?.groupCommit?.devices ?? []) n += d.syncs;
    }
    return n;
  }
}

// ---- formatting ----

const fmtInt = (x: number) => Math.round(x).toLocaleString("en");
function spread(xs: number[], fmt: (x: number) => string): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return xs.length > 1 ? `${fmt(median(xs))} (${fmt(lo)}–${fmt(hi)})` : fmt(median(xs));
}
function cell(job: Job, s: Sample[] | undefined): string {
  if (s === undefined || s.length === 0) return "—";
  if (job.metric === "bw") return `${spread(s.map((x) => x.bw / 1e6), (x) => x.toFixed(0))} MB/s`;
  const iops = spread(s.map((x) => x.iops), fmtInt);
  return job.latency ? `${iops} · p50 ${median(s.map((x) => x.p50us)).toFixed(0)} µs` : iops;
}
function value(job: Job, s: Sample[] | undefined): number {
  if (s === undefined || s.length === 0) return Number.NaN;
  return median(s.map((x) => (job.metric === "bw" ? x.bw : x.iops)));
}
function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : "—";
}
/** Median CPU µs per IO of one process name over the samples. */
function cpuPerIo(s: Sample[], name: string): number {
  return median(s.map((x) => (1e6 * (x.cpu.get(name) ?? Number.NaN)) / x.ios));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pf-bench-"));
  const cluster = await TestCluster.create({
    deviceSize: "1GiB",
    extentSize: "64MiB",
    granularity: "64MiB",
    volumes: [
      { name: "bench", size },
      { name: "one", size: "64MiB" },
    ],
  });
  const img = join(dir, "ref.img");
  await run(["fallocate", "-l", String(sizeBytes), img]);
  const ports = { nbdkit: await freePort(), nbdkitFua: await freePort() };
  const procs: Subprocess[] = [
    Bun.spawn(["nbdkit", "-f", "-p", String(ports.nbdkit), "-i", "127.0.0.1", "file", img], { stdout: "ignore", stderr: "inherit" }),
    Bun.spawn(["nbdkit", "-f", "-p", String(ports.nbdkitFua), "-i", "127.0.0.1", "--filter=fua", "file", img, "fuamode=force"], { stdout: "ignore", stderr: "inherit" }),
  ];
  try {
    await cluster.start();
    const rest = new Rest(cluster);
    await rest.login();
    const pfUri = cluster.nbdUri("bench");
    const uris: Record<VariantKey, string> = {
      pfWb: pfUri,
      pfWt: pfUri,
      nbdkit: `nbd://127.0.0.1:${ports.nbdkit}/`,
      nbdkitFua: `nbd://127.0.0.1:${ports.nbdkitFua}/`,
    };
    const bench = new Bench(cluster, rest, { nbdkit: procs[0]!.pid, nbdkitFua: procs[1]!.pid }, uris, cluster.nbdUri("one"));
    await bench.init();
    await bench.setMode("writeBack");
    // fill both once so reads hit written data and no write pays a first allocation
    for (const [uri, sz] of [
      [pfUri, size],
      [cluster.nbdUri("one"), "64MiB"],
      [uris.nbdkit, size],
    ] as const) {
      await runFio(["--name=fill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${sz}`], { timeoutMs: 600_000 });
    }
    const jobs = JOBS.filter((j) => onlyJobs === undefined || onlyJobs.includes(j.key));
    const results = new Map<string, Map<VariantKey, Sample[]>>();
    for (const j of jobs) results.set(j.key, new Map());
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      for (const job of jobs) {
        for (const v of job.variants) {
          if (onlyVariants !== undefined && !onlyVariants.includes(v)) continue;
          const s = await bench.runOne(job, v);
          const m = results.get(job.key)!;
          m.set(v, [...(m.get(v) ?? []), s]);
          process.stderr.write(
            `[round ${r + 1}/${rounds}, ${((performance.now() - t0) / 1000).toFixed(0)} s] ${job.name} ${VARIANT_LABEL[v]}: ` +
              `${job.metric === "bw" ? `${(s.bw / 1e6).toFixed(0)} MB/s` : `${fmtInt(s.iops)} IOPS`} p50 ${s.p50us.toFixed(0)} µs ` +
              `cpu µs/IO ${[...s.cpu].map(([n, c]) => `${n} ${((1e6 * c) / s.ios).toFixed(0)}`).join(" ")}` +
              (Number.isFinite(s.devSyncs) ? `; device fdatasyncs per IO (all copies) ${(s.devSyncs / s.ios).toFixed(2)}` : "") +
              "\n",
          );
        }
      }
    }
    await bench.setMode("writeBack");
    printTables(jobs, results);
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function printTables(jobs: Job[], results: Map<string, Map<VariantKey, Sample[]>>): void {
  const out: string[] = [];
  out.push(`${rounds} round(s), ${seconds} s per fio run, interleaved; cells: median (min–max) over the rounds`);
  out.push("");
  out.push("| job | pf write-back | pf writeThrough | nbdkit file | nbdkit file + fua | wb / nbdkit | wt / nbdkit+fua | wt / nbdkit |");
  out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const job of jobs) {
    if (job.oneExtent) continue;
    const m = results.get(job.key)!;
    const v = (k: VariantKey) => value(job, m.get(k));
    out.push(
      `| ${job.name} | ${cell(job, m.get("pfWb"))} | ${cell(job, m.get("pfWt"))} | ${cell(job, m.get("nbdkit"))} | ${cell(job, m.get("nbdkitFua"))} | ` +
        `${ratio(v("pfWb"), v("nbdkit"))} | ${ratio(v("pfWt"), v("nbdkitFua"))} | ${ratio(v("pfWt"), v("nbdkit"))} |`,
    );
  }
  for (const [key, what] of [["qd1", "write"], ["read1", "read"]] as const) {
    const byVariant = results.get(key);
    if (byVariant === undefined) continue;
    const p50 = (k: VariantKey) => median((byVariant.get(k) ?? []).map((x) => x.p50us));
    out.push("");
    out.push(`QD1 ${what} p50: pf write-back ${p50("pfWb").toFixed(0)} µs, nbdkit ${p50("nbdkit").toFixed(0)} µs: ${ratio(p50("pfWb"), p50("nbdkit"))}x`);
  }
  out.push("");
  out.push("CPU µs per IO (median over the rounds; SDS = the three SDSs together; fio = the client itself):");
  out.push("");
  out.push("| job | variant | SDC | SDSs | MDM | nbdkit | fio | device fdatasyncs per IO (all copies) |");
  out.push("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const job of jobs) {
    if (job.oneExtent) continue;
    const m = results.get(job.key)!;
    for (const [k, s] of m) {
      const sds = median(s.map((x) => (1e6 * ((x.cpu.get("sds1") ?? 0) + (x.cpu.get("sds2") ?? 0) + (x.cpu.get("sds3") ?? 0))) / x.ios));
      const isPf = k === "pfWb" || k === "pfWt";
      const f = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "—");
      out.push(
        `| ${job.name} | ${VARIANT_LABEL[k]} | ${isPf ? f(cpuPerIo(s, "sdc")) : "—"} | ${isPf ? f(sds) : "—"} | ${isPf ? f(cpuPerIo(s, "mdm")) : "—"} | ` +
          `${isPf ? "—" : f(cpuPerIo(s, "nbdkit"))} | ${f(median(s.map((x) => (1e6 * x.fioCpu) / x.ios)))} | ` +
          `${isPf ? median(s.map((x) => x.devSyncs / x.ios)).toFixed(2) : "—"} |`,
      );
    }
  }
  const role = results.get("role");
  if (role !== undefined) {
    out.push("");
    out.push("CPU µs per 4 KiB write by role (one-extent volume, QD16: the busiest SDS is its primary, the next its secondary):");
    out.push("");
    out.push("| variant | IOPS | SDC | primary SDS | secondary SDS | idle SDS |");
    out.push("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (const [k, s] of role) {
      const byRank = [0, 1, 2].map((rank) =>
        median(
          s.map((x) => {
            const sds = ["sds1", "sds2", "sds3"].map((n) => x.cpu.get(n) ?? 0).sort((a, b) => b - a);
            return (1e6 * sds[rank]!) / x.ios;
          }),
        ),
      );
      out.push(`| ${VARIANT_LABEL[k]} | ${fmtInt(median(s.map((x) => x.iops)))} | ${cpuPerIo(s, "sdc").toFixed(1)} | ${byRank[0]!.toFixed(1)} | ${byRank[1]!.toFixed(1)} | ${byRank[2]!.toFixed(1)} |`);
    }
  }
  process.stdout.write("\n" + out.join("\n") + "\n");
}

await main();
