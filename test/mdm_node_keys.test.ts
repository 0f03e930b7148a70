// Per-node data-plane keys and mapping grants from the MDM (in-process, fake clock): each SDC
// gets only its own node key (join answer and maps) and a grant per mapped volume, each SDS the
// member keys it derives any peer's key from and the grant keys it checks grants with; per-node
// cluster-API calls need that node's token; key rotation hands out current and previous keys so
// that nodes on either still authenticate (rotation without downtime).

import { afterEach, beforeEach, expect, test } from "bun:test";
import { SdcJoinResponse, SdcMapsResponse, SdsAssignmentsResponse, SdsJoinResponse } from "../src/proto/cluster_api.ts";
import { Binding, NodeRole, UNBOUND, clientProof, encodeHelloAuth, newNonce, transcriptHash, type NodeKey } from "../src/proto/dataplane_auth.ts";
import { keysFromHex } from "../src/proto/dataplane_keys.ts";
import { Op, Status, type FrameHeader } from "../src/proto/dataplane.ts";
import { halvesToId, idToHalves } from "../src/proto/ids.ts";
import { Access, decodeGrantBody, encodeGrantPresentation } from "../src/proto/grant.ts";
import { ConnGrants, GrantBook } from "../src/sds/grant_book.ts";
import { Limits } from "../src/proto/limits.ts";
import { masterKeys, rotateDataPlaneKey } from "../src/mdm/core/dataplane_secrets.ts";
import { currentMapVersion } from "../src/mdm/core/system_state.ts";
import { ServerHandshake } from "../src/sds/handshake_server.ts";
import { SdsAccess } from "../src/sds/sds_access.ts";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;

beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

async function joinSdc(guid: string): Promise<SdcJoinResponse> {
  const r = await m.cluster("POST", "/sdc/join", { guid, host: "127.0.0.1" });
  expect(r.status).toBe(200);
  return SdcJoinResponse.parse(r.json);
}

async function assignments(sdsId: string): Promise<SdsAssignmentsResponse> {
  return SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${sdsId}/assignments`)).json);
}

async function maps(sdcId: string): Promise<SdcMapsResponse> {
  return SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${sdcId}/maps`)).json);
}

/** The handshake of a node holding `keys` against an SDS holding `sds` (no sockets). */
function handshakeOk(sds: SdsAccess, role: NodeRole, nodeId: string, keys: NodeKey[]): boolean {
  const s = new ServerHandshake(() => sds, () => UNBOUND);
  const h: FrameHeader = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };
  const { hi, lo } = idToHalves(nodeId);
  const hello = encodeHelloAuth({ version: 1, role, binding: Binding.NONE, nodeHi: hi, nodeLo: lo, nonce: newNonce() });
  const ch = s.onFrame(h, hello);
  if (ch.kind !== "reply") return false;
  const offered = sds.acceptedKids();
  const k = keys.find((x) => offered.includes(x.kid));
  if (k === undefined) return false;
  const th = transcriptHash(hello, ch.payload, k.kid, UNBOUND);
  const auth = new Uint8Array(40);
  new DataView(auth.buffer).setUint32(0, k.kid, true);
  auth.set(clientProof(k.key, th), 8);
  return s.onFrame({ ...h, opcode: Op.AUTH }, auth).kind === "done";
}

test("an SDC gets only its own node key; an SDS derives the same key from its member keys and lets it in", async () => {
  const s = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 1e10 }] })).json);
  const a = await joinSdc("guid-a");
  const b = await joinSdc("guid-b");
  expect(a.nodeKeys.map((k) => k.kid)).toEqual([1]);
  expect(a.nodeKeys[0]!.key).not.toBe(b.nodeKeys[0]!.key);
  expect((await maps(a.sdcId)).nodeKeys).toEqual(a.nodeKeys);
  const asg = await assignments(s.sdsId);
  const member = asg.dataPlane.memberKeys[0]!.key;
  // nothing an SDC is told holds the member key or the master key
  const master = Buffer.from(masterKeys(m.core.ctx)[0]!.key).toString("hex");
  for (const text of [JSON.stringify(a), JSON.stringify(await maps(a.sdcId)), JSON.stringify(s)]) {
    expect(text).not.toContain(member);
    expect(text).not.toContain(master);
  }
  expect(JSON.stringify(asg)).not.toContain(master);
  const sds = new SdsAccess(s.sdsId);
  sds.apply(asg.dataPlane);
  expect(handshakeOk(sds, NodeRole.SDC, a.sdcId, keysFromHex(a.nodeKeys))).toBe(true);
  // B's key does not pass as A's, nor A's as an SDS's
  expect(handshakeOk(sds, NodeRole.SDC, a.sdcId, keysFromHex(b.nodeKeys))).toBe(false);
  sds.setPeers([a.sdcId]);
  expect(handshakeOk(sds, NodeRole.SDS, a.sdcId, keysFromHex(a.nodeKeys))).toBe(false);
});

