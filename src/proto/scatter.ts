// A large frame payload kept as the socket chunks it arrived in (views of them), instead of being
// reassembled into one buffer: the SDS writes it to its device and forwards it to its peers from
// the pieces, so a 1 MiB write costs the SDS no user-space copy of its own (Bun's copy of the
// bytes into each `data` event's Buffer is the only one left; docs/design.md "1 MiB writes").
//
// Invariants: the pieces are views of buffers nobody writes into again (Bun hands each `data`
// event a fresh Buffer); their lengths add up to byteLength; flat() copies them once, into a pooled
// buffer (payload_pool.ts) that the header names so that the reply gives it back.

import { assert } from "./errors.ts";
import { takePayload } from "./payload_pool.ts";

export class Scatter {
  private flatCopy: Uint8Array | null = null;

  constructor(
    readonly pieces: readonly Uint8Array[],
    readonly byteLength: number,
    /** the request it belongs to: flat() records its pooled copy there (FrameHeader.pooledPayload) */
    private readonly owner: { pooledPayload?: Uint8Array } | null = null,
  ) {}

  /** The payload in one buffer (copied once, on the first call; the slow paths use it). */
  flat(): Uint8Array {
    if (this.flatCopy !== null) return this.flatCopy;
    const out = takePayload(this.byteLength);
    let at = 0;
    for (const p of this.pieces) {
      out.set(p, at);
      at += p.byteLength;
    }
    assert(at === this.byteLength, "Scatter: pieces do not add up to its length");
    this.flatCopy = out;
    if (this.owner !== null) this.owner.pooledPayload = out;
    return out;
  }
}

/** A payload as a frame carries it: one buffer, or the pieces it arrived in. */
export type Bytes = Uint8Array | Scatter;

/** One buffer holding `b` (a Scatter is copied once). */
export function flatOf(b: Bytes): Uint8Array {
  return b instanceof Scatter ? b.flat() : b;
}

/**
 * Walk bytes [from, from + n) of `s` in segments that never cross a multiple of `seg` of the
 * destination position (`destPos` is where byte `from` goes): a segment inside one piece is
 * handed out as a view of it; one that straddles pieces (at most one per piece boundary) is
 * copied into `scratch` (≥ seg bytes). `fn` must be done with the view when it returns.
 */
export function forEachSegment(s: Scatter, from: number, n: number, destPos: number, seg: number, scratch: Uint8Array, fn: (view: Uint8Array, pos: number) => void): void {
  assert(from >= 0 && n >= 0 && from + n <= s.byteLength && scratch.byteLength >= seg, "Scatter.forEachSegment out of range");
  const pieces = s.pieces;
  // locate the piece holding byte `from`
  let pi = 0;
  let pieceStart = 0;
  while (pi < pieces.length && pieceStart + pieces[pi]!.byteLength <= from) {
    pieceStart += pieces[pi]!.byteLength;
    pi++;
  }
  let at = from; // payload position
  const end = from + n;
  while (at < end) {
    const pos = destPos + (at - from);
    const segEnd = Math.min(end, at + (seg - (pos % seg)));
    const len = segEnd - at;
    const piece = pieces[pi]!;
    const inPiece = at - pieceStart;
    if (inPiece + len <= piece.byteLength) {
      fn(piece.subarray(inPiece, inPiece + len), pos);
    } else {
      let filled = 0;
      while (filled < len) {
        const p = pieces[pi]!;
        const off = at + filled - pieceStart;
        const k = Math.min(len - filled, p.byteLength - off);
        scratch.set(p.subarray(off, off + k), filled);
        filled += k;
        if (off + k === p.byteLength) {
          pieceStart += p.byteLength;
          pi++;
        }
      }
      fn(scratch.subarray(0, len), pos);
      at = segEnd;
      continue;
    }
    at = segEnd;
    if (at - pieceStart === piece.byteLength) {
      pieceStart += piece.byteLength;
      pi++;
    }
  }
}
