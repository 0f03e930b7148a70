// The data-plane handshake under attack (docs/design.md "Data-plane security"): a recorded
// handshake replayed on a new connection, a reflected server proof, a tampered CHALLENGE
// (downgrade), other versions, oversized frames before authentication, wrong roles and
// strangers, and a wire capture of a whole session searched for key bytes. Each refusal closes
// only that connection; a good client keeps working.

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import fc from "fast-check";
import { Flag, FrameReader, HEADER_BYTES, Op, Status, type FrameHeader } from "../src/proto/dataplane.ts";
import {
  CHALLENGE_BYTES,
  DP_AUTH_VERSION,
  NodeRole,
  UNBOUND,
  clientProof,
  decodeChallenge,
  encodeAuth,
  encodeChallenge,
  serverProof,
  transcriptHash,
  type PeerVerifier,
} from "../src/proto/dataplane_auth.ts";
import { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { NodeKeyring, deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { Limits } from "../src/proto/limits.ts";
import { ServerHandshake } from "../src/sds/handshake_server.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { GRANT_KEY, MDM_ID, MEMBER_KEY, MiB, SDC_ID, TestGrants, Vol, mintTestGrant, applyAll, clientTo, credentialsOf, pattern, peerClientTo, readCopy, sdsIdOf, startNode, tmpDir } from "./sds_harness.ts";
import { frame, handshake, helloPayload, presentGrant, rawConnect, within } from "./helpers/dataplane_raw.ts";
import { containsKeyBytes, recorder } from "./helpers/tcp_recorder.ts";

const VOL = "0a00000000000021";
const vol = new Vol(VOL);
const SDC_KEY = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);
let dir: string;
let nodes: SdsCore[];

beforeAll(() => {
  dir = tmpDir("sdsauth");
  nodes = [startNode(dir, 0, 16 * MiB), startNode(dir, 1, 16 * MiB)];
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }]);
});

