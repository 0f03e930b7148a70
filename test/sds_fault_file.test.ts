// End to end with the compiled binary: the PF_FAULT_DEVICE_FILE trigger (src/store/block_fault.ts)
// fails one SDS's device while a client writes with verification. The SDS marks the device
// Failed and answers UNAVAILABLE for its copies, the SDC retries on the MDM's new map, and the
// client sees no IO error; the pool then rebuilds two copies elsewhere.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
let triggerDir: string;
let trigger: string;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  triggerDir = mkdtempSync(join(tmpdir(), "pf-fault-"));
  trigger = join(triggerDir, "trigger");
  c = await TestCluster.create({
    sdsCount: 4,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 3s",
    volumes: [{ name: "vol1", size: "128MiB" }],
    env: { PF_FAULT_DEVICE_FILE: trigger },
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
  rmSync(triggerDir, { recursive: true, force: true });
});

test("a device failing with EIO under a write job: no client error, the copies are rebuilt elsewhere", async () => {
  const job = verifyJob(c.nbdUri("vol1"), { sizeMiB: 96, rateIops: 1200 });
  const writing = runFio(job, { timeoutMs: 120_000 });
  await Bun.sleep(1500);
  writeFileSync(trigger, "sds2/dev0.img");
  const result = await c.explain(writing); // throws on any fio error, verify included (with the cluster's warnings)
  expect(result.json.jobs[0]!.error).toBe(0);
  await c.explain(waitPoolHealthy(scli, 90_000));
  await expectIdentical(scli, "vol1");
  expect(c.output).toContain("fault injection: IO on");
}, 240_000);
