// Device faults injected under two SDSs (FaultInjectingDevice): a failing copy never yields an
// OK for a write, FLUSH or FUA; a failed read answers IO_ERROR and the connection keeps
// working; a FLUSH that failed on the peer is retried by the next FLUSH; the device reports
// Failed for the heartbeat.

import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { FaultInjectingDevice } from "../src/store/block_fault.ts";
import { MiB, Vol, applyAll, clientTo, flushReq, pattern, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000006";
const vol = new Vol(VOL);
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }];

let dir: string;
let nodes: SdsCore[];
let devs: FaultInjectingDevice[];
let clients: DataPlaneClient[];

beforeEach(() => {
  dir = tmpDir("sdsfault");
  devs = [];
  const wrap = (d: import("../src/store/block_device.ts").BlockDevice) => {
    const f = new FaultInjectingDevice(d);
    devs.push(f);
    return f;
  };
  nodes = [startNode(dir, 0, 64 * MiB, undefined, 0, wrap), startNode(dir, 1, 64 * MiB, undefined, 0, wrap)];
  applyAll(nodes, plan);
  clients = nodes.map((n) => clientTo(n));
});

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a write whose secondary device fails is not acknowledged; the device reports Failed", async () => {
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  devs[1]!.faults.failWrites = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 2))).status).toBe(Status.IO_ERROR);
  expect(nodes[1]!.store.slots[0]!.state).toBe("Failed");
  expect(nodes[0]!.store.slots[0]!.state).toBe("Normal");
});

test("a write whose primary device fails is not forwarded and not acknowledged", async () => {
  devs[0]!.faults.failWrites = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 3))).status).toBe(Status.IO_ERROR);
  expect(nodes[1]!.node.stats.replWrites).toBe(0);
});

test("a failed read answers IO_ERROR and the same connection serves the next request", async () => {
  const data = pattern(8192, 4);
  expect((await vol.write(clients[0]!, 0, 4096, data)).status).toBe(Status.OK);
  devs[0]!.faults.failReads = true;
  const [bad, ping] = await Promise.all([
    vol.req(clients[0]!, Op.READ, 0, 4096, 8192),
    clients[0]!.request({ opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }),
  ]);
  expect(bad.status).toBe(Status.IO_ERROR);
  expect(bad.payload.byteLength).toBe(0);
  expect(ping.status).toBe(Status.OK);
  devs[0]!.faults.failReads = false;
  expect(Buffer.from(await vol.read(clients[0]!, 0, 4096, 8192)).equals(Buffer.from(data))).toBe(true);
});

test("FLUSH fails while the peer cannot sync, and the next FLUSH asks the peer again", async () => {
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 5))).status).toBe(Status.OK);
  devs[1]!.faults.failSyncs = true;
  expect((await flushReq(clients[0]!)).status).not.toBe(Status.OK);
  devs[1]!.faults.failSyncs = false;
  const sentBefore = nodes[0]!.node.stats.peerFlushesSent;
  // the peer's device stays failed (sticky), but it is asked again: the debt was not dropped
  expect((await flushReq(clients[0]!)).status).not.toBe(Status.OK);
  expect(nodes[0]!.node.stats.peerFlushesSent).toBe(sentBefore + 1);
});

test("a failed local fdatasync fails that FLUSH and every later one (fsync errors are sticky)", async () => {
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 6))).status).toBe(Status.OK);
  devs[0]!.faults.failSyncs = true;
  expect((await flushReq(clients[0]!)).status).toBe(Status.IO_ERROR);
  devs[0]!.faults.failSyncs = false;
  // the kernel may have dropped the pages it failed to write: a later fdatasync proves nothing
  expect((await flushReq(clients[0]!)).status).toBe(Status.IO_ERROR);
  expect(nodes[0]!.store.slots[0]!.state).toBe("Failed");
});

test("FUA is not acknowledged when either copy cannot sync", async () => {
  devs[1]!.faults.failSyncs = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 7), { fua: true })).status).toBe(Status.IO_ERROR);
  devs[1]!.faults.failSyncs = false;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 8), { fua: true })).status).toBe(Status.IO_ERROR);
});

test("FUA with a failing primary sync is not acknowledged", async () => {
  devs[0]!.faults.failSyncs = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 9), { fua: true })).status).toBe(Status.IO_ERROR);
});
