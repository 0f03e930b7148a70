// One SDS process per device (src/store/device_claim.ts): a device an open holds is refused to a
// second open, in this process (the same path, a symlink, a hard link) and in another process
// (two SDSs on one host given one path); the lock goes with its holder, closed or killed -9.

import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { sharedDeviceProblem, type DeviceUse } from "../src/cmd/device_check.ts";
import { openBlockDevice, type BlockDevice } from "../src/store/block_device.ts";
import { MiB, tmpDir } from "./sds_harness.ts";

const open: BlockDevice[] = [];
const children: Bun.Subprocess[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  for (const c of children.splice(0)) c.kill(9);
});

function opened(path: string): BlockDevice {
  const d = openBlockDevice({ path, sizeBytes: 8 * MiB });
  open.push(d);
  return d;
}

/** A second process that opens `path` as an SDS does and holds it until killed. */
async function holder(path: string): Promise<Bun.Subprocess> {
  const script = join(tmpDir("claim-holder"), "hold.ts");
  fs.writeFileSync(
    script,
    `import { openBlockDevice } from ${JSON.stringify(resolve(import.meta.dir, "../src/store/block_device.ts"))};\n` +
      `openBlockDevice({ path: ${JSON.stringify(path)} });\nconsole.log("held");\nsetInterval(() => {}, 1000);\n`,
  );
  const child = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "inherit" });
  children.push(child);
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("held")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`holder exited before it held ${path}: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return child;
}

describe("a device belongs to one open", () => {
  test("the same file by its path, a symlink or a hard link is refused while held, and opens once closed", () => {
    const dir = tmpDir("claim");
    const path = join(dir, "dev.img");
    const first = opened(path);
    fs.symlinkSync(path, join(dir, "sym.img"));
    fs.linkSync(path, join(dir, "hard.img"));
    for (const name of [path, join(dir, "sym.img"), join(dir, "hard.img")]) {
      expect(() => openBlockDevice({ path: name })).toThrow(/is locked: another process holds it/);
    }
    // another file is not held by it
    opened(join(dir, "other.img"));
    first.close();
    open.splice(open.indexOf(first), 1);
    expect(opened(join(dir, "sym.img")).sizeBytes).toBe(8 * MiB);
  });

  test("two processes: the second is refused with IN_USE until the first is killed -9", async () => {
    const dir = tmpDir("claim-proc");
    const path = join(dir, "dev.img");
    opened(path).close();
    open.length = 0;
    const child = await holder(path);
    let err: unknown;
    try {
      openBlockDevice({ path });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe("IN_USE");
    expect(String((err as Error).message)).toMatch(/Each device belongs to one SDS: give this one another path/);
    child.kill(9);
    await child.exited;
    expect(opened(path).sizeBytes).toBe(8 * MiB);
  });
});

test("a cluster file naming one disk for two SDSs (by a path or a symlink to it) is refused before anything starts", () => {
  const dir = tmpDir("claim-plan");
  const use = (path: string, owner: string, field: string): DeviceUse => ({ path, owner, field, sizeBytes: 8 * MiB, minBytes: MiB, minWhy: "test" });
  opened(join(dir, "a.img")).close();
  open.length = 0;
  fs.symlinkSync(join(dir, "a.img"), join(dir, "link.img"));
  const p = sharedDeviceProblem([use(join(dir, "a.img"), "SDS s1", "hosts.0.sds.0.devices.0"), use(join(dir, "b.img"), "SDS s1", "hosts.0.sds.0.devices.1"), use(join(dir, "link.img"), "SDS s2", "hosts.0.sds.1.devices.0")]);
  expect(p?.message).toBe(`device ${join(dir, "link.img")}, the same disk as ${join(dir, "a.img")}, is given to SDS s1 (hosts.0.sds.0.devices.0) and to SDS s2 (hosts.0.sds.1.devices.0); a device belongs to one SDS: give each its own`);
  expect(sharedDeviceProblem([use(join(dir, "a.img"), "SDS s1", "x"), use(join(dir, "b.img"), "SDS s2", "y")])).toBeNull();
});

test("two processes creating one missing device at once: one takes it, the other is refused, and the path names the one taken", async () => {
  const dir = tmpDir("claim-race");
  const script = join(dir, "create.ts");
  fs.writeFileSync(
    script,
    `import * as fs from "node:fs";\n` +
      `import { openBlockDevice } from ${JSON.stringify(resolve(import.meta.dir, "../src/store/block_device.ts"))};\n` +
      `const [path, goAt] = process.argv.slice(2);\n` +
      `while (Date.now() < Number(goAt)) {}\n` +
      `try { const d = openBlockDevice({ path, sizeBytes: 64 * 1024 * 1024 }); console.log("OPENED " + fs.fstatSync((d as any).fd).ino); }\n` +
      `catch (e) { console.log("REFUSED " + (e as any).code + " " + (e as Error).message); }\n` +
      `setTimeout(() => {}, 3000);\n`,
  );
  for (let round = 0; round < 4; round++) {
    const path = join(dir, `dev${round}.img`);
    const goAt = Date.now() + 400;
    const kids = [0, 1].map(() => Bun.spawn([process.execPath, script, path, String(goAt)], { stdout: "pipe", stderr: "inherit" }));
    children.push(...kids);
    // each child prints one line, then holds its device for a while
    const lines = await Promise.all(
      kids.map(async (k) => {
        const reader = k.stdout.getReader();
        let out = "";
        while (!out.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          out += new TextDecoder().decode(value);
        }
        reader.releaseLock();
        return out.trim();
      }),
    );
    const opened = lines.filter((l) => l.startsWith("OPENED "));
    expect({ round, lines, opened: opened.length }).toMatchObject({ opened: 1 });
    expect(lines.find((l) => !l.startsWith("OPENED "))).toMatch(/^REFUSED IN_USE /);
    expect(String(fs.statSync(path).ino)).toBe(opened[0]!.slice("OPENED ".length));
    expect(fs.readdirSync(dir).filter((n) => n.includes(".creating"))).toEqual([]);
    for (const k of kids) k.kill(9);
    await Promise.all(kids.map((k) => k.exited));
  }
}, 60_000);

test("close() waits for the asynchronous IO in flight; nothing is issued after it", async () => {
  const dir = tmpDir("claim-close");
  const path = join(dir, "dev.img");
  const d = opened(path);
  const buf = new Uint8Array(1024 * 1024).fill(7);
  const writing = d.writeAsync(buf, 0);
  const syncing = d.datasync();
  d.close();
  // the IO issued before close() completes on the right file
  await writing;
  await syncing;
  const back = new Uint8Array(4096);
  const fd = fs.openSync(path, "r");
  fs.readSync(fd, back, 0, 4096, 0);
  fs.closeSync(fd);
  expect(back.every((b) => b === 7)).toBe(true);
  await expect(d.writeAsync(buf, 0)).rejects.toThrow(/is closed/);
  expect(() => d.readInto(back, 0)).toThrow(/is closed/);
  // and its lock went with the descriptors
  open.splice(open.indexOf(d), 1);
  expect(opened(path).sizeBytes).toBe(8 * MiB);
});
