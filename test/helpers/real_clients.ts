// Helpers to drive real NBD clients (fio, qemu-io, qemu-img, nbdinfo, nbdsh, nbdcopy) from bun
// tests: every run has a timeout, and a failure message carries the command line, exit status and
// both output streams. A missing tool is a test failure (never a skip), with the install command.
//
// Shared with the end-to-end suites: keep these small and stable.

import { spawnSync } from "node:child_process";

export const INSTALL_HINT = "apt-get update && apt-get install -y fio qemu-utils libnbd-bin nbdkit python3-libnbd";
/** nbdsh through the system python: the wrapper may pick up a pyenv python without the nbd module */
export const NBDSH = ["/usr/bin/python3", "-m", "nbd"] as const;
export const DEFAULT_TOOL_TIMEOUT_MS = 120_000;

export interface RunResult {
  cmd: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  timeoutMs?: number;
  /** bytes or text for stdin */
  input?: string | Uint8Array;
  cwd?: string;
  /** variables added to the environment (e.g. HOME for libnbd's default certificate dirs) */
  env?: Record<string, string>;
}

export class ToolError extends Error {
  constructor(
    readonly result: RunResult,
    what: string,
  ) {
    super(`${what}\n${describe(result)}`);
    this.name = "ToolError";
  }
}

function quote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}

export function describe(r: RunResult): string {
  const tail = (s: string) => (s.length > 4000 ? `…${s.slice(-4000)}` : s);
  return [
    `$ ${r.cmd.map(quote).join(" ")}`,
    `exit ${r.exitCode}${r.timedOut ? " (killed: timeout)" : ""}`,
    `--- stdout ---\n${tail(r.stdout)}`,
    `--- stderr ---\n${tail(r.stderr)}`,
  ].join("\n");
}

const toolChecked = new Set<string>();

