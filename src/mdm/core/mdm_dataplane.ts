// The MDM's own data-plane client: one pool per MDM context, authenticated as the MDM node
// (its key follows rotations), addressed at every SDS the database knows. The consistency check
// (CHECKSUM) and the snapshot write fences (CONTROL) share it; SDSs accept only those two
// operations from the MDM role (src/sds/role_ops.ts).

import { DataPlanePool } from "../../proto/dataplane_client.ts";
import { NodeRole } from "../../proto/dataplane_auth.ts";
import { NodeKeyring } from "../../proto/dataplane_keys.ts";
import { sdsTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "./context.ts";
import { nodeKeysOf } from "./dataplane_secrets.ts";

const pools = new WeakMap<MdmContext, { pool: DataPlanePool; keys: NodeKeyring }>();

/** The MDM's pool, its keys and SDS addresses refreshed (cheap: a few rows). */
export function mdmDataPlanePool(ctx: MdmContext, opts: { connectTimeoutMs?: number } = {}): DataPlanePool {
  let p = pools.get(ctx);
  if (!p) {
    const keys = new NodeKeyring(NodeRole.MDM, ctx.systemId);
    const tls = ctx.dataPlaneTls?.self;
    p = { pool: new DataPlanePool({ credentials: keys, connsPerSds: 1, ...opts, ...(tls === undefined ? {} : { tls: () => tls }) }), keys };
    pools.set(ctx, p);
  }
  p.keys.set(nodeKeysOf(ctx, NodeRole.MDM, ctx.systemId)); // follows key rotations
  for (const a of ctx.store.db.select({ id: sdsTable.id, host: sdsTable.host, port: sdsTable.dataPort }).from(sdsTable).all()) p.pool.setAddress(a.id, a.host, a.port);
  return p.pool;
}
