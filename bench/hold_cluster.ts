// Start a one-host cluster (like bench/ab.ts: 3 SDSs, one 64 MiB one-extent volume "one" and a 1 GiB
// "big"), fill it, print its NBD URIs, pids and control URLs as JSON, and keep it running until
// SIGTERM/SIGINT: for profiling one build by hand (perf, strace) while fio runs against it.
// Env: HOLD_BIN (default dist/pf), HOLD_WRITE_CACHE (writeBack|writeThrough).
import { TestCluster, PF_BIN } from "../test/helpers/cluster.ts";
import { runFio } from "../test/helpers/real_clients.ts";

const c = await TestCluster.create({ bin: process.env.HOLD_BIN ?? PF_BIN, deviceSize: "1536MiB", extentSize: "64MiB", granularity: "64MiB", volumes: [{ name: "one", size: "64MiB" }] });
await c.start();
await c.login();
const mode = process.env.HOLD_WRITE_CACHE ?? "writeBack";
if (mode !== "writeBack") {
  const r = await c.scli(["--set_storage_pool_write_cache", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--write_cache", mode]);
  if (r.code !== 0) throw new Error(r.stderr);
  await Bun.sleep(3000);
}
await runFio(["--name=fill", "--ioengine=nbd", `--uri=${c.nbdUri("one")}`, "--rw=write", "--bs=1M", "--iodepth=8", "--size=64MiB"], { timeoutMs: 600_000 });
const info = {
  uri: c.nbdUri("one"),
  pids: { sdc: c.pidOf("sdc"), sds1: c.pidOf("sds sds1"), sds2: c.pidOf("sds sds2"), sds3: c.pidOf("sds sds3") },
  control: [0, 1, 2].map((i) => c.sdsControlUrl(i)),
  dir: (c as unknown as { dir: string }).dir,
};
process.stdout.write(JSON.stringify(info) + "\n");
const stop = async () => {
  await c.destroy();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
setInterval(() => {}, 1 << 30);
