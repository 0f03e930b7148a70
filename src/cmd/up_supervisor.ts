// Child processes of `pf up`: one per role, the same executable re-run with the role's
// subcommand. Their output passes through pf up (role_log.ts keeps the last lines). A role that
// dies is reported with its exit code or signal and its last log lines; during start-up it
// becomes pf up's failure (failure()), with the kind of the role's own exit status. stopAll
// stops every role, SIGTERM first and SIGKILL after a grace period.

import { consola } from "consola";
import type { Subprocess } from "bun";
import { PfError, exitStatusOf, ErrorCodes, type ErrorCode } from "../proto/errors.ts";
import { RoleLog } from "./role_log.ts";

const STOP_GRACE_MS = 5000;

/**
 * Allocator settings of the data-path roles, SDS and SDC (an operator's own value in pf up's
 * environment wins). The MDM keeps the default: a peak (full lists at a cold start) goes back.
 * Bun hands each socket `data` event a fresh Buffer (up to 512 KiB) and its allocator
 * (mimalloc) gives the pages of freed ones back to the kernel 10 ms after they are free; the
 * next Buffers then page-fault fresh zeroed pages in (exc_page_fault, clear_page, memcg charge,
 * munmap: ~10 % of each role's CPU on 1 MiB writes, more with the zeroing's cache misses).
 * Never purging makes a stream of large writes reuse them: bench/ab.ts seq (1 MiB QD8) -22..25 %
 * CPU per IO in the SDC and both SDSs, +32 % MB/s; a 1 s delay kept only part of it and
 * MADV_FREE (PURGE_DECOMMITS=0) less (docs/design.md "1 MiB writes"). The price: a role keeps
 * the peak of its heap instead of giving it back (+30-65 MiB resident after 1 MiB writes).
 */
export const ROLE_ALLOCATOR_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: "-1" };
const REPORT_LINES = 5; // last log lines shown when a role dies

/** argv prefix that re-runs this program: the compiled binary, or bun + the entry script. */
export function selfCommand(): string[] {
  const main = Bun.main;
  const compiled = main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/");
  return compiled ? [process.execPath] : [process.execPath, main];
}

interface Role {
  label: string;
  /** the subcommand: "mdm", "sds", "sdc" */
  command: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  log: RoleLog;
  exitCode: number | null;
  exited: string | null;
  /** both output streams drained */
  drained: Promise<void>;
}

/** The kind of failure a role's exit status stands for (exitStatusOf read backwards). */
function codeOfExitStatus(status: number | null): ErrorCode {
  if (status === null) return "UNAVAILABLE"; // killed by a signal
  const code = ErrorCodes.find((c) => exitStatusOf[c] === status);
  return code ?? "UNAVAILABLE";
}

export class RoleSupervisor {
  private roles: Role[] = [];
  /** roles started by startProgram: stopped after every pf role */
  private readonly programs = new Set<Role>();
  private stopping = false;
  private startedUp = false;
  private startFailure: PfError | null = null;

  constructor(private readonly opts: { env: Record<string, string> }) {}

  /** Start a pf role: this program re-run with the role's subcommand (args[0]). */
  start(label: string, args: string[], extraEnv: Record<string, string> = {}): void {
    const role = args[0] ?? "";
    this.spawnRole(label, role, [...selfCommand(), ...args], extraEnv, role === "sds" || role === "sdc" ? ROLE_ALLOCATOR_ENV : {});
  }

  /** Start another program as a role (the embedded etcd member): supervised and stopped alike. */
  startProgram(label: string, argv: string[]): void {
    this.programs.add(this.spawnRole(label, label, argv, {}, {}));
  }

