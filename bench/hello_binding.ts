// What binding the data-plane HELLO to the TLS session costs per handshake (docs/design.md "HELLO
// bound to the TLS session"): in process, a whole handshake's hashing (both sides) unbound vs
// bound to a 32-byte exporter value; one exportKeyingMaterial call on a live Bun TLS socket (each
// end makes one per connection); and, for scale, a whole new connection (TCP + TLS + HELLO/AUTH +
// one PING) to an in-process TLS SDS, and the same in plaintext.
//
// Run: npx bun bench/hello_binding.ts        Env: BENCH_CONNS (default 300) connections per kind.

import * as fs from "node:fs";
import { Op, Status, type FrameHeader } from "../src/proto/dataplane.ts";
import { NodeRole, TLS_EXPORTER_LABEL, UNBOUND, clientProof, encodeAuth, encodeHelloAuth, newNonce, tlsBinding, transcriptHash, type ChannelBinding } from "../src/proto/dataplane_auth.ts";
import { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { clientTlsOptions, helloBindingOf, serverTlsOptions, type DataPlaneTlsMaterial } from "../src/proto/dataplane_tls.ts";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";
import { ServerHandshake } from "../src/sds/handshake_server.ts";
import { SdsAccess } from "../src/sds/sds_access.ts";
import { MEMBER_KEY, SDC_ID, applyAll, credentialsOf, sdsIdOf, startNode, tmpDir } from "../test/sds_harness.ts";
import { listenUpgradingTls, nodeMaterial, sdcIdentity, sdsIdentity, startTlsNode } from "../test/helpers/dataplane_tls_nodes.ts";

const conns = Number(process.env.BENCH_CONNS ?? 300);
const out = (s: string) => process.stdout.write(s + "\n");

/** µs per whole handshake (client HELLO, server CHALLENGE, client proof, server check and proof). */
function handshakeUs(channel: ChannelBinding, n: number): number {
  const access = new SdsAccess(sdsIdOf(0));
  access.setMemberKeys([{ kid: 1, key: MEMBER_KEY }]);
  const key = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);
  const h: FrameHeader = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const s = new ServerHandshake(() => access, () => channel);
    const hello = encodeHelloAuth({ version: 1, role: NodeRole.SDC, binding: channel.kind, nodeHi: 0xc0000000, nodeLo: 1, nonce: newNonce() });
    const ch = s.onFrame(h, hello);
    if (ch.kind !== "reply") throw new Error("handshake refused");
    const th = transcriptHash(hello, ch.payload, 1, channel);
    if (s.onFrame({ ...h, opcode: Op.AUTH }, encodeAuth({ kid: 1, proof: clientProof(key, th) })).kind !== "done") throw new Error("handshake refused");
  }
  return ((performance.now() - t) / n) * 1000;
}

/** µs per transcriptHash (each end computes it once per connection). */
function transcriptUs(channel: ChannelBinding, n: number): number {
  const hello = encodeHelloAuth({ version: 1, role: NodeRole.SDC, binding: channel.kind, nodeHi: 0xc0000000, nodeLo: 1, nonce: newNonce() });
  const challenge = new Uint8Array(60).fill(3);
  const t = performance.now();
  for (let i = 0; i < n; i++) transcriptHash(hello, challenge, 1, channel);
  return ((performance.now() - t) / n) * 1000;
}

/** µs per exportKeyingMaterial call on one live TLS session (server side, as the SDS calls it). */
async function exporterUs(dir: string, n: number): Promise<number> {
  const ca = generateSelfSignedCert({ commonName: "bench ca", hosts: [] });
  const srv = nodeMaterial(dir, ca, sdsIdentity(0), "x-sds0");
  const cli = nodeMaterial(dir, ca, sdcIdentity(), "x-sdc");
  const result = Promise.withResolvers<number>();
  const lis = listenUpgradingTls(serverTlsOptions(srv), (s) => {
    const t = performance.now();
    for (let i = 0; i < n; i++) helloBindingOf(s);
    result.resolve(((performance.now() - t) / n) * 1000);
  });
  const sock = await Bun.connect<undefined>({ hostname: "127.0.0.1", port: lis.port, tls: clientTlsOptions(cli, sdsIdOf(0)), socket: { data: () => {} } });
  const us = await result.promise;
  sock.end();
  lis.stop(true);
  return us;
}

