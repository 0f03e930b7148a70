// Block-file and block-device IO for the SDS: open (creating and preallocating a block file
// when it is missing), positional reads and writes through the kernel (node:fs sync calls: a
// write that returned is in the page cache and survives kill -9), and fdatasync off the event
// loop (node:fs callback form, run on the thread pool).
//
// Preallocation: a missing file is created and its full size reserved with util-linux
// `fallocate -l SIZE` (real blocks, reads return zeros, no ENOSPC later); when that tool or
// the file system refuses, we fall back to writing zeros in 8 MiB chunks. ftruncate alone is
// never used: it makes a sparse file whose space the file system may not have later.
//
// Large writes go to the kernel in pwrites of at most Limits.deviceWriteSegmentBytes: ext4 (kernel
// 6.18 here) caches a file in folios as large as the write that created them, and every later small
// write into such a folio walks all of its buffer heads (ext4_block_write_begin): after 1 MiB
// writes a 4 KiB overwrite cost the kernel ~10x more CPU (perf: 45-58 % of an SDS's CPU, and
// 36 % of nbdkit's on the same file system). bench/pf.ts measures the trade.
//
// Invariants: every IO is inside [0, sizeBytes); a short read or write is an error, never
// silently accepted; `zeroFilled` says whether never-used space is known to read as zeros.

import * as fs from "node:fs";
import { consola } from "consola";
import { PfError, assert } from "../proto/errors.ts";
import { Limits } from "../proto/limits.ts";
import { claimDevice } from "./device_claim.ts";

export interface BlockDeviceSpec {
  path: string;
  /** size to create the file with when missing; an existing file/device keeps its size */
  sizeBytes?: number;
}

/** Positional IO on one device; a fake or fault-injecting wrapper can stand in (tests). */
export interface BlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  /** true when this open created and preallocated the file, so all of it reads as zeros */
  readonly createdZeroFilled: boolean;
  readInto(buf: Uint8Array, positionBytes: number): void;
  write(buf: Uint8Array, positionBytes: number): void;
  /** pread off the event loop (node:fs callback form: Bun's thread pool); a short read rejects */
  readAsync(buf: Uint8Array, positionBytes: number): Promise<void>;
  /** pwrite off the event loop; resolved = in the page cache, like write() returning */
  writeAsync(buf: Uint8Array, positionBytes: number): Promise<void>;
  /** fdatasync, off the event loop */
  datasync(): Promise<void>;
  /** fdatasync on the event loop: only for rare paths that must order data before metadata */
  datasyncNow(): void;
  /**
   * No more IO: the descriptors close (and the device's exclusive claim, device_claim.ts, goes
   * with them) once the asynchronous IO still in flight on them has returned.
   */
  close(): void;
}

/**
 * A BlockDevice in front of another (metering, fault injection, the power-loss model, tests):
 * forwards everything; a wrapper overrides only what it changes.
 */
export class DeviceWrapper implements BlockDevice {
  constructor(protected readonly inner: BlockDevice) {}

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
    this.inner.readInto(buf, positionBytes);
  }
  write(buf: Uint8Array, positionBytes: number): void {
    this.inner.write(buf, positionBytes);
  }
  readAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    return this.inner.readAsync(buf, positionBytes);
  }
  writeAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    return this.inner.writeAsync(buf, positionBytes);
  }
  datasync(): Promise<void> {
    return this.inner.datasync();
  }
  datasyncNow(): void {
    this.inner.datasyncNow();
  }
  close(): void {
    this.inner.close();
  }
}

const ZERO_FILL_CHUNK_BYTES = 8 * 1024 * 1024;
/** largest pwrite (PF_DEVICE_WRITE_SEGMENT_BYTES overrides it for A/B runs; 0 = no limit) */
export const WRITE_SEGMENT_BYTES = ((v) => (v > 0 ? v : Number.MAX_SAFE_INTEGER))(Number(process.env.PF_DEVICE_WRITE_SEGMENT_BYTES ?? Limits.deviceWriteSegmentBytes));

/**
 * fdatasyncs a device's group commit may run at once (Limits.deviceSyncsInFlight;
 * PF_DEVICE_SYNCS_IN_FLIGHT overrides it for A/B runs). A FileBlockDevice runs each overlapping
 * one on a descriptor of its own (datasync()).
 */
