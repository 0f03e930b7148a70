// Device faults injected under two SDSs (FaultInjectingDevice): a failing copy never yields an
// OK for a write, FLUSH or FUA; a device IO error marks the device Failed, the failed request
// and every later one on that device's extents answer UNAVAILABLE (the SDC retries on the map
// the MDM makes without that copy) while the connection keeps working; a FLUSH leaves out a
// Failed device only when its extents have another in-sync copy; the trigger-file hook arms
// faults in a running SDS.

import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { FaultFile, FaultInjectingDevice } from "../src/store/block_fault.ts";
import type { BlockDevice } from "../src/store/block_device.ts";
import { MiB, Vol, applyAll, clientTo, flushReq, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

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
  const wrap = (d: BlockDevice) => {
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

const ping = { opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 };

test("a write whose secondary device fails is not acknowledged (UNAVAILABLE); the device reports Failed", async () => {
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  devs[1]!.faults.failWrites = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 2))).status).toBe(Status.UNAVAILABLE);
  expect(nodes[1]!.store.slots[0]!.state).toBe("Failed");
  expect(nodes[0]!.store.slots[0]!.state).toBe("Normal");
  // later forwarded writes are refused before the device is touched, even with the fault gone
  devs[1]!.faults.failWrites = false;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 3))).status).toBe(Status.UNAVAILABLE);
  expect(nodes[1]!.node.stats.refusedFailedDevice).toBe(1);
});

test("a write whose primary device fails is not forwarded and not acknowledged; the extent is then refused", async () => {
  devs[0]!.faults.failWrites = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 3))).status).toBe(Status.UNAVAILABLE);
  expect(nodes[1]!.node.stats.replWrites).toBe(0);
  devs[0]!.faults.failWrites = false;
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAVAILABLE);
  expect(nodes[0]!.node.stats.refusedFailedDevice).toBe(1);
});

test("a failed read answers UNAVAILABLE and the same connection serves the next request", async () => {
  const data = pattern(8192, 4);
  expect((await vol.write(clients[0]!, 0, 4096, data)).status).toBe(Status.OK);
  devs[0]!.faults.failReads = true;
  const [bad, pong] = await Promise.all([vol.req(clients[0]!, Op.READ, 0, 4096, 8192), clients[0]!.request(ping)]);
  expect(bad.status).toBe(Status.UNAVAILABLE);
  expect(bad.payload.byteLength).toBe(0);
  expect(pong.status).toBe(Status.OK);
  // the data is still on the other copy, which the MDM will route to
  expect(Buffer.from(readCopy(nodes[1]!, VOL, 0, 4096, 8192)).equals(Buffer.from(data))).toBe(true);
});

test("FLUSH fails while the peer cannot sync; once that copy is Failed and lost, FLUSH covers the primary's copy", async () => {
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 5))).status).toBe(Status.OK);
  devs[1]!.faults.failSyncs = true;
  expect((await flushReq(clients[0]!)).status).not.toBe(Status.OK);
  expect(nodes[1]!.store.slots[0]!.state).toBe("Failed");
  const sentBefore = nodes[0]!.node.stats.peerFlushesSent;
  // the peer is asked again (the debt was kept); its lost device is left out there
  expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
  expect(nodes[0]!.node.stats.peerFlushesSent).toBe(sentBefore + 1);
});

test("a failed fdatasync under a single-copy extent fails that FLUSH and every later one (fsync errors are sticky)", async () => {
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0], epoch: 2 }] }], 2);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 6), { epoch: 2 })).status).toBe(Status.OK);
  devs[0]!.faults.failSyncs = true;
  expect((await flushReq(clients[0]!)).status).toBe(Status.IO_ERROR);
  devs[0]!.faults.failSyncs = false;
  // the kernel may have dropped the pages it failed to write: a later fdatasync proves nothing
  expect((await flushReq(clients[0]!)).status).toBe(Status.IO_ERROR);
  expect(nodes[0]!.store.slots[0]!.state).toBe("Failed");
});

test("FUA is not acknowledged when either copy cannot sync", async () => {
  devs[1]!.faults.failSyncs = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 7), { fua: true })).status).toBe(Status.UNAVAILABLE);
  devs[1]!.faults.failSyncs = false;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 8), { fua: true })).status).toBe(Status.UNAVAILABLE);
});

test("FUA with a failing primary sync is not acknowledged", async () => {
  devs[0]!.faults.failSyncs = true;
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 9), { fua: true })).status).toBe(Status.UNAVAILABLE);
});

test("the trigger file (PF_FAULT_DEVICE_FILE) arms faults on devices whose path contains its content, and disarms them", async () => {
  const trigger = `${dir}/fault`;
  const ff = new FaultFile(trigger, 10);
  try {
    const a = ff.wrap(new FaultInjectingDevice(nodes[0]!.store.slots[0]!.dev)) as FaultInjectingDevice;
    const b = ff.wrap(new FaultInjectingDevice(nodes[1]!.store.slots[0]!.dev)) as FaultInjectingDevice;
    expect(a.faults.failWrites || b.faults.failWrites).toBe(false);
    fs.writeFileSync(trigger, "sds1/dev0.img\n");
    ff.poll();
    expect([a.faults.failReads, a.faults.failWrites, a.faults.failSyncs]).toEqual([false, false, false]);
    expect([b.faults.failReads, b.faults.failWrites, b.faults.failSyncs]).toEqual([true, true, true]);
    expect(() => b.write(new Uint8Array(4096), 0)).toThrow(/injected write error/);
    fs.writeFileSync(trigger, "");
    await Bun.sleep(50); // the poll timer picks it up: an empty file matches every device
    expect(a.faults.failWrites && b.faults.failWrites).toBe(true);
    fs.rmSync(trigger);
    await Bun.sleep(50);
    expect(a.faults.failWrites || b.faults.failWrites).toBe(false);
    expect(FaultFile.fromEnv({})).toBeNull();
  } finally {
    ff.stop();
  }
});
