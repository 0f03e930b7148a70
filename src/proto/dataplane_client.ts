// Client side of the pf data plane: one pipelined TCP connection to one SDS (DataPlaneClient)
// and a pool of them keyed by SDS id (DataPlanePool). Used by the SDC's IO router and by an
// SDS forwarding writes to its peers.
//
// Invariants:
// - every connection starts with the challenge/response handshake (dataplane_auth.ts): HELLO,
//   the SDS's CHALLENGE, AUTH with this node's proof, the SDS's proof checked in constant time
//   (and the SDS id it names checked against the one this client meant to reach); requests
//   issued before that wait in the local queue in order, so one client preserves request order
//   on the wire (the SDS relies on this for replication order); a refused or failed handshake
//   fails them with the SDS's status (UNAUTHORIZED for a bad proof);
// - with a grant source (an SDC), the first IO for a volume on a connection is preceded by a
//   GRANT frame for it (once per connection and volume, not per IO); an answer saying the grant
//   is missing, expired or revoked makes the next IO for that volume present it again;
// - every request gets exactly one reply callback: the SDS's reply, or UNAVAILABLE when the
//   connection fails, closes, or the request outlives Limits.dataRequestTimeoutMs (the
//   connection is then dropped, because the SDS may still apply it; checked by a sweep that
//   watches the oldest request, so one is caught between the timeout and the timeout plus two
//   sweep intervals, and a request costs no clock read nor record of its own);
// - at most `maxInFlight` requests are on the wire; more wait in a local queue (in order);
// - after a failed connect, requests fail fast with UNAVAILABLE for a short backoff instead of
//   piling up behind a dead address;
// - with data-plane TLS (opts.tls), the connection is TLS from its first byte and not one frame
//   (not even HELLO) is written before pf verified the SDS's certificate: signed by the cluster's
//   data-plane CA, valid now, naming the SDS this client means to reach (dataplane_tls.ts); a
//   refused certificate fails the requests with UNAUTHORIZED. There is no plaintext fallback, and
//   the handshake's proofs are bound to the TLS session (its exporter, dataplane_auth.ts).
// - on a plaintext data plane, an SDS on this host is reached over its Unix socket when one is
//   there (dataplane_local.ts): same handshake and frames; if that connection fails before it
//   opens (refused, closed, a handshake that does not check out), the client connects over TCP
//   at once with the same queued requests, and its connects use TCP for
//   Limits.dataLocalSocketRetryMs (an SDS that restarts is found on its socket again after that).

import { consola } from "consola";
import type { Socket, SocketHandler } from "bun";
import { Flag, FrameError, FrameReader, Op, Status, statusName, type Frame, type FrameHeader } from "./dataplane.ts";
import {
  Binding,
  DP_AUTH_VERSION,
  UNBOUND,
  clientProof,
  decodeChallenge,
  encodeAuth,
  encodeHelloAuth,
  newNonce,
  proofsEqual,
  serverProof,
  transcriptHash,
  NodeRole,
  type ChannelBinding,
  type ClientCredentials,
} from "./dataplane_auth.ts";
import { checkTlsPeer, clientTlsOptions, helloBindingOf, type DataPlaneTlsMaterial } from "./dataplane_tls.ts";
import { encodeGrantPresentation, type GrantSource } from "./grant.ts";
import { halvesToId, idToHalves } from "./ids.ts";
import { existingLocalSocket } from "./dataplane_local.ts";
import { Limits } from "./limits.ts";
import { SocketWriter } from "./socket_writer.ts";
import { Scatter, type Bytes } from "./scatter.ts";

/** The fields of a request the caller chooses (requestId and payloadLength are the client's). */
export interface DataRequest {
  opcode: Op;
  flags: number;
  epoch: number;
  volumeHi: number;
  volumeLo: number;
  extentIndex: number;
  offset: number;
  length: number;
  gen?: number;
}

export interface DataReply {
  status: Status;
  /** reply payload (READ data, CHECKSUM bytes); a view the caller may keep */
  payload: Uint8Array;
  /** the reply's Flag.* bits (Flag.DURABLE: see dataplane.ts); 0 when the request never reached an SDS */
  flags?: number;
}

