// The data-plane handshake (SDC -> SDS, SDS -> SDS, MDM -> SDS): payload layouts of the HELLO,
// CHALLENGE (the HELLO reply) and AUTH frames, and the proofs both sides compute. ALL INTEGERS
// ARE LITTLE-ENDIAN. The frames themselves are ordinary data-plane frames (dataplane.ts).
//
//   C -> S  HELLO      {u8 version, u8 role, u8 binding, u8 0, u32 nodeHi, u32 nodeLo, 32 B clientNonce} 44 B
//   S -> C  HELLO|REPLY {u8 version, u8 kidCount, u16 0, u32 sdsHi, u32 sdsLo, 32 B serverNonce,
//                        u32 kids[4] (newest first, unused = 0)}                                  60 B
//   C -> S  AUTH       {u32 kid, u32 0, 32 B clientProof}                                        40 B
//   S -> C  AUTH|REPLY {32 B serverProof} (status OK), or no payload and the connection closed
//
//   th (binding NONE, plaintext connection)
//               = SHA-256("pf-dp-handshake-v1" || HELLO payload || CHALLENGE payload || u32 kid)
//   th (binding TLS_EXPORTER, data-plane TLS)
//               = SHA-256("pf-dp-handshake-v1-tls-exporter" || HELLO payload || CHALLENGE payload
//                         || u32 kid || EKM)
//   EKM         = the TLS exporter of the connection's session (RFC 5705 / RFC 8446 7.5), label
//                 TLS_EXPORTER_LABEL, empty context, 32 bytes, taken by each end from its own socket
//   clientProof = HMAC-SHA256(nodeKey[kid], "pf-dp-c2s" || th)
//   serverProof = HMAC-SHA256(nodeKey[kid], "pf-dp-s2c" || th)
//
// Why this holds: th covers both nonces, both node ids, the client's role, the version and the
// key ids the server offered, so a recorded AUTH fails against a new server nonce (replay), a
// server proof is never a valid client proof (different labels: reflection), and a CHALLENGE
// with versions or key ids struck out changes th (downgrade). The key itself never crosses the
// wire; both proofs are compared in constant time. th is kept by both sides after the handshake
// as the connection's session hash: grants presented later are bound to it (grant.ts).
//
// Channel binding: over TLS both ends mix their session's exporter value into th, so a proof
// made on one TLS session is worthless on any other: a relay that terminates the client's TLS
// and opens its own to the SDS (even with valid certificates of the cluster, e.g. stolen
// dataplane-key.pem files, or its own node's) holds two sessions with two exporter values and
// cannot make either proof. The HELLO says which transcript the client computes (binding byte,
// itself inside th), and a node never accepts the other kind: a TLS connection whose HELLO says
// NONE, or a plaintext one whose HELLO says TLS_EXPORTER, is refused before any proof (no
// downgrade to the unbound transcript). Plaintext connections keep the transcript of before.
//
// Decoding is validation: a wrong length, a non-zero reserved byte, an unknown version, role or binding,
// or a kid list that is empty, too long or not strictly descending is a FrameError naming the
// field.

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { FrameError } from "./dataplane.ts";

/** The only handshake version this build speaks (a peer offering another is refused). */
export const DP_AUTH_VERSION = 1;
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
export const MAX_OFFERED_KIDS = 4;

export const HELLO_AUTH_BYTES = 44;
export const CHALLENGE_BYTES = 60;
export const AUTH_BYTES = 40;
export const AUTH_REPLY_BYTES = PROOF_BYTES;

/** Which transcript a handshake computes (HELLO byte 2): unbound, or bound to the TLS session. */
export const Binding = { NONE: 0, TLS_EXPORTER: 1 } as const;
export type Binding = (typeof Binding)[keyof typeof Binding];
const BINDING_MAX = 1;

/** RFC 5705 exporter label of the HELLO binding (pf-specific, "EXPORTER-" as RFC 5705 4 asks). */
export const TLS_EXPORTER_LABEL = "EXPORTER-pf-dataplane-hello";
export const TLS_EXPORTER_BYTES = 32;

/** What a connection binds its handshake to: nothing (plaintext) or its TLS exporter value. */
export type ChannelBinding = { readonly kind: typeof Binding.NONE } | { readonly kind: typeof Binding.TLS_EXPORTER; readonly exporter: Uint8Array };

export const UNBOUND: ChannelBinding = { kind: Binding.NONE };

