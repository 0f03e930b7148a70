// The shipped artefact: one executable that works copied alone into an empty directory (as an
// operator's scp leaves it), answers as scli through a link of that name, and lists its roles.

import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PF_BIN, freePort } from "./helpers/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-bin-"));
const lone = join(dir, "pf");
copyFileSync(PF_BIN, lone);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function runBin(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(argv, { cwd: dir, stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", HOME: dir, ...env } });
  const [o, e] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: o + e };
}

test("--help lists every role and version prints", async () => {
  const h = await runBin([lone, "--help"]);
  for (const cmd of ["mdm", "sds", "sdc", "up", "scli", "version"]) expect(h.out).toContain(cmd);
  const v = await runBin([lone, "version"]);
  expect(v.code).toBe(0);
  expect(v.out).toMatch(/^pf \d+\.\d+\.\d+/);
});

test("a link named scli behaves as pf scli", async () => {
  symlinkSync(lone, join(dir, "scli"));
  const r = await runBin([join(dir, "scli"), "--help"]);
  expect(r.code).toBe(0);
  expect(r.out).toContain("--add_volume");
  const bad = await runBin([join(dir, "scli"), "--no_such_flag"]);
  expect(bad.code).toBe(2);
  expect(bad.out).toContain("--no_such_flag");
});

test("the lone binary runs an MDM from an empty directory (embedded migrations, generated TLS)", async () => {
  const port = await freePort();
  const p = Bun.spawn([lone, "mdm", "--data-dir", join(dir, "mdm"), "--listen", `127.0.0.1:${port}`], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin", HOME: dir },
  });
  try {
    const deadline = Date.now() + 20_000;
    while (!existsSync(join(dir, "mdm", "tls", "cert.pem")) && Date.now() < deadline) await Bun.sleep(100);
    const ca = await Bun.file(join(dir, "mdm", "tls", "cert.pem")).text();
    let version = "";
    while (Date.now() < deadline) {
      try {
        const r = await fetch(`https://127.0.0.1:${port}/api/version`, { tls: { ca } } as RequestInit);
        version = (await r.json()) as string;
        break;
      } catch {
        await Bun.sleep(100);
      }
    }
    expect(version).toBe("3.6");
  } finally {
    p.kill("SIGKILL");
    await p.exited;
  }
});

test("bad flags give one clear line and a non-zero exit", async () => {
  const r = await runBin([lone, "sds", "--data-dir", dir, "--device", "x:lots", "--mdm", "https://127.0.0.1:1"], { PF_CLUSTER_SECRET: "s".repeat(20) });
  expect(r.code).not.toBe(0);
  expect(r.out).toContain("lots");
  const u = await runBin([lone, "up", join(dir, "missing.yaml")]);
  expect(u.code).not.toBe(0);
  expect(u.out).toContain("missing.yaml");
});

test("the lone binary serves the dashboard from its embedded assets (no file next to it)", async () => {
  const port = await freePort();
  const data = join(dir, "mdm-dash");
  const p = Bun.spawn([lone, "mdm", "--data-dir", data, "--listen", `127.0.0.1:${port}`], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin", HOME: dir },
  });
  try {
    const deadline = Date.now() + 20_000;
    while (!existsSync(join(data, "tls", "cert.pem")) && Date.now() < deadline) await Bun.sleep(100);
    const ca = await Bun.file(join(data, "tls", "cert.pem")).text();
    const get = async (path: string, headers: Record<string, string> = {}) => {
      for (;;) {
        try {
          return await fetch(`https://127.0.0.1:${port}${path}`, { headers, redirect: "manual", tls: { ca } } as RequestInit);
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await Bun.sleep(100);
        }
      }
    };
    const root = await get("/", { accept: "text/html" });
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe("/dashboard/");
    const html = await get("/dashboard/");
    expect(html.status).toBe(200);
    expect(html.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await html.text()).toContain("/dashboard/assets/app.js");
    const js = await get("/dashboard/assets/app.js");
    expect(js.headers.get("content-type")).toContain("javascript");
    const jsText = await js.text();
    expect(jsText.length).toBeGreaterThan(10_000);
    expect(jsText).toContain("/dashboard/api/summary");
    expect(await (await get("/dashboard/assets/app.css")).text()).toContain("--accent");
    expect((await get("/dashboard/api/summary")).status).toBe(401);
  } finally {
    p.kill("SIGKILL");
    await p.exited;
  }
});
