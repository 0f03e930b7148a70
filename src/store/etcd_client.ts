// A thin etcd v3 client over the JSON gateway (Bun fetch; no gRPC: grpc-js hangs under Bun, see
// docs mdm-ha.md §3): kv range/put/deleterange/txn, lease grant/keepalive/revoke/timetolive,
// maintenance status and member list. The watch stream lives in etcd_watch.ts.
// Security (EtcdSecurity): https endpoints verified against a CA (etcdctl --cacert), a client
// certificate and key (etcd --client-cert-auth), and etcd auth by user and password: a token
// from /v3/auth/authenticate rides in the Authorization header; an "invalid auth token" answer
// (the token expired: etcd's simple tokens live --auth-token-ttl, 300 s) gets a new token and
// the request once more. etcd 3.4's gateway refuses (HTTP 400) a client certificate that has a
// CommonName (CVE-2018-16886: it would not be the gRPC identity); that answer becomes an error
// that says so.
//
// Invariants: every answer is validated by the zod schemas of etcd_wire.ts; every request has a
// timeout (requestTimeoutMs per endpoint tried); an unreachable endpoint, a timeout or an etcd
// "unavailable" (no leader) moves on to the next endpoint, and the one that answered is tried
// first next time; any other etcd error is final and typed (EtcdError with the gRPC code).
// A request that timed out may still have been applied by etcd: callers send only requests that
// are safe to repeat (guarded txns of whole row images, lease keepalives) or check afterwards.

import { consola } from "consola";
import type { z } from "zod";
import { PfError } from "../proto/errors.ts";
import {
  b64,
  DeleteRangeResponse,
  GatewayError,
  GrpcCode,
  LeaseGrantResponse,
  LeaseKeepAliveResponse,
  LeaseTimeToLiveResponse,
  MemberListResponse,
  prefixEnd,
  PutResponse,
  RangeResponse,
  StatusResponse,
  TxnResponse,
  AuthenticateResponse,
  unb64,
  type Header,
} from "./etcd_wire.ts";

export const ETCD_DEFAULT_REQUEST_TIMEOUT_MS = 1000;

/** An error answered by etcd (grpcCode set) or no answer at all (grpcCode null, UNAVAILABLE). */
export class EtcdError extends PfError {
  constructor(
    message: string,
    readonly grpcCode: number | null,
  ) {
    super(grpcCode === null || grpcCode === GrpcCode.UNAVAILABLE ? "UNAVAILABLE" : "INTERNAL", message);
    this.name = "EtcdError";
  }
  get leaseNotFound(): boolean {
    return this.grpcCode === GrpcCode.NOT_FOUND;
  }
  get compacted(): boolean {
    return this.grpcCode === GrpcCode.OUT_OF_RANGE;
  }
}

export type CompareTarget = "CREATE" | "MOD" | "VERSION" | "VALUE" | "LEASE";
export type CompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL";

export interface Compare {
  key: string;
  target: CompareTarget;
  result: CompareResult;
  /** revision (CREATE/MOD), version (VERSION), lease id (LEASE) or value (VALUE) */
  value: number | string;
}

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { delete: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface Kv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** lease id ("0" or absent: none) */
  lease: string | null;
}

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** the kvs of every range op of the branch that ran, in op order */
  ranges: Kv[][];
}

export interface RangeOptions {
  prefix?: boolean;
  /** read at this revision (0: current) */
  revision?: number;
  limit?: number;
  /** start key of a paged range (inclusive), with the prefix's end */
  fromKey?: string;
  countOnly?: boolean;
}

/** How pf reaches a secured etcd (YAML mdm.etcd: cacert, cert, key, user, password). */
export interface EtcdSecurity {
  /** PEM of the CA that signed the members' server certificates (https:// endpoints) */
  caPem?: string;
  /** client certificate and its key (PEM), for etcd --client-cert-auth */
  certPem?: string;
  keyPem?: string;
  /** etcd auth (etcdctl auth enable): the user's role needs readwrite on /pf/<cluster>/ */
  user?: string;
  password?: string;
}

export interface EtcdClientOptions {
  /** http://HOST:PORT or https://HOST:PORT client URLs of the etcd members */
  endpoints: string[];
  requestTimeoutMs?: number;
  security?: EtcdSecurity;
}

const GATEWAY_CN_REFUSAL = "CommonName of client sending a request against gateway";
const JSON_HEADERS: Record<string, string> = { "content-type": "application/json" };

