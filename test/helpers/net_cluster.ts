// A multi-host pf cluster on one machine: every host is a network namespace (TestNetwork), the
// same cluster YAML is given to `pf up --host NAME` on each, exactly as an operator copies one
// file to every host. Host "h0" runs the MDM and the SDC; h1..hN run one SDS each. Clients
// (fio, qemu-io, scli) run inside h0's namespace.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { PF_BIN, childPids } from "./cluster.ts";
import { TestNetwork } from "./netns.ts";

const MDM_PORT = 6611;
const NBD_PORT = 10809;
const SDS_PORT = 7072;

export interface NetClusterSpec {
  sdsHosts: number;
  deviceSize: string;
  mdmYaml?: string;
  volumes: { name: string; size: string }[];
}

export class NetCluster {
  readonly net: TestNetwork;
  readonly dir: string;
  private procs = new Map<string, Subprocess<"ignore", "pipe", "pipe">>();
  private logs = new Map<string, string>();

  constructor(readonly spec: NetClusterSpec) {
    const names = ["h0", ...Array.from({ length: spec.sdsHosts }, (_, i) => `h${i + 1}`)];
    this.dir = mkdtempSync(join(tmpdir(), "pf-net-"));
    this.net = new TestNetwork(names);
    writeFileSync(this.configFile, this.yaml());
  }

  get configFile(): string {
    return join(this.dir, "cluster.yaml");
  }
  get caFile(): string {
    return join(this.dir, "h0", "mdm", "tls", "cert.pem");
  }
  get mdmUrl(): string {
    return `https://${this.net.host("h0").address}:${MDM_PORT}`;
  }
  nbdUri(volume: string): string {
    return `nbd://${this.net.host("h0").address}:${NBD_PORT}/${volume}`;
  }

  private yaml(): string {
    const h0 = this.net.host("h0");
    const lines = [
      "cluster: { name: pf-net, secret: net-test-secret-0123456789, adminPassword: test-admin-pw }",
      `mdm: { port: ${MDM_PORT}, ca: ${this.caFile}${this.spec.mdmYaml ? `, ${this.spec.mdmYaml}` : ""} }`,
      "hosts:",
      `  - { name: h0, address: ${h0.address}, mdm: true, sdc: { nbd: "${h0.address}:${NBD_PORT}" } }`,
    ];
    for (const h of this.net.hosts.slice(1)) {
      lines.push(`  - name: ${h.name}`);
      lines.push(`    address: ${h.address}`);
      lines.push(`    sds: [{ name: sds-${h.name}, port: ${SDS_PORT}, pool: pd1/sp1, devices: [{ path: dev0.img, size: ${this.spec.deviceSize} }] }]`);
    }
    lines.push("protectionDomains:", "  - name: pd1", "    storagePools: [{ name: sp1, sparePercentage: 0, extentSize: 16MiB, granularity: 64MiB }]");
    lines.push("volumes:");
    for (const v of this.spec.volumes) lines.push(`  - { name: ${v.name}, pool: pd1/sp1, size: ${v.size}, mapTo: [{ host: h0 }] }`);
    return lines.join("\n") + "\n";
  }

  /** Start pf up on every host; resolves when h0 (MDM + SDC) reports the cluster up. */
  async start(timeoutMs = 120_000): Promise<void> {
    for (const h of [...this.net.hosts].reverse()) this.startHost(h.name);
    const deadline = Date.now() + timeoutMs;
    while (!(this.logs.get("h0") ?? "").includes("pf is up on host")) {
      if (Date.now() > deadline) throw new Error(`cluster not up after ${timeoutMs} ms:\n${this.allLogs()}`);
      const dead = [...this.procs].find(([, p]) => p.exitCode !== null);
      if (dead) throw new Error(`pf up on ${dead[0]} exited ${dead[1].exitCode}:\n${this.allLogs()}`);
      await Bun.sleep(200);
    }
  }

  startHost(name: string): void {
    const dataDir = join(this.dir, name);
    mkdirSync(dataDir, { recursive: true });
    const proc = Bun.spawn([...this.net.exec(name), PF_BIN, "up", this.configFile, "--host", name, "--data-dir", dataDir], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.procs.set(name, proc);
    this.logs.set(name, "");
    const dec = new TextDecoder();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) this.logs.set(name, (this.logs.get(name) ?? "") + dec.decode(chunk));
    };
    void pump(proc.stdout);
    void pump(proc.stderr);
  }

  /** kill -9 every pf process of a host (its pf up and roles). */
  async killHost(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) return;
    for (const pid of [...childPids(p.pid), p.pid]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await p.exited;
    this.procs.delete(name);
  }

  /** Run a command inside a host's namespace. */
  async run(host: string, cmd: string[], timeoutMs = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = Bun.spawn([...this.net.exec(host), ...cmd], { stdout: "pipe", stderr: "pipe", env: this.clientEnv() });
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const code = await proc.exited;
    clearTimeout(timer);
    return { code, stdout, stderr };
  }

  clientEnv(): Record<string, string | undefined> {
    return { ...process.env, PF_MDM: this.mdmUrl, PF_MDM_CA: this.caFile, PF_SCLI_SESSION_DIR: join(this.dir, "scli"), HOME: this.dir };
  }

  scli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.run("h0", [PF_BIN, "scli", ...args]);
  }

  allLogs(): string {
    return [...this.logs].map(([h, l]) => `==== ${h}\n${l.split("\n").slice(-40).join("\n")}`).join("\n");
  }

  adminPassword(): string {
    return readFileSync(join(this.dir, "h0", "mdm", "admin-password"), "utf8").trim();
  }

  async destroy(): Promise<void> {
    for (const name of [...this.procs.keys()]) await this.killHost(name);
    this.net.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
