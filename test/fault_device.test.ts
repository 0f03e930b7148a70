// Fault injection, scenario 5: a device starts failing (every read, write and sync on its block
// file returns EIO, through the SDS's fault-injection layer armed by PF_FAULT_DEVICE_FILE). The
// SDS marks it Failed, the MDM rebuilds its copies elsewhere at once (no grace: the data is
// gone), and the client sees no error.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitPoolDegraded, waitPoolHealthy } from "./helpers/recovery.ts";

const faultFile = join(tmpdir(), `pf-fault-${process.pid}-${Date.now()}`);
let c: TestCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 2,
    deviceSize: "128MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 30s",
    env: { PF_FAULT_DEVICE_FILE: faultFile },
    volumes: [{ name: "vol1", size: "128MiB" }],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  rmSync(faultFile, { force: true });
  await c?.destroy();
});

test("a failing device is rebuilt elsewhere while the client keeps writing", async () => {
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "before", sizeMiB: 128 }));
  // the job covers the whole volume, so it surely touches copies on the failing device
  const during = verifyJob(c.nbdUri("vol1"), { name: "during", sizeMiB: 128, rateIops: 2500 });
  const writing = runFio(during, { timeoutMs: 120_000 });
  await Bun.sleep(500);
  writeFileSync(faultFile, "sds2/dev0.img");
  await waitPoolDegraded(scli, 20_000);
  const r = await writing;
  expect(r.json.jobs[0]!.error).toBe(0);
  await waitPoolHealthy(scli, 90_000);
  const sds = await scli(["--query_sds", "--sds_name", "sds2"]);
  expect(sds.stdout).toMatch(/Failed/);
  // the SDS's reason for the operator, not only in its own log
  expect(sds.stdout).toMatch(/Error: injected (read|write|fdatasync) error on .*sds2\/dev0\.img/);
  await expectIdentical(scli, "vol1");
  const v = await run(["fio", ...during, "--verify_only"]);
  expect(v.exitCode, v.stdout + v.stderr).toBe(0);
}, 240_000);