/** `flags`: the reply header's Flag.* bits (undefined when no reply came: the link failed). */
export type ReplyCallback = (status: Status, payload: Uint8Array, flags?: number) => void;

/** Anything that carries data-plane requests to one SDS (a client or a pooled set of them). */
export interface DataPlaneLink {
  request(h: DataRequest, payload?: Uint8Array): Promise<DataReply>;
  /**
   * Callback form (no promise per IO). `h` is read before send returns (the caller may reuse
   * it). `payloadImmutable`: the caller never writes into `payload` again, so a large payload
   * the socket cannot take at once is queued as a view instead of a copy.
   */
  send(h: DataRequest, payload: Bytes | undefined, cb: ReplyCallback, payloadImmutable?: boolean): void;
}

export interface DataPlaneClientOptions {
  host: string;
  port: number;
  /** who this node is and its keys (the handshake proves it holds them) */
  credentials: ClientCredentials;
  /** id of the SDS this client means to reach: a CHALLENGE naming another is refused */
  expectSdsId?: string;
  /** the mapping grants to present (an SDC); none: this client sends no GRANT frames */
  grants?: GrantSource;
  /** connect and handshake must finish within this */
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxInFlight?: number;
  /** how long requests fail fast after a failed connect */
  reconnectBackoffMs?: number;
  /** after the same-host Unix socket failed, connect over TCP this long (Limits.dataLocalSocketRetryMs) */
  localSocketRetryMs?: number;
  /** the connection failed or could not be made (an SDS uses it to heartbeat sooner: a peer may be gone) */
  onDown?: () => void;
  /** data-plane TLS: this node's certificate and the cluster CA (needs expectSdsId) */
  tls?: () => DataPlaneTlsMaterial | null;
}

interface Queued {
  h: DataRequest;
  payload: Bytes | undefined;
  cb: ReplyCallback;
}

const EMPTY = new Uint8Array(0);
const HELLO_REQUEST_ID = 0;
const DEFAULT_BACKOFF_MS = 200;
const SWEEP_INTERVAL_MS = 500;
const GRANT_WARN_INTERVAL_MS = 5000;

/** Opcodes an SDC's connection runs under a mapping grant (indexed by opcode: no allocation). */
const NEEDS_GRANT: readonly number[] = (() => {
  const t = new Array<number>(32).fill(0);
  for (const op of [Op.READ, Op.WRITE, Op.TRIM, Op.WRITE_ZEROES, Op.CHECKSUM]) t[op] = 1;
  return t;
})();

type State = "idle" | "connecting" | "handshake" | "open" | "closed";

/** Handshake in progress on the current connection. */
interface Shake {
  hello: Uint8Array;
  /** what th is bound to: UNBOUND in plaintext, the TLS exporter once the SDS's certificate passed */
  channel: ChannelBinding;
  /** set once the CHALLENGE was answered */
  th: Uint8Array | null;
  key: Uint8Array | null;
}

export class DataPlaneClient implements DataPlaneLink {
  readonly host: string;
  readonly port: number;
  private readonly opts: DataPlaneClientOptions;
  private readonly requestTimeoutMs: number;
  private readonly maxInFlight: number;
  private state: State = "idle";
  private socket: Socket<undefined> | null = null;
  /** the connect-and-handshake timeout of the current attempt */
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  /** this connection attempt goes over the SDS's same-host Unix socket (dataplane_local.ts) */
  private viaLocal = false;
  /** the Unix socket failed this client: connects use TCP until then (performance.now() ms) */
  private localRetryAtMs = 0;
  private writer: SocketWriter | null = null;
  private reader = new FrameReader();
  /** requests on the wire by id, oldest first (Map order is insertion order) */
  private pending = new Map<number, ReplyCallback>();
  /** the sweep's watch: the oldest pending request id when it was first seen oldest, and when */
  private watchId = 0;
  private watchSinceMs = 0;
  private queue: Queued[] = [];
  private nextId = 1;
  private failFastUntilMs = 0;
  /** the current connection's handshake transcript hash (empty until authenticated) */
  private sessionHash: Uint8Array = EMPTY;
  /** volumes (low id half -> high half) whose grant was presented on the current connection */
  private readonly presented = new Map<number, number>();
  private grantWarnedMs = -Infinity;
  private readonly onGrantReply: ReplyCallback = (st) => {
    if (st === Status.OK) return;
    const now = performance.now();
    if (now - this.grantWarnedMs < GRANT_WARN_INTERVAL_MS) return;
    this.grantWarnedMs = now;
    consola.warn(`data plane ${this.host}:${this.port}: SDS refused a mapping grant (${statusName(st)}); further refusals muted ${GRANT_WARN_INTERVAL_MS / 1000}s`);
  };
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  /** bumped on every new connection so callbacks of an old socket are ignored */
  private connGen = 0;
  private shake: Shake | null = null;
  private readonly scratch: FrameHeader = {
    opcode: Op.PING,
    flags: 0,
    status: Status.OK,
    requestId: 0,
    epoch: 0,
    volumeHi: 0,
    volumeLo: 0,
    extentIndex: 0,
    offset: 0,
    length: 0,
    payloadLength: 0,
    gen: 0,
  };
  private readonly onFrame = (f: Frame) => this.handleFrame(f);

