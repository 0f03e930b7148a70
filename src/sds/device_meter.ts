// A BlockDevice wrapper that counts what reaches the device: reads and writes (ops, bytes,
// latency of the pread/pwrite), fdatasyncs (count and time) and errors, into the device's
// DeviceMeters (sds_metrics.ts). It wraps outermost (around a fault-injecting device too), so an
// injected EIO counts as a device error exactly as a real one.
//
// Invariants: a pass-through otherwise (same bytes, same errors rethrown, same order); reads and
// writes allocate nothing for metrics; a sync (not per IO: FLUSH, FUA, allocation) may allocate
// its completion callbacks.

import { ioNowMs } from "../proto/io_meter.ts";
import { DeviceWrapper, type BlockDevice } from "../store/block_device.ts";
import type { DeviceMeters } from "./sds_metrics.ts";

export class MeteredDevice extends DeviceWrapper {
  constructor(
    inner: BlockDevice,
    readonly meters: DeviceMeters,
  ) {
    super(inner);
  }

  override readInto(buf: Uint8Array, positionBytes: number): void {
    const t0 = ioNowMs();
    try {
      this.inner.readInto(buf, positionBytes);
    } catch (e) {
      this.meters.readErrors.value++;
      throw e;
    }
    this.meters.read.record(buf.byteLength, (ioNowMs() - t0) / 1000);
  }

  override write(buf: Uint8Array, positionBytes: number): void {
    const t0 = ioNowMs();
    try {
      this.inner.write(buf, positionBytes);
    } catch (e) {
      this.meters.writeErrors.value++;
      throw e;
    }
    this.meters.write.record(buf.byteLength, (ioNowMs() - t0) / 1000);
  }

  override readAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    const t0 = ioNowMs();
    return this.inner.readAsync(buf, positionBytes).then(
      () => this.meters.read.record(buf.byteLength, (ioNowMs() - t0) / 1000),
      (e: unknown) => {
        this.meters.readErrors.value++;
        throw e;
      },
    );
  }

  override writeAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    const t0 = ioNowMs();
    return this.inner.writeAsync(buf, positionBytes).then(
      () => this.meters.write.record(buf.byteLength, (ioNowMs() - t0) / 1000),
      (e: unknown) => {
        this.meters.writeErrors.value++;
        throw e;
      },
    );
  }

  override datasync(): Promise<void> {
    const t0 = ioNowMs();
    return this.inner.datasync().then(
      () => this.meters.sync.record(0, (ioNowMs() - t0) / 1000),
      (e: unknown) => {
        this.meters.syncErrors.value++;
        throw e;
      },
    );
  }

  override datasyncNow(): void {
    const t0 = ioNowMs();
    try {
      this.inner.datasyncNow();
    } catch (e) {
      this.meters.syncErrors.value++;
      throw e;
    }
    this.meters.sync.record(0, (ioNowMs() - t0) / 1000);
  }

}
