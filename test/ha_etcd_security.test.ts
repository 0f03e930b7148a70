// HA mode against a secured etcd: a real etcd (Debian's) serving its clients over TLS only, with
// --client-cert-auth and etcd auth enabled (user pf, role pfrole: readwrite on /pf/), simple tokens
// living 3 s (--auth-token-ttl) so that token renewal happens inside the test. Certificates are
// made here: the CA and the member's server certificate by src/proto/tls_cert.ts (Bun), the MDM's
// client certificate by openssl with a subject that has no CN (etcd's JSON gateway refuses one with a
// CN: CVE-2018-16886). Scenarios:
// 1. the etcd client: kv, txn, lease, watch work with CA + client certificate + user/password;
//    an expired token is renewed; wrong password, no user, a CN'd certificate, a key outside the
//    role's prefix and a plain http endpoint each get an error that says what to fix;
// 2. the YAML (mdm.etcd cacert/cert/key/user/password) refuses TLS with the embedded etcd and with
//    http:// endpoints;
// 3. `pf up` of a YAML with mdm.etcd TLS + auth runs an MDM (compiled dist/pf) that bootstraps the
//    cluster in that etcd and leads; the etcd password is not in its argv;
// 4. `pf up` with the embedded etcd over TLS (memberCert/memberKey, cacert, client cert): its
//    member serves https only and demands a client certificate; the MDM leads through it.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { isPfError } from "../src/proto/errors.ts";
import { generateSelfSignedCert, generateSignedCert } from "../src/proto/tls_cert.ts";
import { EtcdClient, type EtcdSecurity } from "../src/store/etcd_client.ts";
import { EtcdWatch } from "../src/store/etcd_watch.ts";
import { childPids, freePort, PF_BIN } from "./helpers/cluster.ts";
import { EtcdCluster } from "./helpers/etcd.ts";

const USER = "pf";
const PASSWORD = "etcd-pf-password-42";
const ROOT_PASSWORD = "etcd-root-password-42";

let dir: string;
let etcd: EtcdCluster;
let endpoint: string;
let files: { ca: string; cert: string; key: string; cnCert: string; cnKey: string };
let secure: EtcdSecurity;
const procs: Subprocess[] = [];

function openssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr || r.error?.message}`);
}

function etcdctl(args: string[]): string {
  const r = spawnSync("etcdctl", ["--endpoints", endpoint, "--cacert", files.ca, "--cert", files.cert, "--key", files.key, ...args], { encoding: "utf8", env: { ...process.env, ETCDCTL_API: "3" } });
  if (r.status !== 0) throw new Error(`etcdctl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  if (Bun.which("openssl") === null) throw new Error("openssl is required (apt-get install openssl)");
  if (Bun.which("etcdctl") === null) throw new Error("etcdctl is required (apt-get install etcd-client)");
  dir = mkdtempSync(join(tmpdir(), "pf-etcd-sec-"));
  const ca = generateSelfSignedCert({ commonName: "pf-test etcd CA", hosts: [] });
  const server = generateSignedCert({ commonName: "etcd e1", hosts: ["127.0.0.1"], issuer: ca });
  const cn = generateSignedCert({ commonName: "pf-mdm", hosts: [], issuer: ca });
  const w = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text, { mode: 0o600 });
    return f;
  };
  files = { ca: w("ca.pem", ca.certPem), cert: join(dir, "client.pem"), key: join(dir, "client-key.pem"), cnCert: w("cn.pem", cn.certPem), cnKey: w("cn-key.pem", cn.keyPem) };
  const caKey = w("ca-key.pem", ca.keyPem);
  w("server.pem", server.certPem);
  w("server-key.pem", server.keyPem);
  // the MDM's client certificate: no CN in its subject, clientAuth only
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", files.key]);
  openssl(["req", "-new", "-key", files.key, "-subj", "/O=pf-mdm", "-out", join(dir, "client.csr")]);
  w("client-ext.cnf", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n");
  openssl(["x509", "-req", "-in", join(dir, "client.csr"), "-CA", files.ca, "-CAkey", caKey, "-CAcreateserial", "-days", "2", "-extfile", join(dir, "client-ext.cnf"), "-out", files.cert]);

  etcd = await EtcdCluster.start(1, {
    clientScheme: "https",
    waitWritable: false,
    args: ["--cert-file", join(dir, "server.pem"), "--key-file", join(dir, "server-key.pem"), "--trusted-ca-file", files.ca, "--client-cert-auth", "--auth-token", "simple", "--auth-token-ttl", "3"],
  });
  endpoint = etcd.endpoints[0]!;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = spawnSync("etcdctl", ["--endpoints", endpoint, "--cacert", files.ca, "--cert", files.cert, "--key", files.key, "endpoint", "health"], { encoding: "utf8" });
    if (r.status === 0) break;
    if (Date.now() > deadline) throw new Error(`TLS etcd not healthy: ${r.stderr}`);
    await Bun.sleep(200);
  }
  etcdctl(["user", "add", `root:${ROOT_PASSWORD}`]);
  etcdctl(["user", "grant-role", "root", "root"]);
  etcdctl(["user", "add", `${USER}:${PASSWORD}`]);
  etcdctl(["role", "add", "pfrole"]);
  etcdctl(["role", "grant-permission", "pfrole", "--prefix=true", "readwrite", "/pf/"]);
  etcdctl(["user", "grant-role", USER, "pfrole"]);
  etcdctl(["auth", "enable"]);
  secure = { caPem: readFileSync(files.ca, "utf8"), certPem: readFileSync(files.cert, "utf8"), keyPem: readFileSync(files.key, "utf8"), user: USER, password: PASSWORD };
}, 60_000);