  constructor(opts: DataPlaneClientOptions) {
    this.opts = opts;
    this.host = opts.host;
    this.port = opts.port;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? Limits.dataRequestTimeoutMs;
    this.maxInFlight = opts.maxInFlight ?? Limits.dataMaxInFlightPerConn;
  }

  get inFlight(): number {
    return this.pending.size + this.queue.length;
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** How the current (or last) connection reaches the SDS. */
  get transport(): "unix" | "tcp" {
    return this.viaLocal ? "unix" : "tcp";
  }

  /** The open connection's handshake transcript hash (empty while not authenticated). */
  get session(): Uint8Array {
    return this.sessionHash;
  }

  request(h: DataRequest, payload?: Uint8Array): Promise<DataReply> {
    return new Promise((resolve) => this.send(h, payload, (status, p, flags) => resolve({ status, payload: p, flags: flags ?? 0 })));
  }

  /** Callback form of request (no promise per IO); cb is never called synchronously. */
  send(h: DataRequest, payload: Bytes | undefined, cb: ReplyCallback, payloadImmutable = false): void {
    if (this.state === "closed") return failLater(cb);
    if (this.state === "idle") {
      if (performance.now() < this.failFastUntilMs) return failLater(cb);
      this.connect();
    }
    if (this.state !== "open" || this.pending.size >= this.maxInFlight || this.queue.length > 0) {
      // a Scatter's pieces are never written again (scatter.ts): queued as they are
      this.queue.push({ h: { ...h }, payload: payload && !payloadImmutable && !(payload instanceof Scatter) ? payload.slice() : payload, cb });
      return;
    }
    this.put(h, payload, cb, payloadImmutable);
  }

  /** Close for good: every request in flight or queued fails with UNAVAILABLE. */
  close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.dropConnection("client closed");
  }

  private put(h: DataRequest, payload: Bytes | undefined, cb: ReplyCallback, payloadImmutable = false): void {
    if (this.opts.grants !== undefined && NEEDS_GRANT[h.opcode] === 1 && this.presented.get(h.volumeLo) !== h.volumeHi) this.presentGrant(h.volumeHi, h.volumeLo);
    const id = this.allocId();
    this.pending.set(id, cb);
    const s = this.scratch;
    s.opcode = h.opcode;
    s.flags = h.flags;
    s.status = Status.OK;
    s.requestId = id;
    s.epoch = h.epoch;
    s.volumeHi = h.volumeHi;
    s.volumeLo = h.volumeLo;
    s.extentIndex = h.extentIndex;
    s.offset = h.offset;
    s.length = h.length;
    s.gen = h.gen ?? 0;
    this.writer!.frame(s, payload, payloadImmutable);
  }

