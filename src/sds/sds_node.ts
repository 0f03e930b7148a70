// The SDS core: serves data-plane requests for the extent copies it holds and replicates
// writes from the primary copy to the secondary. Needs no MDM: assignments and the data key
// are handed in (runSds fetches them; tests inject them).
//
// Invariants:
// - every extent-addressed request is checked before any device IO: this SDS holds the extent
//   (else NOT_OWNER), the epoch equals its own (else STALE_EPOCH), the range lies inside it;
// - WRITE / TRIM / WRITE_ZEROES are accepted only by the primary (replicas[0]); it applies
//   them locally in arrival order and forwards them (REPL_WRITE / REPL_ZERO) in the same order
//   over ONE connection per peer; the secondary applies in arrival order, so overlapping
//   writes end identical on both copies;
// - a write is acknowledged OK only when every copy holds it (returned through the kernel);
//   with FUA, only when every copy has it durable. A peer that fails or cannot be reached
//   makes the reply UNAVAILABLE (never a single-copy OK);
// - FLUSH makes durable every write acknowledged before it: local devices, local metadata,
//   and a FLUSH to every peer this SDS forwarded to since its last flush.

import { consola } from "consola";
import { Flag, Op, Status, type Frame, type FrameHeader } from "../proto/dataplane.ts";
import { DataPlanePool, type DataRequest } from "../proto/dataplane_client.ts";
import type { SdsAssignmentsResponse } from "../proto/cluster_api.ts";
import { Limits } from "../proto/limits.ts";
import type { Extent, ExtentStore } from "./extent_store.ts";
import type { RequestConn, RequestHandler } from "./dataplane_server.ts";

export interface SdsNodeStats {
  reads: number;
  writes: number;
  replWrites: number;
  zeroes: number;
  /** FLUSH requests served (from clients or peers) */
  flushes: number;
  /** FLUSH requests this SDS sent to peers */
  peerFlushesSent: number;
  /** writes with FUA that were made durable locally */
  fuaSyncs: number;
  refusedNotOwner: number;
  refusedStaleEpoch: number;
  peerFailures: number;
}

export interface SdsNodeOptions {
  sdsId: string;
  dataKeyHex: string;
  store: ExtentStore;
  /** peer connections; default: a pool with one ordered connection per peer */
  peers?: DataPlanePool;
}

const PEER_WARN_INTERVAL_MS = 5000;

export class SdsNode implements RequestHandler {
  readonly sdsId: string;
  readonly store: ExtentStore;
  readonly peers: DataPlanePool;
  readonly stats: SdsNodeStats = {
    reads: 0,
    writes: 0,
    replWrites: 0,
    zeroes: 0,
    flushes: 0,
    peerFlushesSent: 0,
    fuaSyncs: 0,
    refusedNotOwner: 0,
    refusedStaleEpoch: 0,
    peerFailures: 0,
  };
  appliedMapVersion = 0;
  /** peers this SDS forwarded writes to since its last FLUSH began */
  private readonly peersWritten = new Set<string>();
  private readonly inflightFlushes = new Set<Promise<Status>>();
  private readonly lastPeerWarnMs = new Map<string, number>();

  constructor(opts: SdsNodeOptions) {
    this.sdsId = opts.sdsId;
    this.store = opts.store;
    // ONE connection per peer: forwarded writes must reach it in the order they were applied
    this.peers = opts.peers ?? new DataPlanePool({ dataKeyHex: opts.dataKeyHex, nodeId: opts.sdsId, connsPerSds: 1 });
  }

  // ---- assignments ----

