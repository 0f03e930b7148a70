// The pf data-plane wire format (SDC -> SDS and SDS -> SDS). ALL INTEGERS ARE LITTLE-ENDIAN.
//
// Every message is one frame: a fixed 48-byte header followed by `payloadLength` bytes.
//
//   @0  u32 magic          0x31504450 ("PDP1")
//   @4  u8  opcode         Op.*
//   @5  u8  flags          Flag.* (REPLY marks a reply)
//   @6  u16 status         Status.* (0 in requests)
//   @8  u32 requestId      echoed in the reply; replies may come out of order
//   @12 u32 epoch          replica-set epoch the sender believes in
//   @16 u32 volumeHi       high half of the 16-hex volume id
//   @20 u32 volumeLo       low half (unique per object)
//   @24 u32 extentIndex
//   @28 u32 offset         byte offset inside the extent
//   @32 u32 length         bytes addressed (READ/WRITE/TRIM/ZERO)
//   @36 u32 payloadLength  bytes following the header
//   @40 u32 genLo          per-extent write generation (replication order); 0 when unused
//   @44 u32 genHi
//
// With Flag.LAYER the volume fields name a LAYER of a V-Tree instead of a member volume: the
// primary sends every forwarded write (REPL_*), every copy frame (REBUILD_*) and per-layer
// CHECKSUMs that way, so both copies write exactly the layer the primary chose (snapshots-qos.md
// §6.2). Without it they name a volume, which the SDS resolves to that volume's open layer.
//
// Decoding is validation: a bad magic, an unknown opcode or flag, an oversized payload or a
// request addressing past Limits.maxExtentBytes is a FrameError naming the field; the caller
// closes that connection and keeps serving others. No other module computes a byte offset.

import { Limits } from "./limits.ts";
import { MIN_POOLED_BYTES } from "./payload_pool.ts";
import { Scatter } from "./scatter.ts";

export const DATAPLANE_MAGIC = 0x31504450;
export const HEADER_BYTES = 48;

export const Op = {
  HELLO: 1, // first frame of a connection; its reply is the CHALLENGE (payloads: dataplane_auth.ts)
  READ: 2,
  WRITE: 3, // payload = data; primary forwards to the other replicas
  FLUSH: 4, // make every write this SDS acknowledged durable (and on the peers it forwarded to)
  TRIM: 5,
  WRITE_ZEROES: 6,
  REPL_WRITE: 7, // primary -> secondary copy of a WRITE
  REPL_ZERO: 8, // primary -> secondary copy of TRIM / WRITE_ZEROES
  CHECKSUM: 9, // reply payload: 8-byte checksum of the extent's content (admin check)
  PING: 10,
  REBUILD_WRITE: 11, // primary -> sync target: a copied range (applied like REPL_WRITE); with
  //                    LAYER and payloadLength 0: the layer owns the chunk as zeros (no space)
  AUTH: 12, // second frame: the client's proof; its reply carries the server's (dataplane_auth.ts)
  GRANT: 13, // SDC -> SDS: a mapping grant for volumeHi/Lo, once per connection and volume (grant.ts)
  CONTROL: 14, // MDM -> SDS: a V-Tree control message (payload: src/proto/vtree_control.ts)
  REBUILD_OWNERS: 15, // primary -> sync target: the layers owning chunk offset/1 MiB (payload:
  //                     u32 layer keys); the target drops that chunk from every other layer
} as const;
export type Op = (typeof Op)[keyof typeof Op];
const OP_MAX = 15;

export const Flag = {
  FUA: 0x01, // durable before the reply
  /** FLUSH from a peer SDS: make this SDS's own copies durable, do not forward (forwarding
   *  would let two SDSs that replicate to each other wait on each other's flush forever) */
  LOCAL_ONLY: 0x02,
  /** the volume fields name a layer (see the top of this file) */
  LAYER: 0x04,
  /** replies only: an OK reply to a WRITE / TRIM / WRITE_ZEROES whose data was durable on every
   *  copy before the reply (writeThrough pool or FUA): the SDC need not FLUSH it (volume_io.ts).
   *  Never set on an error reply; a request carrying it is a FrameError. */
  DURABLE: 0x08,
  REPLY: 0x80,
} as const;
const KNOWN_FLAGS = Flag.FUA | Flag.LOCAL_ONLY | Flag.LAYER | Flag.DURABLE | Flag.REPLY;

