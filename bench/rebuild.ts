// Rebuild benchmark: a 4-SDS one-host cluster from the compiled binary (test/helpers/cluster.ts),
// 1 GiB written with fio, then kill -9 of one SDS and a timed rebuild of the copies it held onto
// the other three. Run twice: with the pool's rebuild rate limit (per SDS; default 50 MB/s) and
// unthrottled. Compared with (a) the limit: every SDS holding a surviving copy copies at most the
// limit, so the ceiling is limit x source SDSs (placement may pair the killed SDS with only a few
// others; the sources are read from its sds.db), (b) a plain `dd` copy of 1 GiB on the same disk
// measured in the same run, in 1 MiB blocks with an fdatasync per extent's worth (plainCopy), and (c) the client's fio 4k randwrite IOPS and p99 latency
// during the rebuild vs before the kill. Prints a table, then a second one of where a client write's
// time goes before and during the rebuild (from the surviving SDSs' /metrics and /proc: the SDS's
// receipt-to-reply of a client write, the secondary's and the copy target's apply, device pwrite and
// fdatasync, the copy read's share of the loop, CPU of SDSs and SDC, loop lag, the copy rate the
// throttles set: the tuner's pick under dynamicBwThrottling).
//
// Run: npm run build && npx bun bench/rebuild.ts
// Env: REBUILD_LIMIT_MBPS (default 50), CLIENT_QD (default 8), BASELINE_SECONDS (default 10),
// REBUILD_BENCH_LOG=1 (print the cluster's log lines about copies after each run), REBUILD_BENCH_TRACE=1
// (print every pool poll: state, active/pending/degraded extents, the pool's rate, and each source's
// rebuild throttle: rate, tuner verdict, baseline, last mean and ratio), REBUILD_BIN
// (another pf build, for an A/B), REBUILD_EXTENT (the pool's extent size, default 64MiB),
// REBUILD_POLICIES (comma list of throttled runs, each POLICY[:N] with N the copy IOs per device,
// e.g. "limitNumOfConcurrentIos:1,favorAppIos:2,dynamicBwThrottling"; default
// "limitNumOfConcurrentIos:4"; a build before the policies only applies their bandwidth),
// REBUILD_RUNS (repeat the whole set, default 1), REBUILD_DD_SYNC_MIB (the plain copy's fdatasync
// cadence, default the extent size). Every row prints the load average at its start and end.
//
// Rebuild time is measured from the first pool poll (every 100 ms) that shows the rebuild
// running (rebuildState Rebuilding with active extents) to the first that shows the pool healthy
// again; the bytes rebuilt are the chunks the killed SDS held (read from its sds.db after the
// kill). The MDM is told to start the rebuild quickly (heartbeatTimeout 2s, rebuildGrace 1s).

import { Database } from "bun:sqlite";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "../test/helpers/cluster.ts";
import { run, runFio, type FioResult } from "../test/helpers/real_clients.ts";

const MB = 1e6;
const MiB = 1024 * 1024;
const limitMBps = Number(process.env.REBUILD_LIMIT_MBPS ?? 50);
const clientQd = Number(process.env.CLIENT_QD ?? 8);
const baselineSeconds = Number(process.env.BASELINE_SECONDS ?? 10);
const SDS_COUNT = 4;
const KILLED = "sds2";

interface RebuildStatusView {
  storagePoolState: string;
  rebuildState: string;
  numOfActiveRebuildExtents: number;
  numOfDegradedExtents: number;
  numOfPendingRebuildExtents: number;
  rebuildRateInKbps: number;
}

interface ClientFigures {
  iops: number;
  p99us: number;
  meanUs: number;
}

/**
 * Where a client write's time goes, over one phase (before the kill / during the rebuild), from the
 * surviving SDSs' /metrics and /proc: CPU of the SDSs and the SDC (share of one core), the SDS's own
 * view of a client write (receipt to reply: local write + forwards), a forwarded write's local apply
 * on the secondary, a copy target's REBUILD_WRITE apply, the pwrite of the device, and the copy
 * source's synchronous chunk read (the loop is held for it: reads per second x mean = share of the
 * loop), and the worst event-loop lag of any SDS at the phase's end (last 5 s).
 */
