// Snapshot cost benchmark (issue #11), one run of each on the one-host cluster (3 SDSs, two
// copies) from the compiled binary, fio's nbd engine:
//   1. 4k randwrite QD16 on a volume with 10 snapshots (every chunk already copied to the open
//      layer) against the same size volume without snapshots;
//   2. the first write after a snapshot: 4k QD1 writes, each into a chunk not yet copied (the
//      SDS copies 1 MiB and syncs it before the write is acknowledged), against the same writes
//      once the chunks are the volume's own;
//   3. group snapshots of 8 volumes under write load on all 8 (QD4 each): latency of the
//      writes issued while a snapshot call is under way against the others, and the MDM's
//      fence hold times (split: FENCE sent -> all acks, commit, COMMIT -> acks/unpark);
//   0. (first, on a cluster of its own) snapshotVolumes of a 1 GiB and a 1 TiB thin volume,
//      each with 1 MiB written every 1/64 of it: a snapshot costs metadata only, so both take
//      the same time. That cluster's devices are sparse 96 GiB files made before pf up (a
//      1 TiB thin volume needs 2 TiB of copies, at most 10x the devices' capacity).
// Run: npm run build && npx bun bench/snapshots.ts   (BENCH_SECONDS, default 15; BENCH_SKIP_SIZES=1
// skips part 0; PF_BENCH_BIN=path runs parts 1-3 on another build)

