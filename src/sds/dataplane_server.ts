// The SDS's data-plane TCP server (Bun.listen): connection lifecycle, the challenge/response
// handshake (handshake_server.ts), frame reassembly, bounded in-flight requests, batched
// replies, the per-role operation check (role_ops.ts). What a request does is the handler's
// business (SdsNode); this file only moves frames.
//
// Invariants:
// - a connection is served only after HELLO, CHALLENGE and AUTH prove the peer holds its node
//   key; until then it may send frames of at most Limits.dataPreAuthMaxPayloadBytes and must
//   finish within Limits.dataHandshakeTimeoutMs; a refused handshake gets a status reply and the
//   connection is closed (logged, rate-limited); at most Limits.dataMaxPreAuthConns connections
//   are unauthenticated at once;
// - an authenticated connection runs only the operations its role allows (role_ops.ts), else
//   UNAUTHORIZED;
// - a malformed frame (FrameError) closes that connection only, with a warning naming the
//   peer and the bad field; other connections and the server keep working;
// - at most Limits.dataMaxInFlightPerConn requests, and about Limits.dataMaxInFlightBytesPerConn
//   bytes (payloads being handled + replies the peer has not read yet), per connection: beyond
//   either the socket is paused and further frames stay in the reader until replies (and the
//   peer's reading) free room, so a client that never reads its replies cannot grow our memory;
//   the handler may also stop reading a connection (holdReading) until it restarts it;
// - every request handed to the handler gets at most one reply; replies after the connection
//   closed are dropped;
// - with data-plane TLS (requireTls, then setTls once the MDM issued the certificate), every
//   accepted socket is TLS from its first byte (upgradeTLS; a plaintext peer fails the TLS
//   handshake); nothing is read before pf verified the peer's certificate (dataplane_tls.ts), and
//   the handshake then must claim and prove the very node that certificate names, with a proof
//   bound to this TLS session's exporter (dataplane_auth.ts "Channel binding"). While TLS is
//   required but the certificate is not there yet, connections are closed at once.
// - on a plaintext data plane the same server also listens on a Unix socket named by its TCP
//   address (dataplane_local.ts), for clients on this host: the same handshake and frames; while
//   TLS is required a connection on it is closed at once (the client does not try it then).

import { consola } from "consola";
import { statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Socket, SocketHandler, TCPSocketListener, UnixSocketListener } from "bun";
import { Flag, FrameError, FrameReader, HEADER_BYTES, Op, Status, type Frame, type FrameHeader } from "../proto/dataplane.ts";
import { NodeRole, UNBOUND, roleName, type ChannelBinding, type PeerVerifier } from "../proto/dataplane_auth.ts";
import { checkTlsPeer, helloBindingOf, serverTlsOptions, type DataPlaneTlsMaterial, type NodeIdentity } from "../proto/dataplane_tls.ts";
import { localSocketPath, prepareLocalSocketDir } from "../proto/dataplane_local.ts";
import { Limits } from "../proto/limits.ts";
import { SocketWriter } from "../proto/socket_writer.ts";
import { returnPayload } from "../proto/payload_pool.ts";
import { ConnGrants } from "./grant_book.ts";
import { ServerHandshake } from "./handshake_server.ts";
import { RefusalLog } from "./refusal_log.ts";
import { opAllowed } from "./role_ops.ts";

/** A connection as the request handler sees it. */
export interface RequestConn {
  /** "host:port" of the peer, for logs */
  readonly peer: string;
  /** node id the peer proved in its handshake */
  readonly nodeId: string;
  /** role the peer proved in its handshake */
  readonly role: NodeRole;
  /** the handshake's transcript hash (grants presented on this connection are bound to it) */
  readonly sessionHash: Uint8Array;
  /** mapping grants presented on this connection (grant_book.ts) */
  readonly grants: ConnGrants;
  /** reply to request `h` (h is reused as the reply header) */
  reply(h: FrameHeader, status: Status, payload?: Uint8Array): void;
  /** reply OK with a payload the caller fills in place right away (READ) */
  replyInto(h: FrameHeader, payloadBytes: number): Uint8Array;
  /** undo the replyInto just made (the payload could not be produced); reply again after */
  retractReplyInto(h: FrameHeader, payloadBytes: number): void;
  /**
   * Stop (true) or restart (false) handing further frames of this connection to the handler,
   * whatever its in-flight counts (the handler holds frames at its own cap: sds/epoch_hold.ts).
   * Frames not handed out stay unread in the socket, so the peer is pushed back by TCP.
   */
  holdReading(on: boolean): void;
  readonly closed: boolean;
}

