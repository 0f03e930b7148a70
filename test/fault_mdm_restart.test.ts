// Fault injection, scenario 4: kill -9 the MDM during IO and start it again. SDCs and SDSs keep
// their maps, IO never stops, and the MDM comes back with every object and the health of every
// server.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitFor, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 3s, rebuildGrace: 10s",
    volumes: [{ name: "vol1", size: "128MiB" }, { name: "vol2", size: "64MiB", mapped: false }],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

test("kill -9 of the MDM during a write job: IO continues, state intact after restart", async () => {
  const before = await scli(["--query_all_volumes", "--json"]);
  expect(before.code).toBe(0);
  const writing = runFio(verifyJob(c.nbdUri("vol1"), { sizeMiB: 64, rateIops: 1500 }), { timeoutMs: 120_000 });
  await Bun.sleep(1000);
  const argv = c.killRole("mdm");
  await Bun.sleep(1000);
  c.restartRole(argv);
  const result = await writing;
  expect(result.json.jobs[0]!.error).toBe(0);
  // the MDM answers again with the same objects; no SDS was declared lost
  const after = await waitFor("the MDM to answer", 30_000, async () => {
    const r = await scli(["--query_all_volumes", "--json"]);
    return r.code === 0 ? r : null;
  });
  const names = (s: string) => (JSON.parse(s) as { name: string; id: string }[]).map((v) => `${v.id}:${v.name}`).sort();
  expect(names(after.stdout)).toEqual(names(before.stdout));
  const sds = await scli(["--query_all_sds"]);
  expect(sds.stdout.match(/Connected/g)?.length).toBe(3);
  await waitPoolHealthy(scli, 30_000);
  await expectIdentical(scli, "vol1");
}, 240_000);
