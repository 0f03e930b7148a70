// The fuzz runner shared by bench/fuzz.ts (100k cases a target) and the test suite (a few
// thousand): cases are drawn from a fast-check arbitrary with a seed (batch b of 1000 cases is
// fc.sample(arb, { seed: batchSeed(seed, b) }), so (seed, case number) replays one case), run a few at a
// time, each bounded in time, with the cluster's liveness checked every so often and at the end.
// Also RawConn: one hostile TCP connection that writes its bytes in pieces (splits across
// packets), then half-closes and requires the server to close within a deadline (a hang is a
// server that does not).

import type { Socket } from "bun";
import fc from "fast-check";

export interface Finding {
  target: string;
  kind: "crash" | "hang" | "internal" | "corruption";
  caseNo: number;
  detail: string;
  /** the case, as JSON for the corpus (test/fuzz_corpus/) */
  input: unknown;
}

export interface Target<C> {
  name: string;
  arb: fc.Arbitrary<C>;
  /** run one case; "" = passed, else what went wrong (kind first: "hang: …", "internal: …") */
  exec(c: C): Promise<string>;
  /** the case as JSON (corpus) */
  toJson(c: C): unknown;
}

export interface RunOptions {
  cases: number;
  seed: number;
  concurrency: number;
  /** full liveness check every this many cases ("" = alive) */
  livenessEvery: number;
  liveness: (probe: number) => Promise<string>;
  /** cheap check after every case: dead roles ("" = all alive) */
  quickCheck?: () => string;
  /** progress line every this many cases (0 = none) */
  progressEvery?: number;
  log?: (line: string) => void;
  /** stop after this many findings */
  maxFindings?: number;
}

export interface RunStats {
  target: string;
  cases: number;
  seed: number;
  durationMs: number;
  maxCaseMs: number;
  /** the slowest case, as JSON */
  slowest: unknown;
  findings: Finding[];
  livenessChecks: number;
}

const BATCH = 1000;

/** fast-check seed of batch b: mixed, so that runs with nearby seeds share no batch (seed + b did) */
export function batchSeed(seed: number, b: number): number {
  let x = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 1, 0xc2b2ae35);
  x ^= x >>> 16;
  x = Math.imul(x, 0x27d4eb2d);
  return (x ^ (x >>> 15)) | 0;
}

export function caseAt<C>(arb: fc.Arbitrary<C>, seed: number, caseNo: number): C {
  return fc.sample(arb, { numRuns: BATCH, seed: batchSeed(seed, Math.floor(caseNo / BATCH)) })[caseNo % BATCH]!;
}

