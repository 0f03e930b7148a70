// NBD fuzz cases against the SDC's NBD server (real sockets, a real pf SDC): the handshake
// (client flags, option requests with their lengths, names and info lists) and the
// transmission phase (request magic, flags, types, offsets, lengths, payloads), each built
// from src/proto/nbd.ts as a valid message with one field mutated (grammar-aware), or raw
// random bytes after a valid prefix; then split at random points into separately sent pieces.
// A case is concrete bytes (no cluster-specific value: the export names are fixed), so the
// corpus stores it as hex.

import fc from "fast-check";
import {
  ClientFlag,
  Cmd,
  CmdFlag,
  Info,
  NBD_IHAVEOPT,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  Opt,
  REQUEST_BYTES,
  encodeClientFlags,
  encodeInfoRequest,
  encodeRequest,
} from "../../src/proto/nbd.ts";
import type { FuzzEnv } from "./fuzz_env.ts";
import { PLAY } from "./fuzz_env.ts";
import { RawConn, concat, hex, sendPiecesAndEnd, splitAt, unhex, type Target } from "./fuzz_run.ts";

export interface NbdCase {
  note: string;
  bytes: Uint8Array;
  /** the bytes end on a request boundary in the transmission phase: a valid READ sent after them must be answered (or the connection closed) */
  probe: boolean;
  cuts: number[];
  pauseMs: number;
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const names = fc.oneof(
  { weight: 6, arbitrary: fc.constant(PLAY) },
  fc.constantFrom("", "nope", "fzplay\0", "FZPLAY", "x".repeat(4097), "\u00e9t\u00e9", "../etc/passwd"),
  fc.string({ maxLength: 40 }),
);

function option(opt: number, data: Uint8Array, lengthDelta = 0, magic = NBD_IHAVEOPT): Uint8Array {
  const b = Buffer.alloc(16 + data.byteLength);
  b.writeBigUInt64BE(magic, 0);
  b.writeUInt32BE(opt >>> 0, 8);
  b.writeUInt32BE(Math.max(0, Math.min(0xffff_ffff, data.byteLength + lengthDelta)), 12);
  b.set(data, 16);
  return b;
}

/** INFO/GO data, valid or with its name length or count lying. */
const infoData = fc
  .record({
    name: names,
    infos: fc.array(fc.oneof(fc.constantFrom(Info.EXPORT, Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE), u16), { maxLength: 6 }),
    lie: fc.oneof({ weight: 5, arbitrary: fc.constant<null>(null) }, fc.record({ at: fc.constantFrom("nameLen", "count"), value: u32 })),
  })
  .map(({ name, infos, lie }) => {
    const d = encodeInfoRequest({ name, infoRequests: infos });
    if (lie) {
      if (lie.at === "nameLen") d.writeUInt32BE(lie.value >>> 0, 0);
      else if (d.length >= 2) d.writeUInt16BE(lie.value & 0xffff, d.length - 2 - 2 * infos.length);
    }
    return new Uint8Array(d);
  });

const optionArb = fc.oneof(
  // a known option with fitting data
  fc.record({ opt: fc.constantFrom(Opt.INFO, Opt.GO), data: infoData, delta: fc.constant(0) }),
  fc.record({ opt: fc.constantFrom(Opt.LIST, Opt.STRUCTURED_REPLY, Opt.ABORT, Opt.STARTTLS, Opt.EXTENDED_HEADERS), data: fc.constant(new Uint8Array(0)), delta: fc.constant(0) }),
  fc.record({ opt: fc.constantFrom(Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT), data: metaContextData(), delta: fc.constant(0) }),
  // one field mutated: the option number, the data, the length
  fc.record({ opt: u32, data: fc.uint8Array({ maxLength: 64 }), delta: fc.constant(0) }),
  fc.record({ opt: fc.constantFrom(...Object.values(Opt)), data: fc.uint8Array({ maxLength: 300 }), delta: fc.constant(0) }),
  fc.record({ opt: fc.constantFrom(...Object.values(Opt)), data: infoData, delta: fc.oneof(fc.integer({ min: -8, max: 8 }), fc.constant(70_000), fc.constant(0x7fff_ffff)) }),
);

function metaContextData(): fc.Arbitrary<Uint8Array> {
  return fc.record({ name: names, queries: fc.array(fc.string({ maxLength: 30 }), { maxLength: 4 }) }).map(({ name, queries }) => metaContext(name, queries));
}

const EXPORT = 64 * 1024 * 1024;
const offsetArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: EXPORT / 4096 - 1 }).map((b) => BigInt(b * 4096)) },
  fc.constantFrom(BigInt(EXPORT), BigInt(EXPORT - 512), BigInt(EXPORT - 1), 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 4096n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const lengthArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 32 }).map((k) => k * 512) },
  fc.constantFrom(0, 1, 511, 4097, 32 * 1024 * 1024, 32 * 1024 * 1024 + 1, 64 * 1024 * 1024 + 1, 0xffff_ffff),
  u32,
);