interface PhaseFigures {
  seconds: number;
  sdsCpu: number;
  sdcCpu: number;
  primaryWriteUs: number;
  secondaryWriteUs: number;
  copyWriteUs: number;
  deviceWriteUs: number;
  copyReadUs: number;
  copyReadsPerSec: number;
  /** fdatasyncs of the devices (group commit, chunk zeroing): per second and mean */
  syncsPerSec: number;
  syncUs: number;
  /** share of one SDS loop held by copy reads: sum(copy read time) / (seconds x SDSs) */
  copyReadLoopShare: number;
  lagMs: number;
  /** copy-throttle rate per device the SDSs apply at the phase's end (MB/s, summed over sources) */
  copyRateMBps: number;
}

interface Row {
  label: string;
  limitBytesPerSec: number;
  /** SDSs that hold the surviving copies: each copies at most the limit */
  sources: number;
  /** the largest share of one source */
  maxPerSourceBytes: number;
  rebuiltBytes: number;
  seconds: number;
  fromKillSeconds: number;
  before: ClientFigures;
  during: ClientFigures;
  phaseBefore: PhaseFigures;
  phaseDuring: PhaseFigures;
  /** the copy rate the sources' rebuild throttles applied, summed over them, averaged over the rebuild (polled every 0.5 s) */
  meanCopyRateBps: number;
  load: string;
}

/** The MDM REST API as the operator's tools use it (login, then token as basic-auth password). */
class Rest {
  private token = "";
  constructor(private readonly c: TestCluster) {}

  async login(): Promise<void> {
    this.token = (await this.call("GET", "/api/login", undefined, `admin:test-admin-pw`)) as string;
  }

