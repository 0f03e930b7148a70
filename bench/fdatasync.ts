// How should an SDS run fdatasync without blocking its event loop? Compares, in one run and
// interleaved, on a 256 MiB preallocated file in the temp dir:
//   inline  fs.fdatasyncSync on the loop (what the SDS must never do on the IO path)
//   cb      node:fs fdatasync(fd, cb) (Bun's thread pool)
//   promise fs.promises FileHandle.datasync()
//   worker  a Worker thread that calls fdatasyncSync and posts back
// Each mode runs a loop of group commits for BENCH_SECONDS: 4 KiB pwrites of random blocks keep
// arriving (a timer every 100 µs, 4 writes each) while at most one sync is in flight; a sync
// covers every write before it started. Reported: syncs/s, mean sync latency, writes/s, the
// event loop's worst and p99 lag (timer lateness), and CPU µs per sync of this process.
//
// Every mode runs on two files: "unwritten" (fallocate only, as pf creates a device file: every first
// write into a block converts an unwritten extent, so its fdatasync commits the ext4 journal) and
// "written" (the same, then filled with zeros and synced: what a device is after its chunks were
// written once, and what nbdkit's file is in bench/pf.ts after its fill).
//
// Run: npx bun bench/fdatasync.ts   (env BENCH_SECONDS default 5, BENCH_ROUNDS default 3,
//      BENCH_MODES comma list of inline,cb,promise,worker; default all)

import * as fs from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median } from "./proc_cpu.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const FILE_BYTES = 256 * 1024 * 1024;

type Mode = "inline" | "cb" | "promise" | "worker";

const WORKER_SRC = `
const fs = require("node:fs");
self.onmessage = (ev) => {
  const { fd, id } = ev.data;
  let err = null;
  try { fs.fdatasyncSync(fd); } catch (e) { err = String(e); }
  postMessage({ id, err });
};
`;

interface Result {
  /** serial write + sync, one at a time (QD1): syncs per second */
  qd1SyncsPerSec: number;
  syncsPerSec: number;
  meanSyncUs: number;
  writesPerSec: number;
  lagMaxMs: number;
  lagP99Ms: number;
  cpuUsPerSync: number;
}

