// Test harness for SDS suites: 2-3 SDS cores on 127.0.0.1 (free ports) with block files in a
// fresh temp dir, assignments injected (no MDM), and small data-plane helpers.

import * as fs from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import { DataPlaneClient, type DataReply } from "../src/proto/dataplane_client.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { NodeKeyring, deriveNodeKey, keyToHex } from "../src/proto/dataplane_keys.ts";
import type { z } from "zod";
import { SdsAssignmentsResponse, type GrantFloor, type SdsDataPlaneKeys, type VTreeGraph } from "../src/proto/cluster_api.ts";
import { Access, encodeGrantBody, grantSecret, type GrantSource, type GrantToken } from "../src/proto/grant.ts";
import { halvesToId, idToHalves } from "../src/proto/ids.ts";
import { startSdsCore, type SdsCore, type SdsCoreOptions } from "../src/sds/sds_core.ts";
import type { SdsClock } from "../src/sds/sds_clock.ts";
import type { BlockDevice } from "../src/store/block_device.ts";

/** the member key (kid 1) the test SDSs hold; node keys are derived from it */
export const MEMBER_KEY = new Uint8Array(32).fill(0xab);
export const SDC_ID = "c000000000000001";
export const MDM_ID = "5e50000000000000";

/** the grant key (kid 1) the test SDSs verify grants with */
export const GRANT_KEY = new Uint8Array(32).fill(0xcd);
/** revocation floors the next applyAll hands the test SDSs (tests push to it) */
export const FLOORS: GrantFloor[] = [];

/** The data-plane part of the assignments the test SDSs get (the MDM's in production). */
export function dataPlaneKeys(): SdsDataPlaneKeys {
  return { memberKeys: [{ kid: 1, key: keyToHex(MEMBER_KEY) }], grantKeys: [{ kid: 1, key: keyToHex(GRANT_KEY) }], grantFloors: [...FLOORS] };
}

export interface TestGrant {
  volumeId: string;
  sdcId?: string;
  access?: "ReadOnly" | "ReadWrite";
  mapVersion?: number;
  /** wall clock; default 100 days from now (tests with fake clocks jump far) */
  expiresAtMs?: number;
  kid?: number;
  key?: Uint8Array;
}

/** A grant as the MDM would mint it (signed with the test grant key). */
export function mintTestGrant(g: TestGrant): GrantToken {
  const sdc = idToHalves(g.sdcId ?? SDC_ID);
  const vol = idToHalves(g.volumeId);
  const now = Date.now();
  const body = encodeGrantBody({
    access: g.access === "ReadOnly" ? Access.READ_ONLY : Access.READ_WRITE,
    kid: g.kid ?? 1,
    sdcHi: sdc.hi,
    sdcLo: sdc.lo,
    volumeHi: vol.hi,
    volumeLo: vol.lo,
    grantId: 7,
    mapVersion: g.mapVersion ?? 1,
    issuedAtMs: now,
    expiresAtMs: g.expiresAtMs ?? now + 100 * 86_400_000,
  });
  return { body, secret: grantSecret(g.key ?? GRANT_KEY, body) };
}

/** Grants for every volume, ReadWrite, issued "now" (map version above any floor a test sets: the default of test SDC clients), or per volume. */
export class TestGrants implements GrantSource {
  readonly byVolume = new Map<string, GrantToken | null>();
  constructor(private readonly sdcId = SDC_ID, private readonly all = true) {}
  grantFor(volumeHi: number, volumeLo: number): GrantToken | null {
    const id = halvesToId(volumeHi, volumeLo);
    const g = this.byVolume.get(id);
    if (g !== undefined || !this.all) return g ?? null;
    const made = mintTestGrant({ volumeId: id, sdcId: this.sdcId, mapVersion: 1_000_000 });
    this.byVolume.set(id, made);
    return made;
  }
}

