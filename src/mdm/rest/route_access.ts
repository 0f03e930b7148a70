// Every route of the REST API (/api) with its access class (core/roles.ts), deny by default:
// ROUTE_CLASSES is keyed by "METHOD pattern" exactly as the route is registered; a route whose
// key is missing is refused for every role (test/mdm_users.test.ts checks that none is missing).
// Routes whose class depends on the object type or action (creates, instance actions) look it up
// in CREATE_CLASSES / INSTANCE_ACTION_CLASSES; a type or action missing there is refused too.
// Also here: which calls the audit log records (every non-GET call that is not a query, every
// login and logout, every refused call) and the facts it records about them.

import type { Context } from "hono";
import { matchedRoutes } from "hono/route";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { AccessClass } from "../core/roles.ts";

/** "public": no token needed (login, version). */
export type RouteClass = AccessClass | "public";
type Dynamic = (o: PathObject) => RouteClass;

/** Class of a create (POST /types/{Type}/instances) by type. */
export const CREATE_CLASSES: Record<string, AccessClass> = {
  ProtectionDomain: "backend",
  StoragePool: "backend",
  FaultSet: "backend",
  Sds: "backend",
  Device: "backend",
  Volume: "frontend",
};

/** Class of an instance action (POST /instances/{Type}::{id}/action/{action}) by "Type/action". */
export const INSTANCE_ACTION_CLASSES: Record<string, AccessClass> = {
  "Volume/removeVolume": "frontend",
  "Volume/overwriteVolumeContent": "frontend",
  "Volume/restore": "frontend",
  "Volume/setVolumeAccessModeLimit": "frontend",
  "Volume/setVolumeSize": "frontend",
  "Volume/setVolumeName": "frontend",
  "Volume/addMappedSdc": "frontend",
  "Volume/mapVolumeToSdc": "frontend",
  "Volume/removeMappedSdc": "frontend",
  "Volume/unmapVolumeFromSdc": "frontend",
  "Volume/setVolumeMappingAccessMode": "frontend",
  "Volume/setMappedSdcLimits": "frontend",
  "Sds/removeSds": "backend",
  "Sds/setSdsName": "backend",
  "Device/removeDevice": "backend",
  "Device/setDeviceName": "backend",
  "Sdc/setSdcName": "frontend",
  "Sdc/removeSdc": "frontend",
  "StoragePool/removeStoragePool": "backend",
  "StoragePool/setStoragePoolName": "backend",
  "StoragePool/setSparePercentage": "backend",
  "StoragePool/setCapacityAlertThresholds": "backend",
  "StoragePool/setRebuildIoPriorityPolicy": "backend",
  "StoragePool/setRebalanceIoPriorityPolicy": "backend",
  "StoragePool/setRebuildEnabled": "backend",
  "StoragePool/setRebalanceEnabled": "backend",
  "StoragePool/setWriteCache": "backend",
  "ProtectionDomain/removeProtectionDomain": "backend",
  "ProtectionDomain/setProtectionDomainName": "backend",
  "FaultSet/removeFaultSet": "backend",
  "FaultSet/setFaultSetName": "backend",
  "System/setSystemName": "system",
  "System/setRestrictedSdcMode": "system",
  "System/rotateDataPlaneKey": "system",
  "System/snapshotVolumes": "frontend",
  "System/removeConsistencyGroupSnapshots": "frontend",
};

/** User actions (POST /instances/User::{id}/action/{action}); setPassword is the caller's own. */
export const USER_ACTION_CLASSES: Record<string, AccessClass> = {
  setUserRole: "users",
  removeUser: "users",
  resetPassword: "users",
  setPassword: "self",
};

const TYPE_QUERY_ACTIONS: Record<string, AccessClass> = { queryIdByKey: "read", querySelectedStatistics: "read", queryCurrentUser: "self" };

function refusedUnknown(what: string): never {
  throw new PfError("BAD_REQUEST", what);
}

// route parameters are bound per handler in Hono, so a middleware reads them off the path
type PathObject = ReturnType<typeof objectOfPath>;

const byCreateType: Dynamic = (o) => {
  if (o.objectType === "User") return "users";
  return CREATE_CLASSES[o.objectType] ?? refusedUnknown(`${o.objectType} objects cannot be created through REST`);
};

const byTypeAction: Dynamic = (o) => TYPE_QUERY_ACTIONS[o.action] ?? refusedUnknown(`unknown action ${o.action} on type ${o.objectType}`);

const byInstanceAction: Dynamic = (o) => INSTANCE_ACTION_CLASSES[`${o.objectType}/${o.action}`] ?? refusedUnknown(`unknown action ${o.action} on ${o.objectType}`);

const byUserAction: Dynamic = (o) => USER_ACTION_CLASSES[o.action] ?? refusedUnknown(`unknown action ${o.action} on User`);