export interface RequestHandler {
  onRequest(conn: RequestConn, f: Frame): void;
}

export interface DataPlaneServerOptions {
  host: string;
  port: number;
  maxInFlightPerConn?: number;
  /** payload bytes of requests being handled plus replies not yet taken by the socket */
  maxInFlightBytesPerConn?: number;
  handshakeTimeoutMs?: number;
}

interface SocketData {
  conn?: ServerConnection;
}

/** off: plaintext; pending: TLS required, no certificate yet (refuse); on: TLS with this material */
type TlsMode = { kind: "off" } | { kind: "pending" } | { kind: "on"; material: DataPlaneTlsMaterial };

export class DataPlaneServer {
  private listener: TCPSocketListener<SocketData> | null = null;
  /** the same-host Unix socket (dataplane_local.ts), and its path while we hold it */
  private localListener: UnixSocketListener<SocketData> | null = null;
  private localPath: string | null = null;
  /** connections accepted on the Unix socket since start (a test and the logs read it) */
  localConnsAccepted = 0;
  private handler: RequestHandler | null = null;
  private verifier: PeerVerifier | null = null;
  private readonly conns = new Set<ServerConnection>();
  private tls: TlsMode = { kind: "off" };
  /** connections whose handshake is not done */
  preAuthConns = 0;
  readonly maxInFlightPerConn: number;
  readonly maxInFlightBytesPerConn: number;
  readonly handshakeTimeoutMs: number;
  /** refused handshakes and operations, logged rate-limited */
  readonly refusals = new RefusalLog("data plane");

  private constructor(opts: DataPlaneServerOptions) {
    this.maxInFlightPerConn = opts.maxInFlightPerConn ?? Limits.dataMaxInFlightPerConn;
    this.maxInFlightBytesPerConn = opts.maxInFlightBytesPerConn ?? Limits.dataMaxInFlightBytesPerConn;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? Limits.dataHandshakeTimeoutMs;
  }

  /** Listen now; handshakes are refused (UNAVAILABLE) until attach() gives a verifier and handler. */
  static listen(opts: DataPlaneServerOptions): DataPlaneServer {
    const srv = new DataPlaneServer(opts);
    const handlers = (local: boolean): SocketHandler<SocketData> => ({
      open: (s) => srv.onOpen(s, local),
      data: (s, d) => s.data.conn?.onData(d),
      drain: (s) => s.data.conn?.onDrain(),
      close: (s) => s.data.conn?.onClose(),
      error: (s, err) => s.data.conn?.onError(err),
    });
    srv.listener = Bun.listen<SocketData>({ hostname: opts.host, port: opts.port, data: {}, socket: handlers(false) });
    srv.listenLocal(opts.host, handlers(true));
    return srv;
  }

  /**
   * Bind the same-host Unix socket of host:port. We hold the TCP address, so a socket file at
   * its path is a stale one (a killed SDS's): replace it. Failing to bind costs only the
   * shortcut (clients use TCP), never the server.
   */
  private listenLocal(host: string, handlers: SocketHandler<SocketData>): void {
    const path = localSocketPath(host, this.listener!.port);
    if (path === null) return;
    try {
      if (!prepareLocalSocketDir(path)) {
        consola.warn(`data plane: ${dirname(path)} is not this user's alone (owner or mode); no same-host socket, local clients use TCP`);
        return;
      }
      try {
        if (statSync(path).isSocket()) unlinkSync(path);
      } catch {
        // no stale file
      }
      this.localListener = Bun.listen<SocketData>({ unix: path, data: {}, socket: handlers });
      this.localPath = path;
    } catch (e) {
      consola.warn(`data plane: no same-host socket at ${path} (${(e as Error).message}); local clients use TCP`);
    }
  }

  /** The Unix socket path this server listens on, or null (tests, logs). */
  get localSocket(): string | null {
    return this.localPath;
  }

