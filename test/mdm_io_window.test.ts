// The MDM's IO accounting as heartbeats feed it (no HTTP): the first report is a baseline, a
// restarted reporter (new incarnation) counts from zero and never gives negative IO, a counter
// going down is no negative IO either, the 5 s window is exact whatever the heartbeat phase or
// rate, an idle or silent object answers numSeconds 5 with zero counts, and the history ring is
// fixed-size and ordered.

import { describe, expect, test } from "bun:test";
import { Limits } from "../src/proto/limits.ts";
import { IoAccounting } from "../src/mdm/observe/io_accounting.ts";
import { BYTES, client, CLIENT_CHANNELS, LAT_US, OPS, sds, SDS_CHANNELS } from "../src/mdm/observe/io_channels.ts";
import { bwcOf, clientBwcs, latencyBwcOf, sdsBwcs } from "../src/mdm/observe/io_rollup.ts";
import { IoHistory, type HistorySample } from "../src/mdm/observe/io_history.ts";
import { grow, SdcCounters, SdsCounters } from "./helpers/io_reports.ts";

const VOL = "aaaaaaaa00000001";
const SDC = "bbbbbbbb00000001";
const SDS = "cccccccc00000001";
const DEV = "dddddddd00000001";
const T0 = 1_700_000_000_000;
const W = Limits.ioBwcWindowMs;

function volumeRates(io: IoAccounting, now: number, windowMs = W): Float64Array {
  const r = new Float64Array(CLIENT_CHANNELS);
  io.addVolumeRates(r, VOL, now, windowMs);
  return r;
}

/** An SDC doing `iops` 4 KiB writes of 200 µs on VOL, reporting every intervalMs (+ jitter). */
function runSdc(io: IoAccounting, c: SdcCounters, opts: { fromMs: number; seconds: number; iops: number; intervalMs?: number; jitterMs?: (i: number) => number }): number {
  const interval = opts.intervalMs ?? 1000;
  let t = opts.fromMs;
  let last = t;
  const end = opts.fromMs + opts.seconds * 1000;
  for (let i = 0; t < end; i++) {
    const next = opts.fromMs + (i + 1) * interval + (opts.jitterMs?.(i) ?? 0);
    grow(c.vol(VOL).write, Math.round(((next - last) / 1000) * opts.iops), 4096, 200);
    last = next;
    t = next;
    io.ingestSdc(SDC, c.report(), t);
  }
  return t;
}

