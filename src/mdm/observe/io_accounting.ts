// IO accounting of the MDM: the cumulative `io` counters of every SDS and SDC heartbeat
// (src/proto/io_report.ts) turned into per-object totals since this MDM started (for /metrics)
// and sliding windows (for the Bwc statistics, /api/pf/live and the history ring).
//
// Objects: Volume (summed over the SDCs that report it), Sdc (summed over its volumes), Sds,
// Device. Pools, protection domains and the system are sums computed by the readers
// (io_rollup.ts), never stored. State is proportional to volumes x reporting SDCs + SDSs +
// devices, never to extents or IOs.
//
// Invariants: no delta is ever negative. The first report this MDM sees from a reporter is a
// baseline (its counters ran before we knew them: no IO is invented); a new `incarnation`
// means the process restarted and its counters began at zero, so the new values are the IO
// since that restart; a counter that drops within one incarnation (a broken peer) is taken as
// a new baseline for that series, never as negative IO.

import consola from "consola";
import type { SdcIoReport, SdsIoReport } from "../../proto/io_report.ts";
import { Limits } from "../../proto/limits.ts";
import { CLIENT_CHANNELS, clientVector, DEVICE_CHANNELS, deviceVector, SDS_CHANNELS, sdsVector } from "./io_channels.ts";
import { ReportClock, SeriesWindow } from "./io_window.ts";

type SeriesKind = "self" | "volume" | "device";

interface Tracked {
  kind: SeriesKind;
  /** the object's id (the reporter's own for "self") */
  id: string;
  win: SeriesWindow;
  /** raw counters of the last report (to difference against) */
  prev: Float64Array;
  /** the reporter's report number this series was last in */
  seenSeq: number;
}

interface Reporter {
  clock: ReportClock;
  incarnation: string;
  /** reports received (marks which series a report contained) */
  seq: number;
  /** by object id (ids are unique across types), the reporter's own series under SELF */
  series: Map<string, Tracked>;
}

const SELF = "self";

/** A reporter silent this long past the window counts as idle (its IO is unknown): two missed heartbeats. */
const staleAfter = (windowMs: number) => windowMs + 2 * Limits.heartbeatIntervalMs;

/** Add src into the totals of `key` in map (created at zero). */
function addTotal(map: Map<string, Float64Array>, key: string, channels: number, src: Float64Array): void {
  let t = map.get(key);
  if (!t) {
    t = new Float64Array(channels);
    map.set(key, t);
  }
  for (let c = 0; c < channels; c++) t[c] = (t[c] ?? 0) + (src[c] ?? 0);
}

export class IoAccounting {
  private readonly sdcs = new Map<string, Reporter>();
  private readonly sdss = new Map<string, Reporter>();
  /** windows of each volume, one per SDC reporting it */
  private readonly volumeWindows = new Map<string, Set<SeriesWindow>>();
  private readonly deviceWindows = new Map<string, SeriesWindow>();

  /** totals since this MDM started (client layout for volumes and SDCs) */
  readonly volumeTotals = new Map<string, Float64Array>();
  readonly sdcTotals = new Map<string, Float64Array>();
  readonly sdsTotals = new Map<string, Float64Array>();
  readonly deviceTotals = new Map<string, Float64Array>();
  /** what reporters told us besides counters (SDC NBD connections, in-flight IOs) */
  readonly sdcGauges = new Map<string, { nbdConnections: number; inflightIos: number }>();
  /** reporter restarts seen (new incarnation), for logs and tests */
  restartsSeen = 0;

  private readonly rawClient = new Float64Array(CLIENT_CHANNELS);
  private readonly rawSds = new Float64Array(SDS_CHANNELS);
  private readonly rawDevice = new Float64Array(DEVICE_CHANNELS);
  private readonly delta = new Float64Array(Math.max(CLIENT_CHANNELS, SDS_CHANNELS, DEVICE_CHANNELS));
  private readonly sdcSum = new Float64Array(CLIENT_CHANNELS);

  // ---- ingest ----