/** Throws (fails the test) when a tool is missing; `nbdsh` means the python3 nbd module. */
export function requireTool(name: string): void {
  if (toolChecked.has(name)) return;
  if (name === "nbdsh") {
    const r = spawnSync(NBDSH[0], ["-c", "import nbd"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`python3 module nbd (nbdsh) is missing: ${INSTALL_HINT}\n${r.stderr ?? ""}`);
  } else if (Bun.which(name) === null) {
    throw new Error(`required tool "${name}" is not installed: ${INSTALL_HINT}`);
  }
  toolChecked.add(name);
}

/** Run a command to completion (or timeout); never throws on a non-zero exit. */
export async function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const proc = Bun.spawn(cmd, {
    stdin: opts.input === undefined ? "ignore" : "pipe",
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd,
    env: opts.env === undefined ? undefined : { ...process.env, ...opts.env },
  });
  if (opts.input !== undefined && proc.stdin) {
    proc.stdin.write(opts.input);
    await proc.stdin.end();
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { cmd, exitCode, stdout, stderr, timedOut };
}

/** Run and require exit status 0. */
export async function runOk(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const first = cmd[0];
  if (first !== undefined && first !== NBDSH[0]) requireTool(first);
  const r = await run(cmd, opts);
  if (r.exitCode !== 0 || r.timedOut) throw new ToolError(r, `${first} failed`);
  return r;
}

/** nbd://127.0.0.1:PORT/NAME (NAME may be empty: the default export). */
export function nbdUri(port: number, exportName = "", host = "127.0.0.1"): string {
  return `nbd://${host}:${port}/${encodeURIComponent(exportName)}`;
}

/**
 * qemu-io on a raw NBD image with one `-c` per command; exit status 0 required unless
 * `expectFailure` (then the result is returned for the caller to inspect).
 */
export async function runQemuIo(
  uri: string,
  cmds: string[],
  opts: RunOptions & { readOnly?: boolean; expectFailure?: boolean } = {},
): Promise<RunResult> {
  requireTool("qemu-io");
  const cmd = ["qemu-io", "-f", "raw", ...(opts.readOnly ? ["-r"] : [])];
  for (const c of cmds) cmd.push("-c", c);
  cmd.push(uri);
  const r = await run(cmd, opts);
  // qemu-io reports some command failures on stdout with exit 0 (e.g. pattern mismatch in aio);
  // treat any "failed" line as a failure too.
  const failed = r.exitCode !== 0 || r.timedOut || /failed/i.test(r.stdout + r.stderr);
  if (opts.expectFailure) return r;
  if (failed) throw new ToolError(r, "qemu-io failed");
  return r;
}

/** qemu-img with the given arguments; exit status 0 required. */
export async function runQemuImg(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runOk(["qemu-img", ...args], opts);
}

export interface FioResult extends RunResult {
  /** parsed --output-format=json output */
  json: FioJson;
}
export interface FioJobStats {
  jobname: string;
  error: number;
  read: { iops: number; bw_bytes: number; io_bytes: number };
  write: { iops: number; bw_bytes: number; io_bytes: number };
  trim: { iops: number; bw_bytes: number; io_bytes: number };
}
export interface FioJson {
  jobs: FioJobStats[];
}

/**
 * fio with `args` (e.g. ["--name=v", "--ioengine=nbd", `--uri=${uri}`, ...]); adds
 * --output-format=json, requires exit 0 and no job error, returns the parsed report.
 */
export async function runFio(args: string[], opts: RunOptions = {}): Promise<FioResult> {
  requireTool("fio");
  const cmd = ["fio", ...args, "--output-format=json"];
  const r = await run(cmd, opts);
  if (r.exitCode !== 0 || r.timedOut) throw new ToolError(r, "fio failed");
  let json: FioJson;
  try {
    // fio may print warnings before the JSON document
    json = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as FioJson;
  } catch (e) {
    throw new ToolError(r, `fio output is not JSON: ${String(e)}`);
  }
  for (const j of json.jobs) if (j.error !== 0) throw new ToolError(r, `fio job ${j.jobname} error ${j.error}`);
  return { ...r, json };
}

/** Sum of IOPS over fio's jobs (read + write + trim). */
export function fioIops(f: FioResult): number {
  return f.json.jobs.reduce((s, j) => s + j.read.iops + j.write.iops + j.trim.iops, 0);
}

export interface NbdinfoExport {
  "export-name": string;
  "export-size": number;
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_multi_conn: boolean;
  can_df?: boolean;
  can_cache?: boolean;
  description?: string;
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
}
export interface NbdinfoJson {
  protocol: string;
  structured?: boolean;
  exports: NbdinfoExport[];
}

/** `nbdinfo --json URI` (add "--list" in extraArgs for every export), parsed. */
export async function nbdinfoJson(uri: string, extraArgs: string[] = []): Promise<NbdinfoJson> {
  const r = await runOk(["nbdinfo", "--json", ...extraArgs, uri]);
  try {
    return JSON.parse(r.stdout) as NbdinfoJson;
  } catch (e) {
    throw new ToolError(r, `nbdinfo output is not JSON: ${String(e)}`);
  }
}

/**
 * nbdsh (python libnbd) running `script` with a fresh handle `h` (not connected: call
 * h.connect_uri(...) in the script, or pass `uri` to connect first). stdout is returned.
 */
export async function runNbdsh(script: string, opts: RunOptions & { uri?: string } = {}): Promise<RunResult> {
  requireTool("nbdsh");
  const cmd: string[] = [...NBDSH];
  if (opts.uri !== undefined) cmd.push("-u", opts.uri);
  cmd.push("-c", script);
  const r = await run(cmd, opts);
  if (r.exitCode !== 0 || r.timedOut) throw new ToolError(r, "nbdsh failed");
  return r;
}

/** nbdcopy with the given arguments; exit status 0 required. */
export async function runNbdcopy(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runOk(["nbdcopy", ...args], opts);
}
