// The NBD server under hand-made byte streams: malformed handshakes, junk frames, oversized and
// abusive requests, clients that vanish mid-request, DISC with requests in flight, out-of-order
// replies, the per-connection in-flight and buffered-bytes bounds, closeExport and stop. After each
// abuse a fresh client must still be served.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { Limits } from "../src/proto/limits.ts";
import {
  ChunkType,
  ClientFlag,
  Cmd,
  CmdFlag,
  Info,
  NbdDecodeError,
  NbdErrno,
  OPTION_REPLY_HEADER_BYTES,
  Opt,
  Rep,
  ReplyFlag,
  decodeErrorPayload,
  decodeGreeting,
  decodeOffsetDataPayload,
  decodeOptionReply,
  decodeReplyHeader,
  encodeClientFlags,
  encodeInfoRequest,
  encodeOptionRequest,
  encodeRequest,
  type ChunkHeader,
  type SimpleReply,
} from "../src/proto/nbd.ts";
import { startNbdServer, type NbdServer } from "../src/sdc/nbd_server.ts";
import type { NbdExport } from "../src/sdc/nbd_export.ts";
import { MemoryExport, MemoryRegistry } from "./helpers/nbd_memory_export.ts";

const MiB = 1024 * 1024;

/** A byte-level NBD client: sends exactly what the test says, reads exactly n bytes. */
class RawClient {
  private buf = Buffer.alloc(0);
  private notify: (() => void) | null = null;
  private outQueue: Buffer[] = [];
  closed = false;
  private constructor(private sock: Socket<undefined> | null) {}