/** a valid request (in range, aligned, known type and flags), then at most one field off */
const requestArb = fc
  .record({
    type: fc.constantFrom(Cmd.READ, Cmd.READ, Cmd.WRITE, Cmd.WRITE, Cmd.FLUSH, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.CACHE, Cmd.BLOCK_STATUS),
    fua: fc.boolean(),
    cookie: u32,
    block: fc.integer({ min: 0, max: EXPORT / 4096 - 16 }),
    blocks: fc.integer({ min: 0, max: 16 }),
    mutate: fc.oneof(
      { weight: 6, arbitrary: fc.constant<{ field: "none" }>({ field: "none" }) },
      fc.record({ field: fc.constant<"type">("type"), v: u16 }),
      fc.record({ field: fc.constant<"flags">("flags"), v: fc.oneof(fc.subarray(Object.values(CmdFlag)).map((fs) => fs.reduce((a, b) => a | b, 0)), u16) }),
      fc.record({ field: fc.constant<"offset">("offset"), v: offsetArb }),
      fc.record({ field: fc.constant<"length">("length"), v: lengthArb }),
      fc.record({ field: fc.constant<"magic">("magic"), v: u32 }),
      fc.record({ field: fc.constant<"truncate">("truncate"), v: fc.double({ min: 0, max: 1, noNaN: true }) }),
    ),
  })
  .map((r) => {
    const m = r.mutate;
    const type = m.field === "type" ? m.v : r.type;
    const flags = m.field === "flags" ? m.v : r.fua ? CmdFlag.FUA : 0;
    const offset = m.field === "offset" ? m.v : BigInt(r.block * 4096);
    const length = m.field === "length" ? m.v : r.type === Cmd.FLUSH ? 0 : r.blocks * 4096;
    const h = encodeRequest({ type, flags, cookieHi: 0, cookieLo: r.cookie, offsetBytes: offset, lengthBytes: length });
    if (m.field === "magic") h.writeUInt32BE(m.v >>> 0, 0);
    const carries = type === Cmd.WRITE || (flags & CmdFlag.PAYLOAD_LEN) !== 0;
    const n = carries ? Math.min(length, 128 * 1024) : 0;
    const whole = n > 0 ? concat([h, new Uint8Array(n).fill(r.cookie & 0xff)]) : new Uint8Array(h);
    const complete = m.field !== "truncate" && n === (carries ? length : 0);
    return { bytes: m.field === "truncate" ? whole.subarray(0, Math.floor(whole.byteLength * m.v)) : whole, complete };
  });

const clientFlagsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES, ClientFlag.C_FIXED_NEWSTYLE) },
  u32,
);

/** A whole session: flags, options, an optional GO/EXPORT_NAME into the fzplay export, requests. */
const grammarCase = fc
  .record({
    flags: clientFlagsArb,
    options: fc.array(optionArb, { maxLength: 4 }),
    enter: fc.constantFrom("go", "go", "go", "export_name", "none"),
    requests: fc.array(requestArb, { maxLength: 6 }),
    tail: fc.oneof({ weight: 4, arbitrary: fc.constant(new Uint8Array(0)) }, fc.uint8Array({ maxLength: 64 })),
  })
  .map(({ flags, options, enter, requests, tail }) => {
    const parts: Uint8Array[] = [encodeClientFlags(flags), ...options.map((o) => option(o.opt, o.data, o.delta))];
    if (enter === "go") parts.push(option(Opt.GO, encodeInfoRequest({ name: PLAY, infoRequests: [Info.BLOCK_SIZE] })));
    if (enter === "export_name") parts.push(option(Opt.EXPORT_NAME, new TextEncoder().encode(PLAY)));
    if (enter !== "none") parts.push(...requests.map((r) => r.bytes));
    parts.push(tail);
    return { note: `grammar: ${options.length} options, ${enter}, ${requests.length} requests`, bytes: concat(parts), probe: false };
  });

/** A valid prefix (flags, maybe GO), then random bytes. */
const randomCase = fc
  .record({ go: fc.boolean(), junk: fc.uint8Array({ minLength: 1, maxLength: 512 }) })
  .map(({ go, junk }) => {
    const prefix = go ? [encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES), option(Opt.GO, encodeInfoRequest({ name: PLAY, infoRequests: [] }))] : [];
    return { note: `random: ${go ? "after GO, " : ""}${junk.byteLength} bytes`, bytes: concat([...prefix, junk]), probe: false };
  });

/** SET_META_CONTEXT data: export name and queries */
function metaContext(name: string, queries: string[]): Uint8Array {
  const n = Buffer.from(name);
  const qs = queries.map((q) => Buffer.from(q));
  const b = Buffer.alloc(8 + n.length + qs.reduce((x, q) => x + 4 + q.length, 0));
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  let at = 4 + n.length;
  b.writeUInt32BE(qs.length, at);
  at += 4;
  for (const q of qs) {
    b.writeUInt32BE(q.length, at);
    q.copy(b, at + 4);
    at += 4 + q.length;
  }
  return new Uint8Array(b);
}

