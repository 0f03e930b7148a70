// What the IO counters cost: 4k randwrite QD16 (fio, nbd engine) on a one-host cluster of the
// compiled binary with the counters on, and on one of the same binary with PF_METRICS=off
// (io_meter.ts: the IO paths then read no clock and record nothing; for this A/B only). Both
// clusters run side by side (the idle one only heartbeats) and short fio runs alternate between
// them, so that drift on a shared machine hits both sides alike. Prints IOPS per run, the
// ratio on/off per round and its median, and the CPU time the pf processes (SDC + SDSs + MDM,
// from /proc) spent per IO, which a busy machine disturbs less than IOPS. Last, the metering work
// of one replicated write timed in process (SDC volume meter, and per SDS the request meter plus
// the metered device write, twice: primary and secondary) as a share of that CPU time per IO: on
// a shared 2-core machine the IOPS ratio moves by far more than 3 % from run to run.
// BENCH_BASE_BIN=/path/to/pf adds a third side: a pf built from another commit (e.g. the one
// before the counters), started without control ports.
// Run: npm run build && npx bun bench/metrics_cost.ts
// Env: BENCH_SECONDS (default 5) per fio run; BENCH_ROUNDS (default 6) runs per side.

import { readFileSync } from "node:fs";
import { ioNowMs } from "../src/proto/io_meter.ts";
import { MetricRegistry } from "../src/proto/metrics.ts";
import { Cmd } from "../src/proto/nbd.ts";
import { SdcMetrics } from "../src/sdc/sdc_metrics.ts";
import { MeteredDevice } from "../src/sds/device_meter.ts";
import { SdsMetrics } from "../src/sds/sds_metrics.ts";
import type { BlockDevice } from "../src/store/block_device.ts";
import { TestCluster } from "../test/helpers/cluster.ts";
import { runFio } from "../test/helpers/real_clients.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 6);
const baseBin = process.env.BENCH_BASE_BIN;
const size = "256MiB";

interface Side {
  name: string;
  env: Record<string, string>;
  bin?: string;
  controlPorts: boolean;
}

const sides: Side[] = [
  { name: "counters on", env: {}, controlPorts: true },
  { name: "PF_METRICS=off", env: { PF_METRICS: "off" }, controlPorts: true },
  ...(baseBin ? [{ name: `base build (${baseBin})`, env: {}, bin: baseBin, controlPorts: false }] : []),
];

/** user + system CPU seconds of these processes so far (/proc/PID/stat, clock ticks of 10 ms) */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  }
  return ticks / 100;
}

interface RunResult {
  iops: number;
  cpuUsPerIo: number;
}

async function startSide(side: Side): Promise<TestCluster> {
  const cluster = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "512MiB",
    extentSize: "64MiB",
    granularity: "1GiB",
    env: side.env,
    bin: side.bin,
    controlPorts: side.controlPorts,
    volumes: [{ name: "bench", size }],
  });
  try {
    await cluster.start();
    // fill once, so the timed jobs overwrite allocated chunks (no thin allocation in the timing)
    await runFio(["--name=fill", "--ioengine=nbd", `--uri=${cluster.nbdUri("bench")}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${size}`], { timeoutMs: 300_000 });
    return cluster;
  } catch (e) {
    await cluster.destroy();
    throw e;
  }
}

