// The NBD wire format (fixed newstyle handshake + transmission phase). ALL INTEGERS ARE BIG-ENDIAN
// (pf's own data plane is little-endian: never share helpers between the two).
//
// Holds every NBD constant (as `as const` objects with derived union types) and every codec the
// NBD server needs. No other file computes an NBD byte offset.
//
// Invariants:
// - decoders are validators: they return an NbdDecodeError naming the bad field instead of a value;
//   nothing here throws on peer input;
// - 64-bit integers from the peer are read as hi/lo u32 halves; an offset with hi >= 2^21 (>= 2^53)
//   never becomes an inexact Number: it decodes as OFFSET_BEYOND_ANY_EXPORT (2^53, exact), which
//   every bounds check rejects since no export is that large;
// - the cookie is kept as two u32 halves and written back bit for bit.
//
// Layouts (sizes in bytes):
//   greeting            @0 u64 NBDMAGIC | @8 u64 IHAVEOPT | @16 u16 handshake flags          = 18
//   client flags        @0 u32                                                                = 4
//   option request      @0 u64 IHAVEOPT | @8 u32 option | @12 u32 dataLen | data              = 16 + n
//   option reply        @0 u64 REPLY_MAGIC | @8 u32 option | @12 u32 type | @16 u32 len | data = 20 + n
//   request             @0 u32 magic | @4 u16 flags | @6 u16 type | @8 u64 cookie | @16 u64 offset | @24 u32 length = 28
//   simple reply        @0 u32 magic | @4 u32 error | @8 u64 cookie                           = 16
//   structured chunk    @0 u32 magic | @4 u16 flags | @6 u16 type | @8 u64 cookie | @16 u32 len = 20 + len

import { Limits } from "./limits.ts";

// ---------------------------------------------------------------------------------------------
// Magics

/** "NBDMAGIC" */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": second greeting word and the start of every option request */
export const NBD_IHAVEOPT = 0x49484156454f5054n;
export const NBD_IHAVEOPT_HI = 0x49484156;
export const NBD_IHAVEOPT_LO = 0x454f5054;
export const NBD_OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---------------------------------------------------------------------------------------------
// Sizes

export const GREETING_BYTES = 18;
export const CLIENT_FLAGS_BYTES = 4;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const CHUNK_HEADER_BYTES = 20;
/** OFFSET_DATA chunk header + its u64 offset */
export const OFFSET_DATA_PREFIX_BYTES = CHUNK_HEADER_BYTES + 8;
/** ERROR chunk payload without message: u32 error + u16 message length */
export const ERROR_CHUNK_FIXED_BYTES = 6;
export const EXPORT_NAME_REPLY_BYTES = 10;
export const EXPORT_NAME_ZERO_PAD_BYTES = 124;
/** 2^53: the value an offset >= 2^53 decodes to (exact, and past every export) */
export const OFFSET_BEYOND_ANY_EXPORT = 2 ** 53;

// ---------------------------------------------------------------------------------------------
// Constants

export const HandshakeFlag = {
  FIXED_NEWSTYLE: 0x0001,
  NO_ZEROES: 0x0002,
} as const;
export type HandshakeFlag = (typeof HandshakeFlag)[keyof typeof HandshakeFlag];

export const ClientFlag = {
  C_FIXED_NEWSTYLE: 0x00000001,
  C_NO_ZEROES: 0x00000002,
} as const;
export type ClientFlag = (typeof ClientFlag)[keyof typeof ClientFlag];

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;
export type Opt = (typeof Opt)[keyof typeof Opt];

export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
  ERR_EXT_HEADER_REQD: 0x8000000a,
} as const;
export type Rep = (typeof Rep)[keyof typeof Rep];
export type RepError = Exclude<Rep, typeof Rep.ACK | typeof Rep.SERVER | typeof Rep.INFO | typeof Rep.META_CONTEXT>;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;
export type Info = (typeof Info)[keyof typeof Info];

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;
export type Cmd = (typeof Cmd)[keyof typeof Cmd];

