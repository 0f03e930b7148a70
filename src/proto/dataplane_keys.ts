// Key derivation of the data plane (HKDF-SHA256, RFC 5869) and the small keyrings nodes keep.
//
//   masterKey[kid]   32 random bytes, kept by the MDM only (sqlite), rotated by a new kid
//   memberKey[kid]   = HKDF(masterKey[kid], salt = systemId, info = "pf member v1")   MDM + SDSs
//   grantKey[kid]    = HKDF(masterKey[kid], salt = systemId, info = "pf grant v1")    MDM + SDSs
//   nodeKey[kid](r,id) = HKDF(memberKey[kid], salt = "", info = "pf node v1|<role>|<id>")
//
// A node (SDC, SDS, the MDM's own checker) proves nodeKey in the handshake; an SDC gets only
// its own nodeKey from the MDM (over HTTPS); an SDS gets memberKey, so it can derive the key of
// any node that connects to it without asking the MDM (one HKDF per new connection, cached). The
// role is part of the info string, so an SDC's key never passes for an SDS's. grantKey signs
// mapping grants (grant.ts).
//
// Invariants: every key is 32 bytes; a keyring lists kids newest first and holds at most
// MAX_KEPT_KIDS (current and previous: rotation without downtime).

import { hkdfSync } from "node:crypto";
import { roleName, type ClientCredentials, type NodeKey, type NodeRole } from "./dataplane_auth.ts";

export const KEY_BYTES = 32;
/** current and previous key: a node or SDS that has not caught up with a rotation still works */
export const MAX_KEPT_KIDS = 2;

function hkdf(ikm: Uint8Array, salt: string, info: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", ikm, Buffer.from(salt), Buffer.from(info), KEY_BYTES));
}

export function deriveMemberKey(masterKey: Uint8Array, systemId: string): Uint8Array {
  return hkdf(masterKey, systemId, "pf member v1");
}

export function deriveGrantKey(masterKey: Uint8Array, systemId: string): Uint8Array {
  return hkdf(masterKey, systemId, "pf grant v1");
}

export function deriveNodeKey(memberKey: Uint8Array, role: NodeRole, nodeId: string): Uint8Array {
  return hkdf(memberKey, "", `pf node v1|${roleName(role)}|${nodeId}`);
}

/** Keys by kid, newest first (sorted and capped on every set). */
export function newestFirst<T extends { kid: number }>(keys: readonly T[]): T[] {
  return [...keys].sort((a, b) => b.kid - a.kid).slice(0, MAX_KEPT_KIDS);
}

/** A node's own keys (an SDC's from the MDM, the MDM checker's derived): its handshake credentials. */
export class NodeKeyring implements ClientCredentials {
  private keys: NodeKey[] = [];

  constructor(
    readonly role: NodeRole,
    readonly nodeId: string,
    keys: readonly NodeKey[] = [],
  ) {
    this.set(keys);
  }

  set(keys: readonly NodeKey[]): void {
    for (const k of keys) if (k.key.byteLength !== KEY_BYTES) throw new Error(`invariant broken: node key ${k.kid} is ${k.key.byteLength} bytes`);
    this.keys = newestFirst(keys);
  }

  get kids(): number[] {
    return this.keys.map((k) => k.kid);
  }

  keyFor(kids: readonly number[]): NodeKey | null {
    for (const k of this.keys) if (kids.includes(k.kid)) return k;
    return null;
  }
}

export function keyFromHex(hex: string): Uint8Array {
  const out = new Uint8Array(Buffer.from(hex, "hex"));
  if (out.byteLength !== KEY_BYTES) throw new Error(`invariant broken: a key of ${out.byteLength} bytes`);
  return out;
}

/** Keys as the cluster API carries them ({kid, key: hex}). */
export function keysFromHex(entries: readonly { kid: number; key: string }[]): NodeKey[] {
  return entries.map((e) => ({ kid: e.kid, key: keyFromHex(e.key) }));
}

export function keyToHex(key: Uint8Array): string {
  return Buffer.from(key).toString("hex");
}
