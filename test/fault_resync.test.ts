// Fault injection, scenario 3: an SDS that comes back within the grace period resyncs only what
// changed while it was away; one that comes back after its extents were rebuilt elsewhere has
// its stale copies discarded. Capacity figures are right in both cases.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runFio } from "./helpers/real_clients.ts";
import { expectIdentical, poolJson, verifyJob, waitFor, waitPoolDegraded, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
const scli = (a: string[]) => c.scli(a);
const GRACE_MS = 8000;

async function inUseKb(): Promise<number> {
  const p = await poolJson(scli);
  return Number(p.statistics?.capacityInUseInKb ?? Number.NaN);
}

/** capacity in use settles (heartbeats carry device usage) at the expected figure */
async function expectInUse(kb: number): Promise<void> {
  await waitFor(`capacity in use to be ${kb} KiB`, 20_000, async () => (await inUseKb()) === kb);
}

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: `heartbeatTimeout: 2s, rebuildGrace: ${GRACE_MS}ms`,
    volumes: [{ name: "vol1", size: "128MiB" }],
  });
  await c.start();
  await c.login();
  await runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 64 }));
  await waitPoolHealthy(scli, 30_000);
}, 180_000);

afterAll(async () => {
  await c?.destroy();
});

test("return within the grace period: resync of what changed, both copies identical", async () => {
  await Bun.sleep(1500); // let heartbeats carry the usage of the first writes
  const before = await inUseKb();
  expect(before).toBeGreaterThan(2 * 60 * 1024); // two copies of ~64 MiB
  const argv = c.killRole("sds sds2");
  await waitPoolDegraded(scli, 20_000);
  // writes while sds2 is away: overwrite part of what exists (no new allocation)
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "degraded", sizeMiB: 8, offsetMiB: 0 }));
  c.restartRole(argv);
  await waitPoolHealthy(scli, 60_000);
  await expectIdentical(scli, "vol1");
  await expectInUse(before);
}, 180_000);

test("return after the grace period: stale copies discarded, space freed", async () => {
  const before = await inUseKb();
  const argv = c.killRole("sds sds3");
  await waitPoolDegraded(scli, 20_000);
  // with 3 SDSs and one gone, the rebuild of sds3's copies lands on the other two
  await waitPoolHealthy(scli, 90_000);
  await Bun.sleep(GRACE_MS);
  c.restartRole(argv);
  // sds3 rejoins holding nothing it is assigned: its old copies are freed, the total is unchanged
  await expectInUse(before);
  await expectIdentical(scli, "vol1");
  const r = await run(["fio", ...verifyJob(c.nbdUri("vol1"), { name: "degraded", sizeMiB: 8, offsetMiB: 0 }), "--verify_only"]);
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
}, 240_000);
