// Finding objects by id or name, with PowerFlex's "Could not find …" errors, and turning a
// sqlite unique-index violation into ALREADY_EXISTS (the index, not a prior read, is what
// makes two racing creates of one name yield one object).

import { eq } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import {
  deviceTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  volumeTable,
  type DeviceRow,
  type FaultSetRow,
  type ProtectionDomainRow,
  type SdcRow,
  type SdsRow,
  type StoragePoolRow,
  type VolumeRow,
} from "../../store/mdm_schema.ts";
import type { MdmContext } from "./context.ts";

export function getPd(ctx: MdmContext, id: string): ProtectionDomainRow {
  const row = ctx.store.db.select().from(protectionDomainTable).where(eq(protectionDomainTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the Protection Domain ${id}`);
  return row;
}

export function getPool(ctx: MdmContext, id: string): StoragePoolRow {
  const row = ctx.store.db.select().from(storagePoolTable).where(eq(storagePoolTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the Storage Pool ${id}`);
  return row;
}

export function getFaultSet(ctx: MdmContext, id: string): FaultSetRow {
  const row = ctx.store.db.select().from(faultSetTable).where(eq(faultSetTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the Fault Set ${id}`);
  return row;
}

export function getSds(ctx: MdmContext, id: string): SdsRow {
  const row = ctx.store.db.select().from(sdsTable).where(eq(sdsTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find SDS ${id}`);
  return row;
}

export function getDevice(ctx: MdmContext, id: string): DeviceRow {
  const row = ctx.store.db.select().from(deviceTable).where(eq(deviceTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the device ${id}`);
  return row;
}

export function getSdc(ctx: MdmContext, id: string): SdcRow {
  const row = ctx.store.db.select().from(sdcTable).where(eq(sdcTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the SDC ${id}`);
  return row;
}

export function getSdcByGuid(ctx: MdmContext, guid: string): SdcRow {
  const row = ctx.store.db.select().from(sdcTable).where(eq(sdcTable.guid, guid)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the SDC with GUID ${guid}`);
  return row;
}

export function getVolume(ctx: MdmContext, id: string): VolumeRow {
  const row = ctx.store.db.select().from(volumeTable).where(eq(volumeTable.id, id)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the volume ${id}`);
  return row;
}

/** SDC by id or guid (PowerFlex map/unmap accept either). */
export function getSdcByIdOrGuid(ctx: MdmContext, sel: { sdcId?: string | undefined; guid?: string | undefined }): SdcRow {
  if (sel.sdcId !== undefined) return getSdc(ctx, sel.sdcId);
  if (sel.guid !== undefined) return getSdcByGuid(ctx, sel.guid);
  throw new PfError("BAD_REQUEST", "sdcId or guid is required");
}

function isUniqueViolation(e: unknown): boolean {
  if (typeof e !== "object" || e === null) return false;
  const code = (e as { code?: unknown }).code;
  const msg = (e as { message?: unknown }).message;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || (typeof msg === "string" && msg.includes("UNIQUE constraint failed"));
}

/** Run an insert/update; a unique-index violation becomes ALREADY_EXISTS with this message. */
export function unique<T>(message: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isUniqueViolation(e)) throw new PfError("ALREADY_EXISTS", message);
    throw e;
  }
}
