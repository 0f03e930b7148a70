// --set_storage_pool_write_cache (pf extension): a pool's write cache mode, changed live through
// the REST action StoragePool setWriteCache; every SDS serves in the new mode from its next
// heartbeat (about a second). --query_storage_pool shows the mode.

import type { CommandContext, Output } from "./command_context.ts";
import { resolvePool } from "./selectors.ts";

export async function setStoragePoolWriteCache(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const mode = ctx.args.str("write_cache");
  await client.action("StoragePool", pool.id, "setWriteCache", { writeCache: mode });
  const after = await client.get("StoragePool", pool.id);
  return {
    text: [`Successfully set the write cache of Storage Pool ${pool.name} (Id: ${pool.id}) to ${String(after.writeCache ?? mode)}`],
    json: { storagePoolId: pool.id, writeCache: after.writeCache ?? mode },
  };
}
