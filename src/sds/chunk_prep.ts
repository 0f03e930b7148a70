// Chunks that must be zeroed before they are mapped (virgin space of a device whose content is
// unknown, or chunks freed by TRIM/unassign that the cleaner has not zeroed yet), prepared OFF the
// event loop: the zeros are written, made durable through the device's group commit (and, for a
// reused chunk, its release through the metadata's), and only then is the chunk mapped. While that
// runs, the extent's later writes, zeroes and copies wait in its gate, in arrival order, so
// overlapping operations still apply in the order they arrived (the replication order rule of
// sds_node.ts). Reads do not wait: an unacknowledged write may or may not be visible.
//
// Invariants:
// - no fdatasync on the event loop: every sync here goes through group_commit.ts;
// - a chunk is mapped (sqlite row, then memory) only after its zeros are durable, and a reused
//   chunk only after the transaction that released it is durable (else a power cut could map it
//   back to its old extent, which would then read this extent's data);
// - the gate's ops run in the order they were queued; an op that itself needs a preparation goes
//   back to the front and the rest wait behind it;
// - a preparation that fails leaves its chunks unmapped and answers the first op needing them
//   with its status (the device is Failed, or NO_SPACE), never loops.

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
}

/** What a preparation needs from the store. */
export interface PrepHost<E> {
  /** allocate every missing chunk of [first, last] in memory (null: not enough space) */
  allocateMissing(e: E, first: number, last: number): { chunk: number; a: Allocation }[] | null;
  /** give back allocations that were not mapped */
  unallocate(e: E, got: { a: Allocation }[]): void;
  /** durable releases (metadata group commit) */
  metaDurable(): Promise<void>;
  /** write zeros into these chunks and make them durable (device group commit) */
  zeroDurably(e: E, got: { a: Allocation }[]): Promise<void>;
  /** persist the mapping (one sqlite transaction) and map in memory; throws on failure */
  map(e: E, got: { chunk: number; a: Allocation }[]): void;
  /** the extent was dropped or the store stopped meanwhile */
  gone(e: E): boolean;
  /** status for a failure of the preparation */
  failureStatus(err: unknown): Status;
}

export async function prepareChunks<E>(host: PrepHost<E>, e: E, first: number, last: number): Promise<Status> {
  const got = host.allocateMissing(e, first, last);
  if (got === null) return Status.NO_SPACE;
  if (got.length === 0) return Status.OK;
  try {
    if (got.some((g) => g.a.zeroFirst && g.a.was === "dirty")) await host.metaDurable();
    await host.zeroDurably(e, got);
    if (host.gone(e)) {
      host.unallocate(e, got);
      return Status.UNAVAILABLE;
    }
    host.map(e, got);
    return Status.OK;
  } catch (err) {
    host.unallocate(e, got);
    return host.failureStatus(err);
  }
}
