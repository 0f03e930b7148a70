// The SDS's view of V-Tree layer graphs (snapshots-qos.md §6.1): for every V-Tree it holds
// extents of and that has snapshots, which layers exist (with their chain to the root), which
// volume writes which open layer, the merges still to run, and at most one pending graph per
// V-Tree (installed by a write fence, applied on commit). Pure bookkeeping, no IO.
//
// A V-Tree without a graph is "plain": one layer, whose id is the owner id (the id that keys
// its extents), written by the volume of that same id. Layer keys are the low 32 bits of layer
// ids (unique like every pf id); the high half is checked on every lookup.
//
// Invariants: a graph is applied only when its version is newer than the one held; every chain
// ends at a root (no cycles, every parent listed); a member's layer is never frozen; a pending
// graph is newer than the current one; the indexes (member, layer) always match the current
// graphs plus the pending layers.

import type { VTreeGraph } from "../proto/cluster_api.ts";
import { PfError } from "../proto/errors.ts";
import { halvesToId, idToHalves } from "../proto/ids.ts";
import { Limits } from "../proto/limits.ts";

export interface LayerState {
  /** low half of the layer id */
  readonly key: number;
  readonly hi: number;
  readonly id: string;
  readonly ownerHi: number;
  readonly ownerLo: number;
  readonly frozen: boolean;
  /** keys from this layer to the root: a read resolves each chunk through it, in order */
  readonly chain: readonly number[];
}

export interface MergeStep {
  fromKey: number;
  intoKey: number;
  intoId: string;
}

export interface VTreeState {
  readonly ownerId: string;
  readonly ownerHi: number;
  readonly ownerLo: number;
  readonly version: number;
  readonly layers: ReadonlyMap<number, LayerState>;
  /** member volume (low id half) -> its open layer */
  readonly members: ReadonlyMap<number, { hi: number; layer: LayerState }>;
  readonly merges: readonly MergeStep[];
  /** the chain a plain read of the owner's extents uses (tests, admin reads) */
  readonly headChain: readonly number[];
}

interface Pending {
  fenceId: string;
  state: VTreeState;
}

/** Build and check a graph; throws PfError naming what is wrong. */
export function buildVTree(g: VTreeGraph): VTreeState {
  const owner = idToHalves(g.ownerId);
  if (g.layers.length > Limits.maxLayersPerVTree) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: ${g.layers.length} layers (limit ${Limits.maxLayersPerVTree})`);
  const parentOf = new Map<string, string | null>();
  for (const l of g.layers) {
    if (parentOf.has(l.layerId)) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: layer ${l.layerId} listed twice`);
    parentOf.set(l.layerId, l.parentLayerId);
  }
  const frozen = new Map(g.layers.map((l) => [l.layerId, l.frozen]));
  const layers = new Map<number, LayerState>();
  const byId = new Map<string, LayerState>();
  const chainOf = (id: string): number[] => {
    const chain: number[] = [];
    const seen = new Set<string>();
    for (let cur: string | null = id; cur !== null; cur = parentOf.get(cur) ?? null) {
      if (seen.has(cur)) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: layer ${id} has a cycle in its chain`);
      if (!parentOf.has(cur)) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: layer ${cur} (in the chain of ${id}) is not listed`);
      seen.add(cur);
      chain.push(idToHalves(cur).lo);
    }
    return chain;
  };
  for (const l of g.layers) {
    const { hi, lo } = idToHalves(l.layerId);
    if (layers.has(lo)) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: two layers share the low id half of ${l.layerId}`);
    const s: LayerState = { key: lo, hi, id: l.layerId, ownerHi: owner.hi, ownerLo: owner.lo, frozen: frozen.get(l.layerId) ?? true, chain: chainOf(l.layerId) };
    layers.set(lo, s);
    byId.set(l.layerId, s);
  }
  const members = new Map<number, { hi: number; layer: LayerState }>();
  for (const m of g.members) {
    const layer = byId.get(m.layerId);
    if (layer === undefined) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: member ${m.volumeId} writes unknown layer ${m.layerId}`);
    if (layer.frozen) throw new PfError("BAD_REQUEST", `V-Tree ${g.ownerId}: member ${m.volumeId} writes frozen layer ${m.layerId}`);
    const v = idToHalves(m.volumeId);
    members.set(v.lo, { hi: v.hi, layer });
  }
  const merges = g.merges.map((m) => ({ fromKey: idToHalves(m.fromLayerId).lo, intoKey: idToHalves(m.intoLayerId).lo, intoId: m.intoLayerId }));
  const head = members.get(owner.lo)?.layer ?? layers.get(owner.lo) ?? [...members.values()][0]?.layer ?? [...layers.values()][0]!;
  return { ownerId: g.ownerId, ownerHi: owner.hi, ownerLo: owner.lo, version: g.version, layers, members, merges, headChain: head.chain };
}

