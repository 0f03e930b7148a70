// Scatter payloads (src/proto/scatter.ts): a large frame payload that spans socket chunks is
// handed out as views of them (FrameReader.scatterPayloads), written to a device in aligned
// segments (forEachSegment) and sent piece by piece (SocketWriter); every path must give back
// exactly the bytes that came in, and reading `payload` still gives one buffer.

import { expect, test } from "bun:test";
import fc from "fast-check";
import { FrameReader, HEADER_BYTES, Op, Status, encodeFrame, type Frame, type FrameHeader } from "../src/proto/dataplane.ts";
import { Scatter, flatOf, forEachSegment } from "../src/proto/scatter.ts";
import { SocketWriter } from "../src/proto/socket_writer.ts";

function header(payloadLength: number): FrameHeader {
  return { opcode: Op.WRITE, flags: 0, status: Status.OK, requestId: 7, epoch: 1, volumeHi: 2, volumeLo: 3, extentIndex: 0, offset: 0, length: payloadLength, payloadLength, gen: 0 };
}

function cutAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.byteLength]) {
    if (c > prev) out.push(bytes.slice(prev, c)); // fresh buffers, as Bun's data events are
    prev = c;
  }
  return out;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

test("FrameReader.scatterPayloads: a payload spanning chunks arrives as its pieces, byte-exact", () => {
  fc.assert(
    fc.property(fc.integer({ min: 64 * 1024, max: 300 * 1024 }), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), fc.integer(), (n, cuts, seed) => {
      const payload = randomBytes(n, seed);
      const wire = encodeFrame(header(n), payload);
      const r = new FrameReader();
      r.scatterPayloads = true;
      const got: Frame[] = [];
      for (const c of cutAt(wire, cuts)) r.push(c, (f) => void got.push(f));
      expect(got.length).toBe(1);
      const f = got[0]!;
      const fitsOneChunk = f.scatter === undefined;
      if (!fitsOneChunk) {
        expect(f.scatter!.byteLength).toBe(n);
        const joined = new Uint8Array(n);
        let at = 0;
        for (const p of f.scatter!.pieces) {
          joined.set(p, at);
          at += p.byteLength;
        }
        expect(at).toBe(n);
        expect(Buffer.compare(joined, payload)).toBe(0);
        expect(f.header.pooledPayload).toBeUndefined();
      }
      // reading payload gives one buffer (a copy named by the header, given back on the reply)
      expect(Buffer.compare(f.payload, payload)).toBe(0);
      if (!fitsOneChunk) expect(f.header.pooledPayload).toBe(f.payload);
    }),
    { numRuns: 200 },
  );
});

test("forEachSegment covers the range in order, never crossing a segment boundary of the destination", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 100_000 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.nat(),
      fc.nat(),
      fc.nat({ max: 1 << 20 }),
      fc.constantFrom(512, 4096, 16384),
      (n, cuts, fromSeed, lenSeed, destPos, seg) => {
        const payload = randomBytes(n, n);
        const s = new Scatter(cutAt(payload, cuts), n);
        const from = fromSeed % n;
        const len = lenSeed % (n - from + 1);
        const dest = new Uint8Array(len);
        let next = destPos;
        forEachSegment(s, from, len, destPos, seg, new Uint8Array(seg), (view, pos) => {
          expect(pos).toBe(next);
          expect(view.byteLength).toBeGreaterThan(0);
          expect(Math.floor(pos / seg)).toBe(Math.floor((pos + view.byteLength - 1) / seg));
          dest.set(view, pos - destPos);
          next += view.byteLength;
        });
        expect(next).toBe(destPos + len);
        expect(Buffer.compare(dest, payload.subarray(from, from + len))).toBe(0);
      },
    ),
    { numRuns: 500 },
  );
});

test("SocketWriter sends a Scatter's header and pieces in order through partial writes; flatOf copies once", () => {
  const n = 200 * 1024;
  const payload = randomBytes(n, 42);
  const s = new Scatter(cutAt(payload, [1000, 70_000, 150_001]), n);
  const out: number[] = [];
  let budget = 9000;
  const sink = {
    write(d: Uint8Array, off = 0, len = d.byteLength - off): number {
      const k = Math.min(len, budget);
      for (let i = 0; i < k; i++) out.push(d[off + i]!);
      budget -= k;
      return k;
    },
  };
  const w = new SocketWriter(sink);
  w.frame(header(n), s, true);
  for (let i = 0; i < 1000 && w.queuedBytes > 0; i++) {
    budget = 7777;
    w.onDrain();
  }
  expect(w.queuedBytes).toBe(0);
  const wire = Uint8Array.from(out);
  expect(wire.byteLength).toBe(HEADER_BYTES + n);
  expect(Buffer.compare(wire, encodeFrame(header(n), payload))).toBe(0);
  const flat = flatOf(s);
  expect(flatOf(s)).toBe(flat);
  expect(Buffer.compare(flat, payload)).toBe(0);
});

test("SocketWriter batches a Scatter's small pieces (a slow link: one segment a data event) into few writes, bytes in order", async () => {
  const n = 256 * 1024;
  const payload = randomBytes(n, 7);
  // 1,448-byte pieces (a TCP segment each) around one large piece
  const cuts: number[] = [];
  for (let at = 1448; at < 100_000; at += 1448) cuts.push(at);
  cuts.push(200_000);
  for (let at = 201_448; at < n; at += 1448) cuts.push(at);
  const pieces = cutAt(payload, cuts);
  const out: number[] = [];
  let writes = 0;
  const sink = {
    write(d: Uint8Array, off = 0, len = d.byteLength - off): number {
      writes++;
      for (let i = 0; i < len; i++) out.push(d[off + i]!);
      return len;
    },
  };
  const w = new SocketWriter(sink);
  w.frame(header(n), new Scatter(pieces, n), true);
  w.frame(header(4), new Uint8Array([1, 2, 3, 4])); // a frame after it stays behind it
  await Promise.resolve();
  expect(w.queuedBytes).toBe(0);
  expect(pieces.length).toBeGreaterThan(100);
  expect(writes).toBeLessThanOrEqual(4); // small pieces + header, the large piece, the tail + next frame
  const wire = Uint8Array.from(out);
  const want = Buffer.concat([encodeFrame(header(n), payload), encodeFrame(header(4), new Uint8Array([1, 2, 3, 4]))]);
  expect(Buffer.compare(wire, want)).toBe(0);
});
