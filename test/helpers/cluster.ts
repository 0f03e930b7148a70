// Test harness: runs the compiled binary (dist/pf) as an operator would — `pf up cluster.yaml`
// in a temp data dir, on free loopback ports — and gives tests its NBD URIs, an scli runner and
// process control (kill -9 of every role, restart). Every process it starts is stopped by PID
// in stop(), pass or fail.

import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const PF_BIN = resolve(import.meta.dir, "../../dist/pf");

/**
 * A port free now, for a server a test starts in another process. Taken at random BELOW the
 * kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 here): a port the kernel
 * hands out for bind(0) is also what it hands out to outgoing connections, and the roles of
 * pf make many, so such a port was sometimes taken again before the server bound it (EADDRINUSE
 * under load). Checked free on 127.0.0.1 and on 0.0.0.0 (roles may bind either).
 *
 * A port is handed out once: a cluster takes a dozen before any of its servers binds, so a
 * random pick alone gave two roles of one cluster the same port now and then (about one cluster
 * in 200: "cannot listen for the control port ... Is port N in use?" in a beforeAll). Ports are
 * reserved across processes too (test files running in parallel): an O_EXCL file per port in
 * PORT_DIR naming its process; it is free again once that process has ended, or after
 * PORT_HOLD_MS (its server has bound it by then, or never will).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW));
    if (!reservePort(port)) continue;
    if ((await canBind(port, "127.0.0.1")) && (await canBind(port, "0.0.0.0"))) return port;
  }
  throw new Error("no free port found below the ephemeral range");
}

const PORT_LOW = 20_000;
const PORT_HIGH = 32_000;
const PORT_DIR = join(tmpdir(), "pf-test-ports");
const PORT_HOLD_MS = 10 * 60_000;
const handedOut = new Set<number>();

/**
 * Reserve `port` for this process: a file holding our PID, made with O_EXCL. One whose process
 * has ended (a suite run before this one: a suite takes a few thousand ports) or older than
 * PORT_HOLD_MS is taken over.
 */
function reservePort(port: number): boolean {
  if (handedOut.has(port)) return false;
  mkdirSync(PORT_DIR, { recursive: true });
  const file = join(PORT_DIR, String(port));
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(file, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      handedOut.add(port);
      return true;
    } catch {
      try {
        if (!reservationStale(file)) return false;
        unlinkSync(file);
      } catch {
        // gone meanwhile, or another process took it over: try again / give up on this port
      }
    }
  }
  return false;
}

function reservationStale(file: string): boolean {
  if (Date.now() - statSync(file).mtimeMs >= PORT_HOLD_MS) return true;
  const pid = Number(readFileSync(file, "utf8"));
  if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, host, () => s.close(() => res(true)));
  });
}

export interface VolumeSpec {
  name: string;
  size: string;
  type?: "thin" | "thick";
  access?: "ReadWrite" | "ReadOnly";
  mapped?: boolean;
}

export interface ClusterSpec {
  sdsCount?: number;
  devicesPerSds?: number;
  deviceSize?: string;
  extentSize?: string;
  granularity?: string;
  sparePercentage?: number;
  /** extra keys of the YAML's mdm: map, e.g. "heartbeatTimeout: 2s, rebuildGrace: 4s" */
  mdmYaml?: string;
  /** extra keys of the host's sdc: map, e.g. "nbdTls: require" */
  sdcYaml?: string;
  /** extra top-level YAML lines, e.g. "dataPlane: { tls: true }" */
  topYaml?: string;
  /** extra environment for pf up and its roles (e.g. PF_FAULT_DEVICE_FILE) */
  env?: Record<string, string>;
  /** the pf executable to run (default dist/pf; the metrics bench compares two builds) */
  bin?: string;
  /** false: leave the control ports out of the YAML (a pf build from before they existed) */
  controlPorts?: boolean;
  volumes: VolumeSpec[];
}

export interface Ports {
  mdm: number;
  nbd: number;
  sds: number[];
  /** control HTTP ports (/health /metrics /status), free ports too: port+1000 may be taken */
  sdsControl: number[];
  sdcControl: number;
}

