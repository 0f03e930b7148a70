// Benchmark of the NBD front end alone: fio (nbd engine, 4k, QD16) against pf's NBD server backed
// by a RAM export, and against `nbdkit memory` as the reference. Prints IOPS and the ratio.
//
//   npx bun bench/nbd_frontend.ts [--seconds 5] [--rw randwrite,randread]

import { parseArgs } from "node:util";
import { startNbdServer } from "../src/sdc/nbd_server.ts";
import { fioIops, nbdUri, requireTool, run, runFio } from "../test/helpers/real_clients.ts";
import { ramExport } from "./ram_export.ts";

const MiB = 1024 * 1024;

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

async function fio(uri: string, rw: string, seconds: number): Promise<number> {
  const f = await runFio(
    [`--name=${rw}`, "--ioengine=nbd", `--uri=${uri}`, `--rw=${rw}`, "--bs=4k", "--iodepth=16", "--size=256M", `--runtime=${seconds}`, "--time_based"],
    { timeoutMs: (seconds + 60) * 1000 },
  );
  return fioIops(f);
}

const { values } = parseArgs({ options: { seconds: { type: "string", default: "5" }, rw: { type: "string", default: "randwrite,randread" } } });
const seconds = Number(values.seconds);
requireTool("fio");
requireTool("nbdkit");

const exp = ramExport("bench", 1024 * MiB);
const server = await startNbdServer({ host: "127.0.0.1", port: 0, registry: { get: (n) => (n === "bench" ? exp : undefined), list: () => [exp] } });
const kitPort = await freePort();
const kit = Bun.spawn(["nbdkit", "-f", "-p", String(kitPort), "-i", "127.0.0.1", "memory", "1G"], { stdout: "ignore", stderr: "inherit" });
try {
  for (let i = 0; i < 50; i++) {
    const probe = await run(["nbdinfo", "--size", nbdUri(kitPort)], { timeoutMs: 2000 });
    if (probe.exitCode === 0) break;
    await Bun.sleep(100);
  }
  for (const rw of (values.rw ?? "randwrite").split(",")) {
    const ours = await fio(nbdUri(server.port, "bench"), rw, seconds);
    const theirs = await fio(nbdUri(kitPort), rw, seconds);
    process.stdout.write(
      `${rw} 4k QD16: pf ${Math.round(ours)} IOPS, nbdkit memory ${Math.round(theirs)} IOPS, ratio ${(ours / theirs).toFixed(2)}\n`,
    );
  }
} finally {
  kit.kill();
  await kit.exited;
  await server.stop();
}
