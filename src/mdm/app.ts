// The MDM's Hono application and its in-process core: opening the database, creating the System
// on first start, the admin user, and the token store; GET /metrics (no token) beside /api and
// /pf/v1, and a middleware counting every request by route pattern. Tests use openMdmCore +
// app.request; the server (main.ts) wraps the same app in Bun.serve with TLS. One error handler for every route:
// PfError -> PowerFlex-shaped body with pfCode and status; anything else -> INTERNAL, logged.
// The metadata store (mdm/ha) is sqlite unless openMeta gives another one; whenever this MDM
// becomes the active one, the in-memory state is started afresh from the database (every SDS
// and SDC seen "now", tokens reloaded, recovery progress empty).

import { authorityFrom } from "../proto/dataplane_tls.ts";
import type { SelfSignedCert } from "../proto/tls_cert.ts";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import consola from "consola";
import { Hono } from "hono";
import { matchedRoutes } from "hono/route";
import { CLUSTER_API_PREFIX } from "../proto/cluster_api.ts";
import { isPfError } from "../proto/errors.ts";
import { openMdmDb } from "../store/mdm_db.ts";
import { ADMIN_USER, TokenStore, type TokenStoreOptions } from "./core/auth.ts";
import { clusterRoutes } from "./cluster/cluster_routes.ts";
import { adoptCopyLogHandoff, saveCopyLogHandoff } from "./cluster/copy_log.ts";
import type { MdmContext } from "./core/context.ts";
import { HealthTracker } from "./core/health.ts";
import { asPfError, errorResponse, HttpError } from "./core/http_edge.ts";
import { restRoutes } from "./rest/rest_routes.ts";
import { dashboardRoutes } from "./dashboard/dashboard_routes.ts";
import { currentMapVersion, ensureSystem } from "./core/system_state.ts";
import { recoveryConfigOf, RecoveryRuntime, type RecoveryOptions } from "./recovery/runtime.ts";
import { sdcTable, sdsTable } from "../store/mdm_schema.ts";
import { ObserveRuntime } from "./observe/runtime.ts";
import type { WebhookOptions } from "./observe/alert_webhook.ts";
import { loadActiveAlerts } from "./observe/alerts.ts";
import { renderMdmMetrics } from "./observe/mdm_metrics.ts";
import { TEXT_CONTENT_TYPE } from "../proto/metrics_text.ts";
import type { MdmDb } from "../store/mdm_db.ts";
import type { MdmMetaStore } from "./ha/meta_store.ts";
import { SqliteMetaStore } from "./ha/sqlite_meta_store.ts";
import { leaderGate, MDM_ROLE_PATH } from "./core/leader_gate.ts";
import { servedByStandby } from "./rest/standby_reads.ts";

/** Build the Hono app serving /api (PowerFlex REST), /pf/v1 (cluster API) and /dashboard/ (web UI). */
export function createMdmApp(ctx: MdmContext, opts: { clusterSecret: string }): Hono {
  const app = new Hono();
  app.onError((e, c) => {
    const err = asPfError(e);
    if (!isPfError(e)) consola.error(`mdm: ${c.req.method} ${c.req.path} failed:`, e);
    else if (err.code === "INTERNAL") consola.error(`mdm: ${c.req.method} ${c.req.path}: ${err.message}`);
    return errorResponse(c, err);
  });
  app.notFound((c) => errorResponse(c, new HttpError("NOT_FOUND", 404, `no such path ${c.req.path}`)));
  // REST request count and latency by route pattern (the registered path, never the raw one)
  app.use("*", async (c, next) => {
    const t0 = performance.now();
    await next();
    const route = matchedRoutes(c)[c.req.routeIndex]?.path ?? "*";
    ctx.observe.rest.observe(c.req.method, route, c.res.status, (performance.now() - t0) / 1000);
  });
  // a standby answers 421 naming the leader (core/leader_gate.ts), but for the role path and the
  // reads safe from its followed state (rest/standby_reads.ts)
  app.use("*", leaderGate(() => ctx.meta, servedByStandby));
  app.get(MDM_ROLE_PATH, (c) => {
    const m = ctx.meta;
    return c.json({ id: m.mdmId, kind: m.kind, role: m.isLeader() ? "leader" : "standby", term: m.term(), appliedRevision: m.appliedRevision(), leader: m.leader(), mapVersion: currentMapVersion(ctx), stats: m.stats });
  });
  // liveness of this MDM process (no token): 200 on the active MDM and on a standby alike
  app.get("/health", (c) => {
    const m = ctx.meta;
    return c.json({ status: "ok", kind: m.kind, role: m.isLeader() ? "leader" : "standby", term: m.term(), appliedRevision: m.appliedRevision(), leader: m.leader()?.url ?? null });
  });
  // Prometheus scrape: read-only and without a token (docs/design.md, "Observability")
  app.get("/metrics", (c) => c.body(renderMdmMetrics(ctx), 200, { "content-type": TEXT_CONTENT_TYPE }));
  app.route("/api", restRoutes(ctx));
  app.route(CLUSTER_API_PREFIX, clusterRoutes(ctx, opts.clusterSecret));
  app.route("/", dashboardRoutes(ctx));
  return app;
}

