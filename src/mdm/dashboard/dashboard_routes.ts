// HTTP routes of the web dashboard, served by the MDM on its API port: `/` sends a browser to
// /dashboard/, /dashboard/ is the page shell, /dashboard/assets/* the embedded files, and
// /dashboard/api/summary the one-second snapshot every page polls. The shell and assets carry
// no cluster data; the data route needs the same token as the REST API (Basic auth, the token
// as password), so a request without login gets 401, never data. Every response carries a
// strict Content-Security-Policy (same origin only, no inline script or style) and no-sniff,
// no-referrer and no-framing headers.

import { Hono, type Context, type Next } from "hono";
import { roleMay } from "../core/roles.ts";
import { PfError } from "../../proto/errors.ts";
import type { MdmContext } from "../core/context.ts";
import { basicCredentials, HttpError } from "../core/http_edge.ts";
import { ASSETS, INDEX_HTML, type Asset } from "./dashboard_assets.ts";
import { DASHBOARD_PREFIX } from "./dashboard_model.ts";
import { dashboardSummary } from "./dashboard_summary.ts";

type Vars = { Variables: { user: string } };

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

function securityHeaders(c: Context): void {
  c.header("Content-Security-Policy", DASHBOARD_CSP);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  c.header("X-Frame-Options", "DENY");
  c.header("Cross-Origin-Opener-Policy", "same-origin");
  c.header("Cross-Origin-Resource-Policy", "same-origin");
}

function serveAsset(c: Context, a: Asset): Response {
  c.header("ETag", a.etag);
  // always revalidate: a new binary serves new code at once, an unchanged one answers 304
  c.header("Cache-Control", "no-cache");
  if (c.req.header("if-none-match") === a.etag) return c.body(null, 304);
  c.header("Content-Type", a.contentType);
  return c.body(a.body, 200);
}

/** A browser (it asks for HTML) opening the MDM's root lands on the dashboard. */
function wantsHtml(c: Context): boolean {
  return (c.req.header("accept") ?? "").includes("text/html");
}

export function dashboardRoutes(ctx: MdmContext): Hono<Vars> {
  const app = new Hono<Vars>();
  app.use(`${DASHBOARD_PREFIX}/*`, async (c: Context<Vars>, next: Next) => {
    securityHeaders(c);
    await next();
  });
  app.get("/", (c) => {
    if (!wantsHtml(c)) throw new HttpError("NOT_FOUND", 404, "no such path /; the dashboard is at /dashboard/ and the REST API under /api");
    securityHeaders(c);
    return c.redirect(`${DASHBOARD_PREFIX}/`, 302);
  });
  app.get(DASHBOARD_PREFIX, (c) => c.redirect(`${DASHBOARD_PREFIX}/`, 301));
  app.get(`${DASHBOARD_PREFIX}/`, (c) => serveAsset(c, INDEX_HTML));
  app.get(`${DASHBOARD_PREFIX}/assets/:name`, (c) => {
    const a = ASSETS.get(c.req.param("name"));
    if (!a) throw new HttpError("NOT_FOUND", 404, `no dashboard asset ${c.req.param("name")}`);
    return serveAsset(c, a);
  });

  // data: the REST API's login, checked the same way
  app.use(`${DASHBOARD_PREFIX}/api/*`, async (c: Context<Vars>, next: Next) => {
    const creds = basicCredentials(c.req.header("authorization"));
    const user = creds ? ctx.tokens.check(creds.password) : null;
    if (user === null) throw new PfError("UNAUTHORIZED", "Unauthorized");
    // the summary is a query of the storage objects: the REST "read" class (core/roles.ts)
    if (!roleMay(user.role, "read")) throw new PfError("FORBIDDEN", `a ${user.role} user may not read the storage objects`);
    c.set("user", user.userName);
    c.header("Cache-Control", "no-store");
    await next();
  });
  app.get(`${DASHBOARD_PREFIX}/api/summary`, (c) => c.json(dashboardSummary(ctx, c.get("user"))));
  app.all(`${DASHBOARD_PREFIX}/*`, (c) => {
    throw new HttpError("NOT_FOUND", 404, `no such dashboard path ${c.req.path}`);
  });
  return app;
}
