// Fault injection, scenario 2: a network partition. Every host is a network namespace; the link
// of one SDS host goes down while a client on another host writes. The cluster serves on the
// surviving copies (the cut-off SDS's lease runs out, so it serves nothing stale); when the link
// heals, the SDS resyncs, reads return the newest data everywhere and both copies match.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { PF_BIN } from "./helpers/cluster.ts";
import { NetCluster } from "./helpers/net_cluster.ts";
import { expectIdentical, verifyJob, waitPoolDegraded, waitPoolHealthy } from "./helpers/recovery.ts";

let c: NetCluster;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = new NetCluster({
    sdsHosts: 3,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 30s",
    volumes: [{ name: "vol1", size: "128MiB" }],
  });
  await c.start();
  const login = await scli(["--login", "--username", "admin", "--password", "test-admin-pw"]);
  expect(login.code, login.stderr).toBe(0);
}, 180_000);

afterAll(async () => {
  await c?.destroy();
});

test("partition an SDS host during writes, heal it: newest data everywhere, copies identical", async () => {
  const job = verifyJob(c.nbdUri("vol1"), { sizeMiB: 96, rateIops: 1200 });
  const writing = c.run("h0", ["fio", ...job]);
  await Bun.sleep(1500);
  c.net.partition("h2");
  await waitPoolDegraded(scli, 20_000);
  await Bun.sleep(2000);
  c.net.heal("h2");
  const w = await writing;
  expect(w.code, w.stdout + w.stderr).toBe(0);
  await waitPoolHealthy(scli, 90_000);
  await expectIdentical(scli, "vol1");
  const verify = await c.run("h0", ["fio", ...job, "--verify_only"]);
  expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  const sds = await c.run("h0", [PF_BIN, "scli", "--query_all_sds"]);
  expect(sds.stdout.match(/Connected/g)?.length).toBe(3);
}, 300_000);
