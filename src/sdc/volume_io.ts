// The SDC's IO router for one mapped volume: splits each request at extent boundaries and
// sends the pieces straight to the primary SDS of each extent over pooled, pipelined
// data-plane links. No MDM call and no JSON per IO: the extent map is a cached array.
//
// Invariants:
// - a piece never crosses an extent boundary, and pieces cover the request exactly;
// - every frame carries the volume, extent and the epoch of the map the SDC holds; an SDS that
//   answers STALE_EPOCH / NOT_OWNER / UNAVAILABLE makes the SDC refresh its map and retry the
//   piece (bounded by Limits.sdcRetryWindowMs), so failures the cluster survives never reach
//   the NBD client; a map refresh that fails (no MDM active) does not end the retries either;
// - FLUSH covers every write acknowledged on ANY connection to this volume: the set of extents
//   written since the last flush is shared by all connections (this is why the NBD export
//   advertises CAN_MULTI_CONN); FLUSH goes to each such extent's current primary, whose FLUSH
//   makes durable every write it holds, on its own copy and on the peers it forwarded to; a
//   FLUSH is acknowledged only after every FLUSH started before it;
// - a write-like piece whose OK reply carries Flag.DURABLE (its primary had it durable on every
//   copy before replying: writeThrough pool or FUA) leaves no dirty extent: a FLUSH that finds no
//   dirty extent and no FLUSH under way is answered at once, without the network (a writeThrough
//   volume's FLUSH costs nothing); a reply without the flag (writeBack, an older SDS, a pool
//   switched live) dirties its extent as before; an error reply never counts as durable;
// - per-mapping QoS: the map's limits (setMappedSdcLimits) drive one QosGate per volume,
//   shared by all its NBD connections; a new map changes them live.

import { Flag, Op, Status, opName, statusName } from "../proto/dataplane.ts";
import { PfError, assert } from "../proto/errors.ts";
import { idToHalves } from "../proto/ids.ts";
import { Limits } from "../proto/limits.ts";
import type { VolumeMap } from "../proto/cluster_api.ts";
import type { DataPlaneLink, DataReply, DataRequest } from "../proto/dataplane_client.ts";
import type { ExportMeter } from "./nbd_export.ts";
import { QosGate } from "./qos_gate.ts";
import { flatOf, type Bytes } from "../proto/scatter.ts";

/** The part of a data-plane link (src/proto/dataplane_client.ts) the router uses; `send` (no
 *  promise per IO) when the link has it. */
export type SdsLink = Pick<DataPlaneLink, "request"> & Partial<Pick<DataPlaneLink, "send">>;

/** Completion of a callback-form IO (readCb/writeCb): never called synchronously. */
export type IoDone = (err: unknown, data: Uint8Array) => void;
export interface VolumeIoDeps {
  /** link to an SDS by id; undefined when the map names an SDS whose address is unknown */
  link(sdsId: string): SdsLink | undefined;
  /** ask the MDM for fresh maps (coalesced by the caller); resolves when applied */
  refreshMaps(): Promise<void>;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

// A grant the SDS found missing, expired or revoked, or a handshake it refused (keys rotating),
// heals with fresh maps (new grant, new keys) unless the volume was unmapped meanwhile.
const RETRYABLE: ReadonlySet<Status> = new Set<Status>([
  Status.STALE_EPOCH,
  Status.NOT_OWNER,
  Status.UNAVAILABLE,
  Status.NO_GRANT,
  Status.GRANT_EXPIRED,
  Status.GRANT_REVOKED,
  Status.UNAUTHORIZED,
]);
const ACCESS_REFUSED: ReadonlySet<Status> = new Set<Status>([Status.NO_GRANT, Status.GRANT_EXPIRED, Status.GRANT_REVOKED, Status.UNAUTHORIZED]);

export class VolumeIo {
  /** FLUSH on any connection covers writes of all connections (see top of file) */
  readonly multiConn = true;
  /** the volume's IO counters (sdc_metrics.ts); the NBD session reports completions to it */
  meter: ExportMeter | null = null;
  /** per-mapping QoS of this volume on this SDC */
  readonly qos = new QosGate();
  private map: VolumeMap;
  private volumeHi: number;
  private volumeLo: number;
  /** extents written since the last FLUSH by a write whose reply lacked Flag.DURABLE (shared by
   *  all NBD connections of the volume: empty, with no FLUSH under way, means nothing to flush) */
  private dirtyExtents = new Set<number>();
  /** FLUSHes under way: a later FLUSH is not acknowledged before them (they cover writes
   *  acknowledged before it, and may still fail) */
  private flushesInFlight = new Set<Promise<void>>();
  /** FLUSHes answered without the network (see flush()) */
  localFlushes = 0;
  /** unmapped: IO the SDS refuses for want of a grant fails at once instead of retrying */
  private detached = false;
  /** the request of pieceCb's first attempt, filled per IO (DataPlaneLink.send reads it at once) */
  private readonly scratch: DataRequest;