export function tlsBinding(exporter: Uint8Array): ChannelBinding {
  if (exporter.byteLength !== TLS_EXPORTER_BYTES) throw new Error(`invariant broken: TLS exporter value of ${exporter.byteLength} bytes (${TLS_EXPORTER_BYTES} expected)`);
  return { kind: Binding.TLS_EXPORTER, exporter };
}

export function bindingName(b: Binding): "none" | "tls-exporter" {
  switch (b) {
    case Binding.NONE:
      return "none";
    case Binding.TLS_EXPORTER:
      return "tls-exporter";
    default: {
      const never: never = b;
      return never;
    }
  }
}

/** Who is connecting: decides which operations the SDS lets that connection run. */
export const NodeRole = { SDC: 1, SDS: 2, MDM: 3 } as const;
export type NodeRole = (typeof NodeRole)[keyof typeof NodeRole];
const ROLE_MAX = 3;

export function roleName(r: NodeRole): "sdc" | "sds" | "mdm" {
  switch (r) {
    case NodeRole.SDC:
      return "sdc";
    case NodeRole.SDS:
      return "sds";
    case NodeRole.MDM:
      return "mdm";
    default: {
      const never: never = r;
      return never;
    }
  }
}

export interface HelloAuth {
  version: number;
  role: NodeRole;
  /** the transcript this client computes: must be the connection's kind (TLS or not) */
  binding: Binding;
  nodeHi: number;
  nodeLo: number;
  nonce: Uint8Array;
}

export interface Challenge {
  version: number;
  sdsHi: number;
  sdsLo: number;
  nonce: Uint8Array;
  /** key ids the SDS accepts, newest first */
  kids: number[];
}

export interface AuthRequest {
  kid: number;
  proof: Uint8Array;
}

/** A node's key for one key id (the key rotates; kid names the generation). */
export interface NodeKey {
  kid: number;
  key: Uint8Array;
}

/** What a connecting node knows about itself (client side of the handshake). */
export interface ClientCredentials {
  readonly role: NodeRole;
  readonly nodeId: string;
  /** its key for the newest of these key ids it holds (offered newest first), or null */
  keyFor(kids: readonly number[]): NodeKey | null;
}

/** What an SDS needs to check a connecting node (server side of the handshake). */
export interface PeerVerifier {
  /** this SDS's id, or null while it has no keys yet (not joined): connections are refused */
  readonly sdsId: string | null;
  /** key ids accepted now, newest first (at most MAX_OFFERED_KIDS) */
  acceptedKids(): readonly number[];
  /** the key node (role, id) holds for kid, or null when that node may not connect */
  peerKey(role: NodeRole, nodeId: string, kid: number): Uint8Array | null;
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

function view(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, p.byteLength);
}

function expectLength(p: Uint8Array, bytes: number, what: string): void {
  if (p.byteLength !== bytes) throw new FrameError("payloadLength", `${what} payload must be ${bytes} bytes, got ${p.byteLength}`);
}

export function encodeHelloAuth(h: HelloAuth): Uint8Array {
  const out = new Uint8Array(HELLO_AUTH_BYTES);
  const v = view(out);
  v.setUint8(0, h.version);
  v.setUint8(1, h.role);
  v.setUint8(2, h.binding);
  v.setUint32(4, h.nodeHi >>> 0, true);
  v.setUint32(8, h.nodeLo >>> 0, true);
  out.set(h.nonce.subarray(0, NONCE_BYTES), 12);
  return out;
}

export function decodeHelloAuth(p: Uint8Array): HelloAuth {
  expectLength(p, HELLO_AUTH_BYTES, "HELLO");
  const v = view(p);
  const version = v.getUint8(0);
  if (version !== DP_AUTH_VERSION) throw new FrameError("version", `handshake version ${version} (this build speaks ${DP_AUTH_VERSION})`);
  const role = v.getUint8(1);
  if (role < 1 || role > ROLE_MAX) throw new FrameError("role", `unknown node role ${role}`);
  const binding = v.getUint8(2);
  if (binding > BINDING_MAX) throw new FrameError("binding", `unknown channel binding ${binding}`);
  if (v.getUint8(3) !== 0) throw new FrameError("reserved", "HELLO reserved byte must be zero");
  return { version, role: role as NodeRole, binding: binding as Binding, nodeHi: v.getUint32(4, true), nodeLo: v.getUint32(8, true), nonce: p.slice(12, 12 + NONCE_BYTES) };
}

