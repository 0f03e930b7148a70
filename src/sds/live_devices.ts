// Devices added to a running SDS (scli --add_sds_device, REST device create): the MDM names them
// in its heartbeat answer (openDevices) until the SDS reports them open with their size; then
// placement may use them. Removed ones (closeDevices) are closed once nothing lives on them.
//
// The SDS's own list (the cluster file's devices, `pf sds --device`) is where devices come from at
// start; a device added live is kept in DATA_DIR/added-devices.json so that the SDS opens it again
// at every start and its join names it (a join that leaves a device out marks it Failed:
// cluster_service.ts failDevicesLeftOut). The file is written whole (temp file, fsync, rename).
//
// Invariants:
// - a device the MDM asked for is either open (a slot of the store, reported every beat) or
//   reported Failed with its open error logged: never asked for forever, never silently dropped;
// - the file lists exactly the live-added devices still in use; one the MDM removed leaves it.

import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join as joinPath } from "node:path";
import { consola } from "consola";
import { z } from "zod";
import type { DeviceReport } from "../proto/cluster_api.ts";
import { PfError, deviceErrorText } from "../proto/errors.ts";
import type { SdsCore } from "./sds_core.ts";

const FILE = "added-devices.json";
const Saved = z.object({ version: z.literal(1), devices: z.array(z.object({ path: z.string().min(1) })) });

export class LiveDevices {
  private readonly file: string;
  private paths: string[];
  /** devices the MDM asked for that would not open, and why: reported Failed until the MDM removes them */
  private readonly failed = new Map<string, string>();
  /** removed by the MDM but holding extents here (warned once) */
  private readonly keptOpen = new Set<string>();
  /** a list whose write failed, to write at the next beat */
  private unsaved: string[] | null = null;

  private constructor(
    private readonly sdsName: string,
    dataDir: string,
    paths: string[],
  ) {
    this.file = joinPath(dataDir, FILE);
    this.paths = paths;
  }

  /** The live-added devices of earlier runs (none when the file is missing). A damaged file is an error naming it. */
  static load(sdsName: string, dataDir: string): LiveDevices {
    const file = joinPath(dataDir, FILE);
    if (!existsSync(file)) return new LiveDevices(sdsName, dataDir, []);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, "utf8"));
    } catch (e) {
      throw new PfError("INVALID_STATE", `${file} is not readable JSON (${(e as Error).message}); fix it, or remove it (the devices it lists are then not opened)`);
    }
    const parsed = Saved.safeParse(json);
    if (!parsed.success) throw new PfError("INVALID_STATE", `${file} is not a list of added devices (${parsed.error.issues[0]?.message}); fix it, or remove it (the devices it lists are then not opened)`);
    return new LiveDevices(sdsName, dataDir, parsed.data.devices.map((d) => d.path));
  }

  /** paths to open at start, besides the configured ones */
  get added(): readonly string[] {
    return this.paths;
  }

  /** The MDM no longer knows this added device (removed, here or while the SDS was down): drop it from the file. */
  forget(path: string): void {
    if (this.paths.includes(path)) this.save(this.paths.filter((p) => p !== path));
  }

  /** Devices this SDS could not open, as beat reports (Failed). */
  reports(): DeviceReport[] {
    return [...this.failed].map(([deviceId, error]) => ({ deviceId, state: "Failed", usedBytes: 0, error }));
  }

  /** Act on a heartbeat answer's openDevices / closeDevices (every beat: a file write that failed is tried again). */
  apply(core: SdsCore, open: readonly { deviceId: string; path: string }[] | undefined, close: readonly string[] | undefined): void {
    if (this.unsaved !== null) this.save(this.unsaved);
    for (const d of open ?? []) {
      if (this.failed.has(d.deviceId) || core.store.slot(d.deviceId) !== undefined) continue;
      try {
        core.addDevice(d.deviceId, d.path);
      } catch (e) {
        const why = (e as Error).message;
        this.failed.set(d.deviceId, deviceErrorText(e));
        consola.error(`sds ${this.sdsName}: cannot open device ${d.deviceId} (${d.path}) the MDM added: ${why}; it is reported Failed (remove it with scli --remove_sds_device, then add it again once the path is there)`);
        continue;
      }
      consola.info(`sds ${this.sdsName}: opened device ${d.deviceId} (${d.path}) added by the MDM`);
      if (!this.paths.includes(d.path)) this.save([...this.paths, d.path]);
    }
    for (const id of close ?? []) {
      if (this.failed.delete(id)) continue;
      const slot = core.store.slot(id);
      if (slot === undefined) continue;
      if (!core.removeDevice(id)) {
        if (!this.keptOpen.has(id)) consola.warn(`sds ${this.sdsName}: the MDM removed device ${id} (${slot.dev.path}), but extents still live on it here; it stays open`);
        this.keptOpen.add(id);
        continue;
      }
      this.keptOpen.delete(id);
      consola.info(`sds ${this.sdsName}: device ${id} (${slot.dev.path}) was removed by the MDM; no longer used`);
      this.forget(slot.dev.path);
    }
  }

  /**
   * Write the list whole (temp file, fsync, rename). A failure (a full or read-only disk) is
   * logged and tried again at the next beat, never thrown into the beat: the device is in use
   * either way, and only a restart before the retry would leave it out of the join.
   */
  private save(paths: string[]): void {
    this.paths = paths;
    const tmp = `${this.file}.tmp`;
    try {
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, JSON.stringify({ version: 1, devices: paths.map((path) => ({ path })) }) + "\n");
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
      this.unsaved = null;
    } catch (e) {
      if (this.unsaved === null) consola.error(`sds ${this.sdsName}: cannot write ${this.file} (${(e as Error).message}); trying again at every heartbeat`);
      this.unsaved = paths;
    }
  }
}