describe("IO windows from cumulative heartbeat counters", () => {
  test("the first report is a baseline: counters that ran before this MDM knew them are no IO", () => {
    const io = new IoAccounting();
    const c = new SdcCounters();
    grow(c.vol(VOL).write, 1_000_000, 4096, 100);
    io.ingestSdc(SDC, c.report(), T0);
    io.ingestSdc(SDC, c.report(), T0 + 1000);
    expect(volumeRates(io, T0 + 1000)[client("write", OPS)]).toBe(0);
    expect(io.volumeTotals.get(VOL)![client("write", OPS)]).toBe(0);
  });

  test("a steady 500 IOPS writer reads as 500 IOPS, 2000 KiB/s and 200 µs, in Bwc numOccured/numSeconds too", () => {
    const io = new IoAccounting();
    const c = new SdcCounters();
    io.ingestSdc(SDC, c.report(), T0);
    const now = runSdc(io, c, { fromMs: T0, seconds: 10, iops: 500 });
    const r = volumeRates(io, now);
    expect(r[client("write", OPS)]).toBeCloseTo(500, 6);
    expect(r[client("write", BYTES)]).toBeCloseTo(500 * 4096, 3);
    expect(r[client("write", LAT_US)]! / r[client("write", OPS)]!).toBeCloseTo(200, 6);
    const b = clientBwcs(r);
    expect(b.userDataWriteBwc).toEqual({ numOccured: 2500, numSeconds: 5, totalWeightInKb: 10000 });
    expect(b.userDataSdcWriteLatency).toEqual({ numOccured: 2500, numSeconds: 5, totalWeightInKb: 500_000 });
    expect(b.userDataReadBwc).toEqual({ numOccured: 0, numSeconds: 5, totalWeightInKb: 0 });
    // the SDC's own figures are the sum of its volumes
    const s = new Float64Array(CLIENT_CHANNELS);
    io.addSdcRates(s, SDC, now, W);
    expect(s[client("write", OPS)]).toBeCloseTo(500, 6);
    expect(io.sdcTotals.get(SDC)![client("write", OPS)]).toBe(5000);
  });

  test("heartbeat jitter (±300 ms) does not move the rate: the window divides by the real span", () => {
    const io = new IoAccounting();
    const c = new SdcCounters();
    io.ingestSdc(SDC, c.report(), T0);
    const jitter = (i: number) => [0, 290, -170, 60, -300, 240, 10, -90][i % 8]!;
    const now = runSdc(io, c, { fromMs: T0, seconds: 20, iops: 500, jitterMs: jitter });
    const iops = volumeRates(io, now)[client("write", OPS)]!;
    expect(Math.abs(iops - 500) / 500).toBeLessThan(0.01);
  });

  test("a reporter heart-beating every 250 ms folds into ~1 s slots and still spans the whole window", () => {
    const io = new IoAccounting();
    const s = new SdsCounters();
    io.ingestSds(SDS, s.report(), T0);
    let t = T0;
    // 20 s idle, then 8 s at 100 MiB/s of rebuild writes: the 5 s window must see only the latter
    for (let i = 0; i < 112; i++) {
      t += 250;
      if (i >= 80) grow(s.r.rebuild.write, 25, 1 << 20, 0);
      io.ingestSds(SDS, s.report(), t);
    }
    const r = new Float64Array(SDS_CHANNELS);
    io.addSdsRates(r, SDS, t, W);
    expect(r[sds("rebuildWrite", BYTES)]! / (1 << 20)).toBeCloseTo(100, 6);
    expect(sdsBwcs(r).fwdRebuildWriteBwc.totalWeightInKb).toBe(500 * 1024);
    // about one second back (the history sample's span)
    const h = new Float64Array(SDS_CHANNELS);
    io.addSdsRates(h, SDS, t, Limits.ioWindowMinSlotMs);
    expect(h[sds("rebuildWrite", BYTES)]! / (1 << 20)).toBeCloseTo(100, 6);
  });

  test("a restart (new incarnation) counts from zero; counters smaller than before are never negative IO", () => {
    const io = new IoAccounting();
    const c = new SdcCounters("first");
    io.ingestSdc(SDC, c.report(), T0);
    let now = runSdc(io, c, { fromMs: T0, seconds: 6, iops: 1000 });
    expect(io.volumeTotals.get(VOL)![client("write", OPS)]).toBe(6000);
    // the SDC process restarts: its counters begin again at zero and it did 300 writes since
    c.restart("second");
    grow(c.vol(VOL).write, 300, 4096, 200);
    now += 1000;
    io.ingestSdc(SDC, c.report(), now);
    expect(io.restartsSeen).toBe(1);
    expect(io.volumeTotals.get(VOL)![client("write", OPS)]).toBe(6300);
    const r = volumeRates(io, now);
    for (let ch = 0; ch < CLIENT_CHANNELS; ch++) expect(r[ch]!).toBeGreaterThanOrEqual(0);
    // a broken peer whose counter goes down within one incarnation: a new baseline, no negative IO
    c.vol(VOL).write.ops = 10;
    now += 1000;
    io.ingestSdc(SDC, c.report(), now);
    expect(io.volumeTotals.get(VOL)![client("write", OPS)]).toBe(6300);
    expect(volumeRates(io, now)[client("write", OPS)]!).toBeGreaterThanOrEqual(0);
  });

  test("idle and silent: numSeconds stays 5 with zero counts; a silent reporter's IO is none, not its last rate forever", () => {
    const io = new IoAccounting();
    const c = new SdcCounters();
    io.ingestSdc(SDC, c.report(), T0);
    const now = runSdc(io, c, { fromMs: T0, seconds: 6, iops: 0 });
    expect(clientBwcs(volumeRates(io, now)).userDataWriteBwc).toEqual({ numOccured: 0, numSeconds: 5, totalWeightInKb: 0 });
    const busy = runSdc(io, c, { fromMs: now, seconds: 6, iops: 100 });
    expect(volumeRates(io, busy)[client("write", OPS)]).toBeCloseTo(100, 6);
    // the SDC stops reporting (killed): after the window and two missed heartbeats it counts as idle
    const later = busy + W + 2 * Limits.heartbeatIntervalMs + 1;
    expect(clientBwcs(volumeRates(io, later)).userDataWriteBwc).toEqual({ numOccured: 0, numSeconds: 5, totalWeightInKb: 0 });
    // an object nobody ever reported
    expect(clientBwcs(new Float64Array(CLIENT_CHANNELS)).userDataTrimBwc).toEqual({ numOccured: 0, numSeconds: 5, totalWeightInKb: 0 });
  });

  test("a Bwc never has numSeconds 0, whatever the rates (property over random rates)", () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let i = 0; i < 1000; i++) {
      const ops = rnd() < 0.3 ? 0 : rnd() * 1e6;
      const b = bwcOf(ops, ops * 4096 * rnd());
      const l = latencyBwcOf(ops, ops * 1000 * rnd());
      for (const x of [b, l]) {
        expect(x.numSeconds).toBe(5);
        expect(Number.isInteger(x.numOccured) && Number.isInteger(x.totalWeightInKb)).toBe(true);
        expect(x.numOccured).toBeGreaterThanOrEqual(0);
      }
    }
  });

  test("device counters and a device leaving the report; totals of removed objects are forgotten", () => {
    const io = new IoAccounting();
    const s = new SdsCounters();
    s.dev(DEV);
    io.ingestSds(SDS, s.report(), T0);
    let t = T0;
    for (let i = 0; i < 6; i++) {
      t += 1000;
      grow(s.dev(DEV).write, 50, 8192, 80);
      io.ingestSds(SDS, s.report(), t);
    }
    expect(io.deviceTotals.get(DEV)![3]).toBe(300); // write ops channel
    io.retain({ volumes: new Set(), sdcs: new Set(), sdss: new Set([SDS]), devices: new Set() });
    expect(io.deviceTotals.has(DEV)).toBe(false);
    expect(io.sdsTotals.has(SDS)).toBe(true);
    io.retain({ volumes: new Set(), sdcs: new Set(), sdss: new Set(), devices: new Set() });
    expect(io.sdsTotals.has(SDS)).toBe(false);
    expect([...io.reportingSdss()]).toEqual([]);
  });
});

describe("history ring", () => {
  const sample = (t: number, v: number): HistorySample => ({ t, readIops: v, writeIops: v, readBps: v, writeBps: v, readLatencyUs: v, writeLatencyUs: v, rebuildBps: v, rebalanceBps: v });

  test("keeps the last N samples, oldest first; seconds selects the tail; a clock step back is skipped", () => {
    const h = new IoHistory(600);
    for (let i = 0; i < 1000; i++) h.push(sample(T0 + i * 1000, i));
    expect(h.size).toBe(600);
    const all = h.since(T0 + 999_000, 600);
    expect(all.length).toBe(600);
    expect(all[0]!.writeIops).toBe(400);
    expect(all.at(-1)!.writeIops).toBe(999);
    expect(all.every((s, i) => i === 0 || s.t > all[i - 1]!.t)).toBe(true);
    expect(h.since(T0 + 999_000, 10).map((s) => s.readIops)).toEqual([990, 991, 992, 993, 994, 995, 996, 997, 998, 999]);
    h.push(sample(T0, -1));
    expect(h.since(T0 + 999_000, 1).map((s) => s.readIops)).toEqual([999]);
  });
});
