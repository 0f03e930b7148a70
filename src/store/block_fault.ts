// Fault injection for SDS devices: a BlockDevice wrapper whose reads, writes or syncs fail on
// demand with the same PfError a real EIO gives. It ships in the binary (style: fault
// injection is a layer of the real system) so end-to-end tests can fail one copy's device and
// check what clients see. Invariant: while no fault is armed it is a transparent pass-through.

import { PfError } from "../proto/errors.ts";
import type { BlockDevice } from "./block_device.ts";

export interface DeviceFaults {
  failReads: boolean;
  failWrites: boolean;
  failSyncs: boolean;
}

export class FaultInjectingDevice implements BlockDevice {
  readonly faults: DeviceFaults = { failReads: false, failWrites: false, failSyncs: false };

  constructor(private readonly inner: BlockDevice) {}

  get path(): string {
    return this.inner.path;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get createdZeroFilled(): boolean {
    return this.inner.createdZeroFilled;
  }

  readInto(buf: Uint8Array, positionBytes: number): void {
    if (this.faults.failReads) throw new PfError("IO_ERROR", `injected read error on ${this.path} at ${positionBytes}`);
    this.inner.readInto(buf, positionBytes);
  }

  write(buf: Uint8Array, positionBytes: number): void {
    if (this.faults.failWrites) throw new PfError("IO_ERROR", `injected write error on ${this.path} at ${positionBytes}`);
    this.inner.write(buf, positionBytes);
  }

  datasync(): Promise<void> {
    if (this.faults.failSyncs) return Promise.reject(new PfError("IO_ERROR", `injected fdatasync error on ${this.path}`));
    return this.inner.datasync();
  }

  datasyncNow(): void {
    if (this.faults.failSyncs) throw new PfError("IO_ERROR", `injected fdatasync error on ${this.path}`);
    this.inner.datasyncNow();
  }

  close(): void {
    this.inner.close();
  }
}
