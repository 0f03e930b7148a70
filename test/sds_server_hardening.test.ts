// Hostile or broken peers on the SDS data plane: junk bytes, a bad magic, an oversized payload,
// no handshake, a wrong node key, an unknown opcode. Each closes only that connection (with a
// logged reason) while a well-behaved client on the same SDS keeps working. Also: the
// per-connection in-flight cap pauses reading instead of queueing without bound. (The
// handshake's own attacks — replay, reflection, downgrade, captures — are in
// sds_dataplane_auth.test.ts.)

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { DATAPLANE_MAGIC, Flag, HEADER_BYTES, Op, Status, encodeFrame, type Frame } from "../src/proto/dataplane.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MEMBER_KEY, MiB, dataPlaneKeys, mintTestGrant, SDC_ID, Vol, applyAll, clientTo, credentialsOf, pattern, startNode, tmpDir } from "./sds_harness.ts";
import { handshake as handDone, presentGrant, rawConnect, within, type Raw } from "./helpers/dataplane_raw.ts";
import { SdsAccess } from "../src/sds/sds_access.ts";

const VOL = "0a00000000000004";
const vol = new Vol(VOL);
let dir: string;
let node: SdsCore;
let good: DataPlaneClient;

beforeAll(() => {
  dir = tmpDir("sdshard");
  node = startNode(dir, 0, 16 * MiB, 8);
  applyAll([node], [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0] }] }]);
  good = clientTo(node);
});

afterAll(async () => {
  good.close();
  await node.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const SDC_KEY = deriveNodeKey(MEMBER_KEY, NodeRole.SDC, SDC_ID);

function raw(port = node.port): Promise<Raw> {
  return rawConnect(port);
}

/** The handshake by hand as the test SDC, then the grant of VOL; returns once both were accepted (3 reply frames). */
async function handshake(r: Raw): Promise<void> {
  const d = await handDone(r, NodeRole.SDC, SDC_ID, SDC_KEY);
  expect(d.auth.header.status).toBe(Status.OK);
  expect((await presentGrant(r, d.th, mintTestGrant({ volumeId: VOL }))).header.status).toBe(Status.OK);
}

function readFrame(requestId: number, offset = 0, length = 4096): Uint8Array {
  return encodeFrame({ opcode: Op.READ, flags: 0, status: Status.OK, requestId, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, extentIndex: 0, offset, length, gen: 0 });
}

async function goodClientStillWorks(seed: number): Promise<void> {
  const data = pattern(4096, seed);
  expect((await vol.write(good, 0, seed * 4096, data)).status).toBe(Status.OK);
  expect(Buffer.from(await vol.read(good, 0, seed * 4096, 4096)).equals(Buffer.from(data))).toBe(true);
}

test("junk bytes close only that connection", async () => {
  const r = await raw();
  r.sock.write(new Uint8Array(200).fill(0x41));
  await within(r.closed, 2000, "close after junk");
  await goodClientStillWorks(1);
});

test("a bad magic after a good HELLO closes only that connection", async () => {
  const r = await raw();
  await handshake(r);
  const f = readFrame(5);
  new DataView(f.buffer).setUint32(0, DATAPLANE_MAGIC ^ 1, true);
  r.sock.write(f);
  await within(r.closed, 2000, "close after bad magic");
  expect(r.frames[1]?.header.status).toBe(Status.OK); // the handshake was accepted
  await goodClientStillWorks(2);
});

test("an oversized payload length closes the connection before the payload is buffered", async () => {
  const r = await raw();
  await handshake(r);
  const f = readFrame(6);
  new DataView(f.buffer).setUint32(36, Limits.dataMaxPayloadBytes + 1, true);
  r.sock.write(f);
  await within(r.closed, 2000, "close after oversized payload");
  await goodClientStillWorks(3);
});

test("a request before the handshake is refused UNAUTHORIZED and closed", async () => {
  const r = await raw();
  r.sock.write(readFrame(7));
  await within(r.closed, 2000, "close without HELLO");
  expect(r.frames[0]?.header.status).toBe(Status.UNAUTHORIZED);
  await goodClientStillWorks(4);
});

test("a wrong node key is refused UNAUTHORIZED; the client reports it for its requests", async () => {
  const bad = clientTo(node, { key: new Uint8Array(32).fill(0xcd) });
  const rep = await vol.req(bad, Op.READ, 0, 0, 4096);
  expect(rep.status).toBe(Status.UNAUTHORIZED);
  bad.close();
  await goodClientStillWorks(5);
});

test("an unknown opcode closes the connection", async () => {
  const r = await raw();
  await handshake(r);
  const f = readFrame(8);
  f[4] = 99;
  r.sock.write(f);
  await within(r.closed, 2000, "close after unknown opcode");
  await goodClientStillWorks(6);
});

test("a connection that never finishes its handshake is closed after the handshake timeout", async () => {
  // the node in this file uses the default timeout; check the limit is wired with a short server
  const { DataPlaneServer } = await import("../src/sds/dataplane_server.ts");
  const srv = DataPlaneServer.listen({ host: "127.0.0.1", port: 0, handshakeTimeoutMs: 100 });
  try {
    let closed = false;
    const sock = await Bun.connect<undefined>({ hostname: "127.0.0.1", port: srv.port, socket: { data() {}, close: () => void (closed = true) } });
    await Bun.sleep(400);
    expect(closed).toBe(true);
    sock.end();
  } finally {
    srv.stop();
  }
});

test("a client past the in-flight cap is paused, not served without bound, and completes", async () => {
  // the node runs with maxInFlightPerConn = 8: requests whose replies are held back stop the
  // reading; here replies are immediate, so the point is that a burst of 2000 pipelined
  // requests on one connection all complete in order of ids with correct data
  const r = await raw();
  await handshake(r);
  const n = 2000;
  const burst = new Uint8Array(n * HEADER_BYTES);
  for (let i = 0; i < n; i++) burst.set(readFrame(1000 + i, (i % 64) * 4096, 4096), i * HEADER_BYTES);
  r.sock.write(burst);
  await within(
    (async () => {
      while (r.frames.length < n + 3) await Bun.sleep(5);
    })(),
    5000,
    "all replies",
  );
  expect(r.frames.slice(3).every((f) => f.header.status === Status.OK && (f.header.flags & Flag.REPLY) !== 0)).toBe(true);
  expect(new Set(r.frames.slice(3).map((f) => f.header.requestId)).size).toBe(n);
  r.sock.end();
});

test("the in-flight cap stops handing requests to the handler until replies free slots", async () => {
  const { DataPlaneServer } = await import("../src/sds/dataplane_server.ts");
  type Held = { conn: import("../src/sds/dataplane_server.ts").RequestConn; f: Frame };
  const held: Held[] = [];
  const srv = DataPlaneServer.listen({ host: "127.0.0.1", port: 0, maxInFlightPerConn: 16 });
  const access = new SdsAccess("5d50000000000008");
  access.setMemberKeys([{ kid: 1, key: MEMBER_KEY }]);
  srv.attach(access, { onRequest: (conn, f) => void held.push({ conn, f }) });
  try {
    const { DataPlaneClient } = await import("../src/proto/dataplane_client.ts");
    const c = new DataPlaneClient({ host: "127.0.0.1", port: srv.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), maxInFlight: 10_000 });
    const n = 500;
    const replies = [];
    for (let i = 0; i < n; i++) replies.push(c.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }));
    await Bun.sleep(200);
    expect(held.length).toBe(16); // the rest waits in the socket / reader, not in the handler
    let served = 0;
    while (served < n) {
      const batch = held.splice(0);
      for (const h of batch) h.conn.reply(h.f.header, Status.OK);
      served += batch.length;
      await Bun.sleep(batch.length === 0 ? 20 : 1);
      expect(held.length).toBeLessThanOrEqual(16);
    }
    const rs = await Promise.all(replies);
    expect(rs.every((r) => r.status === Status.OK)).toBe(true);
    c.close();
  } finally {
    srv.stop();
  }
});

