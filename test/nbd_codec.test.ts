// NBD codec (src/proto/nbd.ts) and the server's pure parts: byte queue, request checks, reply
// writer under partial socket writes. Byte layouts are checked against what nbdkit sends
// (nbd.md §1.4, §2.1).

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Limits } from "../src/proto/limits.ts";
import {
  ChunkType,
  ClientFlag,
  Cmd,
  CmdFlag,
  HandshakeFlag,
  Info,
  NbdDecodeError,
  NbdErrno,
  OFFSET_BEYOND_ANY_EXPORT,
  Opt,
  Rep,
  ReplyFlag,
  TxFlag,
  decodeClientFlags,
  decodeErrorPayload,
  decodeGreeting,
  decodeInfoRequest,
  decodeOffsetDataPayload,
  decodeOptionHeader,
  decodeOptionReply,
  decodeReplyHeader,
  decodeRequest,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoRequest,
  encodeOptionRequest,
  encodeRepError,
  encodeRepInfoBlockSize,
  encodeRepInfoExport,
  encodeRequest,
  errorChunkBytes,
  toNbdErrno,
  writeErrorChunk,
  writeOffsetDataPrefix,
  writeSimpleReply,
} from "../src/proto/nbd.ts";
import { ByteQueue } from "../src/sdc/nbd_byte_queue.ts";
import { refusalOf } from "../src/sdc/nbd_request_check.ts";
import { ReplyWriter, type ByteSink } from "../src/sdc/nbd_reply_writer.ts";
import { handleOption, transmissionFlagsOf } from "../src/sdc/nbd_handshake.ts";
import { MemoryExport, MemoryRegistry } from "./helpers/nbd_memory_export.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("handshake codec", () => {
  test("greeting is the 18 bytes nbdkit sends", () => {
    expect(hex(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES))).toBe("4e42444d41474943" + "49484156454f5054" + "0003");
    const g = decodeGreeting(encodeGreeting(3));
    expect(g).toEqual({ handshakeFlags: 3 });
    expect(decodeGreeting(Buffer.alloc(18))).toBeInstanceOf(NbdDecodeError);
  });

  test("client flags: unknown bits and un-offered NO_ZEROES are refused", () => {
    expect(decodeClientFlags(encodeClientFlags(3), 0, 3)).toBe(3);
    expect(decodeClientFlags(encodeClientFlags(0), 0, 3)).toBe(0);
    const unknown = decodeClientFlags(encodeClientFlags(4), 0, 3);
    expect(unknown).toBeInstanceOf(NbdDecodeError);
    expect((unknown as NbdDecodeError).field).toBe("clientFlags");
    expect(decodeClientFlags(encodeClientFlags(ClientFlag.C_NO_ZEROES), 0, HandshakeFlag.FIXED_NEWSTYLE)).toBeInstanceOf(NbdDecodeError);
  });

  test("option header: magic and oversized length name the field", () => {
    const ok = decodeOptionHeader(encodeOptionRequest(Opt.GO, Buffer.alloc(10)), 0);
    expect(ok).toEqual({ option: Opt.GO, dataBytes: 10 });
    const bad = Buffer.from(encodeOptionRequest(Opt.GO));
    bad[0] = 0;
    expect((decodeOptionHeader(bad, 0) as NbdDecodeError).field).toBe("option.magic");
    const big = Buffer.from(encodeOptionRequest(Opt.GO));
    big.writeUInt32BE(Limits.nbdMaxOptionBytes + 1, 12);
    expect((decodeOptionHeader(big, 0) as NbdDecodeError).field).toBe("option.length");
  });

  test("GO request with BLOCK_SIZE matches nbdkit's capture", () => {
    const data = encodeInfoRequest({ name: "", infoRequests: [Info.BLOCK_SIZE] });
    expect(hex(data)).toBe("0000000000010003");
    expect(decodeInfoRequest(data)).toEqual({ name: "", infoRequests: [3] });
  });

  test("INFO_EXPORT reply matches nbdkit's capture (64M, flags 0x0ded)", () => {
    expect(hex(encodeRepInfoExport(Opt.GO, 64 * 1024 * 1024, 0x0ded))).toBe(
      "0003e889045565a9" + "00000007" + "00000003" + "0000000c" + "0000" + "0000000004000000" + "0ded",
    );
  });

  test("INFO/GO data validation names the field", () => {
    const field = (b: Buffer) => (decodeInfoRequest(b) as NbdDecodeError).field;
    expect(field(Buffer.alloc(5))).toBe("info.length");
    const longName = Buffer.alloc(10);
    longName.writeUInt32BE(5, 0); // 5 > 10 - 6
    expect(field(longName)).toBe("info.nameLength");
    const count = encodeInfoRequest({ name: "a", infoRequests: [1, 2] });
    expect(field(count.subarray(0, count.length - 2))).toBe("info.count");
    const badUtf8 = encodeInfoRequest({ name: "ab", infoRequests: [] });
    badUtf8[4] = 0xff;
    expect(field(badUtf8)).toBe("info.name");
    const nul = encodeInfoRequest({ name: "ab", infoRequests: [] });
    nul[5] = 0;
    expect(field(nul)).toBe("info.name");
    const huge = Buffer.alloc(4 + 4097 + 2);
    huge.writeUInt32BE(4097, 0);
    huge.fill(0x61, 4, 4 + 4097);
    expect(field(huge)).toBe("info.name");
  });

  test("EXPORT_NAME reply: 134 bytes with zeros, 10 without", () => {
    const withZeros = encodeExportNameReply(64 << 20, 0x0d6d, false);
    expect(withZeros.length).toBe(134);
    expect(hex(withZeros.subarray(0, 10))).toBe("00000000040000000d6d");
    expect(withZeros.subarray(10).every((b) => b === 0)).toBe(true);
    expect(encodeExportNameReply(64 << 20, 0x0d6d, true).length).toBe(10);
  });

  test("option error reply carries bit 31 and the message", () => {
    const r = decodeOptionReply(encodeRepError(Opt.GO, Rep.ERR_UNKNOWN, "no"), 0);
    expect(r).not.toBeInstanceOf(NbdDecodeError);
    if (r instanceof NbdDecodeError) return;
    expect(r.replyType).toBe(0x80000006);
    expect(r.data.toString()).toBe("no");
    const bs = decodeOptionReply(encodeRepInfoBlockSize(Opt.GO, { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 32 << 20 }), 0);
    if (bs instanceof NbdDecodeError) throw new Error(bs.toString());
    expect(hex(bs.data)).toBe("0003" + "00000200" + "00001000" + "02000000");
  });

  test("round trip: INFO/GO requests (fast-check)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }).filter((s) => !s.includes("\0")), fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 20 }), (name, infoRequests) => {
        const back = decodeInfoRequest(encodeInfoRequest({ name, infoRequests }));
        expect(back).toEqual({ name, infoRequests });
      }),
    );
  });

  test("INFO/GO decoder never throws on junk (fast-check)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeInfoRequest(Buffer.from(bytes));
        expect(r instanceof NbdDecodeError || typeof r.name === "string").toBe(true);
      }),
    );
  });
});

