// FileBlockDevice.datasync with overlapping syncs (src/store/block_device.ts): a device keeps a
// spare descriptor, opened with it, for a sync that overlaps one on its main descriptor (Linux
// reports a writeback error once per open file description); all of them close with the device.

import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEVICE_SYNCS_IN_FLIGHT, openBlockDevice } from "../src/store/block_device.ts";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(tmpdir(), "pf-blocksync-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Descriptors of this process open on `path`. */
function fdsOn(path: string): number {
  let n = 0;
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

test("overlapping syncs each get a descriptor of their own; every one is closed with the device", async () => {
  const path = join(dir, "dev.img");
  const dev = openBlockDevice({ path, sizeBytes: 4 * 1024 * 1024 });
  expect(fdsOn(path)).toBe(DEVICE_SYNCS_IN_FLIGHT); // the main one and the spares, opened before any write
  dev.write(new Uint8Array(4096).fill(1), 0);
  const a = dev.datasync();
  dev.write(new Uint8Array(4096).fill(2), 8192);
  const b = dev.datasync(); // overlaps a
  await Promise.all([a, b]);
  await dev.datasync(); // both free again
  expect(fdsOn(path)).toBe(DEVICE_SYNCS_IN_FLIGHT);
  const buf = new Uint8Array(4096);
  dev.readInto(buf, 8192);
  expect(buf[0]).toBe(2);
  dev.close();
  expect(fdsOn(path)).toBe(0);
  await expect(dev.datasync()).rejects.toThrow("closed");
});

/** open(2) access mode bits (node:fs has no O_ACCMODE constant) */
const O_ACCMODE = 0o3;

/** open(2) flags of this process's descriptors on `path` (from /proc/self/fdinfo, octal there). */
function openFlagsOn(path: string): number[] {
  const out: number[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) !== path) continue;
      const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
      if (m) out.push(parseInt(m[1]!, 8));
    } catch {
      // closed while listing
    }
  }
  return out;
}

test("the device is read without access-time updates (O_NOATIME on the descriptor reads use)", () => {
  const path = join(dir, "dev.img");
  const dev = openBlockDevice({ path, sizeBytes: 4 * 1024 * 1024 });
  try {
    dev.write(new Uint8Array(4096).fill(3), 0);
    // an atime two days old: a relatime mount would refresh it on the next read without O_NOATIME
    const old = new Date(Date.now() - 2 * 86_400_000);
    fs.utimesSync(path, old, fs.statSync(path).mtime);
    const buf = new Uint8Array(4096);
    dev.readInto(buf, 0);
    expect(buf[4095]).toBe(3);
    expect(Math.abs(fs.statSync(path).atimeMs - old.getTime())).toBeLessThan(1000);
    const readWrite = openFlagsOn(path).filter((f) => (f & O_ACCMODE) === fs.constants.O_RDWR);
    expect(readWrite.length).toBe(1);
    expect(readWrite[0]! & fs.constants.O_NOATIME).toBe(fs.constants.O_NOATIME);
  } finally {
    dev.close();
  }
});
