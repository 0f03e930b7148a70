// The NBD front end against real clients (nbdinfo, qemu-io, qemu-img, nbdcopy, fio), backed by
// RAM exports: what an operator's tools see when they attach to an SDC. A missing tool fails the
// test with the install command.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNbdServer, type NbdServer } from "../src/sdc/nbd_server.ts";
import { MemoryExport, MemoryRegistry } from "./helpers/nbd_memory_export.ts";
import {
  nbdUri,
  nbdinfoJson,
  requireTool,
  run,
  runFio,
  runNbdcopy,
  runQemuImg,
  runQemuIo,
} from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
const T = 180_000;

let server: NbdServer;
let dir: string;
const vol = new MemoryExport("vol", 256 * MiB);
const img = new MemoryExport("img", 64 * MiB);
const ro = new MemoryExport("ro", 16 * MiB, { readOnly: true, multiConn: false });
// writes at 8 MiB take 80 ms, so a later request overtakes them
const slow = new MemoryExport("slow", 16 * MiB, { delayMs: (op, off) => (op === "write" && off === 8 * MiB ? 80 : 0) });
const registry = new MemoryRegistry([vol, img, ro, slow]);
const uri = (name: string) => nbdUri(server.port, name);

beforeAll(async () => {
  for (const t of ["nbdinfo", "qemu-io", "qemu-img", "fio", "nbdcopy"]) requireTool(t);
  dir = mkdtempSync(join(tmpdir(), "pf-nbd-clients-"));
  ro.data.fill(0x5a, 0, 4096);
  server = await startNbdServer({ host: "127.0.0.1", port: 0, registry });
});

afterAll(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("nbdinfo", () => {
  test("a read-write export: size, every can_* flag, block sizes", async () => {
    const info = await nbdinfoJson(uri("vol"));
    expect(info.protocol).toBe("newstyle-fixed");
    expect(info.structured).toBe(true);
    const e = info.exports[0];
    expect(e).toMatchObject({
      "export-name": "vol",
      "export-size": 256 * MiB,
      is_read_only: false,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: true,
      can_df: true,
      block_size_minimum: 512,
      block_size_preferred: 4096,
      block_size_maximum: 32 * MiB,
    });
  });

  test("a read-only export without multi-conn", async () => {
    const e = (await nbdinfoJson(uri("ro"))).exports[0];
    expect(e).toMatchObject({ "export-size": 16 * MiB, is_read_only: true, can_trim: false, can_zero: false, can_multi_conn: false });
    const multi = await run(["nbdinfo", "--can", "multi-conn", uri("ro")]);
    expect(multi.exitCode).toBe(2);
    const readOnly = await run(["nbdinfo", "--is", "read-only", uri("ro")]);
    expect(readOnly.exitCode).toBe(0);
    const flush = await run(["nbdinfo", "--can", "flush", uri("vol")]);
    expect(flush.exitCode).toBe(0);
  });

  test("--list shows every export; --size prints the size", async () => {
    const list = await nbdinfoJson(nbdUri(server.port), ["--list"]);
    expect(list.exports.map((e) => e["export-name"]).sort()).toEqual(["img", "ro", "slow", "vol"]);
    const size = await run(["nbdinfo", "--size", uri("img")]);
    expect(size.stdout.trim()).toBe(String(64 * MiB));
  });

  test("an unknown export is refused", async () => {
    const r = await run(["nbdinfo", uri("nope")]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/No such file or directory for export: nope/); // ERR_UNKNOWN → ENOENT in libnbd
  });
});

describe("qemu-io", () => {
  test("write -P then read -P, FUA writes, flush", async () => {
    const fuaBefore = vol.counts.fua;
    const flushBefore = vol.counts.flush;
    await runQemuIo(uri("vol"), ["write -P 0xab 0 1M", "read -P 0xab 0 1M", "write -f -P 0x11 1M 64k", "read -P 0x11 1M 64k", "flush"]);
    expect(vol.data.subarray(0, MiB).every((b) => b === 0xab)).toBe(true);
    expect(vol.data.subarray(MiB, MiB + 65536).every((b) => b === 0x11)).toBe(true);
    expect(vol.counts.fua).toBeGreaterThan(fuaBefore);
    expect(vol.counts.flush).toBeGreaterThan(flushBefore);
  });

  test("a wrong pattern is caught (the assertion works)", async () => {
    const r = await runQemuIo(uri("vol"), ["write -P 0x21 4M 4k", "read -P 0x22 4M 4k"], { expectFailure: true });
    expect(r.stdout + r.stderr).toMatch(/Pattern verification failed/);
  });

  test("write -z and discard read back as zeros", async () => {
    const zeroBefore = vol.counts.zero;
    const trimBefore = vol.counts.trim;
    await runQemuIo(uri("vol"), [
      "write -P 0x77 2M 2M",
      "write -z 2M 4k",
      "write -z -u 3M 512k",
      "discard 3584k 512k",
      "read -P 0 2M 4k",
      "read -P 0x77 2052k 1020k",
      "read -P 0 3M 1M",
    ]);
    expect(vol.counts.zero).toBeGreaterThan(zeroBefore);
    expect(vol.counts.trim).toBeGreaterThan(trimBefore);
  });

  test("pipelined aio requests complete out of order and both land", async () => {
    const r = await runQemuIo(uri("slow"), ["aio_write -P 0x22 8M 64k", "aio_write -P 0x33 9M 64k", "aio_flush", "readv -P 0x22 8M 32k 32k", "read -P 0x33 9M 64k"]);
    // qemu-io prints completions in the order replies arrived: the 9M write overtook the slow 8M one
    const order = [...r.stdout.matchAll(/wrote 65536\/65536 bytes at offset (\d+)/g)].map((m) => Number(m[1]));
    expect(order).toEqual([9 * MiB, 8 * MiB]);
  });

  test("a read-only export: reads with -r; qemu refuses to open it for writing", async () => {
    await runQemuIo(uri("ro"), ["read -P 0x5a 0 4k", "read -P 0 4k 4k"], { readOnly: true });
    const w = await runQemuIo(uri("ro"), ["write -P 1 0 4k"], { expectFailure: true });
    expect(w.exitCode !== 0 || /failed|read-only|denied/i.test(w.stdout + w.stderr)).toBe(true);
    expect(ro.counts.write).toBe(0);
  });

  test("a 64 MiB write is split into ≤ 32 MiB requests and reads back", async () => {
    await runQemuIo(uri("vol"), ["write -P 0x3c 64M 64M", "read -P 0x3c 64M 64M"], { timeoutMs: T });
  }, T);
});

describe("qemu-img and nbdcopy", () => {
  test("convert a random 64 MiB image onto the export; compare finds it identical, then finds a change", async () => {
    const src = join(dir, "src.img");
    // getRandomValues is limited to 64 KiB per call: fill in slices
    const bytes = Buffer.alloc(64 * MiB);
    for (let o = 0; o < bytes.length; o += 65536) crypto.getRandomValues(bytes.subarray(o, o + 65536));
    writeFileSync(src, bytes);
    await runQemuImg(["convert", "-n", "-f", "raw", "-O", "raw", src, uri("img")], { timeoutMs: T });
    expect(img.data.equals(bytes)).toBe(true);
    await runQemuImg(["compare", "-f", "raw", "-F", "raw", src, uri("img")], { timeoutMs: T });
    img.data[12345678] = (img.data[12345678] ?? 0) ^ 0xff;
    const cmp = await run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri("img")], { timeoutMs: T });
    expect(cmp.exitCode).toBe(1);
    expect(cmp.stdout).toMatch(/Content mismatch at offset 12345/);
    img.data[12345678] = (img.data[12345678] ?? 0) ^ 0xff;
    const back = join(dir, "back.img");
    await runQemuImg(["convert", "-f", "raw", "-O", "raw", uri("img"), back], { timeoutMs: T });
    expect(readFileSync(back).equals(bytes)).toBe(true);
    const info = await runQemuImg(["info", "--output=json", uri("img")]);
    expect((JSON.parse(info.stdout) as { "virtual-size": number })["virtual-size"]).toBe(64 * MiB);
  }, T);

  test("nbdcopy over several connections (multi-conn) both ways", async () => {
    const src = join(dir, "copy.img");
    const bytes = Buffer.alloc(32 * MiB);
    for (let o = 0; o < bytes.length; o += 65536) crypto.getRandomValues(bytes.subarray(o, o + 65536));
    writeFileSync(src, bytes);
    await runNbdcopy(["--flush", "-C", "4", "-R", "16", src, uri("img")], { timeoutMs: T });
    expect(img.data.subarray(0, 32 * MiB).equals(bytes)).toBe(true);
    const out = join(dir, "copy-back.img");
    await runNbdcopy(["-C", "4", uri("img"), out], { timeoutMs: T });
    expect(readFileSync(out).subarray(0, 32 * MiB).equals(bytes)).toBe(true);
  }, T);
});

