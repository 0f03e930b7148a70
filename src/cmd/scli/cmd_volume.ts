// Volume commands: --add_volume, --remove_volume, --map_volume_to_sdc, --unmap_volume_from_sdc,
// --modify_volume_capacity, --rename_volume, --query_volume, --query_all_volumes.
// Changes read the volume back afterwards, so the printed size is the one the MDM granted
// (sizes round up to the pool's granularity) and --json shows the volume as it now is.

import { PfError } from "../../proto/errors.ts";
import type { ConsistencyReport } from "../../proto/powerflex_api.ts";
import { accessModeOf } from "./argv_parse.ts";
import type { CommandContext, Output } from "./command_context.ts";
import type { ProtectionDomainObj, SdcObj, StoragePoolObj, VolumeObj } from "./mdm_objects.ts";
import { limitText } from "./cmd_snapshot.ts";
import { resolvePool, resolveSdc, resolveVolume } from "./selectors.ts";
import { gbText, groupBy, mappingText, orNA, provisioningText, sizeText, timeText } from "./text_format.ts";

const TRUE = "TRUE";
const FALSE = "FALSE";

function volumeLabel(v: VolumeObj): string {
  return v.name === null ? v.id : `${v.name} (ID ${v.id})`;
}

function sdcLabel(s: SdcObj): string {
  return `${s.name ?? s.sdcIp ?? s.id} (ID ${s.id})`;
}

export async function addVolume(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const sizeGb = ctx.args.sizeGb();
  const name = ctx.args.str("volume_name");
  const volumeType = ctx.args.has("thin_provisioned") ? "ThinProvisioned" : ctx.args.has("thick_provisioned") ? "ThickProvisioned" : undefined;
  const id = await client.create("Volume", {
    storagePoolId: pool.id,
    volumeSizeInGb: String(sizeGb),
    ...(name === undefined ? {} : { name }),
    ...(volumeType === undefined ? {} : { volumeType }),
  });
  const vol = await client.get("Volume", id);
  const granted = gbText(vol.sizeInKb);
  const text = granted === String(sizeGb) ? [] : [`Rounding up the volume size to ${granted} GB`];
  text.push(`Successfully created volume of size ${granted} GB. Object ID ${vol.id}`);
  return { text, json: vol };
}

export async function removeVolume(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  const removeMode = ctx.args.has("remove_with_descendant_snapshots")
    ? "INCLUDING_DESCENDANTS"
    : ctx.args.has("remove_descendant_snapshots_only")
      ? "DESCENDANTS_ONLY"
      : ctx.args.has("remove_entire_snapshot_tree")
        ? "WHOLE_VTREE"
        : "ONLY_ME";
  await client.action("Volume", vol.id, "removeVolume", { removeMode });
  return { text: [`Successfully removed volume ${volumeLabel(vol)}`], json: { removed: true, id: vol.id, name: vol.name, removeMode } };
}

export async function mapVolumeToSdc(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const [vol, sdc] = await Promise.all([resolveVolume(client, ctx.args), resolveSdc(client, ctx.args)]);
  const modeFlag = ctx.args.str("access_mode");
  const accessMode = modeFlag === undefined ? "ReadWrite" : accessModeOf(modeFlag);
  await client.action("Volume", vol.id, "addMappedSdc", {
    sdcId: sdc.id,
    accessMode,
    allowMultipleMappings: ctx.args.has("allow_multi_map") ? TRUE : FALSE,
  });
  const after = await client.get("Volume", vol.id);
  return { text: [`Successfully mapped volume ${volumeLabel(vol)} to SDC ${sdcLabel(sdc)} with access mode ${accessMode}`], json: after };
}

export async function unmapVolumeFromSdc(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  let target: string;
  if (ctx.args.has("all_sdcs")) {
    await client.action("Volume", vol.id, "removeMappedSdc", { allSdcs: TRUE });
    target = "all SDCs";
  } else {
    const sdc = await resolveSdc(client, ctx.args);
    await client.action("Volume", vol.id, "removeMappedSdc", { sdcId: sdc.id });
    target = `SDC ${sdcLabel(sdc)}`;
  }
  const after = await client.get("Volume", vol.id);
  return { text: [`Successfully un-mapped volume ${volumeLabel(vol)} from ${target}`], json: after };
}

export async function modifyVolumeCapacity(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  await client.action("Volume", vol.id, "setVolumeSize", { sizeInGB: String(ctx.args.sizeGb()) });
  const after = await client.get("Volume", vol.id);
  return { text: [`Successfully modified volume size to ${gbText(after.sizeInKb)} GB`], json: after };
}

export async function renameVolume(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  const newName = ctx.args.need("new_name");
  await client.action("Volume", vol.id, "setVolumeName", { newName });
  const after = await client.get("Volume", vol.id);
  return { text: [`Successfully renamed volume ${volumeLabel(vol)} to ${newName}`], json: after };
}