describe("transmission codec", () => {
  const arbReq = fc.record({
    flags: fc.integer({ min: 0, max: 0xffff }),
    type: fc.integer({ min: 0, max: 0xffff }),
    cookieHi: fc.integer({ min: 0, max: 0xffffffff }),
    cookieLo: fc.integer({ min: 0, max: 0xffffffff }),
    offsetBytes: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    lengthBytes: fc.integer({ min: 0, max: 0xffffffff }),
  });

  test("round trip: request header at any offset (fast-check)", () => {
    fc.assert(
      fc.property(arbReq, fc.integer({ min: 0, max: 7 }), (r, pad) => {
        const b = Buffer.concat([Buffer.alloc(pad, 0xee), encodeRequest(r)]);
        expect(decodeRequest(b, pad)).toEqual(r);
      }),
    );
  });

  test("offsets ≥ 2^53 decode to a sentinel past every export, never an inexact number", () => {
    for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
      const r = decodeRequest(encodeRequest({ flags: 0, type: Cmd.READ, cookieHi: 0, cookieLo: 1, offsetBytes: big, lengthBytes: 512 }), 0);
      if (r instanceof NbdDecodeError) throw new Error(r.toString());
      expect(r.offsetBytes).toBe(OFFSET_BEYOND_ANY_EXPORT);
      expect(refusalOf(r, { sizeBytes: Limits.maxVolumeBytes, readOnly: false }, false)).toBe(NbdErrno.EINVAL);
    }
    const justBelow = decodeRequest(encodeRequest({ flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offsetBytes: 2n ** 53n - 1n, lengthBytes: 0 }), 0);
    expect((justBelow as { offsetBytes: number }).offsetBytes).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("bad request magic names the field", () => {
    const b = encodeRequest({ flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 0 });
    b.writeUInt32BE(0xdeadbeef, 0);
    expect((decodeRequest(b, 0) as NbdDecodeError).field).toBe("request.magic");
  });

  test("simple reply echoes the cookie bit for bit", () => {
    const b = Buffer.alloc(16);
    writeSimpleReply(b, 0, 22, 0xffffffff, 0x80000001);
    expect(hex(b)).toBe("6744669800000016ffffffff80000001");
    expect(decodeReplyHeader(b, 0)).toEqual({ kind: "simple", errno: 22, cookieHi: 0xffffffff, cookieLo: 0x80000001 });
  });

  test("ERROR chunk matches nbdkit's out-of-range READ answer", () => {
    const b = Buffer.alloc(errorChunkBytes(0));
    writeErrorChunk(b, 0, ReplyFlag.DONE, 0, 7, NbdErrno.EINVAL, new Uint8Array(0));
    expect(hex(b)).toBe("668e33ef" + "0001" + "8001" + "0000000000000007" + "00000006" + "00000016" + "0000");
    const h = decodeReplyHeader(b, 0);
    if (h instanceof NbdDecodeError || h.kind !== "chunk") throw new Error("not a chunk");
    expect(h.chunkType).toBe(ChunkType.ERROR);
    expect(decodeErrorPayload(b.subarray(20))).toEqual({ errno: 22, message: "" });
  });

  test("round trip: OFFSET_DATA prefix (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (offsetBytes, data) => {
        const b = Buffer.alloc(28 + data.length);
        writeOffsetDataPrefix(b, 0, ReplyFlag.DONE, 1, 2, offsetBytes, data.length);
        b.set(data, 28);
        const h = decodeReplyHeader(b, 0);
        if (h instanceof NbdDecodeError || h.kind !== "chunk") throw new Error("not a chunk");
        expect(h).toMatchObject({ replyFlags: ReplyFlag.DONE, chunkType: ChunkType.OFFSET_DATA, cookieHi: 1, cookieLo: 2, payloadBytes: 8 + data.length });
        const p = decodeOffsetDataPayload(b.subarray(20));
        if (p instanceof NbdDecodeError) throw new Error(p.toString());
        expect(p.offsetBytes).toBe(offsetBytes);
        expect(hex(p.data)).toBe(hex(data));
      }),
    );
  });

  test("errno narrowing: unknown errnos become EIO", () => {
    expect(toNbdErrno(28)).toBe(NbdErrno.ENOSPC);
    expect(toNbdErrno(122)).toBe(NbdErrno.EIO);
  });
});

