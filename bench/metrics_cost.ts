// What the IO counters cost: 4k randwrite QD16 (fio, nbd engine) on a one-host cluster of the
// compiled binary with the counters on, and the same binary with PF_METRICS=off (io_meter.ts: the
// IO paths then read no clock and record nothing; for this A/B only), alternating in one run so
// that drift on a shared machine hits both sides. Prints IOPS per run and the ratio on/off.
// BENCH_BASE_BIN=/path/to/pf adds a third side: a pf built from another commit (e.g. the one
// before the counters), started without control ports.
// Run: npm run build && npx bun bench/metrics_cost.ts
// Env: BENCH_SECONDS (default 10) per fio run; BENCH_ROUNDS (default 2) runs per side.

import { TestCluster } from "../test/helpers/cluster.ts";
import { runFio } from "../test/helpers/real_clients.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
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

async function oneRun(side: Side): Promise<number> {
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
    const uri = cluster.nbdUri("bench");
    // fill once, so the timed job overwrites allocated chunks (no thin allocation in the timing)
    await runFio(["--name=fill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=8", `--size=${size}`], { timeoutMs: 300_000 });
    const r = await runFio(
      ["--name=b", "--ioengine=nbd", `--uri=${uri}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", `--size=${size}`, `--runtime=${seconds}`, "--time_based", "--randrepeat=0"],
      { timeoutMs: (seconds + 60) * 1000 },
    );
    return (r.json.jobs[0] as unknown as { write: { iops: number } }).write.iops;
  } finally {
    await cluster.destroy();
  }
}

async function main(): Promise<void> {
  const iops = new Map<string, number[]>(sides.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    // alternate the order: the first run of a round is not always the same side
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const v = await oneRun(side);
      iops.get(side.name)!.push(v);
      process.stdout.write(`round ${round + 1}: ${side.name}: ${Math.round(v).toLocaleString("en")} IOPS\n`);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const on = mean(iops.get("counters on")!);
  const off = mean(iops.get("PF_METRICS=off")!);
  // the two sides of one round ran back to back: their ratio is less exposed to drift
  const paired = iops.get("counters on")!.map((x, i) => x / iops.get("PF_METRICS=off")![i]!);
  const rows = [`| 4k randwrite QD16, ${seconds}s x ${rounds} | IOPS (mean) | runs | vs PF_METRICS=off |`, "| --- | --- | --- | --- |"];
  for (const s of sides) {
    const xs = iops.get(s.name)!;
    rows.push(`| ${s.name} | ${Math.round(mean(xs)).toLocaleString("en")} | ${xs.map((x) => Math.round(x).toLocaleString("en")).join(", ")} | ${(mean(xs) / off).toFixed(3)} |`);
  }
  process.stdout.write(`\n${rows.join("\n")}\n\n`);
  process.stdout.write(`counters on / off: mean of runs ${(on / off).toFixed(3)}; per round ${paired.map((r) => r.toFixed(3)).join(", ")}; median of rounds ${median(paired).toFixed(3)}\n`);
}

await main();
