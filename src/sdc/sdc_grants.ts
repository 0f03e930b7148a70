// The mapping grants an SDC holds (from its maps; format src/proto/grant.ts), handed to its
// data-plane links, which present each once per connection and volume. Every map fetch brings
// fresh grants; the SDC fetches again before half of a grant's lifetime has passed.
//
// Invariants: a volume no longer in the maps has no grant here (its IO is refused by the SDS
// even if a stale piece is retried); the grant of a volume is keyed by the id's low half and
// checked against the high half; renewDueAtMs is the earliest half-life of the grants held.

import type { VolumeMap } from "../proto/cluster_api.ts";
import { decodeGrantBody, type GrantSource, type GrantToken } from "../proto/grant.ts";
import { keyFromHex } from "../proto/dataplane_keys.ts";
import { idToHalves } from "../proto/ids.ts";

interface Held {
  volumeHi: number;
  token: GrantToken;
  /** MDM wall clock: when half the grant's lifetime has passed */
  renewAtMs: number;
}

export class SdcGrants implements GrantSource {
  private byVolume = new Map<number, Held>();

  grantFor(volumeHi: number, volumeLo: number): GrantToken | null {
    const h = this.byVolume.get(volumeLo);
    return h === undefined || h.volumeHi !== volumeHi ? null : h.token;
  }

  /** Take the grants of a map answer; returns the low id halves whose grant changed or went. */
  update(volumes: readonly VolumeMap[]): number[] {
    const next = new Map<number, Held>();
    for (const v of volumes) {
      if (v.grant === undefined) continue;
      const { hi, lo } = idToHalves(v.volumeId);
      const body = new Uint8Array(Buffer.from(v.grant.body, "hex"));
      const g = decodeGrantBody(body);
      next.set(lo, { volumeHi: hi, token: { body, secret: keyFromHex(v.grant.secret) }, renewAtMs: g.issuedAtMs + (g.expiresAtMs - g.issuedAtMs) / 2 });
    }
    const changed: number[] = [];
    for (const lo of new Set([...this.byVolume.keys(), ...next.keys()])) {
      const a = this.byVolume.get(lo);
      const b = next.get(lo);
      if (a === undefined || b === undefined || !Buffer.from(a.token.body).equals(Buffer.from(b.token.body))) changed.push(lo);
    }
    this.byVolume = next;
    return changed;
  }

  /** When the maps must be fetched again to renew grants (Infinity: none held). */
  get renewDueAtMs(): number {
    let t = Infinity;
    for (const h of this.byVolume.values()) if (h.renewAtMs < t) t = h.renewAtMs;
    return t;
  }
}
