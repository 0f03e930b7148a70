// Recovery commands: --query_rebuild (a pool's rebuild/rebalance state and progress, pf
// extension; --watch refreshes about every second until the pool is Normal and idle: a bar
// redrawn in place on a terminal, one plain line per change otherwise) and --remove_sds (starts a
// drain: the MDM refuses when the other SDSs cannot hold the data, else moves it off and then
// removes the SDS; an SDS without data goes at once).

import { isPfError } from "../../proto/errors.ts";
import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import type { CommandContext, Output } from "./command_context.ts";
import type { StoragePoolObj } from "./mdm_objects.ts";
import { resolvePool, resolveSds } from "./selectors.ts";
import { orNA, plural, sizeText } from "./text_format.ts";

/** Refresh period of --watch. */
export const WATCH_INTERVAL_MS = 1000;
const BAR_WIDTH = 30;

/** "1h 02m 05s" / "2m 05s" / "5s"; "unknown" for null */
export function durationText(seconds: number | null): string {
  if (seconds === null) return "unknown";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
  if (m > 0) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

/** "12.5 MB/s" from KiB/s */
export function rateText(kbps: number): string {
  return `${(kbps / 1024).toFixed(1)} MB/s`;
}

export function isSettled(s: RebuildStatus): boolean {
  return s.storagePoolState === "Normal" && s.rebuildState === "Idle";
}

export function rebuildLines(pool: StoragePoolObj, s: RebuildStatus): string[] {
  return [
    `Storage Pool ${pool.name} (Id: ${pool.id}) rebuild status`,
    `\tState: ${s.storagePoolState}, rebuild: ${s.rebuildState}${s.rebuildStalled ? " (STALLED)" : ""}`,
    `\tDegraded: ${plural(s.numOfDegradedExtents, "extent")} (${sizeText(s.degradedCapacityInKb)}), unavailable: ${plural(s.numOfUnavailableExtents, "extent")}`,
    `\tWaiting for a returning SDS: ${plural(s.numOfWaitingExtents, "extent")}`,
    `\tRebuild: ${s.numOfActiveRebuildExtents} running (${s.numOfActiveResyncExtents} resync), ${s.numOfPendingRebuildExtents} pending (${sizeText(s.pendingRebuildCapacityInKb)})`,
    `\tRebalance/drain: ${s.numOfActiveMoveExtents} running, ${sizeText(s.pendingRebalanceCapacityInKb)} pending`,
    `\tProgress: ${s.rebuildProgressPercent.toFixed(1)}%, ${sizeText(s.remainingInKb)} left, rate ${rateText(s.rebuildRateInKbps)}, ETA ${durationText(s.rebuildEtaSeconds)}`,
    ...(s.rebuildStalled ? [`\tWARNING: no progress for ${durationText(s.noProgressSeconds)}`] : []),
  ];
}

/** One line for --watch: "[#####.....]  45.2%  12.0 MB/s  ETA 1m 05s  Rebuilding, 12 pending" */
export function progressLine(s: RebuildStatus): string {
  const filled = Math.round((Math.min(100, Math.max(0, s.rebuildProgressPercent)) / 100) * BAR_WIDTH);
  const bar = `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}]`;
  const what = `${s.storagePoolState}/${s.rebuildState}${s.rebuildStalled ? " STALLED" : ""}`;
  const work = `${s.numOfActiveRebuildExtents + s.numOfActiveMoveExtents} running, ${s.numOfPendingRebuildExtents} pending`;
  return `${bar} ${s.rebuildProgressPercent.toFixed(1).padStart(5)}%  ${rateText(s.rebuildRateInKbps)}  ETA ${durationText(s.rebuildEtaSeconds)}  ${what}, ${work}`;
}

export async function queryRebuild(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  let status = await client.queryRebuild(pool.id);
  if (ctx.args.has("watch")) {
    let last = "";
    for (;;) {
      const line = progressLine(status);
      if (ctx.live.isTty) ctx.live.write(`\r\x1b[2K${line}`);
      else if (line !== last) ctx.live.write(`${line}\n`);
      last = line;
      if (isSettled(status)) break;
      await ctx.live.sleep(WATCH_INTERVAL_MS);
      status = await client.queryRebuild(pool.id);
    }
    if (ctx.live.isTty) ctx.live.write("\n");
  }
  return { text: rebuildLines(pool, status), json: status };
}

export async function removeSds(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const sds = await resolveSds(client, ctx.args);
  const label = `${orNA(sds.name)} (ID ${sds.id})`;
  await client.action("Sds", sds.id, "removeSds", {});
  try {
    const after = await client.get("Sds", sds.id);
    const copies = typeof after.numOfExtentCopies === "number" ? `its ${plural(after.numOfExtentCopies, "extent copy", "extent copies")}` : "its data";
    return {
      text: [
        `Started removal of SDS ${label}: ${copies} move to the other SDSs first (SDS state ${orNA(after.sdsState)})`,
        `Follow it with scli --query_rebuild --storage_pool_id ID --watch; the SDS disappears when it holds nothing`,
      ],
      json: { removed: false, draining: true, sds: after },
    };
  } catch (e) {
    if (isPfError(e) && e.code === "NOT_FOUND") return { text: [`Successfully removed SDS ${label}`], json: { removed: true, draining: false, id: sds.id } };
    throw e;
  }
}
