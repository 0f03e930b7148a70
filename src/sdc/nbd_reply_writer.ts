// The send side of an NBD connection: encodes replies into a reusable staging buffer, batches all
// replies finished in one event-loop turn into one socket write, and queues what the socket did
// not take until `drain`.
//
// When to write: at the end of the current callback (a microtask) when the connection has no
// other request running (QD1: the reply leaves at once); while others run, at the end of the
// event-loop iteration (setImmediate), so replies completed by several data-plane sockets that
// were readable in the same poll share one write instead of one each (Bun dispatches every
// ready socket of a poll before it runs immediates, and polls again only after them).
//
// Invariants:
// - each reply (header + data) is appended whole, in one synchronous call, so replies never
//   interleave on the wire;
// - bytes leave in the order they were appended: once anything is queued (`pending`), new bytes go
//   behind it, never straight to the socket;
// - a partial socket write keeps the unwritten tail queued (bun-notes.md); nothing is dropped
//   unless the socket is closed;
// - the staging buffer is only reused after the socket took all of it; otherwise it is handed to
//   the queue and a new one is allocated.

import {
  CHUNK_HEADER_BYTES,
  OFFSET_DATA_PREFIX_BYTES,
  ReplyFlag,
  SIMPLE_REPLY_BYTES,
  errorChunkBytes,
  writeErrorChunk,
  writeNoneChunk,
  writeOffsetDataPrefix,
  writeSimpleReply,
} from "../proto/nbd.ts";
import { Limits } from "../proto/limits.ts";

/** The part of a Bun socket the writer needs (a fake one in unit tests). */
export interface ByteSink {
  /** bytes taken (may be fewer than asked), or -1 when closed */
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

const EMPTY_MESSAGE = new Uint8Array(0);

export class ReplyWriter {
  private staging = Buffer.allocUnsafe(Limits.nbdReplyStagingBytes);
  private stagingLen = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private closed = false;
  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  constructor(
    private readonly sink: ByteSink,
    /** called when queued bytes drop to zero after having been queued (to resume reading) */
    private readonly onDrained: () => void = () => {},
    /** other requests of the connection are still running: their replies may come in this loop iteration */
    private readonly moreExpected: () => boolean = () => false,
  ) {}

  /** bytes accepted but not yet taken by the socket */
  get bufferedBytes(): number {
    return this.stagingLen + this.pendingBytes;
  }

  /** Raw handshake bytes (option replies, greeting). */
  raw(bytes: Uint8Array): void {
    this.append(bytes);
  }

  simple(errno: number, cookieHi: number, cookieLo: number): void {
    const off = this.reserve(SIMPLE_REPLY_BYTES);
    this.stagingLen += writeSimpleReply(this.staging, off, errno, cookieHi, cookieLo);
    this.schedule();
  }

  /** Successful READ with simple replies: header then data. */
  simpleRead(cookieHi: number, cookieLo: number, data: Uint8Array): void {
    const off = this.reserve(SIMPLE_REPLY_BYTES);
    this.stagingLen += writeSimpleReply(this.staging, off, 0, cookieHi, cookieLo);
    this.append(data);
  }

  /** Successful READ with structured replies: one OFFSET_DATA chunk flagged DONE (NONE if empty). */
  structuredRead(cookieHi: number, cookieLo: number, offsetBytes: number, data: Uint8Array): void {
    if (data.length === 0) {
      const off = this.reserve(CHUNK_HEADER_BYTES);
      this.stagingLen += writeNoneChunk(this.staging, off, cookieHi, cookieLo);
      this.schedule();
      return;
    }
    const off = this.reserve(OFFSET_DATA_PREFIX_BYTES);
    this.stagingLen += writeOffsetDataPrefix(this.staging, off, ReplyFlag.DONE, cookieHi, cookieLo, offsetBytes, data.length);
    this.append(data);
  }

  /** Failed READ with structured replies: one ERROR chunk flagged DONE, empty message. */
  structuredError(cookieHi: number, cookieLo: number, errno: number): void {
    const n = errorChunkBytes(0);
    const off = this.reserve(n);
    this.stagingLen += writeErrorChunk(this.staging, off, ReplyFlag.DONE, cookieHi, cookieLo, errno, EMPTY_MESSAGE);
    this.schedule();
  }

  /** Drop everything: the socket is gone. */
  close(): void {
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.stagingLen = 0;
  }

  /** Write what the socket takes now; queue the rest. */
  flush(): void {
    if (this.closed) return;
    if (this.stagingLen > 0) {
      if (this.pending.length === 0) {
        const n = this.sink.write(this.staging, 0, this.stagingLen);
        if (n < 0) return this.close();
        if (n === this.stagingLen) {
          this.stagingLen = 0; // fast path: the staging buffer is reused
          return;
        }
        this.queue(this.staging.subarray(n, this.stagingLen));
        this.newStaging();
        return;
      }
      this.sealStaging();
    }
    this.writePending();
  }

  /** Socket `drain`: continue with the queue. */
  onDrain(): void {
    if (this.closed) return;
    const had = this.pendingBytes > 0;
    this.flush();
    if (had && this.pendingBytes === 0) this.onDrained();
  }

  private writePending(): void {
    while (this.pending.length > 0) {
      const p = this.pending[0];
      if (p === undefined) break;
      const n = this.sink.write(p);
      if (n < 0) return this.close();
      if (n === p.length) {
        this.pending.shift();
        this.pendingBytes -= n;
        continue;
      }
      this.pending[0] = p.subarray(n);
      this.pendingBytes -= n;
      return;
    }
  }

  /** Space for n (small) bytes in staging; returns the offset to write at. */
  private reserve(n: number): number {
    if (this.stagingLen + n > this.staging.length) this.sealStaging();
    return this.stagingLen;
  }

  /** Append bytes behind everything else: small ones are copied into staging, big ones queued as they are. */
  private append(bytes: Uint8Array): void {
    if (bytes.length <= Limits.nbdReplyCopyMaxBytes) {
      const off = this.reserve(bytes.length);
      this.staging.set(bytes, off);
      this.stagingLen += bytes.length;
    } else {
      this.sealStaging();
      this.queue(bytes);
    }
    this.schedule();
  }

  private sealStaging(): void {
    if (this.stagingLen === 0) return;
    this.queue(this.staging.subarray(0, this.stagingLen));
    this.newStaging();
  }

  private newStaging(): void {
    this.staging = Buffer.allocUnsafe(Limits.nbdReplyStagingBytes);
    this.stagingLen = 0;
  }

  private queue(bytes: Uint8Array): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  /** One flush per event-loop turn: replies completed in the same turn share a socket write. */
  private schedule(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    if (this.moreExpected()) setImmediate(this.flushTask);
    else queueMicrotask(this.flushTask);
  }
}
