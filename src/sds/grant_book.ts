// Mapping grants on the SDS side (format: src/proto/grant.ts): checking a presented grant once
// per connection and volume (GrantBook.present), the per-connection table every client IO is
// checked against (ConnGrants.check: one Map lookup, no allocation, no crypto), and the
// revocation floors from the MDM (one GrantGate per volume and SDC, shared by every connection
// holding a grant for that pair, so a floor raised by the assignments stops them all at once).
//
// Invariants:
// - a grant is stored only if: the connection is an SDC's, the grant names that SDC, its key id
//   is one this SDS holds, its proof (bound to this connection's handshake) checks out in
//   constant time, it has not expired, and its map version is not below the pair's floor;
// - an IO passes only if a grant for its volume is stored on its connection, allows the
//   operation (writes need ReadWrite), has not expired (SDS monotonic clock) and is not below
//   the floor now; otherwise it gets its own status (NO_GRANT, READ_ONLY, GRANT_EXPIRED,
//   GRANT_REVOKED), is counted and logged rate-limited;
// - floors only grow; a connection holds at most Limits.dataMaxGrantsPerConn grants.

import type { SdsDataPlaneKeys } from "../proto/cluster_api.ts";
import { Status } from "../proto/dataplane.ts";
import { FrameError } from "../proto/dataplane.ts";
import { NodeRole, roleName, type NodeKey } from "../proto/dataplane_auth.ts";
import { keysFromHex, newestFirst } from "../proto/dataplane_keys.ts";
import { Access, decodeGrantPresentation, grantProofValid } from "../proto/grant.ts";
import { halvesToId } from "../proto/ids.ts";
import { Limits } from "../proto/limits.ts";
import { RefusalLog, type RefusalKind } from "./refusal_log.ts";
import type { SdsClock } from "./sds_clock.ts";

/** The revocation floor of one (volume, SDC): grants issued at a lower map version are void. */
export class GrantGate {
  floor = 0;
}

interface GrantEntry {
  volumeHi: number;
  writable: boolean;
  /** SDS monotonic clock */
  expiresAtMs: number;
  mapVersion: number;
  gate: GrantGate;
  grantId: number;
}

/** The grants presented on one connection, by the volume id's low half. */
export class ConnGrants {
  private readonly byVolume = new Map<number, GrantEntry>();

  get size(): number {
    return this.byVolume.size;
  }

  has(volumeLo: number): boolean {
    return this.byVolume.has(volumeLo);
  }

  /** @internal */ set(volumeLo: number, e: GrantEntry): void {
    this.byVolume.set(volumeLo, e);
  }

  /** The per-IO check (O(1), no allocation). */
  check(volumeHi: number, volumeLo: number, write: boolean, nowMs: number): Status {
    const e = this.byVolume.get(volumeLo);
    if (e === undefined || e.volumeHi !== volumeHi) return Status.NO_GRANT;
    if (write && !e.writable) return Status.READ_ONLY;
    if (nowMs >= e.expiresAtMs) return Status.GRANT_EXPIRED;
    if (e.mapVersion < e.gate.floor) return Status.GRANT_REVOKED;
    return Status.OK;
  }
}

/** The connection facts a grant is checked against (a RequestConn). */
export interface GrantConn {
  readonly peer: string;
  readonly nodeId: string;
  readonly role: NodeRole;
  readonly sessionHash: Uint8Array;
  readonly grants: ConnGrants;
}

export class GrantBook {
  private keys: NodeKey[] = [];
  private readonly gates = new Map<string, GrantGate>();
  readonly refusals: RefusalLog;

  constructor(
    sdsId: string,
    private readonly clock: SdsClock,
    private readonly wallNowMs: () => number = () => Date.now(),
  ) {
    this.refusals = new RefusalLog(`sds ${sdsId}`);
  }

  /** Grant keys and revocation floors from the MDM's assignments. */
  apply(dp: SdsDataPlaneKeys): void {
    this.keys = newestFirst(keysFromHex(dp.grantKeys));
    for (const f of dp.grantFloors) {
      const g = this.gateOf(f.volumeId, f.sdcId);
      if (f.floorVersion > g.floor) g.floor = f.floorVersion;
    }
  }