  constructor(map: VolumeMap, private readonly deps: VolumeIoDeps) {
    this.map = map;
    ({ hi: this.volumeHi, lo: this.volumeLo } = idToHalves(map.volumeId));
    this.scratch = { opcode: Op.READ, flags: 0, epoch: 0, volumeHi: this.volumeHi, volumeLo: this.volumeLo, extentIndex: 0, offset: 0, length: 0, gen: 0 };
    this.qos.setLimits(map.limitIops, map.limitBwKbps * 1024);
  }

  get name(): string {
    return this.map.name;
  }
  get sizeBytes(): number {
    return this.map.sizeBytes;
  }
  get readOnly(): boolean {
    return this.map.accessMode === "ReadOnly";
  }
  get volumeId(): string {
    return this.map.volumeId;
  }

  /** The volume is no longer mapped to this SDC. */
  detach(): void {
    this.detached = true;
  }

  setMap(map: VolumeMap): void {
    assert(map.volumeId === this.map.volumeId, "volume map replaced by another volume's");
    this.map = map;
    this.qos.setLimits(map.limitIops, map.limitBwKbps * 1024);
  }

  /** The mapping's QoS limits now (IOPS, bytes/s; 0 = unlimited). */
  get limits(): { iops: number; bytesPerSec: number } {
    return { iops: this.map.limitIops, bytesPerSec: this.map.limitBwKbps * 1024 };
  }

  /**
   * Callback form of read() for the hot path (no promise per IO when the range lies in one extent
   * and its first attempt succeeds; anything else goes through read()).
   */
  readCb(offsetBytes: number, lengthBytes: number, done: IoDone): void {
    const ext = this.map.extentSizeBytes;
    if (lengthBytes === 0 || offsetBytes < 0 || lengthBytes < 0 || lengthBytes > this.map.sizeBytes - offsetBytes || Math.floor(offsetBytes / ext) !== Math.floor((offsetBytes + lengthBytes - 1) / ext)) {
      this.read(offsetBytes, lengthBytes).then((d) => done(null, d), (e: unknown) => done(e, EMPTY));
      return;
    }
    this.pieceCb(Op.READ, 0, offsetBytes, lengthBytes, undefined, done);
  }

  /** Callback form of write() (see readCb). */
  writeCb(offsetBytes: number, data: Bytes, fua: boolean, done: IoDone): void {
    const ext = this.map.extentSizeBytes;
    const len = data.byteLength;
    if (this.readOnly || len === 0 || offsetBytes < 0 || len > this.map.sizeBytes - offsetBytes || Math.floor(offsetBytes / ext) !== Math.floor((offsetBytes + len - 1) / ext)) {
      this.write(offsetBytes, flatOf(data), fua).then(() => done(null, EMPTY), (e: unknown) => done(e, EMPTY));
      return;
    }
    this.pieceCb(Op.WRITE, fua ? Flag.FUA : 0, offsetBytes, len, data, done);
  }

