// The login sessions scli keeps between calls: ~/.pf/scli-session.json (or
// $PF_SCLI_SESSION_DIR/scli-session.json), one entry per MDM URL (its origin).
// Invariants: the directory is created 0700 and the file is written 0600 through a temp file
// and rename, so a token is never readable by others, not even for a moment, and a crash
// mid-write leaves the old file whole. A file that is not valid JSON of the right shape is an
// error naming the file, never silently overwritten.

import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { ScliError } from "./scli_errors.ts";

export const SESSION_FILE_NAME = "scli-session.json";

const Session = z.object({
  token: z.string().min(1),
  username: z.string(),
  systemId: z.string(),
  loggedInAtMs: z.number(),
});
export type Session = z.infer<typeof Session>;

const SessionFile = z.object({ version: z.literal(1), sessions: z.record(z.string(), Session) });
type SessionFile = z.infer<typeof SessionFile>;

export function sessionDirOf(env: Readonly<Record<string, string | undefined>>): string {
  const override = env.PF_SCLI_SESSION_DIR;
  if (override) return override;
  return join(env.HOME || homedir(), ".pf");
}

export class SessionStore {
  readonly file: string;

  constructor(private readonly dir: string) {
    this.file = join(dir, SESSION_FILE_NAME);
  }

  get(mdmUrl: string): Session | undefined {
    return this.read().sessions[mdmUrl];
  }

  put(mdmUrl: string, session: Session): void {
    const f = this.read();
    f.sessions[mdmUrl] = session;
    this.write(f);
  }

  /** Remove the session of one MDM; removes the file when no session is left. Returns the removed one. */
  remove(mdmUrl: string): Session | undefined {
    const f = this.read();
    const old = f.sessions[mdmUrl];
    if (old === undefined) return undefined;
    delete f.sessions[mdmUrl];
    if (Object.keys(f.sessions).length === 0) rmSync(this.file, { force: true });
    else this.write(f);
    return old;
  }

  private read(): SessionFile {
    if (!existsSync(this.file)) return { version: 1, sessions: {} };
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(this.file, "utf8"));
    } catch (e) {
      throw new ScliError("INTERNAL", `session file ${this.file} is unreadable (${(e as Error).message}); remove it and log in again`);
    }
    const parsed = SessionFile.safeParse(json);
    if (!parsed.success) throw new ScliError("INTERNAL", `session file ${this.file} has an unexpected shape; remove it and log in again`);
    return parsed.data;
  }

  private write(f: SessionFile): void {
    if (!existsSync(this.dir)) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      chmodSync(this.dir, 0o700); // mkdir's mode is filtered by the umask
    }
    const tmp = `${this.file}.${process.pid}.tmp`;
    rmSync(tmp, { force: true }); // a leftover could carry a looser mode: create afresh
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(f, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.file);
  }
}