test("a client that never reads its replies stops being served (bounded reply backlog), then catches up", async () => {
  const { startSdsCore } = await import("../src/sds/sds_core.ts");
  const d = tmpDir("sdsslow");
  const n = startSdsCore({
    sdsId: "5d50000000000009",
    dataDir: d,
    host: "127.0.0.1",
    port: 0,
    devices: [{ deviceId: "de70000000000009", path: `${d}/dev.img`, sizeBytes: 16 * MiB }],
    maxInFlightBytesPerConn: 4 * MiB,
  });
  try {
    n.node.applyAssignments(
      SdsAssignmentsResponse.parse({
        mapVersion: 1,
        dataPlane: dataPlaneKeys(),
        extentSizeBytesByVolume: { [VOL]: 4 * MiB },
        extents: [{ volumeId: VOL, extentIndex: 0, epoch: 1, replicas: ["5d50000000000009"], deviceId: "de70000000000009", thick: false }],
        sds: [],
      }),
    );
    n.node.grantLease(n.node.clock.nowMs(), 3_600_000);
    const r = await raw(n.port);
    await handshake(r);
    const sock = r.sock;
    sock.pause(); // read nothing
    const count = 200;
    const burst = new Uint8Array(count * HEADER_BYTES);
    for (let i = 0; i < count; i++) burst.set(readFrame(10 + i, 0, MiB), i * HEADER_BYTES);
    sock.write(burst);
    await Bun.sleep(500);
    // kernel socket buffers take some MiB; the rest waits unread in the SDS, not in its memory
    expect(n.node.stats.reads).toBeLessThan(60);
    sock.resume();
    await within(
      (async () => {
        while (r.frames.length < count + 3) await Bun.sleep(10);
      })(),
      10_000,
      "all 1 MiB replies",
    );
    expect(n.node.stats.reads).toBe(count);
    sock.end();
  } finally {
    await n.stop();
    fs.rmSync(d, { recursive: true, force: true });
  }
}, 20_000);
