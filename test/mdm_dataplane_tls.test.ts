// The MDM's side of data-plane TLS (in process, fake clock): a TLS MDM certifies the public key
// each node sends at join with a certificate naming the id it gave that node, refuses a join
// without a key before it changes anything, and says TLS is required in join answers,
// assignments and maps; a plaintext MDM says it is off. A running node whose setting drifted
// from the MDM's logs the mismatch (rate-limited).

import { afterEach, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { consola } from "consola";
import { SdcJoinResponse, SdcMapsResponse, SdsAssignmentsResponse, SdsJoinResponse } from "../src/proto/cluster_api.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { TlsDrift, identitiesOf, loadOrMakeNodeKey, materialFrom, verifyPeerCert } from "../src/proto/dataplane_tls.ts";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture | null = null;
afterEach(() => {
  m?.close();
  m = null;
});

const key = loadOrMakeNodeKey(undefined);
let nextPort = 7001;
const sdsBody = (name: string, withKey: boolean) => ({
  name,
  host: "127.0.0.1",
  dataPort: nextPort++,
  protectionDomainName: "pd1",
  storagePoolName: "sp1",
  devices: [{ path: `/dev/fake-${name}`, capacityBytes: 100 * 2 ** 30 }],
  ...(withKey ? { tlsPublicKey: key.publicKeyPem } : {}),
});

test("a TLS MDM certifies each node's own key for the id it gave; the MDM's own certificate names the system", async () => {
  const ca = generateSelfSignedCert({ commonName: "pf-dataplane-ca test", hosts: [] });
  m = await MdmFixture.open({ dataPlaneTlsCa: ca });
  const nowMs = m.clock.nowMs;
  const r = await m.cluster("POST", "/sds/join", sdsBody("sds1", true));
  expect(r.status).toBe(200);
  const j = SdsJoinResponse.parse(r.json);
  expect(j.dataPlaneTls.required).toBe(true);
  expect(j.dataPlaneTls.caPem).toBe(ca.certPem);
  const cert = new X509Certificate(j.dataPlaneTls.certPem!);
  expect(verifyPeerCert(ca.certPem, cert, { role: NodeRole.SDS, nodeId: j.sdsId }, nowMs)).toBeNull();
  // the certificate is for the key the node made (materialFrom checks the pair), never a key of the MDM's
  expect(() => materialFrom(ca.certPem, j.dataPlaneTls.certPem!, loadOrMakeNodeKey(undefined).keyPem, { role: NodeRole.SDS, nodeId: j.sdsId })).toThrow(/not for this node's key/);
  const assign = SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${j.sdsId}/assignments`)).json);
  expect(assign.dataPlaneTls).toBe(true);

  const c = await m.cluster("POST", "/sdc/join", { guid: "g-1", host: "127.0.0.1", tlsPublicKey: key.publicKeyPem });
  expect(c.status).toBe(200);
  const sj = SdcJoinResponse.parse(c.json);
  expect(identitiesOf(new X509Certificate(sj.dataPlaneTls.certPem!))).toEqual([{ role: NodeRole.SDC, nodeId: sj.sdcId }]);
  const maps = SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${sj.sdcId}/maps`)).json);
  expect(maps.dataPlaneTls).toBe(true);

  const self = m.core.ctx.dataPlaneTls!.self;
  expect(self.self).toEqual({ role: NodeRole.MDM, nodeId: m.core.ctx.systemId });
});

test("a TLS MDM refuses a join without a public key before it records the node", async () => {
  const ca = generateSelfSignedCert({ commonName: "pf-dataplane-ca test", hosts: [] });
  m = await MdmFixture.open({ dataPlaneTlsCa: ca });
  const r = await m.cluster("POST", "/sds/join", sdsBody("old-sds", false));
  expect(r.status).toBe(400);
  expect(r.text).toContain("requires TLS on the data plane");
  const c = await m.cluster("POST", "/sdc/join", { guid: "g-old", host: "127.0.0.1" });
  expect(c.status).toBe(400);
  // nothing was recorded: the same name joins once it brings a key
  expect((await m.cluster("POST", "/sds/join", sdsBody("old-sds", true))).status).toBe(200);
  const bad = await m.cluster("POST", "/sds/join", { ...sdsBody("sds9", false), tlsPublicKey: "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n" });
  expect(bad.status).toBe(400);
  expect(bad.text).toContain("not a PEM public key");
  // of the refused joins, none left a row: only the one that brought a key is there
  const count = (table: string) => (m!.core.ctx.store.sqlite.query(`select count(*) as n from ${table}`).get() as { n: number }).n;
  expect(count("sds")).toBe(1);
  expect(count("sdc")).toBe(0);
});

test("a plaintext MDM says TLS is off everywhere (and ignores a key it was sent)", async () => {
  m = await MdmFixture.open();
  const j = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", sdsBody("sds1", true))).json);
  expect(j.dataPlaneTls).toEqual({ required: false });
  expect(SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${j.sdsId}/assignments`)).json).dataPlaneTls).toBe(false);
});

test("a node whose TLS setting drifted from the MDM's logs it, at most once a minute", () => {
  let now = 0;
  const drift = new TlsDrift("sds x", false, () => now);
  const lines: string[] = [];
  const orig = consola.error;
  consola.error = ((...a: unknown[]) => void lines.push(a.map(String).join(" "))) as typeof consola.error;
  try {
    expect(drift.check(false)).toBe(false);
    expect(drift.check(true)).toBe(true);
    expect(drift.check(true)).toBe(true);
    now = 61_000;
    expect(drift.check(true)).toBe(true);
  } finally {
    consola.error = orig;
  }
  expect(lines.length).toBe(2);
  expect(lines[0]).toContain("data-plane TLS mismatch (INVALID_STATE)");
  expect(lines[0]).toContain("restart this node");
});