test("per-node cluster-API calls need that node's own token", async () => {
  const a = await joinSdc("guid-a");
  const b = await joinSdc("guid-b");
  expect((await m.cluster("GET", `/sdc/${a.sdcId}/maps`, undefined, undefined, a.nodeToken)).status).toBe(200);
  expect((await m.cluster("GET", `/sdc/${a.sdcId}/maps`, undefined, undefined, null)).status).toBe(401);
  expect((await m.cluster("GET", `/sdc/${a.sdcId}/maps`, undefined, undefined, b.nodeToken)).status).toBe(401);
  expect((await m.cluster("POST", `/sdc/${a.sdcId}/heartbeat`, { appliedMapVersion: 0 }, undefined, "0".repeat(64))).status).toBe(401);
  const s = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 1e10 }] })).json);
  // an SDC's token is not an SDS's, even for the same id
  expect((await m.cluster("GET", `/sds/${s.sdsId}/assignments`, undefined, undefined, a.nodeToken)).status).toBe(401);
  expect((await m.cluster("GET", `/sds/${s.sdsId}/assignments`, undefined, undefined, s.nodeToken)).status).toBe(200);
});

test("key rotation: current and previous keys are handed out and accepted; two rotations retire a key", async () => {
  const s = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 1e10 }] })).json);
  const a = await joinSdc("guid-a");
  const sds = new SdsAccess(s.sdsId);
  sds.apply((await assignments(s.sdsId)).dataPlane);
  const v0 = currentMapVersion(m.core.ctx);
  expect(rotateDataPlaneKey(m.core.ctx)).toBe(2);
  expect(currentMapVersion(m.core.ctx)).toBeGreaterThan(v0); // every node fetches at its next heartbeat
  const after = await maps(a.sdcId);
  expect(after.nodeKeys.map((k) => k.kid)).toEqual([2, 1]);
  // an SDC still on kid 1 gets into an SDS that already has [2, 1]; one on [2, 1] into an SDS still on [1]
  const sdsNew = new SdsAccess(s.sdsId);
  sdsNew.apply((await assignments(s.sdsId)).dataPlane);
  expect(sdsNew.acceptedKids()).toEqual([2, 1]);
  expect(handshakeOk(sdsNew, NodeRole.SDC, a.sdcId, keysFromHex(a.nodeKeys))).toBe(true);
  expect(handshakeOk(sds, NodeRole.SDC, a.sdcId, keysFromHex(after.nodeKeys))).toBe(true);
  expect(handshakeOk(sdsNew, NodeRole.SDC, a.sdcId, keysFromHex(after.nodeKeys))).toBe(true);
  // a second rotation retires kid 1
  m.clock.advance(Limits.dataKeyActivationMs);
  expect(rotateDataPlaneKey(m.core.ctx)).toBe(3);
  expect(masterKeys(m.core.ctx).map((k) => k.kid)).toEqual([3, 2]);
  const sds3 = new SdsAccess(s.sdsId);
  sds3.apply((await assignments(s.sdsId)).dataPlane);
  expect(sds3.acceptedKids()).toEqual([3, 2]);
  expect(handshakeOk(sds3, NodeRole.SDC, a.sdcId, keysFromHex(a.nodeKeys))).toBe(false);
  expect(handshakeOk(sds3, NodeRole.SDC, a.sdcId, keysFromHex((await maps(a.sdcId)).nodeKeys))).toBe(true);
});

