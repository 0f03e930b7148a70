// The pure layer-graph edits of a V-Tree (src/mdm/vtree/layer_graph.ts) under random sequences
// of snapshot, remove and restore: every member keeps one open layer, frozen layers keep two
// children (so at most 2m - 1 layers), and what each member reads — the chain of layers it
// resolves through, each fold applied — stays what it was (a fold never changes content).

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checkGraph, removeEdit, restoreEdit, snapshotEdit, type LayerGraph } from "../src/mdm/vtree/layer_graph.ts";

/** Content model: each layer "holds" the set of writes made into it; a member sees its chain's union, nearest first. */
type Content = Map<string, string[]>; // layer -> writes (ids), newest last

function view(g: LayerGraph, content: Content, member: string): string[] {
  const out: string[] = [];
  for (let l: string | null = g.members.get(member)!; l !== null; l = g.parents.get(l) ?? null) out.push(...(content.get(l) ?? []));
  return out.sort();
}

/** Apply folds to the content model as the SDSs do: the child's writes shadow nothing here (sets), parent's move down. */
function fold(content: Content, merges: { from: string; into: string }[]): void {
  for (const m of merges) {
    content.set(m.into, [...(content.get(m.into) ?? []), ...(content.get(m.from) ?? [])]);
    content.delete(m.from);
  }
}

describe("V-Tree layer graph", () => {
  test("random snapshot / write / remove / restore sequences keep the invariants and every member's view", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat(), fc.nat()), { minLength: 1, maxLength: 60 }), (ops) => {
        let g: LayerGraph = { parents: new Map([["L0", null]]), members: new Map([["v0", "L0"]]) };
        const content: Content = new Map();
        let ids = 0;
        const newId = () => `L${++ids}`;
        let vols = 0;
        let writes = 0;
        for (const [kind, a, b] of ops) {
          const members = [...g.members.keys()];
          const pick = (n: number) => members[n % members.length]!;
          const before = new Map(members.map((m) => [m, view(g, content, m)]));
          if (kind === 0 && members.length < 20) {
            const src = pick(a);
            const snap = `v${++vols}`;
            const e = snapshotEdit(g, [{ sourceId: src, snapshotId: snap }], newId);
            fold(content, e.merges);
            g = e.graph;
            expect(view(g, content, snap)).toEqual(before.get(src)!);
          } else if (kind === 1) {
            const m = pick(a);
            const l = g.members.get(m)!;
            content.set(l, [...(content.get(l) ?? []), `w${++writes}`]);
            before.set(m, view(g, content, m));
          } else if (kind === 2 && members.length > 1) {
            const m = pick(a);
            const e = removeEdit(g, [m]);
            fold(content, e.merges);
            for (const r of e.removed) content.delete(r);
            g = e.graph;
            before.delete(m);
          } else if (kind === 3 && members.length > 1) {
            const dest = pick(a);
            const src = pick(b);
            if (dest === src) continue;
            const e = restoreEdit(g, dest, src, newId);
            fold(content, e.merges);
            for (const r of e.removed) content.delete(r);
            g = e.graph;
            before.set(dest, before.get(src)!);
          }
          checkGraph(g);
          expect(g.parents.size).toBeLessThanOrEqual(2 * g.members.size - 1);
          for (const [m, v] of before) expect(view(g, content, m)).toEqual(v);
        }
      }),
      { numRuns: 300 },
    );
  });
});