export function clusterYaml(spec: ClusterSpec, ports: Ports): string {
  const n = spec.sdsCount ?? 3;
  const devs = spec.devicesPerSds ?? 2;
  const size = spec.deviceSize ?? "256MiB";
  const sds = Array.from({ length: n }, (_, i) => {
    const d = Array.from({ length: devs }, (_, j) => `{ path: sds${i + 1}/dev${j}.img, size: ${size} }`).join(", ");
    const control = spec.controlPorts === false ? "" : `, controlPort: ${ports.sdsControl[i]}`;
    return `      - { name: sds${i + 1}, port: ${ports.sds[i]}${control}, pool: pd1/sp1, devices: [${d}] }`;
  });
  const vols = spec.volumes.map((v) => {
    const map = v.mapped === false ? "[]" : `[{ host: local, accessMode: ${v.access ?? "ReadWrite"} }]`;
    return `  - { name: ${v.name}, pool: pd1/sp1, size: ${v.size}, type: ${v.type ?? "thin"}, mapTo: ${map} }`;
  });
  return [
    "cluster: { name: pf-test, adminPassword: test-admin-pw }",
    ...(spec.topYaml ? [spec.topYaml] : []),
    `mdm: { port: ${ports.mdm}${spec.mdmYaml ? `, ${spec.mdmYaml}` : ""} }`,
    "hosts:",
    "  - name: local",
    "    address: 127.0.0.1",
    "    mdm: true",
    "    sds:",
    ...sds,
    `    sdc: { nbd: 127.0.0.1:${ports.nbd}${spec.controlPorts === false ? "" : `, control: 127.0.0.1:${ports.sdcControl}`}${spec.sdcYaml ? `, ${spec.sdcYaml}` : ""} }`,
    "protectionDomains:",
    "  - name: pd1",
    "    storagePools:",
    `      - { name: sp1, sparePercentage: ${spec.sparePercentage ?? 10}, extentSize: ${spec.extentSize ?? "16MiB"}, granularity: ${spec.granularity ?? "64MiB"} }`,
    "volumes:",
    ...(vols.length > 0 ? vols : ["  []"]),
    "",
  ].join("\n");
}

export class TestCluster {
  readonly dir: string;
  readonly dataDir: string;
  readonly configFile: string;
  private up: Subprocess<"ignore", "pipe", "pipe"> | null = null;
  private extra: Subprocess[] = [];
  output = "";

  private constructor(readonly ports: Ports, yaml: string, private readonly env: Record<string, string> = {}, readonly bin: string = PF_BIN) {
    this.dir = mkdtempSync(join(tmpdir(), "pf-test-"));
    this.dataDir = join(this.dir, "data");
    this.configFile = join(this.dir, "cluster.yaml");
    writeFileSync(this.configFile, yaml);
  }

  static async create(spec: ClusterSpec): Promise<TestCluster> {
    const bin = spec.bin ?? PF_BIN;
    if (!existsSync(bin)) throw new Error(`${bin} missing: run \`npm run build\` first (npm test does)`);
    const n = spec.sdsCount ?? 3;
    const ports: Ports = { mdm: await freePort(), nbd: await freePort(), sds: [], sdsControl: [], sdcControl: await freePort() };
    for (let i = 0; i < n; i++) ports.sds.push(await freePort());
    for (let i = 0; i < n; i++) ports.sdsControl.push(await freePort());
    return new TestCluster(ports, clusterYaml(spec, ports), spec.env, bin);
  }

  /** control URL of SDS number i (0-based) */
  sdsControlUrl(i: number): string {
    return `http://127.0.0.1:${this.ports.sdsControl[i]}`;
  }
  get sdcControlUrl(): string {
    return `http://127.0.0.1:${this.ports.sdcControl}`;
  }

  get mdmUrl(): string {
    return `https://127.0.0.1:${this.ports.mdm}`;
  }
  get caFile(): string {
    return join(this.dataDir, "mdm", "tls", "cert.pem");
  }
  nbdUri(volume: string): string {
    return `nbd://127.0.0.1:${this.ports.nbd}/${volume}`;
  }
  /** qemu image spec of the first sizeBytes of a volume (for qemu-img compare against a smaller file) */
  nbdPrefix(volume: string, sizeBytes: number): string {
    const file = { driver: "nbd", export: volume, server: { type: "inet", host: "127.0.0.1", port: String(this.ports.nbd) } };
    return `json:${JSON.stringify({ driver: "raw", size: sizeBytes, file })}`;
  }

