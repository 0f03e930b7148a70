// The SDS address list every assignment and map answer may carry, and its content tag. At 1,000
// SDSs the list is ~60 KB of a ~62 KB answer, so a node that sends the tag of the list it holds
// (`?addresses=<tag>`, proto/cluster_api.ts NodeMapsQuery) gets the list only when it changed.
//
// Invariants: the tag is a pure function of the list's content (sorted by SDS id), so any MDM
// (a restarted one, an HA successor) gives the same tag for the same list and a join, a removal
// or an address change gives a new one; the list is read in the caller's transaction, so the
// tag and the rest of the answer describe one state; a node without a tag (or a stale one)
// always gets the list. The list is cached per connection and read again after any change to
// the sds table (currentList).

import type { Database } from "bun:sqlite";
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

/**
 * The list and its tag, read again only after a change to the sds table: a TEMP trigger (this
 * connection only) sets a fresh random token in the changing transaction on any insert, delete
 * or address change, so a rolled-back change restores the old token and a later one never
 * reuses it. Reading 1,000 rows and hashing them per fetch was O(SDSs) per fetch, i.e. O(SDSs^2)
 * per second with every SDS fetching.
 */
const cached = new WeakMap<Database, { token: number; list: SdsAddress[]; tag: string }>();
function currentList(ctx: MdmContext): { list: SdsAddress[]; tag: string } {
  const sqlite = ctx.store.sqlite;
  let c = cached.get(sqlite);
  if (c === undefined) {
    sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_sds_addr_token (t INTEGER NOT NULL)");
    sqlite.run("INSERT INTO temp.pf_sds_addr_token (t) SELECT random() WHERE NOT EXISTS (SELECT 1 FROM temp.pf_sds_addr_token)");
    const bump = "UPDATE temp.pf_sds_addr_token SET t = random();";
    sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_sds_addr_i AFTER INSERT ON main.sds BEGIN ${bump} END`);
    sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_sds_addr_d AFTER DELETE ON main.sds BEGIN ${bump} END`);
    sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_sds_addr_u AFTER UPDATE OF id, host, data_port ON main.sds BEGIN ${bump} END`);
  }
  const token = sqlite.query<{ t: number }, []>("SELECT t FROM temp.pf_sds_addr_token").get()!.t;
  if (c === undefined || c.token !== token) {
    const list = sdsAddresses(ctx);
    c = { token, list, tag: sdsAddressTag(list) };
    cached.set(sqlite, c);
  }
  return c;
}

/** The address part of an answer for a node holding the list tagged `held` (undefined: none). */
export function addressesFor(ctx: MdmContext, held: string | undefined): { sds?: SdsAddress[]; sdsTag: string } {
  const { list, tag: sdsTag } = currentList(ctx);
  return held === sdsTag ? { sdsTag } : { sds: list, sdsTag };
}
