// Data-plane fuzz cases against a real SDS (real sockets, dist/pf), before and after the
// handshake. A case is symbolic (volume "play"/"keep", epoch "current"), so that a corpus entry
// replays on another cluster: frames are built with src/proto/dataplane.ts at run time, one
// field off (opcode, flags, status, epoch, volume, extent, offset, length, generation, the
// payloadLength field lying, payload bytes), then byte pokes, a truncation, and splits across
// packets. "dataplane" (pre-auth): HELLO variants, AUTH with a wrong proof/kid/length, any
// other frame before authentication. "dataplane-auth": the fuzzer's SDC does the real
// handshake and presents its fzplay grant, then sends the mutated frames; frames naming fzkeep
// (no grant) must be refused, which the pattern check after the run proves.

import fc from "fast-check";
import { Flag, FrameReader, HEADER_BYTES, Op, Status, encodeFrame, type Frame } from "../../src/proto/dataplane.ts";
import { Binding, DP_AUTH_VERSION, NodeRole, UNBOUND, clientProof, decodeChallenge, encodeAuth, encodeHelloAuth, newNonce, transcriptHash } from "../../src/proto/dataplane_auth.ts";
import { GRANT_FRAME_BYTES, encodeGrantPresentation } from "../../src/proto/grant.ts";
import { idToHalves } from "../../src/proto/ids.ts";
import type { FuzzEnv } from "./fuzz_env.ts";
import { EXTENT_BYTES } from "./fuzz_env.ts";
import { RawConn, concat, sendPiecesAndEnd, splitAt, within, type Target } from "./fuzz_run.ts";

type Vol = "play" | "keep" | { hi: number; lo: number };
type Payload =
  | { kind: "none" }
  | { kind: "data"; n: number }
  | { kind: "hello"; role: number; node: "self" | "other"; version: number; reserved: number }
  | { kind: "bytes"; bytes: number[] }
  /** the fuzzer's real fzplay grant for this connection, one byte flipped (null: as is) */
  | { kind: "grant"; flip: number | null };

export interface DpFrame {
  op: number;
  flags: number;
  status: number;
  requestId: number;
  vol: Vol;
  /** null: the extent's current epoch */
  epoch: number | null;
  extent: number;
  offset: number;
  length: number;
  gen: number;
  payload: Payload;
  /** added to the payloadLength field after encoding (a lie) */
  lenDelta: number;
  pokes: { at: number; value: number }[];
  /** keep only this fraction of the encoded frame */
  keep: number | null;
}

export interface DpCase {
  /** none: raw frames from the first byte; badAuth: a real HELLO, then a mutated AUTH; real: a full handshake and the fzplay grant */
  start: "none" | "badAuth" | "real";
  badAuth: { kidDelta: number; flipBit: number | null; extra: number; reserved: number };
  /** which SDS: the primary of fzplay's extent (0..3), or SDS index 4..6 (any copy or none) */
  to: number;
  frames: DpFrame[];
  cuts: number[];
  pauseMs: number;
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u8 = fc.integer({ min: 0, max: 255 });
const KiB = 1024;

const opArb = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...Object.values(Op)) }, u8);
const flagsArb = fc.oneof(
  { weight: 5, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.subarray([Flag.FUA, Flag.LOCAL_ONLY, Flag.LAYER, Flag.REPLY]).map((fs) => fs.reduce((a, b) => a | b, 0)) },
  u8,
);
const offsetArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: EXTENT_BYTES / 4096 - 1 }).map((b) => b * 4096) },
  fc.constantFrom(EXTENT_BYTES, EXTENT_BYTES - 512, 1, 2 ** 30 - 4096, 2 ** 30, 0xffff_f000),
  u32,
);
const lengthArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 16 }).map((k) => k * 4096) },
  fc.constantFrom(0, 1, 513, 64 * KiB, 1024 * KiB, 32 * 1024 * KiB, 32 * 1024 * KiB + 1, 0xffff_ffff),
  u32,
);
const volArb: fc.Arbitrary<Vol> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Vol>("play") },
  { weight: 2, arbitrary: fc.constant<Vol>("keep") },
  fc.record({ hi: u32, lo: u32 }),
);

