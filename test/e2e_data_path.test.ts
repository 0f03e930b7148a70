// End to end, as an operator runs it: the compiled binary's `pf up` starts an MDM, 3 SDSs and an
// SDC on loopback; real clients (nbdinfo, qemu-io, qemu-img, fio, nbdsh) write and read mirrored
// volumes; an admin check compares both copies of every extent; kill -9 of every process after a
// FLUSH loses nothing. Extents are 16 MiB here so that modest IO crosses extent boundaries.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { waitFor, waitPoolHealthy } from "./helpers/recovery.ts";
import { nbdinfoJson, run, runFio, runNbdsh, runQemuImg, runQemuIo } from "./helpers/real_clients.ts";

const MiB = 1024 * 1024;
const EXTENT = 16 * MiB;

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({
    volumes: [
      { name: "vol1", size: "256MiB" },
      { name: "thick1", size: "64MiB", type: "thick" },
      { name: "ro1", size: "64MiB", access: "ReadOnly" },
      { name: "hidden", size: "64MiB", mapped: false },
    ],
  });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

async function expectConsistent(volume: string): Promise<void> {
  const r = await c.scli(["--check_volume_consistency", "--volume_name", volume]);
  expect(r.stderr + r.stdout).toContain("identical");
  expect(r.code).toBe(0);
}

