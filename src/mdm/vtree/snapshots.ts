// Snapshots, clones, consistency groups and restore (snapshots-qos.md §1, §6): snapshotVolumes
// (every call is one consistency group, cut crash-consistently under a write fence),
// removeVolume with every removeMode, removeConsistencyGroupSnapshots, overwriteVolumeContent.
// All metadata: no data is copied; the SDSs fold or free layers when they apply the new graph.
//
// Invariants: every check runs before the first write, so a refused call changes nothing; one
// graph change at a time (withGraphLock); a snapshot or restore commits in one transaction
// only after every holder of the V-Tree's extents holds writes (fence.ts), and a removal is one
// transaction; at most Limits.maxSnapshotsPerVTree snapshots per V-Tree (PowerFlex rc 182);
// mapped volumes are never removed; a snapshot's ancestor is re-pointed to the nearest
// surviving ancestor when its ancestor goes.

import { and, eq, inArray } from "drizzle-orm";
import { PfError, PowerFlexRc } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { AccessMode, RemoveMode } from "../../proto/powerflex_api.ts";
import { volumeMappingTable, volumeTable, vtreeLayerTable, vtreeTable, type VolumeRow } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getVolume } from "../core/lookup.ts";
import { allocateId, bumpMapVersion } from "../core/system_state.ts";
import { releaseExtents, unthickExtents } from "../topology/volumes.ts";
import { runFenced, withGraphLock } from "./fence.ts";
import { removeEdit, restoreEdit, snapshotEdit, type GraphEdit, type LayerGraph } from "./layer_graph.ts";
import { dropMergesOf } from "./merge_trim.ts";
import { holdersOf, loadGraph, membersOf, saveGraphEdit, snapshotCountOf, specOf, vtreeOfOwner } from "./vtree_store.ts";

export interface SnapshotRequest {
  defs: { volumeId: string; snapshotName?: string | undefined }[];
  accessModeLimit?: AccessMode | undefined;
}

export interface SnapshotResult {
  snapshotGroupId: string;
  volumeIdList: string[];
}

/** snapshotVolumes: one consistency group over every listed volume, cut under one fence. */
export function snapshotVolumes(ctx: MdmContext, req: SnapshotRequest): Promise<SnapshotResult> {
  return withGraphLock(ctx, async () => {
    const sources = checkSnapshotRequest(ctx, req);
    const ids = inTransaction(ctx, () => ({
      group: allocateId(ctx, "SnapshotGroup"),
      snaps: req.defs.map(() => allocateId(ctx, "Volume")),
      layers: req.defs.flatMap(() => [allocateId(ctx, "Layer"), allocateId(ctx, "Layer")]),
    }));
    let nextLayer = 0;
    const newLayerId = () => ids.layers[nextLayer++]!;
    const byOwner = new Map<string, { sourceId: string; snapshotId: string }[]>();
    req.defs.forEach((d, i) => {
      const owner = sources[i]!.ownerId;
      const list = byOwner.get(owner) ?? [];
      list.push({ sourceId: d.volumeId, snapshotId: ids.snaps[i]! });
      byOwner.set(owner, list);
    });
    const edits = [...byOwner].map(([ownerId, defs]) => {
      const before = loadGraph(ctx, ownerId);
      return { ownerId, before, version: vtreeOfOwner(ctx, ownerId).graphVersion, edit: snapshotEdit(before, defs, newLayerId) };
    });
    const owners = edits.map((e) => e.ownerId);
    await runFenced(
      ctx,
      {
        holders: holdersOf(ctx, owners, false),
        graphs: edits.map((e) => specOf(ctx, e.ownerId, e.version + 1, e.edit.graph, e.edit.merges)),
        holdVolumeIds: [...new Set(req.defs.map((d) => d.volumeId))],
        what: `snapshot group ${ids.group} of ${req.defs.length} volume(s)`,
      },
      () =>
        inTransaction(ctx, () => {
          checkUnchanged(ctx, edits);
          const nowS = Math.floor(ctx.clock() / 1000);
          req.defs.forEach((d, i) => {
            const src = getVolume(ctx, d.volumeId);
            const id = ids.snaps[i]!;
            ctx.store.db
              .insert(volumeTable)
              .values({
                id,
                name: d.snapshotName ?? null,
                poolId: src.poolId,
                volumeType: "Snapshot",
                sizeBytes: src.sizeBytes,
                extentBytes: src.extentBytes,
                vtreeId: src.vtreeId,
                accessModeLimit: req.accessModeLimit ?? "ReadWrite",
                creationTimeS: nowS,
                ownerId: src.ownerId,
                openLayerId: "", // set by saveGraphEdit below
                ancestorVolumeId: src.id,
                consistencyGroupId: ids.group,
              })
              .run();
          });
          const mapVersion = bumpMapVersion(ctx);
          for (const e of edits) saveGraphEdit(ctx, e.ownerId, withNewMembers(e.before, e.edit), e.edit, mapVersion);
        }),
    );
    return { snapshotGroupId: ids.group, volumeIdList: ids.snaps };
  });
}

