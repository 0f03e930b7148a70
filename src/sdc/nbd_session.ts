// One NBD connection: a state machine over the received bytes (handshake, then requests), which
// starts requests on the export concurrently and answers them out of order through ReplyWriter.
//
// Invariants:
// - the reader never waits on a request: a request is started as soon as its header (and WRITE
//   payload) is in, and answered when it completes, in any order;
// - a WRITE's payload is always consumed before it is answered, even when refused; a payload
//   over Limits.nbdMaxRequestBytes is skipped as it arrives (never buffered) and answered EINVAL;
//   over Limits.nbdAbusiveRequestBytes the connection is closed;
// - at most Limits.nbdMaxInFlightPerConn requests run at once, and reading is paused while that
//   many run or while received + held + unsent bytes exceed Limits.nbdMaxBufferedBytesPerConn;
// - per-mapping QoS: a request the export's QoS gate does not admit yet stays unread (its header
//   stays in the byte queue and reading is paused) until the gate says it may go: backpressure
//   to the client, never an error, never a queue of read requests; FLUSH is never held;
// - framing errors (bad magic, bad handshake flags, oversized option) close this connection only;
// - DISC: no more requests are read; the connection ends once in-flight ones are answered and
//   every reply byte left;
// - with structured replies, READ is answered only with chunks (OFFSET_DATA/NONE/ERROR + DONE);
// - STARTTLS: after its ACK no byte is read or written in plaintext; plaintext bytes that came
//   behind STARTTLS (an injection, CVE-2011-0411 style) close the connection; options resume
//   only once the TLS handshake finished and the peer was accepted (SessionTls.upgrade).

import { consola } from "consola";
import { isPfError, nbdErrnoOf } from "../proto/errors.ts";
import { ioNowMs } from "../proto/io_meter.ts";
import { Limits } from "../proto/limits.ts";
import {
  CLIENT_FLAGS_BYTES,
  Cmd,
  CmdFlag,
  NbdDecodeError,
  NbdErrno,
  OPTION_HEADER_BYTES,
  REQUEST_BYTES,
  decodeClientFlags,
  decodeOptionHeader,
  decodeRequest,
  encodeGreeting,
  toNbdErrno,
  type NbdRequest,
} from "../proto/nbd.ts";
import { ByteQueue } from "./nbd_byte_queue.ts";
import { returnPayload } from "../proto/payload_pool.ts";
import { Scatter, flatOf, type Bytes } from "../proto/scatter.ts";
import type { ExportRegistry, NbdExport } from "./nbd_export.ts";
import { SERVER_HANDSHAKE_FLAGS, handleOption, type HandshakeState } from "./nbd_handshake.ts";
import { ReplyWriter, type ByteSink } from "./nbd_reply_writer.ts";
import { refusalOf } from "./nbd_request_check.ts";

/** The part of a Bun TCP socket a session uses. */
export interface SessionSocket extends ByteSink {
  pause(): void;
  resume(): void;
  end(): void;
}

/** How a session asks its server to turn the connection into TLS (nbd_server.ts). */
export interface SessionTls {
  mode: "off" | "on" | "require";
  /** start the TLS handshake on the socket; `done(null)` when it finished and the peer is accepted */
  upgrade(done: (refusal: string | null) => void): void;
}

type Phase = "tls-handshake" | "client-flags" | "option-header" | "option-data" | "request" | "write-payload" | "skip-payload" | "closed";

