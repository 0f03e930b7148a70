// Fault injection, scenario 1: kill -9 an SDS while a client writes. The client sees no IO
// error; the cluster rebuilds two copies by itself; then losing an SDS that holds copies of the
// rebuilt extents still loses nothing. Real processes, real fio with crc32c verification.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitPoolDegraded, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 4,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 3s",
    volumes: [{ name: "vol1", size: "128MiB" }],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

test("kill -9 of an SDS during a write job: no IO error, rebuild restores two copies", async () => {
  const job = verifyJob(c.nbdUri("vol1"), { sizeMiB: 96, rateIops: 1200 });
  const writing = runFio(job, { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  c.killRole("sds sds2");
  const result = await writing; // throws on any fio error, verify included
  expect(result.json.jobs[0]!.error).toBe(0);
  await waitPoolHealthy(scli, 90_000);
  await expectIdentical(scli, "vol1");
}, 240_000);

test("then losing an SDS that holds rebuilt copies still loses nothing", async () => {
  c.killRole("sds sds3");
  await waitPoolDegraded(scli, 30_000);
  const r = await run(["fio", ...verifyJob(c.nbdUri("vol1"), { sizeMiB: 96 }), "--verify_only"], { timeoutMs: 120_000 });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  await waitPoolHealthy(scli, 90_000);
  await expectIdentical(scli, "vol1");
}, 240_000);