afterAll(async () => {
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function readReq(requestId: number, offset = 0, length = 4096): Uint8Array {
  return frame({ opcode: Op.READ, requestId, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, offset, length });
}

async function goodClientStillWorks(seed: number): Promise<void> {
  const c = clientTo(nodes[0]!);
  try {
    const data = pattern(4096, seed);
    expect((await vol.write(c, 0, seed * 4096, data)).status).toBe(Status.OK);
    expect(Buffer.from(await vol.read(c, 0, seed * 4096, 4096)).equals(Buffer.from(data))).toBe(true);
  } finally {
    c.close();
  }
}

test("a client with its node key is let in; the SDS's proof checks out on the client", async () => {
  const r = await rawConnect(nodes[0]!.port);
  const d = await handshake(r, NodeRole.SDC, SDC_ID, SDC_KEY);
  expect(d.challenge.header.status).toBe(Status.OK);
  expect(d.auth.header.status).toBe(Status.OK);
  expect(Buffer.from(d.auth.payload).equals(Buffer.from(serverProof(SDC_KEY, d.th)))).toBe(true);
  const ch = decodeChallenge(d.challenge.payload);
  expect(ch.version).toBe(DP_AUTH_VERSION);
  expect(ch.kids).toEqual([1]);
  expect((await presentGrant(r, d.th, mintTestGrant({ volumeId: VOL }))).header.status).toBe(Status.OK);
  r.sock.write(readReq(5));
  expect((await r.next()).header.status).toBe(Status.OK);
  r.sock.end();
});

test("a captured handshake replayed on a new connection is refused, and the replayed writes change nothing", async () => {
  const rec = recorder(nodes[0]!.port);
  const victim = new DataPlaneClient({ host: "127.0.0.1", port: rec.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(), reconnectBackoffMs: 0 });
  expect((await vol.write(victim, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  victim.close();
  rec.stop();
  const good = clientTo(nodes[0]!);
  expect((await vol.write(good, 0, 0, pattern(4096, 2))).status).toBe(Status.OK);
  // replay every byte the victim sent: HELLO, AUTH, GRANT, the WRITE
  const r = await rawConnect(nodes[0]!.port);
  for (const chunk of rec.toServer) r.sock.write(chunk);
  await within(r.closed, 2000, "close after the replayed AUTH");
  expect(r.frames[0]?.header.status).toBe(Status.OK); // a fresh CHALLENGE ...
  expect(r.frames[1]?.header.opcode).toBe(Op.AUTH);
  expect(r.frames[1]?.header.status).toBe(Status.UNAUTHORIZED); // ... the old proof does not answer it
  expect(r.frames.length).toBe(2); // the replayed WRITE got no answer at all
  expect(Buffer.from(readCopy(nodes[0]!, VOL, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 2)))).toBe(true);
  good.close();
});

test("a reflected server proof is not a client proof", async () => {
  const r = await rawConnect(nodes[0]!.port);
  const hello = helloPayload(NodeRole.SDC, SDC_ID);
  r.sock.write(frame({ opcode: Op.HELLO }, hello));
  const ch = await r.next();
  const th = transcriptHash(hello, ch.payload, 1, UNBOUND);
  r.sock.write(frame({ opcode: Op.AUTH }, encodeAuth({ kid: 1, proof: serverProof(SDC_KEY, th) })));
  expect((await r.next()).header.status).toBe(Status.UNAUTHORIZED);
  await within(r.closed, 2000, "close");
  await goodClientStillWorks(3);
});

test("a CHALLENGE tampered in flight (nonce or offered key ids) fails the handshake: no downgrade", async () => {
  // the SDS offers key ids 2 and 1; a man in the middle strikes 2 out so the client would use 1
  const access = nodes[1]!.node.access;
  access.setMemberKeys([
    { kid: 2, key: new Uint8Array(32).fill(0x77) },
    { kid: 1, key: MEMBER_KEY },
  ]);
  try {
    const strike = (chunk: Uint8Array): Uint8Array => {
      const out = chunk.slice();
      const v = new DataView(out.buffer);
      // the CHALLENGE is the first frame the SDS sends: header + 60-byte payload
      if (out.byteLength >= HEADER_BYTES + CHALLENGE_BYTES && v.getUint8(4) === Op.HELLO && v.getUint8(HEADER_BYTES + 1) === 2) {
        v.setUint8(HEADER_BYTES + 1, 1);
        v.setUint32(HEADER_BYTES + 44, 1, true);
        v.setUint32(HEADER_BYTES + 48, 0, true);
      }
      return out;
    };
    const rec = recorder(nodes[1]!.port, strike);
    const both = keysFor([2, 1]);
    const c = new DataPlaneClient({ host: "127.0.0.1", port: rec.port, credentials: both, grants: new TestGrants(), reconnectBackoffMs: 0 });
    expect((await c.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.UNAUTHORIZED);
    c.close();
    rec.stop();
    // without the man in the middle the same client gets in, with the newest key id
    const ok = new DataPlaneClient({ host: "127.0.0.1", port: nodes[1]!.port, credentials: both, grants: new TestGrants(), reconnectBackoffMs: 0 });
    expect((await ok.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.OK);
    ok.close();
  } finally {
    access.setMemberKeys([{ kid: 1, key: MEMBER_KEY }]);
  }
});

/** An SDC's credentials for key ids of member keys 0x77.. (kid 2) and the test key (kid 1). */
function keysFor(kids: number[]): NodeKeyring {
  const member = (kid: number) => (kid === 1 ? MEMBER_KEY : new Uint8Array(32).fill(0x77));
  return new NodeKeyring(NodeRole.SDC, SDC_ID, kids.map((kid) => ({ kid, key: deriveNodeKey(member(kid), NodeRole.SDC, SDC_ID) })));
}

test("any single flipped byte of the HELLO or AUTH payload fails the handshake (fast-check)", () => {
  const verifier: PeerVerifier = { sdsId: sdsIdOf(0), acceptedKids: () => [1], peerKey: (role, id) => deriveNodeKey(MEMBER_KEY, role, id) };
  const h: FrameHeader = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };
  const run = (flipHello: number | null, flipAuth: number | null, bit: number): string => {
    const s = new ServerHandshake(() => verifier, () => UNBOUND);
    const hello = helloPayload(NodeRole.SDC, SDC_ID);
    const honestHello = hello.slice();
    if (flipHello !== null) hello[flipHello]! ^= 1 << bit;
    let step;
    try {
      step = s.onFrame({ ...h, opcode: Op.HELLO }, hello);
    } catch {
      return "refused";
    }
    if (step.kind !== "reply") return "refused";
    // the client computes its proof over what it sent (the honest HELLO)
    const th = transcriptHash(honestHello, step.payload, 1, UNBOUND);
    const auth = encodeAuth({ kid: 1, proof: clientProof(SDC_KEY, th) });
    if (flipAuth !== null) auth[flipAuth]! ^= 1 << bit;
    try {
      step = s.onFrame({ ...h, opcode: Op.AUTH }, auth);
    } catch {
      return "refused";
    }
    return step.kind === "done" ? "accepted" : "refused";
  };
  expect(run(null, null, 0)).toBe("accepted");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 43 }), fc.integer({ min: 0, max: 7 }), (at, bit) => run(at, null, bit) === "refused"),
    { numRuns: 500, seed: 9 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 39 }), fc.integer({ min: 0, max: 7 }), (at, bit) => run(null, at, bit) === "refused"),
    { numRuns: 500, seed: 10 },
  );
});

