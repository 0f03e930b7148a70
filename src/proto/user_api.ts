// REST types of users and the audit log, PowerFlex names where PowerFlex has them (goscaleio
// types.User, UserParam, UserRoleParam): the body schemas the MDM validates and the answer
// shapes scli reads. The audit log is a pf extension (/api/pf/audit).

import { z } from "zod";
import { looseInt } from "./powerflex_api.ts";

const optional = <T extends z.ZodType>(t: T) => t.nullish().transform((v) => (v === null ? undefined : v));

/** POST /api/types/User/instances */
export const CreateUser = z.object({
  name: z.string().min(1).max(64),
  userRole: z.string().min(1).max(32),
  /** absent: the MDM generates a one-time password (answered once) that must be changed */
  password: optional(z.string().max(256)),
});

/** POST /api/instances/User::{id}/action/setUserRole */
export const SetUserRole = z.object({ userRole: z.string().min(1).max(32) });

/** POST /api/instances/User::{id}/action/resetPassword (absent: generated, answered once) */
export const ResetPassword = z.object({ password: optional(z.string().max(256)) });

/** POST /api/instances/User::{id}/action/setPassword: the caller's own, proven by the old one */
export const SetPassword = z.object({ oldPassword: z.string().min(1).max(256), newPassword: z.string().min(1).max(256) });

/** The User object (GET /api/instances/User::{id}, /api/types/User/instances) */
export const UserObject = z.object({
  id: z.string(),
  name: z.string(),
  userRole: z.string(),
  passwordChangeRequired: z.boolean(),
  systemId: z.string(),
  links: z.array(z.object({ rel: z.string(), href: z.string() })),
});
export type UserObject = z.infer<typeof UserObject>;

/** The answer of a create or reset: the id, and the generated password when one was made */
export const UserCreated = z.object({ id: z.string(), password: z.string().optional() });

export const AuditKinds = ["rest", "login", "logout", "refused", "dataplane"] as const;

/** GET /api/pf/audit?afterSeq=&untilSeq=&actor=&kind=&limit=&order= */
export const AuditQueryParams = z.object({
  afterSeq: optional(looseInt.pipe(z.number().min(0))),
  untilSeq: optional(looseInt.pipe(z.number().min(0))),
  actor: optional(z.string().max(256)),
  kind: optional(z.enum(AuditKinds)),
  limit: optional(looseInt.pipe(z.number().min(1).max(10_000))),
  order: optional(z.enum(["newest", "oldest"])),
});

export const AuditRecord = z.object({
  seq: z.number(),
  tsMs: z.number(),
  kind: z.string(),
  actor: z.string(),
  role: z.string(),
  src: z.string(),
  method: z.string(),
  path: z.string(),
  objectType: z.string(),
  objectId: z.string(),
  action: z.string(),
  params: z.string(),
  result: z.string(),
  status: z.number(),
  detail: z.string(),
  durationMs: z.number(),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditRecord = z.infer<typeof AuditRecord>;

export const AuditVerifyAnswer = z.object({
  ok: z.boolean(),
  records: z.number(),
  firstSeq: z.number(),
  lastSeq: z.number(),
  pruned: z.number(),
  problems: z.array(z.object({ seq: z.number(), problem: z.string() })),
});