export function encodeChallenge(c: Challenge): Uint8Array {
  if (c.kids.length < 1 || c.kids.length > MAX_OFFERED_KIDS) throw new Error(`invariant broken: ${c.kids.length} key ids offered`);
  const out = new Uint8Array(CHALLENGE_BYTES);
  const v = view(out);
  v.setUint8(0, c.version);
  v.setUint8(1, c.kids.length);
  v.setUint32(4, c.sdsHi >>> 0, true);
  v.setUint32(8, c.sdsLo >>> 0, true);
  out.set(c.nonce.subarray(0, NONCE_BYTES), 12);
  c.kids.forEach((k, i) => v.setUint32(44 + 4 * i, k >>> 0, true));
  return out;
}

export function decodeChallenge(p: Uint8Array): Challenge {
  expectLength(p, CHALLENGE_BYTES, "CHALLENGE");
  const v = view(p);
  const version = v.getUint8(0);
  if (version !== DP_AUTH_VERSION) throw new FrameError("version", `handshake version ${version} (this build speaks ${DP_AUTH_VERSION})`);
  const n = v.getUint8(1);
  if (n < 1 || n > MAX_OFFERED_KIDS) throw new FrameError("kidCount", `${n} key ids offered (1..${MAX_OFFERED_KIDS})`);
  if (v.getUint16(2, true) !== 0) throw new FrameError("reserved", "CHALLENGE reserved bytes must be zero");
  const kids: number[] = [];
  for (let i = 0; i < MAX_OFFERED_KIDS; i++) {
    const k = v.getUint32(44 + 4 * i, true);
    if (i >= n) {
      if (k !== 0) throw new FrameError("kids", "unused key id slots must be zero");
      continue;
    }
    if (k === 0 || (i > 0 && k >= kids[i - 1]!)) throw new FrameError("kids", "key ids must be non-zero and strictly descending");
    kids.push(k);
  }
  return { version, sdsHi: v.getUint32(4, true), sdsLo: v.getUint32(8, true), nonce: p.slice(12, 12 + NONCE_BYTES), kids };
}

export function encodeAuth(a: AuthRequest): Uint8Array {
  const out = new Uint8Array(AUTH_BYTES);
  view(out).setUint32(0, a.kid >>> 0, true);
  out.set(a.proof.subarray(0, PROOF_BYTES), 8);
  return out;
}

export function decodeAuth(p: Uint8Array): AuthRequest {
  expectLength(p, AUTH_BYTES, "AUTH");
  const v = view(p);
  if (v.getUint32(4, true) !== 0) throw new FrameError("reserved", "AUTH reserved bytes must be zero");
  return { kid: v.getUint32(0, true), proof: p.slice(8, 8 + PROOF_BYTES) };
}

const TRANSCRIPT_LABEL = Buffer.from("pf-dp-handshake-v1");
const BOUND_TRANSCRIPT_LABEL = Buffer.from("pf-dp-handshake-v1-tls-exporter");
const C2S_LABEL = Buffer.from("pf-dp-c2s");
const S2C_LABEL = Buffer.from("pf-dp-s2c");

/**
 * th: the hash of the whole exchange (see the top of the file), bound to `channel`. The HELLO's
 * binding byte must name the same kind (both ends check it before they get here).
 */
export function transcriptHash(helloPayload: Uint8Array, challengePayload: Uint8Array, kid: number, channel: ChannelBinding): Uint8Array {
  if (helloPayload[2] !== channel.kind) throw new Error(`invariant broken: HELLO says binding ${helloPayload[2]}, transcript computed with ${channel.kind}`);
  const k = new Uint8Array(4);
  view(k).setUint32(0, kid >>> 0, true);
  const h = createHash("sha256").update(channel.kind === Binding.NONE ? TRANSCRIPT_LABEL : BOUND_TRANSCRIPT_LABEL).update(helloPayload).update(challengePayload).update(k);
  if (channel.kind === Binding.TLS_EXPORTER) h.update(channel.exporter);
  return new Uint8Array(h.digest());
}

export function clientProof(key: Uint8Array, th: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(C2S_LABEL).update(th).digest());
}

export function serverProof(key: Uint8Array, th: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(S2C_LABEL).update(th).digest());
}

/** Constant-time equality of two proofs (false for different lengths). */
export function proofsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}
