// Keeping the object tree tidy: renames (--rename_sds, --rename_sdc, --rename_storage_pool,
// --rename_protection_domain, --rename_fault_set), removals of what holds nothing any more
// (--remove_sdc, --remove_storage_pool, --remove_protection_domain, --remove_fault_set,
// --remove_sds_device) and the pool's spare reserve (--modify_spare_policy). Each is one REST
// action the MDM already checks (a pool with volumes or devices, an SDC with mappings, a device
// holding copies is refused with IN_USE, exit 4); the object is read back after a change, so
// the output and --json show what the MDM stored.

import { PfError } from "../../proto/errors.ts";
import type { ScliArgs } from "./argv_parse.ts";
import type { CommandContext, Output } from "./command_context.ts";
import type { DeviceObj, FaultSetObj } from "./mdm_objects.ts";
import type { MdmRestClient } from "./rest_client.ts";
import { resolvePd, resolvePool, resolveSdc, resolveSds } from "./selectors.ts";

/** The fault set named by --fault_set_id, or by --fault_set_name inside the selected PD. */
async function resolveFaultSet(client: MdmRestClient, args: ScliArgs): Promise<FaultSetObj> {
  const id = args.str("fault_set_id");
  if (id !== undefined) return client.get("FaultSet", id);
  const name = args.need("fault_set_name");
  const pd = await resolvePd(client, args);
  const matches = (await client.list("FaultSet")).filter((f) => f.protectionDomainId === pd.id && f.name === name);
  if (matches[0] === undefined) throw new PfError("NOT_FOUND", `Could not find the Fault Set with name ${name} in Protection Domain ${pd.name}`);
  return matches[0]; // names are unique inside a protection domain (the MDM's unique index)
}

/** The device named by --device_id, or by --device_path (or --device_name) of the selected SDS. */
async function resolveDevice(client: MdmRestClient, args: ScliArgs): Promise<DeviceObj> {
  const id = args.str("device_id");
  if (id !== undefined) return client.get("Device", id);
  const sds = await resolveSds(client, args);
  const path = args.str("device_path");
  const name = path === undefined ? args.need("device_name") : undefined;
  const how = path !== undefined ? `path ${path}` : `name ${name}`;
  const mine = (await client.list("Device")).filter((d) => d.sdsId === sds.id && (path !== undefined ? d.deviceCurrentPathName === path : d.name === name));
  if (mine[0] === undefined) throw new PfError("NOT_FOUND", `Could not find the device with ${how} on SDS ${sds.name ?? sds.id}`);
  return mine[0]; // path and name are unique per SDS (the MDM's unique index)
}

export async function renameSds(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sds = await resolveSds(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("Sds", sds.id, "setSdsName", { name: newName });
  return { text: [`Successfully renamed SDS ${sds.name ?? sds.id} to ${newName}`], json: await client.get("Sds", sds.id) };
}

export async function renameSdc(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sdc = await resolveSdc(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("Sdc", sdc.id, "setSdcName", { sdcName: newName });
  return { text: [`Successfully renamed SDC ${sdc.name ?? sdc.id} to ${newName}`], json: await client.get("Sdc", sdc.id) };
}

export async function renameStoragePool(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("StoragePool", pool.id, "setStoragePoolName", { name: newName });
  return { text: [`Successfully renamed storage pool ${pool.name} to ${newName}`], json: await client.get("StoragePool", pool.id) };
}

export async function renameProtectionDomain(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pd = await resolvePd(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("ProtectionDomain", pd.id, "setProtectionDomainName", { name: newName });
  return { text: [`Successfully renamed protection domain ${pd.name} to ${newName}`], json: await client.get("ProtectionDomain", pd.id) };
}

export async function renameFaultSet(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const fs = await resolveFaultSet(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("FaultSet", fs.id, "setFaultSetName", { name: newName });
  return { text: [`Successfully renamed fault set ${fs.name} to ${newName}`], json: await client.get("FaultSet", fs.id) };
}

export async function removeSdc(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sdc = await resolveSdc(client, ctx.args);
  await client.action("Sdc", sdc.id, "removeSdc", {});
  return { text: [`Successfully removed SDC ${sdc.name ?? sdc.id} (${sdc.id})`], json: { id: sdc.id, removed: true } };
}

export async function removeStoragePool(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  await client.action("StoragePool", pool.id, "removeStoragePool", {});
  return { text: [`Successfully removed storage pool ${pool.name} (${pool.id})`], json: { id: pool.id, removed: true } };
}

export async function removeProtectionDomain(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pd = await resolvePd(client, ctx.args);
  await client.action("ProtectionDomain", pd.id, "removeProtectionDomain", {});
  return { text: [`Successfully removed protection domain ${pd.name} (${pd.id})`], json: { id: pd.id, removed: true } };
}

export async function removeFaultSet(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const fs = await resolveFaultSet(client, ctx.args);
  await client.action("FaultSet", fs.id, "removeFaultSet", {});
  return { text: [`Successfully removed fault set ${fs.name} (${fs.id})`], json: { id: fs.id, removed: true } };
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
