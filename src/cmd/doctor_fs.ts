// `pf doctor`'s file system checks, once per file system the data dir and the devices live on:
// fallocate (the SDS preallocates block files with util-linux fallocate, the same tool called
// the same way as src/store/block_device.ts; without it the SDS writes zeros, slowly) and
// O_DIRECT (open with O_DIRECT and write one aligned 4 KiB block). Each test works in a
// temporary directory it removes again.

import { closeSync, constants, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { errnoText, isErrnoError } from "./cli_failure.ts";
import { ok, warning, type Check } from "./doctor_check.ts";
import type { HostPlan } from "./host_plan.ts";
import { nearestExisting } from "./path_check.ts";

const FALLOCATE_TEST_BYTES = 1024 * 1024;
const DIRECT_BLOCK_BYTES = 4096;

/** One existing directory per file system that pf will write to. */
function fileSystems(plan: HostPlan): string[] {
  const dirs = [nearestExisting(plan.dataDir), ...plan.devices.map((d) => nearestExisting(dirname(resolve(d.path))))];
  const byDev = new Map<number, string>();
  for (const d of dirs) {
    let st;
    try {
      st = statSync(d);
    } catch {
      continue; // the data dir / device checks report a path that cannot be looked at
    }
    if (st.isDirectory() && !byDev.has(st.dev)) byDev.set(st.dev, d);
  }
  return [...byDev.values()];
}

export function fileSystemChecks(plan: HostPlan): Check[] {
  const out: Check[] = [];
  for (const dir of fileSystems(plan)) {
    let tmp: string;
    try {
      tmp = mkdtempSync(join(dir, ".pf-doctor-"));
    } catch (e) {
      out.push(warning(`file system of ${dir}`, `cannot create a test file there (${reason(e)})`, "check the permissions and the mount (read-only?)"));
      continue;
    }
    try {
      out.push(fallocateCheck(dir, tmp), directIoCheck(dir, tmp));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return out;
}

function reason(e: unknown): string {
  return isErrnoError(e) ? errnoText(e) : String(e);
}

function fallocateCheck(dir: string, tmp: string): Check {
  const name = `fallocate on ${dir}`;
  const file = join(tmp, "fallocate");
  let r;
  try {
    r = Bun.spawnSync(["fallocate", "-l", String(FALLOCATE_TEST_BYTES), file], { stdout: "ignore", stderr: "pipe" });
  } catch {
    return warning(name, "the fallocate tool is not installed: the SDS writes zeros to preallocate devices (a slow first start)", "install util-linux");
  }
  if (r.exitCode !== 0) {
    return warning(name, `refused: ${r.stderr.toString().trim() || `exit code ${r.exitCode}`}; the SDS writes zeros to preallocate devices (a slow first start)`, "put the devices on a file system with fallocate (ext4, xfs, btrfs)");
  }
  const st = statSync(file);
  if (st.size !== FALLOCATE_TEST_BYTES || st.blocks * 512 < FALLOCATE_TEST_BYTES) {
    return warning(name, `fallocate made ${st.size} bytes with ${st.blocks * 512} allocated, not ${FALLOCATE_TEST_BYTES}`, "put the devices on a file system with fallocate (ext4, xfs, btrfs)");
  }
  return ok(name, "supported (devices are preallocated with real blocks)");
}

function directIoCheck(dir: string, tmp: string): Check {
  const name = `O_DIRECT on ${dir}`;
  const fix = "put the devices on a file system with O_DIRECT (ext4, xfs, btrfs; tmpfs from Linux 6.6)";
  let fd: number;
  try {
    fd = openSync(join(tmp, "direct"), constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL | constants.O_DIRECT, 0o600);
  } catch (e) {
    return warning(name, `open with O_DIRECT refused (${reason(e)})`, fix);
  }
  try {
    // the buffer's address must be aligned too; JS gives no address, so try each 512-byte step
    const buf = new Uint8Array(new ArrayBuffer(2 * DIRECT_BLOCK_BYTES)).fill(0x5a);
    let last = "";
    for (let off = 0; off < DIRECT_BLOCK_BYTES; off += 512) {
      try {
        if (writeSync(fd, buf, off, DIRECT_BLOCK_BYTES, 0) === DIRECT_BLOCK_BYTES) return ok(name, `supported (an aligned ${DIRECT_BLOCK_BYTES}-byte write went through)`);
        last = "short write";
      } catch (e) {
        last = reason(e);
      }
    }
    return warning(name, `an aligned ${DIRECT_BLOCK_BYTES}-byte O_DIRECT write failed (${last})`, fix);
  } finally {
    closeSync(fd);
  }
}
