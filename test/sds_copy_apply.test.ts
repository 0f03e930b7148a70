// A copy target writes REBUILD_WRITE frames off the event loop (ExtentStore.writeOwnedAsync):
// a request overlapping one still being written runs after it, in arrival order, as after a
// synchronous write (an older primary sends copies and forwards on one link, unheld); and a
// chunk freed while such a write is in flight stays allocated until the write ends, so the
// cleaner cannot zero it under the write (ChunkAllocator.hold).

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { ChunkAllocator } from "../src/sds/chunk_allocator.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { LONG_LEASE_MS, MiB, Vol, assignmentsFor, pattern, peerClientTo, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000031";
const vol = new Vol(VOL);
const EXTENT = 8 * MiB;

let dir: string;
let nodes: SdsCore[] = [];
let clients: DataPlaneClient[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

/** SDS 2 is the target of extent 0, whose primary is SDS 0; only SDS 2 learns it (SDS 0 copies nothing itself). */
function bootTarget(): { target: SdsCore; fromPrimary: DataPlaneClient } {
  dir = tmpDir("sdscopyapply");
  nodes = [0, 1, 2].map((i) => startNode(dir, i, 64 * MiB));
  const plans: ExtentPlan[] = [{ volumeId: VOL, extentBytes: EXTENT, extents: [{ index: 0, replicas: [0, 1], target: { sds: 2, mode: "full" } }] }];
  const target = nodes[2]!;
  target.node.applyAssignments(assignmentsFor(2, nodes, plans, 1));
  target.node.grantLease(target.node.clock.nowMs(), LONG_LEASE_MS);
  const fromPrimary = peerClientTo(target, 0);
  clients = [fromPrimary];
  return { target, fromPrimary };
}

const layerReq = (c: DataPlaneClient, op: Op, offset: number, payload: Uint8Array) =>
  c.request({ opcode: op, flags: Flag.LAYER, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, extentIndex: 0, offset, length: payload.byteLength }, payload);

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

test("a forward overlapping a copy write still in flight lands on top of it; one of another chunk is applied too", async () => {
  const { target, fromPrimary } = bootTarget();
  const copy = pattern(MiB, 1);
  const over = pattern(4096, 2);
  const elsewhere = pattern(4096, 3);
  for (let round = 0; round < 8; round++) {
    const at = round * MiB;
    // on one ordered connection, without waiting: the copy, then a write of part of its chunk
    const replies = await Promise.all([
      layerReq(fromPrimary, Op.REBUILD_WRITE, at, copy),
      layerReq(fromPrimary, Op.REPL_WRITE, at + 8192, over),
      layerReq(fromPrimary, Op.REPL_WRITE, ((round + 1) % 8) * MiB + 4096, elsewhere),
    ]);
    expect(replies.map((r) => r.status)).toEqual([Status.OK, Status.OK, Status.OK]);
    expect(same(readCopy(target, VOL, 0, at + 8192, 4096), over)).toBe(true);
    expect(same(readCopy(target, VOL, 0, at, 8192), copy.subarray(0, 8192))).toBe(true);
    expect(same(readCopy(target, VOL, 0, at + 12288, MiB - 12288), copy.subarray(12288))).toBe(true);
  }
  expect(target.node.stats.rebuildWrites).toBe(8);
});

test("a chunk freed while a write into it is in flight stays used until the write ends, then turns dirty", () => {
  const a = new ChunkAllocator(4, 4);
  const got = a.allocate()!;
  a.hold(got.phys);
  a.free(got.phys);
  expect(a.isUsed(got.phys)).toBe(true);
  expect(a.dirty).toBe(0);
  // never handed out again meanwhile
  const others = [a.allocate(), a.allocate(), a.allocate()].map((x) => x!.phys);
  expect(others).not.toContain(got.phys);
  expect(a.allocate()).toBeNull();
  expect(a.unhold(got.phys)).toBe(true); // the deferred free happens now
  expect(a.isUsed(got.phys)).toBe(false);
  expect(a.dirty).toBe(1);
});

test("a held chunk not freed stays used after its hold ends; holds nest", () => {
  const a = new ChunkAllocator(2, 2);
  const got = a.allocate()!;
  a.hold(got.phys);
  a.hold(got.phys);
  expect(a.unhold(got.phys)).toBe(false);
  a.free(got.phys);
  expect(a.isUsed(got.phys)).toBe(true);
  expect(a.unhold(got.phys)).toBe(true);
  expect(a.dirty).toBe(1);
  const again = a.allocate()!;
  a.hold(again.phys);
  expect(a.unhold(again.phys)).toBe(false);
  expect(a.isUsed(again.phys)).toBe(true);
});
