// Backpressure on the data plane over TLS, next to plaintext (the open point of design.md's
// "Data-plane TLS"): a client that never reads its replies. The SDS's per-connection cap
// (maxInFlightBytesPerConn) pauses its socket; over TLS that is the upgraded socket, and the
// question was whether Bun then stops reading the raw TCP socket underneath too, or keeps
// decrypting into memory. Measured from the client: how many request bytes the connection takes
// while the SDS is paused (plaintext and TLS alike: kernel buffers only), how many reads the SDS
// ran (bounded by the cap), and that every reply arrives once the client reads again.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { HEADER_BYTES, Op, Status, encodeFrame } from "../src/proto/dataplane.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { generateSelfSignedCert, type SelfSignedCert } from "../src/proto/tls_cert.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { startSdsCore } from "../src/sds/sds_core.ts";
import { MEMBER_KEY, MiB, SDC_ID, Vol, applyAll, deviceIdOf, mintTestGrant, sdsIdOf, tmpDir } from "./sds_harness.ts";
import { handshake, presentGrant, rawConnect, within, type Raw } from "./helpers/dataplane_raw.ts";
import { nodeMaterial, sdcIdentity, startTlsNode } from "./helpers/dataplane_tls_nodes.ts";

const VOL = "0a0000000000000b";
const vol = new Vol(VOL);
const SDC_KEY = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);
const CAP = 4 * MiB;
let dir: string;
let ca: SelfSignedCert;
let tlsNode: SdsCore;
let plainNode: SdsCore;

beforeAll(() => {
  dir = tmpDir("tlsbackpressure");
  ca = generateSelfSignedCert({ commonName: "pf-dataplane-ca backpressure test", hosts: [] });
  tlsNode = startTlsNode(dir, 0, ca, { maxInFlightBytesPerConn: CAP });
  fs.mkdirSync(`${dir}/plain`, { recursive: true });
  plainNode = startSdsCore({ sdsId: sdsIdOf(1), dataDir: `${dir}/plain`, host: "127.0.0.1", port: 0, devices: [{ deviceId: deviceIdOf(1), path: `${dir}/plain/dev.img`, sizeBytes: 16 * MiB }], maxInFlightBytesPerConn: CAP });
  applyAll([tlsNode, plainNode], [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0] }, { index: 1, replicas: [1] }] }]);
});

afterAll(async () => {
  await tlsNode.stop();
  await plainNode.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function readFrame(requestId: number, extentIndex: number, length: number): Uint8Array {
  return encodeFrame({ opcode: Op.READ, flags: 0, status: Status.OK, requestId, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, extentIndex, offset: 0, length, gen: 0 });
}

async function open(kind: "tls" | "plain"): Promise<Raw> {
  const r = kind === "tls" ? await rawConnect(tlsNode.port, { material: nodeMaterial(dir, ca, sdcIdentity(), "sdc"), sdsId: sdsIdOf(0) }) : await rawConnect(plainNode.port);
  const d = await handshake(r, NodeRole.SDC, SDC_ID, SDC_KEY);
  expect(d.auth.header.status).toBe(Status.OK);
  expect((await presentGrant(r, d.th, mintTestGrant({ volumeId: VOL }))).header.status).toBe(Status.OK);
  return r;
}

/** Write `bytes` to the socket for up to ms, as fast as it takes them; the bytes it took. */
async function pushFor(r: Raw, bytes: Uint8Array, ms: number): Promise<number> {
  let off = 0;
  const deadline = performance.now() + ms;
  while (off < bytes.length && performance.now() < deadline) {
    const n = r.sock.write(bytes.subarray(off, Math.min(bytes.length, off + 256 * 1024)));
    off += Math.max(0, n);
    if (n <= 0) await Bun.sleep(5);
  }
  return off;
}

describe("a client that never reads its replies", () => {
  for (const kind of ["plain", "tls"] as const) {
    test(`${kind}: the SDS stops running reads at its cap and stops taking request bytes; every reply comes once the client reads`, async () => {
      const node = kind === "tls" ? tlsNode : plainNode;
      const ext = kind === "tls" ? 0 : 1;
      const r = await open(kind);
      const base = node.node.stats.reads;
      r.sock.pause(); // read nothing from now on
      // 1 MiB reads: the cap (4 MiB of replies not yet taken by the socket) stops them early
      const count = 200;
      const burst = new Uint8Array(count * HEADER_BYTES);
      for (let i = 0; i < count; i++) burst.set(readFrame(10 + i, ext, MiB), i * HEADER_BYTES);
      expect(await pushFor(r, burst, 2000)).toBe(burst.length);
      await Bun.sleep(500);
      const ran = node.node.stats.reads - base;
      // kernel socket buffers take some MiB of replies; the rest waits unread in the socket
      expect(ran).toBeLessThan(60);
      // now 4 KiB reads, as many as the connection takes: a paused SDS that still read its raw
      // socket (and decrypted into memory) would take all 48 MiB of them
      const flood = 1_000_000;
      const more = new Uint8Array(flood * HEADER_BYTES);
      for (let i = 0; i < flood; i++) more.set(readFrame(1000 + i, ext, 4096), i * HEADER_BYTES);
      const took = await pushFor(r, more, 1500);
      process.stdout.write(`${kind}: a paused SDS ran ${ran} of ${count} 1 MiB reads; its connection took ${(took / MiB).toFixed(1)} MiB of ${(more.length / MiB).toFixed(0)} MiB of further requests\n`);
      expect(took).toBeLessThan(16 * MiB);
      expect(node.node.stats.reads - base).toBe(ran);
      // the client reads again: the 200 big replies arrive, in order, and the SDS goes on
      r.sock.resume();
      await within(
        (async () => {
          while (r.frames.length < count + 3) await Bun.sleep(10);
        })(),
        15_000,
        "the 1 MiB replies",
      );
      const big = r.frames.slice(3, 3 + count);
      expect(big.every((f) => f.header.status === Status.OK && f.payload.length === MiB)).toBe(true);
      r.sock.end();
      await within(r.closed, 5000, "close");
      // the SDS still serves a fresh connection
      const again = await open(kind);
      again.sock.write(readFrame(7, ext, 4096));
      expect((await again.next()).header.status).toBe(Status.OK);
      again.sock.end();
    }, 60_000);
  }
});
