// What the cluster API hands each node of the data-plane secrets, and nothing more: an SDS gets
// its cluster-API token at join and the member keys, grant keys and revocation floors with its
// assignments; an SDC gets its token and its own node keys at join, and its node keys again with
// every map (they change on a key rotation) together with a fresh grant per mapped volume.
// Keeps cluster_service.ts free of key handling.
//
// Invariant: no answer to one node carries another node's key or token.

import type { KeyEntry, SdcMapsResponse, SdsDataPlaneKeys } from "../../proto/cluster_api.ts";
import { NodeRole, type NodeKey } from "../../proto/dataplane_auth.ts";
import { keyToHex } from "../../proto/dataplane_keys.ts";
import type { MdmContext } from "../core/context.ts";
import { grantKeys, memberKeys, nodeKeysOf, nodeTokenOf } from "../core/dataplane_secrets.ts";
import { grantFloors } from "../topology/grant_floors.ts";
import { mintGrant } from "./grants.ts";
import { getSdc } from "../core/lookup.ts";
import { sdcMayMap } from "../topology/sdc_access.ts";

function entries(keys: readonly NodeKey[]): KeyEntry[] {
  return keys.map((k) => ({ kid: k.kid, key: keyToHex(k.key) }));
}

export function sdsJoinSecrets(ctx: MdmContext, sdsId: string): { nodeToken: string } {
  return { nodeToken: nodeTokenOf(ctx, NodeRole.SDS, sdsId) };
}

export function sdcJoinSecrets(ctx: MdmContext, sdcId: string): { nodeToken: string; nodeKeys: KeyEntry[] } {
  return { nodeToken: nodeTokenOf(ctx, NodeRole.SDC, sdcId), nodeKeys: entries(nodeKeysOf(ctx, NodeRole.SDC, sdcId)) };
}

/** The data-plane part of an SDS's assignments. */
export function sdsDataPlane(ctx: MdmContext): SdsDataPlaneKeys {
  return { memberKeys: entries(memberKeys(ctx)), grantKeys: entries(grantKeys(ctx)), grantFloors: grantFloors(ctx) };
}

/**
 * An SDC's maps with its node keys and a grant per mapped volume; an SDC that restricted SDC
 * mode does not let have volumes gets none (and no grant).
 */
export function sdcMapsWithAccess(ctx: MdmContext, sdcId: string, maps: Omit<SdcMapsResponse, "nodeKeys">): SdcMapsResponse {
  const allowed = sdcMayMap(ctx, getSdc(ctx, sdcId));
  const volumes = allowed ? maps.volumes.map((v) => ({ ...v, grant: mintGrant(ctx, sdcId, v.volumeId, v.accessMode, maps.mapVersion) })) : [];
  return { ...maps, volumes, nodeKeys: entries(nodeKeysOf(ctx, NodeRole.SDC, sdcId)) };
}
