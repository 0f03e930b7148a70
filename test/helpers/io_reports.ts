// Builders of the cumulative IO reports SDSs and SDCs put in their heartbeats
// (src/proto/io_report.ts), for MDM tests that play those roles: a counter object per volume
// or SDS that grows by what the test says happened, and the report of its current totals.

import type { OpTotals, SdcIoReport, SdsIoReport } from "../../src/proto/io_report.ts";

export const zero = (): OpTotals => ({ ops: 0, bytes: 0, latencyUs: 0 });

export function grow(t: OpTotals, ops: number, bytesEach: number, latencyUsEach: number): void {
  t.ops += ops;
  t.bytes += ops * bytesEach;
  t.latencyUs += ops * latencyUsEach;
}

/** One SDC's counters: per volume read/write/trim/flush. */
export class SdcCounters {
  readonly volumes = new Map<string, { read: OpTotals; write: OpTotals; trim: OpTotals; flush: OpTotals }>();
  constructor(public incarnation = "sdc-inc-1") {}

  vol(volumeId: string): { read: OpTotals; write: OpTotals; trim: OpTotals; flush: OpTotals } {
    let v = this.volumes.get(volumeId);
    if (!v) {
      v = { read: zero(), write: zero(), trim: zero(), flush: zero() };
      this.volumes.set(volumeId, v);
    }
    return v;
  }

  /** a process restart: new incarnation, every counter back to zero */
  restart(incarnation: string): void {
    this.incarnation = incarnation;
    this.volumes.clear();
  }

  report(): SdcIoReport {
    return {
      incarnation: this.incarnation,
      volumes: [...this.volumes].map(([volumeId, v]) => ({ volumeId, read: { ...v.read }, write: { ...v.write }, trim: { ...v.trim }, flush: { ...v.flush } })),
      nbdConnections: 1,
      inflightIos: 0,
    };
  }
}

/** One SDS's counters. */
export class SdsCounters {
  incarnation: string;
  r: Omit<SdsIoReport, "incarnation" | "devices">;
  readonly devices = new Map<string, { read: OpTotals; write: OpTotals; sync: OpTotals; errors: number }>();

  constructor(incarnation = "sds-inc-1") {
    this.incarnation = incarnation;
    this.r = this.fresh();
  }

  private fresh(): Omit<SdsIoReport, "incarnation" | "devices"> {
    return {
      primaryRead: zero(),
      primaryWrite: zero(),
      primaryTrim: zero(),
      secondaryWrite: zero(),
      rebuild: { read: zero(), write: zero() },
      resync: { read: zero(), write: zero() },
      move: { read: zero(), write: zero() },
    };
  }

  dev(deviceId: string): { read: OpTotals; write: OpTotals; sync: OpTotals; errors: number } {
    let d = this.devices.get(deviceId);
    if (!d) {
      d = { read: zero(), write: zero(), sync: zero(), errors: 0 };
      this.devices.set(deviceId, d);
    }
    return d;
  }

  restart(incarnation: string): void {
    this.incarnation = incarnation;
    this.r = this.fresh();
    this.devices.clear();
  }

  report(): SdsIoReport {
    return {
      incarnation: this.incarnation,
      ...structuredClone(this.r),
      devices: [...this.devices].map(([deviceId, d]) => ({ deviceId, read: { ...d.read }, write: { ...d.write }, sync: { ...d.sync }, errors: d.errors })),
    };
  }
}