const payloadArb: fc.Arbitrary<Payload> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Payload>({ kind: "none" }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 64 * KiB }).map((n): Payload => ({ kind: "data", n })) },
  fc.record({ role: fc.oneof(fc.constantFrom(NodeRole.SDC, NodeRole.SDS, NodeRole.MDM), u8), node: fc.constantFrom<"self" | "other">("self", "other"), version: fc.oneof({ weight: 4, arbitrary: fc.constant(DP_AUTH_VERSION) }, u8), reserved: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, u8) }).map((h): Payload => ({ kind: "hello", ...h })),
  fc.array(u8, { maxLength: 300 }).map((bytes): Payload => ({ kind: "bytes", bytes })),
  fc.oneof(fc.constant(null), fc.integer({ min: 0, max: GRANT_FRAME_BYTES - 1 })).map((flip): Payload => ({ kind: "grant", flip })),
);

type Mutation =
  | { field: "none" }
  | { field: "op"; v: number }
  | { field: "flags"; v: number }
  | { field: "status"; v: number }
  | { field: "vol"; v: Vol }
  | { field: "epoch"; v: number }
  | { field: "extent"; v: number }
  | { field: "offset"; v: number }
  | { field: "length"; v: number }
  | { field: "gen"; v: number }
  | { field: "payload"; v: Payload }
  | { field: "lenDelta"; v: number }
  | { field: "pokes"; v: { at: number; value: number }[] }
  | { field: "keep"; v: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 8, arbitrary: fc.constant<Mutation>({ field: "none" }) },
  fc.record({ field: fc.constant<"op">("op"), v: opArb }),
  fc.record({ field: fc.constant<"flags">("flags"), v: flagsArb }),
  fc.record({ field: fc.constant<"status">("status"), v: fc.integer({ min: 0, max: 0xffff }) }),
  { weight: 2, arbitrary: fc.record({ field: fc.constant<"vol">("vol"), v: volArb }) },
  fc.record({ field: fc.constant<"epoch">("epoch"), v: fc.oneof(u32, fc.integer({ min: 0, max: 4 })) }),
  fc.record({ field: fc.constant<"extent">("extent"), v: fc.oneof(fc.integer({ min: 4, max: 10 }), u32) }),
  fc.record({ field: fc.constant<"offset">("offset"), v: offsetArb }),
  fc.record({ field: fc.constant<"length">("length"), v: lengthArb }),
  fc.record({ field: fc.constant<"gen">("gen"), v: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }) }),
  fc.record({ field: fc.constant<"payload">("payload"), v: payloadArb }),
  fc.record({ field: fc.constant<"lenDelta">("lenDelta"), v: fc.oneof(fc.integer({ min: -64, max: 64 }), fc.constantFrom(256, 257, 32 * 1024 * KiB, 0x7fff_ffff)) }),
  fc.record({ field: fc.constant<"pokes">("pokes"), v: fc.array(fc.record({ at: fc.integer({ min: 0, max: HEADER_BYTES + 16 }), value: u8 }), { minLength: 1, maxLength: 3 }) }),
  fc.record({ field: fc.constant<"keep">("keep"), v: fc.double({ min: 0, max: 1, noNaN: true }) }),
);

/** a valid frame (an IO op on fzplay at its current epoch, in range, aligned, the payload a WRITE needs), then at most one field off */
function frameArb(o: { firstHello: boolean }): fc.Arbitrary<DpFrame> {
  return fc
    .record({
      op: o.firstHello ? fc.constant(Op.HELLO as number) : fc.constantFrom<number>(Op.READ, Op.READ, Op.WRITE, Op.WRITE, Op.TRIM, Op.WRITE_ZEROES, Op.FLUSH, Op.PING, Op.CHECKSUM, Op.GRANT, Op.HELLO, Op.AUTH),
      fua: fc.boolean(),
      requestId: u32,
      extent: fc.integer({ min: 0, max: 3 }),
      block: fc.integer({ min: 0, max: EXTENT_BYTES / 4096 - 16 }),
      blocks: fc.integer({ min: 0, max: 16 }),
      hello: payloadArb.filter((p) => p.kind === "hello"),
      mutate: mutationArb,
    })
    .map((r): DpFrame => {
      const length = r.op === Op.FLUSH || r.op === Op.PING || r.op === Op.HELLO ? 0 : r.blocks * 4096;
      const f: DpFrame = {
        op: r.op,
        flags: r.fua && r.op === Op.WRITE ? Flag.FUA : 0,
        status: 0,
        requestId: r.requestId,
        vol: "play",
        epoch: null,
        extent: r.extent,
        offset: r.op === Op.FLUSH || r.op === Op.PING || r.op === Op.HELLO ? 0 : r.block * 4096,
        length,
        gen: 0,
        payload: r.op === Op.HELLO ? r.hello : r.op === Op.WRITE ? { kind: "data", n: length } : r.op === Op.GRANT ? { kind: "grant", flip: null } : { kind: "none" },
        lenDelta: 0,
        pokes: [],
        keep: null,
      };
      const m = r.mutate;
      switch (m.field) {
        case "none":
          return f;
        case "epoch":
          return { ...f, epoch: m.v };
        case "op":
          return { ...f, op: m.v };
        default:
          return { ...f, [m.field]: m.v };
      }
    });
}