/** Every check of a snapshot request, before anything is allocated. Returns the source rows. */
function checkSnapshotRequest(ctx: MdmContext, req: SnapshotRequest): VolumeRow[] {
  if (req.defs.length === 0) throw new PfError("BAD_REQUEST", "snapshotDefs needs at least one volume");
  if (req.defs.length > Limits.maxSnapshotDefsPerCall) throw new PfError("TOO_BIG", `at most ${Limits.maxSnapshotDefsPerCall} snapshotDefs per call`);
  const sources = req.defs.map((d) => getVolume(ctx, d.volumeId));
  const names = new Set<string>();
  for (const d of req.defs) {
    if (d.snapshotName === undefined) continue;
    if (names.has(d.snapshotName)) throw new PfError("ALREADY_EXISTS", `snapshotName ${d.snapshotName} is given twice`);
    names.add(d.snapshotName);
    const taken = ctx.store.db.select({ id: volumeTable.id }).from(volumeTable).where(eq(volumeTable.name, d.snapshotName)).get();
    if (taken) throw new PfError("ALREADY_EXISTS", `A volume named ${d.snapshotName} already exists (${taken.id})`);
  }
  const adding = new Map<string, number>();
  for (const s of sources) adding.set(s.ownerId, (adding.get(s.ownerId) ?? 0) + 1);
  for (const [ownerId, n] of adding) {
    const have = snapshotCountOf(ctx, ownerId);
    if (have + n > Limits.maxSnapshotsPerVTree) {
      const vt = vtreeOfOwner(ctx, ownerId);
      throw new PfError(
        "TOO_BIG",
        `Too many snapshots in the VTree ${vt.id}: it has ${have}, ${n} more would pass the limit of ${Limits.maxSnapshotsPerVTree}`,
        PowerFlexRc.TOO_MANY_SNAPSHOTS,
      );
    }
  }
  return sources;
}

/** Rows inserted before saveGraphEdit: members new to the graph start with no layer. */
function withNewMembers(before: LayerGraph, edit: GraphEdit): LayerGraph {
  const members = new Map(before.members);
  for (const v of edit.graph.members.keys()) if (!members.has(v)) members.set(v, "");
  return { parents: before.parents, members };
}

function checkUnchanged(ctx: MdmContext, edits: { ownerId: string; version: number }[]): void {
  for (const e of edits) {
    if (vtreeOfOwner(ctx, e.ownerId).graphVersion !== e.version) throw new PfError("INVALID_STATE", `the VTree of ${e.ownerId} changed meanwhile; retry`);
  }
}

// ---- remove ----

/** removeVolume with a removeMode; returns the ids removed. */
export function removeVolumes(ctx: MdmContext, volumeId: string, mode: RemoveMode): Promise<string[]> {
  return withGraphLock(ctx, () =>
    inTransaction(ctx, () => {
      const vol = getVolume(ctx, volumeId);
      const all = membersOf(ctx, vol.ownerId);
      const ids = selectForRemoval(vol, all, mode);
      removeMembers(ctx, vol.ownerId, all, ids);
      return ids;
    }),
  );
}

/** removeConsistencyGroupSnapshots: every snapshot of the group, in one transaction. */
export function removeConsistencyGroupSnapshots(ctx: MdmContext, groupId: string): Promise<{ numberOfVolumes: number }> {
  return withGraphLock(ctx, () =>
    inTransaction(ctx, () => {
      const group = ctx.store.db.select().from(volumeTable).where(eq(volumeTable.consistencyGroupId, groupId)).all();
      if (group.length === 0) throw new PfError("NOT_FOUND", `Could not find the snapshot group ${groupId}`);
      const byOwner = new Map<string, string[]>();
      for (const v of group) byOwner.set(v.ownerId, [...(byOwner.get(v.ownerId) ?? []), v.id]);
      checkUnmapped(ctx, group.map((v) => v.id));
      for (const [ownerId, ids] of byOwner) removeMembers(ctx, ownerId, membersOf(ctx, ownerId), ids);
      return { numberOfVolumes: group.length };
    }),
  );
}

function selectForRemoval(vol: VolumeRow, all: VolumeRow[], mode: RemoveMode): string[] {
  switch (mode) {
    case "ONLY_ME":
      return [vol.id];
    case "INCLUDING_DESCENDANTS":
      return [vol.id, ...descendantsOf(vol.id, all)];
    case "DESCENDANTS_ONLY":
      return descendantsOf(vol.id, all);
    case "WHOLE_VTREE":
      return all.map((v) => v.id);
    default: {
      const never: never = mode;
      throw new PfError("BAD_REQUEST", `unknown removeMode ${String(never)}`);
    }
  }
}

/** Every volume whose ancestor chain reaches `id` (children first found, breadth first). */
export function descendantsOf(id: string, all: readonly VolumeRow[]): string[] {
  const out: string[] = [];
  const queue = [id];
  while (queue.length > 0) {
    const cur = queue.shift()!;
    for (const v of all) {
      if (v.ancestorVolumeId === cur) {
        out.push(v.id);
        queue.push(v.id);
      }
    }
  }
  return out;
}