  get port(): number {
    return this.listener!.port;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** From now on only TLS connections are served (none until setTls gives the material). */
  requireTls(): void {
    if (this.tls.kind === "off") this.tls = { kind: "pending" };
  }

  /** Serve TLS with this node certificate (a renewed one applies to new connections). */
  setTls(material: DataPlaneTlsMaterial): void {
    this.tls = { kind: "on", material };
  }

  get tlsRequired(): boolean {
    return this.tls.kind !== "off";
  }

  attach(verifier: PeerVerifier, handler: RequestHandler): void {
    this.verifier = verifier;
    this.handler = handler;
  }

  stop(): void {
    this.listener?.stop(true);
    this.listener = null;
    this.localListener?.stop(true);
    this.localListener = null;
    if (this.localPath !== null) {
      try {
        unlinkSync(this.localPath);
      } catch {
        // already gone (a later SDS on this address replaced it, or the folder was removed)
      }
      this.localPath = null;
    }
    for (const c of [...this.conns]) c.close("server stopping");
  }

  private onOpen(s: Socket<SocketData>, local: boolean): void {
    if (local) {
      if (this.tls.kind !== "off") {
        this.refusals.refuse("hello_fail", () => "refusing a same-host Unix socket connection: this data plane requires TLS (use TCP)");
        s.terminate();
        return;
      }
      this.localConnsAccepted++;
    }
    if (this.conns.size >= Limits.dataMaxConnsPerSds) {
      consola.warn(`data plane: refusing connection from ${s.remoteAddress}: ${this.conns.size} connections open (limit ${Limits.dataMaxConnsPerSds})`);
      s.terminate();
      return;
    }
    if (this.preAuthConns >= Limits.dataMaxPreAuthConns) {
      this.refusals.refuse("hello_fail", () => `refusing connection from ${s.remoteAddress}: ${this.preAuthConns} connections still in their handshake (limit ${Limits.dataMaxPreAuthConns})`);
      s.terminate();
      return;
    }
    s.setNoDelay(true);
    const tls = this.tls;
    if (tls.kind === "pending") {
      this.refusals.refuse("hello_fail", () => `refusing connection from ${s.remoteAddress}: data-plane TLS is required and this SDS has no certificate yet (not joined)`);
      s.terminate();
      return;
    }
    if (tls.kind === "off") {
      const c = new ServerConnection(this, s, null, local ? `unix:${this.localPath ?? "?"}` : undefined);
      s.data = { conn: c };
      this.conns.add(c);
      return;
    }
    this.openTls(s, tls.material);
  }

  /** The accepted socket speaks TLS from byte 0; the raw socket's own events carry ciphertext and are ignored. */
  private openTls(raw: Socket<SocketData>, material: DataPlaneTlsMaterial): void {
    const peer = `${raw.remoteAddress}:${raw.remotePort}`;
    let conn: ServerConnection | null = null;
    const [, ts] = raw.upgradeTLS<SocketData>({
      data: {},
      tls: serverTlsOptions(material),
      socket: {
        data: (s, d) => s.data.conn?.onData(d),
        drain: (s) => s.data.conn?.onDrain(),
        close: (s) => s.data.conn?.onClose(),
        error: (s, err) => s.data.conn?.onError(err),
        handshake: (s, success, authError) => {
          if (conn === null) return;
          if (!success) {
            conn.tlsRefused(`TLS handshake failed: ${authError?.message ?? "unknown error"}`);
            return;
          }
          const r = checkTlsPeer(material, s, null);
          if (r.error !== null) conn.tlsRefused(r.error);
          else conn.tlsVerified(r.identity!, s);
        },
      },
    });
    conn = new ServerConnection(this, ts, "unverified", peer);
    ts.data = { conn };
    this.conns.add(conn);
  }

  /** @internal */ forget(c: ServerConnection): void {
    this.conns.delete(c);
  }
  /** @internal */ get peerVerifier(): PeerVerifier | null {
    return this.handler === null ? null : this.verifier;
  }
  /** @internal */ get requestHandler(): RequestHandler | null {
    return this.handler;
  }
}

class ServerConnection implements RequestConn {
  readonly peer: string;
  nodeId = "";
  role: NodeRole = NodeRole.SDC;
  sessionHash: Uint8Array = new Uint8Array(0);
  readonly grants = new ConnGrants();
  readonly writer: SocketWriter;
  private readonly reader = new FrameReader();
  private handshake: ServerHandshake | null;
  private inFlight = 0;
  /** payload bytes of requests handed to the handler and not yet replied */
  private inFlightBytes = 0;
  private paused = false;
  /** the handler asked not to be handed frames of this connection for now (holdReading) */
  private readingHeld = false;
  private resumeQueued = false;
  closed = false;
  private handshakeTimer: ReturnType<typeof setTimeout> | null;
  private readonly onFrame = (f: Frame): boolean => this.handleFrame(f);
  private readonly resumeTask = () => this.resume();
  /** null: plaintext connection; "unverified": TLS, peer certificate not checked yet; else whom it names */
  private tlsPeer: NodeIdentity | "unverified" | null;
  /** what the handshake is bound to: nothing in plaintext, the TLS exporter once verified */
  private channel: ChannelBinding = UNBOUND;