  static async connect(port: number): Promise<RawClient> {
    const c = new RawClient(null);
    c.sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          c.buf = Buffer.concat([c.buf, d]);
          c.wake();
        },
        drain: () => c.pumpOut(),
        close: () => {
          c.closed = true;
          c.wake();
        },
        error: () => {
          c.closed = true;
          c.wake();
        },
      },
    });
    c.sock.setNoDelay(true);
    return c;
  }

  private wake(): void {
    const n = this.notify;
    this.notify = null;
    n?.();
  }

  /** queue bytes; partial socket writes are continued on drain */
  send(b: Uint8Array): void {
    this.outQueue.push(Buffer.from(b));
    this.pumpOut();
  }

  private pumpOut(): void {
    while (this.outQueue.length > 0 && this.sock && !this.closed) {
      const b = this.outQueue[0] as Buffer;
      const n = this.sock.write(b);
      if (n < 0) return;
      if (n < b.length) {
        this.outQueue[0] = b.subarray(n);
        return;
      }
      this.outQueue.shift();
    }
  }

  get unsentBytes(): number {
    return this.outQueue.reduce((s, b) => s + b.length, 0);
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.buf.length}/${n} bytes read`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        this.notify = resolve;
        setTimeout(resolve, left);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** true when the server closed the connection within the timeout */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.notify = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.closed;
  }

  get buffered(): number {
    return this.buf.length;
  }

  close(): void {
    this.sock?.terminate();
  }
}

async function readOptionReply(c: RawClient): Promise<{ option: number; replyType: number; data: Buffer }> {
  const h = await c.read(OPTION_REPLY_HEADER_BYTES);
  const len = h.readUInt32BE(16);
  const full = Buffer.concat([h, await c.read(len)]);
  const r = decodeOptionReply(full, 0);
  if (r instanceof NbdDecodeError) throw new Error(r.toString());
  return r;
}

/** Greeting + client flags; returns the client after the server's greeting was checked. */
async function handshakeStart(port: number, clientFlags = ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const g = decodeGreeting(await c.read(18));
  if (g instanceof NbdDecodeError) throw new Error(g.toString());
  expect(g.handshakeFlags).toBe(3);
  c.send(encodeClientFlags(clientFlags));
  return c;
}

/** Full fixed-newstyle handshake ending in GO; returns the client in the transmission phase. */
async function go(port: number, name: string, structured = true): Promise<RawClient> {
  const c = await handshakeStart(port);
  if (structured) {
    c.send(encodeOptionRequest(Opt.STRUCTURED_REPLY));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ACK);
  }
  c.send(encodeOptionRequest(Opt.GO, encodeInfoRequest({ name, infoRequests: [Info.BLOCK_SIZE] })));
  for (;;) {
    const r = await readOptionReply(c);
    if (r.replyType === Rep.ACK) return c;
    if (r.replyType !== Rep.INFO) throw new Error(`GO failed: reply type 0x${r.replyType.toString(16)} ${r.data.toString()}`);
  }
}

type Reply = (SimpleReply & { data?: Buffer }) | (ChunkHeader & { payload: Buffer });

async function readReply(c: RawClient, readLen = 0): Promise<Reply> {
  const first = await c.read(4);
  const magic = first.readUInt32BE(0);
  const rest = await c.read(magic === 0x67446698 ? 12 : 16);
  const h = decodeReplyHeader(Buffer.concat([first, rest]), 0);
  if (h instanceof NbdDecodeError) throw new Error(h.toString());
  if (h.kind === "simple") return h.errno === 0 && readLen > 0 ? { ...h, data: await c.read(readLen) } : h;
  return { ...h, payload: await c.read(h.payloadBytes) };
}

let cookie = 1;
function req(type: number, offsetBytes: number | bigint, lengthBytes: number, flags = 0, c = cookie++): Buffer {
  return encodeRequest({ flags, type, cookieHi: 0, cookieLo: c, offsetBytes, lengthBytes });
}

/** An export whose operations wait until the test releases them. */
class GatedExport implements NbdExport {
  readonly inner: MemoryExport;
  started = 0;
  private waiting: (() => void)[] = [];
  gated = true;
  constructor(
    readonly name: string,
    readonly sizeBytes: number,
  ) {
    this.inner = new MemoryExport(name, sizeBytes);
  }
  readonly readOnly = false;
  readonly multiConn = true;
  private async gate(): Promise<void> {
    this.started++;
    if (this.gated) await new Promise<void>((r) => this.waiting.push(r));
  }
  release(): void {
    this.gated = false;
    for (const w of this.waiting.splice(0)) w();
  }
  async read(o: number, n: number) {
    await this.gate();
    return this.inner.read(o, n);
  }
  async write(o: number, d: Uint8Array, f: boolean) {
    await this.gate();
    return this.inner.write(o, d, f);
  }
  async flush() {
    await this.gate();
  }
  async trim(o: number, n: number, f: boolean) {
    await this.gate();
    return this.inner.trim(o, n, f);
  }
  async writeZeroes(o: number, n: number, f: boolean) {
    await this.gate();
    return this.inner.writeZeroes(o, n, f);
  }
}

let server: NbdServer;
const vol = new MemoryExport("vol", 64 * MiB);
const other = new MemoryExport("other", 8 * MiB);
// reads at offset 0 take 150 ms: a later read overtakes them
const slow = new MemoryExport("slow", 8 * MiB, { delayMs: (op, off) => (op === "read" && off === 0 ? 150 : 0) });
const registry = new MemoryRegistry([vol, other, slow]);

/** A fresh client can still do a write and read it back. */
async function assertServing(): Promise<void> {
  const c = await go(server.port, "vol");
  const data = Buffer.alloc(4096, 0x42);
  c.send(Buffer.concat([req(Cmd.WRITE, 40 * MiB, 4096), data]));
  const w = await readReply(c);
  expect(w).toMatchObject({ kind: "simple", errno: 0 });
  c.send(req(Cmd.READ, 40 * MiB, 4096));
  const r = await readReply(c);
  if (r.kind !== "chunk") throw new Error("expected a structured reply");
  expect(r.chunkType).toBe(ChunkType.OFFSET_DATA);
  const p = decodeOffsetDataPayload(r.payload);
  if (p instanceof NbdDecodeError) throw new Error(p.toString());
  expect(p.data.equals(data)).toBe(true);
  c.close();
}

beforeAll(async () => {
  server = await startNbdServer({ host: "127.0.0.1", port: 0, registry });
});
afterAll(async () => {
  await server?.stop();
});

describe("handshake abuse closes only that connection", () => {
  test("unknown client flag bits", async () => {
    const c = await handshakeStart(server.port, 0x80);
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("bad option magic", async () => {
    const c = await handshakeStart(server.port);
    const bad = encodeOptionRequest(Opt.GO);
    bad.write("JUNKJUNK", 0);
    c.send(bad);
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("option length over the limit closes at once, without waiting for the data", async () => {
    const c = await handshakeStart(server.port);
    const h = encodeOptionRequest(Opt.GO);
    h.writeUInt32BE(Limits.nbdMaxOptionBytes + 1, 12);
    c.send(h);
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("random junk instead of a handshake", async () => {
    const c = await RawClient.connect(server.port);
    await c.read(18);
    c.send(crypto.getRandomValues(new Uint8Array(200)));
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("a client that drops during the handshake", async () => {
    const c = await handshakeStart(server.port);
    c.send(encodeOptionRequest(Opt.GO, encodeInfoRequest({ name: "vol", infoRequests: [] })).subarray(0, 10));
    c.close();
    await assertServing();
  });
});

describe("option negotiation", () => {
  test("unknown option with data: ERR_UNSUP, and the handshake goes on", async () => {
    const c = await handshakeStart(server.port);
    c.send(encodeOptionRequest(99, Buffer.alloc(1000, 1)));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ERR_UNSUP);
    for (const opt of [Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT, Opt.STARTTLS, Opt.EXTENDED_HEADERS]) {
      c.send(encodeOptionRequest(opt, Buffer.alloc(12)));
      expect((await readOptionReply(c)).replyType).toBe(Rep.ERR_UNSUP);
    }
    c.send(encodeOptionRequest(Opt.LIST, Buffer.alloc(3)));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ERR_INVALID);
    c.send(encodeOptionRequest(Opt.GO, Buffer.alloc(3)));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ERR_INVALID);
    c.send(encodeOptionRequest(Opt.LIST));
    const names: string[] = [];
    for (;;) {
      const r = await readOptionReply(c);
      if (r.replyType === Rep.ACK) break;
      expect(r.replyType).toBe(Rep.SERVER);
      names.push(r.data.subarray(4, 4 + r.data.readUInt32BE(0)).toString());
    }
    expect(names.sort()).toEqual(["other", "slow", "vol"]);
    c.send(encodeOptionRequest(Opt.GO, encodeInfoRequest({ name: "vol", infoRequests: [] })));
    const replies = [await readOptionReply(c), await readOptionReply(c), await readOptionReply(c)];
    expect(replies.map((r) => r.replyType)).toEqual([Rep.INFO, Rep.INFO, Rep.ACK]);
    // simple replies (no STRUCTURED_REPLY): a READ answers header + data
    c.send(req(Cmd.READ, 0, 512));
    const r = await readReply(c, 512);
    expect(r).toMatchObject({ kind: "simple", errno: 0 });
    c.close();
  });

  test("ABORT: ACK then close", async () => {
    const c = await handshakeStart(server.port);
    c.send(encodeOptionRequest(Opt.ABORT));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ACK);
    expect(await c.waitClosed()).toBe(true);
  });

  test("EXPORT_NAME: 134 bytes without C_NO_ZEROES, 10 with; unknown name closes", async () => {
    for (const [flags, bytes] of [
      [ClientFlag.C_FIXED_NEWSTYLE, 134],
      [ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES, 10],
      [0, 134],
    ] as const) {
      const c = await handshakeStart(server.port, flags);
      c.send(encodeOptionRequest(Opt.EXPORT_NAME, Buffer.from("other")));
      const a = await c.read(bytes);
      expect(a.readBigUInt64BE(0)).toBe(8n * BigInt(MiB));
      expect(a.readUInt16BE(8) & 0x80).toBe(0); // no SEND_DF without structured replies
      c.send(req(Cmd.READ, 0, 512));
      expect(await readReply(c, 512)).toMatchObject({ kind: "simple", errno: 0 });
      await Bun.sleep(20);
      expect(c.buffered).toBe(0); // nothing beyond the announced bytes: the stream is in sync
      c.close();
    }
    const u = await handshakeStart(server.port);
    u.send(encodeOptionRequest(Opt.EXPORT_NAME, Buffer.from("nope")));
    expect(await u.waitClosed()).toBe(true);
  });
});

describe("transmission phase", () => {
  test("cookies are echoed bit for bit; unknown command and flags get EINVAL", async () => {
    const c = await go(server.port, "vol");
    c.send(encodeRequest({ flags: 0, type: 42, cookieHi: 0xffffffff, cookieLo: 0xfffffffe, offsetBytes: 0, lengthBytes: 0 }));
    expect(await readReply(c)).toEqual({ kind: "simple", errno: NbdErrno.EINVAL, cookieHi: 0xffffffff, cookieLo: 0xfffffffe });
    c.send(encodeRequest({ flags: 0x4000, type: Cmd.FLUSH, cookieHi: 0x80000000, cookieLo: 1, offsetBytes: 0, lengthBytes: 0 }));
    expect(await readReply(c)).toEqual({ kind: "simple", errno: NbdErrno.EINVAL, cookieHi: 0x80000000, cookieLo: 1 });
    c.send(encodeRequest({ flags: CmdFlag.FUA, type: Cmd.FLUSH, cookieHi: 7, cookieLo: 8, offsetBytes: 0, lengthBytes: 0 }));
    expect(await readReply(c)).toEqual({ kind: "simple", errno: 0, cookieHi: 7, cookieLo: 8 });
    c.close();
  });

  test("structured READ errors are ERROR chunks; empty READ is a NONE chunk", async () => {
    const c = await go(server.port, "vol");
    c.send(req(Cmd.READ, 64 * MiB, 512));
    const e = await readReply(c);
    if (e.kind !== "chunk") throw new Error("expected a chunk");
    expect(e.replyFlags).toBe(ReplyFlag.DONE);
    expect(e.chunkType).toBe(ChunkType.ERROR);
    expect(decodeErrorPayload(e.payload)).toEqual({ errno: NbdErrno.EINVAL, message: "" });
    c.send(req(Cmd.READ, 2n ** 63n, 512));
    const huge = await readReply(c);
    expect(huge.kind === "chunk" && huge.chunkType).toBe(ChunkType.ERROR);
    c.send(req(Cmd.READ, 0, 0));
    const none = await readReply(c);
    expect(none).toMatchObject({ kind: "chunk", chunkType: ChunkType.NONE, replyFlags: ReplyFlag.DONE, payloadBytes: 0 });
    c.send(req(Cmd.WRITE, 0, 0));
    expect(await readReply(c)).toMatchObject({ kind: "simple", errno: 0 });
    c.close();
  });

  test("a WRITE over 32 MiB gets EINVAL after its payload is consumed; the stream stays in sync", async () => {
    const c = await go(server.port, "vol");
    const writesBefore = vol.counts.write;
    const n = Limits.nbdMaxRequestBytes + 4096;
    c.send(req(Cmd.WRITE, 0, n));
    c.send(Buffer.alloc(n, 0x99));
    c.send(req(Cmd.READ, 0, 512, 0, 777));
    const r1 = await readReply(c);
    expect(r1).toMatchObject({ kind: "simple", errno: NbdErrno.EINVAL });
    const r2 = await readReply(c);
    expect(r2).toMatchObject({ kind: "chunk", chunkType: ChunkType.OFFSET_DATA, cookieLo: 777 });
    expect(vol.counts.write).toBe(writesBefore);
    c.close();
  }, 30_000);

  test("an abusive WRITE length closes the connection", async () => {
    const c = await go(server.port, "vol");
    c.send(req(Cmd.WRITE, 0, Limits.nbdAbusiveRequestBytes + 1));
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("junk instead of a request header closes the connection", async () => {
    const c = await go(server.port, "vol");
    c.send(Buffer.alloc(28, 0x41));
    expect(await c.waitClosed()).toBe(true);
    await assertServing();
  });

  test("a client that drops mid-WRITE payload, and one that drops with requests in flight", async () => {
    const c = await go(server.port, "vol");
    c.send(req(Cmd.WRITE, 0, MiB));
    c.send(Buffer.alloc(100_000, 1));
    await Bun.sleep(20);
    c.close();
    const s = await go(server.port, "slow");
    s.send(req(Cmd.READ, 0, 4096));
    await Bun.sleep(10);
    s.close(); // the read completes after the socket is gone
    await Bun.sleep(200);
    await assertServing();
  });

  test("requests complete out of order: a fast READ overtakes a slow one", async () => {
    const c = await go(server.port, "slow");
    c.send(Buffer.concat([req(Cmd.READ, 0, 4096, 0, 1001), req(Cmd.READ, 4096, 4096, 0, 1002)]));
    const first = await readReply(c);
    const second = await readReply(c);
    expect([first.cookieLo, second.cookieLo]).toEqual([1002, 1001]);
    c.close();
  });

  test("a stream cut into random fragments parses the same", async () => {
    const c = await go(server.port, "vol");
    const parts: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      parts.push(req(Cmd.WRITE, 50 * MiB + i * 4096, 4096, 0, 5000 + i), Buffer.alloc(4096, i + 1));
    }
    for (let i = 0; i < 20; i++) parts.push(req(Cmd.READ, 50 * MiB + i * 4096, 4096, 0, 6000 + i));
    const all = Buffer.concat(parts);
    for (let off = 0; off < all.length; ) {
      const n = 1 + Math.floor(Math.random() * 3000);
      c.send(all.subarray(off, off + n));
      off += n;
      if (Math.random() < 0.3) await Bun.sleep(1);
    }
    const seen = new Map<number, Reply>();
    for (let i = 0; i < 40; i++) {
      const r = await readReply(c);
      seen.set(r.cookieLo, r);
    }
    for (let i = 0; i < 20; i++) {
      expect(seen.get(5000 + i)).toMatchObject({ kind: "simple", errno: 0 });
      const r = seen.get(6000 + i);
      if (!r || r.kind !== "chunk") throw new Error(`no chunk for read ${i}`);
      const p = decodeOffsetDataPayload(r.payload);
      if (p instanceof NbdDecodeError) throw new Error(p.toString());
      expect(p.data.equals(Buffer.alloc(4096, i + 1))).toBe(true);
    }
    c.close();
  });
});

describe("bounds, DISC and closing", () => {
  test("at most nbdMaxInFlightPerConn requests run at once; the rest wait and complete", async () => {
    const gated = new GatedExport("gated", 64 * MiB);
    registry.add(gated);
    const c = await go(server.port, "gated");
    const total = Limits.nbdMaxInFlightPerConn + 72;
    const reqs: Buffer[] = [];
    for (let i = 0; i < total; i++) reqs.push(req(Cmd.READ, i * 4096, 4096, 0, 10_000 + i));
    c.send(Buffer.concat(reqs));
    await Bun.sleep(200);
    expect(gated.started).toBe(Limits.nbdMaxInFlightPerConn);
    gated.release();
    const cookies = new Set<number>();
    for (let i = 0; i < total; i++) cookies.add((await readReply(c)).cookieLo);
    expect(cookies.size).toBe(total);
    c.close();
    registry.remove("gated");
  });

  test("reading pauses at nbdMaxBufferedBytesPerConn of held WRITE payloads", async () => {
    const gated = new GatedExport("gated2", 256 * MiB);
    registry.add(gated);
    const c = await go(server.port, "gated2");
    const writes = 120; // 120 MiB > 96 MiB bound, 120 < in-flight bound
    const payload = Buffer.alloc(MiB, 0x33);
    for (let i = 0; i < writes; i++) {
      c.send(req(Cmd.WRITE, i * MiB, MiB, 0, 20_000 + i));
      c.send(payload);
    }
    // wait until the server stops taking requests (it paused reading), however busy the machine
    const deadline = Date.now() + 20_000;
    for (let last = -1, stableSince = Date.now(); Date.now() < deadline; await Bun.sleep(50)) {
      if (gated.started !== last) {
        last = gated.started;
        stableSince = Date.now();
      } else if (Date.now() - stableSince > 500) break;
    }
    const bound = Limits.nbdMaxBufferedBytesPerConn / MiB;
    expect(gated.started).toBeGreaterThanOrEqual(bound - 2);
    expect(gated.started).toBeLessThanOrEqual(bound + 2);
    gated.release();
    for (let i = 0; i < writes; i++) expect(await readReply(c)).toMatchObject({ kind: "simple", errno: 0 });
    expect(gated.started).toBe(writes);
    expect(gated.inner.data.subarray(0, writes * MiB).every((b) => b === 0x33)).toBe(true);
    c.close();
    registry.remove("gated2");
  }, 60_000);

  test("DISC: in-flight requests are answered first, then the server closes", async () => {
    const gated = new GatedExport("gated3", 8 * MiB);
    registry.add(gated);
    const c = await go(server.port, "gated3");
    c.send(Buffer.concat([req(Cmd.READ, 0, 4096, 0, 31), req(Cmd.WRITE, 4096, 512, 0, 32), Buffer.alloc(512, 9), req(Cmd.DISC, 0, 0, 0, 33)]));
    await Bun.sleep(100);
    expect(c.closed).toBe(false);
    gated.release();
    const got = [await readReply(c), await readReply(c)].map((r) => r.cookieLo).sort();
    expect(got).toEqual([31, 32]);
    expect(await c.waitClosed()).toBe(true);
    registry.remove("gated3");
  });

  test("closeExport disconnects that export's sessions only", async () => {
    const a = await go(server.port, "other");
    const b = await go(server.port, "vol");
    server.closeExport("other");
    expect(await a.waitClosed()).toBe(true);
    b.send(req(Cmd.FLUSH, 0, 0));
    expect(await readReply(b)).toMatchObject({ kind: "simple", errno: 0 });
    b.close();
  });

  test("a client that never finishes the handshake is dropped after the handshake timeout", async () => {
    const s2 = await startNbdServer({ host: "127.0.0.1", port: 0, registry, handshakeTimeoutMs: 200 });
    const idle = await handshakeStart(s2.port);
    const served = await go(s2.port, "vol");
    expect(await idle.waitClosed(2000)).toBe(true);
    served.send(req(Cmd.FLUSH, 0, 0));
    expect(await readReply(served)).toMatchObject({ kind: "simple", errno: 0 }); // past the handshake: kept
    served.close();
    await s2.stop();
  });

  test("stop() closes every connection and the listener", async () => {
    const s2 = await startNbdServer({ host: "127.0.0.1", port: 0, registry });
    const c = await go(s2.port, "vol");
    await s2.stop();
    expect(await c.waitClosed()).toBe(true);
    await expect(RawClient.connect(s2.port).then((x) => x.read(18, 500))).rejects.toThrow();
  });
});
