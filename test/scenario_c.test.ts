// Scenario C, as an operator lives it: one volume mapped to two client hosts, one ReadWrite and
// one ReadOnly. The writer host is the cluster file's SDC (127.0.0.1); the reader is a second
// host that runs `pf sdc` by hand on 127.0.0.2 with the MDM's URL, certificate and cluster
// secret (each SDC its own NBD and control port). The writer's bytes read back through the
// reader after a flush; a write through the reader is refused with EPERM and changes nothing;
// each SDC's /metrics and the MDM's Statistics and /metrics count that host's IO and only that;
// switching the reader's mapping to ReadWrite (PowerFlex setVolumeMappingAccessMode) takes
// effect live, on an NBD connection opened before the switch. Each test is one step, in order.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { PF_BIN, TestCluster, freePort } from "./helpers/cluster.ts";
import { activeAlertCount, MdmRest, queryAlerts, sample, scliOk, scrape, type Bwc } from "./helpers/operator_views.ts";
import { nbdinfoJson, runNbdsh, runQemuIo, runQemuImg } from "./helpers/real_clients.ts";
import { waitFor, type Scli } from "./helpers/recovery.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const VOLUME = "shared";

let c: TestCluster;
let rest: MdmRest;
let scli: Scli;

/** The second client host: `pf sdc` on 127.0.0.2, started by hand as an operator would. */
interface SdcHost {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  nbdPort: number;
  controlUrl: string;
  log: () => string;
}
let reader: SdcHost | undefined;

async function startSdcHost(name: string, address: string): Promise<SdcHost> {
  const nbdPort = await freePort();
  const controlPort = await freePort();
  const secret = readFileSync(join(c.dataDir, "cluster-secret"), "utf8").trim();
  const proc = Bun.spawn(
    [PF_BIN, "sdc", "--mdm", c.mdmUrl, "--mdm-ca", c.caFile, "--data-dir", join(c.dir, name), "--name", name, "--address", address, "--nbd", `${address}:${nbdPort}`, "--control", `${address}:${controlPort}`],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, PF_CLUSTER_SECRET: secret } },
  );
  let out = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) out += dec.decode(chunk);
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return { proc, nbdPort, controlUrl: `http://${address}:${controlPort}`, log: () => out };
}

const writerUri = () => c.nbdUri(VOLUME);
const readerUri = () => `nbd://127.0.0.2:${reader!.nbdPort}/${VOLUME}`;

/** Run scli and require exit 0. */
const ok = (args: string[]): Promise<string> => scliOk(scli, args);

/** This volume's counters on one SDC's /metrics, by op. */
async function volumeOps(controlUrl: string): Promise<{ read: number; write: number; readBytes: number; writeBytes: number }> {
  const t = await scrape(controlUrl);
  const v = { volume: VOLUME };
  return {
    read: sample(t, "pf_volume_read_ops_total", v),
    write: sample(t, "pf_volume_write_ops_total", v),
    readBytes: sample(t, "pf_volume_read_bytes_total", v),
    writeBytes: sample(t, "pf_volume_write_bytes_total", v),
  };
}

/** pf_sdc_io_ops_total of one SDC on the MDM's /metrics */
async function mdmSdcOps(sdc: string, op: string): Promise<number> {
  return sample(await rest.metrics(), "pf_sdc_io_ops_total", { sdc, op });
}

beforeAll(async () => {
  c = await TestCluster.create({ sdsCount: 3, devicesPerSds: 1, deviceSize: "256MiB", volumes: [{ name: VOLUME, size: "256MiB" }] });
}, 10_000);

afterAll(async () => {
  if (reader) {
    reader.proc.kill("SIGKILL");
    await reader.proc.exited;
  }
  await c?.destroy();
});

// 8 distinct 1 MiB patterns, one per 32 MiB of the volume
const PATTERNS = Array.from({ length: 8 }, (_, i) => ({ pattern: 0x60 + i, offsetMiB: i * 32 }));
const writes = PATTERNS.map((p) => `write -P 0x${p.pattern.toString(16)} ${p.offsetMiB}M 1M`);
const reads = PATTERNS.map((p) => `read -P 0x${p.pattern.toString(16)} ${p.offsetMiB}M 1M`);

