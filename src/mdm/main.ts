// `pf mdm` entry: resolve secrets and TLS, open the state in the data dir, serve the REST API and
// the cluster API on one port (HTTPS unless plain HTTP was asked for on a loopback address).
// runMdm returns once the server listens and the recovery timer runs (failure detection and the
// rebuild planner, every Limits.recoveryTickMs) and the observe timer (history sample and
// alerts, every Limits.observeTickMs); stop() ends the timers, closes the socket, then the
// database.
//
// HA mode (opts.ha: etcd endpoints): the cluster secret and the CA come from etcd (etcd_setup.ts,
// loaded by dynamic import, as is every etcd module: sqlite mode never loads them), the metadata
// store is EtcdMetaStore, and only the active MDM runs the recovery timer; its decisions are
// committed to etcd right after each tick (the HTTP edge also commits before answering).

import { ADMIN_USER } from "./core/auth.ts";
import { Limits } from "../proto/limits.ts";
import { PfError } from "../proto/errors.ts";
import { isLoopbackHost } from "../proto/mdm_http.ts";
import consola from "consola";
import { openMdmCore } from "./app.ts";
import { startLagProbe } from "./cluster/fetch_shedding.ts";
import { recoveryTick } from "./recovery/recovery.ts";
import { recoverySignature } from "./recovery/recovery_view.ts";
import { pacedWaitMs, RecoveryPacer, SHARE as PACE_SHARE } from "./recovery/tick_pacing.ts";
import { observeTick } from "./observe/observe_tick.ts";
import { X509Certificate } from "node:crypto";
import { isWildcardHost, planAdminPassword, resolveClusterSecret, resolveDataPlaneCa, resolveTls } from "./secrets.ts";
import type { EtcdSecurity } from "../store/etcd_client.ts";
import { refuseInsecureTlsEnv } from "../proto/dataplane_tls.ts";
import type { MdmDb } from "../store/mdm_db.ts";
import { mkdirSync } from "node:fs";
import { MDM_MIGRATIONS } from "../store/mdm_migrate.ts";
import type { MdmMetaStore } from "./ha/meta_store.ts";
import { SqliteMetaStore } from "./ha/sqlite_meta_store.ts";
import type { LeaseTiming } from "./ha/lease_session.ts";
import { CATCH_UP_SHARE, StartCatchUp, TickLateness } from "./core/health.ts";

/** a recovery tick later than its period by more than this means the MDM itself stood still */
const STALL_SLACK_MS = 750;

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
  /** HA mode: the metadata lives in etcd and several MDMs take turns being active */
  ha?: MdmHaOptions;
  /** TLS on every data-plane connection (cluster YAML dataPlane.tls); nodes are told at join */
  dataPlaneTls?: boolean;
}