  /** `defaults`: environment the role gets unless pf up's own environment sets those keys */
  private spawnRole(label: string, command: string, argv: string[], extraEnv: Record<string, string>, defaults: Readonly<Record<string, string>>): Role {
    const proc = Bun.spawn(argv, {
      env: { ...defaults, ...process.env, ...this.opts.env, ...extraEnv },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const log = new RoleLog();
    const role: Role = { label, command, proc, log, exitCode: null, exited: null, drained: Promise.resolve() };
    role.drained = Promise.all([pump(proc.stdout, log, process.stdout), pump(proc.stderr, log, process.stderr)]).then(() => undefined);
    this.roles.push(role);
    consola.info(`pf up: started ${label} (pid ${proc.pid})`);
    void proc.exited.then(async (code) => {
      await role.drained;
      role.exitCode = proc.signalCode ? null : code;
      role.exited = proc.signalCode ? `signal ${proc.signalCode}` : `exit code ${code}`;
      if (!this.stopping && this.startedUp) this.reportDeath(role);
    });
    return role;
  }

  private reportDeath(r: Role): void {
    const lines = r.log.last(REPORT_LINES);
    const tail = lines.length > 0 ? `; its last log lines:\n${lines.map((l) => `    ${l}`).join("\n")}` : "; it wrote no log lines";
    consola.error(`pf up: ${r.label} (pid ${r.proc.pid}) died: ${r.exited}${tail}`);
  }

  /** The first role that died during start-up, as pf up's failure; null while all run. */
  failure(): PfError | null {
    if (this.startFailure) return this.startFailure;
    const r = this.roles.find((x) => x.exited !== null);
    if (!r) return null;
    const why = r.log.failureLine(r.command);
    const lines = r.log.last(REPORT_LINES);
    // the failure line alone is already in pf up's own line below
    if (lines.length > 1) consola.error(`pf up: last log lines of ${r.label}:\n${lines.map((l) => `    ${l}`).join("\n")}`);
    this.startFailure = new PfError(codeOfExitStatus(r.exitCode), `${r.label} (pid ${r.proc.pid}) failed during start-up (${r.exited})${why ? `: ${why}` : ""}`);
    return this.startFailure;
  }

  /** Labels of the roles started so far. */
  labels(): string[] {
    return this.roles.map((r) => r.label);
  }

  /** Start-up is over: from now on a role that dies is reported as it happens. */
  watch(): void {
    this.startedUp = true;
    for (const r of this.roles) if (r.exited !== null && !this.stopping) this.reportDeath(r);
    const timer = setInterval(() => {
      if (this.roles.length > 0 && this.roles.every((r) => r.exited !== null)) {
        consola.error("pf up: every role has stopped; exiting");
        clearInterval(timer);
        process.exit(1);
      }
    }, 1000);
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    // SDCs first, then SDSs, then the MDM: clients stop before the servers they use. A program
    // started by startProgram (etcd) only once those have exited: the MDM revokes its etcd lease
    // as it stops (its standbys take over at once instead of after the lease's TTL).
    const pf = this.roles.filter((r) => !this.programs.has(r));
    await this.stopRoles([...pf].reverse());
    await this.stopRoles(this.roles.filter((r) => this.programs.has(r)).reverse());
  }

  private async stopRoles(order: Role[]): Promise<void> {
    for (const r of order) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    for (const r of order) {
      const left = deadline - Date.now();
      const done = await Promise.race([r.proc.exited.then(() => true), Bun.sleep(Math.max(0, left)).then(() => false)]);
      if (!done) {
        consola.warn(`pf up: ${r.label} (pid ${r.proc.pid}) ignored SIGTERM; killing`);
        r.proc.kill("SIGKILL");
        await r.proc.exited;
      }
      await r.drained;
    }
  }
}

/** Copy a role's stream to ours as it comes, keeping its lines in the role's log. */
async function pump(stream: ReadableStream<Uint8Array>, log: RoleLog, to: NodeJS.WriteStream): Promise<void> {
  const dec = new TextDecoder();
  for await (const chunk of stream) {
    to.write(chunk);
    log.add(dec.decode(chunk, { stream: true }));
  }
}
