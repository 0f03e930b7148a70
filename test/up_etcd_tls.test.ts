// `pf up` with an embedded etcd and no certificates in the file (mdm.etcd.tls auto, the default):
// three hosts of one file on 127.0.0.31..33 (h1: MDM, two SDSs, SDC; t2, t3: etcd tie-breakers),
// each its own pf up with its own data dir. Each host derives the etcd CA from cluster.secret and
// makes its own CA certificate and member certificate, so the three members authenticating each
// other as peers (a 3-member cluster with --peer-client-cert-auth reaching quorum) is the proof
// that certificates of one host verify on another. Then, as an intruder and as an operator:
// - every member serves https only and demands a client certificate: a TLS client without one,
//   and plain http, are refused;
// - a client certificate this test derives from the secret by itself (a "fourth host") is
//   accepted by every member (Go's verifier), and the MDM's own client certificate works too;
// - the keys are 0600 in a 0700 DATA_DIR/etcd-tls, the summary says etcd is secured and where;
// - a restarted host makes new certificates and its member is taken back by the others;
// - the cluster works as before: the MDM leads, the volume is exported, qemu-io writes and reads
//   it back.
// Every process is killed by PID, pass or fail.

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { makeEtcdAutoTls } from "../src/cmd/up_etcd_tls.ts";
import { isPfError } from "../src/proto/errors.ts";
import { EtcdClient } from "../src/store/etcd_client.ts";
import { freePort } from "./helpers/cluster.ts";
import { killUps, startUp, waitOut } from "./helpers/pf_up.ts";
import { nbdUri, runQemuIo } from "./helpers/real_clients.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-up-etcd-tls-"));
const procs: Subprocess[] = [];
const SECRET = "up-etcd-tls-cluster-secret-0123";
const ADDR = { h1: "127.0.0.31", t2: "127.0.0.32", t3: "127.0.0.33" } as const;

afterAll(() => {
  killUps(procs);
  rmSync(dir, { recursive: true, force: true });
});

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isPfError(e)) return e.code;
    throw e;
  }
  return "no error";
}

