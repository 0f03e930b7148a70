// The data-plane HELLO bound to the TLS session (docs/design.md "HELLO bound to the TLS session"):
// the transcript with and without the binding (plaintext keeps the old one byte for byte), both
// ends of a Bun TLS session export the same keying material (TLS 1.3 and 1.2) and agree with
// OpenSSL's, a HELLO of the other kind is refused before any proof (no downgrade), a proof made on
// one TLS session fails on another, and a relay holding valid cluster certificates (stolen TLS
// key files of the SDS and the SDC, or its own node's) cannot get a connection through.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { constants, createHash } from "node:crypto";
import type { Socket } from "bun";
import { FrameReader, Op, Status, type Frame, type FrameHeader } from "../src/proto/dataplane.ts";
import {
  Binding,
  HELLO_AUTH_BYTES,
  NodeRole,
  TLS_EXPORTER_LABEL,
  UNBOUND,
  clientProof,
  decodeHelloAuth,
  encodeAuth,
  tlsBinding,
  transcriptHash,
  type ChannelBinding,
  type PeerVerifier,
} from "../src/proto/dataplane_auth.ts";
import { FrameError } from "../src/proto/dataplane.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { clientTlsOptions, helloBindingOf, serverTlsOptions, type DataPlaneTlsMaterial } from "../src/proto/dataplane_tls.ts";
import { generateSelfSignedCert, type SelfSignedCert } from "../src/proto/tls_cert.ts";
import { ServerHandshake } from "../src/sds/handshake_server.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MEMBER_KEY, MiB, SDC_ID, Vol, applyAll, mintTestGrant, pattern, sdsIdOf, tmpDir } from "./sds_harness.ts";
import { frame, handshake, helloPayload, presentGrant, rawConnect, within } from "./helpers/dataplane_raw.ts";
import { freshRefusals, listenUpgradingTls, nodeMaterial, sdcIdentity, sdsIdentity, startTlsNode, tlsClient } from "./helpers/dataplane_tls_nodes.ts";

const VOL = "0a00000000000041";
const vol = new Vol(VOL);
const SDC_KEY = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);
const MALLORY = "c0000000000000aa";
let dir: string;
let ca: SelfSignedCert;
let nodes: SdsCore[];

beforeAll(() => {
  dir = tmpDir("hellobind");
  ca = generateSelfSignedCert({ commonName: "pf-dataplane-ca binding test", hosts: [] });
  nodes = [startTlsNode(dir, 0, ca), startTlsNode(dir, 1, ca)];
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }]);
});

