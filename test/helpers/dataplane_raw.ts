// Hand-made data-plane connections for hostile-peer tests: a raw socket (plaintext or TLS) that
// collects reply frames, and the client side of the handshake done by hand (so tests can replay, tamper with
// or stop it at any step).

import type { Socket } from "bun";
import { FrameReader, Op, Status, encodeFrame, type Frame, type FrameHeader } from "../../src/proto/dataplane.ts";
import {
  Binding,
  DP_AUTH_VERSION,
  UNBOUND,
  clientProof,
  decodeChallenge,
  encodeAuth,
  encodeHelloAuth,
  newNonce,
  transcriptHash,
  type ChannelBinding,
  type NodeRole,
} from "../../src/proto/dataplane_auth.ts";
import { decodeGrantBody, encodeGrantPresentation, type GrantToken } from "../../src/proto/grant.ts";
import { clientTlsOptions, helloBindingOf, type DataPlaneTlsMaterial } from "../../src/proto/dataplane_tls.ts";
import { idToHalves } from "../../src/proto/ids.ts";

export interface Raw {
  sock: Socket<undefined>;
  frames: Frame[];
  closed: Promise<void>;
  /** what a handshake on this connection binds to (its TLS exporter, or UNBOUND in plaintext) */
  binding: ChannelBinding;
  isClosed: () => boolean;
  /** the next reply frame after the n already taken (waits up to timeoutMs) */
  next(timeoutMs?: number): Promise<Frame>;
}

/** A raw connection; with `tls`, a TLS session to SDS `sdsId` (resolved once its handshake is over). */
export async function rawConnect(port: number, tls?: { material: DataPlaneTlsMaterial; sdsId: string }): Promise<Raw> {
  const frames: Frame[] = [];
  const reader = new FrameReader();
  let closedFlag = false;
  let onClose: () => void = () => {};
  const closed = new Promise<void>((r) => (onClose = r));
  const shaken = Promise.withResolvers<ChannelBinding>();
  shaken.promise.catch(() => {}); // awaited only with TLS
  let taken = 0;
  const sock = await Bun.connect<undefined>({
    hostname: "127.0.0.1",
    port,
    ...(tls === undefined ? {} : { tls: clientTlsOptions(tls.material, tls.sdsId) }),
    socket: {
      data: (_s, d) => reader.push(d, (f) => void frames.push({ header: { ...f.header }, payload: f.payload.slice() })),
      handshake: (s, ok, err) => (ok ? shaken.resolve(helloBindingOf(s)) : shaken.reject(new Error(`TLS handshake failed: ${err?.message}`))),
      close: () => {
        closedFlag = true;
        onClose();
        shaken.reject(new Error("closed before the TLS handshake"));
      },
      error: () => {
        closedFlag = true;
        onClose();
      },
    },
  });
  const binding = tls === undefined ? UNBOUND : await shaken.promise;
  return {
    sock,
    frames,
    closed,
    binding,
    isClosed: () => closedFlag,
    async next(timeoutMs = 2000) {
      const deadline = performance.now() + timeoutMs;
      while (frames.length <= taken) {
        if (performance.now() > deadline) throw new Error(`no reply frame within ${timeoutMs} ms (closed: ${closedFlag})`);
        await Bun.sleep(2);
      }
      return frames[taken++]!;
    },
  };
}

export function frame(h: Partial<FrameHeader> & { opcode: Op }, payload?: Uint8Array): Uint8Array {
  return encodeFrame(
    { flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0, ...h },
    payload,
  );
}

/** A HELLO payload; `binding` says which transcript the client computes (NONE: plaintext). */
export function helloPayload(role: NodeRole, nodeId: string, binding: Binding = Binding.NONE, nonce = newNonce()): Uint8Array {
  const { hi, lo } = idToHalves(nodeId);
  return encodeHelloAuth({ version: DP_AUTH_VERSION, role, binding, nodeHi: hi, nodeLo: lo, nonce });
}

export interface HandDone {
  /** the CHALLENGE reply */
  challenge: Frame;
  /** the AUTH reply */
  auth: Frame;
  th: Uint8Array;
}

/** The client side of the handshake by hand, with the node key `key`, bound to `channel`. */
export async function handshake(r: Raw, role: NodeRole, nodeId: string, key: Uint8Array, channel: ChannelBinding = r.binding): Promise<HandDone> {
  const hello = helloPayload(role, nodeId, channel.kind);
  r.sock.write(frame({ opcode: Op.HELLO }, hello));
  const challenge = await r.next();
  if (challenge.header.status !== Status.OK) return { challenge, auth: challenge, th: new Uint8Array(0) };
  const ch = decodeChallenge(challenge.payload);
  const kid = ch.kids[0]!;
  const th = transcriptHash(hello, challenge.payload, kid, channel);
  r.sock.write(frame({ opcode: Op.AUTH }, encodeAuth({ kid, proof: clientProof(key, th) })));
  const auth = await r.next();
  return { challenge, auth, th };
}

/** A GRANT frame for `token` on a connection whose handshake hash is th; returns the reply. */
export async function presentGrant(r: Raw, th: Uint8Array, token: GrantToken, requestId = 1): Promise<Frame> {
  const b = decodeGrantBody(token.body);
  r.sock.write(frame({ opcode: Op.GRANT, requestId, volumeHi: b.volumeHi, volumeLo: b.volumeLo }, encodeGrantPresentation(token, th)));
  return r.next();
}

export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what} did not happen within ${ms} ms`)), ms))]);
}
