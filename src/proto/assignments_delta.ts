// Delta assignments (SDS side of GET assignments?since=&log=): the MDM answers only the extent
// copies that changed since the version the SDS holds, and the SDS merges them into the full
// answer it keeps, then applies that as before (sds_node.ts applyAssignments). At 1,000 SDSs a
// bulk create concerns each SDS every second or so; a full answer per concern made a create of V
// volumes cost O(V^2) on the MDM, a delta costs O(copies changed).
//
// Invariants (test/mdm_assignments_delta.test.ts checks them against full answers over random
// change sequences):
// - merge(full answer at v, delta since v) equals the full answer at the delta's mapVersion, up
//   to the order of lists: a row of `extents` replaces the SDS's row of that extent, a key of
//   `removed` drops it, every other row stays;
// - per-volume parts (extent sizes, writeThrough, V-Tree graphs) are whole for the volumes (V-Tree
//   owners) that have a row in the delta; for the other volumes still held the kept parts stand;
//   parts of volumes no longer held go;
// - everything else (keys, floors, fences, rebuild rate, TLS, mapVersion, copyLog) is the delta's.

import type { ExtentAssignment, SdsAssignmentsResponse } from "./cluster_api.ts";

const keyOf = (volumeId: string, extentIndex: number) => `${volumeId}/${extentIndex}`;

/** True when the answer is a delta (to be merged), false for a full answer. */
export function isDelta(resp: Pick<SdsAssignmentsResponse, "since">): boolean {
  return resp.since !== undefined;
}

/** The full answer that `delta` makes of `held` (a full answer at mapVersion delta.since). */
export function mergeAssignments(held: SdsAssignmentsResponse, delta: SdsAssignmentsResponse): SdsAssignmentsResponse {
  const replaced = new Set<string>();
  for (const a of delta.extents) replaced.add(keyOf(a.volumeId, a.extentIndex));
  for (const k of delta.removed ?? []) replaced.add(keyOf(k.volumeId, k.extentIndex));
  const extents: ExtentAssignment[] = [];
  for (const a of held.extents) if (!replaced.has(keyOf(a.volumeId, a.extentIndex))) extents.push(a);
  for (const a of delta.extents) extents.push(a);
  const fresh = new Set(delta.extents.map((a) => a.volumeId));
  const heldVolumes = new Set(extents.map((a) => a.volumeId));
  const kept = (volumeId: string) => heldVolumes.has(volumeId) && !fresh.has(volumeId);
  const extentSizeBytesByVolume: Record<string, number> = {};
  for (const v of heldVolumes) {
    const size = fresh.has(v) ? delta.extentSizeBytesByVolume[v] : held.extentSizeBytesByVolume[v];
    if (size !== undefined) extentSizeBytesByVolume[v] = size;
  }
  const { since: _since, removed: _removed, ...rest } = delta;
  return {
    ...rest,
    extents,
    extentSizeBytesByVolume,
    writeThroughVolumes: [...held.writeThroughVolumes.filter(kept), ...delta.writeThroughVolumes.filter((v) => heldVolumes.has(v))],
    vtrees: [...held.vtrees.filter((g) => kept(g.ownerId)), ...delta.vtrees.filter((g) => heldVolumes.has(g.ownerId))],
  };
}