test("pf up secures its embedded etcd by itself: 3 members on 3 hosts' own certificates, no client certificate and plain http refused, a derived one accepted; the cluster serves IO", async () => {
  const [mdmPort, clientPort, peerPort, nbdPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const sds = [await freePort(), await freePort()];
  const sdsControl = [await freePort(), await freePort()];
  const sdcControl = await freePort();
  const data = { h1: join(dir, "h1"), t2: join(dir, "t2"), t3: join(dir, "t3") };
  const mdmCa = join(data.h1, "mdm", "tls", "ca.pem");
  const name = `etls${process.pid}`;
  const file = join(dir, "cluster.yaml");
  writeFileSync(
    file,
    [
      `cluster: { name: ${name}, secret: ${SECRET}, adminPassword: up-etcd-tls-admin }`,
      "mdm:",
      `  port: ${mdmPort}`,
      `  ca: ${mdmCa}`,
      `  etcd: { embedded: true, clientPort: ${clientPort}, peerPort: ${peerPort}, unsafeNoFsync: true }`,
      "hosts:",
      `  - name: h1`,
      `    address: ${ADDR.h1}`,
      "    mdm: true",
      "    sds:",
      ...sds.map((p, i) => `      - { name: s${i + 1}, port: ${p}, controlPort: ${sdsControl[i]}, pool: pd1/sp1, devices: [{ path: s${i + 1}/dev0.img, size: 256MiB }] }`),
      `    sdc: { nbd: ${ADDR.h1}:${nbdPort}, control: ${ADDR.h1}:${sdcControl} }`,
      `  - { name: t2, address: ${ADDR.t2}, etcd: true }`,
      `  - { name: t3, address: ${ADDR.t3}, etcd: true }`,
      "protectionDomains:",
      "  - { name: pd1, storagePools: [{ name: sp1, sparePercentage: 10, extentSize: 16MiB, granularity: 64MiB }] }",
      "volumes:",
      "  - { name: vol1, pool: pd1/sp1, size: 64MiB, type: thin, mapTo: [{ host: h1, accessMode: ReadWrite }] }",
      "",
    ].join("\n"),
  );
  // every host's pf up at once: the MDM waits for an etcd quorum, the tie-breakers for the MDM
  const ups = { h1: startUp(procs, file, data.h1, { host: "h1" }), t2: startUp(procs, file, data.t2, { host: "t2" }), t3: startUp(procs, file, data.t3, { host: "t3" }) };
  for (const h of ["h1", "t2", "t3"] as const) await waitOut(ups[h], new RegExp(`pf is up on host ${h}`), 120_000);
  const tlsDir = (h: keyof typeof data) => join(data[h], "etcd-tls");
  const endpoints = (["h1", "t2", "t3"] as const).map((h) => `https://${ADDR[h]}:${clientPort}`);

  // logs and summary say it is secured and where the files are
  expect(ups.h1.out()).toContain(`etcd secured: https with client and peer certificate auth, CA derived from cluster.secret (mdm.etcd.tls: auto); CA ${join(tlsDir("h1"), "ca.pem")}`);
  expect(ups.h1.out()).toContain(`  etcd:  ${endpoints.join(",")}   (secured: TLS + client certificates, CA derived from cluster.secret)`);
  expect(ups.h1.out()).toContain(`--cacert ${join(tlsDir("h1"), "ca.pem")} --cert ${join(tlsDir("h1"), "mdm-client.pem")} --key ${join(tlsDir("h1"), "mdm-client-key.pem")}`);
  // the member runs https only with client and peer certificate auth; the MDM got its client files
  const etcdPid = Number((await waitOut(ups.h1, /started etcd \(pid (\d+)\)/, 1000))[1]);
  const etcdArgv = readFileSync(`/proc/${etcdPid}/cmdline`, "utf8").split("\0");
  for (const f of ["--client-cert-auth", "--peer-client-cert-auth", `https://${ADDR.h1}:${clientPort}`, `https://${ADDR.h1}:${peerPort}`, join(tlsDir("h1"), "member.pem")]) expect(etcdArgv).toContain(f);
  expect(etcdArgv.join(" ")).not.toContain("http://");
  const mdmPid = Number((await waitOut(ups.h1, /started mdm \(pid (\d+)\)/, 1000))[1]);
  const mdmArgv = readFileSync(`/proc/${mdmPid}/cmdline`, "utf8").split("\0");
  expect(mdmArgv.slice(mdmArgv.indexOf("--etcd-cacert"), mdmArgv.indexOf("--etcd-cacert") + 6)).toEqual(["--etcd-cacert", join(tlsDir("h1"), "ca.pem"), "--etcd-cert", join(tlsDir("h1"), "mdm-client.pem"), "--etcd-key", join(tlsDir("h1"), "mdm-client-key.pem")]);
  // file modes: keys 0600, the directory 0700; the CA key itself is never written
  expect(statSync(tlsDir("h1")).mode & 0o777).toBe(0o700);
  for (const k of ["member-key.pem", "mdm-client-key.pem"]) expect(statSync(join(tlsDir("h1"), k)).mode & 0o777).toBe(0o600);
  expect(statSync(join(tlsDir("t2"), "member-key.pem")).mode & 0o777).toBe(0o600);
  // each host made its own CA certificate
  const caOf = (h: keyof typeof data) => readFileSync(join(tlsDir(h), "ca.pem"), "utf8");
  expect(new Set([caOf("h1"), caOf("t2"), caOf("t3")]).size).toBe(3);

  // a certificate this test derives from the secret by itself, trusting t3's CA file: every member
  // (each with its own CA file) accepts it, and the three members are one cluster
  const fourth = makeEtcdAutoTls(SECRET, { dir, caFile: "", member: null, mdmClient: { certFile: "", keyFile: "" } }, { hostName: "test", localAddresses: [] }).mdmClient!;
  for (const ep of endpoints) {
    const c = new EtcdClient({ endpoints: [ep], security: { caPem: caOf("t3"), certPem: fourth.certPem, keyPem: fourth.keyPem } });
    expect(await c.get(`/pf/${name}/mdm/leader`)).not.toBeNull();
  }
  const members = (await (await fetch(`${endpoints[1]}/v3/cluster/member/list`, { method: "POST", body: "{}", tls: { ca: caOf("t2"), cert: fourth.certPem, key: fourth.keyPem } } as RequestInit)).json()) as { members: { name: string; peerURLs: string[] }[] };
  expect(members.members.map((m) => m.name).sort()).toEqual(["h1", "t2", "t3"]);
  for (const m of members.members) expect(m.peerURLs[0]).toStartWith("https://");
  // the MDM's own client certificate (made on h1) works against t2's member
  const mdmClient = new EtcdClient({ endpoints: [endpoints[1]!], security: { caPem: caOf("h1"), certPem: readFileSync(join(tlsDir("h1"), "mdm-client.pem"), "utf8"), keyPem: readFileSync(join(tlsDir("h1"), "mdm-client-key.pem"), "utf8") } });
  expect((await mdmClient.range(`/pf/${name}/`, { prefix: true, countOnly: true })).count).toBeGreaterThan(5);

  // an intruder: no client certificate, plain http, a certificate of another secret
  for (const ep of endpoints) {
    expect(await errorCode(new EtcdClient({ endpoints: [ep], security: { caPem: caOf("h1") } }).get(`/pf/${name}/mdm/leader`))).toBe("UNAVAILABLE");
    expect(["UNAVAILABLE", "INTERNAL"]).toContain(await errorCode(new EtcdClient({ endpoints: [ep.replace("https:", "http:")] }).get(`/pf/${name}/mdm/leader`)));
  }
  const evil = makeEtcdAutoTls("another-cluster-secret-0123456", { dir, caFile: "", member: null, mdmClient: { certFile: "", keyFile: "" } }, { hostName: "evil", localAddresses: [] }).mdmClient!;
  expect(await errorCode(new EtcdClient({ endpoints: [endpoints[0]!], security: { caPem: caOf("h1"), certPem: evil.certPem, keyPem: evil.keyPem } }).get(`/pf/${name}/mdm/leader`))).toBe("UNAVAILABLE");
  const bare = await fetch(`${endpoints[0]}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: Buffer.from(`/pf/${name}/cluster`).toString("base64") }), tls: { rejectUnauthorized: false } } as RequestInit).then(
    (r) => `HTTP ${r.status}`,
    (e: Error) => `refused: ${e.message}`,
  );
  expect(bare).toStartWith("refused");

  // a restart of t2 makes new member certificates (every start does); the others take it back
  const before = caOf("t2");
  ups.t2.proc.kill("SIGTERM");
  expect(await ups.t2.proc.exited).toBe(0);
  ups.t2 = startUp(procs, file, data.t2, { host: "t2" });
  await waitOut(ups.t2, /pf is up on host t2/, 60_000);
  expect(caOf("t2")).not.toBe(before);
  const t2 = new EtcdClient({ endpoints: [endpoints[1]!], security: { caPem: caOf("h1"), certPem: fourth.certPem, keyPem: fourth.keyPem } });
  await t2.put(`/test/${name}/after-restart`, "1");
  expect((await new EtcdClient({ endpoints: [endpoints[2]!], security: { caPem: caOf("t3"), certPem: fourth.certPem, keyPem: fourth.keyPem } }).get(`/test/${name}/after-restart`))?.value).toBe("1");

  // the cluster works as before: the MDM leads and the volume takes IO through the SDC
  const role = (await (await fetch(`https://${ADDR.h1}:${mdmPort}/api/pf/mdmRole`, { tls: { ca: readFileSync(mdmCa, "utf8") } } as RequestInit)).json()) as { kind: string; role: string };
  expect(role).toMatchObject({ kind: "etcd", role: "leader" });
  const uri = nbdUri(nbdPort, "vol1", ADDR.h1);
  await runQemuIo(uri, ["write -P 0x5a 0 1M", "write -P 0xa5 20M 64k"]);
  await runQemuIo(uri, ["read -P 0x5a 0 1M", "read -P 0xa5 20M 64k"]);

  for (const h of ["h1", "t2", "t3"] as const) ups[h].proc.kill("SIGTERM");
  for (const h of ["h1", "t2", "t3"] as const) expect(await ups[h].proc.exited).toBe(0);
}, 240_000);
