// Fault injection for SDS devices: a BlockDevice wrapper whose reads, writes or syncs fail on
// demand with the same PfError a real EIO gives. It ships in the binary (style: fault
// injection is a layer of the real system) so end-to-end tests can fail one copy's device and
// check what clients see. Invariant: while no fault is armed it is a transparent pass-through.
//
// Trigger for end-to-end tests of the real binary (FaultFile): start `pf sds` (or `pf up`) with
// the environment variable PF_FAULT_DEVICE_FILE=/some/path. While that file exists, every read,
// write and fdatasync on a device whose path CONTAINS the file's content (trimmed; an empty file
// matches every device) fails with an IO error, exactly like EIO from the kernel. The file is
// polled every FAULT_FILE_POLL_MS (100 ms); deleting it disarms the faults (a device the SDS
// already marked Failed stays Failed until the SDS restarts). Example:
//   echo -n sds2/dev0.img > /tmp/fault; ...; rm /tmp/fault

import * as fs from "node:fs";
import { consola } from "consola";
import { PfError } from "../proto/errors.ts";
import { DeviceWrapper, type BlockDevice } from "./block_device.ts";

export interface DeviceFaults {
  failReads: boolean;
  failWrites: boolean;
  failSyncs: boolean;
}

export class FaultInjectingDevice extends DeviceWrapper {
  readonly faults: DeviceFaults = { failReads: false, failWrites: false, failSyncs: false };

  override readInto(buf: Uint8Array, positionBytes: number): void {
    if (this.faults.failReads) throw new PfError("IO_ERROR", `injected read error on ${this.path} at ${positionBytes}`);
    this.inner.readInto(buf, positionBytes);
  }

  override write(buf: Uint8Array, positionBytes: number): void {
    if (this.faults.failWrites) throw new PfError("IO_ERROR", `injected write error on ${this.path} at ${positionBytes}`);
    this.inner.write(buf, positionBytes);
  }

  override readAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    if (this.faults.failReads) return Promise.reject(new PfError("IO_ERROR", `injected read error on ${this.path} at ${positionBytes}`));
    return this.inner.readAsync(buf, positionBytes);
  }

  override writeAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    if (this.faults.failWrites) return Promise.reject(new PfError("IO_ERROR", `injected write error on ${this.path} at ${positionBytes}`));
    return this.inner.writeAsync(buf, positionBytes);
  }

  override datasync(): Promise<void> {
    if (this.faults.failSyncs) return Promise.reject(new PfError("IO_ERROR", `injected fdatasync error on ${this.path}`));
    return this.inner.datasync();
  }

  override datasyncNow(): void {
    if (this.faults.failSyncs) throw new PfError("IO_ERROR", `injected fdatasync error on ${this.path}`);
    this.inner.datasyncNow();
  }

}

export const FAULT_FILE_ENV = "PF_FAULT_DEVICE_FILE";
export const FAULT_FILE_POLL_MS = 100;

/** Arms the faults of the devices it wrapped from a trigger file (see the file comment). */
export class FaultFile {
  private readonly devices: FaultInjectingDevice[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  private armedFor = new Set<string>();

  constructor(
    readonly path: string,
    pollMs = FAULT_FILE_POLL_MS,
  ) {
    this.timer = setInterval(() => this.poll(), pollMs);
    this.timer.unref?.();
  }

  /** The FaultFile of PF_FAULT_DEVICE_FILE, or null when it is not set. */
  static fromEnv(env: Record<string, string | undefined> = process.env): FaultFile | null {
    const p = env[FAULT_FILE_ENV];
    return p === undefined || p === "" ? null : new FaultFile(p);
  }

  wrap(dev: BlockDevice): BlockDevice {
    const f = new FaultInjectingDevice(dev);
    this.devices.push(f);
    this.poll();
    return f;
  }

  /** Read the trigger file now and arm or disarm every wrapped device. */
  poll(): void {
    let match: string | null = null;
    try {
      match = fs.readFileSync(this.path, "utf8").trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") consola.warn(`fault file ${this.path}: ${(e as Error).message}`);
    }
    const armed = new Set<string>();
    for (const d of this.devices) {
      const on = match !== null && d.path.includes(match);
      d.faults.failReads = on;
      d.faults.failWrites = on;
      d.faults.failSyncs = on;
      if (on) armed.add(d.path);
    }
    for (const p of armed) if (!this.armedFor.has(p)) consola.warn(`fault injection: IO on ${p} now fails (trigger file ${this.path})`);
    for (const p of this.armedFor) if (!armed.has(p)) consola.info(`fault injection: IO on ${p} no longer fails`);
    this.armedFor = armed;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
