// Protection domains, storage pools and fault sets: --add_protection_domain,
// --add_storage_pool, --add_fault_set, --query_protection_domain, --query_storage_pool.
// Creates read the new object back, so the output (and --json) shows what the MDM stored.

import { isPfError } from "../../proto/errors.ts";
import type { CommandContext, Output } from "./command_context.ts";
import { PoolStatisticsObj, type FaultSetObj, type ProtectionDomainObj, type StoragePoolObj, type VolumeObj } from "./mdm_objects.ts";
import type { MdmRestClient } from "./rest_client.ts";
import { resolvePd, resolvePool } from "./selectors.ts";
import { durationText } from "./cmd_recovery.ts";
import { mappingText, orNA, plural, provisioningText, sizeText } from "./text_format.ts";

export async function addProtectionDomain(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const id = await client.create("ProtectionDomain", { name: ctx.args.need("protection_domain_name") });
  const pd = await client.get("ProtectionDomain", id);
  return { text: [`Successfully created protection domain ${pd.name}. Object ID ${pd.id}`], json: pd };
}

export async function addStoragePool(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pd = await resolvePd(client, ctx.args);
  const media = ctx.args.str("media_type");
  const id = await client.create("StoragePool", {
    protectionDomainId: pd.id,
    name: ctx.args.need("storage_pool_name"),
    ...(media === undefined ? {} : { mediaType: media.toUpperCase() }),
  });
  const pool = await client.get("StoragePool", id);
  return { text: [`Successfully created storage pool ${pool.name} in protection domain ${pd.name}. Object ID ${pool.id}`], json: pool };
}

export async function addFaultSet(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pd = await resolvePd(client, ctx.args);
  const id = await client.create("FaultSet", { protectionDomainId: pd.id, name: ctx.args.need("fault_set_name") });
  const fs = await client.get("FaultSet", id);
  return { text: [`Successfully created fault set ${fs.name} in protection domain ${pd.name}. Object ID ${fs.id}`], json: fs };
}

export async function queryProtectionDomain(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pd = await resolvePd(client, ctx.args);
  const [pools, faultSets, sds, volumes] = await Promise.all([
    client.list("StoragePool"),
    client.list("FaultSet"),
    client.list("Sds"),
    client.list("Volume"),
  ]);
  const myPools = pools.filter((p) => p.protectionDomainId === pd.id);
  const poolIds = new Set(myPools.map((p) => p.id));
  const myVolumes = volumes.filter((v) => poolIds.has(v.storagePoolId));
  const mySds = sds.filter((s) => s.protectionDomainId === pd.id);
  const myFaultSets = faultSets.filter((f) => f.protectionDomainId === pd.id);
  return {
    text: pdLines(pd, myPools, myFaultSets, mySds.length, myVolumes),
    json: pd,
  };
}

function pdLines(pd: ProtectionDomainObj, pools: StoragePoolObj[], faultSets: FaultSetObj[], sdsCount: number, volumes: VolumeObj[]): string[] {
  const lines = [`Protection Domain ${pd.id} Name: ${pd.name}`, `\tState: ${orNA(pd.protectionDomainState)}`];
  lines.push(`\t${plural(pools.length, "Storage Pool")}:`);
  for (const p of pools) lines.push(`\t\tStorage Pool ${p.id} Name: ${p.name}`);
  lines.push(`\t${plural(faultSets.length, "Fault Set")}:`);
  for (const f of faultSets) lines.push(`\t\tFault Set ${f.id} Name: ${f.name}`);
  lines.push(`\t${plural(sdsCount, "SDS node")}`);
  lines.push(`\t${plural(volumes.length, "volume")}`);
  return lines;
}

export async function queryStoragePool(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const [pd, volumes, stats] = await Promise.all([
    client.get("ProtectionDomain", pool.protectionDomainId),
    client.list("Volume"),
    poolStatistics(client, pool.id),
  ]);
  const myVolumes = volumes.filter((v) => v.storagePoolId === pool.id);
  return { text: poolLines(pool, pd, myVolumes, stats), json: stats === null ? pool : { ...pool, statistics: stats } };
}

