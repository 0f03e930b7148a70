// Typed errors shared by every role: one union of codes, and tables from code to HTTP status,
// PowerFlex errorCode, NBD errno and scli exit status. The tables are typed as Record<ErrorCode, …>
// so that adding a code without mapping it everywhere is a compile error.

import { Limits } from "./limits.ts";

export const ErrorCodes = [
  "BAD_REQUEST", // malformed body, wrong types, bad flag combination
  "UNAUTHORIZED", // missing, forged or expired token / wrong cluster secret
  "FORBIDDEN", // a valid user whose role may not do this (REST role check)
  "NOT_FOUND", // unknown id or name
  "ALREADY_EXISTS", // name taken
  "ALREADY_MAPPED", // volume already mapped to this SDC
  "NOT_MAPPED", // volume not mapped to this SDC
  "IN_USE", // object still has children / mappings
  "NO_SPACE", // pool or device out of capacity
  "NOT_ENOUGH_SDS", // placement cannot satisfy the replica rules
  "TOO_BIG", // value over a named limit
  "INVALID_STATE", // operation not allowed in the object's current state
  "STALE_EPOCH", // data-plane request carried an epoch that is not the SDS's own
  "READ_ONLY", // write through a read-only mapping
  "IO_ERROR", // device or peer failure
  "UNAVAILABLE", // peer down / not reachable
  "NOT_LEADER", // a standby MDM was asked what only the active MDM answers (the body names the leader)
  "STALE_TERM", // an MDM answer or order of an older term than the receiver has seen (fencing)
  "INTERNAL", // broken invariant or unexpected failure
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

export class PfError extends Error {
  readonly code: ErrorCode;
  /** PowerFlex return code clients match on (REST body details[0].rc), e.g. 182: too many snapshots */
  readonly rc: number | undefined;
  constructor(code: ErrorCode, message: string, rc?: number) {
    super(message);
    this.code = code;
    this.rc = rc;
    this.name = "PfError";
  }
}

/** PowerFlex return codes pf reports in details[0].rc (Cinder's PowerFlex driver checks 182). */
export const PowerFlexRc = { TOO_MANY_SNAPSHOTS: 182 } as const;

/** Why a device failed, as an SDS's heartbeat reports it (DeviceReport.error): the message, cut to what the report carries. */
export function deviceErrorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, Limits.deviceErrorChars);
}

export function isPfError(e: unknown): e is PfError {
  return e instanceof PfError;
}

/** HTTP status as PowerFlex's gateway answers: MDM rejections are 500, bad auth 401. */
export const httpStatusOf: Record<ErrorCode, 400 | 401 | 403 | 404 | 409 | 413 | 421 | 500 | 503> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 500,
  ALREADY_EXISTS: 500,
  ALREADY_MAPPED: 500,
  NOT_MAPPED: 500,
  IN_USE: 500,
  NO_SPACE: 500,
  NOT_ENOUGH_SDS: 500,
  TOO_BIG: 500,
  INVALID_STATE: 500,
  STALE_EPOCH: 409,
  READ_ONLY: 500,
  IO_ERROR: 500,
  UNAVAILABLE: 503,
  NOT_LEADER: 421, // Misdirected Request: ask the MDM the body names
  STALE_TERM: 409,
  INTERNAL: 500,
};

/** PowerFlex-style numeric errorCode carried in REST error bodies. */
export const powerflexErrorCodeOf: Record<ErrorCode, number> = {
  BAD_REQUEST: 2,
  UNAUTHORIZED: 0,
  FORBIDDEN: 0,
  NOT_FOUND: 79,
  ALREADY_EXISTS: 6,
  ALREADY_MAPPED: 131,
  NOT_MAPPED: 132,
  IN_USE: 140,
  NO_SPACE: 193,
  NOT_ENOUGH_SDS: 194,
  TOO_BIG: 195,
  INVALID_STATE: 141,
  STALE_EPOCH: 300,
  READ_ONLY: 301,
  IO_ERROR: 302,
  UNAVAILABLE: 303,
  NOT_LEADER: 304,
  STALE_TERM: 305,
  INTERNAL: 1,
};

/** NBD errno (nbd.md §2.2) for a failed data-path request. */
export const nbdErrnoOf: Record<ErrorCode, number> = {
  BAD_REQUEST: 22, // EINVAL
  UNAUTHORIZED: 1, // EPERM
  FORBIDDEN: 1,
  NOT_FOUND: 5, // EIO
  ALREADY_EXISTS: 5,
  ALREADY_MAPPED: 5,
  NOT_MAPPED: 1,
  IN_USE: 5,
  NO_SPACE: 28, // ENOSPC
  NOT_ENOUGH_SDS: 5,
  TOO_BIG: 22,
  INVALID_STATE: 5,
  STALE_EPOCH: 5,
  READ_ONLY: 1,
  IO_ERROR: 5,
  UNAVAILABLE: 5,
  NOT_LEADER: 5,
  STALE_TERM: 5,
  INTERNAL: 5,
};

/** scli exit status; 7 for "not found" as PowerFlex scripts expect. */
export const exitStatusOf: Record<ErrorCode, number> = {
  BAD_REQUEST: 2,
  UNAUTHORIZED: 3,
  FORBIDDEN: 3,
  NOT_FOUND: 7,
  ALREADY_EXISTS: 4,
  ALREADY_MAPPED: 4,
  NOT_MAPPED: 4,
  IN_USE: 4,
  NO_SPACE: 5,
  NOT_ENOUGH_SDS: 5,
  TOO_BIG: 2,
  INVALID_STATE: 4,
  STALE_EPOCH: 6,
  READ_ONLY: 4,
  IO_ERROR: 6,
  UNAVAILABLE: 6,
  NOT_LEADER: 6,
  STALE_TERM: 6,
  INTERNAL: 1,
};

/** A broken invariant: fail loudly, never continue with corrupt state. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant broken: ${message}`);
}