export class LayerGraphs {
  private readonly owners = new Map<number, VTreeState>();
  private readonly pending = new Map<number, Pending>();
  private readonly memberIndex = new Map<number, VTreeState>();
  /** layer key -> the graph holding it (current), or the pending one for a layer only it has */
  private readonly layerIndex = new Map<number, { state: VTreeState; pending: boolean }>();
  /** single-layer states of plain V-Trees, by owner key (allocated once per owner) */
  private readonly plain = new Map<number, LayerState>();

  /** The graph of the V-Tree whose extents are keyed by this owner (null: plain). */
  owner(ownerLo: number): VTreeState | null {
    return this.owners.get(ownerLo) ?? null;
  }

  ownersList(): VTreeState[] {
    return [...this.owners.values()];
  }

  /** A volume's open layer, if the volume is a member of a known graph. */
  member(hi: number, lo: number): LayerState | null {
    const s = this.memberIndex.get(lo);
    const m = s?.members.get(lo);
    return m !== undefined && m.hi === hi ? m.layer : null;
  }

  /** A layer by id halves (current graphs first, else a pending one). */
  layer(hi: number, lo: number): LayerState | null {
    const hit = this.layerIndex.get(lo);
    if (hit === undefined) return null;
    const l = hit.state.layers.get(lo);
    return l !== undefined && l.hi === hi ? l : null;
  }

  /** The one layer of a plain V-Tree (its id is the owner id). */
  plainLayer(hi: number, lo: number): LayerState {
    let l = this.plain.get(lo);
    if (l === undefined || l.hi !== hi) {
      l = { key: lo, hi, id: halvesToId(hi, lo), ownerHi: hi, ownerLo: lo, frozen: false, chain: [lo] };
      this.plain.set(lo, l);
    }
    return l;
  }

  /** Layer keys a pending graph has for this owner (never freed while pending). */
  pendingKeys(ownerLo: number): ReadonlySet<number> {
    const p = this.pending.get(ownerLo);
    return p === undefined ? EMPTY_SET : new Set(p.state.layers.keys());
  }

  /** Apply a graph if newer than the one held; returns the state applied, or null. */
  apply(g: VTreeGraph): VTreeState | null {
    const { lo } = idToHalves(g.ownerId);
    const cur = this.owners.get(lo);
    if (cur !== undefined && g.version <= cur.version) return null;
    const state = buildVTree(g);
    this.install(state);
    const p = this.pending.get(lo);
    if (p !== undefined && p.state.version <= state.version) this.dropPending(lo);
    return state;
  }