  /** Send the volume's GRANT frame ahead of its first IO on this connection. */
  private presentGrant(volumeHi: number, volumeLo: number): void {
    this.presented.set(volumeLo, volumeHi);
    const t = this.opts.grants!.grantFor(volumeHi, volumeLo);
    if (t === null) return; // the SDS will say NO_GRANT; the next IO asks again
    const id = this.allocId();
    this.pending.set(id, this.onGrantReply);
    const s = this.scratch;
    s.opcode = Op.GRANT;
    s.flags = 0;
    s.status = Status.OK;
    s.requestId = id;
    s.epoch = 0;
    s.volumeHi = volumeHi;
    s.volumeLo = volumeLo;
    s.extentIndex = 0;
    s.offset = 0;
    s.length = 0;
    s.gen = 0;
    this.writer!.frame(s, encodeGrantPresentation(t, this.sessionHash));
  }

  /** The grant of this volume changed (renewed, revoked): present it again before the next IO. */
  forgetGrant(volumeLo: number): void {
    this.presented.delete(volumeLo);
  }

  private allocId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  /** Open a connection; `forceTcp`: the same-host socket just failed this attempt (retryOverTcp). */
  private connect(forceTcp = false): void {
    this.state = "connecting";
    const gen = ++this.connGen;
    this.reader = new FrameReader();
    this.reader.maxPayloadBytes = Limits.dataPreAuthMaxPayloadBytes;
    this.reader.reuseFrames = true; // handleFrame is done with each frame when it returns
    this.watchId = 0;
    this.writer = new SocketWriter();
    const tls = this.tlsFor();
    const me = idToHalves(this.opts.credentials.nodeId);
    const binding = tls === null ? Binding.NONE : Binding.TLS_EXPORTER;
    const hello = encodeHelloAuth({ version: DP_AUTH_VERSION, role: this.opts.credentials.role, binding, nodeHi: me.hi, nodeLo: me.lo, nonce: newNonce() });
    this.shake = { hello, channel: UNBOUND, th: null, key: null };
    this.writer.frame(this.handshakeHeader(Op.HELLO), hello);
    this.startSweep();
    const timeoutMs = this.opts.connectTimeoutMs ?? Limits.dataConnectTimeoutMs;
    // runs until the handshake ends (handshakeFrame clears it): a peer that accepts and never
    // answers (a hung or stopped SDS: the kernel accepts for it) fails the queued requests too
    this.clearConnectTimer();
    const timer = setTimeout(() => {
      if (gen === this.connGen && (this.state === "connecting" || this.state === "handshake")) this.fail(`connect and handshake timeout after ${timeoutMs} ms`, true, false); // a hung SDS: TCP would hang too
    }, timeoutMs);
    this.connectTimer = timer;
    if (typeof tls === "string") {
      clearTimeout(timer);
      queueMicrotask(() => {
        if (gen === this.connGen && this.state === "connecting") this.failAll(Status.UNAUTHORIZED, tls, true);
      });
      return;
    }
    const ready = (sock: Socket<undefined>) => {
      this.state = "handshake";
      this.writer!.attach(sock);
    };
    const local = tls === null && !forceTcp && performance.now() >= this.localRetryAtMs ? existingLocalSocket(this.host, this.port) : null;
    this.viaLocal = local !== null;
    const localRefused = (why: string): boolean => {
      if (gen !== this.connGen || !this.retryOverTcp(why)) return false;
      clearTimeout(timer);
      return true;
    };
    const socket: SocketHandler<undefined> = {
      open: (sock) => {
        if (gen !== this.connGen || this.state !== "connecting") {
          sock.end();
          return;
        }
        sock.setNoDelay(true);
        this.socket = sock;
        if (tls === null) ready(sock);
      },
      handshake: (sock, success, authError) => {
        if (tls === null || gen !== this.connGen || this.state !== "connecting") return;
        if (!success) {
          this.failAll(Status.UNAUTHORIZED, `TLS handshake with SDS ${this.opts.expectSdsId} failed: ${authError?.message ?? "unknown error"}`, true);
          return;
        }
        const r = checkTlsPeer(tls, sock, { role: NodeRole.SDS, nodeId: this.opts.expectSdsId! });
        if (r.error !== null) {
          this.failAll(Status.UNAUTHORIZED, `TLS: SDS certificate refused: ${r.error}`, true);
          return;
        }
        try {
          this.shake!.channel = helloBindingOf(sock);
        } catch (e) {
          this.failAll(Status.UNAUTHORIZED, (e as Error).message, true);
          return;
        }
        ready(sock);
      },
      data: (_sock, data) => {
        if (gen !== this.connGen) return;
        try {
          this.reader.push(data, this.onFrame);
        } catch (e) {
          if (e instanceof FrameError) this.failAll(this.state === "handshake" ? Status.UNAUTHORIZED : Status.UNAVAILABLE, `bad reply frame (${e.field}): ${e.message}`, this.state === "handshake");
          else throw e;
        }
      },
      drain: () => {
        if (gen === this.connGen) this.writer?.onDrain();
      },
      close: () => {
        if (gen === this.connGen && this.state !== "closed") this.fail("connection closed by the SDS", false);
      },
      error: (_sock, err) => {
        if (gen === this.connGen && this.state !== "closed") this.fail(`socket error: ${err.message}`, false);
      },
      connectError: (_sock, err) => {
        if (localRefused(err.message)) return;
        clearTimeout(timer);
        if (gen === this.connGen && this.state !== "closed") this.fail(`connect failed: ${err.message}`, true);
      },
    };
    const connecting =
      local !== null
        ? Bun.connect<undefined>({ unix: local, socket })
        : Bun.connect<undefined>({ hostname: this.host, port: this.port, ...(tls === null ? {} : { tls: clientTlsOptions(tls, this.opts.expectSdsId!) }), socket });
    connecting.catch((err: unknown) => {
      if (localRefused(String(err))) return;
      clearTimeout(timer);
      if (gen === this.connGen && this.state === "connecting") this.fail(`connect failed: ${String(err)}`, true);
    });
  }