export const DEVICE_SYNCS_IN_FLIGHT = Math.max(1, Number(process.env.PF_DEVICE_SYNCS_IN_FLIGHT ?? Limits.deviceSyncsInFlight));

export class FileBlockDevice implements BlockDevice {
  private closed = false;
  /**
   * Asynchronous IOs issued on this device's descriptors and not returned yet (thread-pool reads,
   * writes, fdatasyncs). close() closes the descriptors only when this is 0: a descriptor closed
   * under a queued call could be reused by another open before the call runs, which would then
   * read, write or sync another file.
   */
  private pending = 0;
  private descriptorsClosed = false;
  /** an fdatasync runs on this.fd */
  private mainSyncing = false;
  /** more descriptors of the file for fdatasyncs that overlap one on this.fd, free ones */
  private readonly spareSyncFds: number[] = [];
  private readonly allSyncFds: number[] = [];
  constructor(
    readonly path: string,
    private readonly fd: number,
    readonly sizeBytes: number,
    readonly createdZeroFilled: boolean,
  ) {
    // opened now, before any write: each samples the file's error state here, so it reports every
    // writeback error from now on, whoever else saw it first (a descriptor opened later would miss
    // one another descriptor already reported)
    for (let i = 1; i < DEVICE_SYNCS_IN_FLIGHT; i++) this.spareSyncFds.push(this.openSyncFd());
  }

  readInto(buf: Uint8Array, positionBytes: number): void {
    assert(positionBytes >= 0 && positionBytes + buf.byteLength <= this.sizeBytes, "device read out of range");
    if (this.closed) throw this.closedError();
    let done = 0;
    while (done < buf.byteLength) {
      const n = fs.readSync(this.fd, buf, done, buf.byteLength - done, positionBytes + done);
      if (n <= 0) throw new PfError("IO_ERROR", `short read on ${this.path} at ${positionBytes + done}`);
      done += n;
    }
  }

  write(buf: Uint8Array, positionBytes: number): void {
    assert(positionBytes >= 0 && positionBytes + buf.byteLength <= this.sizeBytes, "device write out of range");
    if (this.closed) throw this.closedError();
    let done = 0;
    while (done < buf.byteLength) {
      // at most WRITE_SEGMENT_BYTES per pwrite: see the file comment (large page-cache folios)
      const n = fs.writeSync(this.fd, buf, done, Math.min(WRITE_SEGMENT_BYTES, buf.byteLength - done), positionBytes + done);
      if (n <= 0) throw new PfError("IO_ERROR", `short write on ${this.path} at ${positionBytes + done}`);
      done += n;
    }
  }

  readAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    assert(positionBytes >= 0 && positionBytes + buf.byteLength <= this.sizeBytes, "device read out of range");
    if (this.closed) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        if (done >= buf.byteLength) return resolve();
        this.pending++;
        fs.read(this.fd, buf, done, buf.byteLength - done, positionBytes + done, (err, n) => {
          this.returned();
          if (err) return reject(new PfError("IO_ERROR", `read ${this.path} at ${positionBytes + done}: ${err.message}`));
          if (n <= 0) return reject(new PfError("IO_ERROR", `short read on ${this.path} at ${positionBytes + done}`));
          step(done + n);
        });
      };
      step(0);
    });
  }

  writeAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    assert(positionBytes >= 0 && positionBytes + buf.byteLength <= this.sizeBytes, "device write out of range");
    // segments as in write() (see the file comment: large page-cache folios), all issued at once:
    // they do not overlap, and the thread pool runs them in parallel (one after the other cost
    // a pool round trip each: 64 for a 1 MiB copy)
    if (this.closed) return Promise.reject(this.closedError());
    const parts: Promise<void>[] = [];
    for (let at = 0; at < buf.byteLength; at += WRITE_SEGMENT_BYTES) parts.push(this.writeSegmentAsync(buf, at, Math.min(WRITE_SEGMENT_BYTES, buf.byteLength - at), positionBytes));
    return Promise.all(parts).then(() => undefined);
  }

  private writeSegmentAsync(buf: Uint8Array, from: number, length: number, positionBytes: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        if (done >= length) return resolve();
        this.pending++;
        fs.write(this.fd, buf, from + done, length - done, positionBytes + from + done, (err, n) => {
          this.returned();
          if (err) return reject(new PfError("IO_ERROR", `write ${this.path} at ${positionBytes + from + done}: ${err.message}`));
          if (n <= 0) return reject(new PfError("IO_ERROR", `short write on ${this.path} at ${positionBytes + from + done}`));
          step(done + n);
        });
      };
      step(0);
    });
  }

  /**
   * fdatasync, off the loop. Syncs that overlap (group commit with more than one in flight) each
   * run on a descriptor of their own: Linux reports a writeback error once per open file
   * description (errseq), so two syncs on one descriptor could see the error reported to the
   * one whose writes were fine while the other (whose pages failed) returns 0. On descriptors of
   * their own each sync sees every error since the descriptor was opened (or one nobody has seen).
   */
  datasync(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    let fd = this.fd;
    const main = !this.mainSyncing;
    if (main) this.mainSyncing = true;
    else {
      try {
        fd = this.spareSyncFds.pop() ?? this.openSyncFd();
      } catch (e) {
        return Promise.reject(new PfError("IO_ERROR", `cannot open ${this.path} for fdatasync: ${(e as Error).message}`));
      }
    }
    this.pending++;
    return new Promise((resolve, reject) =>
      fs.fdatasync(fd, (err) => {
        this.returned();
        if (main) this.mainSyncing = false;
        else if (!this.closed) this.spareSyncFds.push(fd);
        if (err) reject(new PfError("IO_ERROR", `fdatasync ${this.path}: ${err.message}`));
        else resolve();
      }),
    );
  }

  private openSyncFd(): number {
    // through the open descriptor, not the path: the same file even if the path now names another
    const fd = fs.openSync(sameFile(this.fd, this.path), fs.constants.O_RDONLY);
    this.allSyncFds.push(fd);
    return fd;
  }

  datasyncNow(): void {
    if (this.closed) throw this.closedError();
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw new PfError("IO_ERROR", `fdatasync ${this.path}: ${(e as Error).message}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pending === 0) this.closeDescriptors();
  }

  private returned(): void {
    this.pending--;
    if (this.closed && this.pending === 0) this.closeDescriptors();
  }

  private closeDescriptors(): void {
    if (this.descriptorsClosed) return;
    this.descriptorsClosed = true;
    fs.closeSync(this.fd);
    for (const fd of this.allSyncFds) fs.closeSync(fd);
    this.allSyncFds.length = 0;
    this.spareSyncFds.length = 0;
  }

  private closedError(): PfError {
    return new PfError("IO_ERROR", `${this.path} is closed`);
  }
}

/** Open (or create and preallocate) a device. Throws PfError naming the path. */
export function openBlockDevice(spec: BlockDeviceSpec): BlockDevice {
  let created = false;
  if (!fs.existsSync(spec.path)) {
    if (spec.sizeBytes === undefined) throw new PfError("BAD_REQUEST", `device ${spec.path} does not exist and no size was given to create it`);
    // false: another process made it meanwhile (then it is opened as an existing file, and the
    // lock below decides which of the two may use it)
    created = preallocateFile(spec.path, spec.sizeBytes);
  }
  const st = fs.statSync(spec.path);
  let sizeBytes: number;
  if (st.isBlockDevice()) sizeBytes = blockDeviceSize(spec.path);
  else if (st.isFile()) sizeBytes = st.size;
  else throw new PfError("BAD_REQUEST", `device ${spec.path} is neither a regular file nor a block device`);
  if (spec.sizeBytes !== undefined && !created && sizeBytes < spec.sizeBytes) {
    consola.warn(`device ${spec.path}: existing size ${sizeBytes} is smaller than the ${spec.sizeBytes} asked; using ${sizeBytes}`);
  }
  if (sizeBytes <= 0) throw new PfError("BAD_REQUEST", `device ${spec.path} has no usable size`);
  let fd: number;
  try {
    fd = openNoAtime(spec.path, st.isBlockDevice() ? fs.constants.O_EXCL : 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EBUSY") {
      throw new PfError("IN_USE", `device ${spec.path} is in use (mounted, part of an md/LVM/dm device, or open exclusively by another process): unmount or release it, or give this SDS another device`);
    }
    throw new PfError("IO_ERROR", `cannot open device ${spec.path}: ${(e as Error).message}`);
  }
  const claim = claimDevice(fd);
  if (!claim.ok) {
    fs.closeSync(fd);
    throw new PfError("IN_USE", `device ${spec.path} is locked: ${claim.reason}. Each device belongs to one SDS: give this one another path`);
  }
  // the path still names the file locked: a lock on a file the path no longer reaches (replaced
  // between the open and the lock) would let the next opener of the path take it too
  if (!sameInode(fd, spec.path)) {
    fs.closeSync(fd);
    throw new PfError("IN_USE", `device ${spec.path} was replaced while this SDS opened it (another process is creating or using it); give each SDS its own device`);
  }
  return new FileBlockDevice(spec.path, fd, sizeBytes, created);
}

/** Linux O_NOATIME (node exposes it as fs.constants.O_NOATIME on Linux only). */
const O_NOATIME: number = (fs.constants as Record<string, number>).O_NOATIME ?? 0;

/**
 * Open a device read-write without access-time updates: every pread of a file opened without it
 * runs the kernel's atime check (touch_atime: ~1 % of an SDS's CPU on 4 KiB random reads, perf),
 * and pf never uses a device's atime. The kernel refuses O_NOATIME (EPERM) to a process that
 * neither owns the file nor has CAP_FOWNER: then the device is opened without it. A block device
 * is opened with O_EXCL (extraFlags; see device_claim.ts).
 */
function openNoAtime(path: string, extraFlags: number): number {
  if (O_NOATIME !== 0) {
    try {
      return fs.openSync(path, fs.constants.O_RDWR | O_NOATIME | extraFlags);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    }
  }
  return fs.openSync(path, fs.constants.O_RDWR | extraFlags);
}

/**
 * Create `path` with `sizeBytes` of real, zero-reading blocks (see the file comment). False when
 * the path exists by the time the file is ready: another process made it meanwhile, and that one
 * is kept. The file is made under a name of this process's own and published with link(2), which
 * never replaces an existing name (a rename would: two SDSs starting at once on one new path
 * would each lock a file of their own, one of them no longer reachable by the path).
 */
export function preallocateFile(path: string, sizeBytes: number): boolean {
  const tmp = `${path}.creating-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  try {
    const r = spawnQuiet(["fallocate", "-l", String(sizeBytes), tmp]);
    if (r !== 0 || !fs.existsSync(tmp) || fs.statSync(tmp).size !== sizeBytes) {
      consola.info(`device ${path}: fallocate unavailable or refused; writing ${sizeBytes} bytes of zeros`);
      zeroFill(tmp, sizeBytes);
    }
    // a crash during preallocation leaves only the .creating file, never a short device
    const fd = fs.openSync(tmp, "r+");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    try {
      fs.linkSync(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    }
    return true;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** A path that opens the file behind descriptor `fd` (Linux /proc), else `path`. */
function sameFile(fd: number, path: string): string {
  const viaProc = `/proc/self/fd/${fd}`;
  return fs.existsSync(viaProc) ? viaProc : path;
}

/** Does `path` still name the file open as `fd`? */
function sameInode(fd: number, path: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.statSync(path);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

function zeroFill(path: string, sizeBytes: number): void {
  const fd = fs.openSync(path, "w");
  try {
    const zeros = new Uint8Array(Math.min(ZERO_FILL_CHUNK_BYTES, sizeBytes));
    for (let pos = 0; pos < sizeBytes; ) {
      const n = Math.min(zeros.byteLength, sizeBytes - pos);
      const w = fs.writeSync(fd, zeros, 0, n, pos);
      if (w <= 0) throw new PfError("IO_ERROR", `short write while preallocating ${path}`);
      pos += w;
    }
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(path, { force: true });
    if ((e as NodeJS.ErrnoException).code === "ENOSPC") throw new PfError("NO_SPACE", `no space to preallocate ${sizeBytes} bytes for ${path}`);
    throw e;
  }
  fs.closeSync(fd);
}

function blockDeviceSize(path: string): number {
  const out = Bun.spawnSync(["blockdev", "--getsize64", path], { stdout: "pipe", stderr: "pipe" });
  const n = Number.parseInt(out.stdout.toString().trim(), 10);
  if (out.exitCode !== 0 || !Number.isSafeInteger(n)) {
    throw new PfError("IO_ERROR", `cannot read the size of block device ${path} (blockdev --getsize64): ${out.stderr.toString().trim()}`);
  }
  return n;
}

function spawnQuiet(cmd: string[]): number {
  try {
    return Bun.spawnSync(cmd, { stdout: "ignore", stderr: "ignore" }).exitCode;
  } catch {
    return -1; // tool not installed: the caller falls back
  }
}
