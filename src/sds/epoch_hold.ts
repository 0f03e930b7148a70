// Holding forwarded frames that are ahead of this SDS's assignments, instead of refusing them.
//
// The MDM's new epoch reaches the SDSs of an extent at different heartbeats. When the primary
// has applied it and this SDS (its secondary or sync target) has not yet, the primary's
// forwarded frames name an epoch newer than the one held here, or an extent not assigned here
// yet. Refusing them would make the primary report a failed forward, and the MDM would take a
// healthy copy out of the in-sync set (a degraded pool with every SDS up). So such a frame waits
// for the assignments to catch up, and so does everything behind it on its connection.
//
// Invariants:
// - per connection, frames are handled in arrival order: once one frame is held, every later
//   frame of that connection (whatever its opcode or extent) queues behind it. Forwarded writes
//   to one peer travel over one ordered connection, so a write is never applied before an
//   earlier one nor after a later one of the same primary; nothing is ever retried;
// - only frames a peer SDS forwards are held (REPL_WRITE, REPL_ZERO, REBUILD_WRITE, REBUILD_OWNERS from a
//   connection authenticated as an SDS) and only while `behind` says so; everything else is
//   handled at once, exactly as before;
// - a held frame is handled, exactly as it would have been on arrival but with the assignments
//   of then, as soon as one of these holds: (a) it is no longer behind (an assignment applied);
//   (b) the MDM answered a heartbeat sent after the frame arrived (this SDS's assignments are
//   then at least as new as the primary's: whatever they say is final, so a copy that really
//   left is refused at once); (c) it waited Limits.sdsEpochHoldMs. The primary acknowledges
//   nothing meanwhile (its write waits for this reply), so "never acknowledge a write before both
//   copies hold it" is untouched; a frame refused after (b) or (c) is a real failed forward;
// - bounded: at most Limits.sdsEpochHoldMaxFrames frames and Limits.sdsEpochHoldMaxBytes payload
//   bytes per connection; at either cap the connection stops reading (RequestConn.holdReading)
//   until the hold ends, so the primary is pushed back by TCP, never refused;
// - frames of a connection that closed are dropped unhandled (no reply can reach the primary,
//   which counts them failed); timers die with the hold, and close() ends every hold.

import { consola } from "consola";
import { Op, type Frame, type FrameHeader } from "../proto/dataplane.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { Limits } from "../proto/limits.ts";
import type { RequestConn } from "./dataplane_server.ts";

export interface EpochHoldDeps {
  /** the SDS, for logs */
  sdsId: string;
  /** true while the frame is ahead of this SDS's assignments (newer epoch, or an extent not held) */
  behind(h: FrameHeader): boolean;
  /** handle a frame now, as on arrival */
  handle(conn: RequestConn, f: Frame): void;
  /** the MDM has news for this SDS: ask it now (runSds sends a heartbeat early) */
  askMdm(): void;
  waitMs?: number;
  maxFrames?: number;
  maxBytes?: number;
}

export interface EpochHoldStats {
  /** holds begun (a first frame found ahead of the assignments on an idle connection) */
  holds: number;
  /** frames that waited */
  framesHeld: number;
  /** frames handed on because their assignment caught up (a), or as final (b), or timed out (c) */
  caughtUp: number;
  final: number;
  timedOut: number;
  /** times a connection stopped reading at the frame or byte cap */
  capReached: number;
  /** most frames one connection held at once */
  maxQueued: number;
  /** frames dropped because their connection closed while they waited */
  droppedClosed: number;
}

interface HeldFrame {
  f: Frame;
  /** performance.now() at arrival (the wait bound) */
  arrivedMs: number;
  /** heartbeats begun before it arrived (a later one's answer makes it final) */
  beatsBefore: number;
  /** a forwarded frame that was behind when it arrived; the others only keep their place */
  waits: boolean;
}

type Outcome = "caughtUp" | "final" | "timedOut";

class ConnHold {
  readonly frames: HeldFrame[] = [];
  bytes = 0;
  readingHeld = false;
  timer: ReturnType<typeof setTimeout> | null = null;
  readonly startedMs = performance.now();
}

export class EpochHolds {
  readonly stats: EpochHoldStats = { holds: 0, framesHeld: 0, caughtUp: 0, final: 0, timedOut: 0, capReached: 0, maxQueued: 0, droppedClosed: 0 };
  private readonly held = new Map<RequestConn, ConnHold>();
  private readonly waitMs: number;
  private readonly maxFrames: number;
  private readonly maxBytes: number;
  /** heartbeats begun, and the newest one whose answer brought the assignments up to date */
  private beatsBegun = 0;
  private beatsCurrent = 0;
  private closed = false;

  constructor(private readonly deps: EpochHoldDeps) {
    this.waitMs = deps.waitMs ?? Limits.sdsEpochHoldMs;
    this.maxFrames = deps.maxFrames ?? Limits.sdsEpochHoldMaxFrames;
    this.maxBytes = deps.maxBytes ?? Limits.sdsEpochHoldMaxBytes;
  }

  /** Frames held now, over every connection. */
  get heldFrames(): number {
    let n = 0;
    for (const h of this.held.values()) n += h.frames.length;
    return n;
  }