describe("one-host cluster through pf up", () => {
  test("nbdinfo shows the mapped exports with their sizes and flags", async () => {
    const info = await nbdinfoJson(c.nbdUri("vol1"));
    const e = info.exports[0]!;
    expect(e["export-size"]).toBe(256 * MiB);
    expect(e.can_flush).toBe(true);
    expect(e.can_fua).toBe(true);
    expect(e.can_multi_conn).toBe(true);
    expect(e.is_read_only).toBe(false);
    const list = await nbdinfoJson(`nbd://127.0.0.1:${c.ports.nbd}`, ["--list"]);
    const names = list.exports.map((x) => x["export-name"]).sort();
    expect(names).toEqual(["ro1", "thick1", "vol1"]);
  });

  test("qemu-io patterns across extent boundaries read back", async () => {
    const uri = c.nbdUri("vol1");
    const at = (n: number) => String(n);
    await runQemuIo(uri, [
      `write -P 0x11 ${at(5 * EXTENT - 4096)} 8192`,
      `write -P 0x22 ${at(6 * EXTENT - 512)} 1024`,
      `write -f -P 0x33 ${at(7 * EXTENT - 1 * MiB)} ${at(3 * MiB)}`,
      `write -z ${at(8 * EXTENT)} 65536`,
      "flush",
    ]);
    await runQemuIo(uri, [
      `read -P 0x11 ${at(5 * EXTENT - 4096)} 8192`,
      `read -P 0x22 ${at(6 * EXTENT - 512)} 1024`,
      `read -P 0x33 ${at(7 * EXTENT - 1 * MiB)} ${at(3 * MiB)}`,
      `read -P 0 ${at(8 * EXTENT)} 65536`,
      `read -P 0 ${at(15 * EXTENT)} 4096`,
    ]);
  });

  test("qemu-img convert of a 64 MiB random image, then compare", async () => {
    const src = join(c.dir, "src.img");
    writeFileSync(src, randomBytes(64 * MiB));
    await runQemuImg(["convert", "-n", "-f", "raw", "-O", "raw", src, c.nbdUri("vol1")]);
    await runQemuImg(["compare", "-f", "raw", src, c.nbdPrefix("vol1", 64 * MiB)]);
  }, 120_000);

  for (const bs of ["4k", "64k", "4k-128k"]) {
    test(`fio randwrite bs=${bs} QD16 with crc32c verify`, async () => {
      const bsArg = bs.includes("-") ? `--bsrange=${bs}` : `--bs=${bs}`;
      await runFio([
        "--name=verify",
        "--ioengine=nbd",
        `--uri=${c.nbdUri("vol1")}`,
        "--rw=randwrite",
        bsArg,
        "--iodepth=16",
        "--offset=144M",
        "--size=48M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
      ]);
    }, 180_000);
  }

  test("thick volume takes writes and verifies", async () => {
    await runFio([
      "--name=thick",
      "--ioengine=nbd",
      `--uri=${c.nbdUri("thick1")}`,
      "--rw=randwrite",
      "--bs=16k",
      "--iodepth=16",
      "--verify=crc32c",
      "--do_verify=1",
      "--verify_fatal=1",
      "--verify_state_save=0",
    ]);
  }, 120_000);

  test("both copies of every extent are identical", async () => {
    await expectConsistent("vol1");
    await expectConsistent("thick1");
  });

  test("read-only mapping advertises READ_ONLY and refuses writes with EPERM", async () => {
    const info = await nbdinfoJson(c.nbdUri("ro1"));
    expect(info.exports[0]!.is_read_only).toBe(true);
    const r = await runNbdsh(
      `h.set_strict_mode(0)\nh.connect_uri("${c.nbdUri("ro1")}")\ntry:\n  h.pwrite(b"x"*4096, 0)\n  print("WROTE")\nexcept nbd.Error as e:\n  print("errno", e.errno)\nprint(h.pread(16, 0) == bytes(16))`,
    );
    expect(r.stdout).toContain("errno EPERM");
    expect(r.stdout).toContain("True");
  });

  test("an unmapped volume is not served", async () => {
    const r = await run(["nbdinfo", c.nbdUri("hidden")]);
    expect(r.exitCode).not.toBe(0);
  });

  test("IO past the end gets EINVAL / ENOSPC", async () => {
    const r = await runNbdsh(
      `h.set_strict_mode(0)\nh.connect_uri("${c.nbdUri("vol1")}")\nfor f in (lambda: h.pread(4096, h.get_size()), lambda: h.pwrite(b"x"*4096, h.get_size())):\n  try:\n    f(); print("OK")\n  except nbd.Error as e:\n    print("errno", e.errno)`,
    );
    expect(r.stdout).toContain("errno EINVAL");
    expect(r.stdout).toContain("errno ENOSPC");
  });

  test("junk and a bad handshake leave the SDC serving other clients", async () => {
    await new Promise<void>((resolve) => {
      const s = connect(c.ports.nbd, "127.0.0.1", () => {
        s.write(Buffer.alloc(64, 0xee));
        setTimeout(() => s.destroy(), 200);
      });
      s.on("close", () => resolve());
      s.on("error", () => resolve());
    });
    await runQemuIo(c.nbdUri("vol1"), [`read -P 0x11 ${5 * EXTENT - 4096} 8192`]);
  });

  test("map, extend and unmap take effect on the running SDC", async () => {
    const listed = async () => (await nbdinfoJson(`nbd://127.0.0.1:${c.ports.nbd}`, ["--list"])).exports.map((x) => x["export-name"]);
    const add = await c.scli(["--add_volume", "--protection_domain_name", "pd1", "--storage_pool_name", "sp1", "--size_gb", "1", "--volume_name", "late", "--thin_provisioned"]);
    expect(add.code, add.stderr).toBe(0);
    expect(await listed()).not.toContain("late");
    const map = await c.scli(["--map_volume_to_sdc", "--volume_name", "late", "--sdc_name", "local"]);
    expect(map.code, map.stderr).toBe(0);
    await waitFor("the SDC to export the newly mapped volume", 10_000, async () => (await listed()).includes("late"));
    await runQemuIo(c.nbdUri("late"), ["write -P 0x6c 1000M 1M", "read -P 0x6c 1000M 1M"]);
    const grow = await c.scli(["--modify_volume_capacity", "--volume_name", "late", "--size_gb", "2"]);
    expect(grow.code, grow.stderr).toBe(0);
    await waitFor("the export to grow", 10_000, async () => (await nbdinfoJson(c.nbdUri("late"))).exports[0]!["export-size"] === 2 * 1024 * MiB);
    await runQemuIo(c.nbdUri("late"), ["read -P 0x6c 1000M 1M", "write -P 0x6d 1500M 1M", "read -P 0x6d 1500M 1M"]);
    const unmap = await c.scli(["--unmap_volume_from_sdc", "--volume_name", "late", "--sdc_name", "local", "--i_am_sure"]);
    expect(unmap.code, unmap.stderr).toBe(0);
    await waitFor("the SDC to stop exporting the unmapped volume", 10_000, async () => !(await listed()).includes("late"));
  }, 120_000);

  test("kill -9 of every process after a FLUSH loses nothing", async () => {
    const uri = c.nbdUri("vol1");
    await runQemuIo(uri, ["write -P 0x5a 200M 4M", "write -P 0xa5 230M 12k", "flush"]);
    await c.killAll9();
    await c.start();
    await runQemuIo(uri, ["read -P 0x5a 200M 4M", "read -P 0xa5 230M 12k", `read -P 0x11 ${5 * EXTENT - 4096} 8192`]);
    // the 64 MiB image converted earlier is intact too
    await runQemuImg(["compare", "-f", "raw", join(c.dir, "src.img"), c.nbdPrefix("vol1", 64 * MiB)]);
    // an SDS that came back after the MDM's heartbeat timeout (a loaded host) is resynced first
    await waitPoolHealthy((a) => c.scli(a), 90_000);
    await expectConsistent("vol1");
  }, 180_000);
});