  /** Keep a fence's graph aside; refused when it is not newer than the one held. */
  prepare(fenceId: string, g: VTreeGraph): void {
    const state = buildVTree(g);
    const cur = this.owners.get(state.ownerLo);
    if (cur !== undefined && state.version <= cur.version) {
      throw new PfError("INVALID_STATE", `V-Tree ${g.ownerId}: fence ${fenceId} brings version ${state.version}, not newer than ${cur.version}`);
    }
    const prev = this.pending.get(state.ownerLo);
    if (prev !== undefined && prev.fenceId !== fenceId) {
      throw new PfError("IN_USE", `V-Tree ${g.ownerId}: fence ${prev.fenceId} is still pending`);
    }
    this.dropPending(state.ownerLo);
    this.pending.set(state.ownerLo, { fenceId, state });
    // only layers the current graph lacks are found through the pending one (a plain V-Tree's
    // current graph is its owner layer alone)
    for (const [key] of state.layers) {
      if (this.layerIndex.has(key) || (cur === undefined && key === state.ownerLo)) continue;
      this.layerIndex.set(key, { state, pending: true });
    }
  }

  /** Owners with a pending graph of this fence. */
  pendingOf(fenceId: string): number[] {
    const out: number[] = [];
    for (const [lo, p] of this.pending) if (p.fenceId === fenceId) out.push(lo);
    return out;
  }

  /** The fence whose pending graph alone has this layer (null: none, or the layer is current). */
  pendingFenceOfLayer(hi: number, lo: number): string | null {
    const hit = this.layerIndex.get(lo);
    if (hit === undefined || !hit.pending) return null;
    const l = hit.state.layers.get(lo);
    // a write into a NEW OPEN layer: only a primary that applied the commit sends one
    if (l === undefined || l.hi !== hi || l.frozen) return null;
    return this.pending.get(hit.state.ownerLo)?.fenceId ?? null;
  }

  /** Forget graphs of owners not listed (the SDS holds nothing of them any more), unless pending. */
  retainOwners(keep: ReadonlySet<number>): void {
    for (const [lo, st] of [...this.owners]) {
      if (keep.has(lo) || this.pending.has(lo)) continue;
      this.owners.delete(lo);
      for (const m of st.members.keys()) if (this.memberIndex.get(m) === st) this.memberIndex.delete(m);
      for (const k of st.layers.keys()) if (this.layerIndex.get(k)?.state === st) this.layerIndex.delete(k);
    }
  }

  /** Fence ids with a pending graph. */
  pendingFences(): Set<string> {
    return new Set([...this.pending.values()].map((p) => p.fenceId));
  }

  /** The fence committed: its pending graphs become current. Returns them. */
  commit(fenceId: string): VTreeState[] {
    const out: VTreeState[] = [];
    for (const lo of this.pendingOf(fenceId)) {
      const p = this.pending.get(lo)!;
      this.dropPending(lo);
      const cur = this.owners.get(lo);
      if (cur !== undefined && cur.version >= p.state.version) continue;
      this.install(p.state);
      out.push(p.state);
    }
    return out;
  }

  abort(fenceId: string): void {
    for (const lo of this.pendingOf(fenceId)) this.dropPending(lo);
  }

  private install(state: VTreeState): void {
    const old = this.owners.get(state.ownerLo);
    if (old !== undefined) {
      for (const lo of old.members.keys()) if (this.memberIndex.get(lo) === old) this.memberIndex.delete(lo);
      for (const key of old.layers.keys()) if (this.layerIndex.get(key)?.state === old) this.layerIndex.delete(key);
    }
    this.owners.set(state.ownerLo, state);
    for (const lo of state.members.keys()) this.memberIndex.set(lo, state);
    for (const key of state.layers.keys()) this.layerIndex.set(key, { state, pending: false });
  }

  private dropPending(ownerLo: number): void {
    const p = this.pending.get(ownerLo);
    if (p === undefined) return;
    this.pending.delete(ownerLo);
    for (const key of p.state.layers.keys()) {
      const hit = this.layerIndex.get(key);
      if (hit?.state === p.state) this.layerIndex.delete(key);
    }
  }
}

const EMPTY_SET: ReadonlySet<number> = new Set();
