// How a pf subcommand fails: one line on stderr ("pf up: cannot read cluster file x.yaml: no such
// file or directory") and the exit status of its kind (exitStatusOf, the README's table). This is
// the one error handler of the pf edge; nothing below src/cmd prints an error for the operator.
//
// Expected failures are PfErrors, errno errors from node:fs / node:net (ENOENT, EACCES,
// EADDRINUSE…, given a kind here) and citty's flag errors: never a stack trace, never a source
// excerpt. A broken invariant (assert in src/proto/errors.ts) is a bug: its message and stack are
// printed loudly. `--debug` or PF_DEBUG=1 adds the stack to every failure, for developers.

import { PfError, exitStatusOf, isPfError, type ErrorCode } from "../proto/errors.ts";

/** What the operator sees of a failure, and how the process ends. */
export interface Failure {
  code: ErrorCode;
  message: string;
  /** a broken invariant: print the stack even without --debug */
  invariant: boolean;
  stack: string | null;
}

/** errno code -> kind of failure; the codes an operator's mistake or environment can cause. */
const ERRNO_KINDS: Record<string, ErrorCode> = {
  ENOENT: "NOT_FOUND",
  ENOTDIR: "BAD_REQUEST",
  EISDIR: "BAD_REQUEST",
  EACCES: "BAD_REQUEST",
  EPERM: "BAD_REQUEST",
  EROFS: "BAD_REQUEST",
  EEXIST: "ALREADY_EXISTS",
  ENAMETOOLONG: "BAD_REQUEST",
  ELOOP: "BAD_REQUEST",
  EINVAL: "BAD_REQUEST",
  EADDRNOTAVAIL: "BAD_REQUEST",
  EADDRINUSE: "IN_USE",
  EBUSY: "IN_USE",
  ENOSPC: "NO_SPACE",
  EDQUOT: "NO_SPACE",
  EFBIG: "TOO_BIG",
  EIO: "IO_ERROR",
  ECONNREFUSED: "UNAVAILABLE",
  ECONNRESET: "UNAVAILABLE",
  EHOSTUNREACH: "UNAVAILABLE",
  ENETUNREACH: "UNAVAILABLE",
  ETIMEDOUT: "UNAVAILABLE",
};

/** Short strerror texts, for messages built from an errno code alone. */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  EEXIST: "already exists",
  ENOSPC: "no space left on device",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this host",
};

export interface ErrnoError extends Error {
  code: string;
  syscall?: string;
  path?: string;
}

export function isErrnoError(e: unknown): e is ErrnoError {
  if (!(e instanceof Error)) return false;
  const code: unknown = (e as Error & { code?: unknown }).code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

/** "no such file or directory" from "ENOENT: no such file or directory, open 'x'" (or the code's text). */
export function errnoText(e: ErrnoError): string {
  const known = ERRNO_TEXT[e.code];
  if (known !== undefined) return known;
  const m = /^[A-Z0-9]+: ([^,]+)/.exec(e.message);
  return m ? m[1]!.trim() : e.message;
}

/** The kind of an errno error (INTERNAL for a code no operator action explains). */
export function errnoKind(e: ErrnoError): ErrorCode {
  return ERRNO_KINDS[e.code] ?? "INTERNAL";
}

/** A PfError for "cannot <what>: <errno text>", of the errno's kind. */
export function errnoFailure(e: unknown, what: string, fix = ""): PfError {
  if (isPfError(e)) return e;
  if (isErrnoError(e)) return new PfError(errnoKind(e), `cannot ${what}: ${errnoText(e)}${fix ? `; ${fix}` : ""}`);
  return new PfError("INTERNAL", `cannot ${what}: ${e instanceof Error ? e.message : String(e)}`);
}

/** Any thrown value -> what the operator sees. */
export function failureOf(e: unknown): Failure {
  const stack = e instanceof Error && e.stack ? e.stack : null;
  if (isPfError(e)) return { code: e.code, message: e.message, invariant: false, stack };
  if (e instanceof Error && e.name === "CLIError") return { code: "BAD_REQUEST", message: stripAnsi(e.message), invariant: false, stack };
  if (isErrnoError(e)) {
    const where = [e.syscall, e.path].filter((x) => x !== undefined).join(" ");
    return { code: errnoKind(e), message: `${where ? `${where}: ` : ""}${errnoText(e)}`, invariant: false, stack };
  }
  if (e instanceof Error && e.message.startsWith("invariant broken:")) return { code: "INTERNAL", message: e.message, invariant: true, stack };
  const text = e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e);
  return { code: "INTERNAL", message: `internal error: ${text} (run again with --debug for the stack)`, invariant: false, stack };
}

export function stripAnsi(s: string): string {
  return s.replace(/\u001b\[[0-9;]*m/g, "");
}

/** Collapse a multi-line message into one line. */
export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ").trim();
}

/** True when the developer asked for stacks (--debug, taken off argv by main.ts, or PF_DEBUG=1). */
export function debugWanted(): boolean {
  const v = process.env.PF_DEBUG;
  return v !== undefined && v !== "" && v !== "0" && v !== "false";
}

/** What goes to stderr for a failure: its one line, then the stack for an invariant or with --debug. */
export function failureText(prefix: string, f: Failure, debug: boolean): string {
  let text = `${prefix}: ${oneLine(f.message)}\n`;
  if ((f.invariant || debug) && f.stack) text += `${f.stack}\n`;
  return text;
}

/** Print the failure on stderr; returns the exit status of its kind. */
export function reportFailure(prefix: string, e: unknown): number {
  const f = failureOf(e);
  process.stderr.write(failureText(prefix, f, debugWanted()));
  return exitStatusOf[f.code];
}