describe("request checks", () => {
  const rw = { sizeBytes: 1 << 20, readOnly: false };
  const ro = { sizeBytes: 1 << 20, readOnly: true };
  const req = (type: number, offsetBytes: number, lengthBytes: number, flags = 0) => ({ flags, type, cookieHi: 0, cookieLo: 0, offsetBytes, lengthBytes });

  test("bounds: EINVAL for read/trim, ENOSPC for write/zeroes, overflow-safe", () => {
    expect(refusalOf(req(Cmd.READ, (1 << 20) - 512, 512), rw, false)).toBe(0);
    expect(refusalOf(req(Cmd.READ, (1 << 20) - 512, 1024), rw, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.TRIM, 1 << 20, 1), rw, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.WRITE, 1 << 20, 512), rw, false)).toBe(NbdErrno.ENOSPC);
    expect(refusalOf(req(Cmd.WRITE_ZEROES, 2 ** 52, 0xffffffff), rw, false)).toBe(NbdErrno.ENOSPC);
    expect(refusalOf(req(Cmd.READ, 1 << 20, 0), rw, false)).toBe(0); // empty at the end: fine
  });

  test("read-only: EPERM for write, trim, zeroes; reads still fine", () => {
    for (const t of [Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES]) expect(refusalOf(req(t, 0, 512), ro, false)).toBe(NbdErrno.EPERM);
    expect(refusalOf(req(Cmd.READ, 0, 512), ro, false)).toBe(0);
    expect(refusalOf(req(Cmd.FLUSH, 0, 0), ro, false)).toBe(0);
  });

  test("oversized READ/WRITE, unknown commands and flags: EINVAL", () => {
    const big = { sizeBytes: 1 << 30, readOnly: false };
    expect(refusalOf(req(Cmd.READ, 0, Limits.nbdMaxRequestBytes), big, false)).toBe(0);
    expect(refusalOf(req(Cmd.READ, 0, Limits.nbdMaxRequestBytes + 1), big, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.WRITE, 0, Limits.nbdMaxRequestBytes + 1), big, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(42, 0, 0), rw, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.BLOCK_STATUS, 0, 512), rw, true)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.WRITE, 0, 512, 0x40), rw, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.READ, 0, 512, CmdFlag.DF), rw, false)).toBe(NbdErrno.EINVAL);
    expect(refusalOf(req(Cmd.READ, 0, 512, CmdFlag.DF), rw, true)).toBe(0);
    expect(refusalOf(req(Cmd.FLUSH, 0, 0, CmdFlag.FUA), rw, false)).toBe(0);
    expect(refusalOf(req(Cmd.WRITE_ZEROES, 0, 512, CmdFlag.NO_HOLE | CmdFlag.FUA), rw, false)).toBe(0);
  });
});

