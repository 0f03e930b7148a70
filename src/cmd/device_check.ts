// Checks on an SDS's devices that need no SDS: the path is a file or block device or can be
// created (its nearest existing parent is a writable directory), it is not smaller than the
// minimum, and the devices still to be created fit in the free space of their file systems
// (they are preallocated in full: fallocate, or zeros). `pf sds` and `pf up` run them before
// they create anything; `pf doctor` reports them.

import { accessSync, constants, existsSync, statSync, statfsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { PfError } from "../proto/errors.ts";
import { errnoText, isErrnoError } from "./cli_failure.ts";
import { nearestExisting } from "./path_check.ts";

export interface DeviceUse {
  path: string;
  /** size to create it with when missing */
  sizeBytes?: number;
  /** "SDS sds1" */
  owner: string;
  /** where the operator wrote it: "--device", "hosts.0.sds.1.devices.0 of x.yaml" */
  field: string;
  minBytes: number;
  /** why the minimum: "one extent of pool pd1/sp1" */
  minWhy: string;
}

/** "1.5 GiB", "300.0 MiB": sizes in messages, one decimal. */
export function approxBytes(bytes: number): string {
  const units: [string, number][] = [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]];
  for (const [name, size] of units) if (bytes >= size) return `${(bytes / size).toFixed(1)} ${name}`;
  return `${bytes} B`;
}

/** The first thing wrong with one device, or null. */
export function deviceProblem(d: DeviceUse): PfError | null {
  const at = `device ${d.path} of ${d.owner} (${d.field})`;
  if (existsSync(d.path)) return existingDeviceProblem(d, at);
  if (d.sizeBytes === undefined) return new PfError("BAD_REQUEST", `${at} does not exist and no size is given to create it; give a size (PATH:SIZE, or size: in the cluster file)`);
  if (d.sizeBytes < d.minBytes) return tooSmall(at, d.sizeBytes, d);
  const parent = nearestExisting(dirname(resolve(d.path)));
  let st;
  try {
    st = statSync(parent);
  } catch (e) {
    return new PfError("BAD_REQUEST", `${at} cannot be created: cannot stat ${parent}: ${isErrnoError(e) ? errnoText(e) : String(e)}`);
  }
  if (!st.isDirectory()) return new PfError("BAD_REQUEST", `${at} cannot be created: ${parent} is not a directory; give another path`);
  try {
    accessSync(parent, constants.W_OK);
  } catch (e) {
    return new PfError("BAD_REQUEST", `${at} cannot be created: ${parent} is not writable (${isErrnoError(e) ? errnoText(e) : String(e)}); give another path`);
  }
  return null;
}

function existingDeviceProblem(d: DeviceUse, at: string): PfError | null {
  const st = statSync(d.path);
  if (st.isDirectory()) return new PfError("BAD_REQUEST", `${at} is a directory; give a block file or block device path`);
  if (!st.isFile() && !st.isBlockDevice()) return new PfError("BAD_REQUEST", `${at} is neither a regular file nor a block device`);
  try {
    accessSync(d.path, constants.R_OK | constants.W_OK);
  } catch (e) {
    return new PfError("BAD_REQUEST", `${at} is not readable and writable (${isErrnoError(e) ? errnoText(e) : String(e)})`);
  }
  // a block device's size needs blockdev(8); the SDS reads it when it opens the device
  if (st.isFile() && st.size < d.minBytes) return tooSmall(`${at} exists and`, st.size, d);
  return null;
}

function tooSmall(at: string, sizeBytes: number, d: DeviceUse): PfError {
  return new PfError("BAD_REQUEST", `${at} is ${approxBytes(sizeBytes)}, smaller than the minimum ${approxBytes(d.minBytes)} (${d.minWhy}); give a larger size`);
}

export interface SpaceNeed {
  /** an existing directory on the file system the devices go to */
  dir: string;
  needBytes: number;
  freeBytes: number;
  owners: string[];
}

/** Space the missing devices need, per file system (existing devices need none). */
export function spaceNeeds(devices: DeviceUse[]): SpaceNeed[] {
  const byFs = new Map<number, SpaceNeed>();
  for (const d of devices) {
    if (existsSync(d.path) || d.sizeBytes === undefined) continue;
    const dir = nearestExisting(dirname(resolve(d.path)));
    let devNo: number;
    let freeBytes: number;
    try {
      devNo = statSync(dir).dev;
      const fs = statfsSync(dir);
      freeBytes = fs.bavail * fs.bsize;
    } catch {
      continue; // deviceProblem reports a parent that cannot be looked at
    }
    const need = byFs.get(devNo) ?? { dir, needBytes: 0, freeBytes, owners: [] };
    need.needBytes += d.sizeBytes;
    if (!need.owners.includes(d.owner)) need.owners.push(d.owner);
    byFs.set(devNo, need);
  }
  return [...byFs.values()];
}

export function spaceProblem(need: SpaceNeed, fix: string): PfError | null {
  if (need.needBytes <= need.freeBytes) return null;
  return new PfError(
    "NO_SPACE",
    `the devices to create (${need.owners.join(", ")}) need ${approxBytes(need.needBytes)} on the file system of ${need.dir}, which has ${approxBytes(need.freeBytes)} free; ${fix}`,
  );
}

/**
 * Two entries naming one device (the same path, or two names of one existing file or disk):
 * each SDS would allocate chunks over the other's (the SDS locks its devices, device_claim.ts,
 * so the second would stop at its start; this says so before anything starts).
 */
export function sharedDeviceProblem(devices: DeviceUse[]): PfError | null {
  const seen = new Map<string, DeviceUse>();
  for (const d of devices) {
    let key = `path:${resolve(d.path)}`;
    try {
      const st = statSync(d.path);
      key = st.isBlockDevice() ? `rdev:${st.rdev}` : `ino:${st.dev}:${st.ino}`;
    } catch {
      // missing: it is created at its path, which is then its name
    }
    const first = seen.get(key);
    if (first !== undefined) {
      const same = resolve(first.path) === resolve(d.path) ? `${d.path}` : `${d.path}, the same disk as ${first.path},`;
      return new PfError("BAD_REQUEST", `device ${same} is given to ${first.owner} (${first.field}) and to ${d.owner} (${d.field}); a device belongs to one SDS: give each its own`);
    }
    seen.set(key, d);
  }
  return null;
}

/** Throws the first device or space problem. */
export function requireUsableDevices(devices: DeviceUse[], spaceFix: string): void {
  for (const d of devices) {
    const p = deviceProblem(d);
    if (p) throw p;
  }
  const shared = sharedDeviceProblem(devices);
  if (shared) throw shared;
  for (const need of spaceNeeds(devices)) {
    const p = spaceProblem(need, spaceFix);
    if (p) throw p;
  }
}
