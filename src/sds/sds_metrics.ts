// The IO counters of one SDS: requests it served as an extent's primary (from SDCs), writes it
// applied as a secondary or copy target (forwarded by a primary), copy traffic (rebuild, resync,
// move) read as a source and written as a target, and per device the IO that reached the block
// file or device (device_meter.ts records those). One set of series feeds both views: /metrics
// (the families below) and the cumulative SdsIoReport in every heartbeat (report()).
//
// Invariants: every series is made here, at start or when a device is opened, never on the IO
// path; labels are sds_id, role, op, kind, device_id, path: bounded by the SDS's devices, never
// by extents; counts only grow within one incarnation (a random id per process start).

import { IoFamilies, sumTotals, type IoMeter } from "../proto/io_meter.ts";
import type { DeviceIo, SdsIoReport } from "../proto/io_report.ts";
import type { CounterSeries, Family, MetricRegistry } from "../proto/metrics.ts";

/** Why a copy is made (PowerFlex: rebuild = fwdRebuild, resync = bckRebuild, move = rebalance). */
export type CopyKind = "rebuild" | "resync" | "move";
export const COPY_KINDS: readonly CopyKind[] = ["rebuild", "resync", "move"];

export type DeviceOp = "read" | "write";

/** The meters of one device: what reached it through the kernel, its syncs and its errors. */
export class DeviceMeters {
  constructor(
    readonly deviceId: string,
    readonly read: IoMeter,
    readonly write: IoMeter,
    /** fdatasync calls (no bytes) */
    readonly sync: IoMeter,
    readonly readErrors: CounterSeries,
    readonly writeErrors: CounterSeries,
    readonly syncErrors: CounterSeries,
  ) {}

  /** read, write and sync errors together (the report's `errors`) */
  errorCount(): number {
    return this.readErrors.value + this.writeErrors.value + this.syncErrors.value;
  }
}

export class SdsMetrics {
  readonly primaryRead: IoMeter;
  readonly primaryWrite: IoMeter;
  /** TRIM and WRITE_ZEROES from SDCs */
  readonly primaryTrim: IoMeter;
  /** REPL_WRITE applied as a secondary or target */
  readonly secondaryWrite: IoMeter;
  /** REPL_ZERO applied as a secondary or target */
  readonly secondaryTrim: IoMeter;
  /** chunks read here as a copy source, by kind */
  readonly copyRead: Readonly<Record<CopyKind, IoMeter>>;
  /** REBUILD_WRITE frames applied here as a copy target, by kind */
  readonly copyWrite: Readonly<Record<CopyKind, IoMeter>>;
  private readonly devices: DeviceMeters[] = [];
  private readonly deviceIo: IoFamilies;
  private readonly deviceSync: IoFamilies;
  private readonly deviceErrors: Family<CounterSeries>;

  constructor(
    readonly registry: MetricRegistry,
    readonly sdsId: string,
  ) {
    const io = new IoFamilies(registry, {
      opsName: "pf_sds_io_ops_total",
      bytesName: "pf_sds_io_bytes_total",
      latencyName: "pf_sds_io_latency_seconds",
      errorsName: "pf_sds_io_errors_total",
      what: "Data-plane requests this SDS served: role=primary from SDCs (latency until every copy holds a write), role=secondary forwarded by a primary (local apply)",
      labelNames: ["sds_id", "role", "op"],
    });
    this.primaryRead = io.meter(sdsId, "primary", "read");
    this.primaryWrite = io.meter(sdsId, "primary", "write");
    this.primaryTrim = io.meter(sdsId, "primary", "trim");
    this.secondaryWrite = io.meter(sdsId, "secondary", "write");
    this.secondaryTrim = io.meter(sdsId, "secondary", "trim");
    const copy = new IoFamilies(registry, {
      opsName: "pf_sds_copy_ops_total",
      bytesName: "pf_sds_copy_bytes_total",
      latencyName: "pf_sds_copy_latency_seconds",
      what: "Extent copy traffic (kind=rebuild|resync|move): op=read chunks read here as the copy source, op=write chunks written here as the copy target",
      labelNames: ["sds_id", "kind", "op"],
    });
    const byKind = (op: DeviceOp) => ({ rebuild: copy.meter(sdsId, "rebuild", op), resync: copy.meter(sdsId, "resync", op), move: copy.meter(sdsId, "move", op) });
    this.copyRead = byKind("read");
    this.copyWrite = byKind("write");
    this.deviceIo = new IoFamilies(registry, {
      opsName: "pf_device_io_ops_total",
      bytesName: "pf_device_io_bytes_total",
      latencyName: "pf_device_io_latency_seconds",
      what: "Reads and writes that reached the device through the kernel (pread/pwrite)",
      labelNames: ["device_id", "path", "op"],
    });
    this.deviceSync = new IoFamilies(registry, {
      opsName: "pf_device_sync_total",
      latencyName: "pf_device_sync_seconds",
      what: "fdatasync calls on the device",
      labelNames: ["device_id", "path"],
    });
    this.deviceErrors = registry.counter({ name: "pf_device_errors_total", help: "Reads, writes and fdatasyncs the device failed.", labelNames: ["device_id", "path", "op"] });
  }

  /** The meters of a device (made once, when the SDS opens it). */
  device(deviceId: string, path: string): DeviceMeters {
    const err = (op: DeviceOp | "sync") => this.deviceErrors.with(deviceId, path, op);
    const m = new DeviceMeters(
      deviceId,
      this.deviceIo.meter(deviceId, path, "read"),
      this.deviceIo.meter(deviceId, path, "write"),
      this.deviceSync.meter(deviceId, path),
      err("read"),
      err("write"),
      err("sync"),
    );
    this.devices.push(m);
    return m;
  }

  /** Cumulative counters for the heartbeat (io_report.ts). */
  report(incarnation: string): SdsIoReport {
    const copy = (k: CopyKind) => ({ read: this.copyRead[k].totals(), write: this.copyWrite[k].totals() });
    const devices: DeviceIo[] = this.devices.map((d) => ({
      deviceId: d.deviceId,
      read: d.read.totals(),
      write: d.write.totals(),
      sync: d.sync.totals(),
      errors: d.errorCount(),
    }));
    return {
      incarnation,
      primaryRead: this.primaryRead.totals(),
      primaryWrite: this.primaryWrite.totals(),
      primaryTrim: this.primaryTrim.totals(),
      secondaryWrite: sumTotals(this.secondaryWrite.totals(), this.secondaryTrim.totals()),
      rebuild: copy("rebuild"),
      resync: copy("resync"),
      move: copy("move"),
      devices,
    };
  }
}