describe("handshake decisions", () => {
  const reg = new MemoryRegistry([new MemoryExport("vol", 1 << 20), new MemoryExport("ro", 1 << 20, { readOnly: true, multiConn: false })]);

  test("transmission flags: 0x016d read-write, READ_ONLY without trim/zero, DF only with structured", () => {
    const vol = reg.get("vol");
    const roExp = reg.get("ro");
    if (!vol || !roExp) throw new Error("registry");
    expect(transmissionFlagsOf(vol, false)).toBe(0x016d);
    expect(transmissionFlagsOf(vol, true)).toBe(0x016d | TxFlag.SEND_DF);
    const f = transmissionFlagsOf(roExp, false);
    expect(f & TxFlag.READ_ONLY).toBe(TxFlag.READ_ONLY);
    expect(f & (TxFlag.SEND_TRIM | TxFlag.SEND_WRITE_ZEROES | TxFlag.CAN_MULTI_CONN)).toBe(0);
  });

  test("unknown option: ERR_UNSUP and the handshake continues", () => {
    const o = handleOption({ clientFlags: 3, structuredReplies: false }, reg, 1234, Buffer.alloc(100));
    expect(o.kind).toBe("continue");
    const r = decodeOptionReply(o.replies[0] ?? Buffer.alloc(0), 0);
    expect((r as { replyType: number }).replyType).toBe(Rep.ERR_UNSUP);
  });

  test("GO on an unknown export: ERR_UNKNOWN; EXPORT_NAME on one: close", () => {
    const go = handleOption({ clientFlags: 3, structuredReplies: false }, reg, Opt.GO, encodeInfoRequest({ name: "nope", infoRequests: [] }));
    expect(go.kind).toBe("continue");
    expect((decodeOptionReply(go.replies[0] ?? Buffer.alloc(0), 0) as { replyType: number }).replyType).toBe(Rep.ERR_UNKNOWN);
    const en = handleOption({ clientFlags: 3, structuredReplies: false }, reg, Opt.EXPORT_NAME, Buffer.from("nope"));
    expect(en.kind).toBe("close");
    expect(en.replies.length).toBe(0);
  });

  test("INFO and GO answer identically; INFO_NAME when asked", () => {
    const st = { clientFlags: 3, structuredReplies: true };
    const data = encodeInfoRequest({ name: "vol", infoRequests: [Info.NAME, Info.BLOCK_SIZE] });
    const info = handleOption(st, reg, Opt.INFO, data);
    const go = handleOption(st, reg, Opt.GO, data);
    expect(info.kind).toBe("continue");
    expect(go.kind).toBe("transmission");
    const strip = (bs: Buffer[]) => bs.map((b) => hex(b.subarray(12))); // drop magic + option code
    expect(strip(go.replies)).toEqual(strip(info.replies));
    const types = go.replies.map((b) => decodeOptionReply(b, 0) as { replyType: number; data: Buffer }).map((r) => [r.replyType, r.data.length > 0 ? r.data.readUInt16BE(0) : -1]);
    expect(types).toEqual([
      [Rep.INFO, Info.EXPORT],
      [Rep.INFO, Info.BLOCK_SIZE],
      [Rep.INFO, Info.NAME],
      [Rep.ACK, -1],
    ]);
  });
});

