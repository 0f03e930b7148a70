// Which data-plane operations each authenticated role may run on an SDS. Checked per frame by
// the server with one mask test (no allocation). Client IO (READ, WRITE, TRIM, WRITE_ZEROES)
// is open to SDCs only, and only under a grant for the volume (checked by the node); forwarded
// writes and rebuild copies only to peer SDSs (the node also checks the sender is the extent's
// primary); the MDM reads checksums (its consistency check) and sends V-Tree control messages
// (snapshot fences, layer graphs).

import { Op } from "../proto/dataplane.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";

function mask(...ops: Op[]): number {
  let m = 0;
  for (const op of ops) m |= 1 << op;
  return m;
}

const ALLOWED: Record<NodeRole, number> = {
  [NodeRole.SDC]: mask(Op.PING, Op.GRANT, Op.READ, Op.WRITE, Op.TRIM, Op.WRITE_ZEROES, Op.FLUSH, Op.CHECKSUM),
  [NodeRole.SDS]: mask(Op.PING, Op.FLUSH, Op.REPL_WRITE, Op.REPL_ZERO, Op.REBUILD_WRITE, Op.REBUILD_OWNERS, Op.CHECKSUM),
  [NodeRole.MDM]: mask(Op.PING, Op.CHECKSUM, Op.CONTROL),
};

export function opAllowed(role: NodeRole, op: Op): boolean {
  return ((ALLOWED[role] >>> op) & 1) === 1;
}
