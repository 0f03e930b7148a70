// A small pipelined NBD client for tests that need to know exactly when each write was issued
// and acknowledged (the snapshot cut test): fixed newstyle handshake with NBD_OPT_GO, simple
// replies only, many requests in flight, one promise per request. Not a product client.

import type { Socket } from "bun";
import { Cmd, ClientFlag, Info, Opt, Rep, SIMPLE_REPLY_BYTES, decodeOptionReply, encodeClientFlags, encodeInfoRequest, encodeOptionRequest, encodeRequest, NbdDecodeError, decodeReplyHeader, OPTION_REPLY_HEADER_BYTES } from "../../src/proto/nbd.ts";

interface Pending {
  readBytes: number;
  resolve: (data: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class NbdTestClient {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextCookie = 1;
  private closed = false;
  private transmission = false;
  private out: Buffer[] = [];
  sizeBytes = 0;

  private constructor(private sock: Socket<undefined> | null) {}

  static async connect(port: number, exportName: string): Promise<NbdTestClient> {
    const c = new NbdTestClient(null);
    c.sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          c.buf = c.buf.length === 0 ? Buffer.from(d) : Buffer.concat([c.buf, d]);
          if (c.transmission) c.pumpReplies();
          else c.wake();
        },
        drain: () => c.flushOut(),
        close: () => c.fail(new Error("NBD connection closed")),
        error: (_s, e) => c.fail(e),
      },
    });
    c.sock.setNoDelay(true);
    await c.handshake(exportName);
    return c;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private fail(e: Error): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.wake();
  }

  private async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error("NBD connection closed during handshake");
      await new Promise<void>((r) => (this.waiter = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private send(b: Buffer): void {
    this.out.push(b);
    this.flushOut();
  }

  private flushOut(): void {
    while (this.out.length > 0 && this.sock && !this.closed) {
      const b = this.out[0]!;
      const n = this.sock.write(b);
      if (n < b.length) {
        this.out[0] = b.subarray(Math.max(0, n));
        return;
      }
      this.out.shift();
    }
  }

  private async handshake(name: string): Promise<void> {
    await this.take(18); // NBDMAGIC, IHAVEOPT, handshake flags
    this.send(encodeClientFlags(ClientFlag.C_FIXED_NEWSTYLE | ClientFlag.C_NO_ZEROES));
    this.send(encodeOptionRequest(Opt.GO, encodeInfoRequest({ name, infoRequests: [Info.EXPORT] })));
    for (;;) {
      const head = await this.take(OPTION_REPLY_HEADER_BYTES);
      const len = head.readUInt32BE(16);
      const data = await this.take(len);
      const r = decodeOptionReply(Buffer.concat([head, data]), 0);
      if (r instanceof NbdDecodeError) throw new Error(`bad option reply: ${r.message}`);
      if (r.replyType === Rep.ACK) break;
      if (r.replyType === Rep.INFO && r.data.readUInt16BE(0) === Info.EXPORT) this.sizeBytes = Number(r.data.readBigUInt64BE(2));
      else if (r.replyType !== Rep.INFO) throw new Error(`NBD_OPT_GO refused for ${name}: reply type 0x${r.replyType.toString(16)}`);
    }
    this.transmission = true;
    this.pumpReplies();
  }

  private pumpReplies(): void {
    for (;;) {
      if (this.buf.length < SIMPLE_REPLY_BYTES) return;
      const h = decodeReplyHeader(this.buf, 0);
      if (h instanceof NbdDecodeError || h.kind !== "simple") {
        this.fail(new Error("unexpected NBD reply"));
        return;
      }
      const p = this.pending.get(h.cookieLo);
      const need = SIMPLE_REPLY_BYTES + (h.errno === 0 && p ? p.readBytes : 0);
      if (this.buf.length < need) return;
      const data = this.buf.subarray(SIMPLE_REPLY_BYTES, need);
      this.buf = this.buf.subarray(need);
      if (!p) continue;
      this.pending.delete(h.cookieLo);
      if (h.errno !== 0) p.reject(new Error(`NBD error ${h.errno}`));
      else p.resolve(new Uint8Array(data));
    }
  }

  private request(type: number, offsetBytes: number, lengthBytes: number, payload?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error("NBD connection closed"));
    const cookie = this.nextCookie++;
    const p = new Promise<Uint8Array>((resolve, reject) => this.pending.set(cookie, { readBytes: type === Cmd.READ ? lengthBytes : 0, resolve, reject }));
    const head = encodeRequest({ flags: 0, type, cookieHi: 0, cookieLo: cookie, offsetBytes, lengthBytes });
    this.send(payload ? Buffer.concat([head, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)]) : head);
    return p;
  }

  write(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.request(Cmd.WRITE, offsetBytes, data.byteLength, data).then(() => undefined);
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.request(Cmd.READ, offsetBytes, lengthBytes);
  }

  flush(): Promise<void> {
    return this.request(Cmd.FLUSH, 0, 0).then(() => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.send(encodeRequest({ flags: 0, type: Cmd.DISC, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: 0 }));
    this.closed = true;
    this.sock?.end();
  }
}
