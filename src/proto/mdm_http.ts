// HTTP client for the MDM (public REST API and internal cluster API), shared by SDS, SDC, scli
// and `pf up`. TLS is verified against the MDM's certificate (caPem), never skipped: plain
// http:// URLs are only accepted for loopback hosts. Response bodies are validated with the
// zod schema the caller passes, so a bad or hostile MDM answer becomes a typed error.
//
// An MDM cluster (HA mode) is given as a comma-separated list of URLs ("url1,url2,url3", as
// PowerFlex's drv_cfg --add_mdm --ip ip1,ip2): a call goes to the MDM that answered last, and
// moves on when it is unreachable, is a standby (421 NOT_LEADER, whose body names the leader,
// tried next) or answers with a term lower than one already seen (refused, see mdm_term.ts).
// One CA (caPem) verifies every MDM of the list.

import { consola } from "consola";
import { z } from "zod";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER } from "./cluster_api.ts";
import { PfError, type ErrorCode, ErrorCodes } from "./errors.ts";
import { Limits } from "./limits.ts";
import { MDM_TERM_HEADER, type TermGuard } from "./mdm_term.ts";

export interface MdmEndpoint {
  /** https://host:port (or http://127.x.x.x:port when plain HTTP was asked for); an MDM cluster
   *  as a comma-separated list of such URLs */
  url: string;
  /** PEM of the MDM's certificate (or its CA); required for https */
  caPem?: string | null;
  /** cluster secret, for the internal cluster API */
  clusterSecret?: string;
  /** this node's token from its join answer, for the cluster API's per-node calls */
  nodeToken?: string;
  /** REST token (basic auth password), for the public API */
  token?: string;
  /** raw base64 basic credentials (login only); wins over token */
  basicAuth?: string;
  timeoutMs?: number;
  /** the highest MDM term this client has seen: sent along, and lower answers refused */
  terms?: TermGuard;
}

/** A standby's answer: the MDM it names as the active one (null while there is none). */
export class NotLeaderError extends PfError {
  constructor(
    message: string,
    readonly leaderUrl: string | null,
  ) {
    super("NOT_LEADER", message);
  }
}