  /** One extent-contained piece, first attempt by callback; a refusal continues in piece()'s retry loop. */
  private pieceCb(opcode: Op, flags: number, posBytes: number, lengthBytes: number, payload: Bytes | undefined, done: IoDone): void {
    const extentIndex = Math.floor(posBytes / this.map.extentSizeBytes);
    const extent = this.map.extents[extentIndex];
    const primary = extent?.replicas[0];
    const link = primary === undefined ? undefined : this.deps.link(primary);
    if (extent === undefined || link === undefined || link.send === undefined) {
      this.piece(opcode, flags, posBytes, lengthBytes, payload && flatOf(payload)).then((r) => done(null, r.payload), (e: unknown) => done(e, EMPTY));
      return;
    }
    const req = this.scratch;
    req.opcode = opcode;
    req.flags = flags;
    req.epoch = extent.epoch;
    req.extentIndex = extentIndex;
    req.offset = posBytes - extentIndex * this.map.extentSizeBytes;
    req.length = lengthBytes;
    // send() reads `req` before it returns (no request object per IO); the payload is never
    // written again (a socket chunk view, the views of several: Scatter, or the session's own
    // copy): the link may keep a view of what the socket did not take at once
    link.send(req, payload, (st, p, replyFlags) => {
      if (st === Status.OK) {
        if (opcode !== Op.READ && ((replyFlags ?? 0) & Flag.DURABLE) === 0) this.dirtyExtents.add(extentIndex);
        if (opcode === Op.READ && p.byteLength !== lengthBytes) return done(new PfError("INTERNAL", "READ reply length differs from request"), EMPTY);
        return done(null, p);
      }
      this.piece(opcode, flags, posBytes, lengthBytes, payload && flatOf(payload), st).then((r) => done(null, r.payload), (e: unknown) => done(e, EMPTY));
    }, true);
  }

  /** The data-plane request for one piece inside one extent (both IO paths). */
  private requestFor(opcode: Op, flags: number, epoch: number, extentIndex: number, posBytes: number, lengthBytes: number): DataRequest {
    return {
      opcode,
      flags,
      epoch,
      volumeHi: this.volumeHi,
      volumeLo: this.volumeLo,
      extentIndex,
      offset: posBytes - extentIndex * this.map.extentSizeBytes,
      length: lengthBytes,
      gen: 0,
    };
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkRange(offsetBytes, lengthBytes);
    if (lengthBytes === 0) return new Uint8Array(0);
    const firstExtent = Math.floor(offsetBytes / this.map.extentSizeBytes);
    const lastExtent = Math.floor((offsetBytes + lengthBytes - 1) / this.map.extentSizeBytes);
    if (firstExtent === lastExtent) {
      const r = await this.piece(Op.READ, 0, offsetBytes, lengthBytes, undefined);
      assert(r.payload.byteLength === lengthBytes, "READ reply length differs from request");
      return r.payload;
    }
    const out = new Uint8Array(lengthBytes);
    await this.forEachPiece(offsetBytes, lengthBytes, async (pos, len, at) => {
      const r = await this.piece(Op.READ, 0, pos, len, undefined);
      assert(r.payload.byteLength === len, "READ reply length differs from request");
      out.set(r.payload, at);
    });
    return out;
  }

  async write(offsetBytes: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.checkWritable(offsetBytes, data.byteLength);
    const flags = fua ? Flag.FUA : 0;
    await this.forEachPiece(offsetBytes, data.byteLength, (pos, len, at) =>
      this.piece(Op.WRITE, flags, pos, len, data.subarray(at, at + len)).then(() => undefined),
    );
  }

  async trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    this.checkWritable(offsetBytes, lengthBytes);
    const flags = fua ? Flag.FUA : 0;
    await this.forEachPiece(offsetBytes, lengthBytes, (pos, len) => this.piece(Op.TRIM, flags, pos, len, undefined).then(() => undefined));
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    this.checkWritable(offsetBytes, lengthBytes);
    const flags = fua ? Flag.FUA : 0;
    await this.forEachPiece(offsetBytes, lengthBytes, (pos, len) =>
      this.piece(Op.WRITE_ZEROES, flags, pos, len, undefined).then(() => undefined),
    );
  }

