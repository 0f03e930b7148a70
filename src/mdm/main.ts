// `pf mdm` entry: resolve secrets and TLS, open the state in the data dir, serve the REST API and
// the cluster API on one port (HTTPS unless plain HTTP was asked for on a loopback address).
// runMdm returns once the server listens and the recovery timer runs (failure detection and the
// rebuild planner, every Limits.recoveryTickMs) and the observe timer (history sample and
// alerts, every Limits.observeTickMs); stop() ends the timers, closes the socket, then the
// database.

import { ADMIN_USER } from "./core/auth.ts";
import { Limits } from "../proto/limits.ts";
import { PfError } from "../proto/errors.ts";
import { isLoopbackHost } from "../proto/mdm_http.ts";
import consola from "consola";
import { openMdmCore } from "./app.ts";
import { recoveryTick } from "./recovery/recovery.ts";
import { observeTick } from "./observe/observe_tick.ts";
import { X509Certificate } from "node:crypto";
import { isWildcardHost, planAdminPassword, resolveClusterSecret, resolveTls } from "./secrets.ts";
import { mkdirSync } from "node:fs";

export { createMdmApp, openMdmCore, type MdmCore, type MdmCoreOptions } from "./app.ts";

export const DEFAULT_MDM_LISTEN_PORT = 6611;

export interface MdmOptions {
  dataDir: string;
  listenHost: string;
  /** 0 = pick a free port */
  listenPort: number;
  clusterSecret?: string;
  adminPassword?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  plainHttp?: boolean;
  clock?: () => number;
  /** an SDS/SDC silent this long is Disconnected and its copies degrade (default Limits.heartbeatTimeoutMs) */
  heartbeatTimeoutMs?: number;
  /** a lost SDS back within this resyncs instead of being rebuilt elsewhere (default Limits.rebuildGraceMs) */
  rebuildGraceMs?: number;
  /** recovery work with no progress this long raises the stall alert (default Limits.rebuildStallTimeoutMs) */
  stallTimeoutMs?: number;
  /** POST alerts raised and cleared to this URL (JSON), retried with backoff */
  alertWebhookUrl?: string;
  /** pf's version (pf_build_info) */
  version?: string;
}

export interface MdmHandle {
  url: string;
  port: number;
  certPem: string | null;
  certFile: string | null;
  clusterSecret: string;
  /** only when generated or given (or readable from DATA_DIR/admin-password) */
  adminPassword: string | null;
  stop(): Promise<void>;
}

function urlHost(listenHost: string): string {
  const h = isWildcardHost(listenHost) ? "127.0.0.1" : listenHost.replace(/^\[|\]$/g, "");
  return h.includes(":") ? `[${h}]` : h;
}

function checkedWebhookUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PfError("BAD_REQUEST", `alert webhook ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new PfError("BAD_REQUEST", `alert webhook ${url} must be http:// or https://`);
  return url;
}

export async function runMdm(opts: MdmOptions): Promise<MdmHandle> {
  const listenHost = opts.listenHost.replace(/^\[|\]$/g, "");
  if (opts.plainHttp && !isLoopbackHost(listenHost)) {
    throw new PfError(
      "BAD_REQUEST",
      `plain HTTP is only allowed on a loopback address (127.0.0.1, ::1, localhost), not ${opts.listenHost}; drop --plain-http to serve HTTPS`,
    );
  }
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const clusterSecret = resolveClusterSecret(opts.dataDir, opts.clusterSecret);
  const tls = opts.plainHttp ? null : resolveTls(opts.dataDir, listenHost, { certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile });
  const core = await openMdmCore({
    dataDir: opts.dataDir,
    clusterSecret,
    clock: opts.clock,
    listenHost,
    listenPort: opts.listenPort,
    recovery: { heartbeatTimeoutMs: opts.heartbeatTimeoutMs, rebuildGraceMs: opts.rebuildGraceMs, stallTimeoutMs: opts.stallTimeoutMs },
    version: opts.version,
    ...(opts.alertWebhookUrl ? { alertWebhook: { url: checkedWebhookUrl(opts.alertWebhookUrl) } } : {}),
  });
  if (tls) core.ctx.observe.certValidToMs = new X509Certificate(tls.certPem).validToDate.getTime();
  let adminPassword: string | null;
  try {
    const plan = planAdminPassword(opts.dataDir, opts.adminPassword, core.ctx.tokens.hasUser(ADMIN_USER));
    if (plan.kind === "set") {
      await core.ctx.tokens.setPassword(ADMIN_USER, plan.password);
      adminPassword = plan.password;
    } else {
      adminPassword = plan.knownPassword;
    }
  } catch (e) {
    core.close();
    throw e;
  }
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: listenHost,
      port: opts.listenPort,
      fetch: core.app.fetch,
      // our handlers answer bodies over their limit (Limits.restMaxBodyBytes, heartbeats
      // Limits.heartbeatMaxBodyBytes) with a JSON error; Bun cuts off anything larger first
      maxRequestBodySize: Math.max(Limits.restMaxBodyBytes * 4, Limits.heartbeatMaxBodyBytes),
      ...(tls ? { tls: { cert: tls.certPem, key: tls.keyPem } } : {}),
    });
  } catch (e) {
    core.close();
    throw new PfError("UNAVAILABLE", `MDM cannot listen on ${opts.listenHost}:${opts.listenPort}: ${(e as Error).message}`);
  }
  const port = server.port ?? opts.listenPort;
  core.ctx.listenPort = port;
  const url = `${tls ? "https" : "http"}://${urlHost(listenHost)}:${port}`;
  consola.info(`mdm: system ${core.ctx.systemId} serving ${url} (data in ${opts.dataDir})`);
  // a step that keeps failing logs once a minute, not four times a second
  let lastFailure = { text: "", atMs: 0 };
  const timer = setInterval(() => {
    try {
      recoveryTick(core.ctx);
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      const now = Date.now();
      if (text !== lastFailure.text || now - lastFailure.atMs >= 60_000) {
        consola.error("mdm: recovery step failed:", e);
        lastFailure = { text, atMs: now };
      }
    }
  }, Limits.recoveryTickMs);
  const observeTimer = setInterval(() => {
    try {
      observeTick(core.ctx);
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      const now = Date.now();
      if (text !== lastFailure.text || now - lastFailure.atMs >= 60_000) {
        consola.error("mdm: observe step (history, alerts) failed:", e);
        lastFailure = { text, atMs: now };
      }
    }
  }, Limits.observeTickMs);
  if (opts.alertWebhookUrl) consola.info(`mdm: alerts are POSTed to ${opts.alertWebhookUrl}`);
  let stopped = false;
  return {
    url,
    port,
    certPem: tls?.certPem ?? null,
    certFile: tls?.certFile ?? null,
    clusterSecret,
    adminPassword,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      clearInterval(observeTimer);
      await server.stop(true);
      core.close();
    },
  };
}
