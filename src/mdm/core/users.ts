// REST users in PowerFlex's shape: add (addUser / POST /api/types/User/instances), remove, set a
// role, reset a password (a manager; a generated one-time password the user must change), and set
// one's own password. Who may manage whom is roles.ts MANAGED_ROLES; the one local SuperUser
// ("admin") cannot be removed or re-roled, and no second SuperUser can be made.
// Invariants: every role written is a Role; user names are unique; a user's live tokens follow
// its row (TokenStore.refreshUser) in the same call that changes it.

import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { userTable, type UserRow } from "../../store/mdm_schema.ts";
import { ADMIN_USER, roleOf, type Principal } from "./auth.ts";
import type { MdmContext } from "./context.ts";
import { mayManage, Roles, type Role } from "./roles.ts";

const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const MIN_PASSWORD_LENGTH = 8;
const MAX_PASSWORD_LENGTH = 256;

export function listUsers(ctx: MdmContext): UserRow[] {
  return ctx.store.db.select().from(userTable).orderBy(userTable.name).all();
}

export function getUser(ctx: MdmContext, id: string): UserRow {
  const u = ctx.store.db.select().from(userTable).where(eq(userTable.id, id)).get();
  if (!u) throw new PfError("NOT_FOUND", `Could not find the user ${id}`);
  return u;
}

export function getUserByName(ctx: MdmContext, name: string): UserRow {
  const u = ctx.store.db.select().from(userTable).where(eq(userTable.name, name)).get();
  if (!u) throw new PfError("NOT_FOUND", `Could not find the user ${JSON.stringify(name)}`);
  return u;
}

function checkRoleName(role: string): Role {
  const r = Roles.find((x) => x.toLowerCase() === role.toLowerCase());
  if (!r || r === "SuperUser") {
    throw new PfError("BAD_REQUEST", `userRole ${JSON.stringify(role)} is not one of ${Roles.filter((x) => x !== "SuperUser").join(", ")}`);
  }
  return r;
}

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new PfError("BAD_REQUEST", `a password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long`);
  }
}

function requireManage(actor: Principal, target: Role, what: string): void {
  if (!mayManage(actor.role, target)) {
    throw new PfError("FORBIDDEN", `a ${actor.role} user may not ${what} a ${target} user`);
  }
}

function generatedPassword(): string {
  return randomBytes(12).toString("base64url");
}

/** Create a user; without a password one is generated (returned, and to be changed at first use). */
export async function addUser(
  ctx: MdmContext,
  actor: Principal,
  req: { name: string; userRole: string; password?: string | undefined },
): Promise<{ id: string; password?: string }> {
  if (!USER_NAME.test(req.name)) throw new PfError("BAD_REQUEST", `user name ${JSON.stringify(req.name)}: 1-64 letters, digits, . _ @ - (starting with a letter or digit)`);
  const role = checkRoleName(req.userRole);
  requireManage(actor, role, "create");
  if (ctx.tokens.hasUser(req.name)) throw new PfError("ALREADY_EXISTS", `Already exists: a user named ${JSON.stringify(req.name)}`);
  if (req.password !== undefined) checkPassword(req.password);
  const password = req.password ?? generatedPassword();
  await ctx.tokens.setPassword(req.name, password, { role, mustChange: req.password === undefined });
  const id = getUserByName(ctx, req.name).id;
  if (id === null) throw new Error("invariant broken: a new user has an id");
  return req.password === undefined ? { id, password } : { id };
}

function checkTarget(ctx: MdmContext, actor: Principal, id: string, what: string): UserRow {
  const u = getUser(ctx, id);
  if (u.name === ADMIN_USER) throw new PfError("INVALID_STATE", `the local SuperUser ${ADMIN_USER} cannot be ${what}`);
  requireManage(actor, roleOf(u), what === "removed" ? "remove" : "change");
  return u;
}

export function removeUser(ctx: MdmContext, actor: Principal, id: string): UserRow {
  const u = checkTarget(ctx, actor, id, "removed");
  if (u.name === actor.userName) throw new PfError("INVALID_STATE", "a user cannot remove itself");
  ctx.store.db.delete(userTable).where(eq(userTable.id, id)).run();
  ctx.tokens.refreshUser(u.name);
  ctx.tokens.guard.unlock(u.name);
  return u;
}

export function setUserRole(ctx: MdmContext, actor: Principal, id: string, userRole: string): UserRow {
  const u = checkTarget(ctx, actor, id, "re-roled");
  const role = checkRoleName(userRole);
  requireManage(actor, role, "make");
  ctx.store.db.update(userTable).set({ role }).where(eq(userTable.id, id)).run();
  ctx.tokens.refreshUser(u.name);
  return u;
}

/** A manager sets a new one-time password (given or generated); the user must change it. */
export async function resetPassword(ctx: MdmContext, actor: Principal, id: string, given?: string): Promise<{ user: UserRow; password?: string }> {
  const u = checkTarget(ctx, actor, id, "reset");
  if (given !== undefined) checkPassword(given);
  const password = given ?? generatedPassword();
  await ctx.tokens.setPassword(u.name, password, { mustChange: true });
  ctx.tokens.dropUserTokens(u.name);
  ctx.tokens.guard.unlock(u.name);
  return given === undefined ? { user: u, password } : { user: u };
}

/** The caller changes its own password (the old one proves it is the owner, not a stolen token). */
export async function setOwnPassword(ctx: MdmContext, actor: Principal, req: { oldPassword: string; newPassword: string }, keepToken: string): Promise<void> {
  checkPassword(req.newPassword);
  if (req.newPassword === req.oldPassword) throw new PfError("BAD_REQUEST", "the new password must differ from the old one");
  const ok = await ctx.tokens.checkPassword(actor.userName, req.oldPassword);
  if (!ok) throw new PfError("UNAUTHORIZED", "the old password is wrong");
  await ctx.tokens.setPassword(actor.userName, req.newPassword, { mustChange: false });
  ctx.tokens.dropUserTokens(actor.userName, keepToken);
}
