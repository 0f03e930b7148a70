// Admin check that both copies of every extent of a volume hold the same bytes: the MDM asks
// each replica's SDS for a checksum of the extent's logical content (CHECKSUM on the data
// plane; unwritten space counts as zeros on both) and compares them; for a volume of a V-Tree
// with snapshots also what every layer itself owns (CHECKSUM with Flag.LAYER), so a snapshot,
// a clone and the layers they share are checked copy against copy. Read-only for the cluster;
// meant for operators and tests after IO, not as a background scrubber (extents are checked a
// few at a time so that a large volume does not flood the SDSs).

import { Flag, Op, Status, statusName } from "../../proto/dataplane.ts";
import { DataPlanePool } from "../../proto/dataplane_client.ts";
import { PfError } from "../../proto/errors.ts";
import type { ConsistencyReport } from "../../proto/powerflex_api.ts";
import { idToHalves } from "../../proto/ids.ts";
import { inSyncExtents } from "./cluster_service.ts";
import type { MdmContext } from "../core/context.ts";
import { getVolume } from "../core/lookup.ts";
import { mdmDataPlanePool } from "../core/mdm_dataplane.ts";
import { currentMapVersion } from "../core/system_state.ts";
import { holdersOf, loadGraph, vtreeOfOwner } from "../vtree/vtree_store.ts";

export interface ExtentCopies {
  extentIndex: number;
  epoch: number;
  replicas: string[];
}

const PARALLEL_EXTENTS = 4;

export async function checkVolumeConsistency(opts: {
  volumeId: string;
  extentBytes: number;
  extents: ExtentCopies[];
  pool: Pick<DataPlanePool, "link">;
  /** layers of the volume's V-Tree to compare too (none for a V-Tree without snapshots) */
  layerIds?: readonly string[];
}): Promise<ConsistencyReport> {
  const mismatches: ConsistencyReport["mismatches"] = [];
  // what to compare: the volume's content, then each layer on its own
  const targets: { id: string; flags: number; layerId?: string }[] = [{ id: opts.volumeId, flags: 0 }, ...(opts.layerIds ?? []).map((l) => ({ id: l, flags: Flag.LAYER, layerId: l }))];
  const one = async (e: ExtentCopies) => {
    for (const t of targets) {
      const { hi, lo } = idToHalves(t.id);
      const copies = await Promise.all(
        e.replicas.map(async (sdsId) => {
          const link = opts.pool.link(sdsId);
          if (!link) return { sdsId, checksum: null, error: "no address for this SDS", status: null };
          const r = await link.request({
            opcode: Op.CHECKSUM,
            flags: t.flags,
            epoch: e.epoch,
            volumeHi: hi,
            volumeLo: lo,
            extentIndex: e.extentIndex,
            offset: 0,
            length: t.flags === 0 ? opts.extentBytes : 0,
          });
          if (r.status !== Status.OK || r.payload.byteLength !== 8) return { sdsId, checksum: null, error: statusName(r.status), status: r.status };
          return { sdsId, checksum: Buffer.from(r.payload).toString("hex"), error: null, status: r.status };
        }),
      );
      const sums = new Set(copies.map((c) => c.checksum));
      if (copies.length < 2 || sums.size !== 1 || sums.has(null)) mismatches.push({ extentIndex: e.extentIndex, ...(t.layerId === undefined ? {} : { layerId: t.layerId }), copies });
    }
  };
  for (let i = 0; i < opts.extents.length; i += PARALLEL_EXTENTS) {
    await Promise.all(opts.extents.slice(i, i + PARALLEL_EXTENTS).map(one));
  }
  if (opts.extents.length === 0) throw new PfError("INVALID_STATE", `volume ${opts.volumeId} has no extents`);
  mismatches.sort((a, b) => a.extentIndex - b.extentIndex);
  return { volumeId: opts.volumeId, extentsChecked: opts.extents.length, layersChecked: opts.layerIds?.length ?? 0, consistent: mismatches.length === 0, mismatches };
}

// ---- MDM edge: the volume's extents from the database, SDSs over a pool kept per MDM ----

function poolFor(ctx: MdmContext): DataPlanePool {
  return mdmDataPlanePool(ctx);
}

const TRANSIENT_ATTEMPTS = 20;
const TRANSIENT_WAIT_MS = 250;

/**
 * checkVolumeConsistency action: compare both copies of every extent of a volume. A copy that
 * answers STALE_EPOCH or UNAVAILABLE is mid-change (an SDS applies a new epoch up to a
 * heartbeat after the MDM made it): the check is repeated with fresh epochs for a few seconds
 * before such an answer is reported.
 */
export async function volumeConsistency(ctx: MdmContext, volumeId: string): Promise<ConsistencyReport> {
  await holdersCaughtUp(ctx, getVolume(ctx, volumeId).ownerId);
  for (let attempt = 1; ; attempt++) {
    const r = await checkOnce(ctx, volumeId);
    const transient = r.mismatches.some((m) => m.copies.some((c) => c.status === Status.STALE_EPOCH || c.status === Status.UNAVAILABLE));
    if (!transient || attempt >= TRANSIENT_ATTEMPTS) return r;
    await Bun.sleep(TRANSIENT_WAIT_MS);
  }
}

/**
 * SDSs apply a graph change (a fold after a removal) at their next assignments: until both
 * copies did, their layers may differ for a moment by design. Wait (bounded) until every holder
 * applied the current map before comparing layers.
 */
async function holdersCaughtUp(ctx: MdmContext, ownerId: string): Promise<void> {
  const target = currentMapVersion(ctx);
  const holders = holdersOf(ctx, [ownerId], false);
  const behind = (h: string) => !ctx.health.caughtUp("sds", h, ctx.health.sdsAppliedMapVersion(h), target);
  for (let i = 0; i < TRANSIENT_ATTEMPTS && holders.some(behind); i++) await Bun.sleep(TRANSIENT_WAIT_MS);
}

function checkOnce(ctx: MdmContext, volumeId: string): Promise<ConsistencyReport> {
  const vol = getVolume(ctx, volumeId);
  const layered = vtreeOfOwner(ctx, vol.ownerId).graphVersion > 1;
  return checkVolumeConsistency({
    layerIds: layered ? [...loadGraph(ctx, vol.ownerId).parents.keys()].sort() : [],
    volumeId,
    extentBytes: vol.extentBytes,
    extents: inSyncExtents(ctx, vol.ownerId)
      .slice(0, vol.sizeBytes / vol.extentBytes)
      .map((e, extentIndex) => ({ extentIndex, ...e })),
    pool: poolFor(ctx),
  });
}
