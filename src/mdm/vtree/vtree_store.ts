// V-Trees in the MDM database: lookups, the layer graph of a V-Tree as pure data
// (layer_graph.ts) and back, the graph an SDS gets (cluster_api.ts VTreeGraph), and the holders
// of a V-Tree's extents. Reads, plus writes that the caller runs inside its own transaction.
//
// Invariants kept with the callers: a V-Tree's graph_version grows with every saved edit, in
// the transaction that also bumps map_version and records the edit's merges at that map
// version; a plain V-Tree (graph_version 1: never snapshotted) has one layer, the owner id,
// written by the owner volume, and is never sent to SDSs as a graph.

import { and, asc, eq, inArray } from "drizzle-orm";
import type { VTreeGraph } from "../../proto/cluster_api.ts";
import { PfError } from "../../proto/errors.ts";
import { layerMergeTable, volumeTable, vtreeLayerTable, vtreeTable, type VolumeRow, type VTreeRow } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { isFrozen, type GraphEdit, type LayerGraph } from "./layer_graph.ts";

export function vtreeOfOwner(ctx: MdmContext, ownerId: string): VTreeRow {
  const row = ctx.store.db.select().from(vtreeTable).where(eq(vtreeTable.ownerId, ownerId)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the VTree of owner ${ownerId}`);
  return row;
}

/** A V-Tree by its REST id. */
export function getVTree(ctx: MdmContext, vtreeId: string): VTreeRow {
  const row = ctx.store.db.select().from(vtreeTable).where(eq(vtreeTable.id, vtreeId)).get();
  if (!row) throw new PfError("NOT_FOUND", `Could not find the VTree ${vtreeId}`);
  return row;
}

export function membersOf(ctx: MdmContext, ownerId: string): VolumeRow[] {
  return ctx.store.db.select().from(volumeTable).where(eq(volumeTable.ownerId, ownerId)).orderBy(asc(volumeTable.id)).all();
}

export function loadGraph(ctx: MdmContext, ownerId: string): LayerGraph {
  const parents = new Map<string, string | null>();
  for (const l of ctx.store.db.select().from(vtreeLayerTable).where(eq(vtreeLayerTable.ownerId, ownerId)).all()) parents.set(l.layerId, l.parentLayerId);
  const members = new Map<string, string>();
  for (const v of membersOf(ctx, ownerId)) members.set(v.id, v.openLayerId);
  return { parents, members };
}

/** Persist an edit of the owner's graph (call inside the transaction that bumped map_version to mapVersion). */
export function saveGraphEdit(ctx: MdmContext, ownerId: string, before: LayerGraph, edit: GraphEdit, mapVersion: number): void {
  const g = edit.graph;
  const now = ctx.clock();
  const gone = [...before.parents.keys()].filter((id) => !g.parents.has(id));
  if (gone.length > 0) ctx.store.db.delete(vtreeLayerTable).where(inArray(vtreeLayerTable.layerId, gone)).run();
  for (const [id, parent] of g.parents) {
    if (!before.parents.has(id)) ctx.store.db.insert(vtreeLayerTable).values({ layerId: id, ownerId, parentLayerId: parent, createdAtMs: now }).run();
    else if (before.parents.get(id) !== parent) ctx.store.db.update(vtreeLayerTable).set({ parentLayerId: parent }).where(eq(vtreeLayerTable.layerId, id)).run();
  }
  for (const [volumeId, layerId] of g.members) {
    if (before.members.get(volumeId) !== layerId) ctx.store.db.update(volumeTable).set({ openLayerId: layerId }).where(eq(volumeTable.id, volumeId)).run();
  }
  for (const m of edit.merges) ctx.store.db.insert(layerMergeTable).values({ ownerId, fromLayerId: m.from, intoLayerId: m.into, mapVersion }).run();
  const vt = vtreeOfOwner(ctx, ownerId);
  ctx.store.db.update(vtreeTable).set({ graphVersion: vt.graphVersion + 1 }).where(eq(vtreeTable.ownerId, ownerId)).run();
}

/** The graph an SDS gets for a graph (saved or about to be) at `version`. */
export function specOf(ctx: MdmContext, ownerId: string, version: number, g: LayerGraph, newMerges: readonly { from: string; into: string }[] = []): VTreeGraph {
  const recorded = ctx.store.db.select().from(layerMergeTable).where(eq(layerMergeTable.ownerId, ownerId)).orderBy(asc(layerMergeTable.seq)).all();
  return {
    ownerId,
    version,
    layers: [...g.parents].map(([layerId, parentLayerId]) => ({ layerId, parentLayerId, frozen: isFrozen(g, layerId) })),
    members: [...g.members].map(([volumeId, layerId]) => ({ volumeId, layerId })),
    merges: [...recorded.map((m) => ({ fromLayerId: m.fromLayerId, intoLayerId: m.intoLayerId })), ...newMerges.map((m) => ({ fromLayerId: m.from, intoLayerId: m.into }))],
  };
}

/** Graphs SDSs need for these owners: only V-Trees that were ever snapshotted (plain ones have none). */
export function graphSpecs(ctx: MdmContext, ownerIds: readonly string[]): VTreeGraph[] {
  const out: VTreeGraph[] = [];
  const CHUNK = 500;
  for (let i = 0; i < ownerIds.length; i += CHUNK) {
    const rows = ctx.store.db.select().from(vtreeTable).where(inArray(vtreeTable.ownerId, ownerIds.slice(i, i + CHUNK))).all();
    for (const vt of rows) if (vt.graphVersion > 1) out.push(specOf(ctx, vt.ownerId, vt.graphVersion, loadGraph(ctx, vt.ownerId)));
  }
  return out;
}

/** SDSs holding a copy of some extent of the owners: in-sync and targets (live), or also away. */
export function holdersOf(ctx: MdmContext, ownerIds: readonly string[], withAway: boolean): string[] {
  const out = new Set<string>();
  for (const ownerId of ownerIds) {
    const rows = ctx.store.sqlite
      .query<{ p: string; s: string | null; t: string | null; a: string | null }, [string]>(
        "SELECT DISTINCT primary_sds_id AS p, secondary_sds_id AS s, target_sds_id AS t, away_sds_id AS a FROM extent WHERE volume_id = ?",
      )
      .all(ownerId);
    for (const r of rows) {
      out.add(r.p);
      if (r.s !== null) out.add(r.s);
      if (r.t !== null) out.add(r.t);
      if (withAway && r.a !== null) out.add(r.a);
    }
  }
  return [...out].sort();
}

/** Number of extent rows of an owner (dense from index 0). */
export function extentCountOf(ctx: MdmContext, ownerId: string): number {
  return ctx.store.sqlite.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM extent WHERE volume_id = ?").get(ownerId)?.n ?? 0;
}

/** Snapshots (volumeType Snapshot) of a V-Tree now. */
export function snapshotCountOf(ctx: MdmContext, ownerId: string): number {
  return ctx.store.db.select({ id: volumeTable.id }).from(volumeTable).where(and(eq(volumeTable.ownerId, ownerId), eq(volumeTable.volumeType, "Snapshot"))).all().length;
}