  /** null: plaintext; material: TLS; a string: TLS is on but cannot be used (why). */
  private tlsFor(): DataPlaneTlsMaterial | null | string {
    if (this.opts.tls === undefined) return null;
    const m = this.opts.tls();
    if (m === null) return "data-plane TLS is required but this node has no certificate yet";
    if (this.opts.expectSdsId === undefined) return "data-plane TLS needs the id of the SDS to reach (its certificate must name it)";
    return m;
  }

  private handshakeHeader(opcode: Op): FrameHeader {
    return { ...this.scratch, opcode, flags: 0, status: Status.OK, requestId: HELLO_REQUEST_ID, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 };
  }

  /** CHALLENGE -> send AUTH; AUTH reply -> check the SDS's proof, open the connection. */
  private handshakeFrame(f: Frame): void {
    const h = f.header;
    const sh = this.shake!;
    const expected = sh.th === null ? Op.HELLO : Op.AUTH;
    if ((h.flags & Flag.REPLY) === 0 || h.requestId !== HELLO_REQUEST_ID || h.opcode !== expected) {
      this.failAll(Status.UNAUTHORIZED, `SDS sent opcode ${h.opcode} flags 0x${h.flags.toString(16)} during the handshake`, true);
      return;
    }
    if (h.status !== Status.OK) {
      this.failAll(h.status, `${expected === Op.HELLO ? "HELLO" : "AUTH"} refused with status ${h.status}`, true);
      return;
    }
    if (sh.th === null) {
      const ch = decodeChallenge(f.payload);
      const sdsId = halvesToId(ch.sdsHi, ch.sdsLo);
      if (this.opts.expectSdsId !== undefined && sdsId !== this.opts.expectSdsId) {
        this.failAll(Status.UNAUTHORIZED, `reached SDS ${sdsId}, not ${this.opts.expectSdsId}`, true);
        return;
      }
      const nk = this.opts.credentials.keyFor(ch.kids);
      if (nk === null) {
        this.failAll(Status.UNAUTHORIZED, `no key for any key id the SDS accepts (${ch.kids.join(", ")})`, true);
        return;
      }
      sh.th = transcriptHash(sh.hello, f.payload, nk.kid, sh.channel);
      sh.key = nk.key;
      this.writer!.frame(this.handshakeHeader(Op.AUTH), encodeAuth({ kid: nk.kid, proof: clientProof(nk.key, sh.th) }));
      return;
    }
    if (!proofsEqual(serverProof(sh.key!, sh.th), f.payload)) {
      this.failAll(Status.UNAUTHORIZED, "wrong SDS proof in the handshake", true);
      return;
    }
    this.sessionHash = sh.th;
    this.shake = null;
    this.clearConnectTimer();
    this.reader.maxPayloadBytes = Limits.dataMaxPayloadBytes;
    this.state = "open";
    this.admitQueued();
  }