const badAuthArb = fc.record({
  kidDelta: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.integer({ min: -3, max: 3 })),
  flipBit: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 255 })),
  extra: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.integer({ min: -40, max: 40 })),
  reserved: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, u32),
});

const common = { to: fc.integer({ min: 0, max: 6 }), cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), pauseMs: fc.constantFrom(0, 0, 0, 1) };

export const preAuthCaseArb: fc.Arbitrary<DpCase> = fc.oneof(
  fc.record({ start: fc.constant<"none">("none"), badAuth: badAuthArb, frames: fc.array(frameArb({ firstHello: true }), { minLength: 1, maxLength: 4 }), ...common }),
  fc.record({ start: fc.constant<"badAuth">("badAuth"), badAuth: badAuthArb, frames: fc.array(frameArb({ firstHello: false }), { maxLength: 3 }), ...common }),
  // random bytes from the first byte
  fc.record({ start: fc.constant<"none">("none"), badAuth: badAuthArb, frames: fc.array(u8, { minLength: 1, maxLength: 400 }).map((bytes) => [rawBytesFrame(bytes)]), ...common }),
);

/** More pipelined frames than an SDS keeps in flight (Limits.dataMaxInFlightPerConn): it must pause reading and resume, answering all. */
const floodFrames = fc.record({ count: fc.integer({ min: 1025, max: 1500 }), read: fc.boolean() }).map(({ count, read }) =>
  Array.from({ length: count }, (_, i): DpFrame => ({ op: read ? Op.READ : Op.PING, flags: 0, status: 0, requestId: i, vol: "play", epoch: null, extent: 0, offset: read ? (i % 4096) * 4096 : 0, length: read ? 4096 : 0, gen: 0, payload: { kind: "none" }, lenDelta: 0, pokes: [], keep: null })),
);

export const authCaseArb: fc.Arbitrary<DpCase> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ start: fc.constant<"real">("real"), badAuth: badAuthArb, frames: floodFrames, ...common, to: fc.constant(0) }) },
  { weight: 50, arbitrary: fc.record({ start: fc.constant<"real">("real"), badAuth: badAuthArb, frames: fc.array(frameArb({ firstHello: false }), { minLength: 1, maxLength: 6 }), ...common }) },
  { weight: 10, arbitrary: fc.record({ start: fc.constant<"real">("real"), badAuth: badAuthArb, frames: fc.array(u8, { minLength: 1, maxLength: 400 }).map((bytes) => [rawBytesFrame(bytes)]), ...common }) },
);

/** a "frame" that is only raw bytes (op 0 marks it) */
function rawBytesFrame(bytes: number[]): DpFrame {
  return { op: -1, flags: 0, status: 0, requestId: 0, vol: "play", epoch: null, extent: 0, offset: 0, length: 0, gen: 0, payload: { kind: "bytes", bytes }, lenDelta: 0, pokes: [], keep: null };
}

function volHalves(env: FuzzEnv, v: Vol): { hi: number; lo: number } {
  if (v === "play") return env.ids.play;
  if (v === "keep") return env.ids.keep;
  return v;
}

function encodePayload(env: FuzzEnv, p: Payload, seed: number, th: Uint8Array): Uint8Array {
  switch (p.kind) {
    case "none":
      return new Uint8Array(0);
    case "data":
      return new Uint8Array(p.n).fill(seed & 0xff);
    case "bytes":
      return new Uint8Array(p.bytes);
    case "grant": {
      const token = env.rogue.grants.grantFor(env.ids.play.hi, env.ids.play.lo);
      if (!token) return new Uint8Array(GRANT_FRAME_BYTES);
      const b = encodeGrantPresentation(token, th);
      if (p.flip !== null) b[p.flip]! ^= 0xff;
      return b;
    }
    case "hello": {
      const self = idToHalves(env.rogue.sdcId);
      const b = encodeHelloAuth({ version: p.version, role: p.role as NodeRole, binding: Binding.NONE, nodeHi: p.node === "self" ? self.hi : 0x5d5d0000, nodeLo: p.node === "self" ? self.lo : seed >>> 0, nonce: newNonce() });
      b[2] = p.reserved; // the binding byte: 1 is refused on a plaintext connection, > 1 does not decode
      return b;
    }
    default: {
      const never: never = p;
      throw new Error(`payload ${JSON.stringify(never)}`);
    }
  }
}