  /**
   * Make every write acknowledged so far durable on every copy. FLUSH goes to the CURRENT
   * primary of every extent written since the last flush (not to the SDS that acknowledged the
   * write: it may be gone, and its surviving peer holds the write); each primary syncs its own
   * copy and every peer it forwarded to.
   */
  flush(): Promise<void> {
    if (this.dirtyExtents.size === 0 && this.flushesInFlight.size === 0) {
      // every write acknowledged so far was durable when acknowledged, or covered by a FLUSH
      // that completed: nothing to send (answered at once, no network)
      this.localFlushes++;
      this.meter?.flushedLocally?.();
      return DONE;
    }
    const earlier = [...this.flushesInFlight];
    const own = this.flushDirty();
    this.flushesInFlight.add(own);
    const forget = () => this.flushesInFlight.delete(own);
    own.then(forget, forget);
    return Promise.all([own, ...earlier]).then(() => undefined);
  }

  private async flushDirty(): Promise<void> {
    if (this.dirtyExtents.size === 0) return;
    const extents = [...this.dirtyExtents];
    this.dirtyExtents.clear();
    try {
      await this.flushExtents(extents);
    } catch (e) {
      for (const x of extents) this.dirtyExtents.add(x);
      throw e;
    }
  }

  private async flushExtents(extents: number[]): Promise<void> {
    const deadline = this.deps.nowMs() + Limits.sdcRetryWindowMs;
    let pending = extents;
    for (let attempt = 0; ; attempt++) {
      const byPrimary = new Map<string, number[]>();
      for (const x of pending) {
        const primary = this.map.extents[x]?.replicas[0];
        if (primary === undefined) continue; // extent no longer in the map: nothing to flush
        const list = byPrimary.get(primary);
        if (list) list.push(x);
        else byPrimary.set(primary, [x]);
      }
      const results = await Promise.all(
        [...byPrimary].map(async ([sdsId, xs]) => ({ sdsId, xs, status: await this.flushSds(sdsId) })),
      );
      const bad = results.find((r) => r.status !== Status.OK && !RETRYABLE.has(r.status));
      if (bad) throw statusError(bad.status, "FLUSH", bad.sdsId);
      pending = results.filter((r) => r.status !== Status.OK).flatMap((r) => r.xs);
      if (pending.length === 0) return;
      if (this.deps.nowMs() > deadline) {
        throw new PfError("IO_ERROR", `FLUSH of volume ${this.map.name} did not succeed within ${Limits.sdcRetryWindowMs} ms (${pending.length} extents)`);
      }
      await this.refreshForRetry();
      await this.deps.sleep(backoffMs(attempt));
    }
  }

  private async flushSds(sdsId: string): Promise<Status> {
    const link = this.deps.link(sdsId);
    if (!link) return Status.UNAVAILABLE;
    const r = await link.request({ opcode: Op.FLUSH, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 });
    return r.status;
  }

  /**
   * Send one extent-contained piece to the extent's primary, retrying through map changes.
   * `firstStatus`: the status a first attempt already got (pieceCb), handled as if this loop made it.
   */
  private async piece(opcode: Op, flags: number, posBytes: number, lengthBytes: number, payload: Uint8Array | undefined, firstStatus?: Status): Promise<DataReply> {
    const deadline = this.deps.nowMs() + Limits.sdcRetryWindowMs;
    for (let attempt = 0; ; attempt++) {
      const extentIndex = Math.floor(posBytes / this.map.extentSizeBytes);
      const extent = this.map.extents[extentIndex];
      if (extent === undefined) throw new PfError("BAD_REQUEST", `offset ${posBytes} is past the volume's extent map`);
      const primary = extent.replicas[0]!;
      const link = attempt === 0 && firstStatus !== undefined ? undefined : this.deps.link(primary);
      let status: Status = attempt === 0 && firstStatus !== undefined ? firstStatus : Status.UNAVAILABLE;
      if (link) {
        const r = await link.request(this.requestFor(opcode, flags, extent.epoch, extentIndex, posBytes, lengthBytes), payload);
        if (r.status === Status.OK) {
          if (opcode !== Op.READ && ((r.flags ?? 0) & Flag.DURABLE) === 0) this.dirtyExtents.add(extentIndex);
          return r;
        }
        status = r.status;
      }
      if (!RETRYABLE.has(status) || (this.detached && ACCESS_REFUSED.has(status))) throw statusError(status, opName(opcode), primary);
      if (this.deps.nowMs() > deadline) {
        throw new PfError("IO_ERROR", `${opName(opcode)} on volume ${this.map.name} extent ${extentIndex} failed for ${Limits.sdcRetryWindowMs} ms (last: ${statusName(status)})`);
      }
      await this.refreshForRetry();
      await this.deps.sleep(backoffMs(attempt));
    }
  }

