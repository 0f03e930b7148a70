// Routes of the internal cluster API under CLUSTER_API_PREFIX (/pf/v1), used by SDS and SDC
// processes. Every request must carry the cluster secret (x-pf-cluster-secret), compared in
// constant time, and every request about one node its token (x-pf-node-token, node_access.ts);
// bodies are validated with the schemas of src/proto/cluster_api.ts.

import { Hono, type Context } from "hono";
import {
  CLUSTER_SECRET_HEADER,
  MapWatchQuery,
  SdcMapsQuery,
  SdsAssignmentsQuery,
  NODE_TOKEN_HEADER,
  SdcHeartbeatRequest,
  SdcJoinRequest,
  SdsHeartbeatRequest,
  SdsJoinRequest,
} from "../../proto/cluster_api.ts";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import { NodeRole } from "../../proto/dataplane_auth.ts";
import { secretsEqual } from "../core/auth.ts";
import { nodeTokenValid } from "../core/dataplane_secrets.ts";
import { mapWatch, sdcHeartbeat, sdcJoin, sdcMaps, sdsAssignments, sdsHeartbeat, sdsJoin } from "./cluster_service.ts";
import { sdcNbdCertificate } from "./node_access.ts";
import { shedIfBehind, timedFetch } from "./fetch_shedding.ts";
import { SdcNbdCertRequest } from "../../proto/nbd_certs.ts";
import type { MdmContext } from "../core/context.ts";
import { HttpError, readBody, validate } from "../core/http_edge.ts";
import { clientTermCheck } from "../core/leader_gate.ts";

function checkId(id: string): string {
  if (!/^[0-9a-f]{16}$/.test(id)) throw new PfError("BAD_REQUEST", `${JSON.stringify(id)} is not a 16-hex-digit id`);
  return id;
}

/** The path's node id, once its token checks out (a node may only ask about itself). */
function authedNode(ctx: MdmContext, c: Context, role: NodeRole): string {
  const id = checkId(c.req.param("id") ?? "");
  const token = c.req.header(NODE_TOKEN_HEADER);
  if (token === undefined || !nodeTokenValid(ctx, role, id, token)) {
    throw new PfError("UNAUTHORIZED", `wrong or missing node token (header ${NODE_TOKEN_HEADER}) for ${role === NodeRole.SDS ? "SDS" : "SDC"} ${id}`);
  }
  return id;
}

export function clusterRoutes(ctx: MdmContext, clusterSecret: string): Hono {
  const api = new Hono();
  api.use("*", async (c, next) => {
    const given = c.req.header(CLUSTER_SECRET_HEADER);
    if (given === undefined || !secretsEqual(given, clusterSecret)) {
      throw new PfError("UNAUTHORIZED", "wrong or missing cluster secret (header x-pf-cluster-secret)");
    }
    await next();
  });
  api.use("*", clientTermCheck(() => ctx.meta));
  // every answer carries this MDM's fencing term (receivers refuse a lower one)
  const t = <T extends object>(body: T) => ({ ...body, term: ctx.meta.term() });
  // a client that refused an answer of this MDM's term says so here (clientTermCheck steps down)
  api.post("/term", (c) => c.json(t({})));
  api.post("/sds/join", async (c) => c.json(t(sdsJoin(ctx, await readBody(c, SdsJoinRequest)))));
  // heartbeats carry IO counters per volume and device: their own, larger body limit
  api.post("/sds/:id/heartbeat", async (c) => c.json(t(sdsHeartbeat(ctx, authedNode(ctx, c, NodeRole.SDS), await readBody(c, SdsHeartbeatRequest, Limits.heartbeatMaxBodyBytes)))));
  // fetches (never heartbeats) are shed with 429 while the MDM is behind (fetch_shedding.ts)
  api.on(["GET", "POST"], "/sds/:id/assignments", (c) => {
    const id = authedNode(ctx, c, NodeRole.SDS);
    const q = validate(SdsAssignmentsQuery, c.req.query());
    shedIfBehind(`sds:${id}`, { pending: ctx.health.urgentPending("sds", id), asked: q.urgent === "1" });
    return timedFetch(() => c.json(t(sdsAssignments(ctx, id, q))));
  });
  // a long poll: answered when a map change concerns this node (unmap, ReadOnly: within a round trip)
  api.get("/sds/:id/mapWatch", async (c) => c.json(t(await mapWatch(ctx, "sds", authedNode(ctx, c, NodeRole.SDS), validate(MapWatchQuery, c.req.query())))));
  api.get("/sdc/:id/mapWatch", async (c) => c.json(t(await mapWatch(ctx, "sdc", authedNode(ctx, c, NodeRole.SDC), validate(MapWatchQuery, c.req.query())))));
  api.post("/sdc/join", async (c) => c.json(t(sdcJoin(ctx, await readBody(c, SdcJoinRequest)))));
  api.post("/sdc/:id/heartbeat", async (c) => c.json(t(sdcHeartbeat(ctx, authedNode(ctx, c, NodeRole.SDC), await readBody(c, SdcHeartbeatRequest, Limits.heartbeatMaxBodyBytes)))));
  api.on(["GET", "POST"], "/sdc/:id/maps", (c) => {
    const id = authedNode(ctx, c, NodeRole.SDC);
    const q = validate(SdcMapsQuery, c.req.query());
    shedIfBehind(`sdc:${id}`, { pending: ctx.health.urgentPending("sdc", id), asked: q.urgent === "1" });
    return timedFetch(() => c.json(t(sdcMaps(ctx, id, q))));
  });
  api.post("/sdc/:id/nbdCertificate", async (c) => c.json(t(sdcNbdCertificate(ctx, authedNode(ctx, c, NodeRole.SDC), await readBody(c, SdcNbdCertRequest)))));
  api.all("*", () => {
    throw new HttpError("NOT_FOUND", 404, "no such cluster API path");
  });
  return api;
}
