// Mapping grants checked by the SDS itself (docs/design.md "Data-plane security"): an
// authenticated SDC without a grant, with a ReadOnly grant, with another SDC's grant, with an
// expired, forged, replayed or revoked grant, is refused with its own status straight at the
// SDS, and the data does not change; a grant is presented once per connection and volume, not
// per IO; forwarded writes between SDSs need none.

import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import fc from "fast-check";
import { FrameReader, Op, Status } from "../src/proto/dataplane.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { GRANT_FRAME_BYTES, encodeGrantPresentation } from "../src/proto/grant.ts";
import { Limits } from "../src/proto/limits.ts";
import { ConnGrants, GrantBook } from "../src/sds/grant_book.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { FLOORS, MEMBER_KEY, MiB, SDC_ID, TestGrants, Vol, applyAll, checksumCopy, clientTo, credentialsOf, mintTestGrant, pattern, peerClientTo, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";
import { frame, handshake, presentGrant, rawConnect, type Raw } from "./helpers/dataplane_raw.ts";
import { recorder } from "./helpers/tcp_recorder.ts";

const V = "0a00000000000031";
const W = "0a00000000000032";
const OTHER_SDC = "c000000000000002";
const v = new Vol(V);
const w = new Vol(W);
const SDC_KEY = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);
let dir: string;
let nodes: SdsCore[];
let mapVersion = 1;

const plans: ExtentPlan[] = [
  { volumeId: V, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] },
  { volumeId: W, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] },
];

beforeAll(async () => {
  dir = tmpDir("sdsgrant");
  nodes = [startNode(dir, 0, 32 * MiB), startNode(dir, 1, 32 * MiB)];
  applyAll(nodes, plans, mapVersion);
  // known content in both volumes, written under a ReadWrite grant
  const c = clientTo(nodes[0]!);
  expect((await v.write(c, 0, 0, pattern(64 * 1024, 1))).status).toBe(Status.OK);
  expect((await w.write(c, 0, 0, pattern(64 * 1024, 2))).status).toBe(Status.OK);
  c.close();
});

afterAll(async () => {
  FLOORS.length = 0;
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  FLOORS.length = 0;
});

/** An authenticated raw SDC connection to the primary, with `grant` presented (null: none). */
async function sdcConn(grant: Parameters<typeof mintTestGrant>[0] | null, expectStatus: Status = Status.OK): Promise<{ r: Raw; th: Uint8Array }> {
  const r = await rawConnect(nodes[0]!.port);
  const d = await handshake(r, NodeRole.SDC, SDC_ID, SDC_KEY);
  expect(d.auth.header.status).toBe(Status.OK);
  if (grant !== null) expect((await presentGrant(r, d.th, mintTestGrant(grant))).header.status).toBe(expectStatus);
  return { r, th: d.th };
}

function io(vol: Vol, opcode: Op, requestId: number, length = 4096, payload?: Uint8Array): Uint8Array {
  return frame({ opcode, requestId, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, offset: 0, length }, payload);
}

async function statusOf(r: Raw, bytes: Uint8Array): Promise<Status> {
  r.sock.write(bytes);
  return (await r.next()).header.status;
}

async function unchanged(): Promise<void> {
  expect(Buffer.from(readCopy(nodes[0]!, V, 0, 0, 64 * 1024)).equals(Buffer.from(pattern(64 * 1024, 1)))).toBe(true);
  expect(Buffer.from(readCopy(nodes[1]!, V, 0, 0, 64 * 1024)).equals(Buffer.from(pattern(64 * 1024, 1)))).toBe(true);
}

