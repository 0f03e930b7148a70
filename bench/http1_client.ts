// A minimal HTTP/1.1 client over Bun.connect (TLS) for bench/mdm_scale.ts: each simulated node
// holds its own small pool of kept-alive connections, as a real node (one process, its own fetch
// pool) does, instead of sharing the simulator's one fetch pool that keeps few idle sockets and so
// made the MDM pay a TLS handshake for most requests. One request at a time per connection (no
// pipelining): a request takes an idle connection of its pool or opens one; its answer (status +
// Content-Length or chunked body) puts the connection back. Opened connections are counted.
import type { Socket } from "bun";

export interface Http1Answer {
  status: number;
  text: string;
}

/** Counters shared by every pool of one client. */
export interface Http1Counters {
  /** TLS connections opened (each a handshake the server paid for) */
  opened: number;
  /** requests that went on a connection already used before */
  reused: number;
  /** requests retried on a new connection after a kept-alive one closed under them */
  retried: number;
}

const CRLF2 = Buffer.from("\r\n\r\n");
const OPEN_TIMEOUT_MS = 20_000;
/** longer than a map watch is held (Limits.mapWatchMaxMs) and than Bun.serve's 10 s idle timeout */
const ANSWER_TIMEOUT_MS = 30_000;

class Http1Conn {
  private sock: Socket<undefined> | null = null;
  private chunks: Buffer[] = [];
  /** bytes the answer being read needs in all (head + body), once its head told; 0: not known */
  private need = 0;
  private have = 0;
  private pending: { resolve: (a: Http1Answer) => void; reject: (e: Error) => void; gotBytes: boolean } | null = null;
  private out: Buffer | null = null;
  closed = false;
  keepAlive = true;
  used = 0;
  onIdleClose: (() => void) | null = null;
  onOpenFailed: ((e: Error) => void) | null = null;
  raw: Socket<undefined> | null = null;
  private answerTimer: ReturnType<typeof setTimeout> | undefined;

