// Data-plane TLS in process (docs/design.md "Data-plane TLS"): two SDSs serving TLS with
// certificates of one cluster CA, SDC and peer SDS clients over TLS; refusals of a plaintext
// client, a certificate of another CA, a certificate of another node, an SDS that is not the one
// meant; a wire capture that holds no plaintext of the data written. Each refusal closes only its
// own connection; a good client keeps working.

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { Op, Status } from "../src/proto/dataplane.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { identitiesOf, loadOrMakeNodeKey, verifyPeerCert, type DataPlaneTlsMaterial, type NodeIdentity } from "../src/proto/dataplane_tls.ts";
import { generateSelfSignedCert, type SelfSignedCert } from "../src/proto/tls_cert.ts";
import { startSdsCore, type SdsCore } from "../src/sds/sds_core.ts";
import { MDM_ID, MiB, SDC_ID, Vol, applyAll, deviceIdOf, pattern, sdsIdOf, tmpDir } from "./sds_harness.ts";
import { recorder } from "./helpers/tcp_recorder.ts";
import { frame, helloPayload, rawConnect } from "./helpers/dataplane_raw.ts";
import { freshRefusals, materialForKey, nodeMaterial, sdcIdentity, sdsIdentity, startTlsNode as startTlsNodeIn, tlsClient } from "./helpers/dataplane_tls_nodes.ts";

const VOL = "0a00000000000031";
const vol = new Vol(VOL);
let dir: string;
let ca: SelfSignedCert;
let otherCa: SelfSignedCert;
let nodes: SdsCore[];

const sdc = sdcIdentity;
const sds = sdsIdentity;
const material = (authority: SelfSignedCert, id: NodeIdentity, tag: string): DataPlaneTlsMaterial => nodeMaterial(dir, authority, id, tag);
const startTlsNode = (i: number): SdsCore => startTlsNodeIn(dir, i, ca);

beforeAll(() => {
  dir = tmpDir("dptls");
  ca = generateSelfSignedCert({ commonName: "pf-dataplane-ca test", hosts: [] });
  otherCa = generateSelfSignedCert({ commonName: "pf-dataplane-ca stranger", hosts: [] });
  nodes = [startTlsNode(0), startTlsNode(1)];
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }]);
});