test("a member without a grant for V reading or writing V straight at the SDS: NO_GRANT, data unchanged", async () => {
  const before = nodes[0]!.node.grants.refusals.counts.no_grant;
  const { r } = await sdcConn(null);
  expect(await statusOf(r, io(v, Op.READ, 10))).toBe(Status.NO_GRANT);
  expect(await statusOf(r, io(v, Op.WRITE, 11, 4096, pattern(4096, 9)))).toBe(Status.NO_GRANT);
  expect(await statusOf(r, io(v, Op.TRIM, 12))).toBe(Status.NO_GRANT);
  expect(await statusOf(r, io(v, Op.WRITE_ZEROES, 13))).toBe(Status.NO_GRANT);
  expect(await statusOf(r, io(v, Op.CHECKSUM, 14, 0))).toBe(Status.NO_GRANT);
  r.sock.end();
  // a grant for W does not open V
  const { r: r2 } = await sdcConn({ volumeId: W });
  expect(await statusOf(r2, io(w, Op.READ, 20))).toBe(Status.OK);
  expect(await statusOf(r2, io(v, Op.WRITE, 21, 4096, pattern(4096, 9)))).toBe(Status.NO_GRANT);
  r2.sock.end();
  await unchanged();
  expect(nodes[0]!.node.grants.refusals.counts.no_grant).toBe(before + 6);
  // the same through the client library: an SDC without V's grant gets NO_GRANT
  const c = clientTo(nodes[0]!, { grants: new TestGrants(SDC_ID, false) });
  expect((await v.req(c, Op.READ, 0, 0, 4096)).status).toBe(Status.NO_GRANT);
  c.close();
});

test("hand-made WRITE, TRIM and WRITE_ZEROES under a ReadOnly grant: READ_ONLY, data unchanged; READ works", async () => {
  const sum = await checksumCopy(nodes[0]!, V, 0);
  const { r } = await sdcConn({ volumeId: V, access: "ReadOnly" });
  expect(await statusOf(r, io(v, Op.WRITE, 30, 4096, pattern(4096, 7)))).toBe(Status.READ_ONLY);
  expect(await statusOf(r, io(v, Op.TRIM, 31, 64 * 1024))).toBe(Status.READ_ONLY);
  expect(await statusOf(r, io(v, Op.WRITE_ZEROES, 32, 64 * 1024))).toBe(Status.READ_ONLY);
  r.sock.write(io(v, Op.READ, 33, 4096));
  const rd = await r.next();
  expect(rd.header.status).toBe(Status.OK);
  expect(Buffer.from(rd.payload).equals(Buffer.from(pattern(64 * 1024, 1).subarray(0, 4096)))).toBe(true);
  r.sock.end();
  expect(await checksumCopy(nodes[0]!, V, 0)).toBe(sum);
  expect(await checksumCopy(nodes[1]!, V, 0)).toBe(sum);
  await unchanged();
  expect(nodes[0]!.node.grants.refusals.counts.read_only).toBeGreaterThanOrEqual(3);
});

test("another SDC's grant is refused (GRANT_WRONG_SDC); so are a forged one and one replayed from another connection", async () => {
  const { r } = await sdcConn({ volumeId: V, sdcId: OTHER_SDC }, Status.GRANT_WRONG_SDC);
  expect(await statusOf(r, io(v, Op.WRITE, 40, 4096, pattern(4096, 8)))).toBe(Status.NO_GRANT);
  // signed with a key the MDM never had
  expect((await presentGrant(r, new Uint8Array(32), mintTestGrant({ volumeId: V, key: new Uint8Array(32).fill(1) }), 41)).header.status).toBe(Status.UNAUTHORIZED);
  r.sock.end();
  // a GRANT frame captured on one connection (its proof is bound to that handshake) fails on another
  const a = await sdcConn(null);
  const captured = frame({ opcode: Op.GRANT, requestId: 42, volumeHi: v.hi, volumeLo: v.lo }, encodeGrantPresentation(mintTestGrant({ volumeId: V }), a.th));
  a.r.sock.end();
  const b = await sdcConn(null);
  expect(await statusOf(b.r, captured)).toBe(Status.UNAUTHORIZED);
  expect(await statusOf(b.r, io(v, Op.WRITE, 43, 4096, pattern(4096, 8)))).toBe(Status.NO_GRANT);
  b.r.sock.end();
  // and another SDC's client, with its own grants, reaches its volume but not with A's grant
  const c = clientTo(nodes[0]!, { sdcId: OTHER_SDC, grants: new TestGrants(SDC_ID) });
  expect((await v.req(c, Op.READ, 0, 0, 4096)).status).toBe(Status.NO_GRANT);
  c.close();
  await unchanged();
});