  /**
   * A frame arrived: true when it was taken (queued behind a hold, or it starts one); false when
   * the caller handles it now.
   */
  offer(conn: RequestConn, f: Frame): boolean {
    if (this.closed) return false;
    const waits = isForwarded(conn, f.header) && this.deps.behind(f.header);
    let hold = this.held.size === 0 ? undefined : this.held.get(conn);
    const fresh = hold === undefined;
    if (hold === undefined) {
      if (!waits) return false;
      hold = this.begin(conn, f.header);
    }
    hold.frames.push({ f, arrivedMs: performance.now(), beatsBefore: this.beatsBegun, waits });
    // after the frame is queued: a heartbeat begun from here on counts as "sent after it arrived"
    if (fresh) this.deps.askMdm();
    hold.bytes += (f.scatter ?? f.payload).byteLength; // a Scatter is counted, not flattened
    if (waits) this.stats.framesHeld++;
    if (hold.frames.length > this.stats.maxQueued) this.stats.maxQueued = hold.frames.length;
    if (!hold.readingHeld && (hold.frames.length >= this.maxFrames || hold.bytes >= this.maxBytes)) {
      hold.readingHeld = true;
      this.stats.capReached++;
      conn.holdReading(true);
    }
    if (hold.timer === null) this.arm(conn, hold);
    return true;
  }

  /** Assignments were applied: hand on every frame no longer behind (per connection, in order). */
  assignmentsApplied(): void {
    for (const conn of [...this.held.keys()]) this.release(conn);
  }

  /** A heartbeat is being sent; returns its number for heartbeatAnswered. */
  heartbeatBegun(): number {
    return ++this.beatsBegun;
  }

  /** The MDM answered heartbeat `beat` and the assignments are up to date with that answer. */
  heartbeatAnswered(beat: number): void {
    if (beat <= this.beatsCurrent) return;
    this.beatsCurrent = beat;
    this.assignmentsApplied();
  }

  close(): void {
    this.closed = true;
    for (const [conn, hold] of [...this.held]) this.end(conn, hold);
  }

  private begin(conn: RequestConn, h: FrameHeader): ConnHold {
    const hold = new ConnHold();
    this.held.set(conn, hold);
    this.stats.holds++;
    consola.debug(`sds ${this.deps.sdsId}: SDS ${conn.nodeId} forwarded a frame ahead of this SDS's assignments (${extentName(h)} epoch ${h.epoch}); holding its connection and asking the MDM`);
    return hold;
  }

  /** Hand on the frames at the head of `conn`'s queue that may go; end the hold when it is empty. */
  private release(conn: RequestConn): void {
    const hold = this.held.get(conn);
    if (hold === undefined) return;
    const now = performance.now();
    const refused: HeldFrame[] = [];
    while (!conn.closed && hold.frames.length > 0) {
      const x = hold.frames[0]!;
      const outcome = this.outcome(x, now);
      if (outcome === null) break;
      hold.frames.shift();
      hold.bytes -= (x.f.scatter ?? x.f.payload).byteLength;
      if (x.waits) {
        this.stats[outcome]++;
        if (outcome !== "caughtUp") refused.push(x);
      }
      this.deps.handle(conn, x.f);
    }
    if (refused.length > 0) this.warnRefused(conn, refused, now);
    if (hold.frames.length === 0 || conn.closed) {
      this.end(conn, hold);
      return;
    }
    if (hold.timer !== null) clearTimeout(hold.timer);
    hold.timer = null;
    this.arm(conn, hold);
  }

  /** Why a held frame may go now, or null while it must still wait. */
  private outcome(x: HeldFrame, now: number): Outcome | null {
    if (!x.waits || !this.deps.behind(x.f.header)) return "caughtUp";
    if (this.beatsCurrent > x.beatsBefore) return "final";
    if (now - x.arrivedMs >= this.waitMs - 1) return "timedOut";
    return null;
  }

  /** One line per release for the frames handed on still ahead of the assignments (they are refused). */
  private warnRefused(conn: RequestConn, refused: HeldFrame[], now: number): void {
    const first = refused[0]!;
    const h = first.f.header;
    const timedOut = refused.some((x) => this.beatsCurrent <= x.beatsBefore);
    const why = timedOut ? `no assignment with that epoch came within ${this.waitMs} ms` : "the MDM's answer since they arrived does not give this SDS that epoch";
    consola.warn(
      `sds ${this.deps.sdsId}: ${refused.length} frame(s) forwarded by SDS ${conn.nodeId} (first: ${extentName(h)} epoch ${h.epoch}, waited ${Math.round(now - first.arrivedMs)} ms): ${why}; handled as they stand (refused)`,
    );
  }

  private arm(conn: RequestConn, hold: ConnHold): void {
    const head = hold.frames[0];
    if (head === undefined) return;
    const delay = Math.max(0, head.arrivedMs + this.waitMs - performance.now());
    hold.timer = setTimeout(() => {
      hold.timer = null;
      this.release(conn);
    }, delay);
  }

  private end(conn: RequestConn, hold: ConnHold): void {
    if (hold.timer !== null) clearTimeout(hold.timer);
    hold.timer = null;
    this.held.delete(conn);
    if (conn.closed) this.stats.droppedClosed += hold.frames.length;
    consola.debug(`sds ${this.deps.sdsId}: hold of SDS ${conn.nodeId}'s connection ended after ${Math.round(performance.now() - hold.startedMs)} ms`);
    if (hold.readingHeld && !conn.closed) conn.holdReading(false);
  }
}

/** Frames that may wait: what a peer SDS forwards (writes, zeroes, copied chunks and their owner lists). */
export function isForwarded(conn: Pick<RequestConn, "role">, h: FrameHeader): boolean {
  if (conn.role !== NodeRole.SDS) return false;
  return h.opcode === Op.REPL_WRITE || h.opcode === Op.REPL_ZERO || h.opcode === Op.REBUILD_WRITE || h.opcode === Op.REBUILD_OWNERS;
}

function extentName(h: FrameHeader): string {
  return `extent ${h.volumeHi.toString(16).padStart(8, "0")}${h.volumeLo.toString(16).padStart(8, "0")}/${h.extentIndex}`;
}