export const CmdFlag = {
  FUA: 0x01,
  NO_HOLE: 0x02,
  DF: 0x04,
  REQ_ONE: 0x08,
  FAST_ZERO: 0x10,
  PAYLOAD_LEN: 0x20,
} as const;
export type CmdFlag = (typeof CmdFlag)[keyof typeof CmdFlag];

export const TxFlag = {
  HAS_FLAGS: 0x0001,
  READ_ONLY: 0x0002,
  SEND_FLUSH: 0x0004,
  SEND_FUA: 0x0008,
  ROTATIONAL: 0x0010,
  SEND_TRIM: 0x0020,
  SEND_WRITE_ZEROES: 0x0040,
  SEND_DF: 0x0080,
  CAN_MULTI_CONN: 0x0100,
  SEND_RESIZE: 0x0200,
  SEND_CACHE: 0x0400,
  SEND_FAST_ZERO: 0x0800,
  BLOCK_STATUS_PAYLOAD: 0x1000,
} as const;
export type TxFlag = (typeof TxFlag)[keyof typeof TxFlag];

export const ReplyFlag = {
  DONE: 0x0001,
} as const;
export type ReplyFlag = (typeof ReplyFlag)[keyof typeof ReplyFlag];

export const ChunkType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;
export type ChunkType = (typeof ChunkType)[keyof typeof ChunkType];

export const NbdErrno = {
  OK: 0,
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof NbdErrno)[keyof typeof NbdErrno];

/** Narrow any errno (e.g. from errors.ts' table) to one NBD defines; the rest become EIO. */
export function toNbdErrno(errno: number): NbdErrno {
  switch (errno) {
    case NbdErrno.OK:
    case NbdErrno.EPERM:
    case NbdErrno.EIO:
    case NbdErrno.ENOMEM:
    case NbdErrno.EINVAL:
    case NbdErrno.ENOSPC:
    case NbdErrno.EOVERFLOW:
    case NbdErrno.ENOTSUP:
    case NbdErrno.ESHUTDOWN:
      return errno;
    default:
      return NbdErrno.EIO;
  }
}

// ---------------------------------------------------------------------------------------------
// Decode errors