  ingestSdc(sdcId: string, report: SdcIoReport, nowMs: number): void {
    const { rep, phase } = this.reporter(this.sdcs, sdcId, report.incarnation, nowMs, "SDC");
    this.sdcGauges.set(sdcId, { nbdConnections: report.nbdConnections, inflightIos: report.inflightIos });
    this.sdcSum.fill(0);
    for (const v of report.volumes) {
      const t = this.tracked(rep, "volume", v.volumeId, CLIENT_CHANNELS, (w) => this.indexVolume(v.volumeId, w));
      const d = this.step(t, clientVector(v, this.rawClient), phase, CLIENT_CHANNELS);
      addTotal(this.volumeTotals, v.volumeId, CLIENT_CHANNELS, d);
      for (let c = 0; c < CLIENT_CHANNELS; c++) this.sdcSum[c] = (this.sdcSum[c] ?? 0) + (d[c] ?? 0);
    }
    // the SDC's own series is the sum of its volumes' deltas (a volume leaving the report is no negative IO)
    this.tracked(rep, "self", SELF, CLIENT_CHANNELS, () => undefined).win.add(this.sdcSum);
    addTotal(this.sdcTotals, sdcId, CLIENT_CHANNELS, this.sdcSum);
    this.finish(rep);
  }

  ingestSds(sdsId: string, report: SdsIoReport, nowMs: number): void {
    const { rep, phase } = this.reporter(this.sdss, sdsId, report.incarnation, nowMs, "SDS");
    const self = this.tracked(rep, "self", SELF, SDS_CHANNELS, () => undefined);
    addTotal(this.sdsTotals, sdsId, SDS_CHANNELS, this.step(self, sdsVector(report, this.rawSds), phase, SDS_CHANNELS));
    for (const dev of report.devices) {
      const t = this.tracked(rep, "device", dev.deviceId, DEVICE_CHANNELS, (w) => this.deviceWindows.set(dev.deviceId, w));
      addTotal(this.deviceTotals, dev.deviceId, DEVICE_CHANNELS, this.step(t, deviceVector(dev, this.rawDevice), phase, DEVICE_CHANNELS));
    }
    this.finish(rep);
  }

  /** The reporter's state for this report, and whether the report is a baseline, a restart or a continuation. */
  private reporter(
    map: Map<string, Reporter>,
    id: string,
    incarnation: string,
    nowMs: number,
    what: string,
  ): { rep: Reporter; phase: "baseline" | "restart" | "next" } {
    let rep = map.get(id);
    let phase: "baseline" | "restart" | "next" = "next";
    if (!rep) {
      rep = { clock: new ReportClock(), incarnation, seq: 0, series: new Map() };
      map.set(id, rep);
      phase = "baseline";
    } else if (rep.incarnation !== incarnation) {
      consola.info(`mdm: ${what} ${id} restarted (IO counters of incarnation ${incarnation} start at zero)`);
      rep.incarnation = incarnation;
      for (const t of rep.series.values()) t.prev.fill(0);
      this.restartsSeen++;
      phase = "restart";
    }
    rep.clock.advance(nowMs);
    rep.seq++;
    return { rep, phase };
  }

  private tracked(rep: Reporter, kind: SeriesKind, id: string, channels: number, onCreate: (w: SeriesWindow) => void): Tracked {
    let t = rep.series.get(id);
    if (!t) {
      t = { kind, id, win: new SeriesWindow(rep.clock, channels), prev: new Float64Array(channels), seenSeq: 0 };
      rep.series.set(id, t);
      onCreate(t.win);
    }
    t.seenSeq = rep.seq;
    t.win.absentReports = 0;
    return t;
  }

  /** The non-negative delta of raw against the series' last report; adds it to the window. Returns a scratch array. */
  private step(t: Tracked, raw: Float64Array, phase: "baseline" | "restart" | "next", channels: number): Float64Array {
    const d = this.delta;
    let dropped = false;
    for (let c = 0; c < channels; c++) {
      const now = raw[c] ?? 0;
      const before = t.prev[c] ?? 0;
      if (phase === "baseline") d[c] = 0;
      else if (now >= before) d[c] = now - before;
      else {
        d[c] = 0;
        dropped = true;
      }
      t.prev[c] = now;
    }
    if (dropped) consola.debug("mdm: an IO counter went down within one incarnation; taken as a new baseline");
    t.win.add(d.subarray(0, channels));
    return d.subarray(0, channels);
  }