/** The URLs of an MDM address list ("url1,url2"); one URL is a list of one. */
export function mdmUrlsOf(spec: string): string[] {
  return spec
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/** Per address list, the URL that answered last (the active MDM, as far as this process knows). */
const lastAnswered = new Map<string, string>();
const MAX_MDM_ATTEMPTS = 8;
const RETRIED_CODES: ReadonlySet<ErrorCode> = new Set(["UNAVAILABLE", "NOT_LEADER", "STALE_TERM"]);

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The MDM answered but its TLS certificate did not verify against caPem (not the MDM's
 * certificate, expired, or not naming the host). UNAVAILABLE like any MDM that cannot be used,
 * but never retried: waiting does not change a certificate.
 */
export class MdmTlsError extends PfError {
  constructor(url: string, detail: string) {
    super("UNAVAILABLE", `MDM ${url} unreachable: certificate not accepted: ${detail}`);
    this.name = "MdmTlsError";
  }
}

const TLS_VERIFY_CODE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|HOSTNAME_MISMATCH/;

function fetchFailure(url: string, e: unknown): PfError {
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  if (typeof code === "string" && TLS_VERIFY_CODE.test(code)) {
    const detail = code === "ERR_TLS_CERT_ALTNAME_INVALID" ? `it does not name the host of ${url}` : message;
    return new MdmTlsError(url, `${code}: ${detail}`);
  }
  return new PfError("UNAVAILABLE", `MDM ${url} unreachable: ${message}`);
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Validate an MDM URL: https, or http on loopback only. */
export function checkMdmUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PfError("BAD_REQUEST", `MDM address ${JSON.stringify(url)} is not a URL (expected https://HOST:PORT)`);
  }
  if (u.protocol === "http:" && !isLoopbackHost(u.hostname)) {
    throw new PfError("BAD_REQUEST", `plain http to the MDM is only allowed on loopback, not ${u.hostname}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new PfError("BAD_REQUEST", `MDM address must be https://HOST:PORT, got ${url}`);
  }
  return u;
}

interface RequestOptions<T extends z.ZodType> {
  method: "GET" | "POST";
  path: string; // absolute path, e.g. "/api/types/Volume/instances"
  body?: unknown;
  schema: T;
}

/**
 * One call to the MDM (to the active one of a list); throws PfError (UNAVAILABLE when no MDM is
 * reachable, NOT_LEADER when only standbys answered, the MDM's code otherwise).
 */
export async function mdmRequest<T extends z.ZodType>(ep: MdmEndpoint, opts: RequestOptions<T>): Promise<z.infer<T>> {
  const urls = mdmUrlsOf(ep.url);
  if (urls.length === 0) return requestOne(ep, ep.url, opts); // its checkMdmUrl says what is wrong
  // the MDM that answered last goes first, even one a standby named that is not in the list
  // (a client given only the first MDM's address follows the cluster's leader from there on)
  const first = lastAnswered.get(ep.url);
  const queue = first !== undefined ? [first, ...urls.filter((u) => u !== first)] : [...urls];
  let last: PfError | null = null;
  for (let attempt = 0; attempt < MAX_MDM_ATTEMPTS && queue.length > 0; attempt++) {
    const url = queue.shift()!;
    try {
      const out = await requestOne(ep, url, opts);
      lastAnswered.set(ep.url, url);
      return out;
    } catch (e) {
      if (!(e instanceof PfError) || !RETRIED_CODES.has(e.code)) throw e;
      last = e;
      if (e instanceof NotLeaderError && e.leaderUrl !== null && e.leaderUrl !== url) {
        const named = urls.find((u) => new URL(u).origin === new URL(e.leaderUrl!).origin) ?? e.leaderUrl;
        const i = queue.indexOf(named);
        if (i >= 0) queue.splice(i, 1);
        queue.unshift(named);
      }
    }
  }
  throw last ?? new PfError("UNAVAILABLE", `no MDM of ${ep.url} answered`);
}

async function requestOne<T extends z.ZodType>(ep: MdmEndpoint, url: string, opts: RequestOptions<T>, termHeader = ep.terms?.highest): Promise<z.infer<T>> {
  const base = checkMdmUrl(url);
  const headers: Record<string, string> = { accept: "application/json" };
  if (termHeader !== undefined) headers[MDM_TERM_HEADER] = String(termHeader);
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  if (ep.clusterSecret) headers[CLUSTER_SECRET_HEADER] = ep.clusterSecret;
  if (ep.nodeToken) headers[NODE_TOKEN_HEADER] = ep.nodeToken;
  if (ep.basicAuth) headers.authorization = `Basic ${ep.basicAuth}`;
  else if (ep.token) headers.authorization = `Basic ${Buffer.from(`:${ep.token}`).toString("base64")}`;
  const init: RequestInit & { tls?: { ca: string } } = {
    method: opts.method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(ep.timeoutMs ?? DEFAULT_TIMEOUT_MS),
  };
  if (base.protocol === "https:") {
    if (!ep.caPem) throw new PfError("BAD_REQUEST", "an https MDM needs its certificate (--mdm-ca / PF_MDM_CA)");
    init.tls = { ca: ep.caPem };
  }
  let res: Response;
  try {
    res = await fetch(new URL(opts.path, base), init);
  } catch (e) {
    throw fetchFailure(url, e);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text.length === 0 ? {} : JSON.parse(text);
  } catch {
    throw new PfError("INTERNAL", `MDM answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) throw errorFromBody(res.status, json);
  if (ep.terms) checkTerm(ep.terms, url, json);
  const parsed = opts.schema.safeParse(json);
  if (!parsed.success) {
    throw new PfError("INTERNAL", `MDM answer to ${opts.method} ${opts.path} has an unexpected shape: ${parsed.error.message}`);
  }
  return parsed.data;
}

/** Call the internal cluster API (path relative to CLUSTER_API_PREFIX). */
export function clusterRequest<T extends z.ZodType>(ep: MdmEndpoint, opts: RequestOptions<T>): Promise<z.infer<T>> {
  if (ep.terms && ep.clusterSecret) telling = { secret: ep.clusterSecret, caPem: ep.caPem ?? null };
  return mdmRequest(ep, { ...opts, path: CLUSTER_API_PREFIX + opts.path });
}

/** Refuse an answer whose term is below the highest seen (STALE_TERM; the next MDM is asked). */
function checkTerm(terms: TermGuard, url: string, json: unknown): void {
  const term = typeof json === "object" && json !== null ? (json as Record<string, unknown>).term : undefined;
  if (typeof term !== "number" || !Number.isSafeInteger(term)) return;
  if (!terms.observe(term, url)) {
    void tellNewerTerm(url, terms.highest);
    throw new PfError("STALE_TERM", `MDM ${url} answered with term ${term}, older than term ${terms.highest}; answer refused`);
  }
}

/** Say so to an MDM that spoke with an old term (it steps down); fire and forget. */
let telling: { secret: string; caPem: string | null } | null = null;
async function tellNewerTerm(url: string, term: number): Promise<void> {
  if (telling === null) return;
  try {
    const ep: MdmEndpoint = { url, caPem: telling.caPem, clusterSecret: telling.secret, timeoutMs: 1000 };
    await requestOne(ep, url, { method: "POST", path: CLUSTER_API_PREFIX + "/term", body: {}, schema: z.unknown() }, term);
  } catch {
    // the old MDM is expected to refuse (STALE_TERM) or to be unreachable
  }
}

function errorFromBody(status: number, json: unknown): PfError {
  const obj = typeof json === "object" && json !== null ? (json as Record<string, unknown>) : {};
  const message = typeof obj.message === "string" ? obj.message : `MDM answered HTTP ${status}`;
  if (obj.pfCode === "NOT_LEADER" || status === 421) {
    const leader = typeof obj.leader === "object" && obj.leader !== null ? (obj.leader as Record<string, unknown>) : null;
    return new NotLeaderError(message, leader && typeof leader.url === "string" ? leader.url : null);
  }
  const pfCode = typeof obj.pfCode === "string" && (ErrorCodes as readonly string[]).includes(obj.pfCode) ? (obj.pfCode as ErrorCode) : null;
  const code: ErrorCode = pfCode ?? (status === 401 ? "UNAUTHORIZED" : status === 400 ? "BAD_REQUEST" : "INTERNAL");
  return new PfError(code, message);
}

/** GET /api/login with basic user:password; returns the token (a JSON string in the body). */
export async function mdmLogin(ep: MdmEndpoint, username: string, password: string): Promise<string> {
  const basic = Buffer.from(`${username}:${password}`).toString("base64");
  return mdmRequestWithAuth(ep, basic, { method: "GET", path: "/api/login", schema: z.string().min(1) });
}

function mdmRequestWithAuth<T extends z.ZodType>(ep: MdmEndpoint, basic: string, opts: RequestOptions<T>): Promise<z.infer<T>> {
  return mdmRequest({ ...ep, token: undefined, basicAuth: basic }, opts);
}

const JOIN_RETRY_MS = 500;
const JOIN_ATTEMPTS = Math.ceil(Limits.mdmStartWaitMs / JOIN_RETRY_MS); // about a minute of waiting for a starting MDM

/**
 * Join the cluster: the call is retried while the MDM is unreachable (it may still be starting);
 * any answer from the MDM (a wrong secret, a refused join) and a certificate that does not
 * verify are final.
 */
export async function joinWithRetry<T>(who: string, ep: MdmEndpoint, call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      // an MDM cluster between two leaders answers NOT_LEADER from every member: wait too
      if (!(e instanceof PfError) || !RETRIED_CODES.has(e.code) || e instanceof MdmTlsError || attempt >= JOIN_ATTEMPTS) throw e;
      if (attempt === 0) consola.info(`${who}: MDM ${ep.url} not reachable yet; retrying`);
      await Bun.sleep(JOIN_RETRY_MS);
    }
  }
}