function checkUnmapped(ctx: MdmContext, ids: readonly string[]): void {
  if (ids.length === 0) return;
  const mapped = ctx.store.db.select({ v: volumeMappingTable.volumeId, s: volumeMappingTable.sdcId }).from(volumeMappingTable).where(inArray(volumeMappingTable.volumeId, [...ids])).all();
  if (mapped.length > 0) {
    throw new PfError("IN_USE", `The volume ${mapped[0]!.v} is mapped to SDC ${mapped[0]!.s}${mapped.length > 1 ? ` (and ${mapped.length - 1} more mapping(s))` : ""}; unmap it first`);
  }
}

/** Remove members of one V-Tree (inside a transaction); the last one takes the V-Tree with it. */
function removeMembers(ctx: MdmContext, ownerId: string, all: VolumeRow[], ids: string[]): void {
  if (ids.length === 0) return;
  checkUnmapped(ctx, ids);
  const gone = new Set(ids);
  const vt = vtreeOfOwner(ctx, ownerId);
  const thick = vt.volumeType === "ThickProvisioned";
  if (all.every((v) => gone.has(v.id))) {
    releaseExtents(ctx, { ownerId, extentBytes: vt.extentBytes, thick });
    ctx.store.db.delete(volumeTable).where(eq(volumeTable.ownerId, ownerId)).run();
    ctx.store.db.delete(vtreeLayerTable).where(eq(vtreeLayerTable.ownerId, ownerId)).run();
    dropMergesOf(ctx, [ownerId]);
    ctx.store.db.delete(vtreeTable).where(eq(vtreeTable.ownerId, ownerId)).run();
    bumpMapVersion(ctx);
    return;
  }
  // the survivors' ancestors: the nearest ancestor that stays
  const byId = new Map(all.map((v) => [v.id, v]));
  for (const v of all) {
    if (gone.has(v.id) || v.ancestorVolumeId === null || !gone.has(v.ancestorVolumeId)) continue;
    let up: string | null = v.ancestorVolumeId;
    while (up !== null && gone.has(up)) up = byId.get(up)?.ancestorVolumeId ?? null;
    ctx.store.db.update(volumeTable).set({ ancestorVolumeId: up }).where(eq(volumeTable.id, v.id)).run();
  }
  // the thick base volume goes, snapshots stay: its reservation goes with it
  if (thick && all.some((v) => gone.has(v.id) && v.volumeType === "ThickProvisioned")) {
    unthickExtents(ctx, { ownerId, extentBytes: vt.extentBytes });
    ctx.store.db.update(vtreeTable).set({ volumeType: "ThinProvisioned" }).where(eq(vtreeTable.ownerId, ownerId)).run();
  }
  const before = loadGraph(ctx, ownerId);
  const edit = removeEdit(before, ids);
  ctx.store.db.delete(volumeTable).where(and(eq(volumeTable.ownerId, ownerId), inArray(volumeTable.id, ids))).run();
  const mapVersion = bumpMapVersion(ctx);
  saveGraphEdit(ctx, ownerId, { parents: before.parents, members: edit.graph.members }, edit, mapVersion);
}

// ---- restore ----

/** overwriteVolumeContent / restore: `destId` takes `srcId`'s content, in place, no copy. */
export function overwriteVolumeContent(ctx: MdmContext, destId: string, srcId: string): Promise<void> {
  return withGraphLock(ctx, async () => {
    const dest = getVolume(ctx, destId);
    const src = getVolume(ctx, srcId);
    if (dest.id === src.id) throw new PfError("BAD_REQUEST", "a volume cannot be restored from itself");
    if (dest.ownerId !== src.ownerId) {
      throw new PfError("INVALID_STATE", `volume ${src.id} is in VTree ${src.vtreeId}, not in ${dest.vtreeId} of volume ${dest.id}: content can only be restored inside one VTree`);
    }
    const [l1, l2] = inTransaction(ctx, () => [allocateId(ctx, "Layer"), allocateId(ctx, "Layer")]);
    const fresh = [l1!, l2!];
    const before = loadGraph(ctx, dest.ownerId);
    const version = vtreeOfOwner(ctx, dest.ownerId).graphVersion;
    const edit = restoreEdit(before, dest.id, src.id, () => fresh.shift()!);
    await runFenced(
      ctx,
      {
        holders: holdersOf(ctx, [dest.ownerId], false),
        graphs: [specOf(ctx, dest.ownerId, version + 1, edit.graph, edit.merges)],
        holdVolumeIds: [dest.id, src.id],
        what: `restore of volume ${dest.id} from ${src.id}`,
        waitCommits: true,
      },
      () =>
        inTransaction(ctx, () => {
          checkUnchanged(ctx, [{ ownerId: dest.ownerId, version }]);
          const mapVersion = bumpMapVersion(ctx);
          saveGraphEdit(ctx, dest.ownerId, before, edit, mapVersion);
        }),
    );
  });
}
