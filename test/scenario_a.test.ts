// Scenario A, as an operator lives it: a basic deployment. `pf up` with a cluster file (1 MDM,
// 3 SDSs with two devices each, 1 SDC), the topology checked with scli, a thin and a thick
// volume created and mapped, real clients (qemu-io patterns, fio with crc32c verification)
// doing IO, and what the cluster says about it: the SDC's and SDSs' /metrics count exactly the
// client's requests, the MDM's /metrics and PowerFlex Statistics show the same IO (the Bwc
// over its 5 s window), the pool's capacity in use grows by two copies of what was written, and
// no alert is raised. Last, a volume is unmapped and removed. Each test below is one step, in
// order, named by what the operator does and what they see.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { activeAlertCount, hasSample, MdmRest, queryAlerts, sample, scliOk, scrape, type Bwc } from "./helpers/operator_views.ts";
import { promtoolMetrics } from "./helpers/promtool.ts";
import { nbdinfoJson, runFio, runQemuIo } from "./helpers/real_clients.ts";
import { poolJson, verifyJob, waitFor, type Scli } from "./helpers/recovery.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const SDS_COUNT = 3;
const DEVICE_BYTES = 768 * MiB;

let c: TestCluster;
let rest: MdmRest;
let scli: Scli;

beforeAll(async () => {
  c = await TestCluster.create({ sdsCount: SDS_COUNT, devicesPerSds: 2, deviceSize: "768MiB", volumes: [] });
}, 10_000);

afterAll(async () => {
  await c?.destroy();
});

/** Run scli and require exit 0. */
const ok = (args: string[]): Promise<string> => scliOk(scli, args);

const sdsUrls = () => Array.from({ length: SDS_COUNT }, (_, i) => c.sdsControlUrl(i));
async function sumOverSds(name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const u of sdsUrls()) total += sample(await scrape(u), name, labels);
  return total;
}
const poolStats = async () => (await poolJson(scli)).statistics ?? {};
const inUseKb = async () => Number((await poolStats()).capacityInUseInKb);