/** The pool's capacity figures, or null when this MDM does not serve the Statistics relationship. */
export async function poolStatistics(client: MdmRestClient, poolId: string): Promise<PoolStatisticsObj | null> {
  try {
    return await client.relationship("StoragePool", poolId, "Statistics", PoolStatisticsObj);
  } catch (e) {
    // the pool exists (it was just read): NOT_FOUND here means the relationship is not served
    if (isPfError(e) && e.code === "NOT_FOUND") return null;
    throw e;
  }
}

function poolLines(pool: StoragePoolObj, pd: ProtectionDomainObj, volumes: VolumeObj[], stats: PoolStatisticsObj | null): string[] {
  const available = stats?.capacityAvailableForVolumeAllocationInKb;
  const head = `Storage Pool ${pool.name} (Id: ${pool.id}) has ${plural(volumes.length, "volume")}`;
  const lines = [typeof available === "number" ? `${head} and ${sizeText(available)} available for volume allocation` : head];
  lines.push(`\tProtection Domain: ${pd.id} (Name: ${pd.name})`);
  lines.push(`\tMedia type: ${orNA(pool.mediaType)}`);
  lines.push(`\tData layout: ${orNA(pool.dataLayout)}`);
  if (typeof pool.sparePercentage === "number") lines.push(`\tSpare policy: ${pool.sparePercentage}% of total`);
  if (typeof pool.writeCache === "string") lines.push(`\tWrite cache: ${pool.writeCache}`);
  if (typeof pool.capacityAlertHighThreshold === "number" && typeof pool.capacityAlertCriticalThreshold === "number") {
    lines.push(`\tCapacity alert thresholds: High: ${pool.capacityAlertHighThreshold}%, Critical: ${pool.capacityAlertCriticalThreshold}%`);
  }
  if (typeof pool.zeroPaddingEnabled === "boolean") lines.push(`\tZero padding is ${pool.zeroPaddingEnabled ? "enabled" : "disabled"}`);
  if (typeof pool.rebuildEnabled === "boolean") lines.push(`\tRebuild is ${pool.rebuildEnabled ? "enabled" : "disabled"}`);
  if (typeof pool.rebalanceEnabled === "boolean") lines.push(`\tRebalance is ${pool.rebalanceEnabled ? "enabled" : "disabled"}`);
  if (stats) {
    const kb = (v: number | null | undefined) => (typeof v === "number" ? sizeText(v) : "N/A");
    lines.push(`\tCapacity: total ${kb(stats.maxCapacityInKb)}, in use ${kb(stats.capacityInUseInKb)}, spare ${kb(stats.spareCapacityInKb)}`);
    if (typeof stats.storagePoolState === "string") {
      lines.push(`\tState: ${stats.storagePoolState}, rebuild: ${orNA(stats.rebuildState)}${stats.rebuildStalled ? " (STALLED)" : ""}`);
      if (stats.storagePoolState !== "Normal" || stats.rebuildState !== "Idle") {
        const eta = typeof stats.rebuildEtaSeconds === "number" ? durationText(stats.rebuildEtaSeconds) : "unknown";
        const pct = typeof stats.rebuildProgressPercent === "number" ? `${stats.rebuildProgressPercent.toFixed(1)}%` : "N/A";
        lines.push(`\tDegraded capacity: ${kb(stats.degradedCapacityInKb)}, pending rebuild: ${kb(stats.pendingRebuildCapacityInKb)}, progress ${pct}, ETA ${eta}`);
      }
    }
  }
  lines.push(`\tVolumes:`);
  if (volumes.length === 0) lines.push("\t\t<No volumes defined>");
  for (const v of volumes) {
    lines.push(`\t\tVolume ID: ${v.id} Name: ${orNA(v.name)} Size: ${sizeText(v.sizeInKb)} ${mappingText(v)} ${provisioningText(v.volumeType)}`);
  }
  return lines;
}
