// A writeThrough pool end to end (pf up from the compiled binary): scli switches the pool live,
// and an acknowledged write survives kill -9 of every process WITH the SDS devices' unsynced
// writes lost as on a power cut (PF_VOLATILE_DEVICE_CACHE=1: src/store/volatile_cache.ts keeps
// them in the SDS process's memory until fdatasync). The same run first shows the model bites: in
// writeBack, writes acknowledged but never flushed are gone after the same kill.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { run, runFio } from "./helpers/real_clients.ts";
import { waitFor } from "./helpers/recovery.ts";

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    env: { PF_VOLATILE_DEVICE_CACHE: "1" },
    volumes: [
      { name: "wt", size: "64MiB" },
      { name: "wb", size: "64MiB" },
    ],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

const POOL = ["--protection_domain_name", "pd1", "--storage_pool_name", "sp1"];

/** fio writing every 4 KiB block of the first 32 MiB once, with verify headers; or checking them. */
function fioJob(volume: string, seed: number, verifyOnly: boolean): string[] {
  return [
    `--name=${volume}`,
    "--ioengine=nbd",
    `--uri=${c.nbdUri(volume)}`,
    "--rw=randwrite",
    "--bs=4k",
    "--iodepth=16",
    "--size=32M",
    `--randseed=${seed}`,
    "--verify=crc32c",
    "--verify_state_save=0",
    ...(verifyOnly ? ["--verify_only", "--verify_fatal=0"] : ["--do_verify=0"]),
  ];
}

/** Until every SDS serves the pool's extents in this mode (its next heartbeat after the change). */
async function waitMode(writeThrough: boolean): Promise<void> {
  await waitFor(`every SDS to serve ${writeThrough ? "writeThrough" : "writeBack"}`, 15_000, async () => {
    for (let i = 0; i < 3; i++) {
      const st = (await (await fetch(`${c.sdsControlUrl(i)}/status`)).json()) as { writeCache: { extents: number; writeThroughExtents: number } };
      if (st.writeCache.writeThroughExtents !== (writeThrough ? st.writeCache.extents : 0)) return false;
    }
    return true;
  });
}

test("an acknowledged writeThrough write survives kill -9 of every process with the devices' unsynced writes lost", async () => {
  // the model bites: in writeBack, acknowledged writes that were never flushed are gone
  await waitMode(false);
  const wb = await runFio(fioJob("wb", 7, false), { timeoutMs: 120_000 });
  expect(wb.json.jobs[0]!.error).toBe(0);
  await c.killAll9(); // every role and pf up: the SDSs' volatile device caches are gone
  await c.start();
  const lost = await run(["fio", ...fioJob("wb", 7, true), "--output-format=json"], { timeoutMs: 120_000 });
  expect(lost.stdout + lost.stderr).toMatch(/verify: bad|bad magic|crc32c: verify failed/i);

  // scli switches the pool live
  const set = await c.scli(["--set_storage_pool_write_cache", ...POOL, "--write_cache", "writeThrough"]);
  expect(set.code, set.stderr).toBe(0);
  expect(set.stdout).toContain("writeThrough");
  const q = await c.scli(["--query_storage_pool", ...POOL]);
  expect(q.stdout).toContain("Write cache: writeThrough");
  const bad = await c.scli(["--set_storage_pool_write_cache", ...POOL, "--write_cache", "sometimes"]);
  expect(bad.code).toBe(2);
  await waitMode(true);

  const wt = await runFio(fioJob("wt", 11, false), { timeoutMs: 120_000 });
  expect(wt.json.jobs[0]!.error).toBe(0);
  await c.killAll9();
  await c.start();
  // every acknowledged block of the writeThrough volume is there
  const checked = await runFio(fioJob("wt", 11, true), { timeoutMs: 120_000 });
  expect(checked.json.jobs[0]!.error).toBe(0);
  expect(checked.stdout + checked.stderr).not.toMatch(/verify: bad|bad magic|verify failed/i);
  expect(checked.json.jobs[0]!.read.io_bytes).toBe(32 * 1024 * 1024);
}, 300_000);
