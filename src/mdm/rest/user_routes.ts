// REST routes of users and the audit log, registered on the token-checked /api app by
// rest_routes.ts before its generic routes (so User::… is not taken for an unknown type):
// - PowerFlex: GET/POST /api/types/User/instances, GET /api/instances/User::{id},
//   POST /api/instances/User::{id}/action/{setUserRole|removeUser|resetPassword|setPassword},
//   GET /api/instances/System::{id}/relationships/User (goscaleio GetUser), and
//   POST /api/types/User/instances/action/queryCurrentUser (the caller);
// - pf extension: GET /api/pf/audit (records, newest first, filters), POST /api/pf/audit/verify.
// Who may do what is route_access.ts (class) and core/users.ts (which roles a manager manages).

import type { Context, Hono } from "hono";
import { PfError } from "../../proto/errors.ts";
import { AuditQueryParams, CreateUser, ResetPassword, SetPassword, SetUserRole, type UserObject } from "../../proto/user_api.ts";
import { Empty, AnyObject } from "../../proto/powerflex_api.ts";
import type { UserRow } from "../../store/mdm_schema.ts";
import { queryAudit, verifyAudit } from "../core/audit.ts";
import { roleOf } from "../core/auth.ts";
import type { AccessVars } from "./access_edge.ts";
import type { MdmContext } from "../core/context.ts";
import { readBody, validate } from "../core/http_edge.ts";
import * as users from "../core/users.ts";

type UserVars = AccessVars;

export function renderUser(ctx: MdmContext, u: UserRow): UserObject {
  const id = u.id ?? "";
  return {
    id,
    name: u.name,
    userRole: roleOf(u),
    passwordChangeRequired: u.passwordChangeRequired !== 0,
    systemId: ctx.systemId,
    links: [
      { rel: "self", href: `/api/instances/User::${id}` },
      { rel: "/api/parent/relationship/systemId", href: `/api/instances/System::${ctx.systemId}` },
    ],
  };
}

function userIdOf(ref: string): string {
  const id = ref.slice("User::".length);
  if (!/^[0-9a-f]{16}$/.test(id)) throw new PfError("BAD_REQUEST", `${JSON.stringify(id)} is not a 16-hex-digit id`);
  return id;
}

async function userAction(ctx: MdmContext, c: Context<UserVars>, id: string, action: string): Promise<unknown> {
  const actor = c.get("principal");
  const body = await readBody(c, AnyObject);
  switch (action) {
    case "setUserRole":
      users.setUserRole(ctx, actor, id, validate(SetUserRole, body).userRole);
      return {};
    case "removeUser":
      validate(Empty, body);
      users.removeUser(ctx, actor, id);
      return {};
    case "resetPassword": {
      const r = await users.resetPassword(ctx, actor, id, validate(ResetPassword, body).password);
      return r.password === undefined ? {} : { password: r.password };
    }
    case "setPassword": {
      const u = users.getUser(ctx, id);
      if (u.name !== actor.userName) throw new PfError("FORBIDDEN", "setPassword changes the caller's own password; a manager uses resetPassword");
      await users.setOwnPassword(ctx, actor, validate(SetPassword, body), c.get("token"));
      return {};
    }
    default:
      throw new PfError("BAD_REQUEST", `unknown action ${action} on User`);
  }
}

export function registerUserRoutes(api: Hono<UserVars>, ctx: MdmContext): void {
  api.get("/types/User/instances", (c) => c.json(users.listUsers(ctx).map((u) => renderUser(ctx, u))));
  api.post("/types/User/instances", async (c) => c.json(await users.addUser(ctx, c.get("principal"), await readBody(c, CreateUser))));
  api.post("/types/User/instances/action/queryCurrentUser", async (c) => {
    await readBody(c, Empty);
    return c.json(renderUser(ctx, users.getUserByName(ctx, c.get("principal").userName)));
  });
  api.get("/instances/:ref{User::[^/]+}", (c) => c.json(renderUser(ctx, users.getUser(ctx, userIdOf(c.req.param("ref"))))));
  api.post("/instances/:ref{User::[^/]+}/action/:action", async (c) => c.json(await userAction(ctx, c, userIdOf(c.req.param("ref")), c.req.param("action"))));
  api.get("/instances/:ref{System::[^/]+}/relationships/User", (c) => {
    if (c.req.param("ref") !== `System::${ctx.systemId}`) throw new PfError("NOT_FOUND", `Could not find the system ${c.req.param("ref")}`);
    return c.json(users.listUsers(ctx).map((u) => renderUser(ctx, u)));
  });

  api.get("/pf/audit", (c) => c.json(queryAudit(ctx, validate(AuditQueryParams, c.req.query()))));
  api.post("/pf/audit/verify", async (c) => {
    await readBody(c, Empty);
    return c.json(verifyAudit(ctx));
  });
}
