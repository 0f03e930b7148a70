// Chunks that must be zeroed before a layer may take them (virgin space of a device whose content
// is unknown, or chunks freed by TRIM/unassign that the cleaner has not zeroed yet), prepared OFF
// the event loop: the zeros are written and made durable through the device's group commit (and,
// for a reused chunk, its release through the metadata's) before the chunk is handed to a write.
// While that runs, the extent's later writes, zeroes and copies wait in its gate, in arrival
// order, so overlapping operations still apply in the order they arrived (the replication order
// rule of sds_node.ts). Reads do not wait: an unacknowledged write may or may not be visible.
//
// A preparation does not map anything: it leaves zeroed allocations in the gate
// (`prepared`), and ExtentStore.take() hands those out before asking the allocator, under the
// same all-or-nothing commit (copy-on-write, pending marks, dirty/watermark rows) as any chunk.
//
// Copy-on-write copies are prepared the same way: a write of a layer into part of a chunk a
// parent layer holds needs the parent's bytes in a new chunk first. The gate allocates it, reads
// the parent's chunk and writes it into the new one with async IO (Bun's thread pool, not the
// event loop), and leaves it in `copies` with the parent chunk it read and the extent's layout
// generation then. take() uses it only if the chunk still resolves to that parent chunk and no
// physical chunk of the extent left a mapping since (else the parent chunk may have been freed
// and reused while it was read): otherwise it is discarded (dirty) and take() copies on the loop.
//
// Invariants:
// - no fdatasync on the event loop for a gated operation: every sync here goes through
//   group_commit.ts;
// - a prepared chunk is durable zeros, and a reused one's release is durable, before any write
//   can land in it (else a power cut could map it back to its old owner, which would then read
//   this extent's data);
// - the gate's ops run in the order they were queued; an op that itself needs a preparation goes
//   back to the front and the rest wait behind it;
// - a prepared copy is never mapped with bytes other than its parent chunk's (checks above);
//   one nobody took goes back dirty (it holds data), so the cleaner zeroes it before reuse;
// - a preparation that fails gives its allocations back and answers the first op needing them
//   with its status (the device is Failed, or NO_SPACE), never loops; prepared chunks nobody
//   took are given back when the gate empties.

import { Status } from "../proto/dataplane.ts";
import type { Allocation } from "./chunk_allocator.ts";

/** Ops of one extent waiting behind a chunk preparation. */
export interface ExtentGate {
  ops: (() => void)[];
  /** a preparation runs */
  preparing: boolean;
  /** the queued ops are being run now (an op running from the gate may proceed) */
  running: boolean;
  /** the last preparation failed: ops that still need one get this status (for this round) */
  failed: Status | null;
  /** zeroed (durable) allocations not taken yet */
  prepared: Allocation[];
  /** copy-on-write copies made off the loop, not taken yet */
  copies: PreparedCopy[];
}

/** A copy-on-write a write needs: layer `layerKey` takes `chunk`, whose content is at `fromPhys`. */
export interface CopyWant {
  layerKey: number;
  chunk: number;
  fromPhys: number;
  bytes: number;
}

/** A copy made: `a` holds the bytes of `fromPhys` as they were at layout generation `layoutGen`. */
export interface PreparedCopy extends CopyWant {
  a: Allocation;
  layoutGen: number;
}

/** What a preparation needs from the store. */
export interface PrepHost<E> {
  /** allocate n chunks in memory (null: not enough space) */
  allocate(e: E, n: number): Allocation[] | null;
  /** give back allocations that were not taken */
  unallocate(e: E, got: Allocation[]): void;
  /** durable releases (metadata group commit) */
  metaDurable(): Promise<void>;
  /** write zeros into these chunks and make them durable (device group commit) */
  zeroDurably(e: E, got: Allocation[]): Promise<void>;
  /** read `bytes` of physical chunk fromPhys and write them into `to`, off the loop */
  copyInto(e: E, fromPhys: number, to: Allocation, bytes: number): Promise<void>;
  /** give back allocations that may hold bytes (they go dirty) */
  discard(e: E, got: Allocation[]): void;
  /** the extent was dropped or the store stopped meanwhile */
  gone(e: E): boolean;
  /** status for a failure of the preparation */
  failureStatus(err: unknown): Status;
}

/** Prepare n chunks for e into g.prepared. */
export async function prepareChunks<E>(host: PrepHost<E>, e: E, g: ExtentGate, n: number): Promise<Status> {
  if (n <= 0) return Status.OK;
  const got = host.allocate(e, n);
  if (got === null) return Status.NO_SPACE;
  try {
    if (got.some((a) => a.zeroFirst && a.was === "dirty")) await host.metaDurable();
    await host.zeroDurably(e, got);
  } catch (err) {
    host.unallocate(e, got);
    return host.failureStatus(err);
  }
  if (host.gone(e)) {
    host.unallocate(e, got);
    return Status.UNAVAILABLE;
  }
  g.prepared.push(...got);
  return Status.OK;
}

/**
 * Make the copies `wants` into new allocations, into g.copies. `layoutGen`: the extent's layout
 * generation when `wants` were resolved (a chunk freed since makes them stale).
 */
export async function prepareCopies<E>(host: PrepHost<E>, e: E, g: ExtentGate, wants: readonly CopyWant[], layoutGen: number): Promise<Status> {
  if (wants.length === 0) return Status.OK;
  const got = host.allocate(e, wants.length);
  if (got === null) return Status.NO_SPACE;
  try {
    // a dirty chunk's release must be durable before other data lands in it (see zeroing above);
    // the copy overwrites the whole chunk, so it needs no zeros first
    if (got.some((a) => a.zeroFirst && a.was === "dirty")) await host.metaDurable();
    await Promise.all(wants.map((w, i) => host.copyInto(e, w.fromPhys, got[i]!, w.bytes)));
  } catch (err) {
    host.discard(e, got);
    return host.failureStatus(err);
  }
  if (host.gone(e)) {
    host.discard(e, got);
    return Status.UNAVAILABLE;
  }
  for (let i = 0; i < wants.length; i++) g.copies.push({ ...wants[i]!, a: got[i]!, layoutGen });
  return Status.OK;
}
