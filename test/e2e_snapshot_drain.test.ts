// Drain of an SDS that holds layered extents: a volume with two snapshots (one read-only, one
// writable clone that took writes of its own) on 4 SDSs; `scli --remove_sds` under fio verify load
// moves every copy off the SDS with every layer (REBUILD_OWNERS + one REBUILD_WRITE per layer), the
// client sees no error, and afterwards each layer is identical copy against copy and the
// snapshots compare identical to images saved when they were taken (qemu-img compare).

import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio, runQemuImg, runQemuIo } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitFor, waitPoolHealthy } from "./helpers/recovery.ts";
import { Rest } from "./helpers/rest.ts";
import { mapAndWait as mapTo, snapshotNamed as snap } from "./helpers/snapshots.ts";

let c: TestCluster;
let rest: Rest;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 4,
    devicesPerSds: 1,
    deviceSize: "512MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 3s",
    volumes: [{ name: "dv", size: "64MiB" }],
  });
  await c.start();
  await c.login();
  rest = await Rest.login(c);
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

test("remove_sds drains every layer of a snapshotted volume under fio; snapshots and clone verify afterwards", async () => {
  const uri = c.nbdUri("dv");
  const ro = join(c.dir, "dv-ro.img");
  const clone = join(c.dir, "dv-clone.img");
  await runFio(verifyJob(uri, { name: "p1", sizeMiB: 64, bs: "64k" }));
  await runQemuImg(["convert", "-f", "raw", "-O", "raw", uri, ro]);
  await snap(rest, "dv", "dv-ro", true);
  await snap(rest, "dv", "dv-clone", false);
  await mapTo(c, rest, "dv-clone", "ReadWrite");
  // the clone diverges in its own layer (partial writes: copy-on-write from the shared parent)
  await runQemuIo(c.nbdUri("dv-clone"), ["write -P 0x5c 3M 8k", "write -P 0x5d 40M 1M", "flush"]);
  await runQemuImg(["convert", "-f", "raw", "-O", "raw", c.nbdUri("dv-clone"), clone]);
  // the volume takes new writes over the shared chunks while the drain runs
  const writing = runFio([...verifyJob(uri, { name: "p2", offsetMiB: 8, sizeMiB: 32, rateIops: 800 }), "--randseed=5"], { timeoutMs: 120_000 });
  await Bun.sleep(1000);
  const r = await scli(["--remove_sds", "--sds_name", "sds4"]);
  expect(r.code, r.stderr).toBe(0);
  const result = await writing; // throws on any fio error, verify included
  expect(result.json.jobs[0]!.error).toBe(0);
  await waitFor("sds4 to be removed", 90_000, async () => {
    const q = await scli(["--query_all_sds"]);
    return q.code === 0 && !q.stdout.includes("sds4");
  });
  await waitPoolHealthy(scli, 60_000);
  for (const v of ["dv", "dv-ro", "dv-clone"]) await expectIdentical(scli, v);
  await mapTo(c, rest, "dv-ro", "ReadOnly");
  await runQemuImg(["compare", "-f", "raw", "-F", "raw", ro, c.nbdUri("dv-ro")]);
  await runQemuImg(["compare", "-f", "raw", "-F", "raw", clone, c.nbdUri("dv-clone")]);
  await runQemuIo(c.nbdUri("dv-clone"), ["read -P 0x5c 3M 8k", "read -P 0x5d 40M 1M"]);
}, 240_000);
