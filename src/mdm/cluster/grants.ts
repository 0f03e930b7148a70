// Minting mapping grants (format: src/proto/grant.ts) for an SDC's maps: one per mapped volume,
// signed with the newest activated grant key, valid for Limits.grantTtlMs, carrying the map
// version it was issued at (revocation floors compare it: topology/grant_floors.ts).
//
// Invariant: a grant is minted only inside the maps answer of the SDC it names, so it reaches
// no one else (the maps call needs that SDC's node token).

import type { VolumeMap } from "../../proto/cluster_api.ts";
import { Access, encodeGrantBody, grantSecret, newGrantId } from "../../proto/grant.ts";
import { idToHalves } from "../../proto/ids.ts";
import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import { signingGrantKey } from "../core/dataplane_secrets.ts";

export function mintGrant(ctx: MdmContext, sdcId: string, volumeId: string, accessMode: VolumeMap["accessMode"], mapVersion: number): NonNullable<VolumeMap["grant"]> {
  const key = signingGrantKey(ctx);
  const sdc = idToHalves(sdcId);
  const vol = idToHalves(volumeId);
  const now = ctx.clock();
  const body = encodeGrantBody({
    access: accessMode === "ReadWrite" ? Access.READ_WRITE : Access.READ_ONLY,
    kid: key.kid,
    sdcHi: sdc.hi,
    sdcLo: sdc.lo,
    volumeHi: vol.hi,
    volumeLo: vol.lo,
    grantId: newGrantId(),
    mapVersion,
    issuedAtMs: now,
    expiresAtMs: now + Limits.grantTtlMs,
  });
  return { body: Buffer.from(body).toString("hex"), secret: Buffer.from(grantSecret(key.key, body)).toString("hex") };
}
