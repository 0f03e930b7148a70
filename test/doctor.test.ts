// `pf doctor` as an operator runs it on a one-host cluster: healthy, every check is ok (info
// only where nothing can be known: NTP without timedatectl, etcd in a single-MDM cluster; NTP may
// warn on a host whose clock is not synchronized). Then three things go wrong at once — an SDS
// is killed, a port the file gives is taken by another program, and a new SDS's devices do not
// fit in the free space of a small tmpfs — and doctor reports each with its fix and exits 8.
// Needs root for the tmpfs mount (unmounted in finally).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TCPSocketListener } from "bun";
import { PF_BIN, TestCluster, clusterYaml, freePort } from "./helpers/cluster.ts";

interface Row {
  name: string;
  status: "ok" | "info" | "warning" | "failed";
  detail: string;
  fix?: string;
}

let cluster: TestCluster;

async function doctor(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([PF_BIN, "doctor", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env } });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, stdout, stderr };
}

async function doctorRows(file: string): Promise<{ code: number; rows: Row[] }> {
  const r = await doctor([file, "--data-dir", cluster.dataDir, "--json"]);
  const parsed = JSON.parse(r.stdout) as { checks: Row[] };
  return { code: r.code, rows: parsed.checks };
}

function row(rows: Row[], name: string): Row {
  const r = rows.find((x) => x.name === name);
  if (!r) throw new Error(`no check named ${JSON.stringify(name)} in: ${rows.map((x) => x.name).join(" | ")}`);
  return r;
}

beforeAll(async () => {
  cluster = await TestCluster.create({
    sdsCount: 2,
    devicesPerSds: 1,
    deviceSize: "64MiB",
    mdmYaml: "heartbeatTimeout: 2s",
    volumes: [{ name: "vol1", size: "64MiB" }],
  });
  await cluster.start();
});

afterAll(async () => {
  await cluster.destroy();
});

