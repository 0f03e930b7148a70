// `pf up` with mdm.etcd.embedded: it runs this host's etcd member (Debian's etcd; a missing one
// fails the test) as a supervised role: started before the MDM with its data under
// DATA_DIR/etcd, stopped after it; a restart keeps the cluster (the term grows). When etcd is
// not installed (or mdm.etcd.bin names nothing), pf up says what to install, exits 7 (not found)
// and creates nothing. Every process is killed by PID, pass or fail.

import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { childPids, freePort, PF_BIN } from "./helpers/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-up-etcd-"));
const procs: Subprocess[] = [];

afterAll(() => {
  for (const p of procs) for (const pid of [...childPids(p.pid), p.pid]) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
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

function startUp(file: string, dataDir: string, env: Record<string, string> = {}): { proc: Subprocess<"ignore", "pipe", "pipe">; out: () => string } {
  const proc = Bun.spawn([PF_BIN, "up", file, "--data-dir", dataDir], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, CONSOLA_LEVEL: "3", ...env } });
  procs.push(proc);
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += dec.decode(c);
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return { proc, out: () => text };
}

async function waitOut(up: { proc: Subprocess; out: () => string }, re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = up.out().match(re);
    if (m) return m;
    if (up.proc.exitCode !== null) throw new Error(`pf up exited ${up.proc.exitCode}:\n${up.out()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${up.out()}`);
    await Bun.sleep(100);
  }
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

test("pf up runs the host's etcd member as a role: before the MDM, data under DATA_DIR/etcd, stopped with the others; a restart keeps the cluster", async () => {
  const ports = { mdm: await freePort(), client: await freePort(), peer: await freePort() };
  const file = join(dir, "cluster.yaml");
  writeFileSync(file, yaml(ports));
  const dataDir = join(dir, "h1");
  const url = `https://127.0.0.1:${ports.mdm}`;
  const caFile = join(dataDir, "mdm", "tls", "ca.pem");
  let up = startUp(file, dataDir);
  await waitOut(up, /pf is up on host h1/, 60_000);
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

  up = startUp(file, dataDir);
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
  const up = startUp(file, dataDir, { PATH: join(dir, "empty-bin") });
  expect(await up.proc.exited).toBe(7);
  expect(up.out()).toContain("asks pf up to run an etcd member on host h1 (mdm.etcd.embedded: true), but there is no etcd on PATH");
  expect(up.out()).toContain("apt-get install etcd-server");
  expect(existsSync(dataDir)).toBe(false);

  writeFileSync(file, yaml(ports, ", bin: /nonexistent/etcd"));
  const up2 = startUp(file, dataDir);
  expect(await up2.proc.exited).toBe(7);
  expect(up2.out()).toContain("/nonexistent/etcd (mdm.etcd.bin) does not exist");
  expect(existsSync(dataDir)).toBe(false);
}, 60_000);
