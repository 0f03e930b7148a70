// Snapshot commands: --snapshot_volume (one volume, or a comma list as one crash-consistent
// consistency group), --remove_consistency_group_snapshots, --overwrite_volume_content (restore
// in place), --query_vtree, and --set_sdc_volume_limit (per-mapping QoS). PowerFlex spellings;
// numbers go to the MDM as strings, as PyPowerFlex sends them (the MDM checks the rules).

import { PfError } from "../../proto/errors.ts";
import { RemoveConsistencyGroupSnapshotsAnswer, SnapshotVolumesAnswer } from "../../proto/powerflex_api.ts";
import type { CommandContext, Output } from "./command_context.ts";
import { VTreeStatisticsObj, type VolumeObj } from "./mdm_objects.ts";
import { resolveSdc, resolveVolume } from "./selectors.ts";
import { ScliError } from "./scli_errors.ts";
import { orNA, sizeText } from "./text_format.ts";

function label(v: VolumeObj): string {
  return v.name === null ? v.id : `${v.name} (ID ${v.id})`;
}

/** --volume_id a,b or --volume_name a,b, resolved in order. */
async function resolveVolumes(ctx: CommandContext): Promise<VolumeObj[]> {
  const client = ctx.client();
  const ids = ctx.args.str("volume_id")?.split(",");
  if (ids !== undefined) return Promise.all(ids.map((id) => client.get("Volume", id)));
  const names = ctx.args.need("volume_name").split(",");
  const all = await client.list("Volume");
  return names.map((n) => {
    const hits = all.filter((v) => v.name === n);
    if (hits.length === 0) throw new PfError("NOT_FOUND", `Could not find the volume with name ${n}`);
    if (hits.length > 1) throw new ScliError("BAD_REQUEST", `${hits.length} volumes match name ${n}: select them by --volume_id`);
    return hits[0]!;
  });
}

export async function snapshotVolume(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sources = await resolveVolumes(ctx);
  const names = ctx.args.str("snapshot_name")?.split(",");
  if (names !== undefined && names.length !== sources.length) {
    throw new ScliError("BAD_REQUEST", `--snapshot_name lists ${names.length} names for ${sources.length} volume(s)`);
  }
  const snapshotDefs = sources.map((v, i) => ({ volumeId: v.id, ...(names === undefined ? {} : { snapshotName: names[i] }) }));
  const answer = await client.systemAction(
    "snapshotVolumes",
    { snapshotDefs, ...(ctx.args.has("read_only") ? { accessModeLimit: "ReadOnly" } : {}) },
    SnapshotVolumesAnswer,
  );
  const snaps = await Promise.all(answer.volumeIdList.map((id) => client.get("Volume", id)));
  const text = [`Snapshots on ${sources.length} volume(s) created successfully`, `Consistency group ID: ${answer.snapshotGroupId}`];
  sources.forEach((src, i) => text.push(`\tSource volume ${label(src)} => snapshot ${label(snaps[i]!)}`));
  return { text, json: { snapshotGroupId: answer.snapshotGroupId, volumeIdList: answer.volumeIdList, snapshots: snaps } };
}

export async function removeConsistencyGroupSnapshots(ctx: CommandContext): Promise<Output> {
  const groupId = ctx.args.need("consistency_group_id");
  const r = await ctx.client().systemAction("removeConsistencyGroupSnapshots", { snapGroupId: groupId }, RemoveConsistencyGroupSnapshotsAnswer);
  return { text: [`Successfully removed ${r.numberOfVolumes} snapshot(s) of consistency group ${groupId}`], json: { snapGroupId: groupId, ...r } };
}

export async function overwriteVolumeContent(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const dest = await resolveVolume(client, ctx.args);
  const srcId = ctx.args.str("source_volume_id");
  const src = srcId !== undefined ? await client.get("Volume", srcId) : await resolveByName(ctx, ctx.args.need("source_volume_name"));
  await client.action("Volume", dest.id, "overwriteVolumeContent", { srcVolumeId: src.id });
  const after = await client.get("Volume", dest.id);
  return { text: [`Successfully overwrote the content of volume ${label(dest)} with volume ${label(src)}`], json: after };
}