export interface MdmHaOptions {
  etcdEndpoints: string[];
  /** TLS (CA, client certificate) and auth (user, password) for etcd */
  etcdSecurity?: EtcdSecurity;
  /** keys live under /pf/<cluster>/ */
  cluster: string;
  /** this MDM's name in the cluster view */
  name: string;
  timing?: LeaseTiming;
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
  const ha = opts.ha ? await openHa(opts, listenHost) : null;
  const clusterSecret = ha?.clusterSecret ?? resolveClusterSecret(opts.dataDir, opts.clusterSecret);
  const tls = opts.plainHttp ? null : (ha?.tls ?? resolveTls(opts.dataDir, listenHost, { certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile }));
  if (opts.dataPlaneTls === true) refuseInsecureTlsEnv();
  // HA: one CA for every MDM (etcd identity), so a node certified by one MDM is trusted by all
  const dataPlaneTlsCa = opts.dataPlaneTls === true ? (ha?.ca ?? resolveDataPlaneCa(opts.dataDir)) : undefined;
  const core = await openMdmCore({
    ...(dataPlaneTlsCa === undefined ? {} : { dataPlaneTlsCa }),
    openMeta: ha?.openMeta,
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
    const hasAdmin = core.ctx.tokens.hasUser(ADMIN_USER);
    const plan = planAdminPassword(opts.dataDir, opts.adminPassword, hasAdmin);
    // HA: the cluster's admin password is set once, at bootstrap; a standby's write would be undone
    if (plan.kind === "set" && !(ha !== null && hasAdmin)) {
      await core.ctx.tokens.setPassword(ADMIN_USER, plan.password);
      adminPassword = plan.password;
    } else {
      adminPassword = plan.kind === "keep" ? plan.knownPassword : plan.password;
    }
  } catch (e) {
    await core.ctx.meta.close();
    core.close();
    throw e;
  }
  // a real server sheds fetches while it is behind (cluster/fetch_shedding.ts)
  startLagProbe();
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
    await core.ctx.meta.close();
    core.close();
    throw new PfError("UNAVAILABLE", `MDM cannot listen on ${opts.listenHost}:${opts.listenPort}: ${(e as Error).message}`);
  }
  const port = server.port ?? opts.listenPort;
  core.ctx.listenPort = port;
  const url = `${tls ? "https" : "http"}://${urlHost(listenHost)}:${port}`;
  const meta = core.ctx.meta;
  if (meta instanceof SqliteMetaStore) meta.setUrl(url);
  await meta.start();
  await meta.commit().catch((e: unknown) => consola.warn(`mdm: first commit failed: ${(e as Error).message}`));
  if (core.ctx.dataPlaneTls !== undefined) consola.info("mdm: data-plane TLS on: every SDC, SDS and MDM data-plane connection is TLS, certificates issued at join");
  consola.info(`mdm: system ${core.ctx.systemId} serving ${url} (data in ${opts.dataDir}; ${meta.kind === "etcd" ? `HA, ${meta.isLeader() ? "active" : "standby"}, term ${meta.term()}` : `term ${meta.term()}`})`);
  // a step that keeps failing logs once a minute, not four times a second
  let lastFailure = { text: "", atMs: 0 };
  // Both timers below may run before the heartbeats that queued up while the MDM stood still:
  // the stall must not count as silence of every node (a mass "SDS down" and its alerts on
  // waking up). Whichever runs first measures it (the gap since either last ran) and forgives it.
  const lateness = new TickLateness(Limits.recoveryTickMs, STALL_SLACK_MS);
  // an MDM start under load: the time it answers too few beats does not count against nodes
  const catchUp = new StartCatchUp(() => core.ctx.health, core.ctx.clock, Limits.heartbeatIntervalMs);
  let catchUpLogged = false;
  const forgiveOwnStall = () => {
    if (catchUp.tick() > 0 && !catchUpLogged) {
      catchUpLogged = true;
      // info, not warn: every restart of a whole cluster (pf up) meets it while the nodes come back
      consola.info(`mdm: fewer than ${Math.round(CATCH_UP_SHARE * 100)} % of the known nodes' heartbeats arrive since this MDM started (nodes still starting, or this MDM catching up): that time does not count against any node, for at most ${Math.round(catchUp.maxMs / 1000)} s`);
    }
    const stalledMs = lateness.late();
    if (stalledMs === 0) return;
    core.ctx.health.forgiveStall(stalledMs);
    consola.warn(`mdm: this MDM stood still for ${Math.round(stalledMs)} ms (event loop blocked or process stopped); every SDS's and SDC's heartbeat deadline moved by that much`);
  };
  // a dear recovery step waits for its cost / SHARE unless an SDS or a device changed state
  const pacer = new RecoveryPacer();
  let lastPacedWarnMs = -Infinity;
  const timer = setInterval(() => {
    try {
      forgiveOwnStall();
      if (!core.ctx.meta.isLeader()) return; // a standby decides nothing
      const t0 = performance.now();
      const signature = recoverySignature(core.ctx);
      if (pacer.due(t0, signature)) {
        const step = recoveryTick(core.ctx);
        const costMs = performance.now() - t0;
        pacer.ran(t0, costMs, signature, step.repairsLeft + step.failoversLeft);
        const waitMs = pacedWaitMs(costMs, PACE_SHARE);
        if (waitMs > 0 && t0 - lastPacedWarnMs >= 60_000) {
          lastPacedWarnMs = t0;
          consola.warn(`mdm: a recovery step took ${Math.round(costMs)} ms; while steps are this dear the next waits ${Math.round(waitMs)} ms unless an SDS or a device changes state (${pacer.skipped} ticks left out so far)`);
        }
      }
      if (core.ctx.meta.hasPending()) {
        core.ctx.meta.commit().catch((e: unknown) => consola.warn(`mdm: recovery decisions not committed: ${(e as Error).message}`));
      }
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
      forgiveOwnStall();
      if (!core.ctx.meta.isLeader()) return; // a standby hears no heartbeats and raises no alert
      observeTick(core.ctx);
      if (core.ctx.meta.hasPending()) {
        core.ctx.meta.commit().catch((e: unknown) => consola.warn(`mdm: alert changes not committed: ${(e as Error).message}`));
      }
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
      await core.ctx.meta.close();
      core.close();
    },
  };
}

interface HaOpened {
  clusterSecret: string;
  /** the cluster CA in etcd (also the data-plane CA when data-plane TLS is on) */
  ca: { certPem: string; keyPem: string };
  tls: { certPem: string; keyPem: string; certFile: string } | null;
  openMeta: (store: MdmDb) => Promise<MdmMetaStore>;
}

/** HA mode's identity, certificate and store factory (etcd code loaded here, on demand). */
async function openHa(opts: MdmOptions, listenHost: string): Promise<HaOpened> {
  const ha = opts.ha!;
  if (opts.listenPort === 0) throw new PfError("BAD_REQUEST", "an MDM in HA mode needs a fixed port (other MDMs and clients are told its URL)");
  if (isWildcardHost(listenHost)) throw new PfError("BAD_REQUEST", `an MDM in HA mode must listen on its own address, not ${listenHost} (clients are told that address)`);
  const setup = await import("./ha/etcd_setup.ts");
  // a single MDM's data dir moving to etcd: the cluster it creates keeps its secret and certificate
  const identity = await setup.resolveHaIdentity(ha.etcdEndpoints, ha.cluster, opts.clusterSecret ?? (process.env.PF_CLUSTER_SECRET || undefined), ha.etcdSecurity, setup.sqliteIdentityOf(opts.dataDir));
  const custom = opts.tlsCertFile !== undefined || opts.tlsKeyFile !== undefined;
  const tls = opts.plainHttp ? null : custom ? resolveTls(opts.dataDir, listenHost, { certFile: opts.tlsCertFile, keyFile: opts.tlsKeyFile }) : setup.issueMdmCert(opts.dataDir, [listenHost], ha.name, identity);
  const url = `${tls ? "https" : "http"}://${urlHost(listenHost)}:${opts.listenPort}`;
  const mdmId = setup.mdmIdOf(opts.dataDir);
  const schemaVersion = MDM_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), -1);
  return {
    clusterSecret: identity.clusterSecret,
    ca: { certPem: identity.caCertPem, keyPem: identity.caKeyPem },
    tls,
    openMeta: (store) =>
      setup.EtcdMetaStore.open({ sqlite: store.sqlite, endpoints: ha.etcdEndpoints, security: ha.etcdSecurity, cluster: ha.cluster, mdmId, name: ha.name, url, schemaVersion, timing: ha.timing }),
  };
}
