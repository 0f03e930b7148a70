// The browser's side of the MDM's HTTP API: login and logout, the session (user and token in
// sessionStorage, so it dies with the tab and never appears in a URL), and typed calls that
// send the token as PowerFlex clients do (Basic auth, user:token). Every call answers a Result
// instead of throwing, so a page can say "no data yet" for a 404 of a service that has not
// landed, hide actions on a 403 and fall back to the login page on a 401.

import { SESSION_STORAGE_KEY } from "../dashboard_model.ts";

export interface Session {
  user: string;
  token: string;
}

export type Result<T> =
  | { kind: "ok"; data: T }
  | { kind: "missing" }
  | { kind: "unauthorized" }
  | { kind: "forbidden"; message: string }
  | { kind: "error"; status: number; message: string };

export function loadSession(): Session | null {
  const raw = sessionStorage.getItem(SESSION_STORAGE_KEY);
  if (raw === null) return null;
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v === "object" && v !== null && "user" in v && "token" in v && typeof v.user === "string" && typeof v.token === "string") return { user: v.user, token: v.token };
  } catch {
    // a damaged entry is no session
  }
  sessionStorage.removeItem(SESSION_STORAGE_KEY);
  return null;
}

function saveSession(s: Session): void {
  sessionStorage.setItem(SESSION_STORAGE_KEY, JSON.stringify(s));
}

export function clearSession(): void {
  sessionStorage.removeItem(SESSION_STORAGE_KEY);
}

function basic(user: string, secret: string): string {
  const bytes = new TextEncoder().encode(`${user}:${secret}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

/** The PowerFlex error body's message, or the status text. */
async function errorMessage(r: Response): Promise<string> {
  try {
    const body: unknown = await r.json();
    if (typeof body === "object" && body !== null && "message" in body && typeof body.message === "string") return body.message;
  } catch {
    // not JSON
  }
  return `HTTP ${r.status} ${r.statusText}`.trim();
}

async function call<T>(method: "GET" | "POST", path: string, session: Session, body?: unknown): Promise<Result<T>> {
  let r: Response;
  try {
    r = await fetch(path, {
      method,
      headers: { authorization: basic(session.user, session.token), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? null : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    return { kind: "error", status: 0, message: `MDM unreachable: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (r.status === 401) return { kind: "unauthorized" };
  if (r.status === 403) return { kind: "forbidden", message: await errorMessage(r) };
  if (r.status === 404) return { kind: "missing" };
  if (!r.ok) return { kind: "error", status: r.status, message: await errorMessage(r) };
  try {
    return { kind: "ok", data: (await r.json()) as T };
  } catch {
    return { kind: "error", status: r.status, message: "the MDM answered something that is not JSON" };
  }
}

export const get = <T>(path: string, session: Session): Promise<Result<T>> => call<T>("GET", path, session);
export const post = <T>(path: string, session: Session, body: unknown): Promise<Result<T>> => call<T>("POST", path, session, body);

/** Log in with user and password; the token the MDM issues becomes the session. */
export async function login(user: string, password: string): Promise<{ ok: true; session: Session } | { ok: false; message: string }> {
  let r: Response;
  try {
    r = await fetch("/api/login", { headers: { authorization: basic(user, password) }, cache: "no-store", credentials: "omit" });
  } catch (e) {
    return { ok: false, message: `MDM unreachable: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (r.status === 401) return { ok: false, message: "Wrong user name or password." };
  if (!r.ok) return { ok: false, message: await errorMessage(r) };
  const token: unknown = await r.json();
  if (typeof token !== "string" || token.length === 0) return { ok: false, message: "The MDM sent no token." };
  const session = { user, token };
  saveSession(session);
  return { ok: true, session };
}

/** End the session at the MDM (the token stops working) and in the browser. */
export async function logout(session: Session): Promise<void> {
  clearSession();
  await call<unknown>("POST", "/api/logout", session, {});
}
