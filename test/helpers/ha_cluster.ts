// Test harness for an HA cluster run as an operator would, from ONE cluster YAML: an etcd
// cluster (helpers/etcd.ts), three MDM hosts m1..m3 and data hosts with the SDSs and the SDC,
// each host a separate `pf up FILE --host NAME` of the compiled dist/pf with its own data dir.
// The default layout is loopback: MDMs on 127.0.0.11..13 (the same MDM port on each address),
// one data host "data" on 127.0.0.1 with every SDS and the SDC. A layout may instead put each
// host in a network namespace (helpers/ha_netns.ts): then every pf up, etcd member and restarted
// role runs under that host's `ip netns exec`. Output lines are kept with their arrival time
// (performance.now), so tests can time takeovers from the logs. Every process is killed by PID
// in stop(), pass or fail.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { childPids, freePort, PF_BIN } from "./cluster.ts";
import { EtcdCluster } from "./etcd.ts";

export const MDM_HOSTS = ["m1", "m2", "m3"] as const;
export type MdmHost = (typeof MDM_HOSTS)[number];
const LOOPBACK_MDM_ADDR: Record<MdmHost, string> = { m1: "127.0.0.11", m2: "127.0.0.12", m3: "127.0.0.13" };

/** Where the hosts live: addresses, which data host runs which SDS and the SDC, and how to enter a host. */
export interface HaLayout {
  mdmAddr: Record<MdmHost, string>;
  /** data hosts; sds: indices into the cluster's SDS list (sds1 = 0) */
  dataHosts: { name: string; address: string; sds: number[]; sdc: boolean }[];
  /** argv prefix that runs a command on a host (none on loopback) */
  wrap(host: string): string[];
}

function loopbackLayout(sdsCount: number): HaLayout {
  return {
    mdmAddr: LOOPBACK_MDM_ADDR,
    dataHosts: [{ name: "data", address: "127.0.0.1", sds: Array.from({ length: sdsCount }, (_, i) => i), sdc: true }],
    wrap: () => [],
  };
}
/** log level of every pf role (consola's number; PF_HA_CONSOLA_LEVEL=4 for the MDMs' election steps) */
const HA_CONSOLA_LEVEL = process.env.PF_HA_CONSOLA_LEVEL ?? "3";
export const ADMIN_PASSWORD = "ha-admin-password";
export const CLUSTER_SECRET = "ha-test-cluster-secret-0123456789";

export interface HaSpec {
  etcdMembers?: 1 | 3;
  sdsCount?: number;
  deviceSize?: string;
  heartbeatTimeout?: string;
  rebuildGrace?: string;
  volumeSize?: string;
  /** hosts in network namespaces (helpers/ha_netns.ts); default loopback */
  layout?: HaLayout;
  /** the etcd cluster, when the layout started it (default: one member beside each MDM on loopback) */
  etcd?: EtcdCluster;
  /** fixed ports (a namespace layout gives every host its own address) */
  ports?: { mdm: number; nbd: number; sds: number };
}

export interface Line {
  atMs: number;
  text: string;
}

export interface MdmRole {
  id: string;
  role: "leader" | "standby";
  term: number;
  mapVersion: number;
  leader: { name: string; url: string } | null;
  stats: { txns: number; ops: number; takeovers: number; stepDowns: number };
}

export class HostProc {
  lines: Line[] = [];
  constructor(readonly name: string, readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    const dec = new TextDecoder();
    let partial = "";
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) {
        const now = performance.now();
        const text = partial + dec.decode(chunk);
        const parts = text.split("\n");
        partial = parts.pop() ?? "";
        for (const t of parts) this.lines.push({ atMs: now, text: t });
      }
    };
    void pump(proc.stdout);
    void pump(proc.stderr);
  }
  get output(): string {
    return this.lines.map((l) => l.text).join("\n");
  }
}

export class HaCluster {
  readonly dir: string;
  readonly configFile: string;
  readonly hosts = new Map<string, HostProc>();
  private extra: Subprocess[] = [];
  /** roles started again by hand: "host/label" -> pid (wins over pf up's log) */
  private restarted = new Map<string, number>();
  private marks: Line[] = [];