export class NbdSession {
  /** export being served once the transmission phase started */
  exportName: string | null = null;
  private phase: Phase = "client-flags";
  private readonly queue = new ByteQueue(REQUEST_BYTES);
  private readonly writer: ReplyWriter;
  private readonly hs: HandshakeState = { clientFlags: 0, structuredReplies: false };
  /** STARTTLS was acknowledged but its ACK has not left yet: the upgrade waits for drain */
  private tlsAwaitsDrain = false;
  private exp: NbdExport | null = null;
  private optionCode = 0;
  private optionBytes = 0;
  /** WRITE waiting for its payload (write-payload) or being skipped (skip-payload) */
  private pendingReq: NbdRequest | null = null;
  private skipRemaining = 0;
  private inFlight = 0;
  private heldBytes = 0;
  private paused = false;
  private disconnecting = false;
  private requestsServed = 0;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  /** the QoS gate refused the next request: reading waits for this timer */
  private qosTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly id: number,
    private readonly socket: SessionSocket,
    private readonly registry: ExportRegistry,
    readonly peer: string,
    private readonly handshakeTimeoutMs: number = Limits.nbdHandshakeTimeoutMs,
    private readonly tls?: SessionTls,
  ) {
    this.writer = new ReplyWriter(
      socket,
      () => this.onWriterDrained(),
      () => this.inFlight > 0 && this.phase === "request",
    );
    this.hs.tlsMode = tls?.mode ?? "off";
  }

  get isClosed(): boolean {
    return this.phase === "closed";
  }

  /** requests started on the export and not yet answered */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Connection accepted: send the greeting. */
  start(): void {
    consola.debug(`nbd: connection ${this.id} from ${this.peer} opened`);
    this.writer.raw(encodeGreeting(SERVER_HANDSHAKE_FLAGS));
    this.writer.flush();
    // A client that never finishes the handshake must not hold a session forever.
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = null;
      if (this.exp !== null || this.phase === "closed") return;
      consola.warn(`nbd: connection ${this.id} (${this.peer}): no export chosen within ${this.handshakeTimeoutMs} ms; closing`);
      this.closeNow();
    }, this.handshakeTimeoutMs);
  }

  onData(chunk: Buffer): void {
    if (this.phase === "closed") return;
    this.queue.push(chunk);
    this.pump();
  }

  onDrain(): void {
    this.writer.onDrain();
  }

  /** The socket is gone (client closed, dropped, or we ended it): release everything quietly. */
  onClose(): void {
    if (this.phase !== "closed") {
      consola.debug(
        `nbd: connection ${this.id} from ${this.peer} closed (export "${this.exportName ?? "-"}", ${this.requestsServed} requests, ${this.inFlight} in flight dropped)`,
      );
    }
    this.phase = "closed";
    this.clearHandshakeTimer();
    this.clearQosTimer();
    this.queue.clear();
    this.writer.close();
  }

  private clearQosTimer(): void {
    if (this.qosTimer !== null) clearTimeout(this.qosTimer);
    this.qosTimer = null;
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /** Server side close (export unmapped, server stopping): flush what is ready and end. */
  shutdown(reason: string): void {
    if (this.phase === "closed") return;
    consola.debug(`nbd: connection ${this.id} (${this.peer}, export "${this.exportName ?? "-"}"): closing: ${reason}`);
    this.closeNow();
  }

  // -------------------------------------------------------------------------------------------
  // Parsing

  private pump(): void {
    for (;;) {
      if (this.disconnecting) break;
      const progressed = this.step();
      if (!progressed) break;
    }
    this.updateFlow();
  }

  /** One parsing step; false when more bytes (or fewer in-flight requests) are needed. */
  private step(): boolean {
    switch (this.phase) {
      case "client-flags":
        return this.readClientFlags();
      case "option-header":
        return this.readOptionHeader();
      case "option-data":
        return this.readOptionData();
      case "request":
        return this.readRequest();
      case "write-payload":
        return this.readWritePayload();
      case "skip-payload":
        return this.skipPayload();
      case "tls-handshake":
      case "closed":
        return false;
      default: {
        const never: never = this.phase;
        return never;
      }
    }
  }

  private readClientFlags(): boolean {
    if (this.queue.length < CLIENT_FLAGS_BYTES) return false;
    const b = this.queue.peek(CLIENT_FLAGS_BYTES);
    const flags = decodeClientFlags(b, this.queue.peekOffset, SERVER_HANDSHAKE_FLAGS);
    if (flags instanceof NbdDecodeError) return this.violation(flags);
    this.queue.skip(CLIENT_FLAGS_BYTES);
    this.hs.clientFlags = flags;
    this.phase = "option-header";
    return true;
  }

  private readOptionHeader(): boolean {
    if (this.queue.length < OPTION_HEADER_BYTES) return false;
    const b = this.queue.peek(OPTION_HEADER_BYTES);
    const h = decodeOptionHeader(b, this.queue.peekOffset);
    if (h instanceof NbdDecodeError) return this.violation(h);
    this.queue.skip(OPTION_HEADER_BYTES);
    this.optionCode = h.option;
    this.optionBytes = h.dataBytes;
    this.phase = "option-data";
    return true;
  }

  private readOptionData(): boolean {
    if (this.queue.length < this.optionBytes) return false;
    const data = this.queue.take(this.optionBytes);
    const outcome = handleOption(this.hs, this.registry, this.optionCode, data);
    for (const r of outcome.replies) this.writer.raw(r);
    this.writer.flush();
    switch (outcome.kind) {
      case "continue":
        this.phase = "option-header";
        return true;
      case "starttls":
        return this.startTls();
      case "close":
        if (outcome.violation) consola.warn(`nbd: connection ${this.id} (${this.peer}): ${outcome.reason}; closing`);
        else consola.debug(`nbd: connection ${this.id} (${this.peer}): ${outcome.reason}; closing`);
        this.closeNow();
        return false;
      case "transmission":
        this.exp = outcome.export;
        this.exportName = outcome.export.name;
        this.clearHandshakeTimer();
        this.phase = "request";
        consola.debug(
          `nbd: connection ${this.id} (${this.peer}) serving export "${this.exportName}" (flags 0x${outcome.transmissionFlags.toString(16)}, ${this.hs.structuredReplies ? "structured" : "simple"} replies)`,
        );
        return true;
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  private readRequest(): boolean {
    if (this.inFlight >= Limits.nbdMaxInFlightPerConn) return false;
    if (this.qosTimer !== null) return false;
    if (this.queue.length < REQUEST_BYTES) return false;
    const b = this.queue.peek(REQUEST_BYTES);
    const req = decodeRequest(b, this.queue.peekOffset);
    if (req instanceof NbdDecodeError) return this.violation(req);
    if (!this.qosAdmits(req)) return false;
    this.queue.skip(REQUEST_BYTES);
    if (req.type !== Cmd.WRITE) {
      this.dispatch(req, null);
      return true;
    }
    if (req.lengthBytes > Limits.nbdAbusiveRequestBytes) {
      return this.violation(new NbdDecodeError("request.length", `WRITE of ${req.lengthBytes} bytes > ${Limits.nbdAbusiveRequestBytes}`));
    }
    this.pendingReq = req;
    if (req.lengthBytes > Limits.nbdMaxRequestBytes) {
      this.skipRemaining = req.lengthBytes;
      this.phase = "skip-payload";
    } else {
      this.phase = "write-payload";
    }
    return true;
  }

  private readWritePayload(): boolean {
    const req = this.pendingReq;
    if (req === null || this.queue.length < req.lengthBytes) return false;
    const payload = this.queue.takePayload(req.lengthBytes);
    this.pendingReq = null;
    this.phase = "request";
    this.dispatch(req, payload, this.queue.lastTakeCopied);
    return true;
  }

  private skipPayload(): boolean {
    const req = this.pendingReq;
    if (req === null) return false;
    const n = Math.min(this.skipRemaining, this.queue.length);
    this.queue.skip(n);
    this.skipRemaining -= n;
    if (this.skipRemaining > 0) return false;
    consola.warn(`nbd: connection ${this.id} (${this.peer}): WRITE of ${req.lengthBytes} bytes > ${Limits.nbdMaxRequestBytes}: EINVAL`);
    this.pendingReq = null;
    this.phase = "request";
    this.replyError(req, NbdErrno.EINVAL);
    return true;
  }

  private startTls(): boolean {
    this.phase = "tls-handshake";
    if (this.queue.length > 0) return this.violation(new NbdDecodeError("starttls", `${this.queue.length} plaintext bytes arrived behind STARTTLS`));
    if (this.writer.bufferedBytes > 0) this.tlsAwaitsDrain = true;
    else this.beginTls();
    return false;
  }

  private beginTls(): void {
    const tls = this.tls;
    if (tls === undefined) {
      this.violation(new NbdDecodeError("starttls", "no TLS on this server")); // handleOption answers ERR_UNSUP first
      return;
    }
    const startMs = ioNowMs();
    tls.upgrade((refusal) => {
      if (this.phase !== "tls-handshake") return; // closed meanwhile
      if (refusal !== null) {
        consola.warn(`nbd: connection ${this.id} (${this.peer}): TLS refused: ${refusal}; closing`);
        this.closeNow();
        return;
      }
      consola.debug(`nbd: connection ${this.id} (${this.peer}): TLS up after ${(ioNowMs() - startMs).toFixed(1)} ms`);
      this.hs.tlsUp = true;
      this.phase = "option-header";
      this.pump();
    });
  }

  /** Per-mapping QoS: admit now, or leave the request unread and come back when it may go. */
  private qosAdmits(req: NbdRequest): boolean {
    const gate = this.exp?.qos;
    if (gate === undefined) return true;
    const throttled = req.type === Cmd.READ || req.type === Cmd.WRITE || req.type === Cmd.TRIM || req.type === Cmd.WRITE_ZEROES;
    if (!throttled) return true; // FLUSH, DISC, CACHE … are never held
    const payload = req.type === Cmd.READ || req.type === Cmd.WRITE ? req.lengthBytes : 0;
    const waitMs = gate.admit("io", payload);
    if (waitMs === 0) return true;
    this.qosTimer = setTimeout(() => {
      this.qosTimer = null;
      this.pump();
    }, waitMs);
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Execution

  /** `ownPayload`: the payload is a pooled copy, given back once the write was answered */
  private dispatch(req: NbdRequest, payload: Bytes | null, ownPayload = false): void {
    const exp = this.exp;
    if (exp === null) return; // cannot happen in the request phase
    this.requestsServed++;
    if (req.type === Cmd.DISC) {
      this.disconnecting = true;
      this.finishIfIdle();
      return;
    }
    const errno = refusalOf(req, exp, this.hs.structuredReplies);
    if (errno !== 0) {
      this.replyError(req, errno);
      return;
    }
    if (req.type === Cmd.CACHE || (req.lengthBytes === 0 && req.type !== Cmd.FLUSH)) {
      this.replyOk(req, EMPTY);
      return;
    }
    const fua = (req.flags & CmdFlag.FUA) !== 0;
    const held = payload !== null ? payload.byteLength : req.type === Cmd.READ ? req.lengthBytes : 0;
    this.inFlight++;
    this.heldBytes += held;
    const startMs = ioNowMs();
    if (req.type === Cmd.WRITE && exp.writeCb !== undefined) {
      const data = payload ?? EMPTY;
      exp.writeCb(req.offsetBytes, data, fua, (err) => {
        // the export is done with the payload: every piece was answered (all its bytes were sent)
        if (ownPayload && !(data instanceof Scatter)) returnPayload(data);
        this.completeCb(exp, req, held, EMPTY, err, startMs);
      });
      return;
    }
    if (req.type === Cmd.READ && exp.readCb !== undefined) {
      exp.readCb(req.offsetBytes, req.lengthBytes, (err, data) => this.completeCb(exp, req, held, data, err, startMs));
      return;
    }
    let p: Promise<Uint8Array | void>;
    try {
      p = this.execute(exp, req, payload, fua);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (data) => this.complete(exp, req, held, data instanceof Uint8Array ? data : EMPTY, 0, startMs),
      (e: unknown) => this.complete(exp, req, held, EMPTY, this.errnoOf(req, e), startMs),
    ).catch((e: unknown) => {
      // A bug in answering must cost this connection only, never the process.
      consola.error(`nbd: connection ${this.id} (${this.peer}): answering command ${req.type} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      this.closeNow();
    });
  }

  private execute(exp: NbdExport, req: NbdRequest, payload: Bytes | null, fua: boolean): Promise<Uint8Array | void> {
    switch (req.type) {
      case Cmd.READ:
        return exp.read(req.offsetBytes, req.lengthBytes);
      case Cmd.WRITE:
        return exp.write(req.offsetBytes, payload === null ? EMPTY : flatOf(payload), fua);
      case Cmd.FLUSH:
        return exp.flush();
      case Cmd.TRIM:
        return exp.trim(req.offsetBytes, req.lengthBytes, fua);
      case Cmd.WRITE_ZEROES:
        return exp.writeZeroes(req.offsetBytes, req.lengthBytes, fua);
      default:
        // refusalOf() lets only the commands above through
        return Promise.reject(new Error(`nbd: command ${req.type} reached execute()`));
    }
  }

  /** Completion of a callback-form request (readCb/writeCb): as complete(), a bug costing this connection only. */
  private completeCb(exp: NbdExport, req: NbdRequest, held: number, data: Uint8Array, err: unknown, startMs: number): void {
    try {
      this.complete(exp, req, held, err === null ? data : EMPTY, err === null ? 0 : this.errnoOf(req, err), startMs);
    } catch (e) {
      consola.error(`nbd: connection ${this.id} (${this.peer}): answering command ${req.type} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      this.closeNow();
    }
  }

  private complete(exp: NbdExport, req: NbdRequest, held: number, data: Uint8Array, errno: number, startMs: number): void {
    this.inFlight--;
    this.heldBytes -= held;
    if (errno === 0 && req.type === Cmd.READ && data.length !== req.lengthBytes) {
      consola.error(`nbd: export "${this.exportName}" returned ${data.length} bytes for a READ of ${req.lengthBytes}: EIO`);
      errno = NbdErrno.EIO;
    }
    // the request ran on the volume even when its connection closed meanwhile: count it
    exp.meter?.completed(req.type, req.lengthBytes, (ioNowMs() - startMs) / 1000, errno === 0);
    if (this.phase === "closed") return;
    if (errno !== 0) this.replyError(req, errno);
    else this.replyOk(req, data);
    if (this.disconnecting) {
      this.finishIfIdle();
      return;
    }
    // Reading may have stopped at the in-flight bound: continue parsing what is buffered.
    if (this.phase === "request" && this.inFlight === Limits.nbdMaxInFlightPerConn - 1) this.pump();
    else this.updateFlow();
  }

  private errnoOf(req: NbdRequest, e: unknown): number {
    if (isPfError(e)) {
      consola.debug(`nbd: export "${this.exportName}": command ${req.type} at ${req.offsetBytes}+${req.lengthBytes}: ${e.code}: ${e.message}`);
      return toNbdErrno(nbdErrnoOf[e.code]);
    }
    consola.warn(`nbd: export "${this.exportName}": command ${req.type} at ${req.offsetBytes}+${req.lengthBytes} failed: ${String(e)}: EIO`);
    return NbdErrno.EIO;
  }

  private replyOk(req: NbdRequest, data: Uint8Array): void {
    if (req.type !== Cmd.READ) this.writer.simple(0, req.cookieHi, req.cookieLo);
    else if (this.hs.structuredReplies) this.writer.structuredRead(req.cookieHi, req.cookieLo, req.offsetBytes, data);
    else this.writer.simpleRead(req.cookieHi, req.cookieLo, data);
  }

  private replyError(req: NbdRequest, errno: number): void {
    if (req.type === Cmd.READ && this.hs.structuredReplies) this.writer.structuredError(req.cookieHi, req.cookieLo, errno);
    else this.writer.simple(errno, req.cookieHi, req.cookieLo);
  }

  // -------------------------------------------------------------------------------------------
  // Flow control and closing

  private updateFlow(): void {
    if (this.phase === "closed") return;
    const buffered = this.queue.length + this.heldBytes + this.writer.bufferedBytes;
    const over =
      this.qosTimer !== null ||
      this.inFlight >= Limits.nbdMaxInFlightPerConn ||
      (buffered >= Limits.nbdMaxBufferedBytesPerConn && (this.inFlight > 0 || this.writer.bufferedBytes > 0));
    if (over && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!over && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private onWriterDrained(): void {
    if (this.tlsAwaitsDrain) {
      this.tlsAwaitsDrain = false;
      if (this.queue.length > 0) this.violation(new NbdDecodeError("starttls", `${this.queue.length} plaintext bytes arrived behind STARTTLS`));
      else this.beginTls();
      return;
    }
    if (this.disconnecting) this.finishIfIdle();
    else this.updateFlow();
  }

  /** After DISC: end once nothing is in flight and every reply byte left. */
  private finishIfIdle(): void {
    if (this.inFlight > 0 || this.phase === "closed") return;
    this.writer.flush();
    if (this.writer.bufferedBytes > 0) return; // onWriterDrained() comes back here
    consola.debug(`nbd: connection ${this.id} (${this.peer}): DISC after ${this.requestsServed} requests`);
    this.closeNow();
  }

  private violation(err: NbdDecodeError): boolean {
    consola.warn(`nbd: connection ${this.id} (${this.peer}, export "${this.exportName ?? "-"}"): protocol violation: ${err.toString()}; closing`);
    this.closeNow();
    return false;
  }

  private closeNow(): void {
    if (this.phase === "closed") return;
    this.writer.flush();
    this.clearHandshakeTimer();
    this.clearQosTimer();
    this.phase = "closed";
    this.queue.clear();
    this.writer.close();
    this.socket.end();
  }
}

const EMPTY = new Uint8Array(0);