async function oneRun(cluster: TestCluster): Promise<RunResult> {
  const pids = cluster.rolePids();
  const cpuBefore = cpuSeconds(pids);
  const r = await runFio(
    ["--name=b", "--ioengine=nbd", `--uri=${cluster.nbdUri("bench")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", `--size=${size}`, `--runtime=${seconds}`, "--time_based", "--randrepeat=0"],
    { timeoutMs: (seconds + 60) * 1000 },
  );
  const cpu = cpuSeconds(pids) - cpuBefore;
  const w = (r.json.jobs[0] as unknown as { write: { iops: number; total_ios: number } }).write;
  return { iops: w.iops, cpuUsPerIo: (cpu * 1e6) / w.total_ios };
}

/** Nanoseconds of metering work per replicated client write (in process, no IO). */
function meteringNsPerWrite(): { sdcNs: number; sdsNs: number } {
  const n = 2_000_000;
  const vol = new SdcMetrics(new MetricRegistry(), "c000000000000001").volume("0a00000000000001", "vol");
  const sdcLoop = () => {
    const t1 = performance.now();
    for (let i = 0; i < n; i++) {
      const t0 = ioNowMs();
      vol.completed(Cmd.WRITE, 4096, (ioNowMs() - t0) / 1000, true);
    }
    return ((performance.now() - t1) * 1e6) / n;
  };
  sdcLoop(); // warm up
  const sdcNs = sdcLoop();
  const sds = new SdsMetrics(new MetricRegistry(), "5d50000000000001");
  const bare: BlockDevice = { path: "/x", sizeBytes: 1 << 30, createdZeroFilled: true, readInto() {}, write() {}, readAsync: async () => {}, writeAsync: async () => {}, datasync: async () => {}, datasyncNow() {}, close() {} };
  const dev = new MeteredDevice(bare, sds.device("de70000000000001", "/x"));
  const buf = new Uint8Array(4096);
  const loop = (d: BlockDevice, meter: boolean) => {
    const t1 = performance.now();
    for (let i = 0; i < n; i++) {
      const t0 = meter ? ioNowMs() : 0;
      d.write(buf, 0);
      if (meter) sds.primaryWrite.record(4096, (ioNowMs() - t0) / 1000);
    }
    return ((performance.now() - t1) * 1e6) / n;
  };
  loop(dev, true); // warm up (JIT) before timing
  loop(bare, false);
  const sdsNs = loop(dev, true) - loop(bare, false);
  return { sdcNs, sdsNs };
}

async function main(): Promise<void> {
  const iops = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const cpu = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  const clusters = new Map<string, TestCluster>();
  try {
    for (const side of sides) clusters.set(side.name, await startSide(side));
    for (let round = 0; round < rounds; round++) {
      // alternate the order: the first run of a round is not always the same side
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const v = await oneRun(clusters.get(side.name)!);
        iops.get(side.name)!.push(v.iops);
        cpu.get(side.name)!.push(v.cpuUsPerIo);
        process.stdout.write(`round ${round + 1}: ${side.name}: ${Math.round(v.iops).toLocaleString("en")} IOPS, ${v.cpuUsPerIo.toFixed(1)} µs CPU per IO\n`);
      }
    }
  } finally {
    for (const c of clusters.values()) await c.destroy();
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const on = mean(iops.get("counters on")!);
  const off = mean(iops.get("PF_METRICS=off")!);
  // the two sides of one round ran back to back: their ratio is less exposed to drift
  const paired = iops.get("counters on")!.map((x, i) => x / iops.get("PF_METRICS=off")![i]!);
  const cpuOff = median(cpu.get("PF_METRICS=off")!);
  const rows = [
    `| 4k randwrite QD16, ${seconds}s x ${rounds} | IOPS (mean) | runs | IOPS vs off | CPU µs/IO (median) | CPU/IO vs off |`,
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const s of sides) {
    const xs = iops.get(s.name)!;
    const c = median(cpu.get(s.name)!);
    rows.push(
      `| ${s.name} | ${Math.round(mean(xs)).toLocaleString("en")} | ${xs.map((x) => Math.round(x).toLocaleString("en")).join(", ")} | ${(mean(xs) / off).toFixed(3)} | ${c.toFixed(1)} | ${(c / cpuOff).toFixed(3)} |`,
    );
  }
  process.stdout.write(`\n${rows.join("\n")}\n\n`);
  process.stdout.write(`counters on / off: mean of runs ${(on / off).toFixed(3)}; per round ${paired.map((r) => r.toFixed(3)).join(", ")}; median of rounds ${median(paired).toFixed(3)}\n`);
  const m = meteringNsPerWrite();
  const perWriteNs = m.sdcNs + 2 * m.sdsNs;
  process.stdout.write(
    `metering work per replicated write: SDC ${m.sdcNs.toFixed(0)} ns + 2 x SDS ${m.sdsNs.toFixed(0)} ns = ${perWriteNs.toFixed(0)} ns, ` +
      `${((perWriteNs / 1000 / cpuOff) * 100).toFixed(2)} % of the ${cpuOff.toFixed(1)} µs CPU per IO of the PF_METRICS=off side\n`,
  );
}

await main();
