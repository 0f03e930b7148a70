// The MDM's shared state handed to every service and route: the database, the injected clock
// and random source, the in-memory health tracker, the recovery runtime and the observe runtime. Services are plain functions of this
// context, so tests drive them with a fake clock and a seeded random source.

import type { MdmDb } from "../../store/mdm_db.ts";
import type { HealthTracker } from "./health.ts";
import type { TokenStore } from "./auth.ts";
import type { RecoveryRuntime } from "../recovery/runtime.ts";
import type { ObserveRuntime } from "../observe/runtime.ts";
import type { MdmMetaStore } from "../ha/meta_store.ts";
import type { DataPlaneAuthority } from "../../proto/dataplane_tls.ts";

export interface MdmContext {
  store: MdmDb;
  /** who may act (leadership, term) and where changes become durable (sqlite or etcd) */
  meta: MdmMetaStore;
  /** ms since the epoch; injected so heartbeats and token expiry are testable */
  clock: () => number;
  /** uniform [0, 1); placement's tie breaker */
  random: () => number;
  health: HealthTracker;
  /** recovery settings (timeouts, lease, grace) and in-memory progress */
  recovery: RecoveryRuntime;
  /** IO accounting from heartbeats, history ring, active alerts, webhook, REST counters */
  observe: ObserveRuntime;
  tokens: TokenStore;
  systemId: string;
  /** address clients were told to use (for mdmCluster / System ip lists) */
  listenHost: string;
  listenPort: number;
  /** data-plane TLS on (cluster YAML dataPlane.tls): the CA that certifies nodes at join; absent: off */
  dataPlaneTls?: DataPlaneAuthority;
}

/** Run fn in one sqlite transaction: every change in it commits together or not at all. */
export function inTransaction<T>(ctx: MdmContext, fn: () => T): T {
  return ctx.store.sqlite.transaction(fn)();
}
