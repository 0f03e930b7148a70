// Flat channel layouts of the IO counters the MDM keeps per object (src/proto/io_report.ts made
// into Float64Arrays): every operation kind is three channels (ops, bytes, latency µs), in a
// fixed order, so windows and totals are plain typed arrays indexed by constants.
// Invariant: a layout's channel count is 3 x its operation kinds (+1 for a device's errors).

import type { DeviceIo, OpTotals, SdcVolumeIo, SdsIoReport } from "../../proto/io_report.ts";

export const OP_FIELDS = 3;
export const OPS = 0;
export const BYTES = 1;
export const LAT_US = 2;

/** What a client (an SDC, per volume) did: NBD requests as completed. */
export const CLIENT_KINDS = ["read", "write", "trim", "flush"] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];
export const CLIENT_CHANNELS = CLIENT_KINDS.length * OP_FIELDS;

/** What an SDS did: as primary, as secondary, and copies (rebuild = fwdRebuild, resync = bckRebuild, move = rebalance). */
export const SDS_KINDS = [
  "primaryRead",
  "primaryWrite",
  "primaryTrim",
  "secondaryWrite",
  "rebuildRead",
  "rebuildWrite",
  "resyncRead",
  "resyncWrite",
  "moveRead",
  "moveWrite",
] as const;
export type SdsKind = (typeof SDS_KINDS)[number];
export const SDS_CHANNELS = SDS_KINDS.length * OP_FIELDS;

/** What reached one device, its syncs, and its errors (one extra channel). */
export const DEVICE_KINDS = ["read", "write", "sync"] as const;
export type DeviceKind = (typeof DEVICE_KINDS)[number];
export const DEVICE_ERRORS = DEVICE_KINDS.length * OP_FIELDS;
export const DEVICE_CHANNELS = DEVICE_ERRORS + 1;

/** Channel index of field (OPS | BYTES | LAT_US) of an operation kind in its layout. */
export function channelOf<K extends string>(kinds: readonly K[], kind: K, field: number): number {
  return kinds.indexOf(kind) * OP_FIELDS + field;
}

export const client = (kind: ClientKind, field: number): number => channelOf(CLIENT_KINDS, kind, field);
export const sds = (kind: SdsKind, field: number): number => channelOf(SDS_KINDS, kind, field);
export const device = (kind: DeviceKind, field: number): number => channelOf(DEVICE_KINDS, kind, field);

function put(out: Float64Array, at: number, t: OpTotals): void {
  out[at + OPS] = t.ops;
  out[at + BYTES] = t.bytes;
  out[at + LAT_US] = t.latencyUs;
}

export function clientVector(v: SdcVolumeIo, out: Float64Array): Float64Array {
  put(out, client("read", 0), v.read);
  put(out, client("write", 0), v.write);
  put(out, client("trim", 0), v.trim);
  put(out, client("flush", 0), v.flush);
  return out;
}

export function sdsVector(r: SdsIoReport, out: Float64Array): Float64Array {
  put(out, sds("primaryRead", 0), r.primaryRead);
  put(out, sds("primaryWrite", 0), r.primaryWrite);
  put(out, sds("primaryTrim", 0), r.primaryTrim);
  put(out, sds("secondaryWrite", 0), r.secondaryWrite);
  put(out, sds("rebuildRead", 0), r.rebuild.read);
  put(out, sds("rebuildWrite", 0), r.rebuild.write);
  put(out, sds("resyncRead", 0), r.resync.read);
  put(out, sds("resyncWrite", 0), r.resync.write);
  put(out, sds("moveRead", 0), r.move.read);
  put(out, sds("moveWrite", 0), r.move.write);
  return out;
}

export function deviceVector(d: DeviceIo, out: Float64Array): Float64Array {
  put(out, device("read", 0), d.read);
  put(out, device("write", 0), d.write);
  put(out, device("sync", 0), d.sync);
  out[DEVICE_ERRORS] = d.errors;
  return out;
}