  constructor(
    private readonly server: DataPlaneServer,
    private readonly socket: Socket<SocketData>,
    tlsPeer: "unverified" | null,
    peer?: string,
  ) {
    this.tlsPeer = tlsPeer;
    this.peer = peer ?? `${socket.remoteAddress}:${socket.remotePort}`;
    this.writer = new SocketWriter(socket);
    this.reader.maxPayloadBytes = Limits.dataPreAuthMaxPayloadBytes;
    this.handshake = new ServerHandshake(
      () => server.peerVerifier,
      () => this.channel,
    );
    server.preAuthConns++;
    this.handshakeTimer = setTimeout(() => {
      server.refusals.refuse("hello_fail", () => `connection from ${this.peer}: no handshake within ${server.handshakeTimeoutMs} ms`);
      this.close(null);
    }, server.handshakeTimeoutMs);
  }

  /** TLS handshake done and the certificate verified by pf: frames may be read now, bound to this session. */
  tlsVerified(identity: NodeIdentity, tlsSocket: Socket<SocketData>): void {
    try {
      this.channel = helloBindingOf(tlsSocket);
    } catch (e) {
      this.tlsRefused((e as Error).message);
      return;
    }
    this.tlsPeer = identity;
  }

  tlsRefused(reason: string): void {
    this.server.refusals.refuse("hello_fail", () => `connection from ${this.peer}: data-plane TLS: ${reason}`);
    this.close(null);
  }

  onData(data: Uint8Array): void {
    if (this.closed) return;
    if (this.tlsPeer === "unverified") {
      this.tlsRefused("data before the peer certificate was verified");
      return;
    }
    try {
      this.reader.push(data, this.onFrame);
    } catch (e) {
      this.onBadInput(e);
    }
  }

  onClose(): void {
    this.close(null);
  }

  onError(err: Error): void {
    this.close(`socket error: ${err.message}`);
  }

  reply(h: FrameHeader, status: Status, payload?: Uint8Array): void {
    if (this.closed) return;
    // answered: every copy holds the write and every forward was sent, so its buffer is free
    if (h.pooledPayload !== undefined) {
      returnPayload(h.pooledPayload);
      h.pooledPayload = undefined;
    }
    const cost = costOf(h);
    // DURABLE only as the primary set it (ReplyJoin), and never on a refusal
    h.flags = Flag.REPLY | (h.flags & (status === Status.OK ? Flag.FUA | Flag.DURABLE : Flag.FUA));
    h.status = status;
    this.writer.frame(h, status === Status.OK ? payload : undefined);
    this.done(cost);
  }

  replyInto(h: FrameHeader, payloadBytes: number): Uint8Array {
    const cost = costOf(h);
    h.flags = Flag.REPLY | (h.flags & Flag.FUA);
    h.status = Status.OK;
    const out = this.writer.frameWithPayloadSpace(h, payloadBytes);
    if (!this.closed) this.done(cost);
    return out;
  }

  retractReplyInto(h: FrameHeader, payloadBytes: number): void {
    if (this.closed) return;
    this.writer.retractLast(HEADER_BYTES + payloadBytes);
    this.inFlight++;
    this.inFlightBytes += costOf(h);
  }

  holdReading(on: boolean): void {
    this.readingHeld = on;
    if (!on) this.resumeSoon();
  }

  onDrain(): void {
    this.writer.onDrain();
    this.resumeSoon();
  }

  close(reason: string | null): void {
    if (this.closed) return;
    this.closed = true;
    this.endHandshake();
    if (reason !== null) consola.warn(`data plane: closing connection from ${this.peer}${this.nodeId ? ` (node ${this.nodeId})` : ""}: ${reason}`);
    this.writer.flush();
    this.writer.close();
    this.server.forget(this);
    this.socket.end();
  }

  private handleFrame(f: Frame): boolean {
    if (this.closed) return false;
    if (this.handshake !== null) return this.handshakeFrame(f);
    const h = f.header;
    if ((h.flags & Flag.REPLY) !== 0 || h.status !== Status.OK || h.opcode === Op.HELLO || h.opcode === Op.AUTH) {
      this.close(`unexpected frame: opcode ${h.opcode} flags 0x${h.flags.toString(16)} status ${h.status}`);
      return false;
    }
    if (!opAllowed(this.role, h.opcode)) {
      this.server.refusals.refuse("op_not_allowed", () => `${roleName(this.role)} ${this.nodeId} (${this.peer}) sent opcode ${h.opcode}`);
      h.flags = Flag.REPLY;
      h.status = Status.UNAUTHORIZED;
      this.writer.frame(h);
      return true;
    }
    const handler = this.server.requestHandler!;
    this.inFlight++;
    this.inFlightBytes += costOf(h);
    handler.onRequest(this, f);
    if (!this.closed && this.overloaded()) {
      this.paused = true;
      this.socket.pause();
      // the batched replies are handed to the socket in a microtask queued before this one; if
      // the socket takes them all there is no drain event, so look again right after that
      if (!this.resumeQueued) {
        this.resumeQueued = true;
        queueMicrotask(this.resumeTask);
      }
      return false;
    }
    return !this.closed;
  }

