// Data-path benchmark: pf (one-host cluster from the compiled binary, two copies) against
// nbdkit's file plugin on a file of the same size, in the same run, with fio's nbd engine.
// Prints a table with pf/nbdkit ratios. Run: npm run build && npx bun bench/pf.ts
// Env: BENCH_SECONDS (default 20) per job; BENCH_SIZE (default 1GiB).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster, freePort } from "../test/helpers/cluster.ts";
import { run, runFio, type FioResult } from "../test/helpers/real_clients.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 20);
const size = process.env.BENCH_SIZE ?? "1GiB";

interface Job {
  name: string;
  args: string[];
  metric: "iops" | "bw";
  latency?: boolean;
}

const jobs: Job[] = [
  { name: "4k randwrite QD16", args: ["--rw=randwrite", "--bs=4k", "--iodepth=16"], metric: "iops" },
  { name: "4k randwrite QD1", args: ["--rw=randwrite", "--bs=4k", "--iodepth=1"], metric: "iops", latency: true },
  { name: "4k randread QD16", args: ["--rw=randread", "--bs=4k", "--iodepth=16"], metric: "iops" },
  { name: "1M seq write QD8", args: ["--rw=write", "--bs=1M", "--iodepth=8"], metric: "bw" },
];

interface Clat {
  percentile?: Record<string, number>;
}
interface JobJson {
  read: { iops: number; bw_bytes: number; clat_ns?: Clat };
  write: { iops: number; bw_bytes: number; clat_ns?: Clat };
}

function figures(f: FioResult): { iops: number; bw: number; p50us: number; p99us: number } {
  const j = f.json.jobs[0] as unknown as JobJson;
  const side = j.write.iops > 0 ? j.write : j.read;
  const pct = side.clat_ns?.percentile ?? {};
  return { iops: side.iops, bw: side.bw_bytes, p50us: (pct["50.000000"] ?? 0) / 1000, p99us: (pct["99.000000"] ?? 0) / 1000 };
}

async function fio(uri: string, job: Job) {
  return figures(
    await runFio(["--name=b", "--ioengine=nbd", `--uri=${uri}`, ...job.args, `--runtime=${seconds}`, "--time_based", "--size=" + size, "--randrepeat=0"], {
      timeoutMs: (seconds + 60) * 1000,
    }),
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pf-bench-"));
  const cluster = await TestCluster.create({ deviceSize: "1GiB", extentSize: "64MiB", granularity: "1GiB", volumes: [{ name: "bench", size }] });
  const nbdkitPort = await freePort();
  const img = join(dir, "ref.img");
  await run(["truncate", "-s", size.replace("iB", ""), img]);
  await run(["fallocate", "-l", size.replace("iB", ""), img]);
  const nbdkit = Bun.spawn(["nbdkit", "-f", "-p", String(nbdkitPort), "-i", "127.0.0.1", "file", img], { stdout: "ignore", stderr: "inherit" });
  try {
    await cluster.start();
    await Bun.sleep(500);
    const pfUri = cluster.nbdUri("bench");
    const refUri = `nbd://127.0.0.1:${nbdkitPort}/`;
    // Fill both once so reads hit written (allocated) data.
    const fill: Job = { name: "fill", args: ["--rw=write", "--bs=1M", "--iodepth=8"], metric: "bw" };
    for (const uri of [pfUri, refUri]) {
      await runFio(["--name=fill", "--ioengine=nbd", `--uri=${uri}`, ...fill.args, "--size=" + size], { timeoutMs: 600_000 });
    }
    const rows: string[] = [];
    rows.push(`| job (${seconds}s each) | pf | nbdkit file | pf/nbdkit |`);
    rows.push("| --- | --- | --- | --- |");
    for (const job of jobs) {
      const p = await fio(pfUri, job);
      const r = await fio(refUri, job);
      const fmt = (x: typeof p) =>
        job.metric === "iops"
          ? `${Math.round(x.iops).toLocaleString("en")} IOPS${job.latency ? ` (p50 ${x.p50us.toFixed(0)} µs, p99 ${x.p99us.toFixed(0)} µs)` : ""}`
          : `${(x.bw / 1e6).toFixed(0)} MB/s`;
      const ratio = job.metric === "iops" ? p.iops / r.iops : p.bw / r.bw;
      rows.push(`| ${job.name} | ${fmt(p)} | ${fmt(r)} | ${ratio.toFixed(2)} |`);
      process.stdout.write(rows[rows.length - 1] + "\n");
    }
    process.stdout.write("\n" + rows.join("\n") + "\n");
  } finally {
    nbdkit.kill("SIGTERM");
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
