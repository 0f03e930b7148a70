// A disk added to a running SDS (scli --add_sds_device), as an operator grows a pool: the SDS
// opens it at its next heartbeat, rebalance moves data onto it, and the data read back by fio's
// verify is what was written; after a restart of every role the SDS opens it again (its join
// names it, so it is not marked Failed). A path the SDS cannot open, or a device that holds data,
// is reported Failed (scli exit 4) and removed again with --remove_sds_device, which the SDS
// follows by closing it; the data is left as it was.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio } from "./helpers/real_clients.ts";

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({ devicesPerSds: 1, deviceSize: "192MiB", sparePercentage: 0, volumes: [{ name: "v", size: "256MiB", type: "thin" }] });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

type SdsStatus = { devices: { deviceId: string; path: string; state: string; usedBytes: number }[] };
async function sdsStatus(i: number): Promise<SdsStatus> {
  return (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as SdsStatus;
}

async function until(what: string, ok: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${c.warnings()}`);
    await Bun.sleep(250);
  }
}

const fioWrite = ["--name=w", "--rw=write", "--bs=256k", "--iodepth=4", "--size=256M", "--verify=crc32c", "--do_verify=0", "--verify_state_save=0"];
const fioVerify = ["--name=w", "--rw=read", "--bs=256k", "--iodepth=4", "--size=256M", "--verify=crc32c", "--verify_only=1", "--verify_state_save=0"];

test("a disk added to a running SDS takes data by rebalance, and is opened again after a restart", async () => {
  const uri = c.nbdUri("v");
  await runFio(["--ioengine=nbd", `--uri=${uri}`, ...fioWrite]);
  const extra = join(c.dir, "extra.img");
  execFileSync("fallocate", ["-l", String(512 * 1024 * 1024), extra]);

  const add = await c.scli(["--add_sds_device", "--sds_name", "sds1", "--device_path", extra, "--storage_pool_name", "sp1", "--device_name", "extra"]);
  expect(add.stderr).toBe("");
  expect(add.code).toBe(0);
  expect(add.stdout).toMatch(/^Successfully added device extra to SDS sds1 in storage pool sp1\. Object ID [0-9a-f]{16}\n\topened by the SDS: 0\.5 GB \(512 MB\)\n$/);
  // the SDS serves it and rebalance moves copies onto it (the other devices are 192 MiB)
  await until("data on the added device", async () => (await sdsStatus(0)).devices.some((d) => d.path === extra && d.usedBytes > 0));
  await runFio(["--ioengine=nbd", `--uri=${uri}`, ...fioVerify]);
  expect(JSON.parse(readFileSync(join(c.dataDir, "sds", "sds1", "added-devices.json"), "utf8"))).toEqual({ version: 1, devices: [{ path: extra }] });

  // every role restarts: sds1 opens the device again, its join names it, it stays Normal
  await c.stop();
  await c.start();
  await until("the added device served again", async () => (await sdsStatus(0)).devices.some((d) => d.path === extra && d.state === "Normal" && d.usedBytes > 0));
  const q = await c.scli(["--query_sds", "--sds_name", "sds1"]);
  expect(q.stdout).toMatch(new RegExp(`Name: extra  Path: ${extra.replaceAll("/", "\\/")}  ID: [0-9a-f]{16}\\n\\t+Storage Pool: sp1, Capacity: 0\\.5 GB \\(512 MB\\), State: Normal`));
  await runFio(["--ioengine=nbd", `--uri=${uri}`, ...fioVerify]);
}, 240_000);

test("a path the SDS cannot open: reported Failed (exit 4); removed, the SDS lets go of it", async () => {
  const missing = join(c.dir, "not-there.img");
  const add = await c.scli(["--add_sds_device", "--sds_name", "sds2", "--device_path", missing, "--storage_pool_name", "sp1"]);
  expect(add.code).toBe(4);
  const id = /device ([0-9a-f]{16}) was added to SDS sds2, but the SDS could not open/.exec(add.stderr)?.[1];
  expect(id).toBeDefined();
  expect(add.stderr).toContain(`remove it with --remove_sds_device --device_id ${id}`);
  // the SDS's own reason reaches the operator through the MDM (heartbeat report -> REST errorMessage)
  expect(add.stderr).toContain(`could not open ${missing}: device ${missing} does not exist`);
  const failed = (await c.scli(["--query_sds", "--sds_name", "sds2"])).stdout;
  expect(failed).toContain("State: Failed");
  expect(failed).toContain(`Error: device ${missing} does not exist`);
  const rm = await c.scli(["--remove_sds_device", "--device_id", id!]);
  expect(rm.code).toBe(0);
  expect((await c.scli(["--query_sds", "--sds_name", "sds2"])).stdout).not.toContain(missing);
  expect(existsSync(join(c.dataDir, "sds", "sds2", "added-devices.json"))).toBe(false);
  // a file with content (a file system's superblock would do the same) is refused: the SDS would overwrite it
  const used = join(c.dir, "used.img");
  execFileSync("fallocate", ["-l", String(64 * 1024 * 1024), used]);
  execFileSync("dd", ["if=/etc/hostname", `of=${used}`, "bs=4k", "seek=100", "conv=notrunc", "status=none"]);
  const before = readFileSync(used);
  const taken = await c.scli(["--add_sds_device", "--sds_name", "sds3", "--device_path", used, "--storage_pool_name", "sp1"]);
  expect(taken.code).toBe(4);
  expect(taken.stderr).toContain(`device ${used} holds data in its first MiB`);
  expect(readFileSync(used).equals(before)).toBe(true);
  // a disk another SDS on this host serves (by another name of it) is refused: it is locked
  const served = (await sdsStatus(0)).devices[0]!.path;
  const alias = join(c.dir, "alias-of-sds1.img");
  symlinkSync(served, alias);
  const twice = await c.scli(["--add_sds_device", "--sds_name", "sds3", "--device_path", alias, "--storage_pool_name", "sp1"]);
  expect(twice.code).toBe(4);
  expect(twice.stderr).toContain(`device ${alias} is locked: another process holds it`);
  // the volume still reads back as written
  await runFio(["--ioengine=nbd", `--uri=${c.nbdUri("v")}`, ...fioVerify]);
}, 120_000);
