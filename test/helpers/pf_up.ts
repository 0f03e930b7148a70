// Test harness for `pf up` run as an operator runs it (the compiled dist/pf): start it on one host
// of a cluster file with its output collected, wait for a line, and kill every process it started
// (its roles too, by PID) whatever the outcome.

import type { Subprocess } from "bun";
import { childPids, PF_BIN } from "./cluster.ts";

export interface RunningUp {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** everything pf up wrote so far (stdout and stderr) */
  out: () => string;
}

/** pf up FILE --data-dir DIR [--host NAME]; remember it in procs for killUps. */
export function startUp(procs: Subprocess[], file: string, dataDir: string, opts: { host?: string; env?: Record<string, string> } = {}): RunningUp {
  const argv = [PF_BIN, "up", file, "--data-dir", dataDir, ...(opts.host ? ["--host", opts.host] : [])];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, CONSOLA_LEVEL: "3", ...opts.env } });
  procs.push(proc);
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += dec.decode(c);
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  return { proc, out: () => text };
}

/** Wait until pf up's output matches re; fails (with the output) if it exits or the time runs out. */
export async function waitOut(up: RunningUp, re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = up.out().match(re);
    if (m) return m;
    if (up.proc.exitCode !== null) throw new Error(`pf up exited ${up.proc.exitCode}:\n${up.out()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${up.out()}`);
    await Bun.sleep(100);
  }
}

/** SIGKILL every pf up and every process under it, by PID. */
export function killUps(procs: Subprocess[]): void {
  for (const p of procs) {
    for (const pid of [...childPids(p.pid), p.pid]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}
