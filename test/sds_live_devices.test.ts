// Devices added to and removed from a running SDS core (sds_core.ts addDevice/removeDevice,
// ExtentStore.addDevice/removeDevice, live_devices.ts): one disk never in two slots (the same
// path, or another name of it), a device with data refused and left as it was, the cleaner
// stopping on a removed device, and added-devices.json kept as the devices change.

import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { LiveDevices } from "../src/sds/live_devices.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, startNode, tmpDir } from "./sds_harness.ts";

const cores: SdsCore[] = [];
afterEach(async () => {
  for (const c of cores.splice(0)) await c.stop();
});

function node(): { core: SdsCore; dir: string } {
  const dir = tmpDir("live-dev");
  const core = startNode(dir, 1);
  cores.push(core);
  return { core, dir };
}

function emptyFile(path: string, bytes: number): void {
  const fd = fs.openSync(path, "w");
  fs.ftruncateSync(fd, bytes);
  fs.closeSync(fd);
}

describe("a device added to a running SDS", () => {
  test("opened and reported; the same disk again, by its path or a symlink to it, is refused", () => {
    const { core, dir } = node();
    const extra = join(dir, "extra.img");
    emptyFile(extra, 32 * MiB);
    core.addDevice("de70000000000101", extra);
    expect(core.store.slot("de70000000000101")?.dev.sizeBytes).toBe(32 * MiB);
    const link = join(dir, "alias.img");
    fs.symlinkSync(extra, link);
    expect(() => core.addDevice("de70000000000102", link)).toThrow(/is the disk this SDS already serves as/);
    expect(() => core.addDevice("de70000000000103", extra)).toThrow(/already serves|already in use/);
    expect(core.store.slots.map((s) => s.deviceId).sort()).toEqual(["de70000000000001", "de70000000000101"]);
  });

  test("a device whose first MiB holds data is refused and left byte for byte", () => {
    const { core, dir } = node();
    const used = join(dir, "used.img");
    emptyFile(used, 16 * MiB);
    const fd = fs.openSync(used, "r+");
    fs.writeSync(fd, Buffer.from("ext4 superblock or so"), 0, 21, 1024);
    fs.closeSync(fd);
    const before = fs.readFileSync(used);
    expect(() => core.addDevice("de70000000000104", used)).toThrow(/holds data in its first MiB/);
    expect(fs.readFileSync(used).equals(before)).toBe(true);
    expect(core.store.slot("de70000000000104")).toBeUndefined();
  });

  test("removed, the cleaner writes no more to it; added again, no chunk of it is trusted as zeros", async () => {
    const { core, dir } = node();
    const extra = join(dir, "extra.img");
    emptyFile(extra, 32 * MiB);
    core.addDevice("de70000000000105", extra);
    const slot = core.store.slot("de70000000000105")!;
    // as if its first chunks had been zeroed and the watermark persisted while in use
    core.store.meta.setZeroedBelow(slot.devNo, 8);
    expect(core.removeDevice("de70000000000105")).toBe(true);
    expect(slot.removed).toBe(true);
    expect(core.store.slot("de70000000000105")).toBeUndefined();
    // the same path once more (the operator adds the disk again): a fresh allocator, every chunk to be zeroed before use
    core.addDevice("de70000000000106", extra);
    const again = core.store.slot("de70000000000106")!;
    expect(again.devNo).toBe(slot.devNo);
    expect(again.alloc.zeroedBelow).toBe(0);
  });
});

describe("added-devices.json", () => {
  test("a device the MDM asked for is opened and kept; removed, it leaves the file; one that will not open is reported Failed", () => {
    const { core, dir } = node();
    const live = LiveDevices.load("sds1", dir);
    const extra = join(dir, "extra.img");
    emptyFile(extra, 32 * MiB);
    live.apply(core, [{ deviceId: "de70000000000107", path: extra }, { deviceId: "de70000000000108", path: join(dir, "missing.img") }], undefined);
    expect(core.store.slot("de70000000000107")).toBeDefined();
    expect(live.reports()).toEqual([{ deviceId: "de70000000000108", state: "Failed", usedBytes: 0, error: `device ${join(dir, "missing.img")} does not exist and no size was given to create it` }]);
    expect(LiveDevices.load("sds1", dir).added).toEqual([extra]);
    // asked again: nothing new (no second slot, no second attempt at the missing one)
    live.apply(core, [{ deviceId: "de70000000000107", path: extra }, { deviceId: "de70000000000108", path: join(dir, "missing.img") }], undefined);
    expect(core.store.slots.length).toBe(2);
    live.apply(core, undefined, ["de70000000000107", "de70000000000108"]);
    expect(core.store.slot("de70000000000107")).toBeUndefined();
    expect(live.reports()).toEqual([]);
    expect(LiveDevices.load("sds1", dir).added).toEqual([]);
  });
});

test("a damaged added-devices.json stops the start with the file named and the fix", () => {
  const dir = tmpDir("live-dev-bad");
  fs.writeFileSync(join(dir, "added-devices.json"), "{not json");
  expect(() => LiveDevices.load("sds1", dir)).toThrow(/added-devices\.json is not readable JSON .*; fix it, or remove it/);
  fs.writeFileSync(join(dir, "added-devices.json"), JSON.stringify({ version: 1, devices: [{ path: "" }] }));
  expect(() => LiveDevices.load("sds1", dir)).toThrow(/is not a list of added devices/);
});