afterAll(async () => {
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const HDR: FrameHeader = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };

describe("transcript", () => {
  const challenge = new Uint8Array(60).fill(7);
  const ekmA = new Uint8Array(32).fill(0xa1);
  const ekmB = new Uint8Array(32).fill(0xb2);

  test("plaintext keeps the transcript of before, byte for byte; the bound one differs and depends on the exporter", () => {
    const plainHello = helloPayload(NodeRole.SDC, SDC_ID, Binding.NONE);
    const kid = new Uint8Array([3, 0, 0, 0]);
    const before = createHash("sha256").update("pf-dp-handshake-v1").update(plainHello).update(challenge).update(kid).digest();
    expect(Buffer.from(transcriptHash(plainHello, challenge, 3, UNBOUND)).equals(before)).toBe(true);

    const boundHello = plainHello.slice();
    boundHello[2] = Binding.TLS_EXPORTER;
    const a = transcriptHash(boundHello, challenge, 3, tlsBinding(ekmA));
    const b = transcriptHash(boundHello, challenge, 3, tlsBinding(ekmB));
    const want = createHash("sha256").update("pf-dp-handshake-v1-tls-exporter").update(boundHello).update(challenge).update(kid).update(ekmA).digest();
    expect(Buffer.from(a).equals(want)).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(Buffer.from(a).equals(before)).toBe(false);
  });

  test("the HELLO's binding byte decodes, an unknown one and a non-zero reserved byte do not; th refuses a HELLO of the other kind", () => {
    const h = helloPayload(NodeRole.SDS, sdsIdOf(1), Binding.TLS_EXPORTER);
    expect(h.byteLength).toBe(HELLO_AUTH_BYTES);
    expect(decodeHelloAuth(h).binding).toBe(Binding.TLS_EXPORTER);
    expect(decodeHelloAuth(helloPayload(NodeRole.SDS, sdsIdOf(1))).binding).toBe(Binding.NONE);
    const unknown = h.slice();
    unknown[2] = 2;
    expect(() => decodeHelloAuth(unknown)).toThrow(FrameError);
    const reserved = h.slice();
    reserved[3] = 1;
    expect(() => decodeHelloAuth(reserved)).toThrow(/reserved/);
    expect(() => transcriptHash(h, challenge, 1, UNBOUND)).toThrow(/invariant broken/);
    expect(() => transcriptHash(helloPayload(NodeRole.SDC, SDC_ID), challenge, 1, tlsBinding(ekmA))).toThrow(/invariant broken/);
    expect(() => tlsBinding(new Uint8Array(16))).toThrow(/invariant broken/);
  });

  test("the SDS's handshake: a HELLO of the other kind is refused before any proof; a proof bound to another session fails; the right one passes", () => {
    const verifier: PeerVerifier = { sdsId: sdsIdOf(0), acceptedKids: () => [1], peerKey: (role, id) => deriveNodeKey(MEMBER_KEY, role, id) };
    const run = (conn: ChannelBinding, helloKind: Binding, proofOn: ChannelBinding): string => {
      const s = new ServerHandshake(() => verifier, () => conn);
      const hello = helloPayload(NodeRole.SDC, SDC_ID, helloKind);
      const step = s.onFrame(HDR, hello);
      if (step.kind !== "reply") return step.kind === "refuse" ? step.reason : "?";
      const th = transcriptHash(hello, step.payload, 1, proofOn);
      const done = s.onFrame({ ...HDR, opcode: Op.AUTH }, encodeAuth({ kid: 1, proof: clientProof(SDC_KEY, th) }));
      return done.kind === "done" ? "accepted" : done.kind === "refuse" ? done.reason : "?";
    };
    const a = tlsBinding(ekmA);
    expect(run(a, Binding.TLS_EXPORTER, a)).toBe("accepted");
    expect(run(a, Binding.TLS_EXPORTER, tlsBinding(ekmB))).toContain("wrong handshake proof");
    expect(run(a, Binding.NONE, UNBOUND)).toContain("channel binding none on a TLS connection");
    expect(run(UNBOUND, Binding.TLS_EXPORTER, a)).toContain("channel binding tls-exporter on a plaintext connection");
    expect(run(UNBOUND, Binding.NONE, UNBOUND)).toBe("accepted");
  });
});

/** One TLS session between a Bun client and a Bun server (upgradeTLS, as the SDS does): each end's binding. */
async function tlsPair(noTls13: boolean): Promise<{ server: ChannelBinding; client: ChannelBinding; version: string }> {
  const srvM = nodeMaterial(dir, ca, sdsIdentity(0), "sds0");
  const cliM = nodeMaterial(dir, ca, sdcIdentity(), "sdc");
  const only12 = (o: { secureOptions: number }) => (noTls13 ? { ...o, secureOptions: o.secureOptions | constants.SSL_OP_NO_TLSv1_3 } : o);
  const server = Promise.withResolvers<{ b: ChannelBinding; v: string }>();
  const lis = listenUpgradingTls(only12(serverTlsOptions(srvM)), (s, ok) => (ok ? server.resolve({ b: helloBindingOf(s), v: s.getTLSVersion() }) : server.reject(new Error("server TLS handshake failed"))));
  const client = Promise.withResolvers<ChannelBinding>();
  const sock = await Bun.connect<undefined>({
    hostname: "127.0.0.1",
    port: lis.port,
    tls: only12(clientTlsOptions(cliM, sdsIdOf(0))),
    socket: { data: () => {}, handshake: (s, ok) => (ok ? client.resolve(helloBindingOf(s)) : client.reject(new Error("client TLS handshake failed"))) },
  });
  try {
    const [s, c] = await within(Promise.all([server.promise, client.promise]), 5000, "TLS handshake");
    return { server: s.b, client: c, version: s.v };
  } finally {
    sock.end();
    lis.stop(true);
  }
}

function exporterOf(b: ChannelBinding): string {
  if (b.kind !== Binding.TLS_EXPORTER) throw new Error("not a TLS binding");
  return Buffer.from(b.exporter).toString("hex");
}

describe("Bun's TLS exporter (1.4.5)", () => {
  test.each([
    ["TLS 1.3", false, "TLSv1.3"],
    ["TLS 1.2", true, "TLSv1.2"],
  ] as const)("%s: both ends export the same 32 bytes, and another session exports others", async (_name, noTls13, version) => {
    const one = await tlsPair(noTls13);
    const two = await tlsPair(noTls13);
    expect(one.version).toBe(version);
    expect(exporterOf(one.server)).toBe(exporterOf(one.client));
    expect(exporterOf(two.server)).toBe(exporterOf(two.client));
    expect(exporterOf(one.server)).not.toBe(exporterOf(two.server));
    expect(exporterOf(one.server)).not.toBe("00".repeat(32));
  });

  test("the SDS side's exporter equals OpenSSL's (openssl s_client -keymatexport, TLS 1.3: empty context = no context)", async () => {
    const srvM = nodeMaterial(dir, ca, sdsIdentity(0), "sds0");
    const cliM = nodeMaterial(dir, ca, sdcIdentity(), "sdc");
    fs.writeFileSync(join(dir, "ossl-cert.pem"), cliM.certPem);
    fs.writeFileSync(join(dir, "ossl-key.pem"), cliM.keyPem, { mode: 0o600 });
    const server = Promise.withResolvers<string>();
    const lis = listenUpgradingTls(serverTlsOptions(srvM), (s) => server.resolve(exporterOf(helloBindingOf(s)).toUpperCase()));
    try {
      const p = Bun.spawn(
        ["openssl", "s_client", "-connect", `127.0.0.1:${lis.port}`, "-tls1_3", "-cert", join(dir, "ossl-cert.pem"), "-key", join(dir, "ossl-key.pem"), "-keymatexport", TLS_EXPORTER_LABEL, "-keymatexportlen", "32"],
        { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
      );
      const fromBun = await within(server.promise, 10_000, "the TLS handshake with openssl");
      await Bun.sleep(200);
      p.stdin.end();
      const out = await new Response(p.stdout).text();
      await p.exited;
      const m = /Keying material:\s*([0-9A-F]{64})/.exec(out);
      expect(m?.[1]).toBe(fromBun);
    } finally {
      lis.stop(true);
    }
  });
});

describe("over a real TLS SDS", () => {
  test("a proof made on one TLS session fails on another; made on its own session it passes and IO runs", async () => {
    const m = nodeMaterial(dir, ca, sdcIdentity(), "sdc");
    const log = freshRefusals(nodes[0]!);
    const one = await rawConnect(nodes[0]!.port, { material: m, sdsId: sdsIdOf(0) });
    const two = await rawConnect(nodes[0]!.port, { material: m, sdsId: sdsIdOf(0) });
    expect(exporterOf(one.binding)).not.toBe(exporterOf(two.binding));
    // on `two`, the proof computed with `one`'s exporter: what a relay holding session one would forward
    const stolen = await handshake(two, NodeRole.SDC, SDC_ID, SDC_KEY, one.binding);
    expect(stolen.challenge.header.status).toBe(Status.OK);
    expect(stolen.auth.header.status).toBe(Status.UNAUTHORIZED);
    await within(two.closed, 2000, "close after the wrong proof");
    expect(log.takeReport().samples.join("\n")).toContain("wrong handshake proof");
    // an unbound HELLO on a TLS connection: refused before any proof
    const three = await rawConnect(nodes[0]!.port, { material: m, sdsId: sdsIdOf(0) });
    three.sock.write(frame({ opcode: Op.HELLO }, helloPayload(NodeRole.SDC, SDC_ID, Binding.NONE)));
    expect((await three.next()).header.status).toBe(Status.UNAUTHORIZED);
    await within(three.closed, 2000, "close after the unbound HELLO");
    expect(log.takeReport().samples.join("\n")).toContain("channel binding none on a TLS connection");
    // the honest handshake on `one`, bound to its own session
    const own = await handshake(one, NodeRole.SDC, SDC_ID, SDC_KEY);
    expect(own.auth.header.status).toBe(Status.OK);
    expect((await presentGrant(one, own.th, mintTestGrant({ volumeId: VOL }))).header.status).toBe(Status.OK);
    one.sock.write(frame({ opcode: Op.READ, requestId: 5, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, offset: 0, length: 4096 }));
    expect((await one.next()).header.status).toBe(Status.OK);
    one.sock.end();
  });

  test("a relay holding valid cluster certificates (the SDS's and the SDC's stolen TLS keys, or its own node's) gets no connection through", async () => {
    for (const towardSds of ["the victim SDC's stolen certificate", "the relay's own SDC certificate"] as const) {
      const log = freshRefusals(nodes[0]!);
      const faceServer = towardSds === "the relay's own SDC certificate" ? nodeMaterial(dir, ca, sdcIdentity(MALLORY), "mallory") : nodeMaterial(dir, ca, sdcIdentity(), "sdc");
      // toward the victim the relay shows the SDS's own certificate (its TLS key file, stolen)
      const relay = tlsRelay(nodes[0]!.port, nodeMaterial(dir, ca, sdsIdentity(0), "sds0"), faceServer);
      const victim = tlsClient(relay.port, 0, nodeMaterial(dir, ca, sdcIdentity(), "sdc"));
      try {
        const r = await vol.write(victim, 0, 0, pattern(4096, 9));
        expect({ towardSds, status: r.status }).toEqual({ towardSds, status: Status.UNAUTHORIZED });
        // the relay did carry the handshake both ways: HELLO, CHALLENGE, AUTH, and the SDS's refusal
        const toSds = relay.framesToServer();
        const toVictim = relay.framesToClient();
        expect(toSds.map((f) => f.header.opcode).slice(0, 2)).toEqual([Op.HELLO, Op.AUTH]);
        expect(toVictim.map((f) => [f.header.opcode, f.header.status])).toEqual([
          [Op.HELLO, Status.OK],
          [Op.AUTH, Status.UNAUTHORIZED],
        ]);
        // refused by the binding (the proof), before the certificate-name check could say anything
        await Bun.sleep(50);
        expect(log.takeReport().samples.join("\n")).toContain(`sdc ${SDC_ID}: wrong handshake proof`);
      } finally {
        victim.close();
        relay.stop();
      }
    }
    // the SDS still serves honest clients; the data the relay tried to write is not there
    const good = tlsClient(nodes[0]!.port, 0, nodeMaterial(dir, ca, sdcIdentity(), "sdc"));
    expect(Buffer.from(await vol.read(good, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 9)))).toBe(false);
    const data = pattern(4096, 10);
    expect((await vol.write(good, 0, 4096, data)).status).toBe(Status.OK);
    expect(Buffer.from(await vol.read(good, 0, 4096, 4096)).equals(Buffer.from(data))).toBe(true);
    good.close();
  });
});

interface Relay {
  port: number;
  framesToServer(): Frame[];
  framesToClient(): Frame[];
  stop(): void;
}

/**
 * A man in the middle that terminates the victim's TLS with `faceClient` (a certificate naming
 * the SDS) and opens its own TLS session to the SDS with `faceServer`, relaying the decrypted
 * bytes unchanged both ways (and recording them).
 */
function tlsRelay(upstreamPort: number, faceClient: DataPlaneTlsMaterial, faceServer: DataPlaneTlsMaterial): Relay {
  const toServer: Uint8Array[] = [];
  const toClient: Uint8Array[] = [];
  const open: Socket<undefined>[] = [];
  const lis = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    data: undefined,
    socket: {
      open: (raw) => {
        let up: Socket<undefined> | null = null;
        const early: Uint8Array[] = [];
        const [, down] = raw.upgradeTLS<undefined>({
          data: undefined,
          tls: serverTlsOptions(faceClient),
          socket: {
            handshake: (s, ok) => {
              if (!ok) return void s.end();
              void Bun.connect<undefined>({
                hostname: "127.0.0.1",
                port: upstreamPort,
                tls: clientTlsOptions(faceServer, sdsIdOf(0)),
                socket: {
                  handshake: (u) => {
                    up = u;
                    open.push(u);
                    for (const d of early.splice(0)) u.write(d);
                  },
                  data: (_u, d) => {
                    toClient.push(d.slice());
                    s.write(d);
                  },
                  close: () => void s.end(),
                },
              });
            },
            data: (_s, d) => {
              toServer.push(d.slice());
              if (up === null) early.push(d.slice());
              else up.write(d);
            },
            close: () => void up?.end(),
          },
        });
        open.push(down);
      },
      data: () => {},
    },
  });
  const parse = (chunks: Uint8Array[]): Frame[] => {
    const out: Frame[] = [];
    const r = new FrameReader();
    for (const c of chunks) r.push(c, (f) => void out.push({ header: { ...f.header }, payload: f.payload.slice() }));
    return out;
  };
  return {
    port: lis.port,
    framesToServer: () => parse(toServer),
    framesToClient: () => parse(toClient),
    stop: () => {
      for (const s of open) s.terminate();
      lis.stop(true);
    },
  };
}
