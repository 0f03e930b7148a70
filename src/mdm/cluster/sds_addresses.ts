// The SDS address list every assignment and map answer may carry, and its content tag. At 1,000
// SDSs the list is ~60 KB of a ~62 KB answer, so a node that sends the tag of the list it holds
// (`?addresses=<tag>`, proto/cluster_api.ts NodeMapsQuery) gets the list only when it changed.
//
// Invariants: the tag is a pure function of the list's content (sorted by SDS id), so any MDM
// (a restarted one, an HA successor) gives the same tag for the same list and a join, a removal
// or an address change gives a new one; the list is read in the caller's transaction, so the
// tag and the rest of the answer describe one state; a node without a tag (or a stale one)
// always gets the list.

import type { SdsAddress } from "../../proto/cluster_api.ts";
import type { MdmContext } from "../core/context.ts";

/** Every SDS's data-plane address, by id. */
export function sdsAddresses(ctx: MdmContext): SdsAddress[] {
  return ctx.store.sqlite.query<SdsAddress, []>("SELECT id AS sdsId, host, data_port AS port FROM sds ORDER BY id").all();
}

/** The content tag of an address list: 16 hex digits of its xxHash64. */
export function sdsAddressTag(list: readonly SdsAddress[]): string {
  let text = "";
  for (const a of list) text += `${a.sdsId} ${a.host} ${a.port}\n`;
  return BigInt.asUintN(64, BigInt(Bun.hash.xxHash64(text))).toString(16).padStart(16, "0");
}

/** The address part of an answer for a node holding the list tagged `held` (undefined: none). */
export function addressesFor(ctx: MdmContext, held: string | undefined): { sds?: SdsAddress[]; sdsTag: string } {
  const list = sdsAddresses(ctx);
  const sdsTag = sdsAddressTag(list);
  return held === sdsTag ? { sdsTag } : { sds: list, sdsTag };
}