test("an expired grant is refused at presentation, and a live one stops working when it expires", async () => {
  const { r } = await sdcConn({ volumeId: V, expiresAtMs: Date.now() - 1 }, Status.GRANT_EXPIRED);
  expect(await statusOf(r, io(v, Op.READ, 50))).toBe(Status.NO_GRANT);
  expect((await presentGrant(r, new Uint8Array(32), mintTestGrant({ volumeId: V, kid: 9 }), 51)).header.status).toBe(Status.GRANT_EXPIRED); // a retired key id
  r.sock.end();
  const s = await sdcConn({ volumeId: V, expiresAtMs: Date.now() + 300 });
  expect(await statusOf(s.r, io(v, Op.READ, 52))).toBe(Status.OK);
  await Bun.sleep(350);
  expect(await statusOf(s.r, io(v, Op.READ, 53))).toBe(Status.GRANT_EXPIRED);
  expect(await statusOf(s.r, io(v, Op.WRITE, 54, 4096, pattern(4096, 5)))).toBe(Status.GRANT_EXPIRED);
  s.r.sock.end();
  await unchanged();
});

test("a revocation floor in the assignments stops IO under older grants on open connections; a newer grant works", async () => {
  const { r, th } = await sdcConn({ volumeId: V, mapVersion: 3 });
  expect(await statusOf(r, io(v, Op.READ, 60))).toBe(Status.OK);
  FLOORS.push({ volumeId: V, sdcId: SDC_ID, floorVersion: 4 });
  applyAll(nodes, plans, ++mapVersion);
  expect(nodes[0]!.node.grants.floorOf(V, SDC_ID)).toBe(4);
  expect(await statusOf(r, io(v, Op.READ, 61))).toBe(Status.GRANT_REVOKED);
  expect(await statusOf(r, io(v, Op.WRITE, 62, 4096, pattern(4096, 6)))).toBe(Status.GRANT_REVOKED);
  // the floor names V and this SDC only: W's grant and other SDCs are untouched
  expect((await presentGrant(r, th, mintTestGrant({ volumeId: W, mapVersion: 3 }), 63)).header.status).toBe(Status.OK);
  expect(await statusOf(r, io(w, Op.READ, 64))).toBe(Status.OK);
  // an old grant presented again is refused; the MDM's new one (issued at the floor) works
  expect((await presentGrant(r, th, mintTestGrant({ volumeId: V, mapVersion: 3 }), 65)).header.status).toBe(Status.GRANT_REVOKED);
  expect((await presentGrant(r, th, mintTestGrant({ volumeId: V, mapVersion: 4 }), 66)).header.status).toBe(Status.OK);
  expect(await statusOf(r, io(v, Op.READ, 67))).toBe(Status.OK);
  r.sock.end();
  // floors only grow: assignments without it (pruned at the MDM) keep it
  FLOORS.length = 0;
  applyAll(nodes, plans, ++mapVersion);
  expect(nodes[0]!.node.grants.floorOf(V, SDC_ID)).toBe(4);
  await unchanged();
});