export async function runTarget<C>(t: Target<C>, o: RunOptions): Promise<RunStats> {
  const findings: Finding[] = [];
  const t0 = performance.now();
  let maxCaseMs = 0;
  let slowest: unknown = null;
  let livenessChecks = 0;
  let next = 0;
  let done = 0;
  let batchNo = -1;
  let batch: C[] = [];
  const maxFindings = o.maxFindings ?? 20;
  const take = (): { no: number; c: C } | null => {
    if (next >= o.cases || findings.length >= maxFindings) return null;
    const no = next++;
    const b = Math.floor(no / BATCH);
    if (b !== batchNo) {
      batch = fc.sample(t.arb, { numRuns: BATCH, seed: batchSeed(o.seed, b) });
      batchNo = b;
    }
    return { no, c: batch[no % BATCH]! };
  };
  const record = (no: number, c: C | null, msg: string) => {
    const kind = (msg.split(":")[0] ?? "") as Finding["kind"];
    findings.push({ target: t.name, kind: ["crash", "hang", "internal", "corruption"].includes(kind) ? kind : "internal", caseNo: no, detail: msg, input: c === null ? null : t.toJson(c) });
    o.log?.(`FINDING ${t.name} case ${no} (seed ${o.seed}): ${msg}`);
  };
  let checking: Promise<void> | null = null;
  const check = async (no: number, c: C | null): Promise<void> => {
    livenessChecks++;
    const l = await o.liveness(no);
    if (l !== "") record(no, c, l.startsWith("internal:") ? `internal: after case ${no}: ${l.slice("internal: ".length)}` : `crash: after case ${no}: ${l}`);
  };
  const worker = async () => {
    for (;;) {
      const item = take();
      if (!item) return;
      const s = performance.now();
      let msg: string;
      try {
        msg = await t.exec(item.c);
      } catch (e) {
        msg = `internal: the fuzz case itself threw: ${(e as Error).stack ?? String(e)}`;
      }
      const ms = performance.now() - s;
      if (ms > maxCaseMs) {
        maxCaseMs = ms;
        slowest = t.toJson(item.c);
      }
      if (msg !== "") record(item.no, item.c, msg);
      const dead = o.quickCheck?.() ?? "";
      if (dead !== "") {
        record(item.no, item.c, `crash: ${dead}`);
        return;
      }
      done++;
      if (o.progressEvery && done % o.progressEvery === 0) {
        o.log?.(`${t.name}: ${done}/${o.cases} cases, ${((performance.now() - t0) / 1000).toFixed(0)} s, ${findings.length} findings`);
      }
      if (done % o.livenessEvery === 0) {
        // one check at a time; the other workers keep going
        if (checking === null) checking = check(item.no, item.c).finally(() => (checking = null));
        await checking;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, () => worker()));
  await check(o.cases, null);
  return { target: t.name, cases: done, seed: o.seed, durationMs: performance.now() - t0, maxCaseMs, slowest, findings, livenessChecks };
}

/** What the servers answered over every RawConn of this process (a fuzzer that gets nothing back tests little). */
export const wireTotals = { conns: 0, connsAnswered: 0, bytesIn: 0, closedByServer: 0 };

/** One hostile TCP connection. */
export class RawConn {
  private sock: Socket<undefined> | null = null;
  private out: Uint8Array[] = [];
  private closedFlag = false;
  private onClosed: () => void = () => {};
  readonly closed: Promise<void>;
  bytesIn = 0;
  lastInAt = 0;
  private listeners: ((d: Uint8Array) => void)[] = [];

  private constructor() {
    this.closed = new Promise<void>((r) => (this.onClosed = r));
  }

  static async open(port: number, timeoutMs = 3000): Promise<RawConn> {
    const c = new RawConn();
    const sock = Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          if (c.bytesIn === 0) wireTotals.connsAnswered++;
          wireTotals.bytesIn += d.byteLength;
          c.bytesIn += d.byteLength;
          c.lastInAt = performance.now();
          for (const l of c.listeners) l(d);
        },
        drain: () => c.flush(),
        close: () => c.markClosed(),
        error: () => c.markClosed(),
        connectError: () => c.markClosed(),
      },
    });
    c.sock = await within(sock, timeoutMs, `connect to 127.0.0.1:${port}`);
    wireTotals.conns++;
    return c;
  }

  private markClosed(): void {
    this.closedFlag = true;
    this.onClosed();
  }
  get isClosed(): boolean {
    return this.closedFlag;
  }

  onData(l: (d: Uint8Array) => void): void {
    this.listeners.push(l);
  }

  write(b: Uint8Array): void {
    if (this.closedFlag || !this.sock) return;
    if (this.out.length > 0) {
      this.out.push(b);
      return;
    }
    const n = this.sock.write(b);
    if (n < b.byteLength) this.out.push(b.subarray(Math.max(0, n)));
  }

  private flush(): void {
    while (this.out.length > 0 && this.sock && !this.closedFlag) {
      const b = this.out[0]!;
      const n = this.sock.write(b);
      if (n < b.byteLength) {
        this.out[0] = b.subarray(Math.max(0, n));
        return;
      }
      this.out.shift();
    }
  }

  /** Bytes still waiting for the socket to drain. */
  get pendingOut(): number {
    return this.out.reduce((s, b) => s + b.byteLength, 0);
  }

  /** Wait until no byte came for quietMs (or the server closed), at most maxMs. */
  async quiet(quietMs: number, maxMs: number): Promise<void> {
    const start = performance.now();
    const from = Math.max(this.lastInAt, start);
    let last = from;
    while (!this.closedFlag && performance.now() - start < maxMs) {
      last = Math.max(last, this.lastInAt);
      if (performance.now() - last >= quietMs && this.out.length === 0) return;
      await Bun.sleep(Math.min(quietMs, 5));
    }
  }

  /**
   * Half-close (our side is done) and wait for the server to close: true if it did within
   * timeoutMs. A server that reads a FIN must end the connection (NBD and the data plane have
   * no use for a half-open peer).
   */
  async endAndWaitClose(timeoutMs: number): Promise<boolean> {
    if (this.closedFlag) {
      wireTotals.closedByServer++;
      return true;
    }
    // what we could not send yet would never be read: drop it, then FIN
    this.out = [];
    this.sock?.shutdown();
    const ok = await Promise.race([this.closed.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (!ok) this.sock?.terminate();
    return ok;
  }

  terminate(): void {
    this.sock?.terminate();
  }
}

export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** Split `b` at the given fractions (0..1) into pieces (a split across packets). */
export function splitAt(b: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((f) => Math.floor(f * b.byteLength)))].filter((p) => p > 0 && p < b.byteLength).sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of points) {
    out.push(b.subarray(at, p));
    at = p;
  }
  out.push(b.subarray(at));
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));

/**
 * Send pieces with a pause between them (so they travel as separate segments), wait for the
 * server to go quiet, then half-close and require its close. "" or "hang: …".
 */
export async function sendPiecesAndEnd(conn: RawConn, pieces: readonly Uint8Array[], o: { pauseMs: number; quietMs: number; closeWithinMs: number }): Promise<string> {
  for (const [i, p] of pieces.entries()) {
    if (conn.isClosed) break;
    conn.write(p);
    if (o.pauseMs > 0 && i < pieces.length - 1) await Bun.sleep(o.pauseMs);
  }
  await conn.quiet(o.quietMs, 2000);
  const ok = await conn.endAndWaitClose(o.closeWithinMs);
  return ok ? "" : `hang: the server did not close the connection within ${o.closeWithinMs} ms of our FIN`;
}