  /** Apply the MDM's assignments: new extents held, changed ones updated, missing ones freed. */
  applyAssignments(resp: SdsAssignmentsResponse): void {
    const ids = new Set<string>();
    for (const s of resp.sds) {
      if (s.sdsId === this.sdsId) continue;
      ids.add(s.sdsId);
      this.peers.setAddress(s.sdsId, s.host, s.port);
    }
    this.peers.retain(ids);
    const keep = new Set<string>();
    for (const a of resp.extents) {
      if (!a.replicas.includes(this.sdsId)) continue;
      const sizeBytes = resp.extentSizeBytesByVolume[a.volumeId];
      if (sizeBytes === undefined) {
        consola.warn(`sds ${this.sdsId}: assignment of ${a.volumeId}/${a.extentIndex} has no extent size; skipped`);
        continue;
      }
      const key = `${a.volumeId}/${a.extentIndex}`;
      try {
        this.store.put({ volumeId: a.volumeId, extentIndex: a.extentIndex, epoch: a.epoch, sizeBytes, thick: a.thick, replicas: a.replicas, deviceId: a.deviceId });
        keep.add(key);
      } catch (e) {
        // still assigned to us: never free a copy we hold because its new assignment is unusable
        keep.add(key);
        consola.error(`sds ${this.sdsId}: cannot apply the assignment of extent ${key}: ${(e as Error).message}`);
      }
    }
    const gone: Extent[] = [];
    for (const e of this.store.extents()) if (!keep.has(`${e.volumeId}/${e.extentIndex}`)) gone.push(e);
    for (const e of gone) {
      consola.info(`sds ${this.sdsId}: extent ${e.volumeId}/${e.extentIndex} no longer assigned; freeing its space`);
      this.store.drop(e);
    }
    this.appliedMapVersion = resp.mapVersion;
  }

  // ---- requests ----

  onRequest(conn: RequestConn, f: Frame): void {
    const h = f.header;
    try {
      this.dispatch(conn, h, f.payload);
    } catch (e) {
      consola.error(`sds ${this.sdsId}: opcode ${h.opcode} on ${h.volumeHi.toString(16)}${h.volumeLo.toString(16)}/${h.extentIndex} failed: ${(e as Error).message}`);
      conn.reply(h, Status.IO_ERROR);
    }
  }

  private dispatch(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    switch (h.opcode) {
      case Op.PING:
        conn.reply(h, Status.OK);
        return;
      case Op.READ:
        return this.read(conn, h);
      case Op.WRITE:
        return this.writePrimary(conn, h, payload);
      case Op.REPL_WRITE:
        return this.writeSecondary(conn, h, payload);
      case Op.TRIM:
      case Op.WRITE_ZEROES:
        return this.zeroPrimary(conn, h);
      case Op.REPL_ZERO:
        return this.zeroSecondary(conn, h);
      case Op.FLUSH:
        this.stats.flushes++;
        ((h.flags & Flag.LOCAL_ONLY) !== 0 ? this.flushLocal() : this.flush()).then((st) => conn.reply(h, st));
        return;
      case Op.CHECKSUM:
        return this.checksum(conn, h);
      case Op.REBUILD_WRITE: // the rebuild copy path is not served yet
      case Op.HELLO:
        conn.reply(h, Status.INVALID);
        return;
      default: {
        const never: never = h.opcode;
        conn.reply(h, Status.INVALID);
        return never;
      }
    }
  }

  /** The extent a request addresses, or the refusal status (checked before any device IO). */
  private target(h: FrameHeader): Extent | Status {
    const e = this.store.lookup(h.volumeHi, h.volumeLo, h.extentIndex);
    if (e === undefined) {
      this.stats.refusedNotOwner++;
      return Status.NOT_OWNER;
    }
    if (h.epoch !== e.epoch) {
      this.stats.refusedStaleEpoch++;
      return Status.STALE_EPOCH;
    }
    if (h.offset + h.length > e.sizeBytes) return Status.INVALID;
    return e;
  }

