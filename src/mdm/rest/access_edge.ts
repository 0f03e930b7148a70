// The two middlewares of the REST API around its routes:
// - auditEdge (outermost): after the answer is made, records the call in the audit log when
//   route_access.isAudited says so (who, from where, what, result, duration), before the leader
//   gate commits (app.ts), so the record and the change become durable together;
// - tokenEdge (after login and version): the token names a principal; the route's access class
//   must be granted to its role (core/roles.ts), else FORBIDDEN; a user whose password must be
//   changed may only use "self" routes.
// A synchronous change (volume create, map, unmap) writes its success record itself, in the
// change's own sqlite transaction (auditedChange): one durable commit, one WAL fsync, per call
// instead of two; a call that fails is recorded by auditEdge after the answer as before.
// Secrets never reach a record: bodies pass through audit.redact, headers are not recorded, and
// the answer is read only for the id of a create.

import consola from "consola";
import type { Context, Next } from "hono";
import { assert, PfError } from "../../proto/errors.ts";
import { appendAudit, type AuditEvent, type AuditResult } from "../core/audit.ts";
import type { Principal } from "../core/auth.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { basicCredentials } from "../core/http_edge.ts";
import { roleMay } from "../core/roles.ts";
import { bodyForAudit, classOf, handlerRouteKey, isAudited, objectOfPath, sourceOf, type RouteClass } from "./route_access.ts";

export type AccessVars = { Variables: { user: string; principal: Principal; token: string; loginUser: string; cls: RouteClass; audited: boolean; auditT0: number } };

function resultOf(status: number): AuditResult {
  if (status < 400) return "ok";
  if (status === 401 || status === 403) return "refused";
  return "failed";
}

async function createdId(c: Context, routeKey: string | null): Promise<string> {
  if (routeKey !== "POST /types/:type/instances" || c.res.status !== 200) return "";
  try {
    const answer: unknown = await c.res.clone().json();
    if (typeof answer === "object" && answer !== null && "id" in answer && typeof answer.id === "string") return answer.id;
  } catch (e) {
    consola.debug(`mdm: audit: create answer without an id: ${(e as Error).message}`);
  }
  return "";
}

async function errorDetail(c: Context): Promise<string> {
  if (c.res.status < 400) return "";
  try {
    const body: unknown = await c.res.clone().json();
    if (typeof body === "object" && body !== null && "message" in body && typeof body.message === "string") return body.message;
  } catch (e) {
    consola.debug(`mdm: audit: error answer not JSON: ${(e as Error).message}`);
  }
  return `HTTP ${c.res.status}`;
}

export function auditEdge(ctx: MdmContext) {
  return async (c: Context<AccessVars>, next: Next): Promise<void> => {
    const t0 = performance.now();
    c.set("auditT0", t0);
    await next();
    if (c.get("audited") === true) return;
    await writeAudit(ctx, c, c.res.status, t0);
  };
}

/**
 * Write the request's audit record now, with the status it will answer, instead of after the
 * handler: for a handler after which this MDM can no longer write (changeMdmOwnership resigns).
 */
export async function auditBeforeAnswer(ctx: MdmContext, c: Context, status: number, t0: number, detail = ""): Promise<void> {
  c.set("audited", true);
  await writeAudit(ctx, c as Context<AccessVars>, status, t0, detail);
}

/** The record's fields that the request names (who, from where, what). */
function eventOf(c: Context<AccessVars>, routeKey: string | null, status: number): Omit<AuditEvent, "result" | "status" | "durationMs"> & { objectId: string } {
  const p = c.get("principal");
  const isLogin = routeKey === "GET /login" || routeKey === "POST /login";
  const obj = objectOfPath(c.req.path);
  return {
    kind: isLogin ? "login" : routeKey?.endsWith("/logout") ? "logout" : status === 403 ? "refused" : "rest",
    actor: p?.userName ?? c.get("loginUser") ?? "",
    role: p?.role ?? "",
    src: sourceOf(c),
    method: c.req.method,
    path: c.req.path,
    objectType: obj.objectType,
    objectId: obj.objectId,
    action: obj.action,
  };
}

