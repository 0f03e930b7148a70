// PowerFlex restricted SDC mode: with restrictedSdcMode "Guid", only SDCs approved by GUID
// (System action approveSdc, before or after they connect) may have volumes mapped; an
// unapproved SDC still joins (it shows in the SDC list with sdcApproved false) but gets no
// volume in its maps and therefore no grant, so the SDSs refuse all its IO. "None" approves
// every SDC that joins. "ApprovedIp" (approval by IP as well) is not implemented.
//
// Invariants: switching to Guid is refused while an unapproved SDC has mappings (PowerFlex's
// UNAPPROVED_SDC_HAS_MAPPINGS); in Guid mode a volume is never mapped to an unapproved SDC
// (INITIATOR_NOT_APPROVED); approving by a GUID no SDC has yet creates that SDC, approved, and
// the SDC that later joins with the GUID is it (SDC joins are idempotent by GUID).

import { eq } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { sdcTable, systemTable, volumeMappingTable, type SdcRow } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { allocateId, bumpMapVersion, getSystem } from "../core/system_state.ts";

export type RestrictedSdcMode = "None" | "Guid" | "ApprovedIp";

export function restrictedSdcMode(ctx: MdmContext): "None" | "Guid" {
  return getSystem(ctx).restrictedSdcMode === "Guid" ? "Guid" : "None";
}

/** May this SDC have volumes (maps, grants)? */
export function sdcMayMap(ctx: MdmContext, sdc: Pick<SdcRow, "approved">): boolean {
  return restrictedSdcMode(ctx) === "None" || sdc.approved;
}

/** An SDC joining for the first time is approved unless the system is restricted. */
export function approvedAtJoin(ctx: MdmContext): boolean {
  return restrictedSdcMode(ctx) === "None";
}

export function setRestrictedSdcMode(ctx: MdmContext, mode: RestrictedSdcMode): void {
  if (mode === "ApprovedIp") throw new PfError("BAD_REQUEST", "restrictedSdcMode ApprovedIp (approval by IP) is not supported; use Guid or None");
  inTransaction(ctx, () => {
    if (mode === "Guid") {
      const bad = ctx.store.db
        .selectDistinct({ id: sdcTable.id })
        .from(sdcTable)
        .innerJoin(volumeMappingTable, eq(volumeMappingTable.sdcId, sdcTable.id))
        .where(eq(sdcTable.approved, false))
        .all();
      if (bad.length > 0) {
        throw new PfError("INVALID_STATE", `UNAPPROVED_SDC_HAS_MAPPINGS: SDC ${bad.map((b) => b.id).join(", ")} is not approved and has mappings. Approve the SDC or remove its mappings`);
      }
    }
    ctx.store.db.update(systemTable).set({ restrictedSdcMode: mode }).run();
    bumpMapVersion(ctx); // SDCs fetch their maps again (an unapproved one loses its volumes)
  });
}

/** approveSdc {sdcGuid, name?}: approve the SDC with that GUID (made now if none joined yet); its id. */
export function approveSdc(ctx: MdmContext, req: { sdcGuid?: string | undefined; sdcIp?: string | undefined; sdcIps?: string[] | undefined; name?: string | undefined }): string {
  if (req.sdcGuid === undefined) {
    if (req.sdcIp !== undefined || req.sdcIps !== undefined) throw new PfError("BAD_REQUEST", "approving an SDC by IP (ApprovedIp mode) is not supported; give sdcGuid");
    throw new PfError("BAD_REQUEST", "sdcGuid is required");
  }
  const guid = req.sdcGuid;
  return inTransaction(ctx, () => {
    const existing = ctx.store.db.select().from(sdcTable).where(eq(sdcTable.guid, guid)).get();
    if (existing) {
      ctx.store.db
        .update(sdcTable)
        .set({ approved: true, ...(req.name !== undefined ? { name: req.name } : {}) })
        .where(eq(sdcTable.id, existing.id))
        .run();
      bumpMapVersion(ctx);
      return existing.id;
    }
    const id = allocateId(ctx, "Sdc");
    ctx.store.db.insert(sdcTable).values({ id, guid, name: req.name ?? null, host: "", approved: true, createdAtMs: ctx.clock() }).run();
    bumpMapVersion(ctx);
    return id;
  });
}

/** Refuse a mapping to an SDC that may not have volumes (call in the mapping's transaction). */
export function checkSdcMayMap(ctx: MdmContext, sdc: SdcRow): void {
  if (!sdcMayMap(ctx, sdc)) {
    throw new PfError("INVALID_STATE", `INITIATOR_NOT_APPROVED: SDC ${sdc.id} (GUID ${sdc.guid}) is not approved; restricted SDC mode is Guid (approve it with approveSdc first)`);
  }
}