/** ms per new connection: connect, (TLS,) handshake, one PING answered, close. */
async function connectMs(port: number, m: DataPlaneTlsMaterial | null): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < conns; i++) {
    const c = new DataPlaneClient({ host: "127.0.0.1", port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), expectSdsId: sdsIdOf(0), reconnectBackoffMs: 0, ...(m === null ? {} : { tls: () => m }) });
    const t = performance.now();
    const r = await c.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 });
    times.push(performance.now() - t);
    if (r.status !== Status.OK) throw new Error(`PING status ${r.status}`);
    c.close();
  }
  return times;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = tmpDir("bench-hellobind");
  try {
    const n = 20_000;
    handshakeUs(UNBOUND, 2000); // warm up
    const fixed = tlsBinding(new Uint8Array(32).fill(5));
    const rounds = [0, 1, 2, 3, 4].map(() => ({ unbound: handshakeUs(UNBOUND, n), bound: handshakeUs(fixed, n), thU: transcriptUs(UNBOUND, 10 * n), thB: transcriptUs(fixed, 10 * n) }));
    const unbound = median(rounds.map((r) => r.unbound));
    const bound = median(rounds.map((r) => r.bound));
    const thDelta = median(rounds.map((r) => r.thB - r.thU));
    out(`in process, a whole handshake (both sides), median of 5 x ${n} interleaved: unbound ${unbound.toFixed(2)} us, bound ${bound.toFixed(2)} us`);
    out(`transcriptHash alone, median of 5 x ${10 * n}: unbound ${median(rounds.map((r) => r.thU)).toFixed(3)} us, bound ${median(rounds.map((r) => r.thB)).toFixed(3)} us (+${thDelta.toFixed(3)} us, once per end)`);
    const ex = await exporterUs(dir, n);
    out(`exportKeyingMaterial(32, "${TLS_EXPORTER_LABEL}", empty) on a live TLS 1.3 session: ${ex.toFixed(2)} us per call (one per end per connection)`);
    const added = 2 * thDelta + 2 * ex;
    out(`=> binding adds about ${added.toFixed(2)} us of CPU per connection (both ends together: 2 exporter calls + 2 longer transcripts)`);

    const tlsCa = generateSelfSignedCert({ commonName: "bench dataplane ca", hosts: [] });
    const sdcTls = nodeMaterial(dir, tlsCa, sdcIdentity(), "sdc");
    const tlsNode = startTlsNode(dir, 0, tlsCa);
    const plainDir = `${dir}/plain`;
    fs.mkdirSync(plainDir, { recursive: true });
    const plainNode = startNode(plainDir, 0, 16 * 1024 * 1024);
    applyAll([tlsNode], []); // the member keys come with assignments
    applyAll([plainNode], []);
    try {
      await connectMs(tlsNode.port, sdcTls); // warm up both
      await connectMs(plainNode.port, null);
      const tlsTimes = await connectMs(tlsNode.port, sdcTls);
      const plainTimes = await connectMs(plainNode.port, null);
      out(`a whole new connection + one PING, ${conns} in a row: TLS (bound HELLO) median ${median(tlsTimes).toFixed(2)} ms, plaintext median ${median(plainTimes).toFixed(2)} ms`);
      out(`   (binding share of a TLS connection: ${((added / 1000 / median(tlsTimes)) * 100).toFixed(2)} %)`);
    } finally {
      await tlsNode.stop();
      await plainNode.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
