// The SDS side of the data-plane handshake for one connection (protocol: src/proto/dataplane_auth.ts),
// as a small state machine: frames in, a decision out; the connection does the socket work.
//
// Invariants: exactly HELLO then AUTH, nothing else, each at most once; the server nonce is
// fresh per connection; the client proof is checked in constant time with the key the verifier
// gives for the (role, node id) the HELLO claimed and a kid this SDS offered; only then is the
// connection authenticated, with that role and node id, and th becomes its session hash.

import { Op, Status, type FrameHeader } from "../proto/dataplane.ts";
import {
  Binding,
  DP_AUTH_VERSION,
  bindingName,
  clientProof,
  decodeAuth,
  decodeHelloAuth,
  encodeChallenge,
  newNonce,
  proofsEqual,
  roleName,
  serverProof,
  transcriptHash,
  type ChannelBinding,
  type NodeRole,
  type PeerVerifier,
} from "../proto/dataplane_auth.ts";
import { halvesToId, idToHalves } from "../proto/ids.ts";

export interface Authenticated {
  role: NodeRole;
  nodeId: string;
  /** th of the handshake: grants presented on this connection are bound to it */
  sessionHash: Uint8Array;
}

export type HandshakeStep =
  /** send this reply (to the request just handled) and keep going */
  | { kind: "reply"; status: Status; payload: Uint8Array }
  /** reply with this status, then close: `reason` is for the log */
  | { kind: "refuse"; status: Status; reason: string }
  /** send the server proof; the connection is authenticated */
  | { kind: "done"; payload: Uint8Array; auth: Authenticated };

export class ServerHandshake {
  private phase: "hello" | "auth" | "over" = "hello";
  private helloPayload: Uint8Array | null = null;
  private challengePayload: Uint8Array | null = null;
  private offered: readonly number[] = [];
  private role: NodeRole | null = null;
  private nodeId = "";

  private verifier: PeerVerifier | null = null;
  private bound: ChannelBinding | null = null;

  /**
   * `verifierNow` is asked at HELLO time (an SDS may get its keys after a connection opened);
   * `channel` too: the connection's binding (a TLS connection's exporter exists once its TLS
   * handshake is over, which is before any frame is read).
   */
  constructor(
    private readonly verifierNow: () => PeerVerifier | null,
    private readonly channel: () => ChannelBinding,
    private readonly nonce: () => Uint8Array = newNonce,
  ) {}

  /** The node id the HELLO claimed (not proven before `done`), for logs. */
  get claimedNodeId(): string {
    return this.nodeId;
  }

  /** Handle one frame of the handshake; FrameError on a malformed payload (close). */
  onFrame(h: FrameHeader, payload: Uint8Array): HandshakeStep {
    if (h.flags !== 0 || h.status !== Status.OK) return this.refuse(Status.UNAUTHORIZED, `handshake frame with flags 0x${h.flags.toString(16)} status ${h.status}`);
    switch (this.phase) {
      case "hello":
        if (h.opcode !== Op.HELLO) return this.refuse(Status.UNAUTHORIZED, `first frame is opcode ${h.opcode}, not HELLO`);
        return this.hello(payload);
      case "auth":
        if (h.opcode !== Op.AUTH) return this.refuse(Status.UNAUTHORIZED, `second frame is opcode ${h.opcode}, not AUTH`);
        return this.auth(payload);
      case "over":
        return this.refuse(Status.UNAUTHORIZED, "handshake already over");
      default: {
        const never: never = this.phase;
        return never;
      }
    }
  }

  private hello(payload: Uint8Array): HandshakeStep {
    const v = this.verifierNow();
    if (v === null || v.sdsId === null) return this.refuse(Status.UNAVAILABLE, "SDS not joined yet");
    this.verifier = v;
    const hello = decodeHelloAuth(payload);
    this.role = hello.role;
    this.nodeId = halvesToId(hello.nodeHi, hello.nodeLo);
    const channel = this.channel();
    if (hello.binding !== channel.kind) {
      const conn = channel.kind === Binding.NONE ? "a plaintext connection" : "a TLS connection";
      return this.refuse(Status.UNAUTHORIZED, `${roleName(hello.role)} ${this.nodeId} sent a HELLO with channel binding ${bindingName(hello.binding)} on ${conn} (expected ${bindingName(channel.kind)}; a pf without TLS channel binding?)`);
    }
    this.bound = channel;
    const kids = v.acceptedKids();
    if (kids.length === 0) return this.refuse(Status.UNAVAILABLE, "SDS holds no data-plane keys yet");
    const me = idToHalves(v.sdsId);
    this.offered = kids;
    this.helloPayload = payload.slice();
    this.challengePayload = encodeChallenge({ version: DP_AUTH_VERSION, sdsHi: me.hi, sdsLo: me.lo, nonce: this.nonce(), kids: [...kids] });
    this.phase = "auth";
    return { kind: "reply", status: Status.OK, payload: this.challengePayload };
  }

  private auth(payload: Uint8Array): HandshakeStep {
    const a = decodeAuth(payload);
    const role = this.role!;
    const who = `${roleName(role)} ${this.nodeId}`;
    if (!this.offered.includes(a.kid)) return this.refuse(Status.UNAUTHORIZED, `${who} answered with key id ${a.kid}, not one offered (${this.offered.join(", ")})`);
    const key = this.verifier!.peerKey(role, this.nodeId, a.kid);
    if (key === null) return this.refuse(Status.UNAUTHORIZED, `${who} may not connect to this SDS`);
    const th = transcriptHash(this.helloPayload!, this.challengePayload!, a.kid, this.bound!);
    if (!proofsEqual(clientProof(key, th), a.proof)) return this.refuse(Status.UNAUTHORIZED, `${who}: wrong handshake proof`);
    this.phase = "over";
    return { kind: "done", payload: serverProof(key, th), auth: { role, nodeId: this.nodeId, sessionHash: th } };
  }

  private refuse(status: Status, reason: string): HandshakeStep {
    this.phase = "over";
    return { kind: "refuse", status, reason };
  }
}
