// Delta SDC maps (GET maps?since=&log=): after one SDS's loss nearly every SDC's map changes,
// but only in the few volumes whose extents lost a copy; a whole map per SDC was 60-378 KiB at
// 100,000 volumes and 500 SDCs. The MDM answers the whole entry of each mapped volume whose
// entry changed since the version the SDC holds, and the ids of all volumes mapped now; the SDC
// merges per volume into the whole map it keeps and applies that as before (sdc_node.ts).
//
// Invariants (test/mdm_maps_delta.test.ts checks them against whole answers over random change
// sequences):
// - merge(whole map at v, delta since v) equals the whole map at the delta's mapVersion, grants
//   aside (a kept entry keeps the grant it came with): volumes in the order of `volumeIds`, each
//   the delta's entry when it has one, else the held one;
// - a listed volume with neither a delta entry nor a held one (a delta not meant for this held
//   map) is no answer: mergeMaps returns null and the SDC asks for the whole map;
// - everything else (keys, TLS, revocations, addresses, mapVersion, mapLog) is the delta's.

import type { SdcMapsResponse, VolumeMap } from "./cluster_api.ts";

type Maps = Omit<SdcMapsResponse, "term">;

/** True when the answer is a delta (to be merged), false for a whole map. */
export function isMapsDelta(resp: Pick<Maps, "since">): boolean {
  return resp.since !== undefined;
}

/** The whole map that `delta` makes of `held` (the whole map at delta.since), or null when they do not fit. */
export function mergeMaps(held: Maps, delta: Maps): Maps | null {
  if (delta.volumeIds === undefined || delta.since !== held.mapVersion) return null;
  const fresh = new Map<string, VolumeMap>();
  for (const v of delta.volumes) fresh.set(v.volumeId, v);
  const kept = new Map<string, VolumeMap>();
  for (const v of held.volumes) kept.set(v.volumeId, v);
  const volumes: VolumeMap[] = [];
  let used = 0;
  for (const id of delta.volumeIds) {
    const f = fresh.get(id);
    if (f !== undefined) used++;
    const v = f ?? kept.get(id);
    if (v === undefined) return null;
    volumes.push(v);
  }
  // an entry for a volume not listed: not an answer to this map
  if (used !== fresh.size) return null;
  const { since: _since, volumeIds: _ids, ...rest } = delta;
  return { ...rest, volumes };
}