afterAll(async () => {
  for (const p of procs) {
    for (const pid of [...childPids(p.pid), p.pid]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
  await etcd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** Run pf up for one host until it says it is up; returns a reader of its output. */
async function upUntilUp(file: string, host: string, dataDir: string): Promise<string> {
  const up = Bun.spawn([PF_BIN, "up", file, "--host", host, "--data-dir", dataDir], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, CONSOLA_LEVEL: "3" } });
  procs.push(up);
  let out = "";
  const dec = new TextDecoder();
  const pump = async (st: ReadableStream<Uint8Array>) => {
    for await (const chunk of st) out += dec.decode(chunk);
  };
  void pump(up.stdout);
  void pump(up.stderr);
  const deadline = Date.now() + 60_000;
  while (!out.includes(`pf is up on host ${host}`)) {
    if (up.exitCode !== null) throw new Error(`pf up exited ${up.exitCode}:\n${out}`);
    if (Date.now() > deadline) throw new Error(`pf up not up in 60 s:\n${out}`);
    await Bun.sleep(100);
  }
  return out;
}

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isPfError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error("expected an error");
}

test("the etcd client speaks TLS with a client certificate and etcd auth: kv, txn, lease and watch; an expired token is renewed", async () => {
  const c = new EtcdClient({ endpoints: [endpoint], security: secure });
  const rev = await c.put("/pf/sec/a", "1");
  expect((await c.get("/pf/sec/a"))?.value).toBe("1");
  const t = await c.txn({ compare: [{ key: "/pf/sec/a", target: "VALUE", result: "EQUAL", value: "1" }], success: [{ put: { key: "/pf/sec/b", value: "2" } }] });
  expect(t.succeeded).toBe(true);
  const lease = await c.leaseGrant(5);
  expect(await c.leaseKeepAlive(lease.id)).toBeGreaterThan(0);
  await c.leaseRevoke(lease.id);
  // a watch over TLS with the token sees a later put
  const seen: string[] = [];
  const watch = new EtcdWatch(c, { prefix: "/pf/sec/", startRevision: rev + 1 }, { onEvents: (evs) => void seen.push(...evs.map((e) => `${e.key}=${e.value}`)), onCompacted: () => {} });
  await c.put("/pf/sec/c", "3");
  const deadline = Date.now() + 5000;
  while (!seen.includes("/pf/sec/c=3") && Date.now() < deadline) await Bun.sleep(50);
  await watch.stop();
  expect(seen).toContain("/pf/sec/b=2");
  expect(seen).toContain("/pf/sec/c=3");
  expect(c.authentications).toBe(1);
  // the simple token lives 3 s unused: the next request meets "invalid auth token", authenticates again
  await Bun.sleep(4500);
  expect((await c.get("/pf/sec/b"))?.value).toBe("2");
  expect(c.authentications).toBe(2);
  // member status (queryMdmCluster's health view) needs no token
  expect((await c.status(endpoint)).version).toMatch(/^3\./);
}, 30_000);

test("a secured etcd's refusals are errors that say what to fix", async () => {
  const wrong = await errorOf(new EtcdClient({ endpoints: [endpoint], security: { ...secure, password: "not-it" } }).get("/pf/x"));
  expect(wrong.code).toBe("UNAUTHORIZED");
  expect(wrong.message).toContain("etcd refused user pf: wrong user name or password");
  const noUser = await errorOf(new EtcdClient({ endpoints: [endpoint], security: { caPem: secure.caPem, certPem: secure.certPem, keyPem: secure.keyPem } }).get("/pf/x"));
  expect(noUser.message).toContain("auth enabled; give mdm.etcd.user and mdm.etcd.password");
  const cnCert = await errorOf(new EtcdClient({ endpoints: [endpoint], security: { ...secure, certPem: readFileSync(files.cnCert, "utf8"), keyPem: readFileSync(files.cnKey, "utf8") } }).get("/pf/x"));
  expect(cnCert.message).toContain("takes no client certificate with a CommonName");
  const outside = await errorOf(new EtcdClient({ endpoints: [endpoint], security: secure }).put("/other/x", "1"));
  expect(outside.message).toContain("needs readwrite on the cluster's prefix");
  expect(() => new EtcdClient({ endpoints: [endpoint.replace("https:", "http:")], security: secure })).toThrow("write https:// endpoints");
  expect(() => new EtcdClient({ endpoints: [endpoint], security: { caPem: secure.caPem, certPem: secure.certPem } })).toThrow("needs its key");
  // no client certificate at all: the TLS handshake fails, as an unreachable etcd
  const noCert = await errorOf(new EtcdClient({ endpoints: [endpoint], security: { caPem: secure.caPem, user: USER, password: PASSWORD } }).get("/pf/x"));
  expect(noCert.code).toBe("UNAVAILABLE");
}, 30_000);

test("the cluster YAML takes mdm.etcd TLS and auth options, and refuses TLS with the embedded etcd or http endpoints", () => {
  const base = (etcdYaml: string) => `
cluster: { name: sec, secret: sec-secret-0123456789abcdef, adminPassword: sec-admin-pw }
mdm: { port: 6611, etcd: ${etcdYaml} }
hosts:
  - { name: m1, address: 127.0.0.21, mdm: true }
`;
  const ok = parseClusterConfig(base(`{ endpoints: [https://127.0.0.1:2379], cacert: /c/ca.pem, cert: /c/c.pem, key: /c/k.pem, user: pf, password: x }`), "sec.yaml");
  expect(ok.mdm.etcd?.cacert).toBe("/c/ca.pem");
  expect(ok.mdm.etcd?.user).toBe("pf");
  expect(() => parseClusterConfig(base(`{ embedded: true, cacert: /c/ca.pem }`), "sec.yaml")).toThrow("pf up makes the embedded etcd's certificates itself");
  expect(() => parseClusterConfig(base(`{ endpoints: [http://127.0.0.1:2379], cacert: /c/ca.pem }`), "sec.yaml")).toThrow("every endpoint must be https://");
  expect(() => parseClusterConfig(base(`{ endpoints: [https://127.0.0.1:2379], cert: /c/c.pem }`), "sec.yaml")).toThrow("needs both cert and key");
  expect(() => parseClusterConfig(base(`{ endpoints: [https://127.0.0.1:2379], password: x }`), "sec.yaml")).toThrow("needs its user");
});

test("pf up with mdm.etcd TLS + auth: the MDM bootstraps the cluster in the secured etcd and leads; the etcd password is not in its argv; kill -9 of it, and the standby takes over through the secured etcd", async () => {
  const port = await freePort();
  const addr = "127.0.0.21";
  const addr2 = "127.0.0.23";
  const dataDir = join(dir, "m1");
  const yaml = `
cluster: { name: sec${process.pid}, secret: sec-secret-0123456789abcdef, adminPassword: sec-admin-pw }
mdm:
  port: ${port}
  ca: ${join(dataDir, "mdm", "tls", "ca.pem")}
  etcd: { endpoints: [${endpoint}], cacert: ${files.ca}, cert: ${files.cert}, key: ${files.key}, user: ${USER}, password: ${PASSWORD} }
hosts:
  - { name: m1, address: ${addr}, mdm: true }
  - { name: m2, address: ${addr2}, mdm: true }
protectionDomains:
  - { name: pd1, storagePools: [{ name: sp1 }] }
`;
  const file = join(dir, "cluster.yaml");
  writeFileSync(file, yaml);
  const out = await upUntilUp(file, "m1", dataDir);
  expect(out).toContain("pf up: created protection domain pd1");
  const role = (await (await fetch(`https://${addr}:${port}/api/pf/mdmRole`, { tls: { ca: readFileSync(join(dataDir, "mdm", "tls", "ca.pem"), "utf8") } } as RequestInit)).json()) as { role: string; term: number };
  expect(role.role).toBe("leader");
  // the cluster's records are in the secured etcd
  const c = new EtcdClient({ endpoints: [endpoint], security: secure });
  const keys = await c.range(`/pf/sec${process.pid}/`, { prefix: true, countOnly: true });
  expect(keys.count).toBeGreaterThan(5);
  expect(await c.get(`/pf/sec${process.pid}/mdm/leader`)).not.toBeNull();
  // the MDM child got the TLS files and the user by flag, the password by environment only
  const m = /started mdm \(pid (\d+)\)/.exec(out);
  expect(m).not.toBeNull();
  const argv = readFileSync(`/proc/${m![1]}/cmdline`, "utf8").split("\0");
  expect(argv).toContain("--etcd-cacert");
  expect(argv).toContain("--etcd-user");
  expect(argv.join(" ")).not.toContain(PASSWORD);
  expect(readFileSync(`/proc/${m![1]}/environ`, "utf8").split("\0")).toContain(`PF_ETCD_PASSWORD=${PASSWORD}`);
  // a second MDM follows by watch (with its token) as a standby, and takes over after kill -9
  await upUntilUp(file, "m2", join(dir, "m2"));
  const ca = readFileSync(join(dataDir, "mdm", "tls", "ca.pem"), "utf8");
  const roleOf = async (a: string) => {
    try {
      return (await (await fetch(`https://${a}:${port}/api/pf/mdmRole`, { tls: { ca }, signal: AbortSignal.timeout(500) } as RequestInit)).json()) as { role: string; term: number };
    } catch {
      return null;
    }
  };
  // (m2's pf up is "up" once any MDM of the list answers: wait for m2's own MDM)
  const standbyBy = Date.now() + 30_000;
  while ((await roleOf(addr2))?.role !== "standby" && Date.now() < standbyBy) await Bun.sleep(100);
  expect((await roleOf(addr2))?.role).toBe("standby");
  const killedAt = performance.now();
  process.kill(Number(m![1]), "SIGKILL");
  let next: { role: string; term: number } | null = null;
  while (performance.now() - killedAt < 10_000) {
    next = await roleOf(addr2);
    if (next?.role === "leader") break;
    await Bun.sleep(50);
  }
  expect(next?.role).toBe("leader");
  expect(next!.term).toBeGreaterThan(role.term);
  process.stderr.write(`secured etcd: kill -9 of m1 -> m2 leads ${Math.round(performance.now() - killedAt)} ms later (term ${role.term} -> ${next!.term})\n`);
}, 120_000);

test("pf up's embedded etcd over TLS: the member serves https with client-certificate auth only, and the MDM leads through it", async () => {
  const addr = "127.0.0.22";
  const member = generateSignedCert({ commonName: "etcd h1", hosts: [addr], issuer: { certPem: readFileSync(files.ca, "utf8"), keyPem: readFileSync(join(dir, "ca-key.pem"), "utf8") } });
  writeFileSync(join(dir, "member.pem"), member.certPem);
  writeFileSync(join(dir, "member-key.pem"), member.keyPem, { mode: 0o600 });
  const [port, clientPort, peerPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = join(dir, "h1");
  const name = `emb${process.pid}`;
  const file = join(dir, "embedded.yaml");
  writeFileSync(
    file,
    `
cluster: { name: ${name}, secret: emb-secret-0123456789abcdef, adminPassword: emb-admin-pw }
mdm:
  port: ${port}
  ca: ${join(dataDir, "mdm", "tls", "ca.pem")}
  etcd: { embedded: true, clientPort: ${clientPort}, peerPort: ${peerPort}, unsafeNoFsync: true, memberCert: ${join(dir, "member.pem")}, memberKey: ${join(dir, "member-key.pem")}, cacert: ${files.ca}, cert: ${files.cert}, key: ${files.key} }
hosts:
  - { name: h1, address: ${addr}, mdm: true }
`,
  );
  const out = await upUntilUp(file, "h1", dataDir);
  const m = /started etcd \(pid (\d+)\)/.exec(out);
  expect(m).not.toBeNull();
  const etcdArgv = readFileSync(`/proc/${m![1]}/cmdline`, "utf8").split("\0");
  expect(etcdArgv).toContain("--client-cert-auth");
  expect(etcdArgv).toContain("--peer-client-cert-auth");
  expect(etcdArgv).toContain(`https://${addr}:${clientPort}`);
  const role = (await (await fetch(`https://${addr}:${port}/api/pf/mdmRole`, { tls: { ca: readFileSync(join(dataDir, "mdm", "tls", "ca.pem"), "utf8") } } as RequestInit)).json()) as { role: string };
  expect(role.role).toBe("leader");
  const url = `https://${addr}:${clientPort}`;
  const withCert = new EtcdClient({ endpoints: [url], security: { caPem: secure.caPem, certPem: secure.certPem, keyPem: secure.keyPem } });
  expect(await withCert.get(`/pf/${name}/mdm/leader`)).not.toBeNull();
  // without a client certificate, or in plain http, the member answers nothing
  const noCert = await errorOf(new EtcdClient({ endpoints: [url], security: { caPem: secure.caPem } }).get(`/pf/${name}/mdm/leader`));
  expect(noCert.code).toBe("UNAVAILABLE");
  const plain = await errorOf(new EtcdClient({ endpoints: [`http://${addr}:${clientPort}`] }).get(`/pf/${name}/mdm/leader`));
  expect(["UNAVAILABLE", "INTERNAL"]).toContain(plain.code);
}, 90_000);
