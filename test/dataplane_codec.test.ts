// The data-plane frame codec, FrameReader reassembly and SocketWriter ordering, checked with
// fast-check: header round trips, frames split at every byte boundary, validation naming the
// bad field, and byte-exact output through a socket that takes random partial writes.

import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  DATAPLANE_MAGIC,
  Flag,
  FrameError,
  FrameReader,
  HEADER_BYTES,
  Op,
  Status,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  type Frame,
  type FrameHeader,
} from "../src/proto/dataplane.ts";
import { Limits } from "../src/proto/limits.ts";
import { SocketWriter } from "../src/proto/socket_writer.ts";

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const opArb = fc.constantFrom(...Object.values(Op));
const statusArb = fc.constantFrom(...Object.values(Status));
const flagsArb = fc.constantFrom(0, Flag.FUA, Flag.REPLY, Flag.FUA | Flag.REPLY);
const headerArb: fc.Arbitrary<Omit<FrameHeader, "payloadLength">> = fc
  .record({
    opcode: opArb,
    flags: flagsArb,
    status: statusArb,
    requestId: u32,
    epoch: u32,
    volumeHi: u32,
    volumeLo: u32,
    extentIndex: u32,
    offset: fc.integer({ min: 0, max: Limits.maxExtentBytes }),
    length: fc.integer({ min: 0, max: Limits.maxExtentBytes }),
    gen: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  })
  .filter((h) => h.offset + h.length <= Limits.maxExtentBytes);

test("header encode/decode round trip", () => {
  fc.assert(
    fc.property(headerArb, fc.integer({ min: 0, max: Limits.dataMaxPayloadBytes }), (h, payloadLength) => {
      const buf = new Uint8Array(HEADER_BYTES + 7);
      encodeHeader(buf, 7, { ...h, payloadLength });
      expect(decodeHeader(buf, 7)).toEqual({ ...h, payloadLength });
    }),
  );
});

test("FrameReader reassembles frames split at every byte boundary", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(headerArb, fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 5 }), (frames) => {
      const parts = frames.map(([h, p]) => encodeFrame(h, p));
      const stream = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        stream.set(p, at);
        at += p.byteLength;
      }
      for (let cut = 0; cut <= stream.byteLength; cut++) {
        const got: Frame[] = [];
        const r = new FrameReader();
        const keep = (f: Frame) => void got.push({ header: f.header, payload: f.payload.slice() });
        r.push(stream.slice(0, cut), keep);
        r.push(stream.slice(cut), keep);
        expect(got.length).toBe(frames.length);
        got.forEach((f, i) => {
          expect(f.header).toEqual({ ...frames[i]![0], payloadLength: frames[i]![1].byteLength });
          expect(Buffer.from(f.payload).equals(Buffer.from(frames[i]![1]))).toBe(true);
        });
        expect(r.bufferedBytes).toBe(0);
      }
    }),
    { numRuns: 30 },
  );
});

test("FrameReader handles one byte at a time and random chunkings", () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(headerArb, fc.uint8Array({ maxLength: 100 })), { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 70 }), { minLength: 1 }), (frames, sizes) => {
      const stream = Buffer.concat(frames.map(([h, p]) => encodeFrame(h, p)));
      const got: Frame[] = [];
      const r = new FrameReader();
      for (let at = 0, i = 0; at < stream.byteLength; i++) {
        const n = sizes[i % sizes.length]!;
        r.push(new Uint8Array(stream.subarray(at, at + n)), (f) => void got.push({ header: f.header, payload: f.payload.slice() }));
        at += n;
      }
      expect(got.map((f) => f.header.requestId)).toEqual(frames.map(([h]) => h.requestId));
      expect(got.map((f) => Buffer.from(f.payload).toString("hex"))).toEqual(frames.map(([, p]) => Buffer.from(p).toString("hex")));
    }),
    { numRuns: 100 },
  );
});

test("FrameReader stops when the callback returns false and resumes with pump", () => {
  const frames = [1, 2, 3, 4].map((id) => encodeFrame({ opcode: Op.PING, flags: 0, status: 0, requestId: id, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }));
  const r = new FrameReader();
  const seen: number[] = [];
  r.push(Buffer.concat(frames), (f) => {
    seen.push(f.header.requestId);
    return seen.length % 2 !== 0 ? true : false;
  });
  expect(seen).toEqual([1, 2]);
  r.pump((f) => void seen.push(f.header.requestId));
  expect(seen).toEqual([1, 2, 3, 4]);
});