async function runMode(mode: Mode, fd: number, fh: fs.promises.FileHandle, worker: Worker): Promise<Result> {
  const block = new Uint8Array(4096).fill(7);
  let writes = 0;
  let syncs = 0;
  let syncUs = 0;
  let inFlight = false;
  let dirty = false;
  const lags: number[] = [];
  let nextWorkerId = 1;
  const workerWaits = new Map<number, () => void>();
  worker.onmessage = (ev: MessageEvent<{ id: number }>) => {
    const f = workerWaits.get(ev.data.id);
    workerWaits.delete(ev.data.id);
    f?.();
  };
  const syncOnce = (done: () => void) => {
    switch (mode) {
      case "inline":
        fs.fdatasyncSync(fd);
        queueMicrotask(done);
        return;
      case "cb":
        fs.fdatasync(fd, () => done());
        return;
      case "promise":
        void fh.datasync().then(done);
        return;
      case "worker": {
        const id = nextWorkerId++;
        workerWaits.set(id, done);
        worker.postMessage({ fd, id });
        return;
      }
    }
  };
  const kick = () => {
    if (inFlight || !dirty) return;
    inFlight = true;
    dirty = false;
    const t = performance.now();
    syncOnce(() => {
      syncUs += (performance.now() - t) * 1000;
      syncs++;
      inFlight = false;
      kick();
    });
  };
  // QD1: one 4 KiB write, then its sync, then the next (the handoff cost shows here)
  let qd1 = 0;
  const q0 = performance.now();
  const qEnd = q0 + (seconds * 1000) / 2;
  await new Promise<void>((resolve) => {
    const step = () => {
      if (performance.now() >= qEnd) return resolve();
      fs.writeSync(fd, block, 0, block.byteLength, Math.floor(Math.random() * (FILE_BYTES / 4096)) * 4096);
      syncOnce(() => {
        qd1++;
        step();
      });
    };
    step();
  });
  const qd1SyncsPerSec = qd1 / ((performance.now() - q0) / 1000);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await new Promise<void>((resolve) => {
    let expected = performance.now() + 0.1;
    const tick = () => {
      const now = performance.now();
      lags.push(Math.max(0, now - expected));
      if (now >= end) return resolve();
      for (let i = 0; i < 4; i++) {
        fs.writeSync(fd, block, 0, block.byteLength, Math.floor(Math.random() * (FILE_BYTES / 4096)) * 4096);
        writes++;
      }
      dirty = true;
      kick();
      expected = performance.now() + 0.1;
      setTimeout(tick, 0.1);
    };
    setTimeout(tick, 0.1);
  });
  while (inFlight) await Bun.sleep(1);
  const cpu = process.cpuUsage(cpu0);
  const wall = (performance.now() - t0) / 1000;
  lags.sort((a, b) => a - b);
  return {
    qd1SyncsPerSec,
    syncsPerSec: syncs / wall,
    meanSyncUs: syncUs / Math.max(1, syncs),
    writesPerSec: writes / wall,
    lagMaxMs: lags[lags.length - 1] ?? 0,
    lagP99Ms: lags[Math.floor(lags.length * 0.99)] ?? 0,
    cpuUsPerSync: (cpu.user + cpu.system) / Math.max(1, syncs),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pf-fdatasync-"));
  const files: { name: string; fd: number; fh: fs.promises.FileHandle }[] = [];
  for (const name of ["unwritten", "written"]) {
    const path = join(dir, `${name}.img`);
    const p = Bun.spawnSync(["fallocate", "-l", String(FILE_BYTES), path]);
    if (p.exitCode !== 0) throw new Error("fallocate failed");
    const fd = fs.openSync(path, "r+");
    if (name === "written") {
      const zeros = new Uint8Array(8 << 20);
      for (let at = 0; at < FILE_BYTES; at += zeros.byteLength) fs.writeSync(fd, zeros, 0, zeros.byteLength, at);
      fs.fdatasyncSync(fd);
    }
    files.push({ name, fd, fh: await fs.promises.open(path, "r+") });
  }
  const worker = new Worker(URL.createObjectURL(new Blob([WORKER_SRC], { type: "application/javascript" })));
  const modes = (process.env.BENCH_MODES?.split(",") ?? ["inline", "cb", "promise", "worker"]) as Mode[];
  const all = new Map<string, Result[]>();
  try {
    for (let r = 0; r < rounds; r++) {
      for (const m of modes) {
        for (const f of files) {
          const res = await runMode(m, f.fd, f.fh, worker);
          const key = `${m} ${f.name}`;
          all.set(key, [...(all.get(key) ?? []), res]);
          process.stderr.write(`round ${r + 1} ${key}: ${JSON.stringify(res, (_k, v: unknown) => (typeof v === "number" ? Math.round(v * 100) / 100 : v))}\n`);
        }
      }
    }
  } finally {
    worker.terminate();
    for (const f of files) {
      await f.fh.close();
      fs.closeSync(f.fd);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const out = [
    `${rounds} rounds x ${seconds} s per mode, interleaved; medians`,
    "",
    "| mode, file | QD1 write+sync/s | group commit syncs/s | mean sync µs | 4 KiB writes/s | loop lag p99 ms | loop lag max ms | CPU µs per sync (this process) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [m, rs] of all) {
    const md = (f: (x: Result) => number, d = 0) => median(rs.map(f)).toFixed(d);
    out.push(`| ${m} | ${md((x) => x.qd1SyncsPerSec)} | ${md((x) => x.syncsPerSec)} | ${md((x) => x.meanSyncUs)} | ${md((x) => x.writesPerSec)} | ${md((x) => x.lagP99Ms, 2)} | ${md((x) => x.lagMaxMs, 2)} | ${md((x) => x.cpuUsPerSync)} |`);
  }
  process.stdout.write(out.join("\n") + "\n");
}

await main();