export const Status = {
  OK: 0,
  STALE_EPOCH: 1,
  NOT_OWNER: 2, // this SDS holds no copy of that extent
  NO_SPACE: 3,
  IO_ERROR: 4,
  INVALID: 5,
  READ_ONLY: 6,
  UNAUTHORIZED: 7,
  UNAVAILABLE: 8, // a peer copy could not be written
  NO_GRANT: 9, // IO on a volume this connection presented no valid grant for (unmapped)
  GRANT_EXPIRED: 10, // the grant's expiry passed (or its key id retired): fetch a fresh one
  GRANT_REVOKED: 11, // the MDM revoked the grant (unmap, switch to ReadOnly)
  GRANT_WRONG_SDC: 12, // a grant issued to another SDC than the connection's
} as const;
export type Status = (typeof Status)[keyof typeof Status];
const STATUS_MAX = 12;

/** "WRITE", "STALE_EPOCH", … for logs and error messages. */
export function opName(op: number): string {
  return nameOf(Op, op, "op");
}
export function statusName(s: number): string {
  return nameOf(Status, s, "status");
}
function nameOf(table: Record<string, number>, v: number, what: string): string {
  for (const [k, x] of Object.entries(table)) if (x === v) return k;
  return `${what} ${v}`;
}

export interface FrameHeader {
  opcode: Op;
  flags: number;
  status: Status;
  requestId: number;
  epoch: number;
  volumeHi: number;
  volumeLo: number;
  extentIndex: number;
  offset: number;
  length: number;
  payloadLength: number;
  gen: number;
  /** the request's payload came from payload_pool.ts: given back when it is answered (never on the wire) */
  pooledPayload?: Uint8Array;
}

export class FrameError extends Error {
  constructor(readonly field: string, message: string) {
    super(`bad data-plane frame: ${field}: ${message}`);
    this.name = "FrameError";
  }
}

/** Write a header into `buf` at `at` (buf must have HEADER_BYTES free there). */
export function encodeHeader(buf: Uint8Array, at: number, h: FrameHeader): void {
  encodeHeaderInto(new DataView(buf.buffer, buf.byteOffset, buf.byteLength), at, h);
}

/**
 * Write a header at byte `at` of a caller-owned DataView (no allocation: the hot path keeps one
 * view per output buffer). The view must have HEADER_BYTES free at `at`.
 */
export function encodeHeaderInto(v: DataView, at: number, h: FrameHeader): void {
  v.setUint32(at, DATAPLANE_MAGIC, true);
  v.setUint8(at + 4, h.opcode);
  v.setUint8(at + 5, h.flags);
  v.setUint16(at + 6, h.status, true);
  v.setUint32(at + 8, h.requestId >>> 0, true);
  v.setUint32(at + 12, h.epoch >>> 0, true);
  v.setUint32(at + 16, h.volumeHi >>> 0, true);
  v.setUint32(at + 20, h.volumeLo >>> 0, true);
  v.setUint32(at + 24, h.extentIndex >>> 0, true);
  v.setUint32(at + 28, h.offset >>> 0, true);
  v.setUint32(at + 32, h.length >>> 0, true);
  v.setUint32(at + 36, h.payloadLength >>> 0, true);
  v.setUint32(at + 40, h.gen % 0x1_0000_0000, true);
  v.setUint32(at + 44, Math.floor(h.gen / 0x1_0000_0000), true);
}

/** Build a whole frame (header + payload) in one fresh buffer. */
export function encodeFrame(h: Omit<FrameHeader, "payloadLength">, payload?: Uint8Array): Uint8Array {
  const n = payload ? payload.byteLength : 0;
  const out = new Uint8Array(HEADER_BYTES + n);
  encodeHeader(out, 0, { ...h, payloadLength: n });
  if (payload) out.set(payload, HEADER_BYTES);
  return out;
}

/** u32 little-endian at `at` of `b` (no DataView: reading a socket chunk's .buffer makes JSC
 *  materialise an ArrayBuffer for it, and a DataView per frame is one more allocation). */
function u32le(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x100_0000;
}

/**
 * Decode and validate a header. Throws FrameError naming the bad field. `maxPayloadBytes` is
 * smaller before a connection is authenticated (Limits.dataPreAuthMaxPayloadBytes). With `into`,
 * the header is decoded into that object (a reader whose caller uses each header synchronously)
 * instead of a new one.
 */
