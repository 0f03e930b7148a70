// Ordering between a copy's frames and client forwards when they travel on different peer links
// (the copy lane, sds_node.ts): a primary sends its copies' REBUILD_OWNERS / REBUILD_WRITE frames
// on a connection of their own to the target, so a client write's forward never queues behind
// 1 MiB copy frames on the one ordered forward link (measured: docs/design.md, "Client latency
// during a copy").
//
// What must hold (durability-and-resync.md §7(c)): a client write applied on the primary AFTER a
// chunk copy read its data must land on the target after that copy's frames. On one ordered link
// the send order gave that for free. With two links it is kept here, on the primary: from the
// synchronous step that reads a chunk and queues its frames until the target answered the last of
// them (the target applies a frame before it answers it), the chunk is "in flight" for that
// (extent, target); a forward to that target overlapping an in-flight chunk is held, and sent on
// the forward link once every chunk it overlaps is answered. A forward overlapping a forward held
// before it (same extent and target) is held behind it too, so overlapping forwards keep their
// order. Forwards of other ranges pass at once: their order relative to copy frames does not
// matter (a forward applied before the copy's read is contained in the data read; one of another
// chunk does not meet it).
//
// Invariants:
// - a chunk is in flight from before its first copy frame is queued until its last frame's reply
//   (OK or not: every request gets exactly one reply callback, dataplane_client.ts), so a held
//   forward is always released;
// - held forwards of one (extent, target) leave in the order they were held, and none leaves
//   before an earlier held forward overlapping it;
// - costs nothing per forward while the extent has no copy in flight (one field test), and
//   memory proportional to chunks in flight plus forwards held.

const CHUNK_BITS = 20; // Limits.thinChunkBytes = 1 MiB (asserted by the caller's chunk numbering)

interface Held {
  first: number;
  last: number;
  send: () => void;
}

/** One (extent, target): chunks whose copy frames are unanswered, and forwards held behind them. */
class LaneState {
  /** chunk -> copy frames of it not yet answered */
  readonly inFlight = new Map<number, number>();
  readonly held: Held[] = [];
}

/** The copy-lane ordering of one extent (Extent.copyOrder; null while nothing is in flight or held). */
export class CopyOrder {
  private readonly byTarget = new Map<string, LaneState>();

  /** Nothing in flight nor held: the extent drops this object. */
  get idle(): boolean {
    return this.byTarget.size === 0;
  }

  /** `frames` copy frames of `chunk` are about to be queued to `target`. */
  begin(target: string, chunk: number, frames: number): void {
    let s = this.byTarget.get(target);
    if (s === undefined) {
      s = new LaneState();
      this.byTarget.set(target, s);
    }
    s.inFlight.set(chunk, (s.inFlight.get(chunk) ?? 0) + frames);
  }

  /** One copy frame of `chunk` to `target` was answered; releases what no longer waits. */
  end(target: string, chunk: number): void {
    const s = this.byTarget.get(target);
    if (s === undefined) return;
    const n = (s.inFlight.get(chunk) ?? 0) - 1;
    if (n > 0) {
      s.inFlight.set(chunk, n);
      return;
    }
    s.inFlight.delete(chunk);
    this.release(target, s);
  }

  /**
   * Send a forward of [offset, offset+length) to `target` now, or hold it until the copies and
   * held forwards it overlaps are answered / sent. True when it was held.
   */
  holdIfNeeded(target: string, offset: number, length: number, send: () => void): boolean {
    const s = this.byTarget.get(target);
    if (s === undefined) return false;
    const first = offset >>> CHUNK_BITS;
    const last = length === 0 ? first : (offset + length - 1) >>> CHUNK_BITS;
    if (!blocked(s, first, last, s.held.length)) return false;
    s.held.push({ first, last, send });
    return true;
  }

  private release(target: string, s: LaneState): void {
    // in order: a forward leaves once no chunk it overlaps is in flight and no forward held
    // before it (still held) overlaps it
    for (let i = 0; i < s.held.length; ) {
      const h = s.held[i]!;
      if (blocked(s, h.first, h.last, i)) {
        i++;
        continue;
      }
      s.held.splice(i, 1);
      h.send();
    }
    if (s.inFlight.size === 0 && s.held.length === 0) this.byTarget.delete(target);
  }
}

/** A range [first, last] of chunks overlaps a chunk in flight, or one of the first `before` held forwards. */
function blocked(s: LaneState, first: number, last: number, before: number): boolean {
  for (let c = first; c <= last; c++) if (s.inFlight.has(c)) return true;
  for (let i = 0; i < before; i++) {
    const h = s.held[i]!;
    if (h.first <= last && first <= h.last) return true;
  }
  return false;
}