test("an old key-in-HELLO frame, another version or an unknown role is refused before any key is used", async () => {
  const old = new Uint8Array(40).fill(0xab); // the old HELLO: 32-byte key + node id
  const v2 = helloPayload(NodeRole.SDC, SDC_ID);
  v2[0] = DP_AUTH_VERSION + 1;
  const role9 = helloPayload(NodeRole.SDC, SDC_ID);
  role9[1] = 9;
  for (const p of [old, v2, role9]) {
    const r = await rawConnect(nodes[0]!.port);
    r.sock.write(frame({ opcode: Op.HELLO }, p));
    await within(r.closed, 2000, "close");
    expect(r.frames.length).toBe(0);
  }
  await goodClientStillWorks(4);
});

test("before authentication a frame may carry at most dataPreAuthMaxPayloadBytes: a big one closes at its header", async () => {
  const r = await rawConnect(nodes[0]!.port);
  const big = frame({ opcode: Op.HELLO }, new Uint8Array(Limits.dataPreAuthMaxPayloadBytes + 1));
  r.sock.write(big.subarray(0, HEADER_BYTES)); // only the header: the SDS must not wait for the rest
  await within(r.closed, 2000, "close at an oversized pre-auth header");
  // and a WRITE right after a HELLO (before AUTH) is refused too
  const r2 = await rawConnect(nodes[0]!.port);
  r2.sock.write(frame({ opcode: Op.HELLO }, helloPayload(NodeRole.SDC, SDC_ID)));
  await r2.next();
  r2.sock.write(frame({ opcode: Op.WRITE, requestId: 3, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, length: 16 }, new Uint8Array(16)));
  expect((await r2.next()).header.status).toBe(Status.UNAUTHORIZED);
  await within(r2.closed, 2000, "close on a WRITE before AUTH");
  await goodClientStillWorks(5);
});