export function decodeHeader(buf: Uint8Array, at: number, maxPayloadBytes: number = Limits.dataMaxPayloadBytes, into?: FrameHeader): FrameHeader {
  if (buf.byteLength - at < HEADER_BYTES) throw new RangeError("decodeHeader: fewer than HEADER_BYTES bytes");
  if (u32le(buf, at) !== DATAPLANE_MAGIC) throw new FrameError("magic", "not a pf data-plane frame");
  const opcode = buf[at + 4]!;
  if (opcode < 1 || opcode > OP_MAX) throw new FrameError("opcode", `unknown opcode ${opcode}`);
  const flags = buf[at + 5]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new FrameError("flags", `unknown flags 0x${flags.toString(16)}`);
  if ((flags & (Flag.DURABLE | Flag.REPLY)) === Flag.DURABLE) throw new FrameError("flags", "DURABLE on a request");
  const status = buf[at + 6]! | (buf[at + 7]! << 8);
  if (status > STATUS_MAX) throw new FrameError("status", `unknown status ${status}`);
  const payloadLength = u32le(buf, at + 36);
  if (payloadLength > maxPayloadBytes) {
    throw new FrameError("payloadLength", `${payloadLength} bytes exceeds limit ${maxPayloadBytes}`);
  }
  const offset = u32le(buf, at + 28);
  const length = u32le(buf, at + 32);
  if (offset + length > Limits.maxExtentBytes) {
    throw new FrameError("offset", `offset ${offset} + length ${length} beyond the largest extent`);
  }
  const genHi = u32le(buf, at + 44);
  if (genHi >= 0x20_0000) throw new FrameError("gen", "generation beyond 2^53");
  const gen = genHi * 0x1_0000_0000 + u32le(buf, at + 40);
  if (into !== undefined) {
    into.opcode = opcode as Op;
    into.flags = flags;
    into.status = status as Status;
    into.requestId = u32le(buf, at + 8);
    into.epoch = u32le(buf, at + 12);
    into.volumeHi = u32le(buf, at + 16);
    into.volumeLo = u32le(buf, at + 20);
    into.extentIndex = u32le(buf, at + 24);
    into.offset = offset;
    into.length = length;
    into.payloadLength = payloadLength;
    into.gen = gen;
    return into;
  }
  return {
    opcode: opcode as Op,
    flags,
    status: status as Status,
    requestId: u32le(buf, at + 8),
    epoch: u32le(buf, at + 12),
    volumeHi: u32le(buf, at + 16),
    volumeLo: u32le(buf, at + 20),
    extentIndex: u32le(buf, at + 24),
    offset,
    length,
    payloadLength,
    gen,
  };
}

export interface Frame {
  header: FrameHeader;
  /** view of the payload; valid only until the callback returns unless copied */
  payload: Uint8Array;
  /**
   * FrameReader.scatterPayloads: the large payload as the socket chunks it arrived in; reading
   * `payload` then copies it into one pooled buffer (once) that the header's pooledPayload names
   */
  scatter?: Scatter;
}

/** A frame whose payload spans socket chunks, kept as views of them (scatter.ts). */
class ScatterFrame implements Frame {
  readonly scatter: Scatter;
  constructor(readonly header: FrameHeader, pieces: Uint8Array[], n: number) {
    this.scatter = new Scatter(pieces, n, header);
  }
  get payload(): Uint8Array {
    return this.scatter.flat();
  }
}

