// Who may connect to this SDS, and this SDS's own handshake credentials: the member keys the
// MDM hands out (current and previous kid, see src/proto/dataplane_keys.ts), the SDS peers of
// the cluster (from the assignments) and the MDM's id. Peer keys are derived here, so a new
// connection needs no call to the MDM.
//
// Invariants: no key, no connection (sdsId is null until keys are set, and the server refuses
// handshakes); an SDS peer must be in the latest assignments' SDS list; the MDM connects only
// under the system id; an SDC may connect under any id (its IO needs grants, checked per
// volume); derived keys are cached, the cache is bounded and dropped on every key change.

import type { SdsDataPlaneKeys } from "../proto/cluster_api.ts";
import type { NodeKey, PeerVerifier, ClientCredentials } from "../proto/dataplane_auth.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { deriveNodeKey, keysFromHex, newestFirst } from "../proto/dataplane_keys.ts";

const MAX_CACHED_PEER_KEYS = 10_000;

export class SdsAccess implements PeerVerifier, ClientCredentials {
  readonly role = NodeRole.SDS;
  private memberKeys: NodeKey[] = [];
  private peers: ReadonlySet<string> = new Set();
  private mdmId: string | null = null;
  private readonly cache = new Map<string, Uint8Array>();

  constructor(readonly nodeId: string) {}

  get sdsId(): string | null {
    return this.memberKeys.length === 0 ? null : this.nodeId;
  }

  /** The data-plane part of the MDM's assignments. */
  apply(dp: SdsDataPlaneKeys): void {
    this.setMemberKeys(keysFromHex(dp.memberKeys));
  }

  /** Member keys (any order; the newest MAX_KEPT_KIDS are kept). */
  setMemberKeys(keys: readonly NodeKey[]): void {
    const next = newestFirst(keys);
    const same = next.length === this.memberKeys.length && next.every((k, i) => k.kid === this.memberKeys[i]!.kid);
    this.memberKeys = next;
    if (!same) this.cache.clear();
  }

  /** SDS ids that may connect as peers (the cluster's SDSs). */
  setPeers(sdsIds: Iterable<string>): void {
    this.peers = new Set(sdsIds);
  }

  setMdmId(id: string): void {
    this.mdmId = id;
  }

  acceptedKids(): readonly number[] {
    return this.memberKeys.map((k) => k.kid);
  }

  peerKey(role: NodeRole, nodeId: string, kid: number): Uint8Array | null {
    switch (role) {
      case NodeRole.SDS:
        if (!this.peers.has(nodeId)) return null;
        break;
      case NodeRole.MDM:
        if (this.mdmId === null || nodeId !== this.mdmId) return null;
        break;
      case NodeRole.SDC:
        break;
      default: {
        const never: never = role;
        return never;
      }
    }
    return this.derived(role, nodeId, kid);
  }

  keyFor(kids: readonly number[]): NodeKey | null {
    for (const k of this.memberKeys) if (kids.includes(k.kid)) return { kid: k.kid, key: this.derived(NodeRole.SDS, this.nodeId, k.kid)! };
    return null;
  }

  private derived(role: NodeRole, nodeId: string, kid: number): Uint8Array | null {
    const member = this.memberKeys.find((k) => k.kid === kid);
    if (member === undefined) return null;
    const cacheKey = `${kid}/${role}/${nodeId}`;
    let key = this.cache.get(cacheKey);
    if (key === undefined) {
      if (this.cache.size >= MAX_CACHED_PEER_KEYS) this.cache.clear();
      key = deriveNodeKey(member.key, role, nodeId);
      this.cache.set(cacheKey, key);
    }
    return key;
  }
}
