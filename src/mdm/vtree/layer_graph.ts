// The layer graph of one V-Tree as pure data, and the edits snapshots make to it
// (snapshots-qos.md §6.1): snapshot (the source's open layer freezes; source and snapshot each
// get a new open layer on it), remove (a member's open layer goes), restore (the destination
// gets a new open layer on the source's content, frozen for the occasion), and normalize: a
// frozen layer with no child is freed, one with a single child is merged into it (a metadata
// fold the SDSs run: the child's chunks shadow the parent's). No IO; ids come from the caller.
//
// Invariants after every edit: each member has exactly one open layer, no two members share
// one; a layer is frozen iff no member writes it; every frozen layer has >= 2 children, so a
// V-Tree of m members has at most 2m - 1 layers; every parent exists (no cycles).

import { assert, PfError } from "../../proto/errors.ts";

export interface LayerGraph {
  /** layer id -> parent layer id (null: a root) */
  readonly parents: Map<string, string | null>;
  /** member volume id -> the layer it writes */
  readonly members: Map<string, string>;
}

export interface GraphEdit {
  graph: LayerGraph;
  /** layers created by the edit */
  added: string[];
  /** layers gone (freed or merged away), in the order they went */
  removed: string[];
  /** folds into the only child, oldest first (the SDSs run them in this order) */
  merges: { from: string; into: string }[];
}

export function cloneGraph(g: LayerGraph): LayerGraph {
  return { parents: new Map(g.parents), members: new Map(g.members) };
}

export function isFrozen(g: LayerGraph, layerId: string): boolean {
  for (const l of g.members.values()) if (l === layerId) return false;
  return true;
}

function childrenOf(g: LayerGraph): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const id of g.parents.keys()) out.set(id, []);
  for (const [id, p] of g.parents) if (p !== null) out.get(p)?.push(id);
  return out;
}

/** Snapshot each source: its layer freezes, source and snapshot each write a new layer on it. */
export function snapshotEdit(g0: LayerGraph, defs: readonly { sourceId: string; snapshotId: string }[], newLayerId: () => string): GraphEdit {
  const g = cloneGraph(g0);
  const added: string[] = [];
  for (const d of defs) {
    const frozen = g.members.get(d.sourceId);
    if (frozen === undefined) throw new PfError("NOT_FOUND", `volume ${d.sourceId} is not in this V-Tree`);
    if (g.members.has(d.snapshotId)) throw new PfError("ALREADY_EXISTS", `volume ${d.snapshotId} is already in this V-Tree`);
    const forSource = newLayerId();
    const forSnapshot = newLayerId();
    g.parents.set(forSource, frozen);
    g.parents.set(forSnapshot, frozen);
    g.members.set(d.sourceId, forSource);
    g.members.set(d.snapshotId, forSnapshot);
    added.push(forSource, forSnapshot);
  }
  return { graph: g, added, ...normalize(g) };
}

/** Remove members: their open layers go, then normalize. */
export function removeEdit(g0: LayerGraph, volumeIds: readonly string[]): GraphEdit {
  const g = cloneGraph(g0);
  const removed: string[] = [];
  for (const v of volumeIds) {
    const l = g.members.get(v);
    if (l === undefined) throw new PfError("NOT_FOUND", `volume ${v} is not in this V-Tree`);
    g.members.delete(v);
  }
  const n = normalize(g);
  return { graph: g, added: [], removed: [...removed, ...n.removed], merges: n.merges };
}

/**
 * Restore `dest` from `src` in place: src's layer freezes as the shared content, src and dest
 * each write a new layer on it, dest's old layer goes. Nothing is copied.
 */
export function restoreEdit(g0: LayerGraph, destId: string, srcId: string, newLayerId: () => string): GraphEdit {
  if (destId === srcId) throw new PfError("BAD_REQUEST", "a volume cannot be restored from itself");
  const g = cloneGraph(g0);
  const content = g.members.get(srcId);
  if (content === undefined || !g.members.has(destId)) throw new PfError("INVALID_STATE", "restore works only inside one V-Tree");
  const forSrc = newLayerId();
  const forDest = newLayerId();
  g.parents.set(forSrc, content);
  g.parents.set(forDest, content);
  g.members.set(srcId, forSrc);
  g.members.set(destId, forDest);
  return { graph: g, added: [forSrc, forDest], ...normalize(g) };
}

/** Free frozen leaves and fold frozen layers with one child into it, until neither is left. */
export function normalize(g: LayerGraph): { removed: string[]; merges: { from: string; into: string }[] } {
  const removed: string[] = [];
  const merges: { from: string; into: string }[] = [];
  for (let changed = true; changed; ) {
    changed = false;
    const open = new Set(g.members.values());
    const kids = childrenOf(g);
    for (const [id, parent] of g.parents) {
      if (open.has(id)) continue;
      const k = kids.get(id) ?? [];
      if (k.length === 0) {
        g.parents.delete(id);
        removed.push(id);
        changed = true;
        break;
      }
      if (k.length === 1) {
        const child = k[0]!;
        g.parents.set(child, parent);
        g.parents.delete(id);
        removed.push(id);
        merges.push({ from: id, into: child });
        changed = true;
        break;
      }
    }
  }
  checkGraph(g);
  return { removed, merges };
}

/** The invariants of the file comment; a violation is a bug, not bad input. */
export function checkGraph(g: LayerGraph): void {
  const seen = new Set<string>();
  for (const [v, l] of g.members) {
    assert(g.parents.has(l), `member ${v} writes a layer that is not in the graph`);
    assert(!seen.has(l), "two members write one layer");
    seen.add(l);
  }
  const kids = childrenOf(g);
  for (const [id, p] of g.parents) {
    assert(p === null || g.parents.has(p), `layer ${id} has an unknown parent`);
    if (!seen.has(id)) assert((kids.get(id)?.length ?? 0) >= 2, `frozen layer ${id} has fewer than two children`);
  }
  for (const id of g.parents.keys()) {
    const chain = new Set<string>();
    for (let cur: string | null = id; cur !== null; cur = g.parents.get(cur) ?? null) {
      assert(!chain.has(cur), "a layer chain has a cycle");
      chain.add(cur);
    }
  }
}
