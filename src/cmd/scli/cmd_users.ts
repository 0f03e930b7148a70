// User and audit commands, PowerFlex scli names: --add_user, --delete_user, --modify_user,
// --query_users, --query_user, --set_password, --reset_password; pf extensions
// --query_audit_log and --verify_audit_log. A user given by --username is found in the user list
// (the REST API addresses users by id). A generated password is printed once, never stored.

import { z } from "zod";
import { AuditRecord, AuditVerifyAnswer, UserCreated, UserObject } from "../../proto/user_api.ts";
import type { CommandContext, Output } from "./command_context.ts";
import type { MdmRestClient } from "./rest_client.ts";
import { ScliError } from "./scli_errors.ts";
import { plural } from "./text_format.ts";

async function currentUser(client: MdmRestClient): Promise<UserObject> {
  return client.request("POST", "/api/types/User/instances/action/queryCurrentUser", {}, UserObject);
}

async function resolveUser(ctx: CommandContext, client: MdmRestClient): Promise<UserObject> {
  const id = ctx.args.str("user_id");
  if (id !== undefined) return client.request("GET", `/api/instances/User::${id}`, undefined, UserObject);
  const name = ctx.args.need("username");
  const all = await client.request("GET", "/api/types/User/instances", undefined, z.array(UserObject));
  const u = all.find((x) => x.name === name);
  if (!u) throw new ScliError("NOT_FOUND", `Could not find the user ${JSON.stringify(name)}`);
  return u;
}

function userLine(u: UserObject): string {
  return `User ID: ${u.id} Name: ${u.name} Role: ${u.userRole}${u.passwordChangeRequired ? " (must change password)" : ""}`;
}

export async function addUser(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const name = ctx.args.need("username");
  const role = ctx.args.need("user_role");
  const password = ctx.args.str("password");
  const r = await client.request("POST", "/api/types/User/instances", { name, userRole: role, ...(password === undefined ? {} : { password }) }, UserCreated);
  const text = [`Successfully created user ${name} with role ${role}. Object ID ${r.id}`];
  if (r.password !== undefined) text.push(`The temporary password is: ${r.password}`, "The user must change it at the first login (scli --set_password).");
  return { text, json: r };
}

export async function deleteUser(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const u = await resolveUser(ctx, client);
  await client.request("POST", `/api/instances/User::${u.id}/action/removeUser`, {}, z.unknown());
  return { text: [`Successfully deleted user ${u.name}`], json: { id: u.id, name: u.name, removed: true } };
}

export async function modifyUser(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const u = await resolveUser(ctx, client);
  const role = ctx.args.need("user_role");
  await client.request("POST", `/api/instances/User::${u.id}/action/setUserRole`, { userRole: role }, z.unknown());
  return { text: [`Successfully modified user ${u.name}: role ${role}`], json: { id: u.id, name: u.name, userRole: role } };
}

export async function queryUsers(ctx: CommandContext): Promise<Output> {
  const all = await ctx.client().request("GET", "/api/types/User/instances", undefined, z.array(UserObject));
  return { text: [`Query-all-users returned ${plural(all.length, "user")}`, ...all.map(userLine)], json: all };
}

export async function queryUser(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const u = ctx.args.has("user_id") || ctx.args.has("username") ? await resolveUser(ctx, client) : await currentUser(client);
  return { text: [userLine(u)], json: u };
}

export async function setPassword(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const me = await currentUser(client);
  await client.request("POST", `/api/instances/User::${me.id}/action/setPassword`, { oldPassword: ctx.args.need("old_password"), newPassword: ctx.args.need("new_password") }, z.unknown());
  return { text: [`Successfully changed the password of user ${me.name}`], json: { id: me.id, name: me.name } };
}

export async function resetPassword(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const u = await resolveUser(ctx, client);
  const r = await client.request("POST", `/api/instances/User::${u.id}/action/resetPassword`, {}, z.object({ password: z.string().optional() }));
  return {
    text: [`Successfully reset the password of user ${u.name}`, ...(r.password === undefined ? [] : [`The temporary password is: ${r.password}`])],
    json: { id: u.id, name: u.name, password: r.password },
  };
}

function when(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export async function queryAuditLog(ctx: CommandContext): Promise<Output> {
  const q = new URLSearchParams();
  const user = ctx.args.str("username");
  if (user !== undefined) q.set("actor", user);
  q.set("limit", ctx.args.str("max_records") ?? "100");
  const recs = await ctx.client().request("GET", `/api/pf/audit?${q.toString()}`, undefined, z.array(AuditRecord));
  const lines = recs.map((r) => {
    const what = [r.method, r.path].filter((x) => x).join(" ");
    const obj = r.objectId ? ` ${r.objectType}::${r.objectId}` : "";
    const detail = r.detail ? ` (${r.detail})` : "";
    return `${r.seq} ${when(r.tsMs)} ${r.kind} ${r.actor || "-"}${r.role ? `/${r.role}` : ""} from ${r.src}: ${what}${obj} -> ${r.result} ${r.status}${detail}`;
  });
  return { text: [`Query-audit-log returned ${plural(recs.length, "record")}`, ...lines], json: recs };
}

export async function verifyAuditLog(ctx: CommandContext): Promise<Output> {
  const v = await ctx.client().request("POST", "/api/pf/audit/verify", {}, AuditVerifyAnswer);
  const range = `records ${v.firstSeq}..${v.lastSeq} (${v.records} present, ${v.pruned} pruned)`;
  if (!v.ok) {
    const first = v.problems[0];
    throw new ScliError("INVALID_STATE", `audit log chain is broken: ${range}; ${v.problems.length} problem(s), first at record ${first?.seq}: ${first?.problem}`);
  }
  return { text: [`Audit log chain verified: ${range}`], json: v };
}