/**
 * Reassembles frames from a TCP byte stream without Buffer.concat on the hot path: chunks are
 * kept in a list; a frame contained in one chunk is handed out as a zero-copy view, a frame
 * spanning chunks is copied once into a buffer of its own size.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private chunkOffset = 0; // read position inside chunks[0]
  private buffered = 0;
  private pending: FrameHeader | null = null;
  private readonly headerScratch = new Uint8Array(HEADER_BYTES);
  /** frames announcing a larger payload are a FrameError (lowered until the handshake is done) */
  maxPayloadBytes: number = Limits.dataMaxPayloadBytes;
  /**
   * hand out large payloads that span socket chunks as views of them (Frame.scatter) instead of
   * copying them (the SDS server side; not with reuseFrames)
   */
  scatterPayloads = false;
  /**
   * Hand out every frame in ONE reused Frame and header object (no allocation per frame). Only for
   * a caller that is done with the frame when onFrame returns (a client reading replies); the
   * payload view stays valid as before.
   */
  reuseFrames = false;
  private readonly shared: Frame = { header: blankHeader(), payload: EMPTY };
  // where the last take() found its bytes (fields, not a result object: no allocation per frame)
  private takeBuf: Uint8Array = EMPTY;
  private takeAt = 0;

  /**
   * Feed bytes; calls onFrame for every complete frame. Throws FrameError on bad input.
   * When onFrame returns `false` the reader stops handing out frames (the caller is at its
   * in-flight limit and has paused the socket); the rest stays buffered until `pump`.
   */
  push(data: Uint8Array, onFrame: (f: Frame) => void | boolean): void {
    if (data.byteLength === 0) return;
    this.chunks.push(data);
    this.buffered += data.byteLength;
    this.pump(onFrame);
  }

  /** Hand out the complete frames already buffered (after a stop requested by onFrame). */
  pump(onFrame: (f: Frame) => void | boolean): void {
    for (;;) {
      if (this.pending === null) {
        if (this.buffered < HEADER_BYTES) return;
        this.take(HEADER_BYTES, this.headerScratch);
        this.pending = decodeHeader(this.takeBuf, this.takeAt, this.maxPayloadBytes, this.reuseFrames ? this.shared.header : undefined);
      }
      const need = this.pending.payloadLength;
      if (this.buffered < need) return;
      const header = this.pending;
      this.pending = null;
      if (this.scatterPayloads && !this.reuseFrames && need >= MIN_POOLED_BYTES && this.chunks[0]!.byteLength - this.chunkOffset < need) {
        if (onFrame(new ScatterFrame(header, this.takePieces(need), need)) === false) return;
        continue;
      }
      let payload: Uint8Array = EMPTY;
      if (need > 0) {
        this.take(need, null);
        payload = this.takeAt === 0 && this.takeBuf.byteLength === need ? this.takeBuf : this.takeBuf.subarray(this.takeAt, this.takeAt + need);
      }
      let more: void | boolean;
      if (this.reuseFrames) {
        const f = this.shared;
        f.payload = payload;
        more = onFrame(f);
        f.payload = EMPTY;
      } else {
        more = onFrame({ header, payload });
      }
      if (more === false) return;
    }
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Take n bytes into takeBuf/takeAt: a view into the first chunk when possible, else a copy (into scratch if given). */
  private take(n: number, scratch: Uint8Array | null): void {
    const first = this.chunks[0]!;
    const avail = first.byteLength - this.chunkOffset;
    if (avail >= n) {
      this.takeBuf = first;
      this.takeAt = this.chunkOffset;
      this.advance(n);
      return;
    }
    // a copy, never zero-filled (every byte is set); a large payload that spans chunks on the
    // server side is a Scatter instead (scatterPayloads) and copied, if at all, into a pooled buffer
    const out = scratch ?? Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const m = Math.min(n - filled, c.byteLength - this.chunkOffset);
      out.set(c.subarray(this.chunkOffset, this.chunkOffset + m), filled);
      filled += m;
      this.advance(m);
    }
    this.takeBuf = out;
    this.takeAt = 0;
  }

  /** Take n bytes as views of the chunks holding them (no copy). */
  private takePieces(n: number): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      const m = Math.min(left, c.byteLength - this.chunkOffset);
      pieces.push(this.chunkOffset === 0 && m === c.byteLength ? c : c.subarray(this.chunkOffset, this.chunkOffset + m));
      left -= m;
      this.advance(m);
    }
    return pieces;
  }

  private advance(n: number): void {
    this.chunkOffset += n;
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (this.chunkOffset === first.byteLength) {
      this.chunks.shift();
      this.chunkOffset = 0;
    }
  }
}

function blankHeader(): FrameHeader {
  return { opcode: Op.PING, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };
}

const EMPTY = new Uint8Array(0);

/** REBUILD_OWNERS payload: the u32 keys (low id halves) of the layers owning one chunk. */
export function encodeLayerKeys(keys: readonly number[]): Uint8Array {
  const out = new Uint8Array(keys.length * 4);
  const v = new DataView(out.buffer);
  keys.forEach((k, i) => v.setUint32(i * 4, k >>> 0, true));
  return out;
}

export function decodeLayerKeys(p: Uint8Array): number[] {
  if (p.byteLength % 4 !== 0) throw new FrameError("payloadLength", "REBUILD_OWNERS payload must be a list of u32 layer keys");
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: number[] = [];
  for (let at = 0; at < p.byteLength; at += 4) out.push(v.getUint32(at, true));
  return out;
}
