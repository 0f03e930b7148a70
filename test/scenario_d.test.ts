// Scenario D, as an operator lives it: capacity exhaustion of a thin pool. Three thin volumes
// (512 MiB in all) overcommit a pool that holds 96 MiB of mirrored data (3 SDSs x 64 MiB, no
// spare). Earlier data goes into two of them (qemu-io patterns, fio crc32c), then real-client
// writes fill the third: below 80 % no alert; past 80 % CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD
// (scli --query_alerts --json, pf_alerts_active on the MDM's /metrics); past 90 % the CRITICAL
// one instead; writing past full gives the client ENOSPC, while the other volumes keep their
// data and stay readable and writable where their space is already allocated. Removing the
// filling volume frees its space and clears every alert. Each test is one step, in order.
//
// The filler writes 1 MiB per thin chunk, spread round-robin over the volume's 16 extents, so
// that every SDS fills at the same pace (placement spreads a volume's extents evenly) and the
// pool's utilization is exactly (chunks written x 2 copies) / 192 MiB at each step.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AlertObject } from "../src/proto/powerflex_api.ts";
import { TestCluster } from "./helpers/cluster.ts";
import { activeAlertCount, MdmRest, queryAlerts, sample, scliOk, scrape } from "./helpers/operator_views.ts";
import { runFio, runQemuIo } from "./helpers/real_clients.ts";
import { expectIdentical, poolJson, waitFor, waitPoolHealthy, type Scli } from "./helpers/recovery.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const EXTENT_MIB = 16;
const USABLE_RAW_MIB = 3 * 64; // no spare: every device byte holds data
const HIGH = "CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD";
const CRITICAL = "CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD";

let c: TestCluster;
let rest: MdmRest;
let scli: Scli;

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "64MiB",
    sparePercentage: 0,
    volumes: [
      { name: "alpha", size: "128MiB", type: "thin" },
      { name: "beta", size: "128MiB", type: "thin" },
      { name: "scratch", size: "256MiB", type: "thin" },
    ],
  });
}, 10_000);

afterAll(async () => {
  await c?.destroy();
});

/** Run scli and require exit 0. */
const ok = (args: string[]): Promise<string> => scliOk(scli, args);

/** qemu-io commands writing 1 MiB chunks number first..first+count-1 of a volume with `extents` extents, round-robin over them. */
function spread(first: number, count: number, extents: number, pattern: number): string[] {
  return Array.from({ length: count }, (_, i) => {
    const k = first + i;
    return `write -P 0x${pattern.toString(16)} ${(k % extents) * EXTENT_MIB + Math.floor(k / extents)}M 1M`;
  });
}
const asReads = (cmds: string[]) => cmds.map((w) => w.replace("write", "read"));

// alpha: a qemu-io pattern at the start of each of its 8 extents
const ALPHA = spread(0, 8, 8, 0xa1);
// beta: fio with crc32c, one 1 MiB job at the start of each of its 8 extents (random 16k writes, then verified)
const BETA_FIO = [
  "--rw=randwrite",
  "--bs=16k",
  "--iodepth=4",
  "--size=1M",
  "--verify=crc32c",
  "--do_verify=1",
  "--verify_fatal=1",
  "--verify_state_save=0",
  "--randrepeat=1",
  ...Array.from({ length: 8 }, (_, i) => [`--name=beta${i}`, `--offset=${i * EXTENT_MIB}M`]).flat(),
];
const betaFio = (extra: string[] = []) => runFio(["--ioengine=nbd", `--uri=${c.nbdUri("beta")}`, ...BETA_FIO, ...extra]);

/** The pool as the MDM sees it once the SDSs' heartbeats have brought `rawMiB` of use. */
async function waitInUse(rawMiB: number): Promise<void> {
  await waitFor(`the pool to have ${rawMiB} MiB in use`, 20_000, async () => Number((await poolJson(scli)).statistics?.capacityInUseInKb) === rawMiB * 1024);
}

/** Wait until the active capacity alerts are exactly `types`; returns them. */
async function waitCapacityAlerts(types: string[]): Promise<AlertObject[]> {
  return waitFor(`capacity alerts to be [${types.join(", ")}]`, 20_000, async () => {
    const list = await queryAlerts(scli);
    const capacity = list.filter((a) => a.alertType.startsWith("CAPACITY_UTILIZATION")).map((a) => a.alertType);
    return JSON.stringify(capacity) === JSON.stringify(types) ? list : null;
  });
}