describe("byte queue", () => {
  test("reassembles any split of a stream (fast-check)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 30 }), fc.array(fc.integer({ min: 0, max: 28 }), { maxLength: 30 }), (stream, cuts, takes) => {
        const q = new ByteQueue(28);
        let pos = 0;
        for (const c of cuts) {
          if (pos >= stream.length) break;
          q.push(Buffer.from(stream.subarray(pos, pos + c)));
          pos += c;
        }
        if (pos < stream.length) q.push(Buffer.from(stream.subarray(pos)));
        let read = 0;
        for (const t of takes) {
          const n = Math.min(t, q.length);
          if (n > 0) {
            const peeked = q.peek(n);
            expect(hex(peeked.subarray(q.peekOffset, q.peekOffset + n))).toBe(hex(stream.subarray(read, read + n)));
          }
          expect(hex(q.take(n))).toBe(hex(stream.subarray(read, read + n)));
          read += n;
        }
        expect(q.length).toBe(stream.length - read);
        expect(hex(q.take(q.length))).toBe(hex(stream.subarray(read)));
      }),
    );
  });

  test("a payload inside one chunk is a zero-copy view", () => {
    const q = new ByteQueue(28);
    const chunk = Buffer.alloc(100, 7);
    q.push(chunk);
    q.skip(28);
    const v = q.take(64);
    expect(v.buffer).toBe(chunk.buffer);
  });
});

/** A socket that accepts at most `budget` bytes per write call until given more. */
class StingySink implements ByteSink {
  received: number[] = [];
  budget = 0;
  write(data: Uint8Array, byteOffset = 0, byteLength = data.length - byteOffset): number {
    const n = Math.min(this.budget, byteLength);
    for (let i = 0; i < n; i++) this.received.push(data[byteOffset + i] ?? -1);
    this.budget -= n;
    return n;
  }
}

describe("reply writer", () => {
  test("partial socket writes: every byte arrives once, in order, replies never interleave", async () => {
    const sink = new StingySink();
    let drained = 0;
    const w = new ReplyWriter(sink, () => drained++);
    const expected: number[] = [];
    const big = Buffer.alloc(Limits.nbdReplyCopyMaxBytes + 100, 0xab);
    const small = Buffer.alloc(512, 0xcd);
    for (let i = 0; i < 50; i++) {
      const b = Buffer.alloc(16);
      writeSimpleReply(b, 0, 0, 0, i);
      w.simpleRead(0, i, i % 2 === 0 ? small : big);
      expected.push(...b, ...(i % 2 === 0 ? small : big));
    }
    sink.budget = 1000;
    await Promise.resolve(); // the microtask flush
    expect(w.bufferedBytes).toBe(expected.length - 1000);
    while (w.bufferedBytes > 0) {
      sink.budget = 777;
      w.onDrain();
    }
    expect(drained).toBe(1);
    expect(sink.received.length).toBe(expected.length);
    expect(Buffer.from(sink.received).equals(Buffer.from(expected))).toBe(true);
  });

  test("replies finished in one turn leave in one socket write", async () => {
    let writes = 0;
    const w = new ReplyWriter({ write: (d, o = 0, l = d.length - o) => (writes++, l) });
    for (let i = 0; i < 16; i++) w.simple(0, 0, i);
    await Promise.resolve();
    expect(writes).toBe(1);
  });
});
