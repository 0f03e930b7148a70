// End to end, as an operator scrapes it: the compiled binary's `pf up` on loopback, every SDS and
// the SDC with a control port. Real clients write a known number of bytes: the SDC's /metrics
// counts exactly what they did, the SDSs' primary and secondary counters add up to two copies of
// it, promtool finds nothing to say about any role's /metrics, /status describes each role, and
// /health turns 503 with a reason once the MDM is gone (leases run out) and 200 again once it is
// back. promtool is required (Debian package prometheus): missing, the test fails.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { TestCluster } from "./helpers/cluster.ts";
import { sample } from "./helpers/operator_views.ts";
import { waitFor } from "./helpers/recovery.ts";
import { runFio, runQemuIo } from "./helpers/real_clients.ts";

const SDS_COUNT = 3;
const KiB = 1024;

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: SDS_COUNT,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 3s, rebuildGrace: 60s",
    volumes: [{ name: "vol1", size: "64MiB" }],
  });
  await c.start();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

const sdsUrls = () => Array.from({ length: SDS_COUNT }, (_, i) => c.sdsControlUrl(i));

async function scrape(base: string): Promise<string> {
  const r = await fetch(`${base}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return r.text();
}

async function sumOverSds(name: string, labels: Record<string, string>): Promise<number> {
  let total = 0;
  for (const u of sdsUrls()) total += sample(await scrape(u), name, labels);
  return total;
}

async function health(base: string): Promise<{ code: number; body: { status: string; reasons?: string[] } }> {
  const r = await fetch(`${base}/health`);
  return { code: r.status, body: (await r.json()) as { status: string; reasons?: string[] } };
}

function promtool(text: string): { code: number | null; findings: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error !== undefined) throw new Error(`promtool is required (apt-get install -y prometheus): ${r.error.message}`);
  return { code: r.status, findings: r.stderr + r.stdout };
}

describe("control ports of a one-host cluster", () => {
  test("every SDS and the SDC answer /health 200 and describe themselves in /status", async () => {
    for (const u of [...sdsUrls(), c.sdcControlUrl]) {
      await waitFor(`${u}/health 200`, 15_000, async () => (await health(u)).code === 200);
      expect((await health(u)).body).toEqual({ status: "ok" });
    }
    const sds = (await (await fetch(`${c.sdsControlUrl(0)}/status`)).json()) as Record<string, unknown>;
    expect(sds).toMatchObject({ role: "sds", name: "sds1", joined: true, lease: { valid: true }, storagePool: "sp1", health: [] });
    expect(sds.id).toMatch(/^[0-9a-f]{16}$/);
    expect((sds.devices as { capacityBytes: number }[])[0]!.capacityBytes).toBe(256 * 1024 * KiB);
    const sdc = (await (await fetch(`${c.sdcControlUrl}/status`)).json()) as Record<string, unknown>;
    expect(sdc).toMatchObject({ role: "sdc", joined: true, mapsStale: false, nbd: { port: c.ports.nbd } });
    expect((sdc.volumes as { name: string; sizeBytes: number }[]).map((v) => [v.name, v.sizeBytes])).toEqual([["vol1", 64 * 1024 * KiB]]);
    // pf up told the operator where they are
    for (let i = 0; i < SDS_COUNT; i++) expect(c.output).toContain(`control sds sds${i + 1}: ${c.sdsControlUrl(i)}`);
    expect(c.output).toContain(`control sdc: ${c.sdcControlUrl}`);
  });

  test("qemu-io writes: the SDC counts exactly them; SDS primaries and secondaries count two copies", async () => {
    const vol = { volume: "vol1" };
    const sdcBefore = await scrape(c.sdcControlUrl);
    const primaryBefore = { ops: await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "write" }), bytes: await sumOverSds("pf_sds_io_bytes_total", { role: "primary", op: "write" }) };
    const secondaryBefore = { ops: await sumOverSds("pf_sds_io_ops_total", { role: "secondary", op: "write" }), bytes: await sumOverSds("pf_sds_io_bytes_total", { role: "secondary", op: "write" }) };

    // 20 writes of 4 KiB and 20 of 64 KiB, spread over all four 16 MiB extents, none crossing one
    const cmds: string[] = [];
    let bytes = 0;
    for (let i = 0; i < 40; i++) {
      const len = i % 2 === 0 ? 4 * KiB : 64 * KiB;
      cmds.push(`write -P 0x${(i + 16).toString(16)} ${i * 1600 * KiB} ${len}`);
      bytes += len;
    }
    await runQemuIo(c.nbdUri("vol1"), cmds);

    const sdc = await scrape(c.sdcControlUrl);
    const d = (name: string, labels: Record<string, string>) => sample(sdc, name, labels) - sample(sdcBefore, name, labels);
    expect(d("pf_volume_write_ops_total", vol)).toBe(40);
    expect(d("pf_volume_write_bytes_total", vol)).toBe(bytes);
    expect(d("pf_volume_write_latency_seconds_count", vol)).toBe(40);
    expect(d("pf_volume_write_errors_total", vol)).toBe(0);
    expect(d("pf_sdc_io_ops_total", { op: "write" })).toBe(40);
    expect(d("pf_sdc_io_bytes_total", { op: "write" })).toBe(bytes);
    expect(sample(sdc, "pf_volume_write_latency_seconds_bucket", { ...vol, le: "+Inf" })).toBe(sample(sdc, "pf_volume_write_latency_seconds_count", vol));

    // each write reached its extent's primary once and was forwarded to the one other copy once
    const primary = { ops: await sumOverSds("pf_sds_io_ops_total", { role: "primary", op: "write" }), bytes: await sumOverSds("pf_sds_io_bytes_total", { role: "primary", op: "write" }) };
    const secondary = { ops: await sumOverSds("pf_sds_io_ops_total", { role: "secondary", op: "write" }), bytes: await sumOverSds("pf_sds_io_bytes_total", { role: "secondary", op: "write" }) };
    expect({ ops: primary.ops - primaryBefore.ops, bytes: primary.bytes - primaryBefore.bytes }).toEqual({ ops: 40, bytes });
    expect({ ops: secondary.ops - secondaryBefore.ops, bytes: secondary.bytes - secondaryBefore.bytes }).toEqual({ ops: 40, bytes });
    // and the devices hold two copies of every byte (plus whatever metadata they wrote)
    expect(await sumOverSds("pf_device_io_bytes_total", { op: "write" })).toBeGreaterThanOrEqual(2 * bytes);
  }, 60_000);

  test("a fio job: the SDC's write count is fio's own", async () => {
    const before = sample(await scrape(c.sdcControlUrl), "pf_volume_write_ops_total", { volume: "vol1" });
    const r = await runFio(["--name=count", "--ioengine=nbd", `--uri=${c.nbdUri("vol1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=8M", "--randrepeat=1"]);
    const job = r.json.jobs[0] as unknown as { write: { total_ios: number; io_bytes: number } };
    expect(job.write.total_ios).toBe(2048);
    const after = await scrape(c.sdcControlUrl);
    expect(sample(after, "pf_volume_write_ops_total", { volume: "vol1" }) - before).toBe(job.write.total_ios);
    expect(sample(after, "pf_sdc_inflight_ios")).toBe(0);
  }, 60_000);

  test("promtool check metrics is clean for every SDS and the SDC", async () => {
    for (const u of [...sdsUrls(), c.sdcControlUrl]) {
      const text = await scrape(u);
      expect({ url: u, ...promtool(text) }).toEqual({ url: u, code: 0, findings: "" });
      expect(text).toContain('pf_build_info{version="');
      expect(text).toContain("process_cpu_seconds_total ");
    }
  });

  test("an SDS killed and back within the grace period: its resync shows as kind=resync at both ends", async () => {
    const argv = c.killRole("sds sds2");
    // writes while it is away (the SDC retries until the MDM moved the extents to a new epoch)
    await runQemuIo(c.nbdUri("vol1"), Array.from({ length: 8 }, (_, i) => `write -P 0x7${i} ${i * 8 * 1024 * KiB} ${64 * KiB}`), { timeoutMs: 60_000 });
    c.restartRole(argv);
    const copied = await waitFor("resync bytes written on the returning SDS", 60_000, async () => {
      const h = await health(c.sdsControlUrl(1)).catch(() => null);
      if (h === null || h.code !== 200) return null;
      const n = sample(await scrape(c.sdsControlUrl(1)), "pf_sds_copy_bytes_total", { kind: "resync", op: "write" });
      return n > 0 ? n : null;
    });
    // every byte written as a copy target was read by a source primary (retried copies read again),
    // for every kind (the MDM may also rebuild an extent it had no away copy of)
    for (const kind of ["resync", "rebuild", "move"]) {
      const written = await sumOverSds("pf_sds_copy_bytes_total", { kind, op: "write" });
      const read = await waitFor(`${kind} bytes read >= written`, 30_000, async () => {
        const n = await sumOverSds("pf_sds_copy_bytes_total", { kind, op: "read" });
        return n >= written ? { n } : null;
      });
      expect(read.n).toBeGreaterThanOrEqual(written);
    }
    expect(copied).toBeGreaterThan(0);
  }, 120_000);

  test("the MDM killed: /health turns 503 with a reason (lease lost, MDM unreachable), then 200 when it is back; every SDS follows the restarted MDM's higher term", async () => {
    const termOf = async (u: string) => {
      const t = await scrape(u);
      return { term: sample(t, "pf_sds_mdm_term"), changes: sample(t, "pf_sds_mdm_term_changes_total"), refused: sample(t, "pf_sds_mdm_term_refused_total") };
    };
    const before = await Promise.all(sdsUrls().map(termOf));
    for (const b of before) expect(b).toEqual({ term: before[0]!.term, changes: before[0]!.changes, refused: 0 });
    const sdcScrape = await scrape(c.sdcControlUrl);
    const sdcBefore = { term: sample(sdcScrape, "pf_sdc_mdm_term"), changes: sample(sdcScrape, "pf_sdc_mdm_term_changes_total") };
    expect(sdcBefore.term).toBe(before[0]!.term);
    expect(before[0]!.term).toBeGreaterThan(0);
    const argv = c.killRole("mdm");
    const sdsDown = await waitFor("an SDS /health 503 with no lease", 20_000, async () => {
      const h = await health(c.sdsControlUrl(0));
      return h.code === 503 && (h.body.reasons ?? []).some((r) => r.startsWith("no lease")) ? h : null;
    });
    expect(sdsDown.body.status).toBe("unavailable");
    expect(sdsDown.body.reasons!.some((r) => /MDM .* unreachable/.test(r))).toBe(true);
    expect(sample(await scrape(c.sdsControlUrl(0)), "pf_sds_lease_valid")).toBe(0);
    const sdcDown = await waitFor("the SDC /health 503", 20_000, async () => {
      const h = await health(c.sdcControlUrl);
      return h.code === 503 ? h : null;
    });
    expect(sdcDown.body.reasons!.some((r) => /MDM .* unreachable/.test(r))).toBe(true);

    c.restartRole(argv);
    for (const u of [...sdsUrls(), c.sdcControlUrl]) await waitFor(`${u}/health 200 again`, 30_000, async () => (await health(u)).code === 200);
    expect(sample(await scrape(c.sdsControlUrl(0)), "pf_sds_lease_valid")).toBe(1);
    // a single MDM's restart is a new term (mdm_term bumped at start): each SDS moved to it once
    const after = await Promise.all(sdsUrls().map(termOf));
    for (const [i, a] of after.entries()) expect(a).toEqual({ term: after[0]!.term, changes: before[i]!.changes + 1, refused: 0 });
    expect(after[0]!.term).toBeGreaterThan(before[0]!.term);
    // and so did the SDC
    const sdcTerm = async () => {
      const t = await scrape(c.sdcControlUrl);
      return { term: sample(t, "pf_sdc_mdm_term"), changes: sample(t, "pf_sdc_mdm_term_changes_total"), refused: sample(t, "pf_sdc_mdm_term_refused_total") };
    };
    const sdcAfter = await waitFor("the SDC on the new term", 10_000, async () => {
      const t = await sdcTerm();
      return t.term === after[0]!.term ? t : null;
    });
    expect(sdcAfter).toEqual({ term: after[0]!.term, changes: sdcBefore.changes + 1, refused: 0 });
  }, 90_000);
});