  private read(conn: RequestConn, h: FrameHeader): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    if (h.length > Limits.dataMaxPayloadBytes) return conn.reply(h, Status.INVALID);
    this.stats.reads++;
    const out = conn.replyInto(h, h.length);
    try {
      this.store.read(e, h.offset, out);
    } catch (err) {
      conn.retractReplyInto(h, h.length);
      throw err;
    }
  }

  private writePrimary(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    if (e.replicas[0] !== this.sdsId) return this.refuseNotPrimary(conn, h);
    if (payload.byteLength !== h.length) return conn.reply(h, Status.INVALID);
    this.stats.writes++;
    const st = this.store.write(e, h.offset, payload);
    if (st !== Status.OK) return conn.reply(h, st);
    h.gen = ++e.gen;
    this.replicate(conn, h, e, Op.REPL_WRITE, payload);
  }

  private zeroPrimary(conn: RequestConn, h: FrameHeader): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    if (e.replicas[0] !== this.sdsId) return this.refuseNotPrimary(conn, h);
    this.stats.zeroes++;
    const st = this.store.zero(e, h.offset, h.length);
    if (st !== Status.OK) return conn.reply(h, st);
    h.gen = ++e.gen;
    this.replicate(conn, h, e, Op.REPL_ZERO, undefined);
  }

  /** Forward to every other copy (and sync locally for FUA); reply when all are done. */
  private replicate(conn: RequestConn, h: FrameHeader, e: Extent, op: Op, payload: Uint8Array | undefined): void {
    const fua = (h.flags & Flag.FUA) !== 0;
    const join = new ReplyJoin(conn, h);
    const fwd: DataRequest = {
      opcode: op,
      flags: h.flags & Flag.FUA,
      epoch: h.epoch,
      volumeHi: h.volumeHi,
      volumeLo: h.volumeLo,
      extentIndex: h.extentIndex,
      offset: h.offset,
      length: h.length,
      gen: h.gen,
    };
    for (let i = 1; i < e.replicas.length; i++) {
      const peer = e.replicas[i]!;
      const link = this.peers.link(peer);
      join.expect();
      if (link === undefined) {
        this.peerFailed(peer, "no address known");
        join.done(Status.UNAVAILABLE);
        continue;
      }
      this.peersWritten.add(peer);
      // payload is a FrameReader view of a socket chunk nobody writes into again (see
      // test/dataplane_buffers.test.ts): forward it without a copy
      link.send(
        fwd,
        payload,
        (st) => {
          if (st !== Status.OK) this.peerFailed(peer, `status ${st}`);
          join.done(peerStatus(st));
        },
        true,
      );
    }
    if (fua) {
      join.expect();
      this.stats.fuaSyncs++;
      this.store.syncDevice(e.slot).then(
        () => join.done(Status.OK),
        (err: unknown) => {
          consola.error(`sds ${this.sdsId}: FUA sync failed: ${String(err)}`);
          join.done(Status.IO_ERROR);
        },
      );
    }
    join.arm();
  }

  private writeSecondary(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    if (e.replicas[0] === this.sdsId) return this.refuseNotPrimary(conn, h);
    if (payload.byteLength !== h.length) return conn.reply(h, Status.INVALID);
    this.stats.replWrites++;
    const st = this.store.write(e, h.offset, payload);
    if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
    this.finishSecondary(conn, h, e, st);
  }

  private zeroSecondary(conn: RequestConn, h: FrameHeader): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    if (e.replicas[0] === this.sdsId) return this.refuseNotPrimary(conn, h);
    this.stats.zeroes++;
    const st = this.store.zero(e, h.offset, h.length);
    if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
    this.finishSecondary(conn, h, e, st);
  }

  private finishSecondary(conn: RequestConn, h: FrameHeader, e: Extent, st: Status): void {
    if (st !== Status.OK || (h.flags & Flag.FUA) === 0) return conn.reply(h, st);
    this.stats.fuaSyncs++;
    this.store.syncDevice(e.slot).then(
      () => conn.reply(h, Status.OK),
      (err: unknown) => {
        consola.error(`sds ${this.sdsId}: FUA sync failed: ${String(err)}`);
        conn.reply(h, Status.IO_ERROR);
      },
    );
  }

  /** A copy that is not the primary got a client write (or the primary a forwarded one). */
  private refuseNotPrimary(conn: RequestConn, h: FrameHeader): void {
    this.stats.refusedNotOwner++;
    conn.reply(h, Status.NOT_OWNER);
  }

  private checksum(conn: RequestConn, h: FrameHeader): void {
    const e = this.target(h);
    if (typeof e === "number") return conn.reply(h, e);
    this.store.checksum(e, h.offset, h.length).then(
      (sum) => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, sum, true);
        conn.reply(h, Status.OK, out);
      },
      (err: unknown) => {
        consola.warn(`sds ${this.sdsId}: checksum of ${e.volumeId}/${e.extentIndex} failed: ${String(err)}`);
        conn.reply(h, Status.IO_ERROR);
      },
    );
  }

  // ---- flush ----

  /** Make every write this SDS applied so far durable on its own devices (a peer's FLUSH). */
  private flushLocal(): Promise<Status> {
    return this.store.flushWritten().then(
      () => Status.OK,
      (err: unknown) => {
        consola.error(`sds ${this.sdsId}: flush failed: ${String(err)}`);
        return Status.IO_ERROR;
      },
    );
  }

  /** Make every write acknowledged so far durable here and on every peer forwarded to. */
  flush(): Promise<Status> {
    const peers = [...this.peersWritten];
    this.peersWritten.clear();
    const parts: Promise<Status>[] = [this.flushLocal()];
    for (const peer of peers) parts.push(this.flushPeer(peer));
    const own = Promise.all(parts).then(worstOf);
    const tracked = own.finally(() => this.inflightFlushes.delete(tracked));
    // an earlier flush still in flight may cover writes acked before this one: wait for it
    const waits = [tracked, ...this.inflightFlushes];
    this.inflightFlushes.add(tracked);
    return Promise.all(waits).then(worstOf);
  }

  private flushPeer(peer: string): Promise<Status> {
    const link = this.peers.link(peer);
    if (link === undefined) {
      this.peersWritten.add(peer);
      return Promise.resolve(Status.UNAVAILABLE);
    }
    this.stats.peerFlushesSent++;
    return link.request({ opcode: Op.FLUSH, flags: Flag.LOCAL_ONLY, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }).then((r) => {
      if (r.status === Status.OK) return Status.OK;
      this.peersWritten.add(peer); // still owes durability
      this.peerFailed(peer, `FLUSH status ${r.status}`);
      return Status.UNAVAILABLE;
    });
  }

  private peerFailed(peer: string, what: string): void {
    this.stats.peerFailures++;
    const now = performance.now();
    if (now - (this.lastPeerWarnMs.get(peer) ?? -Infinity) < PEER_WARN_INTERVAL_MS) return;
    this.lastPeerWarnMs.set(peer, now);
    consola.warn(`sds ${this.sdsId}: peer SDS ${peer} failed a forwarded request (${what}); not acknowledging it (further failures muted ${PEER_WARN_INTERVAL_MS / 1000}s)`);
  }

  close(): void {
    this.peers.close();
  }
}

