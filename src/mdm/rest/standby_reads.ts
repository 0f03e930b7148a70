// Which requests a standby MDM answers itself (HA mode), from the state it follows by watch:
// everything here reads only replicated sqlite rows, the etcd cluster view or the MDM's own
// process, and writes nothing. The rest stays leader-only (421 naming the active MDM):
// - every mutation, login/logout (tokens are rows: a standby is query_only), SDS/SDC join and
//   heartbeats (the cluster API): only the active MDM hands out leases, grants and terms;
// - reads that need live heartbeat state, which only the active MDM has in memory:
//   Sds and Sdc objects (mdmConnectionState), StoragePool objects (rebuild/rebalance status comes
//   from the recovery view, which reads SDS liveness), every Statistics relationship and
//   querySelectedStatistics (IO rates from heartbeats), queryRebuild, alerts, /api/pf/live and
//   /api/pf/history, the dashboard, checkVolumeConsistency (asks the SDSs over the data plane).
// A standby's answer carries APPLIED_REVISION_HEADER (the etcd revision its sqlite reflects), so a
// client can tell how fresh it is.

import type { PowerFlexType } from "../../proto/powerflex_api.ts";

/** Object types whose REST rendering reads replicated rows only (no health, no recovery view). */
const STANDBY_TYPES: ReadonlySet<string> = new Set<PowerFlexType>(["System", "ProtectionDomain", "FaultSet", "Device", "Volume", "VTree"]);

const TYPE_LIST = /^\/api\/types\/([A-Za-z]+)\/instances$/;
const INSTANCE = /^\/api\/instances\/([A-Za-z]+)(?:::[^/]+)?$/;
const RELATIONSHIP = /^\/api\/instances\/[A-Za-z]+(?:::[^/]+)?\/relationships\/([A-Za-z]+)$/;
const ID_BY_KEY = /^\/api\/types\/[A-Za-z]+\/instances\/action\/queryIdByKey$/;
const STANDBY_POSTS: ReadonlySet<string> = new Set([
  "/api/instances/System/queryMdmCluster",
  "/api/instances/System/action/queryMdmCluster",
  "/api/instances/System/action/querySystemLimits",
]);

/** May a standby answer this request from its followed state? */
export function servedByStandby(method: string, path: string): boolean {
  if (method === "GET" || method === "HEAD") {
    // not /api/version: pf up and clients probe it to find an MDM that can act (the leader)
    if (path === "/metrics" || path === "/health") return true;
    const m = TYPE_LIST.exec(path) ?? INSTANCE.exec(path) ?? RELATIONSHIP.exec(path);
    return m?.[1] !== undefined && STANDBY_TYPES.has(m[1]);
  }
  if (method === "POST") return STANDBY_POSTS.has(path) || ID_BY_KEY.test(path);
  return false;
}