  static open(host: string, port: number, ca: string): Promise<Http1Conn> {
    const c = new Http1Conn();
    return new Promise((resolveOpen, rejectOpen) => {
      // settled once: a connection closed (or never handshaken) before it opened fails its request
      let settled = false;
      const resolve = (x: Http1Conn) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolveOpen(x);
      };
      const reject = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        rejectOpen(Object.assign(e, { code: "ECONNRESET" }));
      };
      const timer = setTimeout(() => {
        reject(new Error(`no TLS connection to ${host}:${port} within ${OPEN_TIMEOUT_MS} ms`));
        c.close();
      }, OPEN_TIMEOUT_MS);
      c.onOpenFailed = reject;
      void Bun.connect<undefined>({
        hostname: host,
        port,
        tls: { ca },
        socket: {
          open: (s) => {
            s.setNoDelay(true);
            c.raw = s;
          },
          handshake: (s, ok, err) => {
            if (!ok || err) {
              reject(new Error(`TLS handshake with ${host}:${port} failed: ${err?.message ?? "refused"}`));
              s.end();
              return;
            }
            c.sock = s;
            c.onOpenFailed = null;
            resolve(c);
          },
          data: (_s, data) => c.onData(data),
          drain: (s) => c.flush(s),
          // the server's FIN (Bun.serve's idle timeout): a half-open socket would take a request and never answer
          end: (s) => {
            c.onClose();
            s.end();
          },
          close: () => c.onClose(),
          error: (_s, e) => {
            if (c.sock === null) reject(e);
            c.onClose(e);
          },
          connectError: (_s, e) => reject(e),
        },
      }).catch(reject);
    });
  }

  request(head: string, body: string | undefined): Promise<Http1Answer> {
    if (this.closed || this.sock === null) return Promise.reject(Object.assign(new Error("connection closed"), { code: "ECONNRESET" }));
    this.used++;
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, gotBytes: false };
      // an answer that never comes (the server dropped the request) fails it, as fetch's would
      this.answerTimer = setTimeout(() => {
        const p = this.pending;
        this.pending = null;
        this.close();
        p?.reject(Object.assign(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`), { code: "ETIMEDOUT", gotBytes: true }));
      }, ANSWER_TIMEOUT_MS);
      this.out = body === undefined ? Buffer.from(head) : Buffer.concat([Buffer.from(head), Buffer.from(body)]);
      this.flush(this.sock!);
    });
  }

  private flush(s: Socket<undefined>): void {
    if (this.out === null) return;
    const n = s.write(this.out);
    this.out = n >= this.out.length ? null : this.out.subarray(Math.max(0, n));
  }

  private onData(data: Buffer): void {
    if (this.pending === null) return; // nothing asked: ignore
    this.pending.gotBytes = true;
    this.chunks.push(data);
    this.have += data.length;
    // a Content-Length answer whose head was read: wait until all of it is here (joining the
    // chunks at every arrival made a 136 MiB answer quadratic: > 30 s of copying, the GET of all
    // volumes timed out and the simulator's core was not the MDM's)
    if (this.need > 0 && this.have < this.need) return;
    this.tryParse();
  }

  // parsed on each arrival until the head is read; then, with a Content-Length, once it is all here
  private tryParse(): void {
    this.need = 0;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.have);
    this.chunks = [buf];
    const end = buf.indexOf(CRLF2);
    if (end < 0) return;
    const head = buf.subarray(0, end).toString("latin1");
    const lines = head.split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    let length = -1;
    let chunked = false;
    this.keepAlive = true;
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      const colon = l.indexOf(":");
      const name = l.slice(0, colon).toLowerCase();
      const value = l.slice(colon + 1).trim();
      if (name === "content-length") length = Number(value);
      else if (name === "transfer-encoding") chunked = value.toLowerCase().includes("chunked");
      else if (name === "connection") this.keepAlive = value.toLowerCase() !== "close";
    }
    const start = end + 4;
    let text: string;
    let used: number;
    if (chunked) {
      const parts: Buffer[] = [];
      let at = start;
      for (;;) {
        const lineEnd = buf.indexOf("\r\n", at);
        if (lineEnd < 0) return;
        const size = parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
        if (buf.length < lineEnd + 2 + size + 2) return;
        if (size === 0) {
          // no trailers expected from Bun.serve
          used = lineEnd + 4;
          break;
        }
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
      text = Buffer.concat(parts).toString("utf8");
    } else {
      if (length < 0) length = 0;
      if (buf.length < start + length) {
        this.need = start + length;
        return;
      }
      text = buf.subarray(start, start + length).toString("utf8");
      used = start + length;
    }
    const rest = buf.subarray(used);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have = rest.length;
    const p = this.pending!;
    this.pending = null;
    clearTimeout(this.answerTimer);
    if (!this.keepAlive) this.close();
    p.resolve({ status, text });
  }

  private onClose(e?: Error): void {
    this.onOpenFailed?.(e ?? new Error("connection closed during the TLS handshake"));
    this.onOpenFailed = null;
    if (this.closed && this.pending === null) return;
    this.closed = true;
    clearTimeout(this.answerTimer);
    const p = this.pending;
    this.pending = null;
    if (p !== null) p.reject(Object.assign(e ?? new Error("connection closed before the answer"), { code: "ECONNRESET", gotBytes: p.gotBytes }));
    else this.onIdleClose?.();
  }

  close(): void {
    this.closed = true;
    (this.sock ?? this.raw)?.end();
  }
}

/** The kept-alive connections of one simulated node (or of the admin client). */
export class Http1Pool {
  private idle: Http1Conn[] = [];
  constructor(
    private readonly client: Http1Client,
    private readonly maxIdle = 4,
  ) {}

  async request(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Http1Answer> {
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.client.hostHeader}\r\n`;
    for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
    head += body === undefined ? "\r\n" : `content-length: ${Buffer.byteLength(body)}\r\n\r\n`;
    for (let attempt = 1; ; attempt++) {
      const conn = this.take();
      const c = conn ?? (await this.client.open());
      if (conn !== null) this.client.counters.reused++;
      try {
        const a = await c.request(head, body);
        this.give(c);
        return a;
      } catch (e) {
        // a kept-alive connection the server closed as idle (it had not answered a byte): once more on a new one
        const reused = conn !== null;
        if (attempt > 1 || !reused || (e as { gotBytes?: boolean }).gotBytes) throw e;
        this.client.counters.retried++;
      }
    }
  }

  private take(): Http1Conn | null {
    for (;;) {
      const c = this.idle.pop();
      if (c === undefined) return null;
      if (!c.closed) {
        c.onIdleClose = null;
        return c;
      }
    }
  }

  private give(c: Http1Conn): void {
    if (c.closed) return;
    if (this.idle.length >= this.maxIdle) {
      c.close();
      return;
    }
    c.onIdleClose = () => {
      const i = this.idle.indexOf(c);
      if (i >= 0) this.idle.splice(i, 1);
    };
    this.idle.push(c);
  }

  close(): void {
    for (const c of this.idle) c.close();
    this.idle = [];
  }
}

export class Http1Client {
  readonly counters: Http1Counters = { opened: 0, reused: 0, retried: 0 };
  readonly hostHeader: string;
  constructor(
    readonly host: string,
    readonly port: number,
    private readonly ca: string,
  ) {
    this.hostHeader = `${host}:${port}`;
  }
  open(): Promise<Http1Conn> {
    this.counters.opened++;
    return Http1Conn.open(this.host, this.port, this.ca);
  }
  pool(maxIdle?: number): Http1Pool {
    return new Http1Pool(this, maxIdle);
  }
}
