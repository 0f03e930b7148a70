// Batched, ordered frame output for one data-plane TCP socket (client and server side).
//
// Frames appended during one event-loop turn are copied back to back into one reusable output
// buffer and handed to the socket in ONE write at the end of the turn (a microtask), so a burst
// of small replies or forwarded 4 KiB writes costs one syscall, not one per frame, and no
// Buffer.concat. Bun's socket.write may take only part of the bytes: the rest is copied into
// an ordered backlog that the socket's `drain` handler sends; while a backlog exists, new
// batches queue behind it, so bytes always leave in the order frames were appended.
//
// Invariants: bytes are written in append order; a frame is never split between the batch
// buffer and a later frame; nothing is written after close().

import { HEADER_BYTES, encodeHeaderInto, type FrameHeader } from "./dataplane.ts";
import { Scatter, type Bytes } from "./scatter.ts";

/** The part of a Bun socket the writer uses (a fake in tests). */
export interface ByteSink {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

/** Payloads larger than this are written from the caller's buffer instead of being copied. */
const COPY_LIMIT_BYTES = 64 * 1024;
const INITIAL_BUFFER_BYTES = 256 * 1024;
/** Pieces of a Scatter up to this size are copied into the batch instead of written alone. */
const SMALL_PIECE_BYTES = 16 * 1024;
/** After a batch this large, drop the grown buffer so one huge reply does not pin memory. */
const SHRINK_ABOVE_BYTES = 4 * 1024 * 1024;

export class SocketWriter {
  private sink: ByteSink | null = null;
  private buf = new Uint8Array(INITIAL_BUFFER_BYTES);
  private view = new DataView(this.buf.buffer);
  private len = 0;
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;
  private flushQueued = false;
  private closed = false;
  private readonly flushTask = () => {
    this.flushQueued = false;
    this.flush();
  };

  /** A writer without a socket buffers until attach() (a client that is still connecting). */
  constructor(sink?: ByteSink) {
    if (sink) this.sink = sink;
  }

  attach(sink: ByteSink): void {
    if (this.closed) return;
    this.sink = sink;
    this.onDrain();
  }

