// A thin pool that runs out of physical space: the client gets ENOSPC, and nothing written
// before is lost or corrupted; the servers keep running.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runQemuIo } from "./helpers/real_clients.ts";

let c: TestCluster;

beforeAll(async () => {
  // 3 SDS x 1 x 48 MiB = 144 MiB raw, about 72 MiB of mirrored space; the thin volume is 512 MiB.
  c = await TestCluster.create({
    devicesPerSds: 1,
    deviceSize: "48MiB",
    sparePercentage: 0,
    volumes: [{ name: "big", size: "512MiB", type: "thin" }],
  });
  await c.start();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

test("filling a thin pool gives ENOSPC and keeps earlier data", async () => {
  const uri = c.nbdUri("big");
  await runQemuIo(uri, ["write -P 0x77 0 4M", "flush"]);
  const fill = await run([
    "fio", "--name=fill", "--ioengine=nbd", `--uri=${uri}`, "--rw=write", "--bs=1M", "--iodepth=4",
    "--offset=16M", "--size=400M",
  ]);
  expect(fill.exitCode).not.toBe(0);
  expect(fill.stdout + fill.stderr).toMatch(/No space left on device|ENOSPC|error=28/i);
  await runQemuIo(uri, ["read -P 0x77 0 4M"]);
  // still serving: a write into already-allocated space succeeds
  await runQemuIo(uri, ["write -P 0x78 0 64k", "read -P 0x78 0 64k"]);
}, 180_000);