afterAll(async () => {
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function goodClientStillWorks(seed: number): Promise<void> {
  const c = tlsClient(nodes[0]!.port, 0, material(ca, sdc(), "sdc"));
  try {
    const data = pattern(4096, seed);
    expect((await vol.write(c, 0, seed * 4096, data)).status).toBe(Status.OK);
    expect(Buffer.from(await vol.read(c, 0, seed * 4096, 4096)).equals(Buffer.from(data))).toBe(true);
  } finally {
    c.close();
  }
}

test("a node certificate names exactly its node; pf's own check refuses another CA, another node, a CA cert", () => {
  const m = material(ca, sdc(), "sdc");
  const cert = new X509Certificate(m.certPem);
  expect(identitiesOf(cert)).toEqual([sdc()]);
  expect(verifyPeerCert(ca.certPem, cert, sdc())).toBeNull();
  expect(verifyPeerCert(ca.certPem, cert, sdc("c000000000000009"))).toContain("not sdc c000000000000009");
  expect(verifyPeerCert(ca.certPem, cert, sds(0))).toContain("not sds");
  expect(verifyPeerCert(otherCa.certPem, cert, sdc())).toContain("not signed by this cluster's data-plane CA");
  expect(verifyPeerCert(ca.certPem, new X509Certificate(ca.certPem), null)).toContain("CA certificate");
  expect(verifyPeerCert(ca.certPem, cert, sdc(), Date.now() + 400 * 24 * 3600 * 1000)).toContain("not now");
  expect(verifyPeerCert(ca.certPem, undefined, null)).toBe("no certificate");
});

test("SDC -> SDS over TLS: writes replicate to the peer SDS over TLS and read back from both copies", async () => {
  const c = tlsClient(nodes[0]!.port, 0, material(ca, sdc(), "sdc"));
  const data = pattern(64 * 1024, 7);
  expect((await vol.write(c, 0, 0, data)).status).toBe(Status.OK);
  expect(Buffer.from(await vol.read(c, 0, 0, data.byteLength)).equals(Buffer.from(data))).toBe(true);
  c.close();
  // the secondary's copy came through the primary's TLS peer link (nodes[1] serves TLS only)
  const peer = tlsClient(nodes[1]!.port, 1, material(ca, sds(0), "sds0"), sds(0));
  const r = await vol.req(peer, Op.CHECKSUM, 0, 0, data.byteLength);
  expect(r.status).toBe(Status.OK);
  const primary = tlsClient(nodes[0]!.port, 0, material(ca, sds(1), "sds1"), sds(1));
  const r0 = await vol.req(primary, Op.CHECKSUM, 0, 0, data.byteLength);
  expect(r0.status).toBe(Status.OK);
  expect(Buffer.from(r.payload).equals(Buffer.from(r0.payload))).toBe(true);
  peer.close();
  primary.close();
  expect(nodes[0]!.node.stats.replWrites + nodes[1]!.node.stats.replWrites).toBeGreaterThan(0);
});

test("a plaintext client to a TLS SDS is refused (and logged); no frame of it is read", async () => {
  const log = freshRefusals(nodes[0]!);
  const c = tlsClient(nodes[0]!.port, 0, null);
  const r = await vol.req(c, Op.READ, 0, 0, 4096);
  expect(r.status).not.toBe(Status.OK);
  c.close();
  await Bun.sleep(50);
  const rep = log.takeReport();
  expect(rep.counts.hello_fail ?? 0).toBeGreaterThanOrEqual(1);
  expect(rep.samples.join("\n")).toContain("TLS");
  await goodClientStillWorks(1);
});

test("a client with a certificate of another CA is refused by the SDS", async () => {
  const log = freshRefusals(nodes[0]!);
  // the client trusts the real CA (so it goes on) but presents a certificate of another CA
  const stranger = materialForKey(otherCa, sdc(), loadOrMakeNodeKey(join(dir, "keys-stranger")));
  const mixed: DataPlaneTlsMaterial = { ...stranger, caPem: ca.certPem };
  const c2 = tlsClient(nodes[0]!.port, 0, mixed);
  const r = await vol.req(c2, Op.READ, 0, 0, 4096);
  expect(r.status).not.toBe(Status.OK);
  c2.close();
  await Bun.sleep(50);
  const rep = log.takeReport();
  expect(rep.samples.join("\n")).toMatch(/not signed by this cluster's data-plane CA|TLS handshake failed/);
  await goodClientStillWorks(2);
});

test("a certificate of another node id is refused: the HELLO must prove the node the certificate names", async () => {
  const log = freshRefusals(nodes[0]!);
  // a valid cluster certificate of SDC ...09, used to authenticate as SDC ...01 (whose key it holds)
  const other = material(ca, sdc("c000000000000009"), "sdc9");
  const c = tlsClient(nodes[0]!.port, 0, other, sdc());
  const r = await vol.req(c, Op.READ, 0, 0, 4096);
  expect(r.status).toBe(Status.UNAUTHORIZED);
  c.close();
  await Bun.sleep(50);
  const rep = log.takeReport();
  expect(rep.samples.join("\n")).toContain("TLS certificate names sdc c000000000000009 but the handshake proved sdc c000000000000001");
  // an SDS certificate does not pass as an SDC either
  const asSds = material(ca, sds(1), "sds1");
  const c2 = tlsClient(nodes[0]!.port, 0, asSds, sdc());
  expect((await vol.req(c2, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAUTHORIZED);
  c2.close();
  await goodClientStillWorks(3);
});

test("the client refuses an SDS whose certificate names another SDS, or is of another CA", async () => {
  // connect to SDS 1 while expecting SDS 0: its certificate names sds 1
  const c = tlsClient(nodes[1]!.port, 0, material(ca, sdc(), "sdc"));
  const r = await vol.req(c, Op.READ, 0, 0, 4096);
  expect(r.status).toBe(Status.UNAUTHORIZED);
  c.close();
  // a client that trusts another CA only
  const strangerTrust: DataPlaneTlsMaterial = { ...material(ca, sdc(), "sdc"), caPem: otherCa.certPem };
  const c2 = tlsClient(nodes[0]!.port, 0, strangerTrust);
  expect((await vol.req(c2, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAUTHORIZED);
  c2.close();
});

test("a capture of a whole TLS session holds no plaintext of the written data and no frame header", async () => {
  const rec = recorder(nodes[0]!.port);
  const c = tlsClient(rec.port, 0, material(ca, sdc(), "sdc"));
  const marker = Buffer.alloc(8192);
  for (let i = 0; i < marker.length; i += 16) marker.write("PF-PLAINTEXT-42!", i, "ascii");
  for (let i = 0; i < 16; i++) expect((await vol.write(c, 0, (64 + i) * 8192, marker)).status).toBe(Status.OK);
  for (let i = 0; i < 16; i++) expect(Buffer.from(await vol.read(c, 0, (64 + i) * 8192, 8192)).equals(marker)).toBe(true);
  c.close();
  await Bun.sleep(50);
  rec.stop();
  const capture = Buffer.from(rec.all());
  expect(capture.byteLength).toBeGreaterThan(16 * 2 * 8192);
  expect(capture.includes(Buffer.from("PF-PLAINTEXT"))).toBe(false);
  // 8 bytes of the marker anywhere: not there either
  expect(capture.includes(marker.subarray(3, 11))).toBe(false);
  // the capture is TLS: its first byte is a TLS handshake record (0x16), not a pf frame
  expect(capture[0]).toBe(0x16);
});

test("a plaintext connection opened before the SDS learnt TLS is required is never served", async () => {
  const d = join(dir, "sds-late");
  fs.mkdirSync(d, { recursive: true });
  // an SDS that listens in plaintext first (as runSds does before its join), then gets TLS
  const late = startSdsCore({ sdsId: sdsIdOf(2), mdmId: MDM_ID, dataDir: d, host: "127.0.0.1", port: 0, devices: [{ deviceId: deviceIdOf(2), path: join(d, "dev0.img"), sizeBytes: 16 * MiB }] });
  try {
    const raw = await rawConnect(late.port);
    late.server.setTls(material(ca, sds(2), "sds2"));
    raw.sock.write(frame({ opcode: Op.HELLO, requestId: 0 }, helloPayload(NodeRole.SDC, SDC_ID)));
    const reply = await raw.next();
    expect(reply.header.status).toBe(Status.UNAUTHORIZED);
    await Promise.race([raw.closed, Bun.sleep(2000)]);
    expect(raw.isClosed()).toBe(true);
  } finally {
    await late.stop();
  }
});

test("cluster YAML: dataPlane.tls defaults to off, true turns it on, unknown keys are named", async () => {
  const { parseClusterConfig } = await import("../src/proto/cluster_config.ts");
  const base = "hosts:\n  - { name: a, address: 127.0.0.1, mdm: true }\n";
  expect(parseClusterConfig(base, "c.yaml").dataPlane.tls).toBe(false);
  expect(parseClusterConfig(`dataPlane: { tls: true }\n${base}`, "c.yaml").dataPlane.tls).toBe(true);
  expect(() => parseClusterConfig(`dataPlane: { tls: yes-please }\n${base}`, "c.yaml")).toThrow(/c.yaml:1: dataPlane.tls/);
  expect(() => parseClusterConfig(`dataPlane: { tsl: true }\n${base}`, "c.yaml")).toThrow(/dataPlane/);
  const three = parseClusterConfig(fs.readFileSync(join(import.meta.dir, "..", "configs", "three-hosts.yaml"), "utf8"), "three-hosts.yaml");
  expect(three.dataPlane.tls).toBe(false);
});
