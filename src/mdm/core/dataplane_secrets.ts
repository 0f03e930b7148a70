// The MDM's data-plane secrets: the cluster master keys (sqlite table dataplane_key, one per key
// id), the keys derived from them for members, grants and nodes (src/proto/dataplane_keys.ts),
// the key of the nodes' cluster-API tokens (mdm_secret), and key rotation.
//
// Invariants: at most MAX_KEPT_KIDS master keys exist (current and previous), kids only grow;
// the first one is made on first use; a rotation bumps mapVersion, so every SDS and SDC
// fetches the new keys at its next heartbeat; grants are signed with the newest key only once
// it is Limits.dataKeyActivationMs old (every SDS has fetched it by then), so a rotation never
// makes an SDS refuse a fresh grant; a node token never leaves the MDM except in that node's
// own join answer, and is compared in constant time.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { desc, eq, lt } from "drizzle-orm";
import { roleName, type NodeKey, type NodeRole } from "../../proto/dataplane_auth.ts";
import { MAX_KEPT_KIDS, deriveGrantKey, deriveMemberKey, deriveNodeKey, keyFromHex } from "../../proto/dataplane_keys.ts";
import { assert } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import { dataPlaneKeyTable, mdmSecretTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "./context.ts";
import { bumpMapVersion } from "./system_state.ts";

export interface MasterKey extends NodeKey {
  createdAtMs: number;
}

const NODE_TOKEN_SECRET = "node-token-key";

/** Master keys, newest first (the first is made on first use). */
export function masterKeys(ctx: MdmContext): MasterKey[] {
  let rows = ctx.store.db.select().from(dataPlaneKeyTable).orderBy(desc(dataPlaneKeyTable.kid)).limit(MAX_KEPT_KIDS).all();
  if (rows.length === 0) {
    ctx.store.db.insert(dataPlaneKeyTable).values({ kid: 1, keyHex: randomBytes(32).toString("hex"), createdAtMs: ctx.clock() }).onConflictDoNothing().run();
    rows = ctx.store.db.select().from(dataPlaneKeyTable).orderBy(desc(dataPlaneKeyTable.kid)).limit(MAX_KEPT_KIDS).all();
  }
  assert(rows.length > 0, "a data-plane master key exists");
  return rows.map((r) => ({ kid: r.kid, key: keyFromHex(r.keyHex), createdAtMs: r.createdAtMs }));
}

/** A new current master key; the previous one stays accepted, older ones are deleted. */
export function rotateDataPlaneKey(ctx: MdmContext): number {
  return ctx.store.sqlite.transaction(() => {
    const newest = masterKeys(ctx)[0]!;
    const kid = newest.kid + 1;
    ctx.store.db.insert(dataPlaneKeyTable).values({ kid, keyHex: randomBytes(32).toString("hex"), createdAtMs: ctx.clock() }).run();
    ctx.store.db.delete(dataPlaneKeyTable).where(lt(dataPlaneKeyTable.kid, kid - (MAX_KEPT_KIDS - 1))).run();
    bumpMapVersion(ctx);
    return kid;
  })();
}

/** Member keys (for SDSs: verify peers, derive their own node key). */
export function memberKeys(ctx: MdmContext): NodeKey[] {
  return masterKeys(ctx).map((m) => ({ kid: m.kid, key: deriveMemberKey(m.key, ctx.systemId) }));
}

/** Grant keys (for SDSs: verify grants). */
export function grantKeys(ctx: MdmContext): NodeKey[] {
  return masterKeys(ctx).map((m) => ({ kid: m.kid, key: deriveGrantKey(m.key, ctx.systemId) }));
}

/** The grant key to sign with: the newest one every SDS has had time to fetch. */
export function signingGrantKey(ctx: MdmContext): NodeKey {
  const all = masterKeys(ctx);
  const now = ctx.clock();
  const active = all.find((m) => now - m.createdAtMs >= Limits.dataKeyActivationMs) ?? all[all.length - 1]!;
  return { kid: active.kid, key: deriveGrantKey(active.key, ctx.systemId) };
}

/** One node's own keys (current and previous kid): all it ever gets of the data-plane secrets. */
export function nodeKeysOf(ctx: MdmContext, role: NodeRole, nodeId: string): NodeKey[] {
  return memberKeys(ctx).map((m) => ({ kid: m.kid, key: deriveNodeKey(m.key, role, nodeId) }));
}

/** The key node tokens are derived from; read on every cluster API call, so one cached statement. */
function nodeTokenKey(ctx: MdmContext): Buffer {
  const hot = ctx.store.sqlite.query<{ valueHex: string }, [string]>("SELECT value_hex AS valueHex FROM mdm_secret WHERE name = ?").get(NODE_TOKEN_SECRET);
  if (hot) return Buffer.from(hot.valueHex, "hex");
  let row = ctx.store.db.select().from(mdmSecretTable).where(eq(mdmSecretTable.name, NODE_TOKEN_SECRET)).get();
  if (!row) {
    ctx.store.db.insert(mdmSecretTable).values({ name: NODE_TOKEN_SECRET, valueHex: randomBytes(32).toString("hex"), createdAtMs: ctx.clock() }).onConflictDoNothing().run();
    row = ctx.store.db.select().from(mdmSecretTable).where(eq(mdmSecretTable.name, NODE_TOKEN_SECRET)).get();
  }
  assert(row, "the node token key exists");
  return Buffer.from(row.valueHex, "hex");
}

/**
 * Node tokens by role and node, with the key they were made from: every cluster API call checks
 * one, so the key is read once per MDM life (a new HealthTracker: start, HA takeover, when a
 * standby's replayed key is the one in force) and each token made once. The key never changes
 * while this MDM leads (a standby answers no cluster API call). Memory ~ nodes.
 */
const tokenCaches = new WeakMap<object, { key: Buffer; tokens: Map<string, string> }>();

function tokenCache(ctx: MdmContext): { key: Buffer; tokens: Map<string, string> } {
  let cache = tokenCaches.get(ctx.health);
  if (cache === undefined) {
    cache = { key: nodeTokenKey(ctx), tokens: new Map() };
    tokenCaches.set(ctx.health, cache);
  }
  return cache;
}

/** The token a node presents on the cluster API (header x-pf-node-token), 64 hex. */
export function nodeTokenOf(ctx: MdmContext, role: NodeRole, nodeId: string): string {
  const cache = tokenCache(ctx);
  const name = `${roleName(role)}|${nodeId}`;
  return cache.tokens.get(name) ?? createHmac("sha256", cache.key).update(`pf api v1|${name}`).digest("hex");
}

/** Only a token that checked out is kept: a caller naming made-up node ids fills nothing. */
export function nodeTokenValid(ctx: MdmContext, role: NodeRole, nodeId: string, given: string): boolean {
  const cache = tokenCache(ctx);
  const name = `${roleName(role)}|${nodeId}`;
  const token = nodeTokenOf(ctx, role, nodeId);
  const want = Buffer.from(token);
  const got = Buffer.from(given);
  const ok = want.byteLength === got.byteLength && timingSafeEqual(want, got);
  if (ok && !cache.tokens.has(name)) {
    if (cache.tokens.size >= 100_000) cache.tokens.clear();
    cache.tokens.set(name, token);
  }
  return ok;
}
