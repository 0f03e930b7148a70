// --set_rebuild_io_priority_policy / --set_rebalance_io_priority_policy: a pool's I/O priority
// policy for its rebuild (and resync) copies or its moves (drain, rebalance), through the REST
// actions StoragePool setRebuildIoPriorityPolicy / setRebalanceIoPriorityPolicy. The SDSs apply
// it from their next heartbeat. --policy takes the REST names or the scli spellings (argv_parse.ts
// ioPolicyOf); --concurrent_ios_per_device 1..20; --bw_limit_per_device_kb KB/s (0 = none).

import type { CommandContext, Output } from "./command_context.ts";
import { ioPolicyOf } from "./argv_parse.ts";
import { resolvePool } from "./selectors.ts";

export const setRebuildIoPriorityPolicy = (ctx: CommandContext): Promise<Output> => setIoPriority(ctx, "rebuild");
export const setRebalanceIoPriorityPolicy = (ctx: CommandContext): Promise<Output> => setIoPriority(ctx, "rebalance");

async function setIoPriority(ctx: CommandContext, cls: "rebuild" | "rebalance"): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const policy = ctx.args.str("policy");
  const ios = ctx.args.str("concurrent_ios_per_device");
  const bw = ctx.args.str("bw_limit_per_device_kb");
  const body = {
    ...(policy === undefined ? {} : { policy: ioPolicyOf(policy) }),
    ...(ios === undefined ? {} : { numOfConcurrentIosPerDevice: ios }),
    ...(bw === undefined ? {} : { bwLimitPerDeviceInKbps: bw }),
  };
  const action = cls === "rebuild" ? "setRebuildIoPriorityPolicy" : "setRebalanceIoPriorityPolicy";
  await client.action("StoragePool", pool.id, action, body);
  const after = await client.get("StoragePool", pool.id);
  const got = {
    policy: after[`${cls}IoPriorityPolicy`],
    numOfConcurrentIosPerDevice: after[`${cls}IoPriorityNumOfConcurrentIosPerDevice`],
    bwLimitPerDeviceInKbps: after[`${cls}IoPriorityBwLimitPerDeviceInKbps`],
  };
  return {
    text: [
      `Successfully set the ${cls} I/O priority policy of Storage Pool ${pool.name} (Id: ${pool.id}) to ${String(got.policy)}` +
        ` (concurrent IOs per device: ${String(got.numOfConcurrentIosPerDevice)}, bandwidth limit per device: ${String(got.bwLimitPerDeviceInKbps)} KB/s)`,
    ],
    json: { storagePoolId: pool.id, [`${cls}IoPriority`]: got },
  };
}