  private constructor(
    readonly etcd: EtcdCluster,
    readonly mdmPort: number,
    readonly nbdPort: number,
    readonly sdsPorts: number[],
    readonly layout: HaLayout,
    spec: HaSpec,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "pf-ha-e2e-"));
    this.configFile = join(this.dir, "cluster.yaml");
    writeFileSync(this.configFile, this.yaml(spec));
  }

  static async create(spec: HaSpec = {}): Promise<HaCluster> {
    const n = spec.sdsCount ?? 3;
    const layout = spec.layout ?? loopbackLayout(n);
    // one etcd member beside each MDM (as PowerFlex's Managers): no tie-breaker in the view
    const etcd = spec.etcd ?? (await EtcdCluster.start(spec.etcdMembers ?? 3, { hosts: MDM_HOSTS.map((h) => layout.mdmAddr[h]) }));
    const sdsPorts: number[] = [];
    for (let i = 0; i < n; i++) sdsPorts.push(spec.ports?.sds ?? (await freePort()));
    return new HaCluster(etcd, spec.ports?.mdm ?? (await freePort()), spec.ports?.nbd ?? (await freePort()), sdsPorts, layout, spec);
  }

  get mdmUrls(): string {
    return MDM_HOSTS.map((h) => this.urlOf(h)).join(",");
  }
  urlOf(h: MdmHost): string {
    return `https://${this.layout.mdmAddr[h]}:${this.mdmPort}`;
  }
  /** the data host that runs the SDC */
  get sdcHost(): { name: string; address: string } {
    return this.layout.dataHosts.find((d) => d.sdc)!;
  }
  get caFile(): string {
    return join(this.dir, "m1", "mdm", "tls", "ca.pem");
  }
  nbdUri(volume: string): string {
    return `nbd://${this.sdcHost.address}:${this.nbdPort}/${volume}`;
  }

  private yaml(spec: HaSpec): string {
    const size = spec.deviceSize ?? "256MiB";
    // control ports 0 (any free one): the default, port + 1000, is no port freePort reserved, and
    // another test's server on it failed pf up's port check now and then (CI: the SDC's control
    // port on an SDS of another test)
    const sdsLine = (i: number) => `      - { name: sds${i + 1}, port: ${this.sdsPorts[i]}, controlPort: 0, pool: pd1/sp1, devices: [{ path: sds${i + 1}/dev0.img, size: ${size} }] }`;
    const dataHosts = this.layout.dataHosts.flatMap((d) => [
      `  - name: ${d.name}`,
      `    address: ${d.address}`,
      ...(d.sds.length > 0 ? ["    sds:", ...d.sds.map(sdsLine)] : []),
      ...(d.sdc ? [`    sdc: { nbd: "${d.address}:${this.nbdPort}", control: "${d.address}:0" }`] : []),
    ]);
    return [
      `cluster: { name: ha${process.pid}, secret: ${CLUSTER_SECRET}, adminPassword: ${ADMIN_PASSWORD} }`,
      "mdm:",
      `  port: ${this.mdmPort}`,
      `  ca: ${this.caFile}`,
      `  heartbeatTimeout: ${spec.heartbeatTimeout ?? "5s"}`,
      `  rebuildGrace: ${spec.rebuildGrace ?? "4s"}`,
      `  etcd: { endpoints: [${this.etcd.endpoints.join(", ")}] }`,
      "hosts:",
      ...MDM_HOSTS.map((h) => `  - { name: ${h}, address: ${this.layout.mdmAddr[h]}, mdm: true }`),
      ...dataHosts,
      "protectionDomains:",
      "  - name: pd1",
      "    storagePools:",
      "      - { name: sp1, sparePercentage: 10, extentSize: 16MiB, granularity: 64MiB }",
      "volumes:",
      `  - { name: vol1, pool: pd1/sp1, size: ${spec.volumeSize ?? "128MiB"}, type: thin, mapTo: [{ host: ${this.sdcHost.name} }] }`,
      "",
    ].join("\n");
  }

  private startHost(name: string): HostProc {
    const proc = Bun.spawn([...this.layout.wrap(name), PF_BIN, "up", this.configFile, "--host", name, "--data-dir", join(this.dir, name)], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, CONSOLA_LEVEL: HA_CONSOLA_LEVEL },
    });
    const h = new HostProc(name, proc);
    this.hosts.set(name, h);
    return h;
  }

  /**
   * Start m1 first (it bootstraps the cluster in etcd), then the other MDMs; the data host only
   * once m1's pf up has created the file's topology (an SDS that joins first would create pd1/sp1
   * with the MDM's default pool settings, not the file's 16 MiB extents); then wait for all.
   */
  async start(timeoutMs = 120_000): Promise<void> {
    const m1 = this.startHost("m1");
    await this.waitRole("m1", (r) => r.role === "leader", 30_000);
    for (const h of ["m2", "m3"]) this.startHost(h);
    const topoDeadline = Date.now() + 30_000;
    while (!m1.output.includes("pf up: topology of")) {
      if (m1.proc.exitCode !== null) throw new Error(`pf up --host m1 exited ${m1.proc.exitCode}:\n${m1.output}`);
      if (Date.now() > topoDeadline) throw new Error(`pf up --host m1 did not create the topology in 30 s:\n${m1.output}`);
      await Bun.sleep(50);
    }
    for (const d of this.layout.dataHosts) this.startHost(d.name);
    const deadline = Date.now() + timeoutMs;
    for (const h of this.hosts.values()) {
      while (!h.output.includes("pf is up on host")) {
        if (h.proc.exitCode !== null) throw new Error(`pf up --host ${h.name} exited ${h.proc.exitCode}:\n${h.output}`);
        if (Date.now() > deadline) throw new Error(`pf up --host ${h.name} not up after ${timeoutMs} ms:\n${h.output}`);
        await Bun.sleep(100);
      }
    }
  }

  /** /api/pf/mdmRole of one MDM (null when it does not answer). */
  async role(h: MdmHost): Promise<MdmRole | null> {
    try {
      const r = await fetch(`${this.urlOf(h)}/api/pf/mdmRole`, { tls: { ca: readFileSync(this.caFile, "utf8") }, signal: AbortSignal.timeout(500) } as RequestInit);
      return (await r.json()) as MdmRole;
    } catch {
      return null;
    }
  }

  async waitRole(h: MdmHost, ok: (r: MdmRole) => boolean, timeoutMs: number): Promise<MdmRole> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.role(h).catch(() => null);
      if (r && ok(r)) return r;
      if (Date.now() > deadline) throw new Error(`MDM ${h} not in the expected role after ${timeoutMs} ms (last: ${JSON.stringify(r)})`);
      await Bun.sleep(20);
    }
  }

  /** The MDM host that leads now. */
  async leader(timeoutMs = 10_000): Promise<{ host: MdmHost; role: MdmRole }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const h of MDM_HOSTS) {
        const r = await this.role(h);
        if (r?.role === "leader") return { host: h, role: r };
      }
      if (Date.now() > deadline) throw new Error("no MDM leads");
      await Bun.sleep(20);
    }
  }

  /** PID of a role of one host's pf up ("mdm", "sds sds2", "sdc"). */
  pidOf(host: string, label: string): number {
    const again = this.restarted.get(`${host}/${label}`);
    if (again !== undefined) return again;
    const all = [...(this.hosts.get(host)?.output ?? "").matchAll(new RegExp(`started ${label} \\(pid (\\d+)\\)`, "g"))];
    const m = all[all.length - 1];
    if (!m) throw new Error(`no role ${label} on host ${host}`);
    return Number(m[1]);
  }

  /** kill -9 one role; returns its argv for restartRole. */
  killRole(host: string, label: string): string[] {
    const pid = this.pidOf(host, label);
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
    process.kill(pid, "SIGKILL");
    return argv;
  }

  restartRole(host: string, label: string, argv: string[], env: Record<string, string> = {}): HostProc {
    const proc = Bun.spawn([...this.layout.wrap(host), ...argv], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, CONSOLA_LEVEL: HA_CONSOLA_LEVEL, PF_CLUSTER_SECRET: CLUSTER_SECRET, PF_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env },
    });
    this.extra.push(proc);
    this.restarted.set(`${host}/${label}`, proc.pid);
    const h = new HostProc(`${host} ${label} (restarted)`, proc);
    this.hosts.set(`${host}/${label}`, h);
    return h;
  }

  /** A test's own event ("etcd leader killed"), written with the hosts' lines by keepLogs. */
  mark(text: string): void {
    this.marks.push({ atMs: performance.now(), text });
  }

  /**
   * When PF_HA_KEEP_LOGS names a file: every host's lines and the test's marks, merged in arrival
   * order, each prefixed with its time (ms on this process's monotonic clock, and wall clock, to
   * line up with etcd's own logs) and its host.
   */
  async keepLogs(): Promise<void> {
    const file = process.env.PF_HA_KEEP_LOGS;
    if (!file) return;
    const wallOffsetMs = Date.now() - performance.now();
    const all = [...this.hosts.values()].flatMap((h) => h.lines.map((l) => ({ ...l, host: h.name })));
    all.push(...this.marks.map((m) => ({ ...m, host: "TEST" })));
    all.sort((a, b) => a.atMs - b.atMs);
    const at = (ms: number) => `${ms.toFixed(0).padStart(8)} ${new Date(ms + wallOffsetMs).toISOString().slice(11, 23)}`;
    await Bun.write(file, all.map((l) => `${at(l.atMs)} ${l.host.padEnd(6)} | ${l.text}`).join("\n") + "\n");
  }

  /** Lines of every data host's output matching re, with the host's name. */
  dataLines(re: RegExp): (Line & { host: string })[] {
    return this.layout.dataHosts.flatMap((d) => this.linesOf(d.name, re).map((l) => ({ ...l, host: d.name })));
  }

  /** Lines of an MDM's output matching re: its pf up's, or its restarted process's when restarted. */
  mdmLines(h: MdmHost, re: RegExp): Line[] {
    return [...this.linesOf(h, re), ...this.linesOf(`${h}/mdm`, re)].sort((a, b) => a.atMs - b.atMs);
  }

  /** Lines of a host's output matching re, with their arrival times. */
  linesOf(host: string, re: RegExp): Line[] {
    return (this.hosts.get(host)?.lines ?? []).filter((l) => re.test(l.text));
  }

  async scli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = Bun.spawn([PF_BIN, "scli", ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, PF_MDM: this.mdmUrls, PF_MDM_CA: this.caFile, PF_SCLI_SESSION_DIR: join(this.dir, "scli"), HOME: this.dir },
    });
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code: await proc.exited, stdout, stderr };
  }

  async stop(): Promise<void> {
    for (const p of this.extra) p.kill("SIGKILL");
    for (const h of this.hosts.values()) {
      const pids = childPids(h.proc.pid);
      for (const pid of [...pids, h.proc.pid]) {
        try {
          process.kill(pid, "SIGCONT");
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
    await this.etcd.stop();
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
