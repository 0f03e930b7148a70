// IO counters that SDSs and SDCs report to the MDM in every heartbeat (once a second, never per
// IO): cumulative, monotonic totals since the reporting process started. The MDM turns the
// differences between reports into PowerFlex Bwc windows and cluster-wide Prometheus series.
//
// Invariants: every counter only grows within one `incarnation` (a random id drawn at process
// start); a new incarnation means the process restarted and its counters began again at zero,
// so the MDM must not read a drop as negative IO. Lists are bounded by the number of volumes an
// SDC has mapped and the devices an SDS has (never by extents or IOs). Latency sums are in
// microseconds (PowerFlex latency Bwc: totalWeightInKb carries microseconds).

import { z } from "zod";

const id16 = z.string().regex(/^[0-9a-f]{16}$/, "expected a 16-hex-digit id");
const counter = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** One kind of operation: how many, how many bytes, and the sum of their latencies. */
export const OpTotals = z.object({ ops: counter, bytes: counter, latencyUs: counter });
export type OpTotals = z.infer<typeof OpTotals>;

export const zeroOpTotals = (): OpTotals => ({ ops: 0, bytes: 0, latencyUs: 0 });

/** The client's view of one mapped volume (NBD requests as the SDC completed them). */
export const SdcVolumeIo = z.object({
  volumeId: id16,
  read: OpTotals,
  write: OpTotals,
  /** TRIM and WRITE_ZEROES */
  trim: OpTotals,
  flush: OpTotals,
});
export type SdcVolumeIo = z.infer<typeof SdcVolumeIo>;

export const SdcIoReport = z.object({
  incarnation: z.string().min(1).max(64),
  volumes: z.array(SdcVolumeIo).max(65_536),
  nbdConnections: counter,
  inflightIos: counter,
});
export type SdcIoReport = z.infer<typeof SdcIoReport>;

/** One device of an SDS: what reached the block file or device, and its syncs. */
export const DeviceIo = z.object({
  deviceId: id16,
  read: OpTotals,
  write: OpTotals,
  /** fdatasync calls and their time */
  sync: OpTotals,
  /** read or write errors the device returned */
  errors: counter,
});
export type DeviceIo = z.infer<typeof DeviceIo>;

/** Copy traffic of one kind (PowerFlex names: rebuild = fwdRebuild, resync = bckRebuild, move = rebalance). */
export const CopyIo = z.object({ read: OpTotals, write: OpTotals });
export type CopyIo = z.infer<typeof CopyIo>;

export const SdsIoReport = z.object({
  incarnation: z.string().min(1).max(64),
  /** requests from SDCs this SDS served as an extent's primary */
  primaryRead: OpTotals,
  primaryWrite: OpTotals,
  primaryTrim: OpTotals,
  /** forwarded writes (and trims/zeroes) it applied as a secondary or copy target */
  secondaryWrite: OpTotals,
  /** bytes it read as a copy source and wrote as a copy target, per kind of copy */
  rebuild: CopyIo,
  resync: CopyIo,
  move: CopyIo,
  devices: z.array(DeviceIo).max(64),
});
export type SdsIoReport = z.infer<typeof SdsIoReport>;
