// The dashboard's two IO views (contract in docs/design.md, "Observability"):
// - liveSnapshot: GET /api/pf/live, the current Bwc window (5 s) as rates per volume, SDS, SDC;
// - systemSample: one history sample (GET /api/pf/history), system-wide, over the last report
//   interval (about 1 s).
// Rates: IOPS and bytes/s per second; latency is the mean in microseconds (0 without IO). For
// an SDS, reads are those it served as primary and writes those it applied as primary or
// secondary (copies are in rebuildBps / rebalanceBps). Volumes appear in /live only while some
// SDC reports them (mapped and recently heard from); every SDS and SDC of the system appears.

import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import { BYTES, client, CLIENT_CHANNELS, LAT_US, OPS, sds, SDS_CHANNELS } from "./io_channels.ts";
import { copyRates } from "./io_rollup.ts";
import type { HistorySample } from "./io_history.ts";

export interface IoRates {
  readIops: number;
  writeIops: number;
  readBps: number;
  writeBps: number;
  readLatencyUs: number;
  writeLatencyUs: number;
}

const round2 = (x: number) => Math.round(x * 100) / 100;
const meanUs = (latUsPerS: number, opsPerS: number) => (opsPerS > 0 ? Math.round((latUsPerS / opsPerS) * 10) / 10 : 0);

export function clientRates(r: Float64Array): IoRates {
  const ro = r[client("read", OPS)] ?? 0;
  const wo = r[client("write", OPS)] ?? 0;
  return {
    readIops: round2(ro),
    writeIops: round2(wo),
    readBps: Math.round(r[client("read", BYTES)] ?? 0),
    writeBps: Math.round(r[client("write", BYTES)] ?? 0),
    readLatencyUs: meanUs(r[client("read", LAT_US)] ?? 0, ro),
    writeLatencyUs: meanUs(r[client("write", LAT_US)] ?? 0, wo),
  };
}

export function sdsRates(r: Float64Array): IoRates & { rebuildBps: number; rebalanceBps: number } {
  const ro = r[sds("primaryRead", OPS)] ?? 0;
  const wo = (r[sds("primaryWrite", OPS)] ?? 0) + (r[sds("secondaryWrite", OPS)] ?? 0);
  const wl = (r[sds("primaryWrite", LAT_US)] ?? 0) + (r[sds("secondaryWrite", LAT_US)] ?? 0);
  const copies = copyRates(r);
  return {
    readIops: round2(ro),
    writeIops: round2(wo),
    readBps: Math.round(r[sds("primaryRead", BYTES)] ?? 0),
    writeBps: Math.round((r[sds("primaryWrite", BYTES)] ?? 0) + (r[sds("secondaryWrite", BYTES)] ?? 0)),
    readLatencyUs: meanUs(r[sds("primaryRead", LAT_US)] ?? 0, ro),
    writeLatencyUs: meanUs(wl, wo),
    rebuildBps: Math.round(copies.rebuildBps),
    rebalanceBps: Math.round(copies.rebalanceBps),
  };
}

export interface LiveSnapshot {
  t: number;
  windowMs: number;
  volumes: Record<string, IoRates>;
  sds: Record<string, IoRates & { rebuildBps: number; rebalanceBps: number }>;
  sdc: Record<string, IoRates>;
}

export function liveSnapshot(ctx: MdmContext): LiveSnapshot {
  const now = ctx.clock();
  const io = ctx.observe.io;
  const w = Limits.ioBwcWindowMs;
  const out: LiveSnapshot = { t: now, windowMs: w, volumes: {}, sds: {}, sdc: {} };
  for (const id of io.volumesWithWindows()) {
    const r = new Float64Array(CLIENT_CHANNELS);
    io.addVolumeRates(r, id, now, w);
    out.volumes[id] = clientRates(r);
  }
  for (const { id } of ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM sds ORDER BY id").all()) {
    const r = new Float64Array(SDS_CHANNELS);
    io.addSdsRates(r, id, now, w);
    out.sds[id] = sdsRates(r);
  }
  for (const { id } of ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY id").all()) {
    const r = new Float64Array(CLIENT_CHANNELS);
    io.addSdcRates(r, id, now, w);
    out.sdc[id] = clientRates(r);
  }
  return out;
}

/** System-wide rates over about the last second (one history sample). */
export function systemSample(ctx: MdmContext, nowMs: number): HistorySample {
  const io = ctx.observe.io;
  // back to the previous report (slots are >= ioWindowMinSlotMs apart): about one second
  const w = Limits.ioWindowMinSlotMs;
  const c = new Float64Array(CLIENT_CHANNELS);
  for (const id of io.reportingSdcs()) io.addSdcRates(c, id, nowMs, w);
  const s = new Float64Array(SDS_CHANNELS);
  for (const id of io.reportingSdss()) io.addSdsRates(s, id, nowMs, w);
  const copies = copyRates(s);
  return { t: nowMs, ...clientRates(c), rebuildBps: Math.round(copies.rebuildBps), rebalanceBps: Math.round(copies.rebalanceBps) };
}