describe("fio nbd engine with crc32c verify", () => {
  const verify = ["--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0"];
  const base = () => ["--ioengine=nbd", `--uri=${uri("vol")}`, "--iodepth=16"];

  test("4k random writes QD16, verified", async () => {
    const f = await runFio(["--name=v4k", ...base(), "--rw=randwrite", "--bs=4k", "--size=64M", ...verify], { timeoutMs: T });
    expect(f.json.jobs[0]?.write.io_bytes).toBe(64 * MiB);
    expect(f.json.jobs[0]?.read.io_bytes).toBe(64 * MiB);
  }, T);

  test("64k random writes QD16, verified", async () => {
    const f = await runFio(["--name=v64k", ...base(), "--rw=randwrite", "--bs=64k", "--size=64M", "--offset=64M", ...verify], { timeoutMs: T });
    expect(f.json.jobs[0]?.write.io_bytes).toBe(64 * MiB);
  }, T);

  test("mixed block sizes (4k..1M) QD16, verified", async () => {
    const f = await runFio(
      ["--name=vmix", ...base(), "--rw=randwrite", "--bssplit=4k/40:16k/20:64k/20:256k/10:1m/10", "--size=64M", "--offset=128M", ...verify],
      { timeoutMs: T },
    );
    expect(f.json.jobs[0]?.write.io_bytes).toBeGreaterThan(0);
  }, T);

  test("four connections on disjoint ranges, verified", async () => {
    await runFio(
      ["--name=mc", ...base(), "--rw=randwrite", "--bs=4k", "--numjobs=4", "--size=16M", "--offset=192M", "--offset_increment=16M", "--group_reporting", ...verify],
      { timeoutMs: T },
    );
  }, T);

  test("FLUSH every 32 writes and trims", async () => {
    const flushBefore = vol.counts.flush;
    await runFio(["--name=fs", ...base(), "--rw=randwrite", "--bs=4k", "--size=8M", "--fsync=32", "--end_fsync=1"], { timeoutMs: T });
    expect(vol.counts.flush - flushBefore).toBeGreaterThanOrEqual(2048 / 32);
    const trimBefore = vol.counts.trim;
    await runFio(["--name=tr", ...base(), "--rw=randtrim", "--bs=64k", "--size=8M"], { timeoutMs: T });
    expect(vol.counts.trim - trimBefore).toBe(128);
  }, T);
});