async function resolveByName(ctx: CommandContext, name: string): Promise<VolumeObj> {
  const hits = (await ctx.client().list("Volume")).filter((v) => v.name === name);
  if (hits.length === 0) throw new PfError("NOT_FOUND", `Could not find the volume with name ${name}`);
  if (hits.length > 1) throw new ScliError("BAD_REQUEST", `${hits.length} volumes match name ${name}: select it by --source_volume_id`);
  return hits[0]!;
}

export async function queryVtree(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const vtreeId = ctx.args.str("vtree_id") ?? (await resolveVolume(client, ctx.args)).vtreeId;
  if (vtreeId === null || vtreeId === undefined) throw new PfError("NOT_FOUND", "the volume has no V-Tree");
  const [vt, stats, all] = await Promise.all([client.get("VTree", vtreeId), client.relationship("VTree", vtreeId, "Statistics", VTreeStatisticsObj), client.list("Volume")]);
  const members = all.filter((v) => v.vtreeId === vtreeId);
  const lines = [
    `VTree ID: ${vt.id} Name: ${orNA(vt.name)}`,
    `\tBase volume: ${orNA(vt.baseVolumeId)}`,
    `\tStorage Pool: ${vt.storagePoolId}`,
    `\tVolumes: ${stats.numOfVolumes ?? members.length} (${stats.numOfSnapshots ?? 0} snapshots)`,
    `\tNet capacity in use: ${sizeText(stats.netCapacityInUseInKb ?? 0)} (base ${sizeText(stats.baseNetCapacityInUseInKb ?? 0)}, snapshots ${sizeText(stats.snapNetCapacityInUseInKb ?? 0)})`,
    ...treeLines(members),
  ];
  return { text: lines, json: { ...vt, statistics: stats, volumes: members } };
}

/** The snapshot tree, each volume under its ancestor. */
function treeLines(members: VolumeObj[]): string[] {
  const ids = new Set(members.map((m) => m.id));
  const out: string[] = [];
  const walk = (parent: string | null, depth: number) => {
    for (const m of members) {
      const up = m.ancestorVolumeId !== null && m.ancestorVolumeId !== undefined && ids.has(m.ancestorVolumeId) ? m.ancestorVolumeId : null;
      if (up !== parent) continue;
      const group = m.consistencyGroupId ? ` group ${m.consistencyGroupId}` : "";
      out.push(`\t${"  ".repeat(depth)}- ${label(m)} ${m.volumeType} ${sizeText(m.sizeInKb)}${group}`);
      walk(m.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

export async function setSdcVolumeLimit(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const [vol, sdc] = await Promise.all([resolveVolume(client, ctx.args), resolveSdc(client, ctx.args)]);
  const iops = ctx.args.str("limit_iops");
  const kbps = ctx.args.str("limit_bandwidth_kbps");
  const mbps = ctx.args.str("limit_bandwidth_in_mbps");
  const bandwidth = kbps ?? (mbps === undefined ? undefined : String(Number(mbps) * 1024));
  await client.action("Volume", vol.id, "setMappedSdcLimits", {
    sdcId: sdc.id,
    ...(iops === undefined ? {} : { iopsLimit: iops }),
    ...(bandwidth === undefined ? {} : { bandwidthLimitInKbps: bandwidth }),
  });
  const after = await client.get("Volume", vol.id);
  const m = (after.mappedSdcInfo ?? []).find((x) => x.sdcId === sdc.id);
  return {
    text: [`Successfully set the limits of volume ${label(vol)} on SDC ${sdc.id}: IOPS ${limitText(m?.limitIops)}, bandwidth ${limitText(m?.limitBwInMbps, " MB/s")}`],
    json: after,
  };
}

export function limitText(v: number | null | undefined, unit = ""): string {
  return v === null || v === undefined || v === 0 ? "unlimited" : `${v}${unit}`;
}
