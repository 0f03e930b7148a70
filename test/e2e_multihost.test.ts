// Four hosts as network namespaces, one cluster YAML copied to all: h0 runs the MDM and the SDC,
// h1..h3 one SDS each. A client on h0 writes through the SDC; the data crosses veth links to
// SDSs on other hosts, and both copies of every extent end identical.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { NetCluster } from "./helpers/net_cluster.ts";

let c: NetCluster;

beforeAll(async () => {
  c = new NetCluster({ sdsHosts: 3, deviceSize: "256MiB", volumes: [{ name: "vol1", size: "128MiB" }] });
  await c.start();
  const login = await c.scli(["--login", "--username", "admin", "--password", "test-admin-pw"]);
  expect(login.code).toBe(0);
}, 180_000);

afterAll(async () => {
  await c?.destroy();
});

test("fio verify through an SDC on another host than the SDSs", async () => {
  const r = await c.run("h0", [
    "fio", "--name=mh", "--ioengine=nbd", `--uri=${c.nbdUri("vol1")}`, "--rw=randwrite", "--bs=16k", "--iodepth=16",
    "--size=64M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
  ]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  const sds = await c.scli(["--query_all_sds"]);
  expect(sds.stdout).toContain("sds-h1");
  expect(sds.stdout).toContain("sds-h3");
  const check = await c.scli(["--check_volume_consistency", "--volume_name", "vol1"]);
  expect(check.stdout + check.stderr).toContain("identical");
}, 180_000);