/** Handshake credentials of a node (derived from the test member key unless `key` is given). */
export function credentialsOf(role: NodeRole, nodeId: string, key?: Uint8Array): NodeKeyring {
  return new NodeKeyring(role, nodeId, [{ kid: 1, key: key ?? deriveNodeKey(MEMBER_KEY, role, nodeId) }]);
}
export const MiB = 1024 * 1024;

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(join(os.tmpdir(), `pf-${tag}-`));
}

export interface NodeSpec {
  sdsId: string;
  deviceId: string;
  deviceBytes: number;
}

export function sdsIdOf(i: number): string {
  return `5d5000000000000${i}`;
}
export function deviceIdOf(i: number): string {
  return `de7000000000000${i}`;
}

/** Start SDS number i (data in dir/sds{i}); restartable on the same dir. */
export function startNode(
  dir: string,
  i: number,
  deviceBytes = 64 * MiB,
  maxInFlightPerConn?: number,
  port = 0,
  wrapDevice?: (d: BlockDevice) => BlockDevice,
  clock?: SdsClock,
  epochHold?: SdsCoreOptions["epochHold"],
): SdsCore {
  const d = join(dir, `sds${i}`);
  fs.mkdirSync(d, { recursive: true });
  return startSdsCore({
    sdsId: sdsIdOf(i),
    mdmId: MDM_ID,
    dataDir: d,
    host: "127.0.0.1",
    port,
    devices: [{ deviceId: deviceIdOf(i), path: join(d, "dev0.img"), sizeBytes: deviceBytes }],
    maxInFlightPerConn,
    wrapDevice,
    clock,
    epochHold,
  });
}

export interface ExtentPlan {
  volumeId: string;
  extentBytes: number;
  /** extent index -> replica SDS numbers, primary first (in-sync copies) */
  extents: {
    index: number;
    replicas: number[];
    epoch?: number;
    thick?: boolean;
    /** a copy being built on SDS `sds` (the primary drives it) */
    target?: { sds: number; mode: "full" | "resync" };
    /** SDS numbers holding an away copy */
    away?: number[];
  }[];
}

/** The assignments SDS number `me` would get from the MDM for these plans. */
export function assignmentsFor(me: number, nodes: SdsCore[], plans: ExtentPlan[], mapVersion = 1, rebuildRateBytesPerSec = 0, vtrees: VTreeGraph[] = []): SdsAssignmentsResponse {
  const resp: z.input<typeof SdsAssignmentsResponse> = {
    mapVersion,
    dataPlane: dataPlaneKeys(),
    rebuildRateBytesPerSec,
    vtrees,
    extentSizeBytesByVolume: {},
    extents: [],
    sds: nodes.map((n, i) => ({ sdsId: sdsIdOf(i), host: "127.0.0.1", port: n.port })),
  };
  for (const p of plans) {
    resp.extentSizeBytesByVolume[p.volumeId] = p.extentBytes;
    for (const x of p.extents) {
      const role = x.replicas[0] === me ? "primary" : x.replicas.includes(me) ? "secondary" : x.target?.sds === me ? "target" : x.away?.includes(me) ? "away" : null;
      if (role === null) continue;
      resp.extents.push({
        volumeId: p.volumeId,
        extentIndex: x.index,
        epoch: x.epoch ?? 1,
        replicas: x.replicas.map(sdsIdOf),
        deviceId: deviceIdOf(me),
        thick: x.thick ?? false,
        role,
        syncTarget: role === "primary" && x.target ? { sdsId: sdsIdOf(x.target.sds), mode: x.target.mode } : null,
      });
    }
  }
  return SdsAssignmentsResponse.parse(resp);
}

export const LONG_LEASE_MS = 3_600_000;

/**
 * Apply the plans on every node (null entries, e.g. stopped nodes, are skipped) and give each a
 * long lease, as an answered heartbeat would. All in one synchronous step, so no request sees
 * one node on the new map and another on the old.
 */