/** Transmission phase only: a valid handshake (simple replies, or structured ones with base:allocation), then requests one field off. */
const transmissionCase = fc.record({ structured: fc.boolean(), reqs: fc.array(requestArb, { minLength: 1, maxLength: 12 }) }).map(({ structured, reqs }) => ({
  note: `transmission${structured ? " (structured replies)" : ""}: ${reqs.length} requests`,
  bytes: concat([
    encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES),
    ...(structured ? [option(Opt.STRUCTURED_REPLY, new Uint8Array(0)), option(Opt.SET_META_CONTEXT, metaContext(PLAY, ["base:allocation"]))] : []),
    option(Opt.GO, encodeInfoRequest({ name: PLAY, infoRequests: [] })),
    ...reqs.map((r) => r.bytes),
  ]),
  probe: reqs.every((r) => r.complete),
}));

/** More pipelined READs than the server keeps in flight (Limits.nbdMaxInFlightPerConn): it must pause reading and resume, answering all. */
const floodCase = fc
  .record({ count: fc.integer({ min: 130, max: 400 }), sectors: fc.integer({ min: 1, max: 8 }) })
  .map(({ count, sectors }) => ({
    note: `flood: ${count} pipelined READs of ${sectors * 512} bytes`,
    bytes: concat([
      encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES),
      option(Opt.GO, encodeInfoRequest({ name: PLAY, infoRequests: [] })),
      ...Array.from({ length: count }, (_, i) => encodeRequest({ type: Cmd.READ, flags: 0, cookieHi: 0, cookieLo: i, offsetBytes: i * 4096, lengthBytes: sectors * 512 })),
    ]),
    probe: true,
  }));

export const nbdCaseArb: fc.Arbitrary<NbdCase> = fc
  .record({
    body: fc.oneof({ weight: 30, arbitrary: grammarCase }, { weight: 30, arbitrary: transmissionCase }, { weight: 20, arbitrary: randomCase }, { weight: 1, arbitrary: floodCase }),
    cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }),
    pauseMs: fc.constantFrom(0, 0, 1),
  })
  .map(({ body, cuts, pauseMs }) => ({ note: body.note, bytes: body.bytes, probe: body.probe, cuts, pauseMs }));

/** probes sent, answered, and ended by the server closing instead (a bad request before it) */
export const probeStats = { sent: 0, answered: 0, closed: 0 };

/** the probe READ (cookie PROBE_HI/PROBE_LO; the generators' cookies have a zero high half) */
const PROBE_HI = 0xf022f022;
const PROBE_LO = 0x0badc0de;
const PROBE = encodeRequest({ type: Cmd.READ, flags: 0, cookieHi: PROBE_HI, cookieLo: PROBE_LO, offsetBytes: 0, lengthBytes: 4096 });

/** The simple reply to the probe somewhere in the bytes received (magic, errno, cookie). */
function probeAnswered(rx: Buffer): boolean {
  for (let at = rx.indexOf(PROBE_COOKIE); at >= 8; at = rx.indexOf(PROBE_COOKIE, at + 1)) {
    // a simple reply (magic, errno, cookie) or a structured chunk (magic, flags, type, cookie)
    const magic = rx.readUInt32BE(at - 8);
    if (magic === NBD_SIMPLE_REPLY_MAGIC || magic === NBD_STRUCTURED_REPLY_MAGIC) return true;
  }
  return false;
}
const PROBE_COOKIE = Buffer.from(PROBE.subarray(8, 16));

export const REQUEST_HEADER_BYTES = REQUEST_BYTES;

export function nbdTarget(env: FuzzEnv, o: { closeWithinMs?: number } = {}): Target<NbdCase> {
  return {
    name: "nbd",
    arb: nbdCaseArb,
    toJson: (c) => ({ note: c.note, hex: hex(c.bytes), probe: c.probe, cuts: c.cuts, pauseMs: c.pauseMs }),
    async exec(c) {
      const conn = await RawConn.open(env.nbdPort);
      const rx: Buffer[] = [];
      conn.onData((d) => void rx.push(Buffer.from(d)));
      const ms = (o.closeWithinMs ?? 5000) * (c.note.startsWith("flood") ? 3 : 1);
      if (c.probe) {
        for (const p of splitAt(c.bytes, c.cuts)) {
          conn.write(p);
          if (c.pauseMs > 0) await Bun.sleep(c.pauseMs);
        }
        conn.write(PROBE);
        probeStats.sent++;
        const end = performance.now() + ms;
        while (!conn.isClosed && !probeAnswered(Buffer.concat(rx))) {
          if (performance.now() > end) {
            conn.terminate();
            return `hang: no reply to a valid READ sent after the case's requests within ${ms} ms (connection still open)`;
          }
          await Bun.sleep(2);
        }
        if (conn.isClosed) probeStats.closed++;
        else probeStats.answered++;
      }
      return sendPiecesAndEnd(conn, c.probe ? [] : splitAt(c.bytes, c.cuts), { pauseMs: c.pauseMs, quietMs: 15, closeWithinMs: ms });
    },
  };
}

export function nbdCaseFromJson(j: { note: string; hex: string; probe?: boolean; cuts: number[]; pauseMs: number }): NbdCase {
  return { note: j.note, bytes: unhex(j.hex), probe: j.probe ?? false, cuts: j.cuts, pauseMs: j.pauseMs };
}