test(`at most ${Limits.dataMaxPreAuthConns} connections may sit in their handshake; the rest are cut at once`, async () => {
  const held = [];
  for (let i = 0; i < Limits.dataMaxPreAuthConns; i++) held.push(await rawConnect(nodes[1]!.port));
  await Bun.sleep(50);
  const extra = await rawConnect(nodes[1]!.port);
  await within(extra.closed, 2000, "the connection over the cap closed");
  for (const h of held) h.sock.end();
  await Bun.sleep(100);
  const c = clientTo(nodes[1]!);
  expect((await c.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.OK);
  c.close();
});

test("roles and identities: an SDC key does not pass as an SDS, a stranger SDS and a fake MDM are refused", async () => {
  const asSds = await rawConnect(nodes[0]!.port);
  expect((await handshake(asSds, NodeRole.SDS, SDC_ID, SDC_KEY)).auth.header.status).toBe(Status.UNAUTHORIZED);
  // sds 7 holds a correctly derived key but is not in this SDS's assignments
  const stranger = await rawConnect(nodes[0]!.port);
  expect((await handshake(stranger, NodeRole.SDS, sdsIdOf(7), deriveNodeKey(MEMBER_KEY, NodeRole.SDS, sdsIdOf(7)))).auth.header.status).toBe(Status.UNAUTHORIZED);
  const fakeMdm = await rawConnect(nodes[0]!.port);
  expect((await handshake(fakeMdm, NodeRole.MDM, "5e5000000000000f", deriveNodeKey(MEMBER_KEY, NodeRole.MDM, "5e5000000000000f"))).auth.header.status).toBe(Status.UNAUTHORIZED);
  const mdm = await rawConnect(nodes[0]!.port);
  expect((await handshake(mdm, NodeRole.MDM, MDM_ID, deriveNodeKey(MEMBER_KEY, NodeRole.MDM, MDM_ID))).auth.header.status).toBe(Status.OK);
  // the MDM may read checksums, not data
  mdm.sock.write(readReq(9));
  expect((await mdm.next()).header.status).toBe(Status.UNAUTHORIZED);
  mdm.sock.end();
  // the real peer gets in
  const peer = peerClientTo(nodes[0]!, 1);
  expect((await peer.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.OK);
  peer.close();
});

test("the client refuses an SDS that cannot prove the key, or that is not the SDS it meant to reach", async () => {
  // an impostor that answers the HELLO with a CHALLENGE and any AUTH with "OK" and a made-up proof
  const impostor = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(sock, d) {
        const reader = new FrameReader();
        reader.push(new Uint8Array(d), (f) => {
          if (f.header.opcode === Op.HELLO) {
            sock.write(frame({ opcode: Op.HELLO, flags: Flag.REPLY }, encodeChallenge({ version: DP_AUTH_VERSION, sdsHi: 0x5d500000, sdsLo: 0, nonce: new Uint8Array(32), kids: [1] })));
          } else if (f.header.opcode === Op.AUTH) {
            sock.write(frame({ opcode: Op.AUTH, flags: Flag.REPLY }, new Uint8Array(32).fill(0x42)));
          } else {
            sock.write(frame({ ...f.header, flags: Flag.REPLY }));
          }
        });
      },
    },
  });
  try {
    const c = new DataPlaneClient({ host: "127.0.0.1", port: impostor.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(), reconnectBackoffMs: 0 });
    expect((await c.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.UNAUTHORIZED);
    c.close();
  } finally {
    impostor.stop(true);
  }
  const misdirected = new DataPlaneClient({ host: "127.0.0.1", port: nodes[0]!.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), expectSdsId: sdsIdOf(1), reconnectBackoffMs: 0 });
  expect((await misdirected.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 })).status).toBe(Status.UNAUTHORIZED);
  misdirected.close();
});

test("a capture of a whole session (every byte both ways) holds no bytes of any key", async () => {
  const rec = recorder(nodes[0]!.port);
  const grants = new TestGrants();
  const c = new DataPlaneClient({ host: "127.0.0.1", port: rec.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants, reconnectBackoffMs: 0 });
  for (let i = 0; i < 16; i++) expect((await vol.write(c, 0, i * 8192, pattern(8192, 100 + i))).status).toBe(Status.OK);
  for (let i = 0; i < 16; i++) expect((await vol.req(c, Op.READ, 0, i * 8192, 8192)).status).toBe(Status.OK);
  c.close();
  await Bun.sleep(50);
  rec.stop();
  const capture = rec.all();
  expect(capture.byteLength).toBeGreaterThan(16 * 2 * 8192);
  const grantSecretUsed = grants.byVolume.get(VOL)!.secret;
  const keys = [MEMBER_KEY, SDC_KEY, GRANT_KEY, grantSecretUsed, deriveNodeKey(MEMBER_KEY, NodeRole.SDS, sdsIdOf(0)), deriveNodeKey(MEMBER_KEY, NodeRole.SDS, sdsIdOf(1))];
  for (const k of keys) expect(containsKeyBytes(capture, k)).toBe(false);
  // the check itself finds a key that is there
  expect(containsKeyBytes(new Uint8Array([1, 2, ...SDC_KEY.subarray(10, 20), 3]), SDC_KEY)).toBe(true);
});