/** th: the connection's handshake hash (zeros before a handshake) */
export function encodeDpFrame(env: FuzzEnv, f: DpFrame, th: Uint8Array = new Uint8Array(32)): Uint8Array {
  if (f.op === -1) return encodePayload(env, f.payload, 0, th);
  const { hi, lo } = volHalves(env, f.vol);
  const out = encodeFrame(
    {
      opcode: (f.op & 0xff) as Op,
      flags: f.flags & 0xff,
      status: (f.status & 0xffff) as Status,
      requestId: f.requestId,
      epoch: f.epoch ?? env.epochOf(f.extent),
      volumeHi: hi,
      volumeLo: lo,
      extentIndex: f.extent,
      offset: f.offset,
      length: f.length,
      gen: f.gen,
    },
    encodePayload(env, f.payload, f.requestId, th),
  );
  const v = new DataView(out.buffer);
  if (f.lenDelta !== 0) v.setUint32(36, Math.max(0, Math.min(0xffff_ffff, v.getUint32(36, true) + f.lenDelta)), true);
  for (const p of f.pokes) if (p.at < out.byteLength) out[p.at] = p.value;
  return f.keep === null ? out : out.subarray(0, Math.floor(out.byteLength * f.keep));
}

/** Reads reply frames of our own handshake (the SDS's replies are well-formed). */
class Replies {
  private readonly reader = new FrameReader();
  readonly frames: Frame[] = [];
  broken = "";
  constructor(conn: RawConn) {
    conn.onData((d) => {
      if (this.broken !== "") return;
      try {
        this.reader.push(d, (f) => void this.frames.push({ header: { ...f.header }, payload: f.payload.slice() }));
      } catch (e) {
        this.broken = (e as Error).message;
      }
    });
  }
  async next(conn: RawConn, n: number, ms: number): Promise<Frame | null> {
    const end = performance.now() + ms;
    while (this.frames.length < n) {
      if (conn.isClosed || performance.now() > end || this.broken !== "") return null;
      await Bun.sleep(1);
    }
    return this.frames[n - 1]!;
  }
}

/** The client side of the handshake with the fuzzer's SDC key; with `bad`, the AUTH is mutated. Returns th, or an error. */
async function handshake(env: FuzzEnv, conn: RawConn, replies: Replies, bad: DpCase["badAuth"] | null): Promise<{ th: Uint8Array } | { err: string } | { refused: true }> {
  const self = idToHalves(env.rogue.sdcId);
  const hello = encodeHelloAuth({ version: DP_AUTH_VERSION, role: NodeRole.SDC, binding: Binding.NONE, nodeHi: self.hi, nodeLo: self.lo, nonce: newNonce() });
  conn.write(encodeFrame({ opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }, hello));
  const ch = await replies.next(conn, 1, 5000);
  if (!ch) return { err: `no CHALLENGE to a valid HELLO (closed: ${conn.isClosed}${replies.broken ? `, ${replies.broken}` : ""})` };
  if (ch.header.status !== Status.OK) return { err: `valid HELLO refused: status ${ch.header.status}` };
  const c = decodeChallenge(ch.payload);
  const key = env.rogue.keys.keyFor(c.kids);
  if (!key) return { err: `no key of ours among the offered kids ${c.kids.join(",")}` };
  const th = transcriptHash(hello, ch.payload, key.kid, UNBOUND);
  let auth = encodeAuth({ kid: key.kid, proof: clientProof(key.key, th) });
  if (bad) {
    const a = new DataView(auth.buffer);
    a.setUint32(0, (key.kid + bad.kidDelta) >>> 0, true);
    if (bad.reserved !== 0) a.setUint32(4, bad.reserved >>> 0, true);
    if (bad.flipBit !== null) auth[8 + (bad.flipBit >> 3)]! ^= 1 << (bad.flipBit & 7);
    if (bad.extra > 0) auth = concat([auth, new Uint8Array(bad.extra)]);
    if (bad.extra < 0) auth = auth.subarray(0, AUTH_LEN + bad.extra);
    conn.write(encodeFrame({ opcode: Op.AUTH, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }, auth));
    return { refused: true };
  }
  conn.write(encodeFrame({ opcode: Op.AUTH, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }, auth));
  const ar = await replies.next(conn, 2, 5000);
  if (!ar) return { err: `no answer to a valid AUTH (closed: ${conn.isClosed})` };
  if (ar.header.status !== Status.OK) return { err: `valid AUTH refused: status ${ar.header.status}` };
  return { th };
}
const AUTH_LEN = 40;