test("maps carry one grant per mapped volume, for this SDC and its access mode, that an SDS verifies with its assignments' grant key", async () => {
  const s = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 100 * 2 ** 30 }] })).json);
  await m.joinSds("sds2");
  const a = await joinSdc("guid-a");
  const pool = await m.idOf("StoragePool", "sp1");
  const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "gv", volumeType: "ThinProvisioned" })).json as { id: string }).id;
  expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: a.sdcId, accessMode: "ReadOnly" })).status).toBe(200);
  const mp = await maps(a.sdcId);
  const vm = mp.volumes[0]!;
  expect(vm.grant).toBeDefined();
  const body = decodeGrantBody(new Uint8Array(Buffer.from(vm.grant!.body, "hex")));
  expect(body).toMatchObject({ access: Access.READ_ONLY, kid: 1, mapVersion: mp.mapVersion });
  expect(halvesToId(body.sdcHi, body.sdcLo)).toBe(a.sdcId);
  expect(halvesToId(body.volumeHi, body.volumeLo)).toBe(vol);
  expect(body.expiresAtMs - body.issuedAtMs).toBe(Limits.grantTtlMs);
  // the SDS checks it with what its assignments carry, bound to a connection's session hash
  const book = new GrantBook(s.sdsId, { nowMs: () => 0, sleep: async () => undefined }, () => m.clock.nowMs);
  book.apply((await assignments(s.sdsId)).dataPlane);
  const th = new Uint8Array(32).fill(9);
  const token = { body: new Uint8Array(Buffer.from(vm.grant!.body, "hex")), secret: new Uint8Array(Buffer.from(vm.grant!.secret, "hex")) };
  const conn = { peer: "t", nodeId: a.sdcId, role: NodeRole.SDC, sessionHash: th, grants: new ConnGrants() };
  expect(book.present(conn, encodeGrantPresentation(token, th))).toBe(Status.OK);
  expect(conn.grants.check(body.volumeHi, body.volumeLo, false, 1)).toBe(Status.OK);
  expect(conn.grants.check(body.volumeHi, body.volumeLo, true, 1)).toBe(Status.READ_ONLY);
  // another SDC cannot use it
  const b = await joinSdc("guid-b");
  expect(book.present({ ...conn, nodeId: b.sdcId, grants: new ConnGrants() }, encodeGrantPresentation(token, th))).toBe(Status.GRANT_WRONG_SDC);
  // an unmapped volume gets no grant at all
  expect((await maps(b.sdcId)).volumes).toEqual([]);
});

test("unmap and a switch to ReadOnly raise the pair's revocation floor in every SDS's assignments; old grants fall below it, new ones do not", async () => {
  const s = SdsJoinResponse.parse((await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 100 * 2 ** 30 }] })).json);
  await m.joinSds("sds2");
  const a = await joinSdc("guid-a");
  const b = await joinSdc("guid-b");
  const pool = await m.idOf("StoragePool", "sp1");
  const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "rv", volumeType: "ThinProvisioned" })).json as { id: string }).id;
  const mapTo = async (sdcId: string, accessMode: string) =>
    expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId, accessMode, allowMultipleMappings: "TRUE" })).status).toBe(200);
  const grantVersion = async (sdcId: string) => decodeGrantBody(new Uint8Array(Buffer.from((await maps(sdcId)).volumes[0]!.grant!.body, "hex"))).mapVersion;
  const floors = async () => (await assignments(s.sdsId)).dataPlane.grantFloors;
  await mapTo(a.sdcId, "ReadWrite");
  await mapTo(b.sdcId, "ReadWrite");
  const oldA = await grantVersion(a.sdcId);
  const oldB = await grantVersion(b.sdcId);
  expect(await floors()).toEqual([]);
  // switch A to ReadOnly: A's old ReadWrite grant is void, B's untouched
  expect((await m.api("POST", `/instances/Volume::${vol}/action/setVolumeMappingAccessMode`, { sdcId: a.sdcId, accessMode: "ReadOnly" })).status).toBe(200);
  let f = await floors();
  expect(f).toEqual([{ volumeId: vol, sdcId: a.sdcId, floorVersion: currentMapVersion(m.core.ctx) }]);
  expect(oldA).toBeLessThan(f[0]!.floorVersion);
  expect(await grantVersion(a.sdcId)).toBeGreaterThanOrEqual(f[0]!.floorVersion);
  // back to ReadWrite revokes nothing (the ReadOnly grant may live out its time)
  const before = JSON.stringify(await floors());
  expect((await m.api("POST", `/instances/Volume::${vol}/action/setVolumeMappingAccessMode`, { sdcId: a.sdcId, accessMode: "ReadWrite" })).status).toBe(200);
  expect(JSON.stringify(await floors())).toBe(before);
  // unmap B: B's grants are void
  expect((await m.api("POST", `/instances/Volume::${vol}/action/removeMappedSdc`, { sdcId: b.sdcId })).status).toBe(200);
  f = await floors();
  const fb = f.find((x) => x.sdcId === b.sdcId)!;
  expect(fb.floorVersion).toBe(currentMapVersion(m.core.ctx));
  expect(oldB).toBeLessThan(fb.floorVersion);
  expect((await maps(b.sdcId)).volumes).toEqual([]);
  // remap B: its new grant is at or above the floor
  await mapTo(b.sdcId, "ReadWrite");
  expect(await grantVersion(b.sdcId)).toBeGreaterThanOrEqual(fb.floorVersion);
  // unmapping every SDC at once revokes every pair
  expect((await m.api("POST", `/instances/Volume::${vol}/action/removeMappedSdc`, { allSdcs: "TRUE" })).status).toBe(200);
  expect((await floors()).map((x) => x.sdcId).sort()).toEqual([a.sdcId, b.sdcId].sort());
  // floors outlive every grant they could void, then are pruned
  m.clock.advance(Limits.grantTtlMs + 11 * 60 * 1000);
  expect(await floors()).toEqual([]);
});
