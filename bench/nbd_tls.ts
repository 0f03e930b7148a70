// The cost of NBD over TLS on the SDC's NBD front end: fio (nbd engine) against pf's NBD server
// backed by a RAM export, once in plaintext and once over TLS (nbds://, STARTTLS + X.509), in one
// run, same server process; prints IOPS / MiB/s of each and the TLS/plain ratio, and the time
// to open a connection (greeting to the LIST answer) with and without the STARTTLS upgrade.
// A RAM backend makes this the worst case: over the whole pf stack the same absolute cost is a
// smaller share.
//
//   npx bun bench/nbd_tls.ts [--seconds 5] [--rounds 3] [--jobs randread4k,randwrite4k,read1m,write1m]
// Each round runs plain then TLS (odd rounds) or TLS then plain (even rounds); the medians are
// printed, so that a neighbour's load burst hits both sides alike.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { parseArgs } from "node:util";
import { ClientFlag, GREETING_BYTES, Opt, encodeClientFlags, encodeOptionRequest } from "../src/proto/nbd.ts";
import { startNbdServer } from "../src/sdc/nbd_server.ts";
import { loadNbdTls } from "../src/sdc/nbd_tls.ts";
import { requireTool, runFio, type FioResult } from "../test/helpers/real_clients.ts";
import { ramExport } from "./ram_export.ts";

const MiB = 1024 * 1024;

const JOBS: Record<string, { rw: string; bs: string; iodepth: number }> = {
  randread4k: { rw: "randread", bs: "4k", iodepth: 16 },
  randwrite4k: { rw: "randwrite", bs: "4k", iodepth: 16 },
  read1m: { rw: "read", bs: "1M", iodepth: 16 },
  write1m: { rw: "write", bs: "1M", iodepth: 16 },
};

interface Figures {
  iops: number;
  mibps: number;
}

function figures(f: FioResult): Figures {
  let iops = 0;
  let bytes = 0;
  for (const j of f.json.jobs) {
    iops += j.read.iops + j.write.iops;
    bytes += j.read.bw_bytes + j.write.bw_bytes;
  }
  return { iops, mibps: bytes / MiB };
}

async function fio(uri: string, job: string, seconds: number, home: string): Promise<Figures> {
  const j = JOBS[job];
  if (j === undefined) throw new Error(`unknown job ${job}: ${Object.keys(JOBS).join(", ")}`);
  const f = await runFio(
    [`--name=${job}`, "--ioengine=nbd", `--uri=${uri}`, `--rw=${j.rw}`, `--bs=${j.bs}`, `--iodepth=${j.iodepth}`, "--size=256M", `--runtime=${seconds}`, "--time_based"],
    { timeoutMs: (seconds + 60) * 1000, env: { HOME: home } },
  );
  return figures(f);
}

/** ms from connect to the end of the LIST answer; with caPem the STARTTLS upgrade comes first. */
function openOnce(port: number, caPem: string | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let phase: "greet" | "starttls" | "list" = "greet";
    const finish = () => {
      const ms = performance.now() - t0;
      sock.destroy();
      resolve(ms);
    };
    const listOn = (w: { write(b: Buffer): unknown; on(e: "data", f: (c: Buffer) => void): unknown }) => {
      let got = Buffer.alloc(0);
      w.on("data", (c: Buffer) => {
        got = Buffer.concat([got, c]);
        // one SERVER reply (20 + 4 + 5) then the ACK (20)
        if (got.length >= 20 + 4 + 5 + 20) finish();
      });
      w.write(encodeOptionRequest(Opt.LIST));
    };
    sock.on("error", reject);
    sock.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (phase === "greet" && buf.length >= GREETING_BYTES) {
        sock.write(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES));
        buf = buf.subarray(GREETING_BYTES);
        if (caPem === null) {
          phase = "list";
          sock.removeAllListeners("data");
          listOn(sock);
          return;
        }
        phase = "starttls";
        sock.write(encodeOptionRequest(Opt.STARTTLS));
      }
      if (phase === "starttls" && buf.length >= 20) {
        phase = "list";
        sock.removeAllListeners("data");
        const ts = tlsConnect({ socket: sock, ca: caPem ?? undefined, servername: "localhost" }, () => listOn(ts));
        ts.on("error", reject);
      }
    });
  });
}

async function openCost(port: number, caPem: string | null, n: number): Promise<number> {
  for (let i = 0; i < 5; i++) await openOnce(port, caPem); // warm up
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await openOnce(port, caPem));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? 0;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rounds: { type: "string", default: "3" }, jobs: { type: "string", default: "randread4k,randwrite4k,read1m,write1m" } } });
const seconds = Number(values.seconds);
const rounds = Math.max(1, Number(values.rounds));
requireTool("fio");

const dir = mkdtempSync(join(tmpdir(), "pf-bench-nbd-tls-"));
try {
  const tls = loadNbdTls({ mode: "on", dir: join(dir, "tls"), listenHost: "127.0.0.1", verifyPeer: false });
  const home = join(dir, "home");
  mkdirSync(join(home, ".pki", "libnbd"), { recursive: true });
  writeFileSync(join(home, ".pki", "libnbd", "ca-cert.pem"), tls.caPem);
  const exp = ramExport("bench", 1024 * MiB);
  // one server, mode on: the same process serves both the plaintext and the TLS runs
  const server = await startNbdServer({ host: "127.0.0.1", port: 0, registry: { get: (n) => (n === "bench" ? exp : undefined), list: () => [exp] }, tls });
  try {
    const plainUri = `nbd://127.0.0.1:${server.port}/bench`;
    const tlsUri = `nbds://127.0.0.1:${server.port}/bench`;
    console.log(`bench/nbd_tls: fio nbd engine QD16, RAM export, ${seconds} s per run, median of ${rounds} rounds, Bun ${Bun.version}`);
    console.log("job            plain IOPS   plain MiB/s   TLS IOPS   TLS MiB/s   TLS/plain");
    for (const job of (values.jobs ?? "").split(",").filter((j) => j.length > 0)) {
      const p: Figures[] = [];
      const t: Figures[] = [];
      for (let r = 0; r < rounds; r++) {
        if (r % 2 === 0) {
          p.push(await fio(plainUri, job, seconds, home));
          t.push(await fio(tlsUri, job, seconds, home));
        } else {
          t.push(await fio(tlsUri, job, seconds, home));
          p.push(await fio(plainUri, job, seconds, home));
        }
      }
      const plain = { iops: median(p.map((x) => x.iops)), mibps: median(p.map((x) => x.mibps)) };
      const secure = { iops: median(t.map((x) => x.iops)), mibps: median(t.map((x) => x.mibps)) };
      const ratio = plain.iops > 0 ? secure.iops / plain.iops : 0;
      console.log(
        `${job.padEnd(14)} ${plain.iops.toFixed(0).padStart(10)} ${plain.mibps.toFixed(1).padStart(13)} ${secure.iops.toFixed(0).padStart(10)} ${secure.mibps.toFixed(1).padStart(11)} ${ratio.toFixed(3).padStart(11)}`,
      );
    }
    const plainOpen = await openCost(server.port, null, 50);
    const tlsOpen = await openCost(server.port, tls.caPem, 50);
    console.log(`connection open to LIST answer (median of 50): plain ${plainOpen.toFixed(2)} ms, STARTTLS ${tlsOpen.toFixed(2)} ms (+${(tlsOpen - plainOpen).toFixed(2)} ms)`);
  } finally {
    await server.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