export async function queryVolume(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  const pool = await client.get("StoragePool", vol.storagePoolId);
  const pd = await client.get("ProtectionDomain", pool.protectionDomainId);
  return { text: volumeLines(vol, pool, pd), json: vol };
}

/** One extent (or layer) of a failed consistency check, with each copy's checksum or error. */
export function mismatchText(m: ConsistencyReport["mismatches"][number]): string {
  const what = `extent ${m.extentIndex}${m.layerId === undefined ? "" : ` layer ${m.layerId}`}`;
  const copies = m.copies.map((c) => `${c.sdsId}=${c.checksum ?? c.error}`).join(" ");
  // one in-sync copy: degraded (a rebuild or resync is due), not two copies that disagree
  if (m.copies.length < 2) return `${what} has only one in-sync copy (degraded; wait for the rebuild or resync) [${copies}]`;
  return `${what} [${copies}]`;
}

/** pf extension: both copies of every extent hold the same bytes, or a non-zero exit naming the extents. */
export async function checkVolumeConsistency(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vol = await resolveVolume(client, ctx.args);
  const r = await client.checkVolumeConsistency(vol.id);
  if (!r.consistent) {
    const list = r.mismatches.slice(0, 8).map(mismatchText).join(", ");
    throw new PfError("IO_ERROR", `volume ${volumeLabel(vol)}: ${r.mismatches.length} of ${r.extentsChecked} extents differ between copies: ${list}`);
  }
  const layers = r.layersChecked > 0 ? ` and ${r.layersChecked} snapshot layers` : "";
  return { text: [`Volume ${volumeLabel(vol)}: ${r.extentsChecked} extents${layers} checked, both copies identical`], json: r };
}

function volumeLines(v: VolumeObj, pool: StoragePoolObj, pd: ProtectionDomainObj): string[] {
  const lines = [
    `Volume ID: ${v.id} Name: ${orNA(v.name)}`,
    `\tProvisioning: ${provisioningText(v.volumeType)}`,
    `\tSize: ${sizeText(v.sizeInKb)}`,
    `\tCreation time: ${timeText(v.creationTime)}`,
    `\tProtection Domain: ${pd.id}, Name: ${pd.name}`,
    `\tStorage Pool: ${pool.id}, Name: ${pool.name}`,
    `\tVTree ID: ${orNA(v.vtreeId)}`,
    `\tAccess mode limit: ${orNA(v.accessModeLimit)}`,
  ];
  if (v.ancestorVolumeId) lines.push(`\tSnapshot of volume ${v.ancestorVolumeId}`);
  if (v.consistencyGroupId) lines.push(`\tConsistency group: ${v.consistencyGroupId}`);
  const maps = v.mappedSdcInfo ?? [];
  if (maps.length === 0) {
    lines.push("\tMapped SDCs: none");
  } else {
    lines.push(`\tMapped SDCs (${maps.length}):`);
    for (const m of maps) {
      lines.push(
        `\t\tSDC ID: ${m.sdcId} IP: ${orNA(m.sdcIp)} Name: ${orNA(m.sdcName)} Access mode: ${orNA(m.accessMode)} IOPS limit: ${limitText(m.limitIops)} Bandwidth limit: ${limitText(m.limitBwInMbps, " MB/s")}`,
      );
    }
  }
  return lines;
}

export async function queryAllVolumes(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const [pds, pools, volumes] = await Promise.all([client.list("ProtectionDomain"), client.list("StoragePool"), client.list("Volume")]);
  return { text: allVolumesLines(pds, pools, volumes), json: volumes };
}

/** PowerFlex's --query_all_volumes listing: every PD, every pool in it, its volumes. */
export function allVolumesLines(pds: ProtectionDomainObj[], pools: StoragePoolObj[], volumes: VolumeObj[]): string[] {
  const lines = [`Query-all-volumes returned ${volumes.length} volumes`];
  const poolsByPd = groupBy(pools, (p) => p.protectionDomainId);
  const volsByPool = groupBy(volumes, (v) => v.storagePoolId);
  for (const pd of pds) {
    lines.push(`Protection Domain ${pd.id} Name: ${pd.name}`);
    for (const pool of poolsByPd.get(pd.id) ?? []) {
      lines.push(`Storage Pool ${pool.id} Name: ${pool.name}`);
      const vols = volsByPool.get(pool.id) ?? [];
      if (vols.length === 0) lines.push(" <No volumes defined>");
      for (const v of vols) {
        lines.push(` Volume ID: ${v.id} Name: ${orNA(v.name)} Size: ${sizeText(v.sizeInKb)} ${mappingText(v)} ${provisioningText(v.volumeType)}`);
      }
    }
  }
  return lines;
}
