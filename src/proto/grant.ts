// Mapping grants: the MDM's signed statement "SDC s may read (or read and write) volume v until
// t", and how an SDC presents one on a data-plane connection (the GRANT frame). ALL INTEGERS
// ARE LITTLE-ENDIAN.
//
// Grant body (56 bytes):
//   @0  u8  version (1)          @1 u8 access (1 ReadOnly, 2 ReadWrite)   @2 u16 reserved 0
//   @4  u32 kid (the master key generation that signed it)
//   @8  u32 sdcHi   @12 u32 sdcLo   @16 u32 volumeHi   @20 u32 volumeLo
//   @24 u64 grantId (random, for logs)
//   @32 u64 mapVersion (the MDM's map version when it was issued: revocation compares it)
//   @40 u64 issuedAtMs   @48 u64 expiresAtMs (MDM wall clock, ms since the epoch)
//
//   grantSecret = HMAC-SHA256(grantKey[kid], "pf-grant-v1" || body)
//
// The MDM hands body and grantSecret to that SDC only, over HTTPS. grantSecret never crosses
// the data plane: the GRANT frame carries body || proof (88 bytes), where
//   proof = HMAC-SHA256(grantSecret, "pf-grant-proof-v1" || sessionHash)
// and sessionHash is the connection's handshake transcript hash (dataplane_auth.ts). An SDS,
// holding grantKey, recomputes grantSecret and the proof and compares in constant time: a
// GRANT frame captured on one connection is worthless on any other, and a body without its
// secret is worthless everywhere. Verification costs two HMACs, once per connection and volume.
//
// Decoding is validation: a wrong length, version, access value or non-zero reserved field is a
// FrameError naming the field.

import { createHmac, randomBytes } from "node:crypto";
import { FrameError } from "./dataplane.ts";
import { proofsEqual } from "./dataplane_auth.ts";

export const GRANT_VERSION = 1;
export const GRANT_BODY_BYTES = 56;
export const GRANT_FRAME_BYTES = GRANT_BODY_BYTES + 32;

export const Access = { READ_ONLY: 1, READ_WRITE: 2 } as const;
export type Access = (typeof Access)[keyof typeof Access];

export interface GrantBody {
  access: Access;
  kid: number;
  sdcHi: number;
  sdcLo: number;
  volumeHi: number;
  volumeLo: number;
  grantId: number;
  mapVersion: number;
  issuedAtMs: number;
  expiresAtMs: number;
}

/** What an SDC holds for one volume (from its maps). */
export interface GrantToken {
  body: Uint8Array;
  secret: Uint8Array;
}

/** Where a data-plane client finds the grant to present for a volume (the SDC's maps). */
export interface GrantSource {
  grantFor(volumeHi: number, volumeLo: number): GrantToken | null;
}

const SECRET_LABEL = Buffer.from("pf-grant-v1");
const PROOF_LABEL = Buffer.from("pf-grant-proof-v1");
const U32 = 0x1_0000_0000;

function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % U32, true);
  v.setUint32(at + 4, Math.floor(n / U32), true);
}

function getU64(v: DataView, at: number, field: string): number {
  const hi = v.getUint32(at + 4, true);
  if (hi >= 0x20_0000) throw new FrameError(field, `${field} beyond 2^53`);
  return hi * U32 + v.getUint32(at, true);
}

export function encodeGrantBody(g: GrantBody): Uint8Array {
  const out = new Uint8Array(GRANT_BODY_BYTES);
  const v = new DataView(out.buffer);
  v.setUint8(0, GRANT_VERSION);
  v.setUint8(1, g.access);
  v.setUint32(4, g.kid >>> 0, true);
  v.setUint32(8, g.sdcHi >>> 0, true);
  v.setUint32(12, g.sdcLo >>> 0, true);
  v.setUint32(16, g.volumeHi >>> 0, true);
  v.setUint32(20, g.volumeLo >>> 0, true);
  setU64(v, 24, g.grantId);
  setU64(v, 32, g.mapVersion);
  setU64(v, 40, g.issuedAtMs);
  setU64(v, 48, g.expiresAtMs);
  return out;
}

export function decodeGrantBody(p: Uint8Array): GrantBody {
  if (p.byteLength !== GRANT_BODY_BYTES) throw new FrameError("payloadLength", `grant body must be ${GRANT_BODY_BYTES} bytes, got ${p.byteLength}`);
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (v.getUint8(0) !== GRANT_VERSION) throw new FrameError("version", `grant version ${v.getUint8(0)} (this build knows ${GRANT_VERSION})`);
  const access = v.getUint8(1);
  if (access !== Access.READ_ONLY && access !== Access.READ_WRITE) throw new FrameError("access", `unknown grant access ${access}`);
  if (v.getUint16(2, true) !== 0) throw new FrameError("reserved", "grant reserved bytes must be zero");
  const kid = v.getUint32(4, true);
  if (kid === 0) throw new FrameError("kid", "grant key id 0");
  return {
    access,
    kid,
    sdcHi: v.getUint32(8, true),
    sdcLo: v.getUint32(12, true),
    volumeHi: v.getUint32(16, true),
    volumeLo: v.getUint32(20, true),
    grantId: getU64(v, 24, "grantId"),
    mapVersion: getU64(v, 32, "mapVersion"),
    issuedAtMs: getU64(v, 40, "issuedAtMs"),
    expiresAtMs: getU64(v, 48, "expiresAtMs"),
  };
}

export function newGrantId(): number {
  return randomBytes(6).readUIntLE(0, 6);
}

/** The grant's secret, computed by the MDM (to hand out) and by an SDS (to check a proof). */
export function grantSecret(grantKey: Uint8Array, body: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", grantKey).update(SECRET_LABEL).update(body).digest());
}

export function grantProof(secret: Uint8Array, sessionHash: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", secret).update(PROOF_LABEL).update(sessionHash).digest());
}

/** The GRANT frame payload an SDC sends on a connection with this session hash. */
export function encodeGrantPresentation(t: GrantToken, sessionHash: Uint8Array): Uint8Array {
  const out = new Uint8Array(GRANT_FRAME_BYTES);
  out.set(t.body, 0);
  out.set(grantProof(t.secret, sessionHash), GRANT_BODY_BYTES);
  return out;
}

/** Split a GRANT frame payload (validates the body). */
export function decodeGrantPresentation(p: Uint8Array): { body: GrantBody; bodyBytes: Uint8Array; proof: Uint8Array } {
  if (p.byteLength !== GRANT_FRAME_BYTES) throw new FrameError("payloadLength", `GRANT payload must be ${GRANT_FRAME_BYTES} bytes, got ${p.byteLength}`);
  const bodyBytes = p.subarray(0, GRANT_BODY_BYTES);
  return { body: decodeGrantBody(bodyBytes), bodyBytes, proof: p.subarray(GRANT_BODY_BYTES) };
}

/** Constant-time check of a presented proof against the grant key. */
export function grantProofValid(grantKey: Uint8Array, bodyBytes: Uint8Array, proof: Uint8Array, sessionHash: Uint8Array): boolean {
  return proofsEqual(grantProof(grantSecret(grantKey, bodyBytes), sessionHash), proof);
}
