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
// Invariants:
// - no fdatasync on the event loop for a gated operation: every sync here goes through
//   group_commit.ts;
// - a prepared chunk is durable zeros, and a reused one's release is durable, before any write
//   can land in it (else a power cut could map it back to its old owner, which would then read
//   this extent's data);
// - the gate's ops run in the order they were queued; an op that itself needs a preparation goes
//   back to the front and the rest wait behind it;
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