export function applyAll(nodes: (SdsCore | null)[], plans: ExtentPlan[], mapVersion = 1, rebuildRateBytesPerSec = 0, vtrees: VTreeGraph[] = []): void {
  const live = nodes.map((n) => n ?? ({ port: 1 } as SdsCore));
  nodes.forEach((n, i) => {
    if (!n) return;
    n.node.applyAssignments(assignmentsFor(i, live, plans, mapVersion, rebuildRateBytesPerSec, vtrees));
    n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
  });
}

/**
 * An SDC's client to node n, presenting ReadWrite grants for every volume unless `grants` says
 * otherwise (`key`: a node key other than the right one; `sdcId`: another SDC).
 */
export function clientTo(n: SdsCore, opts: { key?: Uint8Array; grants?: GrantSource; sdcId?: string } = {}): DataPlaneClient {
  const sdcId = opts.sdcId ?? SDC_ID;
  return new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.SDC, sdcId, opts.key), grants: opts.grants ?? new TestGrants(sdcId), reconnectBackoffMs: 0 });
}

/** A client that authenticates as the MDM (consistency checks, V-Tree control messages). */
export function mdmClientTo(n: SdsCore): DataPlaneClient {
  return new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.MDM, MDM_ID), reconnectBackoffMs: 0 });
}

/** A client that authenticates as SDS number `i` (a peer). */
export function peerClientTo(n: SdsCore, i: number): DataPlaneClient {
  return new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.SDS, sdsIdOf(i)), reconnectBackoffMs: 0 });
}

export class Vol {
  readonly hi: number;
  readonly lo: number;
  constructor(readonly volumeId: string) {
    ({ hi: this.hi, lo: this.lo } = idToHalves(volumeId));
  }

  req(c: DataPlaneClient, opcode: number, extentIndex: number, offset: number, length: number, opts: { epoch?: number; flags?: number; payload?: Uint8Array } = {}): Promise<DataReply> {
    return c.request(
      { opcode: opcode as Op, flags: opts.flags ?? 0, epoch: opts.epoch ?? 1, volumeHi: this.hi, volumeLo: this.lo, extentIndex, offset, length },
      opts.payload,
    );
  }
  write(c: DataPlaneClient, ext: number, offset: number, data: Uint8Array, opts: { epoch?: number; fua?: boolean } = {}): Promise<DataReply> {
    return this.req(c, Op.WRITE, ext, offset, data.byteLength, { epoch: opts.epoch, flags: opts.fua ? Flag.FUA : 0, payload: data });
  }
  async read(c: DataPlaneClient, ext: number, offset: number, length: number, epoch?: number): Promise<Uint8Array> {
    const r = await this.req(c, Op.READ, ext, offset, length, { epoch });
    if (r.status !== Status.OK) throw new Error(`READ failed with status ${r.status}`);
    return r.payload;
  }
  async checksum(c: DataPlaneClient, ext: number, epoch?: number): Promise<bigint> {
    const r = await this.req(c, Op.CHECKSUM, ext, 0, 0, { epoch });
    if (r.status !== Status.OK) throw new Error(`CHECKSUM failed with status ${r.status}`);
    return new DataView(r.payload.buffer, r.payload.byteOffset, 8).getBigUint64(0, true);
  }
}

/** Read a copy's bytes straight from a node's store (any role; no data-plane checks). */
export function readCopy(n: SdsCore, volumeId: string, ext: number, offset: number, length: number): Uint8Array {
  const e = n.store.find(volumeId, ext);
  if (e === undefined) throw new Error(`SDS ${n.sdsId} holds no copy of ${volumeId}/${ext}`);
  const out = new Uint8Array(length);
  n.store.read(e, offset, out);
  return out;
}

/** Checksum of a copy straight from a node's store (any role). */
export function checksumCopy(n: SdsCore, volumeId: string, ext: number): Promise<bigint> {
  const e = n.store.find(volumeId, ext);
  if (e === undefined) throw new Error(`SDS ${n.sdsId} holds no copy of ${volumeId}/${ext}`);
  return n.store.checksum(e, 0, 0);
}

export function flushReq(c: DataPlaneClient): Promise<DataReply> {
  return c.request({ opcode: Op.FLUSH, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 });
}

export function pattern(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