  private handleFrame(f: Frame): void {
    const h = f.header;
    if (this.state === "handshake") return this.handshakeFrame(f);
    if ((h.flags & Flag.REPLY) === 0) {
      this.fail(`SDS sent a request frame (opcode ${h.opcode}) on a client connection`, false);
      return;
    }
    const cb = this.pending.get(h.requestId);
    if (cb === undefined) {
      this.fail(`reply for unknown request id ${h.requestId}`, false);
      return;
    }
    this.pending.delete(h.requestId);
    if (h.status >= Status.NO_GRANT && h.status <= Status.GRANT_REVOKED) this.presented.delete(h.volumeLo);
    cb(h.status, f.payload, h.flags);
    this.admitQueued();
  }

  private admitQueued(): void {
    while (this.state === "open" && this.queue.length > 0 && this.pending.size < this.maxInFlight && this.writer !== null && !this.writer.isClosed) {
      const q = this.queue.shift()!;
      this.put(q.h, q.payload, q.cb, true); // queued payloads are our own copies
    }
  }

  /**
   * A connection over the same-host Unix socket failed before it opened (refused, closed, a
   * handshake that did not check out; not a timeout: an SDS that accepts and never answers is
   * hung, and TCP would only double the wait): drop it and connect over TCP now, keeping the
   * queued requests (none is on the wire before the handshake ends). False if that does not apply.
   */
  private retryOverTcp(reason: string): boolean {
    if (!this.viaLocal || (this.state !== "connecting" && this.state !== "handshake") || this.pending.size > 0) return false;
    const retryMs = this.opts.localSocketRetryMs ?? Limits.dataLocalSocketRetryMs;
    consola.warn(`data plane ${this.host}:${this.port}: same-host socket failed (${reason}); using TCP (socket tried again after ${retryMs} ms)`);
    this.localRetryAtMs = performance.now() + retryMs;
    this.connGen++; // before terminate(): its close event may come at once and must be ignored
    const sock = this.socket;
    this.socket = null;
    this.writer?.close();
    this.writer = null;
    sock?.terminate();
    this.connect(true);
    return true;
  }

  private fail(reason: string, connectFailed: boolean, tcpRetry = true): void {
    if (tcpRetry && this.retryOverTcp(reason)) return;
    this.failAll(Status.UNAVAILABLE, reason, connectFailed, false); // the TCP retry was just asked
    this.opts.onDown?.();
  }

  /** Drop the connection; every request in flight or queued gets `status`. */
  private failAll(status: Status, reason: string, failFast: boolean, tcpRetry = true): void {
    if (tcpRetry && this.retryOverTcp(reason)) return;
    const n = this.pending.size + this.queue.length;
    if (n > 0 || failFast) consola.warn(`data plane ${this.host}:${this.port}: ${reason}; failing ${n} request(s)`);
    if (failFast) this.failFastUntilMs = performance.now() + (this.opts.reconnectBackoffMs ?? DEFAULT_BACKOFF_MS);
    if (this.state !== "closed") this.state = "idle";
    this.dropConnection(reason, status);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private dropConnection(_reason: string, status: Status = Status.UNAVAILABLE): void {
    this.connGen++;
    this.clearConnectTimer(); // its generation is gone: it would do nothing, but hold the process up to its end
    this.shake = null;
    this.sessionHash = EMPTY;
    this.presented.clear();
    const sock = this.socket;
    this.socket = null;
    this.writer?.close();
    this.writer = null;
    this.stopSweep();
    if (sock) sock.terminate();
    const pending = [...this.pending.values()];
    const queued = this.queue;
    this.pending.clear();
    this.queue = [];
    for (const cb of pending) cb(status, EMPTY);
    for (const q of queued) q.cb(status, EMPTY);
  }

  private startSweep(): void {
    if (this.sweepTimer !== null) return;
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(SWEEP_INTERVAL_MS, this.requestTimeoutMs));
    this.sweepTimer.unref?.();
  }