  /** Start `pf up` and wait for its "is up" line. */
  async start(timeoutMs = 90_000): Promise<void> {
    const proc = Bun.spawn([this.bin, "up", this.configFile, "--data-dir", this.dataDir], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, CONSOLA_LEVEL: "3", ...this.env },
    });
    this.up = proc;
    this.output = "";
    const seen = this.collect(proc);
    const deadline = Date.now() + timeoutMs;
    while (!this.output.includes("pf is up on host")) {
      if (proc.exitCode !== null) throw new Error(`pf up exited ${proc.exitCode}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`pf up not ready after ${timeoutMs} ms:\n${this.output}`);
      await Bun.sleep(100);
    }
    void seen;
  }

  private async collect(proc: Subprocess<"ignore", "pipe", "pipe">): Promise<void> {
    const dec = new TextDecoder();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) this.output += dec.decode(chunk);
    };
    await Promise.all([pump(proc.stdout), pump(proc.stderr)]);
  }

  /**
   * The cluster log's warnings and errors (the last `n`), to put in a failing test's message:
   * CI keeps only the tail of its output, so the cause must travel with the error.
   */
  warnings(n = 30): string {
    const lines = this.output.split("\n").filter((l) => /\b(WARN|ERROR)\b|error|failed/i.test(l));
    return `--- cluster warnings and errors (last ${Math.min(n, lines.length)} of ${lines.length}):\n${lines.slice(-n).join("\n")}`;
  }

  /** `p`, or its error with the cluster's warnings appended. */
  async explain<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.warnings()}`);
    }
  }

  /** PID of a role started by pf up, by its label ("mdm", "sds sds2", "sdc"), from pf up's log. */
  pidOf(label: string): number {
    const re = new RegExp(`started ${label} \\(pid (\\d+)\\)`, "g");
    const all = [...this.output.matchAll(re)];
    const m = all[all.length - 1];
    if (!m) throw new Error(`no role ${label} in pf up's output`);
    return Number(m[1]);
  }

  /** kill -9 one role; returns the argv it ran with, so restartRole can start it again. */
  killRole(label: string): string[] {
    const pid = this.pidOf(label);
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
    process.kill(pid, "SIGKILL");
    return argv;
  }

  /** Start a role again by hand (as an operator would after a crash), with pf up's argv. */
  restartRole(argv: string[]): Subprocess {
    const secret = readFileSync(join(this.dataDir, "cluster-secret"), "utf8").trim();
    const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "ignore", env: { ...process.env, PF_CLUSTER_SECRET: secret } });
    this.extra.push(proc);
    return proc;
  }

  /** PIDs of every role process started by pf up. */
  rolePids(): number[] {
    if (!this.up) return [];
    return childPids(this.up.pid);
  }

  /** kill -9 pf up and every role, as a power cut of the host would. */
  async killAll9(): Promise<void> {
    const pids = [...this.rolePids(), ...(this.up ? [this.up.pid] : [])];
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    if (this.up) await this.up.exited;
    this.up = null;
    await Bun.sleep(200);
  }

  async stop(): Promise<void> {
    for (const p of this.extra) p.kill("SIGKILL");
    this.extra = [];
    const pids = this.rolePids();
    if (this.up) {
      this.up.kill("SIGTERM");
      const done = await Promise.race([this.up.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!done) this.up.kill("SIGKILL");
    }
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // stopped cleanly already
      }
    }
    this.up = null;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Run `pf scli ARGS` against this cluster (session kept in the test dir). */
  async scli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const proc = Bun.spawn([this.bin, "scli", ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, PF_MDM: this.mdmUrl, PF_MDM_CA: this.caFile, PF_SCLI_SESSION_DIR: join(this.dir, "scli"), HOME: this.dir },
    });
    const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code: await proc.exited, stdout, stderr };
  }

  async login(): Promise<void> {
    const r = await this.scli(["--login", "--username", "admin", "--password", "test-admin-pw"]);
    if (r.code !== 0) throw new Error(`scli --login failed: ${r.stderr}${r.stdout}`);
  }

  adminPassword(): string {
    return readFileSync(join(this.dataDir, "mdm", "admin-password"), "utf8").trim();
  }
}

/** All descendants of pid, read from /proc. */
export function childPids(pid: number): number[] {
  const rows: [number, number][] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      rows.push([Number(name), ppid]);
    } catch {
      // process ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of rows) {
      if (pp === p) {
        out.push(c);
        walk(c);
      }
    }
  };
  walk(pid);
  return out;
}
