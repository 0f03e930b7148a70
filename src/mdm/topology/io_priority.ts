// A storage pool's I/O priority policies for its copies (PowerFlex setRebuildIoPriorityPolicy /
// setRebalanceIoPriorityPolicy): stored on the pool row (migration 0010), sent to every SDS with
// its assignments, one entry per device (the SDS throttles per device: src/sds/copy_throttle.ts).
// Rebuild and resync copies follow the rebuild policy, moves (drain, rebalance) the rebalance one.
//
// Invariants: a stored policy is one of the four names with 1..Limits.maxCopyIosPerDevice IOs; a
// dynamicBwThrottling policy has a bandwidth limit above 0 (it is a cap that backs off); a change
// bumps mapVersion for the SDSs with a device in the pool, which fetch their assignments (and the
// new policy) at their next heartbeat.

import { eq } from "drizzle-orm";
import type { CopyIoPolicy, DeviceCopyPolicy, IoPriorityPolicy } from "../../proto/cluster_api.ts";
import { PfError } from "../../proto/errors.ts";
import { Limits, Units } from "../../proto/limits.ts";
import { storagePoolTable, type StoragePoolRow } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getPool } from "../core/lookup.ts";
import { bumpMapVersion } from "../core/system_state.ts";

export type CopyClass = "rebuild" | "rebalance";

export interface IoPriorityChange {
  policy?: IoPriorityPolicy | undefined;
  numOfConcurrentIosPerDevice?: number | undefined;
  bwLimitPerDeviceInKbps?: number | undefined;
}

/** the pool columns the copy policies come from */
export type PoolIoColumns = Pick<StoragePoolRow, "rebuildIoPolicy" | "rebuildIoConcurrency" | "rebuildRateLimitKbps" | "rebalanceIoPolicy" | "rebalanceIoConcurrency" | "rebalanceBwLimitKbps">;

/** The pool's policy for one class of copies, as stored. */
export function poolIoPriority(p: PoolIoColumns, cls: CopyClass): { policy: IoPriorityPolicy; concurrentIos: number; bwLimitKbps: number } {
  return cls === "rebuild"
    ? { policy: p.rebuildIoPolicy, concurrentIos: p.rebuildIoConcurrency, bwLimitKbps: p.rebuildRateLimitKbps }
    : { policy: p.rebalanceIoPolicy, concurrentIos: p.rebalanceIoConcurrency, bwLimitKbps: p.rebalanceBwLimitKbps };
}

/** What an SDS applies (bytes per second). */
export function copyIoPolicyOf(p: PoolIoColumns, cls: CopyClass): CopyIoPolicy {
  const s = poolIoPriority(p, cls);
  // clamped again: a row from before the REST bound could hold more (the SDS refuses an unsafe integer)
  return { policy: s.policy, concurrentIosPerDevice: s.concurrentIos, bwLimitBytesPerSec: Math.min(s.bwLimitKbps, Limits.maxCopyBwKbps) * Units.KiB };
}

/** A rebuild that nothing caps: the planner starts fewer copies per source (Limits.maxConcurrentUnthrottledRebuildsPerSds). */
export function rebuildUnthrottled(p: StoragePoolRow): boolean {
  return p.rebuildIoPolicy === "unlimited";
}

/** setRebuildIoPriorityPolicy / setRebalanceIoPriorityPolicy: what is given changes, the rest stays. */
export function setIoPriorityPolicy(ctx: MdmContext, poolId: string, cls: CopyClass, change: IoPriorityChange): void {
  const { policy, numOfConcurrentIosPerDevice: n, bwLimitPerDeviceInKbps: bw } = change;
  if (policy === undefined && n === undefined && bw === undefined) {
    throw new PfError("BAD_REQUEST", `give policy, numOfConcurrentIosPerDevice or bwLimitPerDeviceInKbps to change the pool's ${cls} I/O priority`);
  }
  inTransaction(ctx, () => {
    const pool = getPool(ctx, poolId);
    const now = poolIoPriority(pool, cls);
    const next = { policy: policy ?? now.policy, concurrentIos: n ?? now.concurrentIos, bwLimitKbps: bw ?? now.bwLimitKbps };
    if (next.policy === "dynamicBwThrottling" && next.bwLimitKbps === 0) {
      throw new PfError("BAD_REQUEST", `${cls} policy dynamicBwThrottling needs a bandwidth limit: give bwLimitPerDeviceInKbps above 0 (the pool's is 0)`);
    }
    if (next.policy === now.policy && next.concurrentIos === now.concurrentIos && next.bwLimitKbps === now.bwLimitKbps) return;
    const set =
      cls === "rebuild"
        ? { rebuildIoPolicy: next.policy, rebuildIoConcurrency: next.concurrentIos, rebuildRateLimitKbps: next.bwLimitKbps }
        : { rebalanceIoPolicy: next.policy, rebalanceIoConcurrency: next.concurrentIos, rebalanceBwLimitKbps: next.bwLimitKbps };
    ctx.store.db.update(storagePoolTable).set(set).where(eq(storagePoolTable.id, poolId)).run();
    // only the SDSs with a device in the pool apply it: no SDC and no other SDS refetches
    const holders = ctx.store.sqlite.query<{ id: string }, [string]>("SELECT DISTINCT sds_id AS id FROM device WHERE pool_id = ?").all(poolId).map((r) => r.id);
    bumpMapVersion(ctx, { sds: holders, sdc: [] });
  });
}

/**
 * The copy policies of every device of an SDS (its pool's), for its assignments: one cached
 * statement (every SDS fetch runs it; a drizzle read of the pool per call was ~0.15 ms of an
 * empty delta's ~0.7 at 1,000 SDSs).
 */
export function copyPoliciesOfSds(ctx: MdmContext, sdsId: string): DeviceCopyPolicy[] {
  const rows = ctx.store.sqlite
    .query<PoolIoColumns & { deviceId: string; poolId: string }, [string]>(
      "SELECT d.id AS deviceId, d.pool_id AS poolId, p.rebuild_io_policy AS rebuildIoPolicy, p.rebuild_io_concurrency AS rebuildIoConcurrency, p.rebuild_rate_limit_kbps AS rebuildRateLimitKbps, " +
        "p.rebalance_io_policy AS rebalanceIoPolicy, p.rebalance_io_concurrency AS rebalanceIoConcurrency, p.rebalance_bw_limit_kbps AS rebalanceBwLimitKbps " +
        "FROM device d JOIN storage_pool p ON p.id = d.pool_id WHERE d.sds_id = ? ORDER BY d.rowid",
    )
    .all(sdsId);
  return rows.map((r) => ({ deviceId: r.deviceId, rebuild: copyIoPolicyOf(r, "rebuild"), rebalance: copyIoPolicyOf(r, "rebalance") }));
}
