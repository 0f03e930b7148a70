// Devices of a running SDS (--add_sds_device: the SDS opens it at its next heartbeat, and it
// takes data once the SDS reported its size) and keeping the object tree tidy: renames (--rename_sds, --rename_sdc, --rename_storage_pool,
// --rename_protection_domain, --rename_fault_set), removals of what holds nothing any more
// (--remove_sdc, --remove_storage_pool, --remove_protection_domain, --remove_fault_set,
// --remove_sds_device) and the pool's spare reserve (--modify_spare_policy). Each is one REST
// action the MDM already checks (a pool with volumes or devices, an SDC with mappings, a device
// holding copies is refused with IN_USE, exit 4); the object is read back after a change, so
// the output and --json show what the MDM stored.

import { PfError } from "../../proto/errors.ts";
import type { ScliArgs } from "./argv_parse.ts";
import type { CommandContext, Handler, Output } from "./command_context.ts";
import type { ObjectType } from "./mdm_objects.ts";
import type { MdmRestClient } from "./rest_client.ts";
import { resolveDevice, resolveFaultSet, resolvePd, resolvePool, resolvePoolOfSds, resolveSdc, resolveSds } from "./selectors.ts";
import { ScliError } from "./scli_errors.ts";
import { sizeText } from "./text_format.ts";

/** An object of one REST type, as a command's selectors find it, and how its output names it. */
interface Target {
  type: ObjectType;
  what: string;
  find(client: MdmRestClient, args: ScliArgs): Promise<{ id: string; name?: string | null }>;
}
const SDS_T: Target = { type: "Sds", what: "SDS", find: resolveSds };
const SDC_T: Target = { type: "Sdc", what: "SDC", find: resolveSdc };
const POOL_T: Target = { type: "StoragePool", what: "storage pool", find: resolvePool };
const PD_T: Target = { type: "ProtectionDomain", what: "protection domain", find: resolvePd };
const FAULT_SET_T: Target = { type: "FaultSet", what: "fault set", find: resolveFaultSet };

/** --rename_X: the REST action and the body key it takes the new name under. */
function rename(t: Target, action: string, key: string): Handler {
  return async (ctx) => {
    const client = ctx.client();
    const obj = await t.find(client, ctx.args);
    const newName = ctx.args.need("new_name");
    await client.action(t.type, obj.id, action, { [key]: newName });
    return { text: [`Successfully renamed ${t.what} ${obj.name ?? obj.id} to ${newName}`], json: await client.get(t.type, obj.id) };
  };
}

/** --remove_X of an object the MDM removes only when it holds nothing (else IN_USE, exit 4). */
function remove(t: Target, action: string): Handler {
  return async (ctx) => {
    const client = ctx.client();
    const obj = await t.find(client, ctx.args);
    await client.action(t.type, obj.id, action, {});
    return { text: [`Successfully removed ${t.what} ${obj.name ?? obj.id} (${obj.id})`], json: { id: obj.id, removed: true } };
  };
}

export const renameSds = rename(SDS_T, "setSdsName", "name");
export const renameSdc = rename(SDC_T, "setSdcName", "sdcName");
export const renameStoragePool = rename(POOL_T, "setStoragePoolName", "name");
export const renameProtectionDomain = rename(PD_T, "setProtectionDomainName", "name");
export const renameFaultSet = rename(FAULT_SET_T, "setFaultSetName", "name");
export const removeSdc = remove(SDC_T, "removeSdc");
export const removeStoragePool = remove(POOL_T, "removeStoragePool");
export const removeProtectionDomain = remove(PD_T, "removeProtectionDomain");
export const removeFaultSet = remove(FAULT_SET_T, "removeFaultSet");

/** how long --add_sds_device waits for the SDS to open the device (it is asked at its next heartbeats, one a second) */
const ADD_DEVICE_WAIT_MS = 10_000;

export async function addSdsDevice(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sds = await resolveSds(client, ctx.args);
  const pool = await resolvePoolOfSds(client, ctx.args, sds);
  const path = ctx.args.need("device_path");
  const name = ctx.args.str("device_name");
  const id = await client.create("Device", { sdsId: sds.id, storagePoolId: pool.id, deviceCurrentPathname: path, ...(name === undefined ? {} : { name }) });
  // the SDS opens it when its next heartbeat answer names it, and reports its size after that
  const deadline = ctx.nowMs() + ADD_DEVICE_WAIT_MS;
  let dev = await client.get("Device", id);
  while (dev.deviceState === "Normal" && (dev.maxCapacityInKb ?? 0) === 0 && ctx.nowMs() < deadline) {
    await ctx.live.sleep(500);
    dev = await client.get("Device", id);
  }
  const head = `Successfully added device ${name ?? path} to SDS ${sds.name ?? sds.id} in storage pool ${pool.name}. Object ID ${id}`;
  if (dev.deviceState === "Failed") {
    // the MDM took the device; the SDS refused it: the device stays registered (Failed) until removed
    const why = typeof dev.errorMessage === "string" ? `: ${dev.errorMessage}` : " (its log says why)";
    throw new ScliError("INVALID_STATE", `device ${id} was added to SDS ${sds.name ?? sds.id}, but the SDS could not open ${path}${why}; remove it with --remove_sds_device --device_id ${id}, then add it again once the path is there`);
  }
  const capacity = dev.maxCapacityInKb ?? 0;
  const state = capacity > 0 ? `opened by the SDS: ${sizeText(capacity)}` : `not opened by the SDS yet (is it running and connected?); it takes no data until it is`;
  return { text: [head, `\t${state}`], json: dev };
}

export async function removeSdsDevice(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const dev = await resolveDevice(client, ctx.args);
  await client.action("Device", dev.id, "removeDevice", {});
  const label = dev.name ?? dev.deviceCurrentPathName ?? dev.id;
  return { text: [`Successfully removed device ${label} (${dev.id}) of SDS ${dev.sdsId}`], json: { id: dev.id, removed: true } };
}

export async function modifySparePolicy(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const pct = ctx.args.need("spare_percentage");
  if (!/^\d+$/.test(pct) || Number(pct) > 99) throw new PfError("BAD_REQUEST", `--spare_percentage ${pct}: give a whole percentage from 0 to 99`);
  await client.action("StoragePool", pool.id, "setSparePercentage", { sparePercentage: pct });
  const after = await client.get("StoragePool", pool.id);
  return { text: [`Successfully set the spare policy of storage pool ${pool.name} to ${after.sparePercentage ?? pct}% of total`], json: after };
}