describe("pf doctor", () => {
  test("a healthy one-host cluster: every check ok, exit 0", async () => {
    const { code, rows } = await doctorRows(cluster.configFile);
    const notOk = rows.filter((r) => r.status !== "ok");
    for (const r of notOk) {
      // only what cannot be known or does not apply is not ok
      expect({ name: r.name, status: r.status }).toEqual({ name: r.name, status: r.name === "NTP" && r.status === "warning" ? "warning" : "info" });
      expect(["NTP", "etcd endpoints"]).toContain(r.name);
    }
    expect(code).toBe(0);
    expect(row(rows, `port 127.0.0.1:${cluster.ports.mdm} (the MDM)`).detail).toBe(`held by pf mdm (pid ${cluster.pidOf("mdm")})`);
    expect(row(rows, `port 127.0.0.1:${cluster.ports.sds[1]} (SDS sds2)`).detail).toBe(`held by pf sds sds2 (pid ${cluster.pidOf("sds sds2")})`);
    expect(row(rows, "SDS sds1 joined").detail).toStartWith("Connected");
    expect(row(rows, "SDS sds2 joined").detail).toStartWith("Connected");
    expect(row(rows, "SDC joined").detail).toStartWith("Connected");
    expect(row(rows, `NBD server 127.0.0.1:${cluster.ports.nbd}`).detail).toBe("answers NBD, exports vol1");
    expect(row(rows, "cluster secret").detail).toBe("accepted by the MDM");
    expect(row(rows, `MDM reachable (${cluster.mdmUrl})`).status).toBe("ok");
    expect(row(rows, "MDM certificate").detail).toContain(`${cluster.caFile} names 127.0.0.1`);
    expect(row(rows, "monotonic clock").status).toBe("ok");
    expect(row(rows, `O_DIRECT on ${cluster.dataDir}`).status).toBe("ok");
    expect(row(rows, `fallocate on ${cluster.dataDir}`).status).toBe("ok");
    expect(row(rows, "etcd endpoints").detail).toStartWith("not applicable");
    // it leaves nothing: no test file stays in the data dir
    expect(readdirNames(cluster.dataDir).filter((n) => n.startsWith(".pf-doctor"))).toEqual([]);
  });

  test("one admin login per run, ended by a logout; a wrong password costs one failure, not one per check", async () => {
    await cluster.login();
    const adminRecords = async (): Promise<{ seq: number; kind: string; result: string }[]> => {
      const r = await cluster.scli(["--query_audit_log", "--username", "admin", "--max_records", "50", "--json"]);
      expect(r.code).toBe(0);
      return (JSON.parse(r.stdout) as { seq: number; kind: string; result: string }[]).filter((x) => x.kind === "login" || x.kind === "logout");
    };
    const since = async (seq: number) => (await adminRecords()).filter((x) => x.seq > seq).map((x) => `${x.kind} ${x.result}`).reverse();
    const before = Math.max(0, ...(await adminRecords()).map((x) => x.seq));
    expect((await doctorRows(cluster.configFile)).code).toBe(0);
    expect(await since(before)).toEqual(["login ok", "logout ok"]);

    // the file's admin password is wrong: the member checks and the NBD check would each log in
    const mid = Math.max(0, ...(await adminRecords()).map((x) => x.seq));
    const file = join(cluster.dir, "doctor-wrong-password.yaml");
    writeFileSync(file, readFileSync(cluster.configFile, "utf8").replace("adminPassword: test-admin-pw", "adminPassword: not-the-password"));
    const { rows } = await doctorRows(file);
    expect(row(rows, "SDS sds1 joined")).toMatchObject({ status: "failed", detail: expect.stringContaining("admin login refused") });
    expect(await since(mid)).toEqual(["login refused"]);
  });

  test("a port taken, devices larger than the free space and a stopped SDS: each reported with its fix, exit 8", async () => {
    const mnt = mkdtempSync(join(tmpdir(), "pf-doctor-tmpfs-"));
    const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], { stderr: "pipe" });
    expect({ mount: mount.exitCode, err: mount.stderr.toString() }).toEqual({ mount: 0, err: "" });
    let squatter: TCPSocketListener<undefined> | null = null;
    try {
      // a third SDS in the file: its port taken by another program, its 256 MiB device on a 64 MiB tmpfs
      const sds3Port = await freePort();
      squatter = Bun.listen({ hostname: "127.0.0.1", port: sds3Port, socket: { data() {} } });
      const file = join(cluster.dir, "doctor.yaml");
      const sds3 = `      - { name: sds3, port: ${sds3Port}, pool: pd1/sp1, devices: [{ path: ${mnt}/sds3.img, size: 256MiB }] }\n`;
      writeFileSync(file, readFileSync(cluster.configFile, "utf8").replace("    sdc: {", `${sds3}    sdc: {`));
      // and SDS sds2 stops (kill -9); the MDM notices after its 2 s heartbeat timeout
      const sds2Pid = cluster.pidOf("sds sds2");
      cluster.killRole("sds sds2");
      const deadline = Date.now() + 20_000;
      let rows: Row[] = [];
      let code = -1;
      while (Date.now() < deadline) {
        ({ code, rows } = await doctorRows(file));
        if (row(rows, "SDS sds2 joined").status === "failed") break;
        await Bun.sleep(500);
      }
      expect(code).toBe(8);

      const port = row(rows, `port 127.0.0.1:${sds3Port} (SDS sds3)`);
      expect(port.status).toBe("failed");
      expect(port.detail).toContain(`in use by`);
      expect(port.detail).toContain(`(pid ${process.pid})`);
      expect(port.fix).toBe(`stop it (kill ${process.pid}) or change hosts.0.sds.2.port in ${file}`);

      const space = row(rows, `free space on ${mnt}`);
      expect(space.status).toBe("failed");
      expect(space.detail).toContain("the devices to create (SDS sds3) need 256.0 MiB");
      expect(space.detail).toMatch(/which has \d+\.\d MiB free/);
      expect(space.fix).toBe(`free space there, or give smaller sizes or other paths in ${file}`);

      const sds2 = row(rows, "SDS sds2 joined");
      expect(sds2.status).toBe("failed");
      expect(sds2.detail).toStartWith("Disconnected");
      expect(sds2.fix).toContain(`restart pf up ${file} on this host`);
      // pf up itself reported the death with the exit and the role's last log lines
      expect(cluster.output).toMatch(new RegExp(`pf up: sds sds2 \\(pid ${sds2Pid}\\) died: signal SIGKILL; its last log lines:\\n    .*sds`));

      // what is fine stays fine; sds3 was never deployed here, so not joined is no failure
      expect(row(rows, "SDS sds1 joined").status).toBe("ok");
      expect(row(rows, "SDS sds3 joined").status).toBe("info");
      expect(row(rows, `port 127.0.0.1:${cluster.ports.sds[1]} (SDS sds2)`).status).toBe("ok");
      expect(rows.filter((r) => r.status === "failed").map((r) => r.name).sort()).toEqual([port.name, space.name, sds2.name].sort());

      // the table an operator reads: a FAILED row, then its fix
      const text = await doctor([file, "--data-dir", cluster.dataDir]);
      expect(text.code).toBe(8);
      const lines = text.stdout.split("\n");
      for (const name of [port.name, space.name, sds2.name]) {
        const at = lines.findIndex((l) => l.startsWith("FAILED") && l.includes(name));
        expect(at).toBeGreaterThan(0);
        expect(lines[at + 1]!.trim()).toStartWith("fix: ");
      }
      expect(lines.at(-2)).toMatch(/, 3 failed$/);
      expect(text.stderr).toBe("");
    } finally {
      squatter?.stop(true);
      Bun.spawnSync(["umount", mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  test("before the first pf up: nothing running is no failure", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pf-doctor-fresh-"));
    try {
      const ports = { mdm: await freePort(), nbd: await freePort(), sds: [await freePort()], sdsControl: [await freePort()], sdcControl: await freePort() };
      mkdirSync(join(dir, "in"));
      const file = join(dir, "in", "c.yaml");
      writeFileSync(file, clusterYaml({ sdsCount: 1, devicesPerSds: 1, deviceSize: "64MiB", volumes: [{ name: "vol1", size: "64MiB" }] }, ports));
      const r = await doctor([file, "--data-dir", join(dir, "data"), "--json"]);
      const rows = (JSON.parse(r.stdout) as { checks: Row[] }).checks;
      expect(rows.filter((x) => x.status === "failed")).toEqual([]);
      expect(r.code).toBe(0);
      expect(row(rows, `MDM reachable (https://127.0.0.1:${ports.mdm})`).detail).toContain("not deployed on this host yet");
      expect(row(rows, "data dir").detail).toContain("will be created");
      expect(readdirNames(dir)).toEqual(["in"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function readdirNames(dir: string): string[] {
  return readdirSync(dir).sort();
}
