// The IO counters of one SDC, as its NBD clients saw their requests complete: per mapped volume
// (pf_volume_{read,write,trim,flush}_*{volume,volume_id}) and for the whole SDC
// (pf_sdc_io_*{sdc_id,op}). TRIM and WRITE_ZEROES count as trim; flush carries no bytes. The
// same series feed /metrics and the cumulative SdcIoReport of every heartbeat.
//
// Invariants: a volume's meters are made when it is first exported and kept, by volume id, for
// the life of the process (at most Limits.sdcMaxMeteredVolumes): an unmapped and remapped volume
// continues its counts, so they never drop within one incarnation; a renamed volume keeps its
// series under the new name label; completed() allocates nothing.

import { Cmd } from "../proto/nbd.ts";
import { IoFamilies, ioMetricsEnabled, type IoMeter } from "../proto/io_meter.ts";
import type { SdcIoReport, SdcVolumeIo } from "../proto/io_report.ts";
import { PfError } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import type { CounterSeries, MetricRegistry } from "../proto/metrics.ts";
import type { ExportMeter } from "./nbd_export.ts";

export type SdcOp = "read" | "write" | "trim" | "flush";
const OPS: readonly SdcOp[] = ["read", "write", "trim", "flush"];

interface OpMeters {
  read: IoMeter;
  write: IoMeter;
  trim: IoMeter;
  flush: IoMeter;
}

/** The meters of one volume; also counts into the SDC-wide meters. */
export class VolumeMeter implements ExportMeter {
  constructor(
    readonly volumeId: string,
    public name: string,
    readonly ops: OpMeters,
    private readonly sdc: OpMeters,
    private readonly flushLocal: CounterSeries,
  ) {}

  flushedLocally(): void {
    this.flushLocal.inc();
  }

  completed(cmd: number, lengthBytes: number, seconds: number, ok: boolean): void {
    switch (cmd) {
      case Cmd.READ:
        return done(this.ops.read, this.sdc.read, lengthBytes, seconds, ok);
      case Cmd.WRITE:
        return done(this.ops.write, this.sdc.write, lengthBytes, seconds, ok);
      case Cmd.TRIM:
      case Cmd.WRITE_ZEROES:
        return done(this.ops.trim, this.sdc.trim, lengthBytes, seconds, ok);
      case Cmd.FLUSH:
        return done(this.ops.flush, this.sdc.flush, 0, seconds, ok);
      default:
        return; // CACHE, DISC and refused commands never reach the export
    }
  }

  report(): SdcVolumeIo {
    return { volumeId: this.volumeId, read: this.ops.read.totals(), write: this.ops.write.totals(), trim: this.ops.trim.totals(), flush: this.ops.flush.totals() };
  }
}

function done(vol: IoMeter, sdc: IoMeter, bytes: number, seconds: number, ok: boolean): void {
  if (ok) {
    vol.record(bytes, seconds);
    sdc.record(bytes, seconds);
  } else {
    vol.fail();
    sdc.fail();
  }
}

export class SdcMetrics {
  private readonly volumes = new Map<string, VolumeMeter>();
  private readonly volumeFamilies: Record<SdcOp, IoFamilies>;
  private readonly sdcOps: OpMeters;
  /** pf_sdc_flush_local_total: FLUSHes answered without reaching an SDS (volume_io.ts) */
  private readonly flushLocal: CounterSeries;

  constructor(
    readonly registry: MetricRegistry,
    readonly sdcId: string,
  ) {
    const fam = (op: SdcOp) =>
      new IoFamilies(registry, {
        opsName: `pf_volume_${op}_ops_total`,
        bytesName: op === "flush" ? undefined : `pf_volume_${op}_bytes_total`,
        latencyName: `pf_volume_${op}_latency_seconds`,
        errorsName: `pf_volume_${op}_errors_total`,
        what: `NBD ${op === "trim" ? "TRIM and WRITE_ZEROES" : op.toUpperCase()} requests on the volume, as this SDC answered them`,
        labelNames: ["volume", "volume_id"],
      });
    this.volumeFamilies = { read: fam("read"), write: fam("write"), trim: fam("trim"), flush: fam("flush") };
    const sdc = new IoFamilies(registry, {
      opsName: "pf_sdc_io_ops_total",
      bytesName: "pf_sdc_io_bytes_total",
      latencyName: "pf_sdc_io_latency_seconds",
      errorsName: "pf_sdc_io_errors_total",
      what: "NBD requests on every volume of this SDC (op=trim includes WRITE_ZEROES; flush carries no bytes)",
      labelNames: ["sdc_id", "op"],
    });
    this.sdcOps = { read: sdc.meter(sdcId, "read"), write: sdc.meter(sdcId, "write"), trim: sdc.meter(sdcId, "trim"), flush: sdc.meter(sdcId, "flush") };
    this.flushLocal = registry
      .counter({
        name: "pf_sdc_flush_local_total",
        help: "NBD FLUSH requests this SDC answered without sending a FLUSH to any SDS: every write acknowledged since the last completed flush was durable on every copy (writeThrough pool or FUA).",
        labelNames: ["sdc_id"],
      })
      .with(sdcId);
  }

  /** The meter of a volume being exported (made on first export, kept afterwards). */
  volume(volumeId: string, name: string): VolumeMeter {
    const found = this.volumes.get(volumeId);
    if (found !== undefined) {
      if (found.name !== name) {
        for (const op of OPS) this.volumeFamilies[op].relabel(found.ops[op], name, volumeId);
        found.name = name;
      }
      return found;
    }
    if (this.volumes.size >= Limits.sdcMaxMeteredVolumes) {
      throw new PfError("TOO_BIG", `sdc: IO counters kept for ${this.volumes.size} volumes (limit ${Limits.sdcMaxMeteredVolumes}); restart the SDC to start over`);
    }
    const m = (op: SdcOp) => this.volumeFamilies[op].meter(name, volumeId);
    const v = new VolumeMeter(volumeId, name, { read: m("read"), write: m("write"), trim: m("trim"), flush: m("flush") }, this.sdcOps, this.flushLocal);
    this.volumes.set(volumeId, v);
    return v;
  }

  /** Cumulative counters for the heartbeat (io_report.ts). */
  report(incarnation: string, nbd: { connections: number; inflightIos: number }): SdcIoReport {
    const volumes: SdcVolumeIo[] = [];
    if (ioMetricsEnabled) for (const v of this.volumes.values()) volumes.push(v.report());
    return { incarnation, volumes, nbdConnections: nbd.connections, inflightIos: nbd.inflightIos };
  }
}
