// mdm.etcd.tls auto, the derivation (src/proto/secret_ca.ts, src/cmd/up_etcd_tls.ts): two "hosts"
// given one cluster secret derive the same etcd CA key and each make their own CA certificate;
// a member certificate made on one host and an MDM client certificate made on the other verify
// against either CA certificate (X509 issuer check, openssl verify, and a real mutual-TLS
// handshake on 127.0.0.1); a different secret gives another key, whose certificates are refused.
// The YAML side: tls auto is the default for an embedded etcd (https URLs, files under
// DATA_DIR/etcd-tls), tls: off gives plain http, and contradictions are refused with the field.

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeEtcdAutoTls, type EtcdAutoTlsFiles } from "../src/cmd/up_etcd_tls.ts";
import { planHost, type EtcdAutoTlsPlan } from "../src/cmd/host_plan.ts";
import { etcdEndpointsOf, parseClusterConfig } from "../src/proto/cluster_config.ts";
import { deriveCaKey } from "../src/proto/secret_ca.ts";

const SECRET = "etcd-auto-tls-secret-0123456789";
const plan = (address: string): EtcdAutoTlsPlan => ({
  dir: "/unused",
  caFile: "/unused/ca.pem",
  member: { certFile: "/unused/m.pem", keyFile: "/unused/mk.pem", address },
  mdmClient: { certFile: "/unused/c.pem", keyFile: "/unused/ck.pem" },
});
const hostA = (secret = SECRET) => makeEtcdAutoTls(secret, plan("127.0.0.1"), { hostName: "a", localAddresses: [] });
const hostB = (secret = SECRET) => makeEtcdAutoTls(secret, plan("127.0.0.2"), { hostName: "b", localAddresses: ["127.0.0.1"] });

const spki = (pem: string) => Buffer.from(createPublicKey(pem).export({ type: "spki", format: "der" }));