test("forwarded writes between SDSs need no grant; an SDS connection may not run client IO", async () => {
  const c = clientTo(nodes[0]!);
  expect((await v.write(c, 0, 128 * 1024, pattern(4096, 3))).status).toBe(Status.OK); // primary forwards to SDS 1
  expect(Buffer.from(readCopy(nodes[1]!, V, 0, 128 * 1024, 4096)).equals(Buffer.from(pattern(4096, 3)))).toBe(true);
  c.close();
  const peer = peerClientTo(nodes[0]!, 1);
  expect((await v.req(peer, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAUTHORIZED);
  peer.close();
});

test("a grant is presented once per connection and volume, not per IO", async () => {
  const rec = recorder(nodes[0]!.port);
  const c = new DataPlaneClient({ host: "127.0.0.1", port: rec.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(), reconnectBackoffMs: 0 });
  for (let i = 0; i < 50; i++) expect((await v.req(c, Op.READ, 0, i * 4096, 4096)).status).toBe(Status.OK);
  for (let i = 0; i < 50; i++) expect((await w.req(c, Op.READ, 0, i * 4096, 4096)).status).toBe(Status.OK);
  c.forgetGrant(v.lo); // a renewed grant: presented again before the next IO on V
  expect((await v.req(c, Op.READ, 0, 0, 4096)).status).toBe(Status.OK);
  c.close();
  rec.stop();
  let grants = 0;
  let reads = 0;
  const reader = new FrameReader();
  for (const chunk of rec.toServer) reader.push(chunk, (f) => void (f.header.opcode === Op.GRANT ? grants++ : f.header.opcode === Op.READ ? reads++ : 0));
  expect(reads).toBe(101);
  expect(grants).toBe(3);
});

test(`a connection holds at most ${Limits.dataMaxGrantsPerConn} grants`, async () => {
  const book = new GrantBook("5d50000000000000", { nowMs: () => performance.now(), sleep: (ms) => Bun.sleep(ms) });
  book.apply({ memberKeys: [{ kid: 1, key: "00".repeat(32) }], grantKeys: [{ kid: 1, key: Buffer.from(new Uint8Array(32).fill(0xcd)).toString("hex") }], grantFloors: [] });
  const th = new Uint8Array(32).fill(3);
  const conn = { peer: "test", nodeId: SDC_ID, role: NodeRole.SDC, sessionHash: th, grants: new ConnGrants() };
  const volId = (i: number) => `0b000000${i.toString(16).padStart(8, "0")}`;
  for (let i = 1; i <= Limits.dataMaxGrantsPerConn; i++) expect(book.present(conn, encodeGrantPresentation(mintTestGrant({ volumeId: volId(i) }), th))).toBe(Status.OK);
  expect(book.present(conn, encodeGrantPresentation(mintTestGrant({ volumeId: volId(Limits.dataMaxGrantsPerConn + 1) }), th))).toBe(Status.INVALID);
  // replacing a held volume's grant is still fine
  expect(book.present(conn, encodeGrantPresentation(mintTestGrant({ volumeId: volId(1) }), th))).toBe(Status.OK);
  expect(conn.grants.size).toBe(Limits.dataMaxGrantsPerConn);
});

test("any single flipped bit of a GRANT payload is refused (fast-check)", () => {
  const book = new GrantBook("5d50000000000000", { nowMs: () => performance.now(), sleep: (ms) => Bun.sleep(ms) });
  book.apply({ memberKeys: [{ kid: 1, key: "00".repeat(32) }], grantKeys: [{ kid: 1, key: Buffer.from(new Uint8Array(32).fill(0xcd)).toString("hex") }], grantFloors: [] });
  const th = new Uint8Array(32).fill(5);
  const good = encodeGrantPresentation(mintTestGrant({ volumeId: V }), th);
  const conn = () => ({ peer: "test", nodeId: SDC_ID, role: NodeRole.SDC, sessionHash: th, grants: new ConnGrants() });
  expect(book.present(conn(), good)).toBe(Status.OK);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: GRANT_FRAME_BYTES - 1 }), fc.integer({ min: 0, max: 7 }), (at, bit) => {
      const p = good.slice();
      p[at]! ^= 1 << bit;
      const c = conn();
      return book.present(c, p) !== Status.OK && c.grants.size === 0;
    }),
    { numRuns: 1000, seed: 31 },
  );
});