/** A decoder's refusal: the field that was wrong and why. */
export class NbdDecodeError {
  constructor(
    readonly field: string,
    readonly message: string,
  ) {}
  toString(): string {
    return `nbd: bad ${this.field}: ${this.message}`;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Validated UTF-8 string of at most Limits.nbdMaxNameBytes, no NUL. */
function decodeNbdString(bytes: Uint8Array, field: string): string | NbdDecodeError {
  if (bytes.length > Limits.nbdMaxNameBytes) {
    return new NbdDecodeError(field, `${bytes.length} bytes > ${Limits.nbdMaxNameBytes}`);
  }
  if (bytes.includes(0)) return new NbdDecodeError(field, "contains NUL");
  try {
    return utf8.decode(bytes);
  } catch {
    return new NbdDecodeError(field, "not valid UTF-8");
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake

/** Server greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.allocUnsafe(GREETING_BYTES);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export interface DecodedGreeting {
  handshakeFlags: number;
}
/** Client-side view of a greeting (tests, and any future NBD client in pf). */
export function decodeGreeting(b: Buffer): DecodedGreeting | NbdDecodeError {
  if (b.length < GREETING_BYTES) return new NbdDecodeError("greeting", `${b.length} bytes < ${GREETING_BYTES}`);
  if (b.readBigUInt64BE(0) !== NBD_MAGIC) return new NbdDecodeError("greeting.magic", "not NBDMAGIC");
  if (b.readBigUInt64BE(8) !== NBD_IHAVEOPT) return new NbdDecodeError("greeting.ihaveopt", "not IHAVEOPT (oldstyle?)");
  return { handshakeFlags: b.readUInt16BE(16) };
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.allocUnsafe(CLIENT_FLAGS_BYTES);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

/**
 * Client flags at `off`. Refused: unknown bits, and C_NO_ZEROES when the server did not offer
 * NO_ZEROES (nbd.md §1.1).
 */
export function decodeClientFlags(b: Buffer, off: number, offeredHandshakeFlags: number): number | NbdDecodeError {
  const flags = b.readUInt32BE(off);
  const known = ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES;
  if ((flags & ~known) !== 0) return new NbdDecodeError("clientFlags", `unknown bits 0x${flags.toString(16)}`);
  if ((flags & ClientFlag.C_NO_ZEROES) !== 0 && (offeredHandshakeFlags & HandshakeFlag.NO_ZEROES) === 0) {
    return new NbdDecodeError("clientFlags", "C_NO_ZEROES set but NO_ZEROES was not offered");
  }
  return flags;
}

export interface OptionHeader {
  option: number;
  dataBytes: number;
}

export function encodeOptionRequest(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(NBD_IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  b.set(data, OPTION_HEADER_BYTES);
  return b;
}

/** Option request header at `off`; option data longer than Limits.nbdMaxOptionBytes is refused. */
export function decodeOptionHeader(b: Buffer, off: number): OptionHeader | NbdDecodeError {
  if (b.readUInt32BE(off) !== NBD_IHAVEOPT_HI || b.readUInt32BE(off + 4) !== NBD_IHAVEOPT_LO) {
    return new NbdDecodeError("option.magic", `0x${b.readBigUInt64BE(off).toString(16)} is not IHAVEOPT`);
  }
  const option = b.readUInt32BE(off + 8);
  const dataBytes = b.readUInt32BE(off + 12);
  if (dataBytes > Limits.nbdMaxOptionBytes) {
    return new NbdDecodeError("option.length", `${dataBytes} bytes > ${Limits.nbdMaxOptionBytes} (option ${option})`);
  }
  return { option, dataBytes };
}

/** One option reply: header + data. */
export function encodeOptionReply(option: number, replyType: Rep, data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(OPTION_REPLY_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(NBD_OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(replyType >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, OPTION_REPLY_HEADER_BYTES);
  return b;
}

export function encodeRepAck(option: number): Buffer {
  return encodeOptionReply(option, Rep.ACK);
}

/** NBD_REP_SERVER for LIST: u32 name length, name, description (may be empty). */
export function encodeRepServer(name: string, description = ""): Buffer {
  const n = utf8Encoder.encode(name);
  const d = utf8Encoder.encode(description);
  const data = Buffer.allocUnsafe(4 + n.length + d.length);
  data.writeUInt32BE(n.length, 0);
  data.set(n, 4);
  data.set(d, 4 + n.length);
  return encodeOptionReply(Opt.LIST, Rep.SERVER, data);
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: u16 type, u64 size, u16 transmission flags (12 bytes). */
export function encodeRepInfoExport(option: number, sizeBytes: number, transmissionFlags: number): Buffer {
  const data = Buffer.allocUnsafe(12);
  data.writeUInt16BE(Info.EXPORT, 0);
  data.writeBigUInt64BE(BigInt(sizeBytes), 2);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, Rep.INFO, data);
}

/** NBD_REP_INFO / NBD_INFO_NAME: u16 type + canonical name. */
export function encodeRepInfoName(option: number, name: string): Buffer {
  const n = utf8Encoder.encode(name);
  const data = Buffer.allocUnsafe(2 + n.length);
  data.writeUInt16BE(Info.NAME, 0);
  data.set(n, 2);
  return encodeOptionReply(option, Rep.INFO, data);
}

export interface BlockSizes {
  minimumBytes: number;
  preferredBytes: number;
  maximumBytes: number;
}

/** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: u16 type, u32 min, u32 preferred, u32 max (14 bytes). */
export function encodeRepInfoBlockSize(option: number, s: BlockSizes): Buffer {
  const data = Buffer.allocUnsafe(14);
  data.writeUInt16BE(Info.BLOCK_SIZE, 0);
  data.writeUInt32BE(s.minimumBytes, 2);
  data.writeUInt32BE(s.preferredBytes, 6);
  data.writeUInt32BE(s.maximumBytes, 10);
  return encodeOptionReply(option, Rep.INFO, data);
}

/** Error reply (bit 31 set) with an optional human-readable message. */
export function encodeRepError(option: number, replyType: RepError, message = ""): Buffer {
  return encodeOptionReply(option, replyType, utf8Encoder.encode(message));
}

export interface DecodedOptionReply {
  option: number;
  replyType: number;
  data: Buffer;
}
/** Client-side view of one option reply at `off` (tests). */
export function decodeOptionReply(b: Buffer, off: number): DecodedOptionReply | NbdDecodeError {
  if (b.length - off < OPTION_REPLY_HEADER_BYTES) return new NbdDecodeError("optionReply", "truncated header");
  if (b.readBigUInt64BE(off) !== NBD_OPTION_REPLY_MAGIC) return new NbdDecodeError("optionReply.magic", "bad magic");
  const len = b.readUInt32BE(off + 16);
  if (b.length - off - OPTION_REPLY_HEADER_BYTES < len) return new NbdDecodeError("optionReply.length", "truncated data");
  return {
    option: b.readUInt32BE(off + 8),
    replyType: b.readUInt32BE(off + 12),
    data: b.subarray(off + OPTION_REPLY_HEADER_BYTES, off + OPTION_REPLY_HEADER_BYTES + len),
  };
}

export interface InfoRequest {
  name: string;
  /** NBD_INFO_* types the client asked for (may hold unknown values: ignore those) */
  infoRequests: number[];
}

/** INFO/GO data: u32 nameLen, name, u16 count, u16 × count. */
export function encodeInfoRequest(r: InfoRequest): Buffer {
  const n = utf8Encoder.encode(r.name);
  const b = Buffer.allocUnsafe(4 + n.length + 2 + 2 * r.infoRequests.length);
  b.writeUInt32BE(n.length, 0);
  b.set(n, 4);
  b.writeUInt16BE(r.infoRequests.length, 4 + n.length);
  r.infoRequests.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

/** Validates INFO/GO data: nameLen ≤ len − 6, name UTF-8 ≤ 4096 bytes, count matches the length. */
export function decodeInfoRequest(data: Buffer): InfoRequest | NbdDecodeError {
  if (data.length < 6) return new NbdDecodeError("info.length", `${data.length} bytes < 6`);
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6) {
    return new NbdDecodeError("info.nameLength", `${nameBytes} > option length ${data.length} − 6`);
  }
  const name = decodeNbdString(data.subarray(4, 4 + nameBytes), "info.name");
  if (name instanceof NbdDecodeError) return name;
  const count = data.readUInt16BE(4 + nameBytes);
  const expected = 6 + nameBytes + 2 * count;
  if (expected !== data.length) {
    return new NbdDecodeError("info.count", `${count} info requests need ${expected} bytes, option has ${data.length}`);
  }
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(data.readUInt16BE(6 + nameBytes + 2 * i));
  return { name, infoRequests };
}

/** EXPORT_NAME data: the whole option data is the name. */
export function decodeExportName(data: Buffer): string | NbdDecodeError {
  return decodeNbdString(data, "exportName");
}

/** EXPORT_NAME answer: u64 size, u16 flags, then 124 zeros unless the client set C_NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : EXPORT_NAME_ZERO_PAD_BYTES));
  b.writeBigUInt64BE(BigInt(sizeBytes), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Transmission phase

export interface NbdRequest {
  /** command flags (CmdFlag bits; unknown bits left for the caller to refuse with EINVAL) */
  flags: number;
  /** command type (unknown values left for the caller to refuse with EINVAL) */
  type: number;
  cookieHi: number;
  cookieLo: number;
  /** exact when < 2^53; OFFSET_BEYOND_ANY_EXPORT otherwise */
  offsetBytes: number;
  lengthBytes: number;
}

/**
 * Request header at `off` (28 bytes must be available). Only framing is refused here (the magic):
 * an unknown type/flag or a bad range is a per-request EINVAL the caller answers with the cookie.
 */
export function decodeRequest(b: Buffer, off: number): NbdRequest | NbdDecodeError {
  const magic = b.readUInt32BE(off);
  if (magic !== NBD_REQUEST_MAGIC) return new NbdDecodeError("request.magic", `0x${magic.toString(16)}`);
  const offHi = b.readUInt32BE(off + 16);
  const offLo = b.readUInt32BE(off + 20);
  return {
    flags: b.readUInt16BE(off + 4),
    type: b.readUInt16BE(off + 6),
    cookieHi: b.readUInt32BE(off + 8),
    cookieLo: b.readUInt32BE(off + 12),
    offsetBytes: offHi >= 0x200000 ? OFFSET_BEYOND_ANY_EXPORT : offHi * 0x100000000 + offLo,
    lengthBytes: b.readUInt32BE(off + 24),
  };
}

/** Request header (client side: tests and tools). `offsetBytes` may be a bigint for u64 values ≥ 2^53. */
export function encodeRequest(r: Omit<NbdRequest, "offsetBytes"> & { offsetBytes: number | bigint }): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_BYTES);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeUInt32BE(r.cookieHi >>> 0, 8);
  b.writeUInt32BE(r.cookieLo >>> 0, 12);
  b.writeBigUInt64BE(BigInt(r.offsetBytes), 16);
  b.writeUInt32BE(r.lengthBytes >>> 0, 24);
  return b;
}

/** Simple reply header into `b` at `off`; returns bytes written (16). */
export function writeSimpleReply(b: Buffer, off: number, errno: number, cookieHi: number, cookieLo: number): number {
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, off);
  b.writeUInt32BE(errno >>> 0, off + 4);
  b.writeUInt32BE(cookieHi, off + 8);
  b.writeUInt32BE(cookieLo, off + 12);
  return SIMPLE_REPLY_BYTES;
}

/** Structured chunk header into `b` at `off`; returns bytes written (20). */
export function writeChunkHeader(
  b: Buffer,
  off: number,
  replyFlags: number,
  chunkType: ChunkType,
  cookieHi: number,
  cookieLo: number,
  payloadBytes: number,
): number {
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, off);
  b.writeUInt16BE(replyFlags, off + 4);
  b.writeUInt16BE(chunkType, off + 6);
  b.writeUInt32BE(cookieHi, off + 8);
  b.writeUInt32BE(cookieLo, off + 12);
  b.writeUInt32BE(payloadBytes, off + 16);
  return CHUNK_HEADER_BYTES;
}

/**
 * OFFSET_DATA chunk header + u64 offset into `b` at `off` (28 bytes); `dataBytes` of data must
 * follow. Returns bytes written.
 */
export function writeOffsetDataPrefix(
  b: Buffer,
  off: number,
  replyFlags: number,
  cookieHi: number,
  cookieLo: number,
  offsetBytes: number,
  dataBytes: number,
): number {
  writeChunkHeader(b, off, replyFlags, ChunkType.OFFSET_DATA, cookieHi, cookieLo, 8 + dataBytes);
  b.writeUInt32BE(Math.floor(offsetBytes / 0x100000000), off + 20);
  b.writeUInt32BE(offsetBytes >>> 0, off + 24);
  return OFFSET_DATA_PREFIX_BYTES;
}

/** Bytes an ERROR chunk with this message takes (header + payload). */
export function errorChunkBytes(messageBytes: number): number {
  return CHUNK_HEADER_BYTES + ERROR_CHUNK_FIXED_BYTES + messageBytes;
}

/** ERROR chunk (u32 error, u16 msgLen, msg) into `b` at `off`; returns bytes written. */
export function writeErrorChunk(
  b: Buffer,
  off: number,
  replyFlags: number,
  cookieHi: number,
  cookieLo: number,
  errno: number,
  message: Uint8Array,
): number {
  const payload = ERROR_CHUNK_FIXED_BYTES + message.length;
  writeChunkHeader(b, off, replyFlags, ChunkType.ERROR, cookieHi, cookieLo, payload);
  b.writeUInt32BE(errno >>> 0, off + 20);
  b.writeUInt16BE(message.length, off + 24);
  b.set(message, off + 26);
  return CHUNK_HEADER_BYTES + payload;
}

/** NONE chunk (no payload) into `b` at `off`; returns bytes written (20). */
export function writeNoneChunk(b: Buffer, off: number, cookieHi: number, cookieLo: number): number {
  return writeChunkHeader(b, off, ReplyFlag.DONE, ChunkType.NONE, cookieHi, cookieLo, 0);
}

// Client-side decoding of replies (tests, and any pf tool that speaks NBD).

export interface SimpleReply {
  kind: "simple";
  errno: number;
  cookieHi: number;
  cookieLo: number;
}
export interface ChunkHeader {
  kind: "chunk";
  replyFlags: number;
  chunkType: number;
  cookieHi: number;
  cookieLo: number;
  payloadBytes: number;
}

/** A simple reply (16 bytes) or a structured chunk header (20 bytes) at `off`. */
export function decodeReplyHeader(b: Buffer, off: number): SimpleReply | ChunkHeader | NbdDecodeError {
  if (b.length - off < 4) return new NbdDecodeError("reply", "truncated");
  const magic = b.readUInt32BE(off);
  if (magic === NBD_SIMPLE_REPLY_MAGIC) {
    if (b.length - off < SIMPLE_REPLY_BYTES) return new NbdDecodeError("reply", "truncated simple reply");
    return { kind: "simple", errno: b.readUInt32BE(off + 4), cookieHi: b.readUInt32BE(off + 8), cookieLo: b.readUInt32BE(off + 12) };
  }
  if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
    if (b.length - off < CHUNK_HEADER_BYTES) return new NbdDecodeError("reply", "truncated chunk header");
    return {
      kind: "chunk",
      replyFlags: b.readUInt16BE(off + 4),
      chunkType: b.readUInt16BE(off + 6),
      cookieHi: b.readUInt32BE(off + 8),
      cookieLo: b.readUInt32BE(off + 12),
      payloadBytes: b.readUInt32BE(off + 16),
    };
  }
  return new NbdDecodeError("reply.magic", `0x${magic.toString(16)}`);
}

/** OFFSET_DATA payload: u64 offset then data (validated: offset < 2^53, payload ≥ 8). */
export function decodeOffsetDataPayload(p: Buffer): { offsetBytes: number; data: Buffer } | NbdDecodeError {
  if (p.length < 8) return new NbdDecodeError("offsetData.length", `${p.length} < 8`);
  const hi = p.readUInt32BE(0);
  if (hi >= 0x200000) return new NbdDecodeError("offsetData.offset", "≥ 2^53");
  return { offsetBytes: hi * 0x100000000 + p.readUInt32BE(4), data: p.subarray(8) };
}

/** ERROR payload: u32 error, u16 msgLen, msg (validated lengths and UTF-8). */
export function decodeErrorPayload(p: Buffer): { errno: number; message: string } | NbdDecodeError {
  if (p.length < ERROR_CHUNK_FIXED_BYTES) return new NbdDecodeError("error.length", `${p.length} < 6`);
  const len = p.readUInt16BE(4);
  if (len !== p.length - ERROR_CHUNK_FIXED_BYTES) return new NbdDecodeError("error.messageLength", `${len} ≠ ${p.length - 6}`);
  const message = decodeNbdString(p.subarray(6), "error.message");
  if (message instanceof NbdDecodeError) return message;
  return { errno: p.readUInt32BE(0), message };
}
