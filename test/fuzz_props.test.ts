// Property tests (fast-check, in process, no cluster) of the decoders a hostile peer reaches
// first, and the cluster YAML fuzz target with shrinking: a fixed seed plus a random one that
// is printed (replay a failure with FUZZ_SEED=<seed>). The corpus of YAML inputs that once
// broke parseClusterConfig is replayed too.

import { expect, test } from "bun:test";
import fc from "fast-check";
import { FrameError, FrameReader, HEADER_BYTES, Op, Status, decodeHeader, encodeFrame, type FrameHeader } from "../src/proto/dataplane.ts";
import { decodeAuth, decodeChallenge, decodeHelloAuth } from "../src/proto/dataplane_auth.ts";
import { decodeGrantPresentation } from "../src/proto/grant.ts";
import { NbdDecodeError, decodeClientFlags, decodeExportName, decodeInfoRequest, decodeOptionHeader, decodeRequest } from "../src/proto/nbd.ts";
import { corpusOf } from "./helpers/fuzz_corpus.ts";
import { checkYaml, yamlCaseArb, type YamlCase } from "./helpers/fuzz_yaml.ts";

const RANDOM_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const SEEDS = [20261201, RANDOM_SEED];
console.info(`fuzz_props: seeds ${SEEDS.join(", ")} (FUZZ_SEED=<seed> replays the second)`);

const onlyFrameErrors = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch (e) {
    if (e instanceof FrameError) return true;
    throw e;
  }
};

test("data-plane header decoding: any 48 bytes decode or give a FrameError naming a field", () => {
  for (const seed of SEEDS) {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: HEADER_BYTES, maxLength: HEADER_BYTES }), fc.boolean(), (b, magic) => {
        if (magic) b.set([0x50, 0x44, 0x50, 0x31], 0); // "PDP1" little-endian: reach the later fields
        return onlyFrameErrors(() => decodeHeader(b, 0));
      }),
      { seed, numRuns: 5000 },
    );
  }
});

test("handshake and grant payload decoders: any bytes decode or give a FrameError", () => {
  for (const seed of SEEDS) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (b) => [decodeHelloAuth, decodeChallenge, decodeAuth, decodeGrantPresentation].every((d) => onlyFrameErrors(() => d(b)))),
      { seed, numRuns: 3000 },
    );
  }
});

const headerArb: fc.Arbitrary<Omit<FrameHeader, "payloadLength">> = fc.record({
  opcode: fc.constantFrom(...Object.values(Op)),
  flags: fc.constantFrom(0, 1, 2, 4, 0x80),
  status: fc.constantFrom(...Object.values(Status)),
  requestId: fc.integer({ min: 0, max: 0xffff_ffff }),
  epoch: fc.integer({ min: 0, max: 0xffff_ffff }),
  volumeHi: fc.integer({ min: 0, max: 0xffff_ffff }),
  volumeLo: fc.integer({ min: 0, max: 0xffff_ffff }),
  extentIndex: fc.integer({ min: 0, max: 0xffff_ffff }),
  offset: fc.integer({ min: 0, max: 2 ** 29 }),
  length: fc.integer({ min: 0, max: 2 ** 29 }),
  gen: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
});

test("FrameReader: frames split at any points across pushes come out whole and in order", () => {
  for (const seed of SEEDS) {
    fc.assert(
      fc.property(fc.array(fc.tuple(headerArb, fc.uint8Array({ maxLength: 600 })), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.map(([h, p]) => encodeFrame(h, p)));
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const r = new FrameReader();
        const got: { h: FrameHeader; p: Buffer }[] = [];
        let at = 0;
        for (const p of [...points, bytes.length]) {
          r.push(bytes.subarray(at, p), (f) => void got.push({ h: { ...f.header }, p: Buffer.from(f.payload) }));
          at = p;
        }
        expect(got.length).toBe(frames.length);
        got.forEach((g, i) => {
          expect(g.h).toEqual({ ...frames[i]![0], payloadLength: frames[i]![1].byteLength });
          expect(g.p.equals(Buffer.from(frames[i]![1]))).toBe(true);
        });
      }),
      { seed, numRuns: 1500 },
    );
  }
});

test("NBD decoders: any bytes decode or give an NbdDecodeError, never an exception", () => {
  for (const seed of SEEDS) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 3 }), (raw, flags) => {
        const b = Buffer.from(raw);
        decodeInfoRequest(b);
        decodeExportName(b);
        if (b.length >= 4) decodeClientFlags(b, 0, flags);
        if (b.length >= 16) decodeOptionHeader(b, 0);
        if (b.length >= 28) {
          const r = decodeRequest(b, 0);
          if (!(r instanceof NbdDecodeError)) expect(Number.isSafeInteger(r.offsetBytes)).toBe(true);
        }
      }),
      { seed, numRuns: 5000 },
    );
  }
});

test("cluster YAML: any text parses or is a BAD_REQUEST naming the file, fast (1500 + 500 cases)", () => {
  for (const seed of SEEDS) {
    fc.assert(
      fc.property(yamlCaseArb, (c) => {
        const why = checkYaml(c);
        if (why !== "") throw new Error(why);
      }),
      { seed, numRuns: seed === SEEDS[0] ? 1500 : 500 },
    );
  }
});

test("cluster YAML corpus: every input that once broke the parser is a BAD_REQUEST now", () => {
  const entries = corpusOf<YamlCase>("yaml");
  expect(entries.length).toBeGreaterThan(0);
  for (const e of entries) expect(`${e.file}: ${checkYaml(e.input)}`).toBe(`${e.file}: `);
});
