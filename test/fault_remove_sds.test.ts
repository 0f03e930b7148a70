// Fault injection, scenario 6: remove an SDS with scli while a client writes: its copies are
// moved off it first (drain), the client sees no error, then the SDS is gone. Removing one
// that the rest of the pool cannot absorb is refused.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitFor, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 4,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 5s",
    volumes: [{ name: "vol1", size: "320MiB", type: "thick" }],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  // PF_TEST_OUTPUT=file keeps pf up's whole output (every role's log) for a failing run
  if (process.env.PF_TEST_OUTPUT && c) await Bun.write(process.env.PF_TEST_OUTPUT, c.output);
  await c?.destroy();
});

test("remove_sds under load drains, then removes; the client sees no error", async () => {
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 96, rateIops: 1500 }), { timeoutMs: 120_000 });
  await Bun.sleep(1000);
  const r = await scli(["--remove_sds", "--sds_name", "sds4"]);
  expect(r.code, r.stderr).toBe(0);
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  await waitFor("sds4 to be removed", 90_000, async () => {
    const q = await scli(["--query_all_sds"]);
    return q.code === 0 && !q.stdout.includes("sds4");
  });
  await waitPoolHealthy(scli, 30_000);
  await expectIdentical(scli, "vol1");
}, 240_000);

test("removing an SDS the rest of the pool cannot absorb is refused", async () => {
  // a 320 MiB thick volume takes 640 MiB raw: three SDSs of 256 MiB hold it, two could not
  const r = await scli(["--remove_sds", "--sds_name", "sds3"]);
  expect(r.code).not.toBe(0);
  expect(r.stderr.length).toBeGreaterThan(0);
  const q = await scli(["--query_all_sds"]);
  expect(q.stdout).toContain("sds3");
});