  private handshakeFrame(f: Frame): boolean {
    const h = f.header;
    // accepted in plaintext before this SDS learnt (at join) that TLS is required: never served
    if (this.tlsPeer === null && this.server.tlsRequired) {
      this.refuse(h, Status.UNAUTHORIZED, "plaintext connection, but data-plane TLS is required (it was opened before this SDS joined)");
      return false;
    }
    const step = this.handshake!.onFrame(h, f.payload);
    h.flags = Flag.REPLY;
    switch (step.kind) {
      case "reply":
        h.status = step.status;
        this.writer.frame(h, step.payload);
        return true;
      case "refuse":
        this.refuse(h, step.status, step.reason);
        return false;
      case "done": {
        const cert = this.tlsPeer;
        if (cert !== null && (cert === "unverified" || cert.role !== step.auth.role || cert.nodeId !== step.auth.nodeId)) {
          const named = cert === "unverified" ? "nobody (not verified)" : `${roleName(cert.role)} ${cert.nodeId}`;
          this.refuse(h, Status.UNAUTHORIZED, `TLS certificate names ${named} but the handshake proved ${roleName(step.auth.role)} ${step.auth.nodeId}`);
          return false;
        }
        this.endHandshake();
        this.role = step.auth.role;
        this.nodeId = step.auth.nodeId;
        this.sessionHash = step.auth.sessionHash;
        this.reader.maxPayloadBytes = Limits.dataMaxPayloadBytes;
        this.reader.scatterPayloads = true;
        h.status = Status.OK;
        this.writer.frame(h, step.payload);
        return true;
      }
      default: {
        const never: never = step;
        return never;
      }
    }
  }

  /** The handshake is over (done or the connection closed): its timer and slot are freed. */
  private endHandshake(): void {
    if (this.handshake === null) return;
    this.handshake = null;
    this.server.preAuthConns--;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  private refuse(h: FrameHeader, status: Status, reason: string): void {
    h.flags = Flag.REPLY;
    h.status = status;
    this.writer.frame(h);
    this.server.refusals.refuse("hello_fail", () => `connection from ${this.peer}: ${reason}`);
    this.close(null);
  }

  private onBadInput(e: unknown): void {
    if (e instanceof FrameError) {
      if (this.handshake !== null) {
        this.server.refusals.refuse("hello_fail", () => `connection from ${this.peer}: bad handshake frame, field ${e.field}: ${e.message}`);
        this.close(null);
        return;
      }
      this.close(`bad frame, field ${e.field}: ${e.message}`);
      return;
    }
    this.close(`request handling failed: ${String(e)}`);
    consola.error(e);
  }

  private overloaded(): boolean {
    return (
      this.readingHeld ||
      this.inFlight >= this.server.maxInFlightPerConn ||
      this.inFlightBytes + this.writer.queuedBytes >= this.server.maxInFlightBytesPerConn
    );
  }

  private done(cost: number): void {
    this.inFlight--;
    this.inFlightBytes -= cost;
    this.resumeSoon();
  }

  /** Paused and no longer overloaded: resume reading in a microtask (once). */
  private resumeSoon(): void {
    if (this.paused && !this.resumeQueued && !this.overloaded()) {
      this.resumeQueued = true;
      queueMicrotask(this.resumeTask);
    }
  }

  private resume(): void {
    this.resumeQueued = false;
    if (this.closed || !this.paused || this.overloaded()) return;
    this.paused = false;
    try {
      this.reader.pump(this.onFrame);
    } catch (e) {
      this.onBadInput(e);
      return;
    }
    if (!this.paused && !this.closed) this.socket.resume();
  }
}

/** Bytes a request holds while handled: its payload (writes) or its reply payload (reads). */
function costOf(h: FrameHeader): number {
  return h.opcode === Op.READ || h.opcode === Op.WRITE || h.opcode === Op.REPL_WRITE || h.opcode === Op.REBUILD_WRITE ? h.length : 0;
}