export interface MdmCoreOptions {
  dataDir: string;
  clusterSecret: string;
  /** set the admin password to this (hash stored); when undefined an existing hash is kept */
  adminPassword?: string;
  clock?: () => number;
  random?: () => number;
  listenHost?: string;
  listenPort?: number;
  tokens?: TokenStoreOptions;
  /** heartbeat timeout, rebuild grace period, stall timeout (defaults in Limits) */
  recovery?: RecoveryOptions;
  /** POST every alert raised and cleared to this URL (JSON); absent: no webhook */
  alertWebhook?: WebhookOptions;
  /** pf's version (pf_build_info) */
  version?: string;
  /** the metadata store over the opened database (default: sqlite alone, SqliteMetaStore) */
  openMeta?: (store: MdmDb) => Promise<MdmMetaStore>;
  /** data-plane TLS on: the CA that certifies nodes at join (src/proto/dataplane_tls.ts) */
  dataPlaneTlsCa?: SelfSignedCert;
}

export interface MdmCore {
  ctx: MdmContext;
  app: Hono;
  close(): void;
}

/** Open (or create) the MDM state in dataDir and build its app, without any socket. */
export async function openMdmCore(opts: MdmCoreOptions): Promise<MdmCore> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const clock = opts.clock ?? Date.now;
  const recovery = new RecoveryRuntime(recoveryConfigOf(opts.recovery));
  const store = openMdmDb(join(opts.dataDir, "mdm.db"));
  let meta: MdmMetaStore | null = null;
  try {
    meta = opts.openMeta ? await opts.openMeta(store) : new SqliteMetaStore(store.sqlite);
    const system = ensureSystem(store, clock());
    const tokens = new TokenStore(store, clock, opts.tokens);
    if (opts.adminPassword !== undefined) await tokens.setPassword(ADMIN_USER, opts.adminPassword);
    const ctx: MdmContext = {
      store,
      meta,
      clock,
      random: opts.random ?? Math.random,
      health: new HealthTracker(clock, recovery.config.heartbeatTimeoutMs),
      recovery,
      observe: new ObserveRuntime({ startedAtMs: clock(), heartbeatTimeoutMs: recovery.config.heartbeatTimeoutMs, webhook: opts.alertWebhook, version: opts.version }),
      tokens,
      systemId: system.id,
      listenHost: opts.listenHost ?? "127.0.0.1",
      listenPort: opts.listenPort ?? 0,
      ...(opts.dataPlaneTlsCa === undefined ? {} : { dataPlaneTls: authorityFrom(opts.dataPlaneTlsCa, system.id) }),
    };
    // an MDM (re)start vouches for nobody yet but declares nobody down before a full timeout
    ctx.health.seedAll(
      store.db.select({ id: sdsTable.id }).from(sdsTable).all().map((r) => r.id),
      store.db.select({ id: sdcTable.id }).from(sdcTable).all().map((r) => r.id),
    );
    loadActiveAlerts(ctx);
    // after a clean stop the SDSs' held answers can go on by deltas (cluster/copy_log.ts)
    adoptCopyLogHandoff(ctx);
    meta.onLeadershipChange((leader) => {
      if (!leader) return;
      restartVolatileState(ctx, opts.tokens);
      // alerts raised by the previous leader are in the shared state: pick them up
      loadActiveAlerts(ctx);
    });
    const app = createMdmApp(ctx, { clusterSecret: opts.clusterSecret });
    return {
      ctx,
      app,
      close: () => {
        ctx.health.releaseWaiters();
        ctx.observe.close();
        try {
          saveCopyLogHandoff(ctx);
        } catch (e) {
          consola.warn(`mdm: the copy log hand-off was not written (${(e as Error).message}): every SDS gets its full assignments after the next start`);
        }
        store.close();
      },
    };
  } catch (e) {
    await meta?.close();
    store.close();
    throw e;
  }
}

/**
 * This MDM just became the active one (HA takeover): what lives only in memory starts over
 * from the database. Every SDS and SDC counts as seen now, so none is declared lost before a
 * full heartbeat timeout from the takeover (the old MDM's leases may still run); tokens issued
 * by the old MDM are loaded; recovery progress restarts from the SDSs' next reports.
 */
export function restartVolatileState(ctx: MdmContext, tokens?: TokenStoreOptions): void {
  ctx.health.releaseWaiters();
  ctx.health = new HealthTracker(ctx.clock, ctx.recovery.config.heartbeatTimeoutMs);
  ctx.health.seedAll(
    ctx.store.db.select({ id: sdsTable.id }).from(sdsTable).all().map((r) => r.id),
    ctx.store.db.select({ id: sdcTable.id }).from(sdcTable).all().map((r) => r.id),
  );
  ctx.tokens = new TokenStore(ctx.store, ctx.clock, tokens);
  ctx.recovery = new RecoveryRuntime(ctx.recovery.config);
}