let scratchChunks = 0;
async function fillScratch(chunks: number, opts: { expectFailure?: boolean } = {}) {
  const r = await runQemuIo(c.nbdUri("scratch"), spread(scratchChunks, chunks, 256 / EXTENT_MIB, 0x5c), { expectFailure: opts.expectFailure });
  scratchChunks += chunks;
  return r;
}

describe("scenario D: capacity exhaustion of an overcommitted thin pool", () => {
  test("1. pf up: three thin volumes of 512 MiB in all on a pool holding 96 MiB mirrored; the overcommit is shown, no alert", async () => {
    await c.start();
    scli = (a) => c.scli(a);
    await c.login();
    rest = new MdmRest(c.mdmUrl, c.caFile);
    await rest.login("admin", "test-admin-pw");
    const s = (await poolJson(scli)).statistics!;
    expect(s).toMatchObject({ maxCapacityInKb: USABLE_RAW_MIB * 1024, spareCapacityInKb: 0, thinCapacityAllocatedInKb: 512 * 1024, numOfThinBaseVolumes: 3, capacityInUseInKb: 0 });
    const m = await rest.metrics();
    const pool = { storage_pool: "sp1" };
    expect(sample(m, "pf_storage_pool_thin_allocated_bytes", pool)).toBe(512 * MiB);
    expect(sample(m, "pf_storage_pool_thin_overcommit_ratio", pool)).toBeCloseTo((2 * 512) / USABLE_RAW_MIB, 6); // 5.33x, under the limit of 10
    expect(sample(m, "pf_storage_pool_capacity_alert_threshold_ratio", { ...pool, level: "high" })).toBe(0.8);
    expect(sample(m, "pf_storage_pool_capacity_alert_threshold_ratio", { ...pool, level: "critical" })).toBe(0.9);
    expect(await queryAlerts(scli)).toEqual([]);
    expect(activeAlertCount(m)).toBe(0);
  }, 90_000);

  test("2. earlier data: qemu-io patterns in alpha, fio crc32c in beta; the pool counts two copies of the 16 MiB", async () => {
    await runQemuIo(c.nbdUri("alpha"), [...ALPHA, "flush"]);
    const f = await betaFio();
    expect(f.json.jobs.map((j) => j.write.io_bytes)).toEqual(Array.from({ length: 8 }, () => MiB));
    await waitInUse(2 * 16);
    expect(await queryAlerts(scli)).toEqual([]);
  }, 30_000);

  test("3. fill scratch to 67 %: still no alert", async () => {
    await fillScratch(48);
    await waitInUse(2 * (16 + 48)); // 128 of 192 MiB
    const m = await rest.metrics();
    expect(sample(m, "pf_storage_pool_capacity_utilization_ratio", { storage_pool: "sp1" })).toBeCloseTo(128 / USABLE_RAW_MIB, 9);
    expect(await queryAlerts(scli)).toEqual([]);
    expect(activeAlertCount(m)).toBe(0);
  }, 30_000);

  test("4. fill scratch to 83 %: CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD is raised (scli and pf_alerts_active), health is a warning", async () => {
    await fillScratch(16);
    await waitInUse(2 * (16 + 64)); // 160 of 192 MiB
    const list = await waitCapacityAlerts([HIGH]);
    const high = list.find((a) => a.alertType === HIGH)!;
    expect(high).toMatchObject({ severity: "ALERT_MEDIUM", state: "active", affectedObject: { type: "StoragePool" } });
    expect(high.alertValues).toMatchObject({ storagePoolName: "sp1", thresholdPercent: "80" });
    const at = Number((high.alertValues as { utilizationPercent: string }).utilizationPercent);
    expect(at).toBeGreaterThanOrEqual(80);
    expect(at).toBeLessThanOrEqual(83.3);
    expect(await ok(["--query_alerts"])).toContain(`${HIGH} (ALERT_MEDIUM) on StoragePool`);
    await waitFor("pf_alerts_active to show the high-threshold alert", 10_000, async () => {
      const m = await rest.metrics();
      return activeAlertCount(m, HIGH) === 1 && activeAlertCount(m, CRITICAL) === 0 && sample(m, "pf_health_status") === 1;
    });
  }, 30_000);

  test("5. fill scratch to 92 %: the CRITICAL alert replaces the high one; health is an error", async () => {
    await fillScratch(8);
    await waitInUse(2 * (16 + 72)); // 176 of 192 MiB
    const list = await waitCapacityAlerts([CRITICAL]);
    const critical = list.find((a) => a.alertType === CRITICAL)!;
    expect(critical).toMatchObject({ severity: "ALERT_CRITICAL", state: "active" });
    // the figure when the alert was raised: a heartbeat may report the fill half way (90.6 %) first
    expect(critical.alertValues).toMatchObject({ storagePoolName: "sp1", thresholdPercent: "90" });
    const at = Number((critical.alertValues as { utilizationPercent: string }).utilizationPercent);
    expect(at).toBeGreaterThanOrEqual(90);
    expect(at).toBeLessThanOrEqual(91.7);
    await waitFor("pf_alerts_active to show the critical alert only", 10_000, async () => {
      const m = await rest.metrics();
      return activeAlertCount(m, CRITICAL) === 1 && activeAlertCount(m, HIGH) === 0 && sample(m, "pf_health_status") === 2;
    });
  }, 30_000);

  test("6. write past full: the client gets ENOSPC (qemu-io says 'No space left on device'); the SDC counts the failed writes", async () => {
    const before = sample(await scrape(c.sdcControlUrl), "pf_volume_write_errors_total", { volume: "scratch" });
    const r = await fillScratch(24, { expectFailure: true }); // 48 MiB more raw than the 16 left
    expect(r.stdout + r.stderr).toContain("write failed: No space left on device");
    const failed = (r.stdout + r.stderr).match(/write failed: No space left on device/g)!.length;
    expect(failed).toBeGreaterThanOrEqual(24 - 8); // at most the 8 chunks that were left could fit
    const after = sample(await scrape(c.sdcControlUrl), "pf_volume_write_errors_total", { volume: "scratch" });
    expect(after - before).toBe(failed);
    const m = await rest.metrics();
    expect(sample(m, "pf_storage_pool_capacity_utilization_ratio", { storage_pool: "sp1" })).toBeGreaterThanOrEqual(0.9);
    expect((await queryAlerts(scli)).map((a) => a.alertType)).toContain(CRITICAL);
    // every server is still up
    expect(sample(m, "pf_sds_up")).toBe(3);
    const active = (await queryAlerts(scli)).map((a) => `${a.alertType} ${JSON.stringify(a.alertValues)}`);
    process.stderr.write(`past full: ${failed} of 24 writes failed with ENOSPC; active alerts: ${active.join("; ")}\n`);
  }, 30_000);

  test("7. on the full pool, alpha and beta still read their data and rewrite their allocated space", async () => {
    await runQemuIo(c.nbdUri("alpha"), asReads(ALPHA));
    await betaFio(["--verify_only"]);
    await runQemuIo(c.nbdUri("alpha"), ["write -P 0xa2 0 1M", "read -P 0xa2 0 1M", "write -P 0xa1 0 1M", "flush"]);
    await betaFio(); // the same regions written again and verified
    await runQemuIo(c.nbdUri("alpha"), asReads(ALPHA));
  }, 60_000);

  test("8. unmap and remove scratch: its space is freed, every alert clears (history keeps them), alpha and beta are intact on two copies", async () => {
    expect(await ok(["--unmap_volume_from_sdc", "--volume_name", "scratch", "--sdc_name", "local", "--i_am_sure"])).toContain("Successfully un-mapped volume scratch");
    expect(await ok(["--remove_volume", "--volume_name", "scratch", "--i_am_sure"])).toContain("Successfully removed volume scratch");
    await waitPoolHealthy(scli, 60_000);
    await waitInUse(2 * 16);
    await waitFor("every alert to clear", 20_000, async () => (await queryAlerts(scli)).length === 0);
    const m = await rest.metrics();
    expect(activeAlertCount(m)).toBe(0);
    expect(sample(m, "pf_health_status")).toBe(0);
    const history = await queryAlerts(scli, { all: true });
    for (const t of [HIGH, CRITICAL]) {
      const a = history.find((x) => x.alertType === t);
      expect(a?.state).toBe("cleared");
      expect(Date.parse(a!.clearedTime!)).toBeGreaterThanOrEqual(Date.parse(a!.startTime));
    }
    await expectIdentical(scli, "alpha");
    await expectIdentical(scli, "beta");
    await runQemuIo(c.nbdUri("alpha"), asReads(ALPHA));
    await betaFio(["--verify_only"]);
    // and alpha can take new space again
    await runQemuIo(c.nbdUri("alpha"), ["write -P 0xa9 100M 1M", "read -P 0xa9 100M 1M"]);
  }, 90_000);
});
