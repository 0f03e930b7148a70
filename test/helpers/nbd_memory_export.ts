// A RAM-backed NbdExport and ExportRegistry for testing the NBD front end alone (no SDC, no SDS).
// Counts every call, can delay operations and inject PfErrors, so tests can observe FUA/FLUSH
// and out-of-order completion.

import { PfError, type ErrorCode } from "../../src/proto/errors.ts";
import type { ExportRegistry, NbdExport } from "../../src/sdc/nbd_export.ts";

export interface MemoryExportOptions {
  readOnly?: boolean;
  multiConn?: boolean;
  /** delay (ms) per operation, e.g. to make requests complete out of order */
  delayMs?: (op: "read" | "write" | "flush" | "trim" | "zero", offsetBytes: number) => number;
}

export class MemoryExport implements NbdExport {
  readonly data: Buffer;
  readonly readOnly: boolean;
  readonly multiConn: boolean;
  readonly counts = { read: 0, write: 0, flush: 0, trim: 0, zero: 0, fua: 0 };
  /** next operations fail with this code while set */
  failWith: ErrorCode | null = null;

  constructor(
    readonly name: string,
    readonly sizeBytes: number,
    private readonly opts: MemoryExportOptions = {},
  ) {
    this.data = Buffer.alloc(sizeBytes);
    this.readOnly = opts.readOnly ?? false;
    this.multiConn = opts.multiConn ?? true;
  }

  private async gate(op: "read" | "write" | "flush" | "trim" | "zero", offsetBytes: number): Promise<void> {
    const ms = this.opts.delayMs?.(op, offsetBytes) ?? 0;
    if (ms > 0) await Bun.sleep(ms);
    if (this.failWith !== null) throw new PfError(this.failWith, `injected ${this.failWith} on ${op}`);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.counts.read++;
    await this.gate("read", offsetBytes);
    return Buffer.from(this.data.subarray(offsetBytes, offsetBytes + lengthBytes));
  }
  async write(offsetBytes: number, bytes: Uint8Array, fua: boolean): Promise<void> {
    this.counts.write++;
    if (fua) this.counts.fua++;
    await this.gate("write", offsetBytes);
    this.data.set(bytes, offsetBytes);
  }
  async flush(): Promise<void> {
    this.counts.flush++;
    await this.gate("flush", 0);
  }
  async trim(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    this.counts.trim++;
    if (fua) this.counts.fua++;
    await this.gate("trim", offsetBytes);
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
  async writeZeroes(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    this.counts.zero++;
    if (fua) this.counts.fua++;
    await this.gate("zero", offsetBytes);
    this.data.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
}

export class MemoryRegistry implements ExportRegistry {
  private readonly exports = new Map<string, NbdExport>();
  constructor(exports: NbdExport[] = []) {
    for (const e of exports) this.add(e);
  }
  add(e: NbdExport): void {
    this.exports.set(e.name, e);
  }
  remove(name: string): void {
    this.exports.delete(name);
  }
  get(name: string): NbdExport | undefined {
    return this.exports.get(name);
  }
  list(): NbdExport[] {
    return [...this.exports.values()];
  }
}
