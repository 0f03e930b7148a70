// One SDS process per device: an SDS takes an exclusive advisory lock (flock LOCK_EX|LOCK_NB)
// on every device it opens and holds it on that descriptor until it closes the device. Two SDSs
// on one host given the same path, or two names of one file (a symlink, a hard link, a
// /dev/disk/by-id link), would otherwise both allocate chunks on it and overwrite each other's
// extents: the first-MiB probe of a live add passes for both while the device is still empty, and
// the per-SDS twin check sees only its own slots. A block device is opened with O_EXCL as well:
// Linux then refuses it (EBUSY) while it is mounted, part of an md/LVM/dm device or claimed
// exclusively by another process, as PowerFlex refuses a device in use.
//
// flock comes from libc through bun:ffi (Node and Bun expose no flock). The kernel drops the lock
// when the process dies, kill -9 included, so a restarted SDS never finds its own stale lock.
// Where libc cannot be loaded (not glibc), devices open unlocked and the SDS says so once.

import { dlopen, FFIType, read } from "bun:ffi";
import { consola } from "consola";

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

interface Libc {
  flock(fd: number, op: number): number;
  errno(): number;
}

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    // loaded at the first device open: processes that open none never load libc through FFI
    const lib = dlopen("libc.so.6", {
      flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    libc = {
      flock: (fd, op) => lib.symbols.flock(fd, op),
      errno: () => {
        const p = lib.symbols.__errno_location();
        return p === null ? 0 : read.i32(p, 0);
      },
    };
  } catch (e) {
    consola.warn(`devices are opened without an exclusive lock (libc's flock unavailable: ${(e as Error).message}); make sure no two SDSs are given the same device`);
    libc = null;
  }
  return libc;
}

export type ClaimResult = { ok: true } | { ok: false; reason: string };

/**
 * Take the exclusive lock on an open device descriptor. Fails (never blocks) when another open
 * of the same file holds it: another SDS process, or this one through another name of the file.
 */
export function claimDevice(fd: number): ClaimResult {
  const c = loadLibc();
  if (c === null) return { ok: true };
  let errno = 0;
  // errno is read by a second FFI call after the first returned; an unexpected value is asked
  // once more before the device is taken unlocked
  for (let attempt = 0; attempt < 2; attempt++) {
    if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return { ok: true };
    errno = c.errno();
    if (errno === EWOULDBLOCK) return { ok: false, reason: "another process holds it (another SDS on this host, or this SDS by another name of the file)" };
  }
  // a file system without flock support (some network file systems): nothing to claim with
  consola.warn(`flock on a device failed (errno ${errno}); it is used without an exclusive lock`);
  return { ok: true };
}

