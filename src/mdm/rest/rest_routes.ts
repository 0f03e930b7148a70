// The public REST API in the PowerFlex gateway shape (API "3.6"): login/logout/version, list,
// get, relationships, creates, instance actions (setCapacityAlertThresholds among them), type
// actions, system actions (snapshotVolumes and removeConsistencyGroupSnapshots with or without
// "::id"), the observe routes (observe_routes.ts: Alert, batched statistics,
// /api/pf/history and /live), and the pf extensions checkVolumeConsistency (Volume) and
// queryRebuild (StoragePool: recovery state, degraded/pending/active capacity, progress, rate,
// ETA, stall flag), users and the audit log (user_routes.ts). Every route has an access class
// (route_access.ts) checked against the caller's role, and the audit edge records every
// mutating call, login and refusal (access_edge.ts). Every body is
// validated with the zod schemas of src/proto/powerflex_api.ts; success is 200 with a JSON body
// ({} for actions), as PyPowerFlex requires. Every route but login and version needs a token.

import { volumeConsistency } from "../cluster/consistency.ts";
import { recoveryStatus, removeSds } from "../recovery/recovery.ts";
import { Hono, type Context } from "hono";
import { PfError } from "../../proto/errors.ts";
import { Limits, Units } from "../../proto/limits.ts";
import {
  AddMappedSdc,
  AnyObject,
  ChangeMdmOwnership,
  AddStandbyMdm,
  RemoveStandbyMdm,
  ApproveSdc,
  SetRestrictedSdcMode,
  CreateDevice,
  CreateFaultSet,
  CreateProtectionDomain,
  CreateSds,
  CreateStoragePool,
  CreateVolume,
  Empty,
  LoginBody,
  OverwriteVolumeContent,
  RemoveConsistencyGroupSnapshots,
  SetMappedSdcLimits,
  SetVolumeAccessModeLimit,
  SnapshotVolumes,
  POWERFLEX_API_VERSION,
  PowerFlexTypes,
  QueryIdByKey,
  QuerySelectedStatistics,
  RemoveMappedSdc,
  RemoveSds,
  RemoveVolume,
  RenameObject,
  SetDeviceName,
  SetEnabled,
  SetRebuildIoPriorityPolicy,
  SetRebalanceIoPriorityPolicy,
  SetSdcName,
  SetSdsName,
  SetSparePercentage,
  SetCapacityAlertThresholds,
  SetVolumeMappingAccessMode,
  SetVolumeName,
  SetVolumeSize,
  SetWriteCache,
  looseBool,
  type PowerFlexType,
} from "../../proto/powerflex_api.ts";
import { systemTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { basicCredentials, HttpError, readBody, validate } from "../core/http_edge.ts";
import { getObject, idByName, listObjects, relatedObjects, volumeListJson } from "./rest_render.ts";
import { statisticsOf } from "./statistics.ts";
import { selectedStatistics } from "./selected_statistics.ts";
import { registerObserveRoutes } from "./observe_routes.ts";
import { setCapacityAlertThresholds } from "../observe/alerts.ts";
import { renderMdmCluster } from "./mdm_cluster_view.ts";
import { RESIGNED_HEADER } from "../core/leader_gate.ts";
import * as topo from "../topology/topology.ts";
import * as vols from "../topology/volumes.ts";
import { approveSdc, setRestrictedSdcMode } from "../topology/sdc_access.ts";
import { setWriteCache } from "../topology/write_cache.ts";
import { setIoPriorityPolicy } from "../topology/io_priority.ts";
import { rotateDataPlaneKey } from "../core/dataplane_secrets.ts";
import { getSdc } from "../core/lookup.ts";
import * as snaps from "../vtree/snapshots.ts";
import { auditBeforeAnswer, auditEdge, auditedChange, tokenEdge, type AccessVars } from "./access_edge.ts";
import { sourceOf } from "./route_access.ts";
import { registerUserRoutes } from "./user_routes.ts";
import { registerNbdCaRoutes } from "./nbd_ca_routes.ts";

type Vars = AccessVars;

function parseType(name: string): PowerFlexType {
  if ((PowerFlexTypes as readonly string[]).includes(name)) return name as PowerFlexType;
  throw new PfError("BAD_REQUEST", `unknown object type ${JSON.stringify(name)} (known: ${PowerFlexTypes.join(", ")})`);
}

/** "Volume::cdd883cf00000002" -> [type, id] */
function parseRef(ref: string): { type: PowerFlexType; id: string } {
  const m = /^([A-Za-z]+)::(.*)$/.exec(ref);
  if (!m?.[1]) throw new PfError("BAD_REQUEST", `expected {Type}::{id}, got ${JSON.stringify(ref)}`);
  const type = parseType(m[1]);
  const id = m[2] ?? "";
  if (!/^[0-9a-f]{16}$/.test(id)) throw new PfError("BAD_REQUEST", `${JSON.stringify(id)} is not a 16-hex-digit id`);
  return { type, id };
}

/** An action's answer: undefined answers {} (PyPowerFlex wants a JSON body). */
type ActionHandler = (ctx: MdmContext, id: string, body: unknown) => unknown;

const v = validate;

/** Instance actions: POST /api/instances/{Type}::{id}/action/{action} */
export const INSTANCE_ACTIONS: Record<string, ActionHandler> = {
  "Volume/removeVolume": async (ctx, id, b) => {
    await snaps.removeVolumes(ctx, id, v(RemoveVolume, b).removeMode ?? "ONLY_ME");
  },
  "Volume/overwriteVolumeContent": (ctx, id, b) => snaps.overwriteVolumeContent(ctx, id, v(OverwriteVolumeContent, b).srcVolumeId),
  "Volume/restore": (ctx, id, b) => snaps.overwriteVolumeContent(ctx, id, v(OverwriteVolumeContent, b).srcVolumeId),
  "Volume/setVolumeAccessModeLimit": (ctx, id, b) => vols.setAccessModeLimit(ctx, id, v(SetVolumeAccessModeLimit, b).accessModeLimit),
  "Volume/setVolumeSize": (ctx, id, b) => vols.setVolumeSize(ctx, id, v(SetVolumeSize, b).sizeInGB),
  "Volume/setVolumeName": (ctx, id, b) => vols.renameVolume(ctx, id, v(SetVolumeName, b).newName),
  "Volume/addMappedSdc": (ctx, id, b) => vols.addMappedSdc(ctx, id, v(AddMappedSdc, b)),
  "Volume/mapVolumeToSdc": (ctx, id, b) => vols.addMappedSdc(ctx, id, v(AddMappedSdc, b)),
  "Volume/removeMappedSdc": (ctx, id, b) => removeMapped(ctx, id, b),
  "Volume/unmapVolumeFromSdc": (ctx, id, b) => removeMapped(ctx, id, b),
  "Volume/setVolumeMappingAccessMode": (ctx, id, b) => vols.setMappingAccessMode(ctx, id, v(SetVolumeMappingAccessMode, b)),
  "Volume/setMappedSdcLimits": (ctx, id, b) => vols.setMappedSdcLimits(ctx, id, v(SetMappedSdcLimits, b)),
  "Sds/removeSds": (ctx, id, b) => {
    v(RemoveSds, b);
    removeSds(ctx, id);
  },
  "Sds/setSdsName": (ctx, id, b) => topo.renameSds(ctx, id, v(SetSdsName, b).name),
  "Device/removeDevice": (ctx, id, b) => {
    v(Empty, b);
    topo.removeDevice(ctx, id);
  },
  "Device/setDeviceName": (ctx, id, b) => {
    const r = v(SetDeviceName, b);
    const name = r.newName ?? r.name;
    if (name === undefined) throw new PfError("BAD_REQUEST", "newName is required");
    topo.renameDevice(ctx, id, name);
  },
  "Sdc/setSdcName": (ctx, id, b) => topo.renameSdc(ctx, id, v(SetSdcName, b).sdcName),
  "Sdc/removeSdc": (ctx, id, b) => {
    v(Empty, b);
    topo.removeSdc(ctx, id);
  },
  "StoragePool/removeStoragePool": (ctx, id, b) => {
    v(Empty, b);
    topo.removeStoragePool(ctx, id);
  },
  "StoragePool/setStoragePoolName": (ctx, id, b) => topo.renameStoragePool(ctx, id, v(RenameObject, b).name),
  "StoragePool/setSparePercentage": (ctx, id, b) => topo.setSparePercentage(ctx, id, v(SetSparePercentage, b).sparePercentage),
  "StoragePool/setWriteCache": (ctx, id, b) => setWriteCache(ctx, id, v(SetWriteCache, b).writeCache),
  "StoragePool/setCapacityAlertThresholds": (ctx, id, b) => {
    const r = v(SetCapacityAlertThresholds, b);
    setCapacityAlertThresholds(ctx, id, { highPct: r.capacityAlertHighThresholdPercent, criticalPct: r.capacityAlertCriticalThresholdPercent });
  },
  "StoragePool/setRebuildIoPriorityPolicy": (ctx, id, b) => setIoPriorityPolicy(ctx, id, "rebuild", v(SetRebuildIoPriorityPolicy, b)),
  "StoragePool/setRebalanceIoPriorityPolicy": (ctx, id, b) => setIoPriorityPolicy(ctx, id, "rebalance", v(SetRebalanceIoPriorityPolicy, b)),
  "StoragePool/setRebuildEnabled": (ctx, id, b) => topo.setPoolFlags(ctx, id, { rebuildEnabled: requireFlag(v(SetEnabled, b).rebuildEnabled, "rebuildEnabled") }),
  "StoragePool/setRebalanceEnabled": (ctx, id, b) =>
    topo.setPoolFlags(ctx, id, { rebalanceEnabled: requireFlag(v(SetEnabled, b).rebalanceEnabled, "rebalanceEnabled") }),
  "ProtectionDomain/removeProtectionDomain": (ctx, id, b) => {
    v(Empty, b);
    topo.removeProtectionDomain(ctx, id);
  },
  "ProtectionDomain/setProtectionDomainName": (ctx, id, b) => topo.renameProtectionDomain(ctx, id, v(RenameObject, b).name),
  "FaultSet/removeFaultSet": (ctx, id, b) => {
    v(Empty, b);
    topo.removeFaultSet(ctx, id);
  },
  "FaultSet/setFaultSetName": (ctx, id, b) => topo.renameFaultSet(ctx, id, v(RenameObject, b).name),
  "System/setSystemName": (ctx, _id, b) => {
    const name = v(RenameObject, b).name;
    ctx.store.db.update(systemTable).set({ name }).run();
  },
  "System/setRestrictedSdcMode": (ctx, _id, b) => setRestrictedSdcMode(ctx, v(SetRestrictedSdcMode, b).restrictedSdcMode),
  // pf extension: a new data-plane master key (the previous one stays accepted)
  "System/rotateDataPlaneKey": (ctx, _id, b) => {
    v(Empty, b);
    rotateDataPlaneKey(ctx);
  },
  "System/snapshotVolumes": (ctx, _id, b) => snapshotVolumesAction(ctx, b),
  "System/removeConsistencyGroupSnapshots": (ctx, _id, b) => snaps.removeConsistencyGroupSnapshots(ctx, v(RemoveConsistencyGroupSnapshots, b).snapGroupId),
};

function snapshotVolumesAction(ctx: MdmContext, b: unknown): Promise<snaps.SnapshotResult> {
  const r = v(SnapshotVolumes, b);
  return snaps.snapshotVolumes(ctx, { defs: r.snapshotDefs, accessModeLimit: r.accessModeLimit });
}

function requireFlag(value: boolean | undefined, name: string): boolean {
  if (value === undefined) throw new PfError("BAD_REQUEST", `${name} is required`);
  return value;
}

/**
 * Instance actions whose handler is synchronous (no await: it may run inside a transaction) and
 * frequent: they commit their change and audit record together (auditedChange).
 */
const ONE_COMMIT_ACTIONS = new Set(["Volume/addMappedSdc", "Volume/mapVolumeToSdc", "Volume/removeMappedSdc", "Volume/unmapVolumeFromSdc"]);

function removeMapped(ctx: MdmContext, id: string, b: unknown): void {
  const r = v(RemoveMappedSdc, b);
  // PowerFlex sends allSdcs as "TRUE" or even ""; present and not false means all
  let allSdcs = false;
  if (r.allSdcs !== undefined) {
    const parsed = looseBool.safeParse(r.allSdcs);
    allSdcs = parsed.success ? parsed.data : true;
  }
  if (!allSdcs && r.sdcId === undefined && r.guid === undefined) throw new PfError("BAD_REQUEST", "sdcId, guid or allSdcs is required");
  vols.removeMappedSdc(ctx, id, { sdcId: r.sdcId, guid: r.guid, allSdcs });
}

function systemLimits(): unknown {
  const entry = (type: string, description: string, maxVal: number) => ({ type, description, maxVal: String(maxVal) });
  return {
    systemLimitEntryList: [
      entry("volumeSizeGb", "Maximum volume size in GB", Limits.maxVolumeBytes / Units.GiB),
      entry("volumeNameLength", "Maximum length of object names", Limits.maxNameLength),
      entry("sdsDevicesPerSds", "Maximum number of devices per SDS", 64),
      entry("restBodyBytes", "Maximum REST request body in bytes", Limits.restMaxBodyBytes),
    ],
  };
}

export function restRoutes(ctx: MdmContext): Hono<Vars> {
  const api = new Hono<Vars>();

  // every call is looked at by the audit edge; login and version need no token
  api.use("*", auditEdge(ctx));
  const login = async (c: Context<Vars>) => {
    let creds = basicCredentials(c.req.header("authorization"));
    if (!creds && c.req.method === "POST") {
      const b = await readBody(c, LoginBody);
      if (b.username !== undefined && b.password !== undefined) creds = { user: b.username, password: b.password };
    }
    if (!creds) throw new PfError("UNAUTHORIZED", "Unauthorized");
    c.set("loginUser", creds.user);
    // no default user: an empty name is refused like a wrong one (it once logged in as admin)
    const { token, principal } = await ctx.tokens.login(creds.user, creds.password, sourceOf(c));
    c.set("principal", principal);
    return c.json(token);
  };
  api.get("/login", login);
  api.post("/login", login);
  api.get("/version", (c) => c.json(POWERFLEX_API_VERSION));

  // everything below needs a token (as the Basic password, any user name) whose role may run the
  // route's access class (route_access.ts; a route without one is refused)
  api.use("*", tokenEdge(ctx));

  const logout = (c: Context<Vars>) => {
    ctx.tokens.logout(c.get("token"));
    return c.json({});
  };
  api.get("/logout", logout);
  api.post("/logout", logout);

  // users and the audit log (before the generic routes)
  registerUserRoutes(api, ctx);
  // the cluster NBD CA and NBD client certificates (before the generic routes)
  registerNbdCaRoutes(api, ctx);
  // alerts, batched statistics, the dashboard's history and live IO (before the generic routes)
  registerObserveRoutes(api, ctx);

  api.get("/types/:type/instances", async (c) => {
    const type = parseType(c.req.param("type"));
    if (type !== "Volume") return c.json(listObjects(ctx, type));
    // built in slices with yields (a snapshot read first): 100,000 volumes held the loop for seconds
    return new Response(new Blob(await volumeListJson(ctx)), { headers: { "content-type": "application/json" } });
  });

  api.post("/types/:type/instances", async (c) => {
    const type = parseType(c.req.param("type"));
    let id: string;
    switch (type) {
      case "ProtectionDomain":
        id = topo.createProtectionDomain(ctx, await readBody(c, CreateProtectionDomain));
        break;
      case "StoragePool":
        id = topo.createStoragePool(ctx, await readBody(c, CreateStoragePool));
        break;
      case "FaultSet":
        id = topo.createFaultSet(ctx, await readBody(c, CreateFaultSet));
        break;
      case "Sds":
        id = topo.createSds(ctx, await readBody(c, CreateSds));
        break;
      case "Device":
        id = topo.createDevice(ctx, await readBody(c, CreateDevice));
        break;
      case "Volume": {
        const body = await readBody(c, CreateVolume);
        // the create and its audit record: one commit (access_edge.ts)
        id = await auditedChange(ctx, c, () => vols.createVolume(ctx, body), (r) => r);
        break;
      }
      case "System":
      case "Sdc":
      case "VTree":
        throw new PfError("BAD_REQUEST", `${type} objects cannot be created through REST${type === "Sdc" ? " (an SDC joins by itself)" : ""}`);
      default: {
        const never: never = type;
        throw new PfError("BAD_REQUEST", `unknown type ${String(never)}`);
      }
    }
    return c.json({ id });
  });

  api.post("/types/:type/instances/action/:action", async (c) => {
    const type = parseType(c.req.param("type"));
    const action = c.req.param("action");
    switch (action) {
      case "queryIdByKey":
        return c.json(idByName(ctx, type, (await readBody(c, QueryIdByKey)).name));
      case "querySelectedStatistics":
        return c.json(selectedStatistics(ctx, type, await readBody(c, QuerySelectedStatistics)));
      default:
        throw new PfError("BAD_REQUEST", `unknown action ${action} on type ${type}`);
    }
  });

  // system actions without an id
  api.post("/instances/System/action/querySystemLimits", async (c) => {
    await readBody(c, Empty);
    return c.json(systemLimits());
  });
  api.post("/instances/System/queryMdmCluster", async (c) => {
    await readBody(c, Empty);
    return c.json(await renderMdmCluster(ctx));
  });
  api.post("/instances/System/action/queryMdmCluster", async (c) => {
    await readBody(c, Empty);
    return c.json(await renderMdmCluster(ctx));
  });
  // Cinder and CloudStack post snapshots to the bare System path (no ::id)
  api.post("/instances/System/action/snapshotVolumes", async (c) => c.json(await snapshotVolumesAction(ctx, await readBody(c, AnyObject))));
  api.post("/instances/System/action/removeConsistencyGroupSnapshots", async (c) =>
    c.json(await snaps.removeConsistencyGroupSnapshots(ctx, v(RemoveConsistencyGroupSnapshots, await readBody(c, AnyObject)).snapGroupId)),
  );
  // --switch_mdm_ownership: this MDM hands over and resigns; its answer (the new master) is the
  // one success a no-longer-active MDM sends (RESIGNED_HEADER lets it past the leader gate)
  api.post("/instances/System/action/changeMdmOwnership", async (c) => {
    const t0 = performance.now();
    const body = await readBody(c, ChangeMdmOwnership);
    // the audit record goes in while this MDM still leads: after it resigns it cannot write. So
    // it records what is known then, 202: the target caught up and this MDM resigns; whether the
    // target then leads is in the answer (200, or 503 when no MDM leads 10 s later), the new
    // leader's log and queryMdmCluster
    const r = await ctx.meta.handOver(body, (to) => auditBeforeAnswer(ctx, c, 202, t0, `resigns to MDM ${to.name} (${to.id}) once it caught up; the answer says whether it leads`));
    c.header(RESIGNED_HEADER, "1");
    return c.json({ master: r.to, previousMaster: r.from, previousTerm: r.oldTerm, term: r.term });
  });

  // --add_standby_mdm / --remove_standby_mdm: the MDM registry in etcd (HA mode only)
  api.post("/instances/System/action/addStandbyMdm", async (c) => {
    const b = await readBody(c, AddStandbyMdm);
    return c.json({ id: await ctx.meta.addStandby({ ips: b.ips, role: b.role, managementIps: b.managementIps, name: b.name, port: b.port }) });
  });
  api.post("/instances/System/action/removeStandbyMdm", async (c) => {
    await ctx.meta.removeStandby((await readBody(c, RemoveStandbyMdm)).id);
    return c.json({});
  });

  api.get("/instances/:ref", (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    return c.json(getObject(ctx, type, id));
  });

  api.get("/instances/:ref/relationships/:child", (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    const child = c.req.param("child");
    if (child === "Statistics") return c.json(statisticsOf(ctx, type, id));
    return c.json(relatedObjects(ctx, type, id, child));
  });

  // approveSdc answers the approved SDC's id (goscaleio ApproveSdcResponse); PowerFlex has it on
  // System (by GUID), pf also on the Sdc instance itself
  api.post("/instances/:ref/action/approveSdc", async (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    const raw = await readBody(c, AnyObject);
    getObject(ctx, type, id);
    switch (type) {
      case "System":
        return c.json({ id: approveSdc(ctx, validate(ApproveSdc, raw)) });
      case "Sdc":
        validate(Empty, raw);
        return c.json({ id: approveSdc(ctx, { sdcGuid: getSdc(ctx, id).guid }) });
      default:
        throw new PfError("BAD_REQUEST", `approveSdc applies to System or Sdc, not ${type}`);
    }
  });

  // pf extension: compare both copies of every extent (async: asks the SDSs over the data plane)
  api.post("/instances/:ref/action/checkVolumeConsistency", async (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    if (type !== "Volume") throw new PfError("BAD_REQUEST", `checkVolumeConsistency applies to Volume, not ${type}`);
    await readBody(c, AnyObject);
    return c.json(await volumeConsistency(ctx, id));
  });

  // pf extension: recovery figures of a pool (the same as in its Statistics)
  api.post("/instances/:ref/action/queryRebuild", async (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    if (type !== "StoragePool") throw new PfError("BAD_REQUEST", `queryRebuild applies to StoragePool, not ${type}`);
    await readBody(c, AnyObject);
    getObject(ctx, type, id);
    return c.json(recoveryStatus(ctx, [id]).get(id));
  });

  api.post("/instances/:ref/action/:action", async (c) => {
    const { type, id } = parseRef(c.req.param("ref"));
    const action = c.req.param("action");
    const handler = INSTANCE_ACTIONS[`${type}/${action}`];
    if (!handler) throw new PfError("BAD_REQUEST", `unknown action ${action} on ${type}`);
    const body = await readBody(c, AnyObject);
    const key = `${type}/${action}`;
    const run = () => {
      getObject(ctx, type, id); // NOT_FOUND before validating the body's details
      return handler(ctx, id, body);
    };
    // a synchronous change with its audit record in one commit (access_edge.ts auditedChange)
    const answer = ONE_COMMIT_ACTIONS.has(key) ? await auditedChange(ctx, c, run) : await run();
    return c.json(answer === undefined || answer === null ? {} : answer);
  });

  api.all("*", () => {
    throw new HttpError("NOT_FOUND", 404, "no such API path");
  });
  return api;
}