describe("scenario C: one volume, a ReadWrite host and a ReadOnly host", () => {
  test("1. pf up: the writer host's SDC (127.0.0.1) exports the volume read-write", async () => {
    await c.start();
    scli = (a) => c.scli(a);
    await c.login();
    rest = new MdmRest(c.mdmUrl, c.caFile);
    await rest.login("admin", "test-admin-pw");
    const e = (await nbdinfoJson(writerUri(), ["--no-content"])).exports[0]!;
    expect([e["export-name"], e["export-size"], e.is_read_only]).toEqual([VOLUME, 256 * MiB, false]);
  }, 90_000);

  test("2. a second host starts pf sdc on 127.0.0.2: scli lists two connected SDCs, each at its own address", async () => {
    reader = await startSdcHost("reader", "127.0.0.2");
    const sdcs = await waitFor("the reader SDC to join and connect", 30_000, async () => {
      const list = JSON.parse(await ok(["--query_all_sdc", "--json"])) as { name: string; sdcIp: string; mdmConnectionState: string }[];
      return list.length === 2 && list.every((s) => s.mdmConnectionState === "Connected") ? list : null;
    }).catch((e: unknown) => {
      throw new Error(`${String(e)}\nreader log:\n${reader?.log()}`);
    });
    expect(sdcs.map((s) => [s.name, s.sdcIp]).sort()).toEqual([
      ["local", "127.0.0.1"],
      ["reader", "127.0.0.2"],
    ]);
    await waitFor("the reader's /health 200", 15_000, async () => (await fetch(`${reader!.controlUrl}/health`)).status === 200);
    const m = await rest.metrics();
    expect(sample(m, "pf_sdc_up", { sdc: "reader" })).toBe(1);
    expect(sample(m, "pf_sdc_mapped_volumes", { sdc: "reader" })).toBe(0);
  }, 45_000);

  test("3. map the volume to the reader ReadOnly: refused without --allow_multi_map, then mapped; the reader exports it read-only", async () => {
    const single = await scli(["--map_volume_to_sdc", "--volume_name", VOLUME, "--sdc_name", "reader", "--access_mode", "ReadOnly"]);
    expect(single.code).toBe(4);
    expect(single.stderr).toContain("already mapped to another SDC");
    expect(await ok(["--map_volume_to_sdc", "--volume_name", VOLUME, "--sdc_name", "reader", "--access_mode", "ReadOnly", "--allow_multi_map"])).toContain("with access mode ReadOnly");

    const vol = JSON.parse(await ok(["--query_volume", "--volume_name", VOLUME, "--json"])) as { mappedSdcInfo: { sdcName: string; sdcIp: string; accessMode: string }[] };
    expect(vol.mappedSdcInfo.map((m) => [m.sdcName, m.sdcIp, m.accessMode]).sort()).toEqual([
      ["local", "127.0.0.1", "ReadWrite"],
      ["reader", "127.0.0.2", "ReadOnly"],
    ]);
    const e = await waitFor("the reader to export the volume", 15_000, async () => (await nbdinfoJson(`nbd://127.0.0.2:${reader!.nbdPort}/`, ["--list", "--no-content"])).exports[0]);
    expect([e["export-name"], e["export-size"], e.is_read_only, e.can_trim, e.can_zero]).toEqual([VOLUME, 256 * MiB, true, false, false]);
    expect(sample(await scrape(reader!.controlUrl), "pf_volume_read_only", { volume: VOLUME })).toBe(1);
    expect(sample(await scrape(c.sdcControlUrl), "pf_volume_read_only", { volume: VOLUME })).toBe(0);
    const m = await rest.metrics();
    expect(sample(m, "pf_volume_mapped_sdcs", { volume: VOLUME })).toBe(2);
  }, 30_000);

  test("4. write 8 x 1 MiB through the writer and flush; the reader reads the same bytes; each host's counters hold its own IO only", async () => {
    const volId = await rest.idOf("Volume", VOLUME);
    const writerId = await rest.idOf("Sdc", "local");
    const readerId = await rest.idOf("Sdc", "reader");
    const w0 = await volumeOps(c.sdcControlUrl);
    const r0 = await volumeOps(reader!.controlUrl);
    const mdm0 = { wWrite: await mdmSdcOps("local", "write"), wRead: await mdmSdcOps("local", "read"), rWrite: await mdmSdcOps("reader", "write"), rRead: await mdmSdcOps("reader", "read") };

    await runQemuIo(writerUri(), [...writes, "flush"]);
    await runQemuIo(readerUri(), reads, { readOnly: true });

    // each SDC's own /metrics: the writer wrote 8 MiB and read nothing, the reader the reverse
    const w1 = await volumeOps(c.sdcControlUrl);
    const r1 = await volumeOps(reader!.controlUrl);
    expect({ write: w1.write - w0.write, writeBytes: w1.writeBytes - w0.writeBytes, read: w1.read - w0.read }).toEqual({ write: 8, writeBytes: 8 * MiB, read: 0 });
    expect({ read: r1.read - r0.read, readBytes: r1.readBytes - r0.readBytes, write: r1.write - r0.write }).toEqual({ read: 8, readBytes: 8 * MiB, write: 0 });

    // the MDM's /metrics, per SDC, once both heartbeats are in
    await waitFor("the MDM to count the writer's 8 writes and the reader's 8 reads", 15_000, async () =>
      (await mdmSdcOps("local", "write")) - mdm0.wWrite === 8 && (await mdmSdcOps("reader", "read")) - mdm0.rRead === 8,
    );
    expect((await mdmSdcOps("local", "read")) - mdm0.wRead).toBe(0);
    expect((await mdmSdcOps("reader", "write")) - mdm0.rWrite).toBe(0);

    // PowerFlex Statistics: the writer's Sdc shows writes only, the reader's reads only, the volume both
    const seen = (b: Bwc | undefined) => (b?.numOccured ?? 0) > 0 && (b?.numOccured ?? 0) <= 8;
    const stats = await waitFor("Sdc and Volume Statistics to show the IO in their Bwc window", 15_000, async () => {
      const w = await rest.statistics("Sdc", writerId);
      const r = await rest.statistics("Sdc", readerId);
      const v = await rest.statistics("Volume", volId);
      return seen(w.userDataWriteBwc) && seen(r.userDataReadBwc) && seen(v.userDataWriteBwc) && seen(v.userDataReadBwc) ? { w, r, v } : null;
    });
    expect(stats.w.userDataReadBwc?.numOccured).toBe(0);
    expect(stats.r.userDataWriteBwc?.numOccured).toBe(0);
    expect(stats.v).toMatchObject({ numOfMappedSdcs: 2 });
    expect((stats.v.mappedSdcIds as string[]).sort()).toEqual([writerId, readerId].sort());
    expect(stats.r).toMatchObject({ numOfMappedVolumes: 1, volumeIds: [volId] });
  }, 45_000);

  test("5. a write through the ReadOnly host fails with EPERM (qemu-io and nbdsh say so) and changes nothing", async () => {
    const r0 = await volumeOps(reader!.controlUrl);
    // qemu-io opens the export read-write and is told the server allows no writes
    const q = await runQemuIo(readerUri(), ["write -P 0xee 0 64k"], { expectFailure: true });
    expect(q.exitCode).not.toBe(0);
    expect(q.stderr).toContain("Permission denied");
    // nbdsh with libnbd's client-side checks off: the write reaches the SDC, which answers EPERM
    const s = await runNbdsh(
      [
        "h.set_strict_mode(0)",
        `h.connect_uri("${readerUri()}")`,
        "print('read_only', h.is_read_only())",
        "try:",
        "    h.pwrite(b'\\xee' * 65536, 0)",
        "    print('written')",
        "except nbd.Error as e:",
        "    print('refused', e.errno, e.string)",
      ].join("\n"),
    );
    expect(s.stdout).toContain("read_only True");
    expect(s.stdout).toContain("refused EPERM");
    expect(s.stdout).toContain("Operation not permitted");
    // nothing changed: the first pattern reads back through both hosts, the reader wrote nothing
    await runQemuIo(writerUri(), [reads[0]!]);
    await runQemuIo(readerUri(), [reads[0]!], { readOnly: true });
    const r1 = await volumeOps(reader!.controlUrl);
    expect(r1.write - r0.write).toBe(0);
    expect(await queryAlerts(scli)).toEqual([]);
  }, 30_000);

  test("6. setVolumeMappingAccessMode ReadWrite for the reader: live, a connection opened before the switch can write after it", async () => {
    const volId = await rest.idOf("Volume", VOLUME);
    const readerId = await rest.idOf("Sdc", "reader");
    const r0 = await volumeOps(reader!.controlUrl);
    // a client on the reader host connects now and retries its write on that same connection
    const mark = join(c.dir, "refused-once");
    const live = runNbdsh(
      [
        "import time",
        "h.set_strict_mode(0)",
        `h.connect_uri("${readerUri()}")`,
        "refused = 0",
        "deadline = time.time() + 30",
        "while True:",
        "    try:",
        "        h.pwrite(b'\\xcd' * 65536, 200 * 1024 * 1024)",
        "        break",
        "    except nbd.Error as e:",
        "        if e.errno != 'EPERM' or time.time() > deadline: raise",
        "        refused += 1",
        `        open("${mark}", "w").close()`,
        "        time.sleep(0.2)",
        "h.flush()",
        "print('refused', refused, 'then written on the same connection')",
      ].join("\n"),
      { timeoutMs: 60_000 },
    );
    await waitFor("the reader's client to be refused once", 20_000, async () => existsSync(mark));

    const r = await rest.post(`/api/instances/Volume::${volId}/action/setVolumeMappingAccessMode`, { sdcId: readerId, accessMode: "ReadWrite" });
    expect(r.status).toBe(200);
    const done = await live;
    expect(done.stdout).toMatch(/^refused [1-9]\d* then written on the same connection$/m);

    const vol = JSON.parse(await ok(["--query_volume", "--volume_name", VOLUME, "--json"])) as { mappedSdcInfo: { sdcName: string; accessMode: string }[] };
    expect(vol.mappedSdcInfo.map((m) => [m.sdcName, m.accessMode]).sort()).toEqual([
      ["local", "ReadWrite"],
      ["reader", "ReadWrite"],
    ]);
    expect(sample(await scrape(reader!.controlUrl), "pf_volume_read_only", { volume: VOLUME })).toBe(0);
    expect((await nbdinfoJson(readerUri(), ["--no-content"])).exports[0]!.is_read_only).toBe(false);

    // a fresh qemu-io on the reader host writes too; the writer host reads both of the reader's writes
    await runQemuIo(readerUri(), ["write -P 0xce 201M 64k", "flush"]);
    await runQemuIo(writerUri(), ["read -P 0xcd 200M 64k", "read -P 0xce 201M 64k"]);
    const r1 = await volumeOps(reader!.controlUrl);
    expect({ write: r1.write - r0.write, writeBytes: r1.writeBytes - r0.writeBytes }).toEqual({ write: 2, writeBytes: 128 * KiB });
  }, 60_000);

  test("7. both hosts see identical bytes over the whole volume; no alert is active", async () => {
    const cmp = await runQemuImg(["compare", "-f", "raw", "-F", "raw", writerUri(), readerUri()]);
    expect(cmp.stdout).toContain("Images are identical");
    await runQemuIo(readerUri(), reads);
    expect(await queryAlerts(scli)).toEqual([]);
    const m = await rest.metrics();
    expect(activeAlertCount(m)).toBe(0);
    expect(sample(m, "pf_sdc_up")).toBe(2);
  }, 60_000);
});
