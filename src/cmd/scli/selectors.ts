// Turning --X_id | --X_name (and --sds_ip, --sdc_ip, --sdc_guid) into the MDM's object.
// By id: GET the instance (the MDM answers "Could not find …", exit 7). By name or address:
// list the type and filter, as PyPowerFlex and Ansible do; no match is NOT_FOUND (exit 7) with
// PowerFlex's wording, two matches is an error asking for the id. A pool name is looked up
// inside its protection domain only; a pool id given with a protection domain must belong to it.

import { PfError } from "../../proto/errors.ts";
import type { ScliArgs } from "./argv_parse.ts";
import type { DeviceObj, FaultSetObj, ProtectionDomainObj, SdcObj, SdsObj, StoragePoolObj, VolumeObj } from "./mdm_objects.ts";
import type { MdmRestClient } from "./rest_client.ts";
import { ScliError } from "./scli_errors.ts";

function one<T>(matches: T[], what: string, how: string, idFlag: string): T {
  const [first, second] = matches;
  if (first === undefined) throw new PfError("NOT_FOUND", `Could not find the ${what} with ${how}`);
  if (second !== undefined) throw new ScliError("BAD_REQUEST", `${matches.length} ${what}s match ${how}: select it by ${idFlag}`);
  return first;
}

export async function resolvePd(client: MdmRestClient, args: ScliArgs): Promise<ProtectionDomainObj> {
  const id = args.str("protection_domain_id");
  if (id !== undefined) return client.get("ProtectionDomain", id);
  const name = args.need("protection_domain_name");
  const all = await client.list("ProtectionDomain");
  return one(
    all.filter((p) => p.name === name),
    "Protection Domain",
    `name ${name}`,
    "--protection_domain_id",
  );
}

/** The pool named by --storage_pool_id, or by --storage_pool_name inside the selected PD. */
export async function resolvePool(client: MdmRestClient, args: ScliArgs): Promise<StoragePoolObj> {
  const id = args.str("storage_pool_id");
  const pdGiven = args.has("protection_domain_id") || args.has("protection_domain_name");
  if (id !== undefined) {
    const pool = await client.get("StoragePool", id);
    if (pdGiven) {
      const pd = await resolvePd(client, args);
      if (pool.protectionDomainId !== pd.id) {
        throw new PfError("NOT_FOUND", `Could not find the Storage Pool ${id} in Protection Domain ${pd.name}`);
      }
    }
    return pool;
  }
  const name = args.need("storage_pool_name");
  const pd = await resolvePd(client, args);
  const pools = await client.list("StoragePool");
  return one(
    pools.filter((p) => p.protectionDomainId === pd.id && p.name === name),
    "Storage Pool",
    `name ${name} in Protection Domain ${pd.name}`,
    "--storage_pool_id",
  );
}

export async function resolveVolume(client: MdmRestClient, args: ScliArgs): Promise<VolumeObj> {
  const id = args.str("volume_id");
  if (id !== undefined) return client.get("Volume", id);
  const name = args.need("volume_name");
  const all = await client.list("Volume");
  return one(
    all.filter((v) => v.name === name),
    "volume",
    `name ${name}`,
    "--volume_id",
  );
}

export async function resolveSds(client: MdmRestClient, args: ScliArgs): Promise<SdsObj> {
  const id = args.str("sds_id");
  if (id !== undefined) return client.get("Sds", id);
  const all = await client.list("Sds");
  const name = args.str("sds_name");
  if (name !== undefined) return one(all.filter((s) => s.name === name), "SDS", `name ${name}`, "--sds_id");
  const ip = args.need("sds_ip");
  return one(all.filter((s) => (s.ipList ?? []).some((x) => x.ip === ip)), "SDS", `IP ${ip}`, "--sds_id");
}

export async function resolveSdc(client: MdmRestClient, args: ScliArgs): Promise<SdcObj> {
  const id = args.str("sdc_id");
  if (id !== undefined) return client.get("Sdc", id);
  const all = await client.list("Sdc");
  const name = args.str("sdc_name");
  if (name !== undefined) return one(all.filter((s) => s.name === name), "SDC", `name ${name}`, "--sdc_id");
  const guid = args.str("sdc_guid");
  if (guid !== undefined) {
    return one(all.filter((s) => s.sdcGuid?.toLowerCase() === guid.toLowerCase()), "SDC", `GUID ${guid}`, "--sdc_id");
  }
  const ip = args.need("sdc_ip");
  return one(all.filter((s) => s.sdcIp === ip || (s.sdcIps ?? []).includes(ip)), "SDC", `IP ${ip}`, "--sdc_id");
}

/** The fault set named by --fault_set_id, or by --fault_set_name inside the selected PD. */
export async function resolveFaultSet(client: MdmRestClient, args: ScliArgs): Promise<FaultSetObj> {
  const id = args.str("fault_set_id");
  if (id !== undefined) return client.get("FaultSet", id);
  const name = args.need("fault_set_name");
  const pd = await resolvePd(client, args);
  const all = await client.list("FaultSet");
  return one(
    all.filter((f) => f.protectionDomainId === pd.id && f.name === name),
    "Fault Set",
    `name ${name} in Protection Domain ${pd.name}`,
    "--fault_set_id",
  );
}

/** The pool named by --storage_pool_id, or by --storage_pool_name inside the protection domain of `sds` (--add_sds_device names no PD). */
export async function resolvePoolOfSds(client: MdmRestClient, args: ScliArgs, sds: SdsObj): Promise<StoragePoolObj> {
  const id = args.str("storage_pool_id");
  if (id !== undefined) return client.get("StoragePool", id);
  const name = args.need("storage_pool_name");
  const all = await client.list("StoragePool");
  return one(
    all.filter((p) => p.protectionDomainId === sds.protectionDomainId && p.name === name),
    "Storage Pool",
    `name ${name} in the protection domain of SDS ${sds.name ?? sds.id}`,
    "--storage_pool_id",
  );
}

/** The device named by --device_id, or by --device_path (or --device_name) of the selected SDS. */
export async function resolveDevice(client: MdmRestClient, args: ScliArgs): Promise<DeviceObj> {
  const id = args.str("device_id");
  if (id !== undefined) return client.get("Device", id);
  const sds = await resolveSds(client, args);
  const path = args.str("device_path");
  const name = path === undefined ? args.need("device_name") : undefined;
  const all = await client.list("Device");
  return one(
    all.filter((d) => d.sdsId === sds.id && (path !== undefined ? d.deviceCurrentPathName === path : d.name === name)),
    "device",
    `${path !== undefined ? `path ${path}` : `name ${name}`} on SDS ${sds.name ?? sds.id}`,
    "--device_id",
  );
}
