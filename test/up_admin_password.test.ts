// The built binary: `pf up` given PF_ADMIN_PASSWORD makes it the MDM's admin password and logs in
// with it to apply the cluster's objects (it used to read a password file the MDM never wrote,
// and fail); no generated password file appears. Over real HTTPS, 200 PyPowerFlex-style logins
// (login, version, login, call, logout, as base_client.py does per request) are timed: p50/p99.

import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PF_BIN, freePort } from "./helpers/cluster.ts";

const dir = mkdtempSync(join(tmpdir(), "pf-up-pw-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PASSWORD = "Up-Given-Pass-7781";

function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

test("pf up with PF_ADMIN_PASSWORD: that is the admin password, the cluster's objects are applied, logins stay fast", async () => {
  const port = await freePort();
  const file = join(dir, "c.yaml");
  writeFileSync(
    file,
    [
      "cluster: { name: pw-test }",
      `mdm: { port: ${port} }`,
      "hosts:",
      "  - { name: h1, address: 127.0.0.1, mdm: true }",
      "protectionDomains:",
      "  - name: pd1",
      "    storagePools: [{ name: sp1 }]",
      "",
    ].join("\n"),
  );
  const data = join(dir, "data");
  const p = Bun.spawn([PF_BIN, "up", file, "--data-dir", data], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, PF_ADMIN_PASSWORD: PASSWORD, PF_CLUSTER_SECRET: "" },
  });
  let out = "";
  const reader = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of p.stdout) out += dec.decode(chunk);
  })();
  const errText = new Response(p.stderr).text();
  try {
    const deadline = Date.now() + 60_000;
    while (!out.includes("pf is up") && Date.now() < deadline && p.exitCode === null) await Bun.sleep(100);
    if (!out.includes("pf is up")) throw new Error(`pf up did not come up (exit ${p.exitCode}): ${out}\n${await Promise.race([errText, Bun.sleep(500).then(() => "")])}`);
    expect(out).toContain('--password "$PF_ADMIN_PASSWORD"');
    expect(existsSync(join(data, "mdm", "admin-password"))).toBe(false);
    const ca = await Bun.file(join(data, "mdm", "tls", "cert.pem")).text();
    const url = `https://127.0.0.1:${port}/api`;
    const call = async (path: string, headers: Record<string, string>) => {
      const r = await fetch(url + path, { headers, tls: { ca } } as RequestInit);
      return { status: r.status, json: (await r.json()) as unknown };
    };
    expect((await call("/login", basic("admin", "not-it-0000"))).status).toBe(401);
    const ms: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const first = await call("/login", basic("admin", PASSWORD));
      ms.push(performance.now() - t0);
      expect(first.status).toBe(200);
      const tok = first.json as string;
      expect((await call("/version", basic("admin", tok))).status).toBe(200);
      const again = (await call("/login", basic("admin", PASSWORD))).json as string;
      const pools = await call("/types/StoragePool/instances", basic("admin", again));
      expect(pools.status).toBe(200);
      if (i === 0) expect((pools.json as { name: string }[]).map((x) => x.name)).toEqual(["sp1"]);
      expect((await call("/logout", basic("admin", again))).status).toBe(200);
    }
    ms.sort((a, b) => a - b);
    process.stderr.write(`HTTPS login (pf binary): p50 ${ms[99]!.toFixed(2)} ms, p99 ${ms[197]!.toFixed(2)} ms, max ${ms[199]!.toFixed(2)} ms over 200 logins\n`);
    expect(ms[99]!).toBeLessThan(50);
  } finally {
    p.kill("SIGTERM");
    await p.exited;
    await reader;
  }
}, 180_000);