  private stopSweep(): void {
    if (this.sweepTimer === null) return;
    clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /**
   * Map iteration is insertion order, so the first pending id is the oldest request: a request
   * still oldest a timeout after the sweep first saw it so has outlived the timeout.
   */
  private sweep(): void {
    const first = this.pending.keys().next();
    if (first.done) return;
    const now = performance.now();
    if (first.value !== this.watchId) {
      this.watchId = first.value;
      this.watchSinceMs = now;
      return;
    }
    if (now - this.watchSinceMs >= this.requestTimeoutMs) {
      this.fail(`request timed out after ${this.requestTimeoutMs} ms`, false);
    }
  }
}

function failLater(cb: ReplyCallback): void {
  queueMicrotask(() => cb(Status.UNAVAILABLE, EMPTY));
}

// ---- pool ----

export interface DataPlanePoolOptions {
  credentials: ClientCredentials;
  /** the mapping grants to present (an SDC) */
  grants?: GrantSource;
  /** connections per SDS; 1 keeps every request to one SDS in one ordered stream */
  connsPerSds?: number;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** a connection to this SDS failed (DataPlaneClientOptions.onDown) */
  onLinkDown?: (sdsId: string) => void;
  /** data-plane TLS material (asked at every connect: a renewed certificate applies to new connections) */
  tls?: () => DataPlaneTlsMaterial | null;
}

/** Round-robin over the connections to one SDS. */
class PooledLink implements DataPlaneLink {
  private next = 0;
  constructor(readonly clients: DataPlaneClient[]) {}

  request(h: DataRequest, payload?: Uint8Array): Promise<DataReply> {
    return this.pick().request(h, payload);
  }

  send(h: DataRequest, payload: Bytes | undefined, cb: ReplyCallback, payloadImmutable?: boolean): void {
    this.pick().send(h, payload, cb, payloadImmutable);
  }

  private pick(): DataPlaneClient {
    if (this.clients.length === 1) return this.clients[0]!;
    // prefer the least loaded connection; ties go round robin
    let best = this.clients[this.next % this.clients.length]!;
    this.next++;
    for (const c of this.clients) if (c.inFlight < best.inFlight) best = c;
    return best;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

/** Connections to every SDS of the cluster, keyed by SDS id; addresses follow the maps. */
export class DataPlanePool {
  private links = new Map<string, PooledLink>();
  private closed = false;

  constructor(private readonly opts: DataPlanePoolOptions) {}

  /** Set (or change) an SDS's address; connections to an old address are closed. */
  setAddress(sdsId: string, host: string, port: number): void {
    if (this.closed) return;
    const cur = this.links.get(sdsId);
    if (cur && cur.clients[0]!.host === host && cur.clients[0]!.port === port) return;
    cur?.close();
    const n = Math.max(1, this.opts.connsPerSds ?? Limits.dataConnsPerSds);
    const clients: DataPlaneClient[] = [];
    for (let i = 0; i < n; i++) {
      clients.push(
        new DataPlaneClient({
          host,
          port,
          credentials: this.opts.credentials,
          expectSdsId: sdsId,
          grants: this.opts.grants,
          requestTimeoutMs: this.opts.requestTimeoutMs,
          connectTimeoutMs: this.opts.connectTimeoutMs,
          ...(this.opts.tls === undefined ? {} : { tls: this.opts.tls }),
          ...(this.opts.onLinkDown === undefined ? {} : { onDown: () => this.opts.onLinkDown?.(sdsId) }),
        }),
      );
    }
    this.links.set(sdsId, new PooledLink(clients));
  }

  /** Keep only these SDS ids (closing links to SDSs no longer in the maps). */
  retain(sdsIds: ReadonlySet<string>): void {
    for (const [id, link] of this.links) {
      if (!sdsIds.has(id)) {
        link.close();
        this.links.delete(id);
      }
    }
  }

  link(sdsId: string): DataPlaneLink | undefined {
    return this.links.get(sdsId);
  }

  /** A volume's grant changed: every connection presents it again before its next IO there. */
  forgetGrant(volumeLo: number): void {
    for (const l of this.links.values()) for (const c of l.clients) c.forgetGrant(volumeLo);
  }

  close(): void {
    this.closed = true;
    for (const l of this.links.values()) l.close();
    this.links.clear();
  }
}
