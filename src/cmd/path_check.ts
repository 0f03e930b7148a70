// Checks on paths before a role uses them: a data dir that exists and is a writable directory,
// or can be created (its nearest existing parent is one); a file (certificate, key, secret) that
// can be read. They create nothing, so a failed check leaves nothing behind.

import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { PfError } from "../proto/errors.ts";
import { errnoFailure, errnoText, isErrnoError } from "./cli_failure.ts";

/** The nearest path at or above `path` that exists (at worst "/"). */
export function nearestExisting(path: string): string {
  let p = resolve(path);
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  return p;
}

function reason(e: unknown): string {
  return isErrnoError(e) ? errnoText(e) : String(e);
}

/** Why `dir` cannot serve as a data dir (`flag` says how to give another), or null. */
export function dataDirProblem(dir: string, flag: string): PfError | null {
  const target = resolve(dir);
  const existing = nearestExisting(target);
  // "data dir /x is not a directory" or "data dir /x/y cannot be created: /x is not a directory"
  const what = existing === target ? `data dir ${target}` : `data dir ${target} cannot be created: ${existing}`;
  let st;
  try {
    st = statSync(existing);
  } catch (e) {
    return new PfError("BAD_REQUEST", `${what} cannot be looked at (${reason(e)}); give another ${flag}`);
  }
  if (!st.isDirectory()) return new PfError("BAD_REQUEST", `${what} is not a directory; give another ${flag}`);
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch (e) {
    return new PfError("BAD_REQUEST", `${what} is not writable (${reason(e)}); give another ${flag}`);
  }
  return null;
}

export function requireDataDir(dir: string, flag: string): void {
  const p = dataDirProblem(dir, flag);
  if (p) throw p;
}

/** Read a file the operator named (`what` says which: "the TLS certificate (mdm.tlsCert)"). */
export function readNamedFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw errnoFailure(e, `read ${what} ${path}`);
  }
}