async function writeAudit(ctx: MdmContext, c: Context<AccessVars>, status: number, t0: number, detail?: string): Promise<void> {
  const routeKey = handlerRouteKey(c);
  if (!isAudited(c.req.method, c.get("cls") ?? null, status, routeKey)) return;
  const isLogin = routeKey === "GET /login" || routeKey === "POST /login";
  const e = eventOf(c, routeKey, status);
  try {
    appendAudit(ctx, {
      ...e,
      objectId: e.objectId || (await createdId(c, routeKey)),
      params: isLogin ? undefined : await bodyForAudit(c),
      result: resultOf(status),
      status,
      detail: detail ?? (status < 400 ? "" : await errorDetail(c)),
      durationMs: performance.now() - t0,
    });
  } catch (e) {
    consola.error(`mdm: audit record of ${c.req.method} ${c.req.path} not written: ${(e as Error).message}`);
  }
}

/**
 * Run a synchronous change (fn: its own transactions nest as savepoints) and append its success
 * record (status 200, as the handler then answers) in the same sqlite transaction, so the change
 * and its record are one durable commit: one WAL fsync per call instead of two (a create at
 * 100,000 volumes paid ~1 ms of event loop for the second). If fn throws, the transaction rolls
 * back with no record, and auditEdge records the failure after the answer as for every call.
 * The record is the one auditEdge would have written (body from Hono's cache, the created id),
 * but durationMs ends before the commit instead of after it. `createdIdOf`: the new object's id
 * for a create (the path names none). Call after the body was read (readBody).
 */
export async function auditedChange<T>(ctx: MdmContext, c: Context, fn: () => T, createdIdOf?: (r: T) => string): Promise<T> {
  const cx = c as Context<AccessVars>;
  const routeKey = handlerRouteKey(cx);
  if (!isAudited(cx.req.method, cx.get("cls") ?? null, 200, routeKey)) return fn();
  const params = await bodyForAudit(cx);
  const t0 = cx.get("auditT0") ?? performance.now();
  let written = false;
  const r = inTransaction(ctx, () => {
    const r = fn();
    assert(!(r instanceof Promise), "auditedChange runs synchronous changes only (a promise would outlive its transaction)");
    const e = eventOf(cx, routeKey, 200);
    try {
      // a savepoint of its own: a record that fails is logged, not the change's failure (as in writeAudit)
      appendAudit(ctx, { ...e, objectId: e.objectId || (createdIdOf?.(r) ?? ""), params, result: "ok", status: 200, detail: "", durationMs: performance.now() - t0 });
      written = true;
    } catch (err) {
      consola.error(`mdm: audit record of ${cx.req.method} ${cx.req.path} not written with the change: ${(err as Error).message}; written after the answer instead`);
    }
    return r;
  });
  if (written) cx.set("audited", true);
  return r;
}

export function tokenEdge(ctx: MdmContext) {
  return async (c: Context<AccessVars>, next: Next): Promise<void> => {
    const creds = basicCredentials(c.req.header("authorization"));
    // a standby serves reads (rest/standby_reads.ts) and must not write the token's use
    const p = creds ? (ctx.meta.isLeader() ? ctx.tokens.check(creds.password) : ctx.tokens.checkReadOnly(creds.password)) : null;
    if (p === null || creds === null) throw new PfError("UNAUTHORIZED", "Unauthorized");
    c.set("principal", p);
    c.set("user", p.userName);
    c.set("token", creds.password);
    const cls = classOf(c);
    if (cls !== null) {
      c.set("cls", cls);
      if (cls !== "public" && cls !== "self") {
        if (p.mustChangePassword) throw new PfError("FORBIDDEN", `user ${p.userName} must change the password first (scli --set_password, or User::id/action/setPassword)`);
        if (!roleMay(p.role, cls)) throw new PfError("FORBIDDEN", `a ${p.role} user may not do this (${cls} operation); ask an administrator for a role that may`);
      }
    }
    await next();
  };
}
