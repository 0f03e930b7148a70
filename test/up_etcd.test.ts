// `pf up` with mdm.etcd.embedded: it runs this host's etcd member (Debian's etcd; a missing one
// fails the test) as a supervised role: started before the MDM with its data under
// DATA_DIR/etcd, stopped after it; a restart keeps the cluster (the term grows). When etcd is
// not installed (or mdm.etcd.bin names nothing), pf up says what to install, exits 7 (not found)
// and creates nothing. The member runs with mdm.etcd.tls: off here (plain http); the secured
// default is test/up_etcd_tls.test.ts. Every process is killed by PID, pass or fail.

import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "./helpers/cluster.ts";
import { killUps, startUp, waitOut } from "./helpers/pf_up.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-up-etcd-"));
const procs: Subprocess[] = [];

afterAll(() => {
  killUps(procs);
  rmSync(dir, { recursive: true, force: true });
});

function yaml(ports: { mdm: number; client: number; peer: number }, etcdExtra = ""): string {
  return [
    "cluster: { name: upetcd, secret: up-etcd-cluster-secret-0123, adminPassword: up-etcd-admin-pw }",
    "mdm:",
    `  port: ${ports.mdm}`,
    `  etcd: { embedded: true, clientPort: ${ports.client}, peerPort: ${ports.peer}, unsafeNoFsync: true${etcdExtra} }`,
    "hosts:",
    "  - { name: h1, address: 127.0.0.1, mdm: true }",
    "",
  ].join("\n");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

async function mdmRole(url: string, caFile: string): Promise<{ kind: string; role: string; term: number }> {
  const r = await fetch(`${url}/api/pf/mdmRole`, { tls: { ca: readFileSync(caFile, "utf8") } } as RequestInit);
  return (await r.json()) as { kind: string; role: string; term: number };
}

test("pf up runs the host's etcd member as a role: before the MDM, data under DATA_DIR/etcd, stopped with the others; a restart keeps the cluster (tls: off: plain http)", async () => {
  const ports = { mdm: await freePort(), client: await freePort(), peer: await freePort() };
  const file = join(dir, "cluster.yaml");
  // the secured default (tls auto) is test/up_etcd_tls.test.ts; here the switch that turns it off
  writeFileSync(file, yaml(ports, ", tls: off"));
  const dataDir = join(dir, "h1");
  const url = `https://127.0.0.1:${ports.mdm}`;
  const caFile = join(dataDir, "mdm", "tls", "ca.pem");
  let up = startUp(procs, file, dataDir);
  await waitOut(up, /pf is up on host h1/, 60_000);
  expect(up.out()).toContain("(NOT secured: plain http, no authentication; mdm.etcd.tls: off)");
  expect(existsSync(join(dataDir, "etcd-tls"))).toBe(false);
  const etcdPid = Number((await waitOut(up, /started etcd \(pid (\d+)\)/, 1000))[1]);
  const mdmPid = Number((await waitOut(up, /started mdm \(pid (\d+)\)/, 1000))[1]);
  expect(up.out().indexOf("started etcd")).toBeLessThan(up.out().indexOf("started mdm"));
  const argv = readFileSync(`/proc/${etcdPid}/cmdline`, "utf8").split("\0");
  expect(argv).toContain(join(dataDir, "etcd"));
  expect(argv).toContain(`http://127.0.0.1:${ports.client}`);
  expect(existsSync(join(dataDir, "etcd", "member"))).toBe(true);
  const first = await mdmRole(url, caFile);
  expect(first).toMatchObject({ kind: "etcd", role: "leader" });
  // the MDM's cluster is in that etcd
  const kv = await fetch(`http://127.0.0.1:${ports.client}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from("/pf/upetcd/cluster").toString("base64") }) });
  expect(((await kv.json()) as { count?: string }).count).toBe("1");

  up.proc.kill("SIGTERM");
  expect(await up.proc.exited).toBe(0);
  expect(alive(etcdPid)).toBe(false);
  expect(alive(mdmPid)).toBe(false);

  up = startUp(procs, file, dataDir);
  await waitOut(up, /pf is up on host h1/, 60_000);
  const again = await mdmRole(url, caFile);
  expect(again.role).toBe("leader");
  expect(again.term).toBeGreaterThan(first.term);
  up.proc.kill("SIGTERM");
  expect(await up.proc.exited).toBe(0);
}, 150_000);

test("no etcd installed: pf up names what to install, exits 7 and creates nothing", async () => {
  const ports = { mdm: await freePort(), client: await freePort(), peer: await freePort() };
  const file = join(dir, "missing.yaml");
  writeFileSync(file, yaml(ports));
  const dataDir = join(dir, "none");
  // a PATH without etcd (pf itself is the compiled binary, found by its path)
  const up = startUp(procs, file, dataDir, { env: { PATH: join(dir, "empty-bin") } });
  expect(await up.proc.exited).toBe(7);
  expect(up.out()).toContain("asks pf up to run an etcd member on host h1 (mdm.etcd.embedded: true), but there is no etcd on PATH");
  expect(up.out()).toContain("apt-get install etcd-server");
  expect(existsSync(dataDir)).toBe(false);

  writeFileSync(file, yaml(ports, ", bin: /nonexistent/etcd"));
  const up2 = startUp(procs, file, dataDir);
  expect(await up2.proc.exited).toBe(7);
  expect(up2.out()).toContain("/nonexistent/etcd (mdm.etcd.bin) does not exist");
  expect(existsSync(dataDir)).toBe(false);
}, 60_000);