function badField(mutate: (v: DataView, b: Uint8Array) => void): string {
  const f = encodeFrame({ opcode: Op.READ, flags: 0, status: 0, requestId: 1, epoch: 1, volumeHi: 1, volumeLo: 1, extentIndex: 0, offset: 0, length: 4096, gen: 0 });
  mutate(new DataView(f.buffer), f);
  try {
    decodeHeader(f, 0);
  } catch (e) {
    if (e instanceof FrameError) return e.field;
    throw e;
  }
  return "accepted";
}

test("decoding is validation: each bad field is named", () => {
  expect(badField((v) => v.setUint32(0, DATAPLANE_MAGIC + 1, true))).toBe("magic");
  expect(badField((_, b) => void (b[4] = 0))).toBe("opcode");
  expect(badField((_, b) => void (b[4] = 200))).toBe("opcode");
  expect(badField((_, b) => void (b[5] = 0x08))).toBe("flags"); // 0x04 is LAYER now
  expect(badField((v) => v.setUint16(6, 999, true))).toBe("status");
  expect(badField((v) => v.setUint32(36, Limits.dataMaxPayloadBytes + 1, true))).toBe("payloadLength");
  expect(badField((v) => v.setUint32(28, Limits.maxExtentBytes, true))).toBe("offset");
  expect(badField((v) => v.setUint32(44, 0x20_0000, true))).toBe("gen");
  expect(badField(() => undefined)).toBe("accepted");
});

/** Payloads above the writer's copy limit (generated cheaply: a counter pattern from a seed). */
const bigPayloadArb = fc.tuple(fc.integer({ min: 65_000, max: 300_000 }), fc.integer({ min: 0, max: 255 })).map(([n, seed]) => {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + seed) & 0xff;
  return p;
});

/** A socket that takes a random number of bytes per write and records what it took. */
class PartialSink {
  private parts: Uint8Array[] = [];
  constructor(private readonly takes: number[]) {}
  private i = 0;
  write(data: Uint8Array, off = 0, len = data.byteLength - off): number {
    const n = Math.min(len, this.takes[this.i++ % this.takes.length]!);
    this.parts.push(data.slice(off, off + n));
    return n;
  }
  get out(): Buffer {
    return Buffer.concat(this.parts);
  }
}

test("SocketWriter: bytes leave in append order through random partial writes", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(headerArb, fc.oneof(fc.uint8Array({ maxLength: 2000 }), bigPayloadArb), fc.boolean()), { minLength: 1, maxLength: 12 }),
      // socket takes: sometimes nothing (backpressure), else 1 byte .. 400 KB per write
      fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 512, max: 400_000 })), { minLength: 1, maxLength: 10 }),
      async (frames, takes) => {
        const sink = new PartialSink(takes.some((t) => t >= 512) ? takes : [...takes, 4096]);
        const w = new SocketWriter(sink);
        const expectedParts: Uint8Array[] = [];
        for (const [h, p, immutable] of frames) {
          w.frame({ ...h, payloadLength: 0 }, p, immutable);
          expectedParts.push(encodeFrame(h, p));
          if (h.requestId % 3 === 0) await Promise.resolve(); // sometimes let a batch flush
        }
        await Promise.resolve();
        for (let guard = 0; w.queuedBytes > 0 && guard < 100_000; guard++) w.onDrain();
        const expected = Buffer.concat(expectedParts);
        expect(sink.out.length).toBe(expected.length);
        expect(sink.out.equals(expected)).toBe(true);
      },
    ),
    { numRuns: 200 },
  );
});

test("SocketWriter buffers until attached and keeps HELLO first", async () => {
  const w = new SocketWriter();
  const h = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 } as FrameHeader;
  w.frame(h, new Uint8Array(40));
  w.frame({ ...h, opcode: Op.WRITE, requestId: 1 }, new Uint8Array(100_000).fill(7));
  w.frame({ ...h, opcode: Op.READ, requestId: 2 });
  await Promise.resolve();
  const sink = new PartialSink([1 << 30]);
  w.attach(sink);
  const got: number[] = [];
  new FrameReader().push(new Uint8Array(sink.out), (f) => void got.push(f.header.requestId));
  expect(got).toEqual([0, 1, 2]);
});