test("one secret gives one CA key on every host; another secret gives another", () => {
  const k1 = deriveCaKey(SECRET, "pf etcd ca v1");
  const k2 = deriveCaKey(SECRET, "pf etcd ca v1");
  expect(Buffer.from(k1.export({ type: "pkcs8", format: "der" })).equals(Buffer.from(k2.export({ type: "pkcs8", format: "der" })))).toBe(true);
  expect(k1.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  const pub = (k: KeyObject) => Buffer.from(createPublicKey(k).export({ type: "spki", format: "der" }));
  expect(pub(deriveCaKey("another-cluster-secret-012345", "pf etcd ca v1")).equals(pub(k1))).toBe(false);
  expect(pub(deriveCaKey(SECRET, "pf etcd ca v2")).equals(pub(k1))).toBe(false);

  // two hosts: different CA certificates (serial, signature), one subject, one public key
  const a = hostA();
  const b = hostB();
  expect(a.ca.certPem).not.toBe(b.ca.certPem);
  const [caA, caB] = [new X509Certificate(a.ca.certPem), new X509Certificate(b.ca.certPem)];
  expect(caA.serialNumber).not.toBe(caB.serialNumber);
  expect(caA.subject).toBe(caB.subject);
  expect(caA.ca).toBe(true);
  expect(spki(a.ca.certPem).equals(spki(b.ca.certPem))).toBe(true);
  expect(spki(a.ca.certPem).equals(spki(hostA("another-cluster-secret-012345").ca.certPem))).toBe(false);
});

test("certificates made on one host chain to the CA certificate made on another; another secret's do not", () => {
  const a = hostA();
  const b = hostB();
  const evil = hostA("another-cluster-secret-012345");
  const caB = new X509Certificate(b.ca.certPem);
  const memberA = new X509Certificate(a.member!.certPem);
  const clientA = new X509Certificate(a.mdmClient!.certPem);
  for (const leaf of [memberA, clientA]) {
    expect(leaf.checkIssued(caB)).toBe(true);
    expect(leaf.verify(caB.publicKey)).toBe(true);
  }
  expect(new X509Certificate(evil.member!.certPem).verify(caB.publicKey)).toBe(false);
  // the member names its address (and the host's other addresses); the MDM's client has no CN, no SAN entry
  expect(memberA.checkIP("127.0.0.1")).toBe("127.0.0.1");
  const memberB = new X509Certificate(b.member!.certPem);
  expect(memberB.checkIP("127.0.0.2")).toBe("127.0.0.2");
  expect(memberB.checkIP("127.0.0.1")).toBe("127.0.0.1");
  expect(clientA.subject).toBe("O=pf");
  expect(clientA.subject).not.toContain("CN=");

  // openssl (another implementation) agrees
  if (Bun.which("openssl") === null) throw new Error("openssl is required (apt-get install openssl)");
  const dir = mkdtempSync(join(tmpdir(), "pf-etcd-auto-tls-"));
  try {
    const w = (n: string, t: string) => (writeFileSync(join(dir, n), t), join(dir, n));
    const verify = (ca: string, leaf: string) => spawnSync("openssl", ["verify", "-CAfile", ca, leaf], { encoding: "utf8" });
    const ok = verify(w("caB.pem", b.ca.certPem), w("memberA.pem", a.member!.certPem));
    expect(ok.stdout.trim()).toBe(`${join(dir, "memberA.pem")}: OK`);
    expect(verify(join(dir, "caB.pem"), w("clientA.pem", a.mdmClient!.certPem)).status).toBe(0);
    expect(verify(join(dir, "caB.pem"), w("evil.pem", evil.member!.certPem)).status).not.toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A TLS server with host A's member certificate demanding client certificates of its own CA file. */
async function mutualTls(server: EtcdAutoTlsFiles, client: { caPem: string; certPem: string; keyPem: string }): Promise<{ ok: boolean; error: string }> {
  const srv = createServer({ cert: server.member!.certPem, key: server.member!.keyPem, ca: server.ca.certPem, requestCert: true, rejectUnauthorized: true }, (s: TLSSocket) => {
    s.end("hello");
  });
  srv.on("tlsClientError", () => {});
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  try {
    return await new Promise((resolve) => {
      const c = connect({ host: "127.0.0.1", port, ca: client.caPem, cert: client.certPem, key: client.keyPem, servername: undefined, rejectUnauthorized: true });
      let got = "";
      c.on("data", (d) => (got += d.toString()));
      c.on("end", () => resolve({ ok: got === "hello", error: got === "hello" ? "" : "no greeting (refused by the server)" }));
      c.on("error", (e) => resolve({ ok: false, error: e.message }));
    });
  } finally {
    srv.close();
  }
}

test("a real mutual-TLS handshake: host A's member accepts host B's MDM client, and B trusts A's member by its own CA file", async () => {
  const a = hostA();
  const b = hostB();
  const good = await mutualTls(a, { caPem: b.ca.certPem, certPem: b.mdmClient!.certPem, keyPem: b.mdmClient!.keyPem });
  expect(good).toEqual({ ok: true, error: "" });
  // a client certificate of another secret's CA is refused by the member
  const evil = hostB("another-cluster-secret-012345");
  expect((await mutualTls(a, { caPem: b.ca.certPem, certPem: evil.mdmClient!.certPem, keyPem: evil.mdmClient!.keyPem })).ok).toBe(false);
  // and a client trusting another secret's CA refuses the member
  expect((await mutualTls(a, { caPem: evil.ca.certPem, certPem: b.mdmClient!.certPem, keyPem: b.mdmClient!.keyPem })).ok).toBe(false);
}, 30_000);

test("the YAML: an embedded etcd is secured by default (https, files under DATA_DIR/etcd-tls); tls: off is plain http; contradictions name the field", () => {
  const yaml = (etcd: string) =>
    [
      "cluster: { name: c, secret: a-long-shared-secret-1234, adminPassword: pw123456 }",
      `mdm: { etcd: { embedded: true, clientPort: 2479, peerPort: 2480${etcd} } }`,
      "hosts:",
      "  - { name: a, address: 10.0.0.1, mdm: true }",
      "  - { name: b, address: 10.0.0.2, mdm: true, etcd: false }",
      "  - { name: tb, address: 10.0.0.3, etcd: true }",
      "  - { name: tc, address: 10.0.0.4, etcd: true }",
      "",
    ].join("\n");
  const c = parseClusterConfig(yaml(""), "c.yaml");
  expect(etcdEndpointsOf(c)).toEqual(["https://10.0.0.1:2479", "https://10.0.0.3:2479", "https://10.0.0.4:2479"]);
  const a = planHost(c, c.hosts[0]!, "/d", "c.yaml");
  expect(a.etcd?.tls).toEqual({ certFile: "/d/etcd-tls/member.pem", keyFile: "/d/etcd-tls/member-key.pem", caFile: "/d/etcd-tls/ca.pem", clientCertAuth: true });
  expect(a.etcd?.initialCluster).toBe("a=https://10.0.0.1:2480,tb=https://10.0.0.3:2480,tc=https://10.0.0.4:2480");
  expect(a.etcdClient).toEqual({ caFile: "/d/etcd-tls/ca.pem", certFile: "/d/etcd-tls/mdm-client.pem", keyFile: "/d/etcd-tls/mdm-client-key.pem" });
  // an MDM host without a member still gets its client certificate; a tie-breaker only its member's
  const b = planHost(c, c.hosts[1]!, "/d", "c.yaml");
  expect(b.etcd).toBeNull();
  expect(b.etcdAutoTls).toMatchObject({ member: null, mdmClient: { certFile: "/d/etcd-tls/mdm-client.pem" } });
  expect(planHost(c, c.hosts[2]!, "/d", "c.yaml").etcdAutoTls).toMatchObject({ member: { address: "10.0.0.3" }, mdmClient: null });

  const off = parseClusterConfig(yaml(", tls: off"), "c.yaml");
  expect(etcdEndpointsOf(off)).toEqual(["http://10.0.0.1:2479", "http://10.0.0.3:2479", "http://10.0.0.4:2479"]);
  const offPlan = planHost(off, off.hosts[0]!, "/d", "c.yaml");
  expect([offPlan.etcd?.tls, offPlan.etcdClient, offPlan.etcdAutoTls]).toEqual([null, null, null]);

  const errorOf = (text: string) => {
    try {
      parseClusterConfig(text, "c.yaml");
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error("expected a refusal");
  };
  expect(errorOf(yaml(", tls: off, memberCert: /m.pem, memberKey: /k.pem, cacert: /ca.pem"))).toContain("mdm.etcd.tls: tls: off with memberCert/memberKey");
  expect(errorOf(yaml(", cacert: /ca.pem"))).toContain("pf up makes the embedded etcd's certificates itself");
  expect(errorOf(yaml(", tls: maybe"))).toContain("mdm.etcd.tls");
  const external = yaml("").replace("embedded: true, clientPort: 2479, peerPort: 2480", "endpoints: [http://e:2379], tls: auto").replace(/, etcd: (true|false)/g, "");
  expect(errorOf(external)).toContain("mdm.etcd.tls is for pf up's embedded etcd");
});