const PROBE_ID = 0xf022f022;
/** PINGs sent after a case's frames, answered, and met by a closed connection instead */
export const dpProbeStats = { sent: 0, answered: 0, closed: 0 };

/** the encoded frame is whole and its payloadLength true, so a frame after it is read as one */
function frameComplete(f: DpFrame): boolean {
  return f.op !== -1 && f.lenDelta === 0 && f.keep === null && f.pokes.every((p) => p.at < 36 || p.at > 39);
}

export function dataplaneTarget(env: FuzzEnv, which: "dataplane" | "dataplane-auth", o: { closeWithinMs?: number } = {}): Target<DpCase> {
  return {
    name: which,
    arb: which === "dataplane" ? preAuthCaseArb : authCaseArb,
    toJson: (c) => c,
    async exec(c) {
      const port = c.to < 4 ? env.primaryPortOf(c.to) : env.sdsPorts[(c.to - 4) % env.sdsPorts.length]!;
      const conn = await RawConn.open(port);
      const replies = new Replies(conn);
      try {
        let th: Uint8Array = new Uint8Array(32);
        if (c.start !== "none") {
          const h = await within(handshake(env, conn, replies, c.start === "badAuth" ? c.badAuth : null), 10_000, "handshake");
          if ("err" in h) return `hang: ${h.err}`;
          if ("th" in h) {
            th = h.th;
            const token = env.rogue.grants.grantFor(env.ids.play.hi, env.ids.play.lo);
            if (!token) return "internal: the fuzz SDC holds no grant for fzplay";
            conn.write(encodeFrame({ opcode: Op.GRANT, flags: 0, status: Status.OK, requestId: 1, epoch: 0, volumeHi: env.ids.play.hi, volumeLo: env.ids.play.lo, extentIndex: 0, offset: 0, length: 0, gen: 0 }, encodeGrantPresentation(token, h.th)));
            const g = await replies.next(conn, 3, 5000);
            if (!g) return `hang: no answer to a valid GRANT (closed: ${conn.isClosed})`;
            if (g.header.status !== Status.OK) return `internal: the valid fzplay grant was refused: status ${g.header.status}`;
          }
        }
        const bytes = concat(c.frames.map((f) => encodeDpFrame(env, f, th)));
        if (c.start === "real" && c.frames.every(frameComplete)) {
          // the frames end on a frame boundary: a PING after them must be answered unless the SDS closed
          const seen = replies.frames.length;
          for (const p of splitAt(bytes, c.cuts)) {
            conn.write(p);
            if (c.pauseMs > 0) await Bun.sleep(c.pauseMs);
          }
          conn.write(encodeFrame({ opcode: Op.PING, flags: 0, status: Status.OK, requestId: PROBE_ID, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }));
          dpProbeStats.sent++;
          const ms = (o.closeWithinMs ?? 5000) * (c.frames.length > 1000 ? 3 : 1);
          const end = performance.now() + ms;
          const answered = () => replies.frames.slice(seen).some((f) => f.header.requestId === PROBE_ID && (f.header.flags & Flag.REPLY) !== 0);
          while (!conn.isClosed && !answered()) {
            if (performance.now() > end) return `hang: no reply to a PING sent after the case's frames within ${ms} ms (connection still open${replies.broken ? `; reply stream: ${replies.broken}` : ""})`;
            await Bun.sleep(2);
          }
          if (conn.isClosed) dpProbeStats.closed++;
          else dpProbeStats.answered++;
          return await sendPiecesAndEnd(conn, [], { pauseMs: 0, quietMs: 0, closeWithinMs: ms });
        }
        return await sendPiecesAndEnd(conn, splitAt(bytes, c.cuts), { pauseMs: c.pauseMs, quietMs: 15, closeWithinMs: o.closeWithinMs ?? 5000 });
      } finally {
        conn.terminate();
      }
    },
  };
}