/** Every registered /api route (sub-app pattern) and its class. */
export const ROUTE_CLASSES: Record<string, RouteClass | Dynamic> = {
  "GET /login": "public",
  "POST /login": "public",
  "GET /version": "public",
  // registered on the app itself (core/leader_gate.ts): who leads, for clients and standbys
  "GET /pf/mdmRole": "public",
  "GET /logout": "self",
  "POST /logout": "self",
  // observe room
  "GET /types/Alert/instances": "read",
  "GET /instances/:ref{Alert::[^/]+}": "read",
  "POST /instances/querySelectedStatistics": "read",
  "GET /pf/alerts": "read",
  "GET /pf/history": "read",
  "GET /pf/live": "read",
  // users and audit (user_routes.ts)
  "GET /types/User/instances": "users",
  "POST /types/User/instances": "users",
  "POST /types/User/instances/action/queryCurrentUser": "self",
  "GET /instances/:ref{User::[^/]+}": "users",
  "POST /instances/:ref{User::[^/]+}/action/:action": byUserAction,
  "GET /instances/:ref{System::[^/]+}/relationships/User": "users",
  "GET /pf/audit": "audit",
  "POST /pf/audit/verify": "audit",
  // the cluster NBD CA (nbd_ca_routes.ts): its certificate is public, issuing is Security's
  "GET /pf/nbdCa": "certificateList", // public: every role, Security too (it issues against it)
  "POST /pf/nbdCa/issueClientCertificate": "certificates",
  "GET /pf/nbdCa/clientCertificates": "certificateList",
  "POST /pf/nbdCa/revokeClientCertificate": "certificates",
  // storage objects
  "GET /types/:type/instances": "read",
  "POST /types/:type/instances": byCreateType,
  "POST /types/:type/instances/action/:action": byTypeAction,
  "POST /instances/System/action/querySystemLimits": "read",
  "POST /instances/System/queryMdmCluster": "read",
  "POST /instances/System/action/queryMdmCluster": "read",
  "POST /instances/System/action/snapshotVolumes": "frontend",
  "POST /instances/System/action/removeConsistencyGroupSnapshots": "frontend",
  "POST /instances/System/action/changeMdmOwnership": "system",
  "POST /instances/System/action/addStandbyMdm": "system",
  "POST /instances/System/action/removeStandbyMdm": "system",
  "GET /instances/:ref": "read",
  "GET /instances/:ref/relationships/:child": "read",
  "POST /instances/:ref/action/approveSdc": "frontend",
  "POST /instances/:ref/action/checkVolumeConsistency": "read",
  "POST /instances/:ref/action/queryRebuild": "read",
  "POST /instances/:ref/action/:action": byInstanceAction,
};

export const API_PREFIX = "/api";

/** The registered route that will answer this request (not a middleware), as "METHOD pattern". */
export function handlerRouteKey(c: Context): string | null {
  for (const r of matchedRoutes(c)) {
    if (r.method === "ALL") continue; // middleware and the 404 catch-all
    const path = r.path.startsWith(API_PREFIX) ? r.path.slice(API_PREFIX.length) || "/" : r.path;
    return `${r.method} ${path}`;
  }
  return null;
}

/** The access class of this request; null: no route (the 404 catch-all answers). Throws FORBIDDEN for an unclassified route. */
export function classOf(c: Context): RouteClass | null {
  const key = handlerRouteKey(c);
  if (key === null) return null;
  const entry = ROUTE_CLASSES[key];
  if (entry === undefined) throw new PfError("FORBIDDEN", `route ${key} has no access class; refused for every role (deny by default)`);
  return typeof entry === "function" ? entry(objectOfPath(c.req.path)) : entry;
}

/** Does the audit log record this call? Every login/logout, every refusal, every non-GET that is not a query. */
export function isAudited(method: string, cls: RouteClass | null, status: number, routeKey: string | null): boolean {
  if (routeKey !== null && /^(GET|POST) \/(login|logout)$/.test(routeKey)) return true;
  if (status === 403) return true;
  if (method === "GET" || cls === null) return false;
  return cls !== "read" && cls !== "audit" && cls !== "certificateList" && routeKey !== "POST /types/User/instances/action/queryCurrentUser";
}

/** The client's address as Bun.serve saw it ("local" for in-process requests). */
export function sourceOf(c: Context): string {
  const env: unknown = c.env;
  if (typeof env === "object" && env !== null && "requestIP" in env && typeof env.requestIP === "function") {
    const a: unknown = env.requestIP(c.req.raw);
    if (typeof a === "object" && a !== null && "address" in a && typeof a.address === "string") return a.address;
  }
  return "local";
}

/** Object type, id and action named by the path (/instances/T::id/action/a, /types/T/instances/action/a). */
export function objectOfPath(path: string): { objectType: string; objectId: string; action: string } {
  const p = path.startsWith(API_PREFIX) ? path.slice(API_PREFIX.length) : path;
  let m = /^\/instances\/([A-Za-z]+)(?:::([^/]*))?(?:\/action\/([^/]+)|\/([A-Za-z]+))?/.exec(p);
  if (m) return { objectType: m[1] ?? "", objectId: m[2] ?? "", action: m[3] ?? m[4] ?? "" };
  m = /^\/types\/([A-Za-z]+)\/instances(?:\/action\/([^/]+))?/.exec(p);
  if (m) return { objectType: m[1] ?? "", objectId: "", action: m[2] ?? "create" };
  m = /^\/(login|logout)$/.exec(p);
  if (m) return { objectType: "", objectId: "", action: m[1] ?? "" };
  return { objectType: "", objectId: "", action: p.slice(0, 64) };
}

/** The request's JSON body for the audit record (already read by the handler: Hono caches it). */
export async function bodyForAudit(c: Context): Promise<unknown> {
  if (c.req.method === "GET") return undefined;
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > Limits.restMaxBodyBytes) return { bodyBytes: declared };
  try {
    const buf = await c.req.arrayBuffer();
    if (buf.byteLength === 0) return undefined;
    if (buf.byteLength > Limits.restMaxBodyBytes) return { bodyBytes: buf.byteLength };
    return JSON.parse(new TextDecoder().decode(buf)) as unknown;
  } catch {
    return { body: "not JSON" };
  }
}
