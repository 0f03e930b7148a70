// scli's typed view of the MDM REST API (powerflex-reference.md §2): list, get, create,
// instance actions, relationships, cluster query, logout. Every call goes through mdmRequest
// (TLS verified against the MDM certificate) and every answer scli reads is checked by zod.
// A 401 on a token call becomes "not logged in" (exit 3) telling the operator to log in again.

import { z } from "zod";
import { isPfError } from "../../proto/errors.ts";
import { mdmRequest, type MdmEndpoint } from "../../proto/mdm_http.ts";
import { AlertObject, ConsistencyReport, CreatedId, RebuildStatus } from "../../proto/powerflex_api.ts";
import { MdmClusterObj, OwnershipChange, OBJECT_SCHEMAS, type MdmClusterObj as MdmCluster, type ObjectOf, type ObjectType } from "./mdm_objects.ts";
import { ScliError } from "./scli_errors.ts";

type Body = Record<string, unknown>;

export class MdmRestClient {
  constructor(private readonly ep: MdmEndpoint & { token: string }) {}

  list<T extends ObjectType>(type: T): Promise<ObjectOf<T>[]> {
    const schema = z.array(OBJECT_SCHEMAS[type]) as unknown as z.ZodType<ObjectOf<T>[]>;
    return this.call({ method: "GET", path: `/api/types/${type}/instances`, schema });
  }

  get<T extends ObjectType>(type: T, id: string): Promise<ObjectOf<T>> {
    const schema = OBJECT_SCHEMAS[type] as unknown as z.ZodType<ObjectOf<T>>;
    return this.call({ method: "GET", path: `/api/instances/${type}::${id}`, schema });
  }

  relationship<S extends z.ZodType>(type: ObjectType, id: string, rel: string, schema: S): Promise<z.infer<S>> {
    return this.call({ method: "GET", path: `/api/instances/${type}::${id}/relationships/${rel}`, schema });
  }

  async create(type: ObjectType, body: Body): Promise<string> {
    return (await this.call({ method: "POST", path: `/api/types/${type}/instances`, body, schema: CreatedId })).id;
  }

  async action(type: ObjectType, id: string, action: string, body: Body): Promise<void> {
    await this.call({ method: "POST", path: `/api/instances/${type}::${id}/action/${action}`, body, schema: z.unknown() });
  }

  /** A System action without an id (as Cinder and CloudStack send snapshotVolumes), answer checked. */
  systemAction<S extends z.ZodType>(action: string, body: Body, schema: S): Promise<z.infer<S>> {
    return this.call({ method: "POST", path: `/api/instances/System/action/${action}`, body, schema });
  }

  /** pf extension: compare both copies of every extent of a volume */
  checkVolumeConsistency(id: string): Promise<ConsistencyReport> {
    return this.call({ method: "POST", path: `/api/instances/Volume::${id}/action/checkVolumeConsistency`, body: {}, schema: ConsistencyReport });
  }

  /** pf extension: a pool's rebuild/rebalance state and progress */
  queryRebuild(poolId: string): Promise<RebuildStatus> {
    return this.call({ method: "POST", path: `/api/instances/StoragePool::${poolId}/action/queryRebuild`, body: {}, schema: RebuildStatus });
  }

  /** Active alerts (all: with the cleared history, pf extension) */
  alerts(opts: { all: boolean }): Promise<AlertObject[]> {
    return this.call({ method: "GET", path: `/api/types/Alert/instances${opts.all ? "?all=true" : ""}`, schema: z.array(AlertObject) });
  }

  queryMdmCluster(): Promise<MdmCluster> {
    return this.call({ method: "POST", path: "/api/instances/System/queryMdmCluster", body: {}, schema: MdmClusterObj });
  }

  /** changeMdmOwnership: the active MDM hands over to this standby and resigns */
  changeMdmOwnership(to: { id?: string; name?: string; ip?: string }): Promise<OwnershipChange> {
    return this.call({ method: "POST", path: "/api/instances/System/action/changeMdmOwnership", body: to, schema: OwnershipChange });
  }

  /** addStandbyMdm: register an MDM in the cluster's registry (HA mode) */
  addStandbyMdm(body: { ips: string[]; role: "Manager" | "TieBreaker"; managementIps?: string[]; name?: string; port?: number }): Promise<{ id: string }> {
    return this.call({ method: "POST", path: "/api/instances/System/action/addStandbyMdm", body, schema: CreatedId });
  }

  removeStandbyMdm(id: string): Promise<unknown> {
    return this.call({ method: "POST", path: "/api/instances/System/action/removeStandbyMdm", body: { id }, schema: z.unknown() });
  }

  /** A call outside the object types (users, audit log), answer checked by schema. */
  request<S extends z.ZodType>(method: "GET" | "POST", path: string, body: Body | undefined, schema: S): Promise<z.infer<S>> {
    return this.call({ method, path, ...(body === undefined ? {} : { body }), schema });
  }

  async logout(): Promise<void> {
    await mdmRequest(this.ep, { method: "GET", path: "/api/logout", schema: z.unknown() });
  }

  private async call<S extends z.ZodType>(opts: { method: "GET" | "POST"; path: string; body?: Body; schema: S }): Promise<z.infer<S>> {
    try {
      return await mdmRequest(this.ep, opts);
    } catch (e) {
      if (isPfError(e) && e.code === "UNAUTHORIZED") throw notLoggedIn(this.ep.url, "the session expired or was revoked");
      throw e;
    }
  }
}

export function notLoggedIn(url: string, why: string): ScliError {
  return new ScliError("UNAUTHORIZED", `not logged in to MDM ${url} (${why}): run scli --login --username USER --password PASSWORD`);
}