describe("scenario A: basic deployment", () => {
  test("1. pf up with the cluster file: every role starts, pf up prints the NBD, REST and control URLs", async () => {
    await c.start();
    scli = (a) => c.scli(a);
    await c.login();
    rest = new MdmRest(c.mdmUrl, c.caFile);
    await rest.login("admin", "test-admin-pw");
    expect(c.output).toContain("pf is up on host local");
    expect(c.output).toContain(`REST:  ${c.mdmUrl}/api`);
    for (let i = 0; i < SDS_COUNT; i++) expect(c.output).toContain(`control sds sds${i + 1}: ${c.sdsControlUrl(i)}`);
    expect(c.output).toContain(`control sdc: ${c.sdcControlUrl}`);
  }, 90_000);

  test("2. scli shows the topology: pd1 with pool sp1, 3 SDSs connected with 2 devices each, the SDC connected; no alert", async () => {
    const all = await ok(["--query_all"]);
    expect(all).toContain("Query all returned 1 Protection Domain");
    expect(all).toMatch(/\(Name: pd1\) has 1 storage pool, 3 SDS nodes/);
    expect(all).toContain("3 SDS nodes have membership state 'Joined'");
    expect(all).toContain("3 SDS nodes have connection state 'Connected'");
    expect(all).toContain("Total 1 SDC nodes");

    const sds = JSON.parse(await ok(["--query_all_sds", "--json"])) as { name: string; mdmConnectionState: string; membershipState: string; sdsState: string }[];
    expect(sds.map((s) => [s.name, s.mdmConnectionState, s.membershipState, s.sdsState]).sort()).toEqual([
      ["sds1", "Connected", "Joined", "Normal"],
      ["sds2", "Connected", "Joined", "Normal"],
      ["sds3", "Connected", "Joined", "Normal"],
    ]);
    for (const name of ["sds1", "sds2", "sds3"]) {
      const one = JSON.parse(await ok(["--query_sds", "--sds_name", name, "--json"])) as { devices: { deviceState: string; maxCapacityInKb: number; deviceCurrentPathName: string }[] };
      expect(one.devices.map((d) => [d.deviceState, d.maxCapacityInKb])).toEqual([
        ["Normal", DEVICE_BYTES / KiB],
        ["Normal", DEVICE_BYTES / KiB],
      ]);
      expect(one.devices.map((d) => d.deviceCurrentPathName.split("/").slice(-2).join("/"))).toEqual([`${name}/dev0.img`, `${name}/dev1.img`]);
    }
    const sdc = JSON.parse(await ok(["--query_all_sdc", "--json"])) as { name: string; sdcIp: string; mdmConnectionState: string }[];
    expect(sdc.map((s) => [s.name, s.sdcIp, s.mdmConnectionState])).toEqual([["local", "127.0.0.1", "Connected"]]);

    const pool = await poolJson(scli);
    expect(pool).toMatchObject({ name: "sp1", sparePercentage: 10, capacityAlertHighThreshold: 80, capacityAlertCriticalThreshold: 90, extentSizeInKb: 16 * 1024 });
    expect(pool.statistics).toMatchObject({ maxCapacityInKb: (6 * DEVICE_BYTES) / KiB, numOfDevices: 6, numOfVolumes: 0, capacityInUseInKb: 0 });

    // the MDM's /metrics: every SDS and the SDC up, health OK, no alert
    const m = await rest.metrics();
    expect(sample(m, "pf_sds_up")).toBe(SDS_COUNT);
    expect(sample(m, "pf_sdc_up", { sdc: "local" })).toBe(1);
    expect(sample(m, "pf_device_capacity_bytes")).toBe(6 * DEVICE_BYTES);
    expect(sample(m, "pf_health_status")).toBe(0);
    expect(activeAlertCount(m)).toBe(0);
    expect(await queryAlerts(scli)).toEqual([]);
    // and every role's own /health
    for (const u of [...sdsUrls(), c.sdcControlUrl]) expect(await (await fetch(`${u}/health`)).json()).toEqual({ status: "ok" });
  }, 30_000);

  test("3. scli --add_volume: a 1 GB thin and a 1 GB thick volume; the thick one reserves both copies at once", async () => {
    const common = ["--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--size_gb", "1"];
    expect(await ok(["--add_volume", ...common, "--volume_name", "thin1", "--thin_provisioned"])).toContain("Successfully created volume of size 1 GB");
    expect(await ok(["--add_volume", ...common, "--volume_name", "thick1", "--thick_provisioned"])).toContain("Successfully created volume of size 1 GB");
    const all = await ok(["--query_all"]);
    expect(all).toContain("1 thick-provisioned volume. Total size: 1.0 GB (1024 MB)");
    expect(all).toContain("1 thin-provisioned volume. Total size: 1.0 GB (1024 MB)");
    // in use: the thick volume's two copies (devices report it in their heartbeats); nothing thin yet
    await waitFor("the pool to count the thick reservation, two copies", 15_000, async () => (await inUseKb()) === (2 * GiB) / KiB);
    expect(await poolStats()).toMatchObject({ thickCapacityInUseInKb: (2 * GiB) / KiB, thinCapacityInUseInKb: 0, thinCapacityAllocatedInKb: GiB / KiB, numOfThinBaseVolumes: 1, numOfThickBaseVolumes: 1 });
  }, 30_000);

  test("4. scli --map_volume_to_sdc: both volumes mapped read-write to the SDC, which exports them over NBD", async () => {
    for (const v of ["thin1", "thick1"]) {
      expect(await ok(["--map_volume_to_sdc", "--volume_name", v, "--sdc_name", "local", "--access_mode", "ReadWrite"])).toContain(`Successfully mapped volume ${v}`);
      const vol = JSON.parse(await ok(["--query_volume", "--volume_name", v, "--json"])) as { mappedSdcInfo: { sdcName: string; accessMode: string }[] };
      expect(vol.mappedSdcInfo.map((m) => [m.sdcName, m.accessMode])).toEqual([["local", "ReadWrite"]]);
    }
    const listed = await waitFor("the SDC to export both volumes", 15_000, async () => {
      const l = await nbdinfoJson(c.nbdUri(""), ["--list", "--no-content"]);
      return l.exports.length === 2 ? l.exports : null;
    });
    expect(listed.map((e) => [e["export-name"], e["export-size"], e.is_read_only]).sort()).toEqual([
      ["thick1", GiB, false],
      ["thin1", GiB, false],
    ]);
    const m = await rest.metrics();
    expect(sample(m, "pf_sdc_mapped_volumes", { sdc: "local" })).toBe(2);
    expect(sample(m, "pf_volume_mapped_sdcs", { volume: "thin1" })).toBe(1);
  }, 30_000);

  test("5. qemu-io writes 16 x 1 MiB patterns to the thin volume and reads them back: every counter shows exactly that IO", async () => {
    const volId = await rest.idOf("Volume", "thin1");
    const sdcId = await rest.idOf("Sdc", "local");
    const vol = { volume: "thin1" };
    const sdcBefore = await scrape(c.sdcControlUrl);
    const mdmBefore = await rest.metrics();
    const sdsBefore = {
      primaryWrite: await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "write" }),
      secondaryWrite: await sumOverSds("pf_sds_io_ops_total", { role: "secondary", op: "write" }),
      primaryRead: await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "read" }),
    };
    const inUseBefore = await inUseKb();

    // one 1 MiB write at the start of every fourth 16 MiB extent: 16 thin chunks, none shared
    const writes = Array.from({ length: 16 }, (_, i) => `write -P 0x${(0x40 + i).toString(16)} ${i * 64}M 1M`);
    await runQemuIo(c.nbdUri("thin1"), writes);
    await runQemuIo(c.nbdUri("thin1"), writes.map((w) => w.replace("write", "read")));

    // the SDC's own /metrics: exactly 16 writes and 16 reads of 1 MiB, no error
    const sdc = await scrape(c.sdcControlUrl);
    const d = (name: string, labels: Record<string, string>) => sample(sdc, name, labels) - sample(sdcBefore, name, labels);
    expect(d("pf_volume_write_ops_total", vol)).toBe(16);
    expect(d("pf_volume_write_bytes_total", vol)).toBe(16 * MiB);
    expect(d("pf_volume_read_ops_total", vol)).toBe(16);
    expect(d("pf_volume_read_bytes_total", vol)).toBe(16 * MiB);
    expect(d("pf_volume_write_errors_total", vol) + d("pf_volume_read_errors_total", vol)).toBe(0);
    expect(d("pf_volume_write_ops_total", { volume: "thick1" })).toBe(0);
    const flushes = d("pf_volume_flush_ops_total", vol); // qemu-io flushes when it closes the image
    expect(flushes).toBeGreaterThanOrEqual(1);

    // the SDSs: each write reached its extent's primary once and the other copy once; reads only the primary
    expect((await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "write" })) - sdsBefore.primaryWrite).toBe(16);
    expect((await sumOverSds("pf_sds_io_ops_total", { role: "secondary", op: "write" })) - sdsBefore.secondaryWrite).toBe(16);
    expect((await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "read" })) - sdsBefore.primaryRead).toBe(16);

    // the MDM's /metrics: the same totals, once the SDC's and SDSs' next heartbeats have landed
    await waitFor("the MDM's /metrics to count the 16 writes and 16 reads", 15_000, async () => {
      const m = await rest.metrics();
      const md = (name: string, labels: Record<string, string>) => sample(m, name, labels) - sample(mdmBefore, name, labels);
      return md("pf_volume_write_ops_total", { volume_id: volId }) === 16 &&
        md("pf_volume_read_ops_total", { volume_id: volId }) === 16 &&
        md("pf_volume_write_bytes_total", { volume_id: volId }) === 16 * MiB &&
        md("pf_volume_flush_ops_total", { volume_id: volId }) === flushes &&
        md("pf_sdc_io_ops_total", { sdc: "local", op: "write" }) === 16 &&
        md("pf_sds_io_ops_total", { role: "secondary", op: "write" }) === 16;
    });

    // PowerFlex Statistics of the volume and the SDC: the IO inside the 5 s Bwc window, 1 MiB each.
    // The window spans 5 s and up to a heartbeat or two more (rescaled to 5 s), so it shows at
    // most the 16 and at least half of them.
    const bwcHolds = (b: Bwc | undefined) => b !== undefined && b.numSeconds === 5 && b.numOccured >= 8 && b.numOccured <= 16 && Math.abs(b.totalWeightInKb - b.numOccured * 1024) <= 512;
    const stats = await waitFor("Volume and Sdc Statistics to show the writes and reads in their Bwc window", 15_000, async () => {
      const v = await rest.statistics("Volume", volId);
      const s = await rest.statistics("Sdc", sdcId);
      return bwcHolds(v.userDataWriteBwc) && bwcHolds(v.userDataReadBwc) && bwcHolds(s.userDataWriteBwc) ? { v, s } : null;
    });
    expect(stats.v).toMatchObject({ numOfMappedSdcs: 1, mappedSdcIds: [sdcId], sizeInKb: GiB / KiB });
    process.stderr.write(`16 writes + 16 reads of 1 MiB: Volume userDataWriteBwc ${JSON.stringify(stats.v.userDataWriteBwc)}, userDataReadBwc ${JSON.stringify(stats.v.userDataReadBwc)}; ${flushes} flush(es)\n`);
    // and the thick volume saw none of it
    expect((await rest.statistics("Volume", await rest.idOf("Volume", "thick1"))).userDataWriteBwc?.numOccured).toBe(0);

    // capacity: the pool's in-use grows by two copies of the 16 MiB written (both thin)
    await waitFor("capacity in use to grow by two copies of 16 MiB", 15_000, async () => (await inUseKb()) === inUseBefore + (2 * 16 * MiB) / KiB);
    expect((await poolStats()).thinCapacityInUseInKb).toBe((2 * 16 * MiB) / KiB);
    const m = await rest.metrics();
    expect(sample(m, "pf_storage_pool_capacity_in_use_bytes", { storage_pool: "sp1" })).toBe(2 * GiB + 2 * 16 * MiB);
  }, 60_000);

  test("6. fio writes 32 MiB of the thick volume with crc32c and verifies it: the SDC counts fio's own IOs; thick space does not grow", async () => {
    const before = await scrape(c.sdcControlUrl);
    const inUseBefore = await inUseKb();
    const f = await runFio(verifyJob(c.nbdUri("thick1"), { name: "thick", sizeMiB: 32, bs: "16k", qd: 8 }));
    const job = f.json.jobs[0] as unknown as { write: { total_ios: number; io_bytes: number }; read: { total_ios: number; io_bytes: number } };
    expect(job.write.total_ios).toBe(2048);
    expect(job.read.total_ios).toBe(2048); // the verification pass read every block back, crc32c matched
    const after = await scrape(c.sdcControlUrl);
    const d = (name: string) => sample(after, name, { volume: "thick1" }) - sample(before, name, { volume: "thick1" });
    expect(d("pf_volume_write_ops_total")).toBe(job.write.total_ios);
    expect(d("pf_volume_write_bytes_total")).toBe(32 * MiB);
    expect(d("pf_volume_read_ops_total")).toBe(job.read.total_ios);
    expect(sample(after, "pf_sdc_inflight_ios")).toBe(0);
    // the thick volume's space was reserved at creation: once the SDSs' heartbeats after the
    // writes have reached the MDM (it counts what they counted), nothing more is in use
    const sdsOwn = await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "write" });
    await waitFor("the MDM to have the SDSs' heartbeats after fio", 15_000, async () => sample(await rest.metrics(), "pf_sds_io_ops_total", { role: "primary", op: "write" }) === sdsOwn);
    expect(await inUseKb()).toBe(inUseBefore);
  }, 60_000);

  test("7. after the IO: no alert is active, health is OK, and promtool finds every /metrics clean", async () => {
    expect(await queryAlerts(scli)).toEqual([]);
    expect((await ok(["--query_alerts"])).trim()).toBe("0 active alerts");
    const m = await rest.metrics();
    expect(activeAlertCount(m)).toBe(0);
    expect(sample(m, "pf_health_status")).toBe(0);
    expect(sample(m, "pf_storage_pool_capacity_utilization_ratio", { storage_pool: "sp1" })).toBeLessThan(0.8);
    expect(promtoolMetrics(m)).toEqual({ code: 0, findings: "" });
    for (const u of [...sdsUrls(), c.sdcControlUrl]) expect({ u, ...promtoolMetrics(await scrape(u)) }).toEqual({ u, code: 0, findings: "" });
  }, 30_000);

  test("8. unmap and remove the thin volume: the SDC stops exporting it, its space and its series are gone, thick1 is untouched", async () => {
    expect(await ok(["--unmap_volume_from_sdc", "--volume_name", "thin1", "--sdc_name", "local", "--i_am_sure"])).toContain("Successfully un-mapped volume thin1");
    await waitFor("the SDC to stop exporting thin1", 15_000, async () => {
      const l = await nbdinfoJson(c.nbdUri(""), ["--list", "--no-content"]);
      return l.exports.length === 1 && l.exports[0]!["export-name"] === "thick1";
    });
    const gone = await runQemuIo(c.nbdUri("thin1"), ["read 0 4k"], { expectFailure: true });
    expect(gone.exitCode).not.toBe(0);

    expect(await ok(["--remove_volume", "--volume_name", "thin1", "--i_am_sure"])).toContain("Successfully removed volume thin1");
    const q = await scli(["--query_volume", "--volume_name", "thin1"]);
    expect(q.code).toBe(7); // not found
    const all = await ok(["--query_all"]);
    expect(all).toContain("1 thick-provisioned volume");
    expect(all).not.toContain("thin-provisioned volume.");
    await waitFor("capacity in use to fall back to the thick reservation", 20_000, async () => (await inUseKb()) === (2 * GiB) / KiB);
    const m = await rest.metrics();
    expect(hasSample(m, "pf_volume_write_ops_total", { volume: "thin1" })).toBe(false);
    expect(hasSample(m, "pf_volume_write_ops_total", { volume: "thick1" })).toBe(true);
    expect(activeAlertCount(m)).toBe(0);
    // the thick volume still holds what fio wrote
    await runFio([...verifyJob(c.nbdUri("thick1"), { name: "thick", sizeMiB: 32, bs: "16k", qd: 8 }), "--verify_only"]);
  }, 60_000);
});
