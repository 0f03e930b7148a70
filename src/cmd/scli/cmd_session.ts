// --login and --logout. Login trades user:password for a token (GET /api/login), reads the
// system id, and keeps {token, user, systemId} in the session file under the MDM's URL.
// Logout forgets the local session first (so the token leaves the disk even when the MDM is
// down), then asks the MDM to revoke it; a token the MDM no longer knows counts as revoked.

import { isPfError } from "../../proto/errors.ts";
import { mdmLogin } from "../../proto/mdm_http.ts";
import type { CommandContext, Output } from "./command_context.ts";
import { MdmRestClient } from "./rest_client.ts";
import { ScliError } from "./scli_errors.ts";
import { UserObject } from "../../proto/user_api.ts";

export async function login(ctx: CommandContext): Promise<Output> {
  const username = ctx.args.need("username");
  const token = await mdmLogin({ url: ctx.target.url, caPem: ctx.target.caPem }, username, ctx.args.need("password"));
  const client = new MdmRestClient({ url: ctx.target.url, caPem: ctx.target.caPem, token });
  // PowerFlex prints the user's role; the System id is on every object, the User's included
  const me = await client.request("POST", "/api/types/User/instances/action/queryCurrentUser", {}, UserObject);
  ctx.sessions.put(ctx.target.url, { token, username, systemId: me.systemId, loggedInAtMs: ctx.nowMs() });
  const text = [`Logged in. User role is ${me.userRole}. System ID is ${me.systemId}`];
  if (me.passwordChangeRequired) text.push("The password must be changed before anything else: scli --set_password --old_password OLD --new_password NEW");
  return {
    text,
    json: { loggedIn: true, mdm: ctx.target.url, username, role: me.userRole, systemId: me.systemId, sessionFile: ctx.sessions.file, passwordChangeRequired: me.passwordChangeRequired },
  };
}

export async function logout(ctx: CommandContext): Promise<Output> {
  const session = ctx.sessions.remove(ctx.target.url);
  if (!session) {
    return { text: [`Not logged in to MDM ${ctx.target.url}; nothing to do`], json: { loggedOut: false, mdm: ctx.target.url } };
  }
  const client = new MdmRestClient({ url: ctx.target.url, caPem: ctx.target.caPem, token: session.token });
  try {
    await client.logout();
  } catch (e) {
    if (!isPfError(e) || e.code !== "UNAUTHORIZED") {
      const why = e instanceof Error ? e.message : String(e);
      throw new ScliError(isPfError(e) ? e.code : "INTERNAL", `session removed here, but MDM ${ctx.target.url} did not revoke the token: ${why}`);
    }
  }
  return { text: ["Logged out."], json: { loggedOut: true, mdm: ctx.target.url } };
}