function kvOf(k: z.infer<typeof RangeResponse>["kvs"][number]): Kv {
  return {
    key: unb64(k.key),
    value: unb64(k.value),
    createRevision: k.create_revision,
    modRevision: k.mod_revision,
    version: k.version,
    lease: k.lease === undefined || k.lease === "0" ? null : k.lease,
  };
}

function compareJson(c: Compare): Record<string, unknown> {
  const base = { key: b64(c.key), target: c.target, result: c.result };
  switch (c.target) {
    case "CREATE":
      return { ...base, create_revision: String(c.value) };
    case "MOD":
      return { ...base, mod_revision: String(c.value) };
    case "VERSION":
      return { ...base, version: String(c.value) };
    case "LEASE":
      return { ...base, lease: String(c.value) };
    case "VALUE":
      return { ...base, value: b64(String(c.value)) };
    default: {
      const never: never = c.target;
      throw new Error(`unknown compare target ${String(never)}`);
    }
  }
}

function opJson(op: TxnOp): Record<string, unknown> {
  if ("put" in op) {
    const p: Record<string, unknown> = { key: b64(op.put.key), value: b64(op.put.value) };
    if (op.put.lease !== undefined) p.lease = op.put.lease;
    return { request_put: p };
  }
  if ("delete" in op) {
    const d: Record<string, unknown> = { key: b64(op.delete.key) };
    if (op.delete.prefix) d.range_end = prefixEnd(op.delete.key);
    return { request_delete_range: d };
  }
  const r: Record<string, unknown> = { key: b64(op.range.key) };
  if (op.range.prefix) r.range_end = prefixEnd(op.range.key);
  return { request_range: r };
}