  /** Fresh maps before a retry. A refresh that fails (no MDM active: takeover, etcd without
   *  quorum) does not fail the IO: the piece is retried on the maps held until the window ends. */
  private async refreshForRetry(): Promise<void> {
    try {
      await this.deps.refreshMaps();
    } catch {
      // the retry loop goes on; the SDC's heartbeat loop logs the MDM's state
    }
  }

  private async forEachPiece(offsetBytes: number, lengthBytes: number, fn: (posBytes: number, len: number, at: number) => Promise<void>): Promise<void> {
    if (lengthBytes === 0) return;
    const ext = this.map.extentSizeBytes;
    const end = offsetBytes + lengthBytes;
    const firstEnd = Math.min(end, (Math.floor(offsetBytes / ext) + 1) * ext);
    if (firstEnd === end) return fn(offsetBytes, lengthBytes, 0);
    const parts: Promise<void>[] = [];
    for (let pos = offsetBytes; pos < end; ) {
      const next = Math.min(end, (Math.floor(pos / ext) + 1) * ext);
      parts.push(fn(pos, next - pos, pos - offsetBytes));
      pos = next;
    }
    const results = await Promise.allSettled(parts);
    const bad = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (bad) throw bad.reason;
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > this.map.sizeBytes || lengthBytes > this.map.sizeBytes - offsetBytes) {
      throw new PfError("BAD_REQUEST", `IO at ${offsetBytes}+${lengthBytes} is past the end of volume ${this.map.name} (${this.map.sizeBytes} bytes)`);
    }
  }

  private checkWritable(offsetBytes: number, lengthBytes: number): void {
    if (this.readOnly) throw new PfError("READ_ONLY", `volume ${this.map.name} is mapped read-only`);
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > this.map.sizeBytes || lengthBytes > this.map.sizeBytes - offsetBytes) {
      throw new PfError("NO_SPACE", `write at ${offsetBytes}+${lengthBytes} is past the end of volume ${this.map.name} (${this.map.sizeBytes} bytes)`);
    }
  }
}

function backoffMs(attempt: number): number {
  return Math.min(500, 10 * 2 ** Math.min(attempt, 6));
}

function statusError(s: Status, what: string, sdsId: string): PfError {
  const msg = `${what} refused by SDS ${sdsId}: ${statusName(s)}`;
  switch (s) {
    case Status.NO_SPACE:
      return new PfError("NO_SPACE", msg);
    case Status.READ_ONLY:
      return new PfError("READ_ONLY", msg);
    case Status.INVALID:
      return new PfError("BAD_REQUEST", msg);
    case Status.UNAUTHORIZED:
    case Status.GRANT_WRONG_SDC:
    case Status.GRANT_EXPIRED:
      return new PfError("UNAUTHORIZED", msg);
    case Status.NO_GRANT:
    case Status.GRANT_REVOKED:
      return new PfError("NOT_MAPPED", msg);
    case Status.OK:
    case Status.STALE_EPOCH:
    case Status.NOT_OWNER:
    case Status.IO_ERROR:
    case Status.UNAVAILABLE:
      return new PfError("IO_ERROR", msg);
    default: {
      const never: never = s;
      return new PfError("INTERNAL", `unknown status ${String(never)}`);
    }
  }
}

const EMPTY = new Uint8Array(0);
const DONE: Promise<void> = Promise.resolve();
