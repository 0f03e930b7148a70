// Snapshot capacity: the chunk counts per layer every SDS reports in its heartbeat (all copies it
// holds), kept in memory, and the figures derived from them: a V-Tree's capacity in use per
// layer kind, and a pool's snapCapacityInUseInKb. "Snapshot capacity" is what frozen layers and
// snapshots' own layers hold (raw, both copies); what a base volume's open layer holds is
// volume capacity. Exact as of the last heartbeat of each SDS (devices' usedBytes, the pool's
// in-use figure, come from the same heartbeat).

import { eq } from "drizzle-orm";
import type { LayerUsage } from "../../proto/cluster_api.ts";
import { Limits } from "../../proto/limits.ts";
import { volumeTable, vtreeLayerTable, vtreeTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";

const usageBySds = new WeakMap<MdmContext, Map<string, Map<string, number>>>();

function usageOf(ctx: MdmContext): Map<string, Map<string, number>> {
  let m = usageBySds.get(ctx);
  if (m === undefined) {
    m = new Map();
    usageBySds.set(ctx, m);
  }
  return m;
}

/** An SDS's heartbeat: its chunks per layer (replaces what it said before). */
export function noteLayerUsage(ctx: MdmContext, sdsId: string, report: readonly LayerUsage[] | undefined): void {
  if (report === undefined) return;
  usageOf(ctx).set(sdsId, new Map(report.map((r) => [r.layerId, r.chunks])));
}

export function forgetLayerUsage(ctx: MdmContext, sdsId: string): void {
  usageOf(ctx).delete(sdsId);
}

/** Raw bytes (every copy) each layer holds, over all SDSs. */
export function layerBytes(ctx: MdmContext): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of usageOf(ctx).values()) for (const [layerId, chunks] of m) out.set(layerId, (out.get(layerId) ?? 0) + chunks * Limits.thinChunkBytes);
  return out;
}

export interface VTreeCapacity {
  /** raw bytes in the open layers of non-snapshot members */
  baseBytes: number;
  /** raw bytes in frozen layers and in snapshots' own layers */
  snapBytes: number;
}

/** Capacity of one V-Tree's layers. */
export function vtreeCapacity(ctx: MdmContext, ownerId: string, bytes: Map<string, number> = layerBytes(ctx)): VTreeCapacity {
  const baseLayers = new Set(
    ctx.store.db
      .select({ l: volumeTable.openLayerId, t: volumeTable.volumeType })
      .from(volumeTable)
      .where(eq(volumeTable.ownerId, ownerId))
      .all()
      .filter((v) => v.t !== "Snapshot")
      .map((v) => v.l),
  );
  let baseBytes = 0;
  let snapBytes = 0;
  for (const l of ctx.store.db.select({ id: vtreeLayerTable.layerId }).from(vtreeLayerTable).where(eq(vtreeLayerTable.ownerId, ownerId)).all()) {
    const b = bytes.get(l.id) ?? 0;
    if (baseLayers.has(l.id)) baseBytes += b;
    else snapBytes += b;
  }
  return { baseBytes, snapBytes };
}

/** Raw bytes snapshots hold in a pool (V-Trees that were ever snapshotted). */
export function poolSnapBytes(ctx: MdmContext, poolId: string): number {
  const bytes = layerBytes(ctx);
  if (bytes.size === 0) return 0;
  let total = 0;
  for (const vt of ctx.store.db.select().from(vtreeTable).where(eq(vtreeTable.poolId, poolId)).all()) {
    if (vt.graphVersion > 1) total += vtreeCapacity(ctx, vt.ownerId, bytes).snapBytes;
  }
  return total;
}
