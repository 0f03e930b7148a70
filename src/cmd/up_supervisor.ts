// Child processes of `pf up`: one per role, the same executable re-run with the role's
// subcommand. Reports a role that dies (with its exit code or signal) and stops every role,
// SIGTERM first and SIGKILL after a grace period, on shutdown.

import { consola } from "consola";
import type { Subprocess } from "bun";

const STOP_GRACE_MS = 5000;

/** argv prefix that re-runs this program: the compiled binary, or bun + the entry script. */
export function selfCommand(): string[] {
  const main = Bun.main;
  const compiled = main.startsWith("/$bunfs/") || main.startsWith("B:/~BUN/");
  return compiled ? [process.execPath] : [process.execPath, main];
}

interface Role {
  label: string;
  proc: Subprocess;
  exited: string | null;
}

export class RoleSupervisor {
  private roles: Role[] = [];
  private stopping = false;

  constructor(private readonly opts: { env: Record<string, string> }) {}

  start(label: string, args: string[], extraEnv: Record<string, string> = {}): void {
    const proc = Bun.spawn([...selfCommand(), ...args], {
      env: { ...process.env, ...this.opts.env, ...extraEnv },
      stdin: "ignore",
      stdout: "inherit",
      stderr: "inherit",
    });
    const role: Role = { label, proc, exited: null };
    this.roles.push(role);
    consola.info(`pf up: started ${label} (pid ${proc.pid})`);
    void proc.exited.then((code) => {
      role.exited = proc.signalCode ? `signal ${proc.signalCode}` : `exit code ${code}`;
      if (!this.stopping) consola.error(`pf up: ${label} (pid ${proc.pid}) died: ${role.exited}`);
    });
  }

  /** A description of the first role that died, or null when all are running. */
  failed(): string | null {
    const r = this.roles.find((x) => x.exited !== null);
    return r ? `${r.label} exited during start-up (${r.exited})` : null;
  }

  /** Keep the process alive while roles run; reports deaths (see start). */
  watch(): void {
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
    // SDCs first, then SDSs, then the MDM: clients stop before the servers they use.
    const order = [...this.roles].reverse();
    for (const r of order) if (r.exited === null) r.proc.kill("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    for (const r of order) {
      const left = deadline - Date.now();
      const done = await Promise.race([r.proc.exited.then(() => true), Bun.sleep(Math.max(0, left)).then(() => false)]);
      if (!done) {
        consola.warn(`pf up: ${r.label} (pid ${r.proc.pid}) ignored SIGTERM; killing`);
        r.proc.kill("SIGKILL");
        await r.proc.exited;
      }
    }
  }
}