  /** The floor of a (volume, SDC) pair (tests, logs). */
  floorOf(volumeId: string, sdcId: string): number {
    return this.gates.get(`${volumeId}/${sdcId}`)?.floor ?? 0;
  }

  /** Check a GRANT frame and store the grant on the connection; the reply status. */
  present(conn: GrantConn, payload: Uint8Array): Status {
    if (conn.role !== NodeRole.SDC) return this.reject(conn, Status.UNAUTHORIZED, () => `a ${roleName(conn.role)} connection presented a grant`);
    let p: ReturnType<typeof decodeGrantPresentation>;
    try {
      p = decodeGrantPresentation(payload);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      return this.reject(conn, Status.INVALID, () => `malformed grant (${e.field}): ${e.message}`);
    }
    const b = p.body;
    const sdcId = halvesToId(b.sdcHi, b.sdcLo);
    const volumeId = halvesToId(b.volumeHi, b.volumeLo);
    if (sdcId !== conn.nodeId) return this.reject(conn, Status.GRANT_WRONG_SDC, () => `grant ${b.grantId} of volume ${volumeId} was issued to sdc ${sdcId}`);
    const key = this.keys.find((k) => k.kid === b.kid);
    if (key === undefined) return this.reject(conn, Status.GRANT_EXPIRED, () => `grant ${b.grantId} of volume ${volumeId} is signed with key id ${b.kid}, not held (${this.keys.map((k) => k.kid).join(", ")})`);
    if (!grantProofValid(key.key, p.bodyBytes, p.proof, conn.sessionHash)) return this.reject(conn, Status.UNAUTHORIZED, () => `grant ${b.grantId} of volume ${volumeId}: wrong proof`);
    const leftMs = b.expiresAtMs - this.wallNowMs();
    if (leftMs <= 0) return this.reject(conn, Status.GRANT_EXPIRED, () => `grant ${b.grantId} of volume ${volumeId} expired ${-leftMs} ms ago`);
    const gate = this.gateOf(volumeId, sdcId);
    if (b.mapVersion < gate.floor) return this.reject(conn, Status.GRANT_REVOKED, () => `grant ${b.grantId} of volume ${volumeId} (map version ${b.mapVersion}) is revoked (floor ${gate.floor})`);
    if (conn.grants.size >= Limits.dataMaxGrantsPerConn && !conn.grants.has(b.volumeLo)) {
      return this.reject(conn, Status.INVALID, () => `already ${conn.grants.size} grants on this connection (limit ${Limits.dataMaxGrantsPerConn})`);
    }
    conn.grants.set(b.volumeLo, {
      volumeHi: b.volumeHi,
      writable: b.access === Access.READ_WRITE,
      expiresAtMs: this.clock.nowMs() + leftMs,
      mapVersion: b.mapVersion,
      gate,
      grantId: b.grantId,
    });
    return Status.OK;
  }

  /** Count and log (rate-limited) an IO refused by ConnGrants.check. */
  refusedIo(conn: GrantConn, volumeHi: number, volumeLo: number, opName: string, st: Status): void {
    const kind: RefusalKind = st === Status.READ_ONLY ? "read_only" : st === Status.GRANT_EXPIRED ? "grant_expired" : st === Status.GRANT_REVOKED ? "grant_revoked" : "no_grant";
    this.refusals.refuse(kind, () => `${opName} on volume ${halvesToId(volumeHi, volumeLo)} from sdc ${conn.nodeId} (${conn.peer}) refused`);
  }

  private gateOf(volumeId: string, sdcId: string): GrantGate {
    const k = `${volumeId}/${sdcId}`;
    let g = this.gates.get(k);
    if (g === undefined) {
      g = new GrantGate();
      this.gates.set(k, g);
    }
    return g;
  }

  private reject(conn: GrantConn, st: Status, detail: () => string): Status {
    this.refusals.refuse("grant_reject", () => `from ${roleName(conn.role)} ${conn.nodeId} (${conn.peer}): ${detail()}`);
    return st;
  }
}