import { TestCluster } from "../test/helpers/cluster.ts";
import { runFio, type FioResult } from "../test/helpers/real_clients.ts";
import { NbdTestClient } from "../test/helpers/nbd_client.ts";
import { Rest } from "../test/helpers/rest.ts";
import { mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const seconds = Number(process.env.BENCH_SECONDS ?? 15);

interface Side {
  iops: number;
}

function writeSide(f: FioResult, job = 0): Side {
  return (f.json.jobs[job] as unknown as { write: Side }).write;
}

/** q-quantile of a sample (q = 1: the max). */
function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

const fio = (uri: string, name: string, args: string[]) => runFio([`--name=${name}`, "--ioengine=nbd", `--uri=${uri}`, "--randrepeat=0", ...args], { timeoutMs: 600_000 });
const fill = (uri: string) => fio(uri, "fill", ["--rw=write", "--bs=1M", "--iodepth=8", "--size=128M"]);

/** Part 0: snapshotVolumes time of a 1 GiB and a 1 TiB thin volume, in one cluster. */
async function snapshotCostBySize(say: (s: string) => void): Promise<void> {
  const c = await TestCluster.create({
    devicesPerSds: 1,
    deviceSize: "96GiB",
    extentSize: "64MiB",
    volumes: [
      { name: "small", size: "1GiB" },
      { name: "huge", size: "1TiB" },
    ],
  });
  try {
    // sparse device files: pf up uses an existing file at its size and creates nothing
    for (let i = 1; i <= 3; i++) {
      mkdirSync(join(c.dataDir, `sds${i}`), { recursive: true });
      const f = join(c.dataDir, `sds${i}`, "dev0.img");
      writeFileSync(f, "");
      truncateSync(f, 96 * 1024 ** 3);
    }
    await c.start(300_000);
    const rest = await Rest.login(c);
    const block = new Uint8Array(1024 * 1024).fill(5);
    for (const [name, sizeBytes] of [["small", 1024 ** 3], ["huge", 1024 ** 4]] as const) {
      const cl = await NbdTestClient.connect(c.ports.nbd, name);
      for (let i = 0; i < 64; i++) await cl.write((sizeBytes / 64) * i, block);
      cl.close();
    }
    const ids = { small: await rest.volumeId("small"), huge: await rest.volumeId("huge") };
    const ms: Record<"small" | "huge", number[]> = { small: [], huge: [] };
    for (let i = 1; i <= 9; i++) {
      for (const name of ["small", "huge"] as const) {
        const t0 = performance.now();
        await rest.ok("/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId: ids[name], snapshotName: `${name}-s${i}` }] });
        ms[name].push(performance.now() - t0);
      }
    }
    const show = (xs: number[]) => `${pct(xs, 0.5).toFixed(1)} ms (${xs.map((x) => x.toFixed(0)).join(", ")})`;
    say("| snapshotVolumes, thin volume, 1 MiB written every 1/64 (9 calls each, alternating) | median (all) |");
    say("| --- | --- |");
    say(`| 1 GiB (16 extents of 64 MiB) | ${show(ms.small)} |`);
    say(`| 1 TiB (16,384 extents of 64 MiB) | ${show(ms.huge)} |`);
    say("");
  } finally {
    await c.destroy();
  }
}

async function main(): Promise<void> {
  const out: string[] = [];
  const say = (s: string) => {
    out.push(s);
    process.stdout.write(s + "\n");
  };
  if (process.env.BENCH_SKIP_SIZES !== "1") await snapshotCostBySize(say);
  if (process.env.BENCH_ONLY_SIZES === "1") return;
  const group = Array.from({ length: 8 }, (_, i) => ({ name: `g${i + 1}`, size: "64MiB" }));
  const c = await TestCluster.create({
    bin: process.env.PF_BENCH_BIN, // another build (before/after runs); default dist/pf
    deviceSize: "2GiB",
    volumes: [{ name: "base0", size: "128MiB" }, { name: "base10", size: "128MiB" }, { name: "cow", size: "128MiB" }, ...group],
  });
  try {
    await c.start();
    const rest = await Rest.login(c);
    const snap = async (volumes: string[], tag: string) => {
      const snapshotDefs = await Promise.all(volumes.map(async (v) => ({ volumeId: await rest.volumeId(v), snapshotName: `${v}-${tag}` })));
      const t0 = performance.now();
      await rest.ok("/instances/System/action/snapshotVolumes", { snapshotDefs, accessModeLimit: "ReadOnly" });
      return performance.now() - t0;
    };

    // BENCH_PARTS=2,3 runs only those (before/after comparisons on a busy host)
    const parts = new Set((process.env.BENCH_PARTS ?? "1,2,3").split(",").map(Number));
    // 1. steady state with 10 snapshots
    if (parts.has(1)) {
    await fill(c.nbdUri("base0"));
    await fill(c.nbdUri("base10"));
    for (let i = 1; i <= 10; i++) {
      await snap(["base10"], `s${i}`);
      await fill(c.nbdUri("base10")); // whole-chunk writes: every chunk moves to the new open layer
      await fill(c.nbdUri("base0"));
    }
    const steady = ["--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=128M", "--time_based", `--runtime=${seconds}`];
    const none = writeSide(await fio(c.nbdUri("base0"), "none", steady)).iops;
    const ten = writeSide(await fio(c.nbdUri("base10"), "ten", steady)).iops;
    say("| 4k randwrite QD16 | no snapshots | 10 snapshots (copies done) | ratio |");
    say("| --- | --- | --- | --- |");
    say(`| ${seconds} s each | ${Math.round(none).toLocaleString("en")} IOPS | ${Math.round(ten).toLocaleString("en")} IOPS | ${(ten / none).toFixed(2)} |`);
    }

    // 2. first write after a snapshot: one 4k write per 1 MiB chunk, QD1, each timed
    if (parts.has(2)) {
    await fill(c.nbdUri("cow"));
    const snapMs = await snap(["cow"], "s1");
    const cow = await NbdTestClient.connect(c.ports.nbd, "cow");
    const perChunk = async () => {
      const ms: number[] = [];
      const b = new Uint8Array(4096).fill(9);
      for (let chunk = 0; chunk < 128; chunk++) {
        const t0 = performance.now();
        await cow.write(chunk * 1024 * 1024 + 4096, b);
        ms.push(performance.now() - t0);
      }
      return ms;
    };
    const first = await perChunk();
    const again = await perChunk();
    cow.close();
    say("");
    say("| 4k write QD1, one per 1 MiB chunk (128) | p50 | p99 | max |");
    say("| --- | --- | --- | --- |");
    say(`| first write after a snapshot (1 MiB copy on both copies) | ${pct(first, 0.5).toFixed(2)} ms | ${pct(first, 0.99).toFixed(2)} ms | ${pct(first, 1).toFixed(2)} ms |`);
    say(`| same chunks again (in place) | ${pct(again, 0.5).toFixed(2)} ms | ${pct(again, 0.99).toFixed(2)} ms | ${pct(again, 1).toFixed(2)} ms |`);
    say(`| snapshotVolumes call (REST round trip, 128 MiB volume) | ${snapMs.toFixed(1)} ms | | |`);
    }

    // 3. group snapshot of 8 volumes under load: writers that log every write's latency, so the
    // writes issued while a fence is up can be told from the rest
    if (parts.has(3)) {
    for (const g of group) await fio(c.nbdUri(g.name), "fillg", ["--rw=write", "--bs=1M", "--iodepth=8", "--size=64M"]);
    const clients = await Promise.all(group.flatMap((g) => [0, 1].map(() => NbdTestClient.connect(c.ports.nbd, g.name))));
    const lat: { issuedMs: number; ms: number }[] = [];
    let stop = false;
    const block = new Uint8Array(4096).fill(7);
    // QD4 per volume (2 connections x 2), on 4 chunks per volume: after a snapshot each chunk is
    // copied once, so the copy cost shows only in the first writes after each cut
    const writers = clients.flatMap((cl, i) =>
      [0, 1].map(async (j) => {
        for (let n = 0; !stop; n++) {
          const off = ((i * 7 + j * 3 + n) % 4) * 1024 * 1024 + ((n * 4096) % (1024 * 1024));
          const t0 = performance.now();
          await cl.write(off, block);
          lat.push({ issuedMs: t0, ms: performance.now() - t0 });
        }
      }),
    );
    await Bun.sleep(2000);
    const windows: { from: number; to: number }[] = [];
    const before = c.output.length;
    for (let i = 1; i <= 5; i++) {
      const from = performance.now();
      await snap(group.map((g) => g.name), `cg${i}`);
      windows.push({ from, to: performance.now() });
      await Bun.sleep(1500);
    }
    stop = true;
    await Promise.all(writers);
    for (const cl of clients) cl.close();
    const fences = [...c.output.slice(before).matchAll(/writes held ([\d.]+) ms \(acks ([\d.]+), commit ([\d.]+), releases ([\d.]+)\)/g)].map((m) => m.slice(1, 5).map(Number));
    const held = fences.map((f) => f[0]!);
    // the SDS side of every fence: drain (FENCE -> admitted writes answered), hold, re-serving the parked writes
    const sdsSide = [...c.output.slice(before).matchAll(/fence \w+: drained ([\d.]+) ms, held ([\d.]+) ms, (\d+) parked write\(s\) re-served in ([\d.]+) ms/g)].map((m) => m.slice(1, 5).map(Number));
    const inFence = lat.filter((l) => windows.some((w) => l.issuedMs >= w.from && l.issuedMs <= w.to)).map((l) => l.ms);
    const quiet = lat.filter((l) => windows.every((w) => l.issuedMs < w.from - 200 || l.issuedMs > w.to + 500)).map((l) => l.ms);
    say("");
    say("| 8 volumes, 4k writes QD4 each | writes | p50 | p99 | max |");
    say("| --- | --- | --- | --- | --- |");
    say(`| issued away from any snapshot | ${quiet.length} | ${pct(quiet, 0.5).toFixed(2)} ms | ${pct(quiet, 0.99).toFixed(2)} ms | ${pct(quiet, 1).toFixed(1)} ms |`);
    say(`| issued during a group snapshot call (5 calls) | ${inFence.length} | ${pct(inFence, 0.5).toFixed(2)} ms | ${pct(inFence, 0.99).toFixed(2)} ms | ${pct(inFence, 1).toFixed(1)} ms |`);
    say(`| fence hold (MDM: FENCE sent -> COMMIT acked) | ${held.map((h) => `${h.toFixed(1)}`).join(", ")} ms | | | |`);
    say(`| of which FENCE sent -> all acks / commit / COMMIT -> acks | ${fences.map((f) => `${f[1]!.toFixed(1)}/${f[2]!.toFixed(1)}/${f[3]!.toFixed(1)}`).join(", ")} ms | | | |`);
    const worst = (i: number) => Math.max(0, ...sdsSide.map((x) => x[i]!));
    say(`| SDS side, worst of ${sdsSide.length} (SDS, fence): drained / held / parked writes / re-served | ${worst(0).toFixed(1)} / ${worst(1).toFixed(1)} ms / ${worst(2)} / ${worst(3).toFixed(1)} ms | | | |`);
    say(`| pause seen by the writes: max latency of writes issued during a call, minus p50 away from it | ${(pct(inFence, 1) - pct(quiet, 0.5)).toFixed(1)} ms | | | |`);
    say(`| snapshotVolumes call, 8 volumes | ${windows.map((w) => (w.to - w.from).toFixed(0)).join(", ")} ms | | | |`);
    }
    process.stdout.write("\n" + out.join("\n") + "\n");
  } finally {
    await c.destroy();
  }
}

await main();