export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly requestTimeoutMs: number;
  readonly security: EtcdSecurity;
  private current = 0;
  private token: string | null = null;
  private authing: Promise<string> | null = null;
  /** tokens obtained (1 + re-authentications after an expired token) */
  authentications = 0;

  constructor(opts: EtcdClientOptions) {
    if (opts.endpoints.length === 0) throw new PfError("BAD_REQUEST", "etcd needs at least one endpoint");
    this.endpoints = opts.endpoints.map((e) => normaliseEndpoint(e));
    this.requestTimeoutMs = opts.requestTimeoutMs ?? ETCD_DEFAULT_REQUEST_TIMEOUT_MS;
    this.security = opts.security ?? {};
    const s = this.security;
    if ((s.certPem === undefined) !== (s.keyPem === undefined)) throw new PfError("BAD_REQUEST", "an etcd client certificate needs its key, and a key its certificate (mdm.etcd.cert and mdm.etcd.key)");
    if ((s.user === undefined) !== (s.password === undefined)) throw new PfError("BAD_REQUEST", "etcd auth needs both a user and a password (mdm.etcd.user and mdm.etcd.password)");
    const tlsAsked = s.caPem !== undefined || s.certPem !== undefined;
    const plain = this.endpoints.filter((e) => e.startsWith("http:"));
    if (tlsAsked && plain.length > 0) throw new PfError("BAD_REQUEST", `etcd TLS options are given but ${plain.join(", ")} ${plain.length > 1 ? "are" : "is"} plain http: write https:// endpoints`);
  }

  /** fetch's TLS options for this etcd (undefined: Bun's defaults) */
  get tlsOptions(): { ca?: string; cert?: string; key?: string } | undefined {
    const s = this.security;
    if (s.caPem === undefined && s.certPem === undefined) return undefined;
    return { ...(s.caPem !== undefined ? { ca: s.caPem } : {}), ...(s.certPem !== undefined ? { cert: s.certPem, key: s.keyPem } : {}) };
  }

  /** Headers of a request: content type, and the auth token when etcd auth is configured. */
  async requestHeaders(): Promise<Record<string, string>> {
    const h: Record<string, string> = { ...JSON_HEADERS };
    if (this.security.user !== undefined) h.authorization = await this.authToken();
    return h;
  }

  /** Forget a token etcd called invalid (the next request authenticates again). */
  dropToken(token: string): void {
    if (this.token === token) this.token = null;
  }

  private authToken(): Promise<string> {
    if (this.token !== null) return Promise.resolve(this.token);
    this.authing ??= this.authenticate().finally(() => {
      this.authing = null;
    });
    return this.authing;
  }

  private async authenticate(): Promise<string> {
    const user = this.security.user!;
    try {
      const r = await this.rotate((endpoint) => this.callAt(endpoint, "/v3/auth/authenticate", { name: user, password: this.security.password }, AuthenticateResponse, this.requestTimeoutMs, JSON_HEADERS));
      this.token = r.token;
      this.authentications++;
      return r.token;
    } catch (e) {
      if (e instanceof EtcdError && e.grpcCode === GrpcCode.INVALID_ARGUMENT && /authentication failed/.test(e.message)) {
        throw new PfError("UNAUTHORIZED", `etcd refused user ${user}: wrong user name or password (mdm.etcd.user / mdm.etcd.password, or PF_ETCD_PASSWORD)`);
      }
      throw e;
    }
  }

  /** The endpoint that answered last (tried first). */
  get preferredEndpoint(): string {
    return this.endpoints[this.current]!;
  }

  async range(key: string, opts: RangeOptions = {}): Promise<{ kvs: Kv[]; more: boolean; count: number; revision: number }> {
    const body: Record<string, unknown> = { key: b64(opts.fromKey ?? key) };
    if (opts.prefix) body.range_end = prefixEnd(key);
    if (opts.revision) body.revision = String(opts.revision);
    if (opts.limit) body.limit = String(opts.limit);
    if (opts.countOnly) body.count_only = true;
    const r = await this.call("/v3/kv/range", body, RangeResponse);
    return { kvs: r.kvs.map(kvOf), more: r.more, count: r.count, revision: r.header.revision };
  }

  async get(key: string): Promise<Kv | null> {
    return (await this.range(key)).kvs[0] ?? null;
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const body: Record<string, unknown> = { key: b64(key), value: b64(value) };
    if (lease !== undefined) body.lease = lease;
    return (await this.call("/v3/kv/put", body, PutResponse)).header.revision;
  }

  async deleteRange(key: string, opts: { prefix?: boolean } = {}): Promise<{ deleted: number; revision: number }> {
    const body: Record<string, unknown> = { key: b64(key) };
    if (opts.prefix) body.range_end = prefixEnd(key);
    const r = await this.call("/v3/kv/deleterange", body, DeleteRangeResponse);
    return { deleted: r.deleted, revision: r.header.revision };
  }

  async txn(t: { compare: Compare[]; success: TxnOp[]; failure?: TxnOp[] }, timeoutMs?: number): Promise<TxnResult> {
    const body = { compare: t.compare.map(compareJson), success: t.success.map(opJson), failure: (t.failure ?? []).map(opJson) };
    const r = await this.call("/v3/kv/txn", body, TxnResponse, timeoutMs);
    const ranges = r.responses.filter((x) => x.response_range !== undefined).map((x) => (x.response_range?.kvs ?? []).map(kvOf));
    return { succeeded: r.succeeded, revision: r.header.revision, ranges };
  }

  /** Grant a lease; etcd raises a TTL below its minimum (1 s becomes 2 s). */
  async leaseGrant(ttlS: number): Promise<{ id: string; ttlS: number }> {
    const r = await this.call("/v3/lease/grant", { TTL: String(ttlS) }, LeaseGrantResponse);
    return { id: r.ID, ttlS: r.TTL };
  }

  /** One keepalive; returns the TTL granted again, or null when the lease no longer exists. */
  async leaseKeepAlive(id: string, timeoutMs?: number): Promise<number | null> {
    const r = await this.call("/v3/lease/keepalive", { ID: id }, LeaseKeepAliveResponse, timeoutMs);
    return r.result.TTL === undefined || r.result.TTL <= 0 ? null : r.result.TTL;
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: id }, PutResponse);
    } catch (e) {
      if (e instanceof EtcdError && e.leaseNotFound) return; // already gone: the goal
      throw e;
    }
  }

  /** Seconds left on a lease, or null when it does not exist (etcd answers TTL -1). */
  async leaseTimeToLive(id: string): Promise<number | null> {
    const r = await this.call("/v3/lease/timetolive", { ID: id }, LeaseTimeToLiveResponse);
    return r.TTL < 0 ? null : r.TTL;
  }

  /** Status of one member, asked at its own endpoint. */
  async status(endpoint: string, timeoutMs?: number): Promise<z.infer<typeof StatusResponse>> {
    // etcd answers status without a token (auth or not), so a member's health never waits on one
    return this.callAt(normaliseEndpoint(endpoint), "/v3/maintenance/status", {}, StatusResponse, timeoutMs ?? this.requestTimeoutMs, JSON_HEADERS);
  }

  async memberList(): Promise<z.infer<typeof MemberListResponse>> {
    return this.call("/v3/cluster/member/list", {}, MemberListResponse);
  }

  /** POST to the preferred endpoint, moving on to the next one when it does not answer. */
  async call<S extends z.ZodType>(path: string, body: unknown, schema: S, timeoutMs?: number): Promise<z.infer<S>> {
    // the token (if any) is fetched once per attempt, not per endpoint tried
    const once = async () => {
      const headers = await this.requestHeaders();
      return this.rotate((endpoint) => this.callAt(endpoint, path, body, schema, timeoutMs ?? this.requestTimeoutMs, headers));
    };
    try {
      return await once();
    } catch (e) {
      // an expired token: authenticate again and send the request once more
      if (!(e instanceof EtcdError) || e.grpcCode !== GrpcCode.UNAUTHENTICATED || this.security.user === undefined) throw e;
      return once(); // callAt dropped the token etcd refused
    }
  }

  /** Try fn on the preferred endpoint, then on each next one while they do not answer. */
  private async rotate<T>(fn: (endpoint: string) => Promise<T>): Promise<T> {
    const n = this.endpoints.length;
    let last: EtcdError | null = null;
    for (let i = 0; i < n; i++) {
      const idx = (this.current + i) % n;
      try {
        const out = await fn(this.endpoints[idx]!);
        this.current = idx;
        return out;
      } catch (e) {
        if (!(e instanceof EtcdError) || e.code !== "UNAVAILABLE") throw e;
        consola.debug(`etcd: ${e.message}; trying the next endpoint`);
        last = e;
      }
    }
    throw last ?? new EtcdError("etcd: no endpoint answered", null);
  }

  private async callAt<S extends z.ZodType>(endpoint: string, path: string, body: unknown, schema: S, timeoutMs: number, headers: Record<string, string>): Promise<z.infer<S>> {
    let res: Response;
    let text: string;
    try {
      res = await fetch(endpoint + path, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
        tls: this.tlsOptions,
      } as RequestInit);
      text = await res.text();
    } catch (e) {
      throw new EtcdError(`etcd ${endpoint}${path}: no answer within ${timeoutMs} ms (${(e as Error).message})`, null);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      if (text.includes(GATEWAY_CN_REFUSAL)) {
        throw new EtcdError(
          `etcd ${endpoint} refused pf's client certificate: etcd's JSON gateway takes no client certificate with a CommonName (CVE-2018-16886); issue the MDM's etcd client certificate with a subject without CN (e.g. openssl req -subj "/O=pf-mdm") and authenticate with mdm.etcd.user/password`,
          GrpcCode.INVALID_ARGUMENT,
        );
      }
      throw new EtcdError(`etcd ${endpoint}${path}: HTTP ${res.status}, body is not JSON`, res.status >= 500 ? null : GrpcCode.INVALID_ARGUMENT);
    }
    if (!res.ok) {
      const g = GatewayError.safeParse(json);
      const code = g.success ? (g.data.code ?? null) : null;
      const msg = g.success ? (g.data.message ?? g.data.error ?? `HTTP ${res.status}`) : `HTTP ${res.status}`;
      if (code === GrpcCode.PERMISSION_DENIED) {
        throw new EtcdError(`etcd ${endpoint}${path}: ${msg}: etcd user ${this.security.user ?? "(none)"} needs readwrite on the cluster's prefix (etcdctl role grant-permission ROLE --prefix=true readwrite /pf/)`, code);
      }
      if (code === GrpcCode.UNAUTHENTICATED && headers.authorization !== undefined) this.dropToken(headers.authorization);
      if (code === GrpcCode.INVALID_ARGUMENT && /user name is empty/.test(msg)) {
        throw new EtcdError(`etcd ${endpoint}${path}: ${msg}: this etcd has auth enabled; give mdm.etcd.user and mdm.etcd.password`, code);
      }
      throw new EtcdError(`etcd ${endpoint}${path}: ${msg}`, code ?? (res.status >= 500 ? GrpcCode.UNAVAILABLE : GrpcCode.INVALID_ARGUMENT));
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new EtcdError(`etcd ${endpoint}${path}: unexpected answer: ${parsed.error.message.slice(0, 300)}`, GrpcCode.INVALID_ARGUMENT);
    return parsed.data;
  }
}

/** "127.0.0.1:2379" or "http://127.0.0.1:2379/" -> "http://127.0.0.1:2379" (https:// kept). */
export function normaliseEndpoint(e: string): string {
  const withScheme = /^[a-z]+:\/\//.test(e) ? e : `http://${e}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new PfError("BAD_REQUEST", `etcd endpoint ${JSON.stringify(e)} is not HOST:PORT or http://HOST:PORT`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new PfError("BAD_REQUEST", `etcd endpoint ${e}: use http:// or https://`);
  return u.origin;
}

export type { Header };
