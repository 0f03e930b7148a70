// The output of one role under `pf up`: passed through to pf up's own stdout/stderr as it
// comes, and its last lines kept (a bounded ring) so that pf up can say why a role died.

/** Lines kept per role for failure reports. */
export const ROLE_LOG_LINES = 20;
const MAX_LINE_CHARS = 2000; // a runaway line is cut, not kept whole

export class RoleLog {
  private readonly lines: string[] = [];
  private partial = "";

  /** Add a chunk of output (any split across lines). */
  add(text: string): void {
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop()!.slice(0, MAX_LINE_CHARS);
    for (const p of parts) this.push(p);
  }

  private push(line: string): void {
    const clean = line.replace(/\r$/, "");
    if (clean.trim() === "") return;
    this.lines.push(clean.slice(0, MAX_LINE_CHARS));
    if (this.lines.length > ROLE_LOG_LINES) this.lines.shift();
  }

  /** The last `n` lines (the unfinished one included). */
  last(n: number): string[] {
    const all = this.partial.trim() === "" ? this.lines : [...this.lines, this.partial];
    return all.slice(-n);
  }

  /**
   * The role's own failure line ("pf sds: device … cannot be created") without its prefix, found
   * from the end (a broken invariant's stack comes after it); null when the role wrote none (it
   * was killed, or crashed before it could say why).
   */
  failureLine(role: string): string | null {
    const all = this.last(ROLE_LOG_LINES);
    const prefix = `pf ${role}: `;
    for (let i = all.length - 1; i >= 0; i--) if (all[i]!.startsWith(prefix)) return all[i]!.slice(prefix.length);
    return null;
  }
}