/** Counts outstanding parts of one reply; the worst status wins. */
class ReplyJoin {
  private outstanding = 0;
  private armed = false;
  private status: Status = Status.OK;
  constructor(
    private readonly conn: RequestConn,
    private readonly h: FrameHeader,
  ) {}

  expect(): void {
    this.outstanding++;
  }

  done(st: Status): void {
    if (st !== Status.OK && this.status === Status.OK) this.status = st;
    this.outstanding--;
    if (this.armed && this.outstanding === 0) this.conn.reply(this.h, this.status);
  }

  /** All parts are issued; reply now if they all finished already. */
  arm(): void {
    this.armed = true;
    if (this.outstanding === 0) this.conn.reply(this.h, this.status);
  }
}

/** How a peer's answer to a forwarded request shows in the reply to the client. */
function peerStatus(st: Status): Status {
  switch (st) {
    case Status.OK:
    case Status.NO_SPACE:
    case Status.IO_ERROR:
    case Status.STALE_EPOCH:
      return st;
    case Status.NOT_OWNER:
      return Status.STALE_EPOCH; // the two copies disagree on membership: the client refreshes
    case Status.INVALID:
    case Status.READ_ONLY:
    case Status.UNAUTHORIZED:
    case Status.UNAVAILABLE:
      return Status.UNAVAILABLE;
    default: {
      const never: never = st;
      return never;
    }
  }
}

function worstOf(all: Status[]): Status {
  for (const s of all) if (s !== Status.OK) return s;
  return Status.OK;
}
