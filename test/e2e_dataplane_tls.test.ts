// Data-plane TLS end to end (docs/design.md "Data-plane TLS"): the compiled binary's `pf up` with
// `dataPlane: { tls: true }` runs an MDM, 3 SDSs and an SDC whose every data-plane connection
// (SDC->SDS, SDS->SDS, MDM->SDS) is TLS with certificates the MDM issued at join. fio's crc32c
// verify job runs through the SDC; the MDM's consistency check (its own TLS connections)
// finds both copies identical; a plaintext client gets no frame from an SDS; a node started with
// TLS off against this MDM stops with a clear error instead of joining a cluster it cannot reach.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { TestCluster } from "./helpers/cluster.ts";
import { helloPayload, frame, rawConnect } from "./helpers/dataplane_raw.ts";
import { Op } from "../src/proto/dataplane.ts";
import { runFio } from "./helpers/real_clients.ts";

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({ topYaml: "dataPlane: { tls: true }", volumes: [{ name: "vol1", size: "256MiB" }] });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

test("every role says data-plane TLS is on, with a certificate from the MDM", () => {
  expect(c.output).toContain("mdm: data-plane TLS on");
  for (const n of ["sds1", "sds2", "sds3"]) expect(c.output).toMatch(new RegExp(`sds ${n} \\([0-9a-f]{16}\\): data-plane TLS on`));
  expect(c.output).toMatch(/sdc [0-9a-f]{16}: data-plane TLS on/);
});

test("fio randwrite 4k QD16 with crc32c verify through the SDC, then both copies are identical", async () => {
  await runFio([
    "--name=verify",
    "--ioengine=nbd",
    `--uri=${c.nbdUri("vol1")}`,
    "--rw=randwrite",
    "--bs=4k",
    "--iodepth=16",
    "--size=48M",
    "--verify=crc32c",
    "--do_verify=1",
    "--verify_fatal=1",
    "--verify_state_save=0",
  ]);
  await runFio(["--name=seq", "--ioengine=nbd", `--uri=${c.nbdUri("vol1")}`, "--rw=write", "--bs=1M", "--iodepth=8", "--offset=64M", "--size=64M", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"]);
  // the consistency check reads checksums of both copies over the MDM's own TLS connections
  const r = await c.scli(["--check_volume_consistency", "--volume_name", "vol1"]);
  expect(r.stderr + r.stdout).toContain("identical");
  expect(r.code).toBe(0);
}, 180_000);

test("a plaintext client gets no frame back from a TLS SDS: the connection is closed", async () => {
  const raw = await rawConnect(c.ports.sds[0]!);
  raw.sock.write(frame({ opcode: Op.HELLO, requestId: 0 }, helloPayload(NodeRole.SDC, "c000000000000001")));
  await Promise.race([raw.closed, Bun.sleep(5000)]);
  expect(raw.isClosed()).toBe(true);
  expect(raw.frames.length).toBe(0);
});

test("an SDC started with --no-data-plane-tls against this MDM stops with a clear mismatch error", async () => {
  const secret = readFileSync(join(c.dataDir, "cluster-secret"), "utf8").trim();
  const proc = Bun.spawn(
    [c.bin, "sdc", "--mdm", c.mdmUrl, "--mdm-ca", c.caFile, "--nbd", "127.0.0.1:0", "--control", "none", "--name", "plain-sdc", "--guid", "plain-sdc-guid", "--no-data-plane-tls"],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, PF_CLUSTER_SECRET: secret, PF_MDM_WAIT_MS: "2000" } },
  );
  const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const code = await proc.exited;
  clearTimeout(killer);
  expect(code).toBe(4); // INVALID_STATE: a conflict the operator resolves, not a crash
  expect(out + err).toContain("data-plane TLS mismatch");
  expect(out + err).toContain("requires TLS on every data-plane connection");
}, 60_000);