  /** Commit every series of the reporter to its newest slot; drop series absent for too long. */
  private finish(rep: Reporter): void {
    for (const [key, t] of rep.series) {
      if (t.seenSeq !== rep.seq && ++t.win.absentReports > Limits.ioSeriesAbsentReports) {
        rep.series.delete(key);
        this.unindex(t);
        continue;
      }
      t.win.commit();
    }
  }

  private indexVolume(volumeId: string, w: SeriesWindow): void {
    let set = this.volumeWindows.get(volumeId);
    if (!set) {
      set = new Set();
      this.volumeWindows.set(volumeId, set);
    }
    set.add(w);
  }

  private unindex(t: Tracked): void {
    switch (t.kind) {
      case "volume": {
        const set = this.volumeWindows.get(t.id);
        set?.delete(t.win);
        if (set?.size === 0) this.volumeWindows.delete(t.id);
        return;
      }
      case "device":
        if (this.deviceWindows.get(t.id) === t.win) this.deviceWindows.delete(t.id);
        return;
      case "self":
        return;
      default: {
        const never: never = t.kind;
        throw new Error(`unknown series kind ${String(never)}`);
      }
    }
  }

  // ---- forgetting removed objects ----

  /** Drop totals and windows of objects that no longer exist (called now and then with the current ids). */
  retain(existing: { volumes: ReadonlySet<string>; sdcs: ReadonlySet<string>; sdss: ReadonlySet<string>; devices: ReadonlySet<string> }): void {
    for (const id of [...this.volumeTotals.keys()]) if (!existing.volumes.has(id)) this.volumeTotals.delete(id);
    for (const id of [...this.deviceTotals.keys()]) if (!existing.devices.has(id)) this.deviceTotals.delete(id);
    for (const [id] of [...this.sdcs]) {
      if (existing.sdcs.has(id)) continue;
      this.dropReporter(this.sdcs, id);
      this.sdcTotals.delete(id);
      this.sdcGauges.delete(id);
    }
    for (const [id] of [...this.sdss]) {
      if (existing.sdss.has(id)) continue;
      this.dropReporter(this.sdss, id);
      this.sdsTotals.delete(id);
    }
  }

  private dropReporter(map: Map<string, Reporter>, id: string): void {
    const rep = map.get(id);
    if (!rep) return;
    for (const t of rep.series.values()) this.unindex(t);
    map.delete(id);
  }

  // ---- reading windows: rates per second of each channel, added into out ----

  addVolumeRates(out: Float64Array, volumeId: string, nowMs: number, windowMs: number): void {
    for (const w of this.volumeWindows.get(volumeId) ?? []) w.addRates(out, nowMs, windowMs, staleAfter(windowMs));
  }

  addSdcRates(out: Float64Array, sdcId: string, nowMs: number, windowMs: number): void {
    this.sdcs.get(sdcId)?.series.get(SELF)?.win.addRates(out, nowMs, windowMs, staleAfter(windowMs));
  }

  addSdsRates(out: Float64Array, sdsId: string, nowMs: number, windowMs: number): void {
    this.sdss.get(sdsId)?.series.get(SELF)?.win.addRates(out, nowMs, windowMs, staleAfter(windowMs));
  }

  addDeviceRates(out: Float64Array, deviceId: string, nowMs: number, windowMs: number): void {
    this.deviceWindows.get(deviceId)?.addRates(out, nowMs, windowMs, staleAfter(windowMs));
  }

  /** Volumes with a window (reported by some SDC recently). */
  volumesWithWindows(): IterableIterator<string> {
    return this.volumeWindows.keys();
  }

  reportingSdcs(): IterableIterator<string> {
    return this.sdcs.keys();
  }

  reportingSdss(): IterableIterator<string> {
    return this.sdss.keys();
  }
}