  async call(method: string, path: string, body?: unknown, basic = `:${this.token}`): Promise<unknown> {
    const res = await fetch(this.c.mdmUrl + path, {
      method,
      headers: { authorization: `Basic ${Buffer.from(basic).toString("base64")}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      tls: { ca: await Bun.file(this.c.caFile).text() },
    } as RequestInit);
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  }
}

function clientFigures(f: FioResult): ClientFigures {
  const w = f.json.jobs[0]!.write as unknown as { iops: number; clat_ns?: { mean?: number; percentile?: Record<string, number> } };
  return { iops: w.iops, p99us: (w.clat_ns?.percentile?.["99.000000"] ?? 0) / 1000, meanUs: (w.clat_ns?.mean ?? 0) / 1000 };
}

/** sum of every sample of `name` whose labels include all of `want` (Prometheus text) */
function promSum(text: string, name: string, want: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? ([-0-9.e+]+|NaN)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = m[3] ?? "";
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) sum += Number(m[4]);
  }
  return sum;
}

function cpuTicks(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  } catch {
    return 0;
  }
}

interface Probe {
  t: number;
  sdsTicks: number;
  sdcTicks: number;
  m: Record<string, number>;
  lagMs: number;
  rateBps: number;
}

const SERIES: [string, string, Record<string, string>][] = [
  ["pw", "pf_sds_io_latency_seconds", { role: "primary", op: "write" }],
  ["sw", "pf_sds_io_latency_seconds", { role: "secondary", op: "write" }],
  ["cw", "pf_sds_copy_latency_seconds", { op: "write" }],
  ["cr", "pf_sds_copy_latency_seconds", { op: "read" }],
  ["dw", "pf_device_io_latency_seconds", { op: "write" }],
  ["ds", "pf_device_sync_seconds", {}],
];

/** the rebuild throttles' rates (bytes/s) summed over the surviving SDSs */
async function copyRateOf(c: TestCluster, survivors: number[]): Promise<number> {
  let sum = 0;
  for (const i of survivors) {
    const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { copies?: { throttles?: { class: string; rateBytesPerSec: number }[] } };
    for (const t of st.copies?.throttles ?? []) if (t.class === "rebuild") sum += t.rateBytesPerSec;
  }
  return sum;
}

async function probe(c: TestCluster, survivors: number[]): Promise<Probe> {
  const m: Record<string, number> = {};
  let lagMs = 0;
  let rateBps = 0;
  let sdsTicks = 0;
  for (const i of survivors) {
    sdsTicks += cpuTicks(c.pidOf(`sds sds${i + 1}`));
    const text = await (await fetch(`${c.sdsControlUrl(i)}/metrics`)).text();
    for (const [k, name, want] of SERIES) {
      m[`${k}s`] = (m[`${k}s`] ?? 0) + promSum(text, `${name}_sum`, want);
      m[`${k}n`] = (m[`${k}n`] ?? 0) + promSum(text, `${name}_count`, want);
    }
    lagMs = Math.max(lagMs, 1000 * promSum(text, "pf_event_loop_lag_seconds", {}));
    const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { copies?: { throttles?: { class: string; rateBytesPerSec: number }[] } };
    for (const t of st.copies?.throttles ?? []) if (t.class === "rebuild") rateBps += t.rateBytesPerSec;
  }
  return { t: performance.now(), sdsTicks, sdcTicks: cpuTicks(c.pidOf("sdc")), m, lagMs, rateBps };
}

function phase(a: Probe, b: Probe, sdsCount: number): PhaseFigures {
  const seconds = (b.t - a.t) / 1000;
  const hz = 100; // USER_HZ
  const d = (k: string) => (b.m[k] ?? 0) - (a.m[k] ?? 0);
  const meanUs = (k: string) => (d(`${k}n`) > 0 ? (1e6 * d(`${k}s`)) / d(`${k}n`) : 0);
  return {
    seconds,
    sdsCpu: (b.sdsTicks - a.sdsTicks) / hz / seconds,
    sdcCpu: (b.sdcTicks - a.sdcTicks) / hz / seconds,
    primaryWriteUs: meanUs("pw"),
    secondaryWriteUs: meanUs("sw"),
    copyWriteUs: meanUs("cw"),
    deviceWriteUs: meanUs("dw"),
    copyReadUs: meanUs("cr"),
    copyReadsPerSec: d("crn") / seconds,
    syncsPerSec: d("dsn") / seconds,
    syncUs: meanUs("ds"),
    copyReadLoopShare: d("crs") / (seconds * sdsCount),
    lagMs: b.lagMs,
    copyRateMBps: b.rateBps / MB,
  };
}

function clientArgs(uri: string): string[] {
  return ["--name=client", "--ioengine=nbd", `--uri=${uri}`, "--rw=randwrite", "--bs=4k", `--iodepth=${clientQd}`, "--size=1GiB", "--randrepeat=0", "--time_based"];
}

/** fio until stop() (SIGINT: fio still prints its JSON). */
function startClient(uri: string): { stop(): Promise<ClientFigures> } {
  const p = Bun.spawn(["fio", ...clientArgs(uri), "--runtime=3600", "--output-format=json"], { stdout: "pipe", stderr: "pipe" });
  const out = new Response(p.stdout).text();
  return {
    async stop() {
      p.kill("SIGINT");
      await p.exited;
      const text = await out;
      const json = JSON.parse(text.slice(text.indexOf("{"))) as FioResult["json"];
      return clientFigures({ json } as FioResult);
    },
  };
}

/**
 * A plain copy of 1 GiB on the same disk, made comparable with the copy (the unthrottled aim
 * compares the two): 1 MiB blocks (the copy's REBUILD_WRITE size) into a preallocated file (as
 * the SDS's device files are: fallocate), with an fdatasync after every `syncMiB` MiB (default the
 * extent size: a copy ends each extent with a FLUSH of its target it waits for) and its time
 * included. dd's own `conv=fdatasync` syncs once at the end of the whole GiB, which the copy never
 * does; that figure is printed too, for the older rows.
 */
async function plainCopy(dir: string, source: string, syncMiB: number): Promise<{ seconds: number; bytesPerSec: number; onceSeconds: number; onceBytesPerSec: number }> {
  const dst = join(dir, "plain-copy.img");
  const total = 1024;
  const ok = (r: { exitCode: number | null; stderr: string }) => {
    if (r.exitCode !== 0) throw new Error(`plain copy failed: ${r.stderr}`);
  };
  ok(await run(["fallocate", "-l", `${total}MiB`, dst]));
  const t0 = performance.now();
  for (let at = 0; at < total; at += syncMiB) {
    const n = Math.min(syncMiB, total - at);
    ok(await run(["dd", `if=${source}`, `of=${dst}`, "bs=1M", `count=${n}`, `skip=${at}`, `seek=${at}`, "conv=notrunc,fdatasync"], { timeoutMs: 600_000 }));
  }
  const seconds = (performance.now() - t0) / 1000;
  rmSync(dst, { force: true });
  const t1 = performance.now();
  ok(await run(["dd", `if=${source}`, `of=${dst}`, "bs=1M", `count=${total}`, "conv=fdatasync"], { timeoutMs: 600_000 }));
  const onceSeconds = (performance.now() - t1) / 1000;
  rmSync(dst, { force: true });
  return { seconds, bytesPerSec: (total * MiB) / seconds, onceSeconds, onceBytesPerSec: (total * MiB) / onceSeconds };
}

/**
 * What the killed SDS held (its sds.db): bytes to rebuild, the SDSs holding the other copies (the
 * copy sources) and the largest share one source must copy (each source copies at most the limit,
 * so the throttled rebuild cannot end before that source is done).
 */
function held(c: TestCluster, sdsName: string): { bytes: number; sources: number; maxPerSourceBytes: number } {
  const db = new Database(join(c.dataDir, "sds", sdsName, "sds.db"), { readonly: true });
  try {
    const me = db.query<{ value: string }, []>("SELECT value FROM sds_kv WHERE key = 'sds_id'").get()?.value;
    const n = db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM sds_chunk").get()?.n ?? 0;
    const rows = db
      .query<{ replicas: string; chunks: number }, []>(
        "SELECT e.replicas, (SELECT COUNT(*) FROM sds_chunk c WHERE c.volume_id = e.volume_id AND c.extent_index = e.extent_index) AS chunks FROM sds_extent e",
      )
      .all()
      .filter((r) => r.chunks > 0);
    const perSource = new Map<string, number>();
    for (const r of rows) for (const id of JSON.parse(r.replicas) as string[]) if (id !== me) perSource.set(id, (perSource.get(id) ?? 0) + r.chunks * MiB);
    return { bytes: n * MiB, sources: perSource.size, maxPerSourceBytes: Math.max(0, ...perSource.values()) };
  } finally {
    db.close();
  }
}

interface PolicySpec {
  policy: string;
  concurrentIos?: number;
}

function loadavg(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "n/a";
  }
}

type PlainCopy = Awaited<ReturnType<typeof plainCopy>>;
const extentSpec = process.env.REBUILD_EXTENT ?? "64MiB";
const extentMiB = Number(/^(\d+)MiB$/.exec(extentSpec)?.[1] ?? 64);
const ddSyncMiB = Number(process.env.REBUILD_DD_SYNC_MIB ?? extentMiB);

async function scenario(label: string, limitBytesPerSec: number, spec: PolicySpec, plain: { done: boolean; result?: PlainCopy }): Promise<Row> {
  const c = await TestCluster.create({
    ...(process.env.REBUILD_BIN ? { bin: process.env.REBUILD_BIN } : {}),
    sdsCount: SDS_COUNT,
    devicesPerSds: 1,
    deviceSize: "1536MiB",
    extentSize: extentSpec,
    granularity: "1GiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 1s",
    volumes: [{ name: "vol", size: "1GiB" }],
  });
  const loadAtStart = loadavg();
  try {
    await c.start();
    const rest = new Rest(c);
    await rest.login();
    const poolId = (await rest.call("POST", "/api/types/StoragePool/instances/action/queryIdByKey", { name: "sp1" })) as string;
    const policy =
      spec.policy === "unlimited"
        ? { policy: "unlimited" }
        : { policy: spec.policy, bwLimitPerDeviceInKbps: Math.round(limitBytesPerSec / 1024), ...(spec.concurrentIos === undefined ? {} : { numOfConcurrentIosPerDevice: spec.concurrentIos }) };
    await rest.call("POST", `/api/instances/StoragePool::${poolId}/action/setRebuildIoPriorityPolicy`, policy);
    const status = async () => (await rest.call("POST", `/api/instances/StoragePool::${poolId}/action/queryRebuild`, {})) as RebuildStatusView;

    process.stderr.write(`[${label}] writing 1 GiB with fio\n`);
    await runFio(["--name=fill", "--ioengine=nbd", `--uri=${c.nbdUri("vol")}`, "--rw=write", "--bs=1M", "--iodepth=8", "--size=1GiB"], { timeoutMs: 600_000 });
    if (!plain.done) {
      plain.result = await plainCopy(c.dir, join(c.dataDir, "sds1", "dev0.img"), ddSyncMiB);
      plain.done = true;
    }
    process.stderr.write(`[${label}] client baseline (${baselineSeconds}s)\n`);
    const survivors = [0, 1, 2, 3].filter((i) => `sds${i + 1}` !== KILLED);
    const p0 = await probe(c, survivors);
    const before = clientFigures(await runFio([...clientArgs(c.nbdUri("vol")), `--runtime=${baselineSeconds}`], { timeoutMs: (baselineSeconds + 60) * 1000 }));
    const phaseBefore = phase(p0, await probe(c, survivors), survivors.length);
    let polls = 0;
    const rateSamples: number[] = [];
    let p1: Probe | null = null;
    let p2: Probe | null = null;

    const killedAt = performance.now();
    c.killRole(`sds ${KILLED}`);
    const { bytes: rebuiltBytes, sources, maxPerSourceBytes } = held(c, KILLED);
    process.stderr.write(`[${label}] killed ${KILLED} (held ${(rebuiltBytes / MiB).toFixed(0)} MiB, other copies on ${sources} SDS(s)); waiting for the rebuild\n`);
    let startedAt = -1;
    let endedAt = -1;
    let during: ClientFigures | null = null;
    let client: { stop(): Promise<ClientFigures> } | null = null;
    const deadline = killedAt + 900_000;
    while (performance.now() < deadline) {
      const s = await status();
      const now = performance.now();
      if (process.env.REBUILD_BENCH_TRACE) {
        process.stderr.write(`[${label}] t=${((now - killedAt) / 1000).toFixed(2)}s ${s.rebuildState} active ${s.numOfActiveRebuildExtents} pending ${s.numOfPendingRebuildExtents} degraded ${s.numOfDegradedExtents} rate ${((s.rebuildRateInKbps * 1024) / MB).toFixed(0)} MB/s\n`);
      }
      if (startedAt < 0 && s.rebuildState === "Rebuilding" && s.numOfActiveRebuildExtents > 0) {
        startedAt = now;
        p1 = await probe(c, survivors);
        client = startClient(c.nbdUri("vol")); // the client load runs exactly while the rebuild does
      }
      if (startedAt >= 0 && s.storagePoolState === "Normal" && s.rebuildState === "Idle" && s.numOfDegradedExtents === 0) {
        endedAt = now;
        p2 = await probe(c, survivors);
        during = await client!.stop();
        break;
      }
      if (process.env.REBUILD_BENCH_TRACE && startedAt >= 0) {
        const parts: string[] = [];
        for (const i of survivors) {
          const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { copies?: { throttles?: { class: string; rateBytesPerSec: number; tuner?: { verdict: string; baselineMs: number | null; lastMeanMs: number; lastRatio: number } }[] } };
          for (const t of st.copies?.throttles ?? []) {
            if (t.class !== "rebuild") continue;
            const u = t.tuner;
            parts.push(`sds${i + 1} ${(t.rateBytesPerSec / MB).toFixed(0)} MB/s${u ? ` ${u.verdict} base ${u.baselineMs?.toFixed(2) ?? "-"} mean ${u.lastMeanMs.toFixed(2)} x${u.lastRatio.toFixed(1)}` : ""}`);
          }
        }
        process.stderr.write(`[${label}]   throttles: ${parts.join(" | ")}\n`);
      }
      // every 5th poll while it runs: the copy rate the sources' throttles apply (the tuner's pick under dynamicBwThrottling)
      if (startedAt >= 0 && ++polls % 5 === 0) rateSamples.push(await copyRateOf(c, survivors));
      await Bun.sleep(100);
    }
    if (during === null) {
      await client?.stop();
      throw new Error(`[${label}] the rebuild did not finish`);
    }
    if (process.env.REBUILD_BENCH_LOG) {
      const t = c.output.split("\n").filter((l) => /copy|rebuild|epoch|target|fail/i.test(l));
      process.stderr.write(t.slice(-400).join("\n") + "\n");
    }
    return { label, limitBytesPerSec, sources, maxPerSourceBytes, rebuiltBytes, seconds: (endedAt - startedAt) / 1000, fromKillSeconds: (endedAt - killedAt) / 1000, before, during, phaseBefore, phaseDuring: phase(p1!, p2!, survivors.length), meanCopyRateBps: rateSamples.length > 0 ? rateSamples.reduce((a, b) => a + b, 0) / rateSamples.length : 0, load: `${loadAtStart} → ${loadavg()}` };
  } finally {
    await c.destroy();
  }
}

async function main(): Promise<void> {
  const plain: { done: boolean; result?: PlainCopy } = { done: false };
  const rows: Row[] = [];
  const specs: PolicySpec[] = (process.env.REBUILD_POLICIES ?? "limitNumOfConcurrentIos:4").split(",").map((x) => {
    const [policy, n] = x.trim().split(":");
    return { policy: policy!, ...(n === undefined ? {} : { concurrentIos: Number(n) }) };
  });
  const runs = Number(process.env.REBUILD_RUNS ?? 1);
  for (let i = 0; i < runs; i++) {
    for (const spec of specs) {
      const tag = `${spec.policy}${spec.concurrentIos === undefined ? "" : ` N=${spec.concurrentIos}`}`;
      rows.push(await scenario(`${tag}, ${limitMBps} MB/s per device`, limitMBps * MB, spec, plain));
      process.stderr.write(`[row] ${JSON.stringify(rows.at(-1))}\n`);
    }
    if (!process.env.REBUILD_BENCH_ONLY_THROTTLED) {
      rows.push(await scenario("unlimited", 0, { policy: "unlimited" }, plain));
      process.stderr.write(`[row] ${JSON.stringify(rows.at(-1))}\n`);
    }
  }
  const p = plain.result!;
  const lines = [
    `Rebuild after kill -9 of 1 of ${SDS_COUNT} SDSs (1 GiB volume, 2 copies, ${extentSpec} extents); client: fio 4k randwrite QD${clientQd} over NBD`,
    `Plain copy on the same disk (dd 1 GiB, bs=1M into a preallocated file, fdatasync every ${ddSyncMiB} MiB, the copy's cadence; "vs plain copy" uses it): ${(p.bytesPerSec / MB).toFixed(0)} MB/s (${p.seconds.toFixed(1)} s); with one fdatasync at the end (conv=fdatasync): ${(p.onceBytesPerSec / MB).toFixed(0)} MB/s (${p.onceSeconds.toFixed(1)} s)`,
    "",
    `build: ${process.env.REBUILD_BIN ?? "dist/pf"}`,
    "| run | rebuilt | rebuild time | kill to healthy | rate | vs limit x sources | vs the split's ceiling | vs plain copy | client IOPS before / during | client p99 before / during | load (start → end) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of rows) {
    const rate = r.rebuiltBytes / r.seconds;
    const ceiling = r.limitBytesPerSec * r.sources;
    // the source with the largest share copies at the limit the whole time: the best any plan does
    const splitCeiling = r.maxPerSourceBytes > 0 ? (r.limitBytesPerSec * r.rebuiltBytes) / r.maxPerSourceBytes : ceiling;
    lines.push(
      `| ${r.label} | ${(r.rebuiltBytes / MiB).toFixed(0)} MiB | ${r.seconds.toFixed(1)} s | ${r.fromKillSeconds.toFixed(1)} s | ${(rate / MB).toFixed(0)} MB/s | ` +
        `${ceiling > 0 ? `${((100 * rate) / ceiling).toFixed(0)} % of ${(ceiling / MB).toFixed(0)} MB/s (${r.sources} source${r.sources === 1 ? "" : "s"})` : `n/a (${r.sources} source${r.sources === 1 ? "" : "s"})`} | ` +
        `${r.limitBytesPerSec > 0 ? `${((100 * rate) / splitCeiling).toFixed(0)} % of ${(splitCeiling / MB).toFixed(0)} MB/s (largest share ${(r.maxPerSourceBytes / MiB).toFixed(0)} MiB)` : "n/a"} | ${((100 * rate) / p.bytesPerSec).toFixed(0)} % | ` +
        `${Math.round(r.before.iops)} / ${Math.round(r.during.iops)} | ${r.before.p99us.toFixed(0)} / ${r.during.p99us.toFixed(0)} µs (${(r.during.p99us / Math.max(1, r.before.p99us)).toFixed(1)}x) | ${r.load} |`,
    );
  }
  lines.push(
    "",
    "Where the client's write time goes (means; SDS figures over the 3 surviving SDSs; CPU as cores; copy-read loop share = time the copy's synchronous reads held an SDS loop / phase time, per SDS):",
    "| run | phase | client mean / p99 | SDS primary write (receipt to reply) | secondary apply | copy-target apply | device pwrite | device fdatasync: per s, mean | copy read: mean, per s, loop share | SDS CPU / SDC CPU | worst loop lag | copy rate set: at the end / mean over the rebuild (sum) |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of rows) {
    for (const [name, cf, ph] of [["before", r.before, r.phaseBefore], ["during", r.during, r.phaseDuring]] as const) {
      lines.push(
        `| ${r.label} | ${name} | ${cf.meanUs.toFixed(0)} / ${cf.p99us.toFixed(0)} µs | ${ph.primaryWriteUs.toFixed(0)} µs | ${ph.secondaryWriteUs.toFixed(0)} µs | ${ph.copyWriteUs.toFixed(0)} µs | ${ph.deviceWriteUs.toFixed(0)} µs | ${ph.syncsPerSec.toFixed(0)}/s, ${ph.syncUs.toFixed(0)} µs | ` +
          `${ph.copyReadUs.toFixed(0)} µs, ${ph.copyReadsPerSec.toFixed(0)}/s, ${(100 * ph.copyReadLoopShare).toFixed(1)} % | ${ph.sdsCpu.toFixed(2)} / ${ph.sdcCpu.toFixed(2)} | ${ph.lagMs.toFixed(0)} ms | ${ph.copyRateMBps.toFixed(0)}${name === "during" ? ` / ${(r.meanCopyRateBps / MB).toFixed(0)}` : ""} MB/s |`,
      );
    }
  }
  process.stdout.write(lines.join("\n") + "\n");
}

await main();
