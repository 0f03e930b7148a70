// What data-plane TLS costs end to end: the same one-host cluster (3 SDSs, two copies, 1 SDC)
// from this build, once with `dataPlane: { tls: true }` (every SDC->SDS, SDS->SDS and MDM->SDS
// connection in TLS) and once without, both up at once, fio through NBD on each in turn
// (plain, TLS, plain, TLS, ...) for 4k randwrite QD16, 4k randread QD16 and 1M seq write QD8.
// Prints per workload the median IOPS / MiB/s of each, the ratio TLS/plain and every run (the
// spread between runs of one setup says how much of the ratio is noise on a shared machine).
//
// Run: npm run build && npx bun bench/dataplane_tls.ts
// Env: BENCH_SECONDS (default 10) per fio run, BENCH_ROUNDS (default 3) runs per setup and workload.

import { TestCluster } from "../test/helpers/cluster.ts";
import { runFio, type FioResult } from "../test/helpers/real_clients.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const out = (s: string) => process.stdout.write(s + "\n");

interface Workload {
  name: string;
  args: string[];
  /** what the table shows: IOPS for small IO, MiB/s for large */
  unit: "IOPS" | "MiB/s";
}

const WORKLOADS: Workload[] = [
  { name: "4k randwrite QD16", args: ["--rw=randwrite", "--bs=4k", "--iodepth=16"], unit: "IOPS" },
  { name: "4k randread QD16", args: ["--rw=randread", "--bs=4k", "--iodepth=16"], unit: "IOPS" },
  { name: "1M seq write QD8", args: ["--rw=write", "--bs=1M", "--iodepth=8"], unit: "MiB/s" },
];

function figure(r: FioResult, unit: Workload["unit"]): number {
  const jobs = r.json.jobs;
  if (unit === "IOPS") return jobs.reduce((s, j) => s + j.read.iops + j.write.iops, 0);
  return jobs.reduce((s, j) => s + j.read.bw_bytes + j.write.bw_bytes, 0) / (1024 * 1024);
}

async function run(c: TestCluster, w: Workload): Promise<number> {
  const r = await runFio(["--name=tls", "--ioengine=nbd", `--uri=${c.nbdUri("bench")}`, ...w.args, "--size=1G", `--runtime=${seconds}`, "--time_based", "--randrepeat=0"], { timeoutMs: (seconds + 60) * 1000 });
  return figure(r, w.unit);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function spread(xs: number[]): string {
  const m = median(xs);
  return `±${(((Math.max(...xs) - Math.min(...xs)) / 2 / m) * 100).toFixed(0)} %`;
}

async function main(): Promise<void> {
  const spec = { deviceSize: "1GiB", extentSize: "64MiB", granularity: "1GiB", volumes: [{ name: "bench", size: "1GiB" }] };
  // one after the other: ports are picked free when a cluster is created, so the second is
  // created only once the first holds its own
  const plain = await TestCluster.create(spec);
  let tls: TestCluster | null = null;
  try {
    await plain.start();
    tls = await TestCluster.create({ ...spec, topYaml: "dataPlane: { tls: true }" });
    await tls.start();
    if (!tls.output.includes("data-plane TLS on")) throw new Error("the TLS cluster did not say data-plane TLS is on");
    // fill both (first writes allocate thin chunks; reads then read data)
    for (const c of [plain, tls]) await runFio(["--name=fill", "--ioengine=nbd", `--uri=${c.nbdUri("bench")}`, "--rw=write", "--bs=1M", "--iodepth=8", "--size=1G"], { timeoutMs: 600_000 });
    const rows: string[] = [];
    for (const w of WORKLOADS) {
      const p: number[] = [];
      const t: number[] = [];
      for (let i = 0; i < rounds; i++) {
        p.push(await run(plain, w));
        t.push(await run(tls, w));
        out(`${w.name} round ${i + 1}: plain ${Math.round(p[i]!)} ${w.unit}, TLS ${Math.round(t[i]!)} ${w.unit}`);
      }
      const mp = median(p);
      const mt = median(t);
      rows.push(`| ${w.name} (${w.unit}) | ${Math.round(mp).toLocaleString("en")} (${spread(p)}) | ${Math.round(mt).toLocaleString("en")} (${spread(t)}) | ${(mt / mp).toFixed(2)} | ${p.map(Math.round).join(", ")} / ${t.map(Math.round).join(", ")} |`);
    }
    out("");
    out(`| workload, ${seconds}s x ${rounds} interleaved | plain median (spread) | TLS median (spread) | TLS/plain | runs plain / TLS |`);
    out("| --- | --- | --- | --- | --- |");
    for (const r of rows) out(r);
  } finally {
    await plain.destroy();
    await tls?.destroy();
  }
}

await main();