  /** Bytes waiting for the socket (batch + backlog): callers use it as a backpressure signal. */
  get queuedBytes(): number {
    return this.len + this.backlogBytes;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Append one frame; h.payloadLength is set from the payload. A large payload is written from
   * the caller's buffer; what the socket does not take at once is copied, unless
   * `payloadImmutable` says the caller never changes that buffer again (then a view is kept).
   * A Scatter is written piece by piece from its (immutable) pieces, after the header.
   */
  frame(h: FrameHeader, payload?: Bytes, payloadImmutable = false): void {
    if (this.closed) return;
    const n = payload ? payload.byteLength : 0;
    h.payloadLength = n;
    if (payload instanceof Scatter) {
      this.ensure(HEADER_BYTES);
      encodeHeaderInto(this.view, this.len, h);
      this.len += HEADER_BYTES;
      // small pieces (a slow link delivers a payload a segment per data event) join the batch:
      // one write per large piece, never one per 1.5 KiB segment
      for (const p of payload.pieces) {
        if (this.closed) return;
        if (p.byteLength <= SMALL_PIECE_BYTES) {
          this.ensure(p.byteLength);
          this.buf.set(p, this.len);
          this.len += p.byteLength;
        } else {
          this.flush();
          this.writeLarge(p, true);
        }
      }
      this.schedule();
      return;
    }
    if (n > COPY_LIMIT_BYTES && payload) {
      this.ensure(HEADER_BYTES);
      encodeHeaderInto(this.view, this.len, h);
      this.len += HEADER_BYTES;
      this.flush();
      this.writeLarge(payload, payloadImmutable);
      return;
    }
    this.ensure(HEADER_BYTES + n);
    encodeHeaderInto(this.view, this.len, h);
    if (payload) this.buf.set(payload, this.len + HEADER_BYTES);
    this.len += HEADER_BYTES + n;
    this.schedule();
  }

  /**
   * Append a frame whose payload the caller fills in place (a READ reply read straight from the
   * device into the output buffer). The returned view is valid only until the next call.
   */
  frameWithPayloadSpace(h: FrameHeader, payloadBytes: number): Uint8Array {
    h.payloadLength = payloadBytes;
    if (this.closed) return new Uint8Array(payloadBytes);
    this.ensure(HEADER_BYTES + payloadBytes);
    encodeHeaderInto(this.view, this.len, h);
    const at = this.len + HEADER_BYTES;
    this.len += HEADER_BYTES + payloadBytes;
    this.schedule();
    return this.buf.subarray(at, at + payloadBytes);
  }

  /**
   * Take back the frame just appended by frameWithPayloadSpace (its payload could not be
   * produced, e.g. a device read failed). Only valid before any other append.
   */
  retractLast(frameBytes: number): void {
    if (this.closed) return;
    if (this.len < frameBytes) throw new Error("invariant broken: retracting more than the batch holds");
    this.len -= frameBytes;
  }

  /** Send the current batch now (also called at the end of the turn). */
  flush(): void {
    if (this.closed || this.len === 0) return;
    const len = this.len;
    this.len = 0;
    if (this.sink === null || this.backlog.length > 0) {
      this.pushBacklog(this.takeBatch(0, len));
      return;
    }
    const n = this.sink.write(this.buf, 0, len);
    if (n < 0) {
      this.close();
      return;
    }
    if (n < len) this.pushBacklog(this.takeBatch(n, len));
    else if (this.buf.byteLength > SHRINK_ABOVE_BYTES) this.replaceBuffer(INITIAL_BUFFER_BYTES);
  }

  /** Bytes [from, to) of the batch for the backlog: small tails are copied, big ones handed over. */
  private takeBatch(from: number, to: number): Uint8Array {
    if (to - from <= COPY_LIMIT_BYTES) return this.buf.slice(from, to);
    const handed = this.buf.subarray(from, to);
    this.replaceBuffer(INITIAL_BUFFER_BYTES);
    return handed;
  }

  private replaceBuffer(bytes: number): void {
    this.buf = new Uint8Array(bytes);
    this.view = new DataView(this.buf.buffer);
  }

  /** Call from the socket's drain handler: send as much backlog as the socket takes. */
  onDrain(): void {
    if (this.closed || this.sink === null) return;
    while (this.backlog.length > 0) {
      const head = this.backlog[0]!;
      const n = this.sink.write(head, 0, head.byteLength);
      if (n < 0) {
        this.close();
        return;
      }
      if (n < head.byteLength) {
        this.backlog[0] = head.subarray(n);
        this.backlogBytes -= n;
        return;
      }
      this.backlog.shift();
      this.backlogBytes -= n;
    }
    this.flush();
  }

  /** Drop everything queued; later appends are ignored. */
  close(): void {
    this.closed = true;
    this.backlog = [];
    this.backlogBytes = 0;
    this.len = 0;
    this.sink = null;
  }

  private writeLarge(bytes: Uint8Array, owned: boolean): void {
    if (this.sink === null || this.backlog.length > 0) {
      this.pushBacklog(owned ? bytes : bytes.slice());
      return;
    }
    const n = this.sink.write(bytes, 0, bytes.byteLength);
    if (n < 0) {
      this.close();
      return;
    }
    if (n < bytes.byteLength) this.pushBacklog(owned ? bytes.subarray(n) : bytes.slice(n));
  }

  private pushBacklog(bytes: Uint8Array): void {
    this.backlog.push(bytes);
    this.backlogBytes += bytes.byteLength;
  }

  /** Room for `extra` more bytes: send the batch so far rather than grow and copy it. */
  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.byteLength) return;
    if (this.len > 0) this.flush();
    if (this.len + extra <= this.buf.byteLength) return; // flush kept or replaced the buffer
    this.replaceBuffer(Math.max(INITIAL_BUFFER_BYTES, extra));
  }

  private schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(this.flushTask);
  }
}
