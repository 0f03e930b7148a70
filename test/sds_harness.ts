// Test harness for SDS suites: 2-3 SDS cores on 127.0.0.1 (free ports) with block files in a
// fresh temp dir, assignments injected (no MDM), and small data-plane helpers.

import * as fs from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import { DataPlaneClient, type DataReply } from "../src/proto/dataplane_client.ts";
import type { z } from "zod";
import { SdsAssignmentsResponse, type VTreeGraph } from "../src/proto/cluster_api.ts";
import { idToHalves } from "../src/proto/ids.ts";
import { startSdsCore, type SdsCore } from "../src/sds/sds_core.ts";
import type { SdsClock } from "../src/sds/sds_clock.ts";
import type { BlockDevice } from "../src/store/block_device.ts";

export const DATA_KEY = "ab".repeat(32);
export const SDC_ID = "c000000000000001";
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
export function startNode(dir: string, i: number, deviceBytes = 64 * MiB, maxInFlightPerConn?: number, port = 0, wrapDevice?: (d: BlockDevice) => BlockDevice, clock?: SdsClock): SdsCore {
  const d = join(dir, `sds${i}`);
  fs.mkdirSync(d, { recursive: true });
  return startSdsCore({
    sdsId: sdsIdOf(i),
    dataKeyHex: DATA_KEY,
    dataDir: d,
    host: "127.0.0.1",
    port,
    devices: [{ deviceId: deviceIdOf(i), path: join(d, "dev0.img"), sizeBytes: deviceBytes }],
    maxInFlightPerConn,
    wrapDevice,
    clock,
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

export function clientTo(n: SdsCore, key = DATA_KEY): DataPlaneClient {
  return new DataPlaneClient({ host: "127.0.0.1", port: n.port, dataKeyHex: key, nodeId: SDC_ID, reconnectBackoffMs: 0 });
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
