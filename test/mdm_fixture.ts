// Shared fixture of the MDM tests: an in-process MDM core (no socket) in a fresh temp dir with a
// fake clock, plus helpers to call the REST API as PowerFlex clients do (Basic auth with the
// token as password) and to join SDSs/SDCs through the cluster API.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER } from "../src/proto/cluster_api.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { nodeTokenOf } from "../src/mdm/core/dataplane_secrets.ts";
import { Units } from "../src/proto/limits.ts";
import { openMdmCore, type MdmCore, type MdmCoreOptions } from "../src/mdm/app.ts";
import type { RecoveryOptions } from "../src/mdm/recovery/runtime.ts";
import type { WebhookOptions } from "../src/mdm/observe/alert_webhook.ts";

export const SECRET = "test-cluster-secret-0123456789";
export const ADMIN_PASSWORD = "Scaleio123";

export interface Reply {
  status: number;
  json: unknown;
  text: string;
}

export class FakeClock {
  constructor(public nowMs = 1_700_000_000_000) {}
  now = (): number => this.nowMs;
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

export class MdmFixture {
  token = "";
  private constructor(
    readonly dir: string,
    readonly core: MdmCore,
    readonly clock: FakeClock,
  ) {}

  static async open(
    opts: { dir?: string; clock?: FakeClock; seed?: number; tokens?: { idleTimeoutMs?: number; maxTokens?: number }; recovery?: RecoveryOptions; alertWebhook?: WebhookOptions; openMeta?: MdmCoreOptions["openMeta"]; dataPlaneTlsCa?: MdmCoreOptions["dataPlaneTlsCa"] } = {},
  ): Promise<MdmFixture> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "pf-mdm-test-"));
    const clock = opts.clock ?? new FakeClock();
    let seed = opts.seed ?? 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const core = await openMdmCore({ dataDir: join(dir, "mdm"), clusterSecret: SECRET, adminPassword: ADMIN_PASSWORD, clock: clock.now, random, tokens: opts.tokens, recovery: opts.recovery, ...(opts.alertWebhook ? { alertWebhook: opts.alertWebhook } : {}), openMeta: opts.openMeta, ...(opts.dataPlaneTlsCa ? { dataPlaneTlsCa: opts.dataPlaneTlsCa } : {}) });
    await core.ctx.meta.start();
    return new MdmFixture(dir, core, clock);
  }

  /** Close the metadata store too (HA mode), then the core. */
  async closeAll(opts: { keepDir?: boolean } = {}): Promise<void> {
    await this.core.ctx.meta.close();
    this.close(opts);
  }

  close(opts: { keepDir?: boolean } = {}): void {
    this.core.close();
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  async raw(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
    const res = await this.core.app.request(path, { method, body: init.body, headers: init.headers });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text.length > 0 ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, json, text };
  }

  /** REST call with the current token as Basic password (user name ignored by the MDM). */
  api(method: "GET" | "POST", path: string, body?: unknown, user = "admin"): Promise<Reply> {
    const headers: Record<string, string> = { authorization: basic(user, this.token) };
    if (body !== undefined) headers["content-type"] = "application/json";
    return this.raw(method, `/api${path}`, { body: body === undefined ? undefined : JSON.stringify(body), headers });
  }

  async login(password = ADMIN_PASSWORD): Promise<string> {
    const r = await this.raw("GET", "/api/login", { headers: { authorization: basic("admin", password) } });
    if (r.status !== 200 || typeof r.json !== "string") throw new Error(`login failed: ${r.status} ${r.text}`);
    this.token = r.json;
    return r.json;
  }

  /** As the logged-in user (admin): create a user with a role and a password, log it in, return its token. */
  async userToken(name: string, role: string, password = `pw-${name}-0123`): Promise<string> {
    const created = await this.api("POST", "/types/User/instances", { name, userRole: role, password });
    if (created.status !== 200) throw new Error(`creating user ${name} failed: ${created.status} ${created.text}`);
    const r = await this.raw("GET", "/api/login", { headers: { authorization: basic(name, password) } });
    if (r.status !== 200 || typeof r.json !== "string") throw new Error(`login of ${name} failed: ${r.status} ${r.text}`);
    return r.json;
  }

  /** Run fn with API calls made as `token`, then as before. */
  async as<T>(token: string, fn: () => Promise<T>): Promise<T> {
    const saved = this.token;
    this.token = token;
    try {
      return await fn();
    } finally {
      this.token = saved;
    }
  }

  /**
   * Cluster API call as the node the path names would make it: with the cluster secret and, on
   * per-node paths, that node's token (`nodeToken: null` leaves it out, a string replaces it).
   */
  cluster(method: "GET" | "POST", path: string, body?: unknown, secret = SECRET, nodeToken?: string | null): Promise<Reply> {
    const headers: Record<string, string> = { [CLUSTER_SECRET_HEADER]: secret };
    const m = /^\/(sds|sdc)\/([0-9a-f]{16})\//.exec(path);
    if (m && nodeToken !== null) headers[NODE_TOKEN_HEADER] = nodeToken ?? nodeTokenOf(this.core.ctx, m[1] === "sds" ? NodeRole.SDS : NodeRole.SDC, m[2]!);
    if (body !== undefined) headers["content-type"] = "application/json";
    return this.raw(method, CLUSTER_API_PREFIX + path, { body: body === undefined ? undefined : JSON.stringify(body), headers });
  }

  /** Join an SDS with fake devices (capacity in GiB) and return its join answer. */
  async joinSds(
    name: string,
    opts: { port?: number; host?: string; pd?: string; pool?: string; faultSet?: string; devicesGiB?: number[]; hostRebooted?: boolean } = {},
  ): Promise<{ sdsId: string; devices: { deviceId: string; path: string }[] }> {
    const devices = (opts.devicesGiB ?? [100]).map((g, i) => ({ path: `/dev/fake-${name}-${i}`, capacityBytes: g * Units.GiB }));
    const r = await this.cluster("POST", "/sds/join", {
      name,
      host: opts.host ?? "127.0.0.1",
      dataPort: opts.port ?? 7000 + Number.parseInt(name.replace(/\D/g, "") || "0", 10),
      protectionDomainName: opts.pd ?? "pd1",
      storagePoolName: opts.pool ?? "sp1",
      ...(opts.faultSet ? { faultSetName: opts.faultSet } : {}),
      ...(opts.hostRebooted ? { hostRebooted: true } : {}),
      devices,
    });
    if (r.status !== 200) throw new Error(`sds join failed: ${r.status} ${r.text}`);
    return r.json as { sdsId: string; devices: { deviceId: string; path: string }[] };
  }

  async joinSdc(guid: string, name?: string): Promise<string> {
    const r = await this.cluster("POST", "/sdc/join", { guid, host: "127.0.0.1", ...(name ? { name } : {}) });
    if (r.status !== 200) throw new Error(`sdc join failed: ${r.status} ${r.text}`);
    return (r.json as { sdcId: string }).sdcId;
  }

  async idOf(type: string, name: string): Promise<string> {
    const r = await this.api("POST", `/types/${type}/instances/action/queryIdByKey`, { name });
    if (r.status !== 200) throw new Error(`queryIdByKey ${type} ${name}: ${r.status} ${r.text}`);
    return r.json as string;
  }

  /** Everything the REST API shows, for "state unchanged" checks. */
  async snapshot(): Promise<string> {
    const parts: unknown[] = [];
    for (const t of ["ProtectionDomain", "StoragePool", "FaultSet", "Sds", "Device", "Sdc", "Volume"]) {
      const r = await this.api("GET", `/types/${t}/instances`);
      parts.push(t, r.json);
    }
    const ext = this.core.ctx.store.sqlite.query("SELECT * FROM extent ORDER BY volume_id, idx").all();
    const sys = this.core.ctx.store.sqlite.query("SELECT next_counter, map_version FROM system").all();
    const dev = this.core.ctx.store.sqlite.query("SELECT id, assigned_bytes, thick_assigned_bytes FROM device ORDER BY id").all();
    return JSON.stringify([parts, ext, sys, dev]);
  }
}

export const GiB = Units.GiB;
