// Two SDSs on 127.0.0.1 with injected assignments: the write path (primary -> secondary),
// reads and checksums of both copies, ordering of overlapping writes, thin zeros, trim,
// FLUSH/FUA reaching the peer, epoch/ownership refusals, ENOSPC and a secondary that is down.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, Vol, applyAll, clientTo, flushReq, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000001";
const vol = new Vol(VOL);
const EXTENT = 4 * MiB;
const plan: ExtentPlan[] = [
  {
    volumeId: VOL,
    extentBytes: EXTENT,
    extents: [
      { index: 0, replicas: [0, 1] }, // primary SDS 0
      { index: 1, replicas: [1, 0] }, // primary SDS 1
    ],
  },
];

let dir: string;
let nodes: SdsCore[];
let clients: DataPlaneClient[];

beforeEach(() => {
  dir = tmpDir("sdsrepl");
  nodes = [startNode(dir, 0), startNode(dir, 1)];
  applyAll(nodes, plan);
  clients = nodes.map((n) => clientTo(n));
});

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("write path", () => {
  test("a write through the primary lands on both copies (data and checksum equal)", async () => {
    const data = pattern(64 * 1024, 1);
    const r = await vol.write(clients[0]!, 0, 1 * MiB - 4096, data);
    expect(r.status).toBe(Status.OK);
    const a = await vol.read(clients[0]!, 0, 1 * MiB - 4096, data.byteLength);
    const b = readCopy(nodes[1]!, VOL, 0, 1 * MiB - 4096, data.byteLength);
    expect(Buffer.from(a).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(b).equals(Buffer.from(data))).toBe(true);
    const ca = await vol.checksum(clients[0]!, 0);
    const cb = await vol.checksum(clients[1]!, 0);
    expect(ca).toBe(cb);
    expect(nodes[1]!.node.stats.replWrites).toBe(1);
  });

  test("a write sent to the secondary is refused (NOT_OWNER), nothing written", async () => {
    const r = await vol.write(clients[1]!, 0, 0, pattern(4096, 2));
    expect(r.status).toBe(Status.NOT_OWNER);
    expect(nodes[1]!.store.usedBytes(nodes[1]!.store.slots[0]!)).toBe(0);
  });

  test("unwritten space reads as zeros and allocates nothing; thin allocation is per 1 MiB chunk", async () => {
    const z = await vol.read(clients[0]!, 0, 0, EXTENT);
    expect(z.every((x) => x === 0)).toBe(true);
    expect(nodes[0]!.store.usedBytes(nodes[0]!.store.slots[0]!)).toBe(0);
    await vol.write(clients[0]!, 0, 2 * MiB + 100, pattern(10, 3));
    expect(nodes[0]!.store.usedBytes(nodes[0]!.store.slots[0]!)).toBe(1 * MiB);
    expect(nodes[1]!.store.usedBytes(nodes[1]!.store.slots[0]!)).toBe(1 * MiB);
    const around = readCopy(nodes[1]!, VOL, 0, 2 * MiB, 4096);
    expect(around.subarray(0, 100).every((x) => x === 0)).toBe(true);
    expect(Buffer.from(around.subarray(100, 110)).equals(Buffer.from(pattern(10, 3)))).toBe(true);
    expect(around.subarray(110).every((x) => x === 0)).toBe(true);
  });

  test("overlapping pipelined writes end identical on both copies", async () => {
    const ps = [];
    for (let i = 0; i < 200; i++) {
      const off = (i * 1536) % (64 * 1024);
      ps.push(vol.write(clients[0]!, 0, off, pattern(8192, 100 + i)));
    }
    // the other primary's extent too, so both directions replicate at once
    for (let i = 0; i < 100; i++) ps.push(vol.write(clients[1]!, 1, (i * 4096) % (32 * 1024), pattern(16384, 500 + i)));
    const rs = await Promise.all(ps);
    expect(rs.every((r) => r.status === Status.OK)).toBe(true);
    for (const ext of [0, 1]) {
      const a = readCopy(nodes[0]!, VOL, ext, 0, 128 * 1024);
      const b = readCopy(nodes[1]!, VOL, ext, 0, 128 * 1024);
      expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
      expect(await vol.checksum(clients[0]!, ext)).toBe(await vol.checksum(clients[1]!, ext));
    }
    // both hold what applying the writes in issue order gives (one client = one ordered stream)
    const model = new Uint8Array(128 * 1024);
    for (let i = 0; i < 200; i++) model.set(pattern(8192, 100 + i), (i * 1536) % (64 * 1024));
    const held = readCopy(nodes[1]!, VOL, 0, 0, 128 * 1024);
    expect(Buffer.from(held).equals(Buffer.from(model))).toBe(true);
  });

  test("TRIM and WRITE_ZEROES read back as zeros on both copies and free whole chunks", async () => {
    await vol.write(clients[0]!, 0, 0, pattern(3 * MiB, 7));
    expect(nodes[1]!.store.usedBytes(nodes[1]!.store.slots[0]!)).toBe(3 * MiB);
    // trim [0.5 MiB, 2.5 MiB): chunk 1 freed whole, halves of chunks 0 and 2 zero-filled
    const t = await vol.req(clients[0]!, Op.TRIM, 0, MiB / 2, 2 * MiB);
    expect(t.status).toBe(Status.OK);
    const z = await vol.req(clients[0]!, Op.WRITE_ZEROES, 0, 2 * MiB + MiB / 2, 4096);
    expect(z.status).toBe(Status.OK);
    for (const n of nodes) {
      const all = readCopy(n, VOL, 0, 0, 3 * MiB);
      const expected = pattern(3 * MiB, 7);
      expected.fill(0, MiB / 2, 2 * MiB + MiB / 2 + 4096);
      expect(Buffer.from(all).equals(Buffer.from(expected))).toBe(true);
    }
    expect(await vol.checksum(clients[0]!, 0)).toBe(await vol.checksum(clients[1]!, 0));
    for (const n of nodes) expect(n.store.usedBytes(n.store.slots[0]!)).toBe(2 * MiB);
  });

  test("checksums agree between a thin copy with a zeroed written chunk and one never written", async () => {
    await vol.write(clients[0]!, 0, 0, new Uint8Array(4096));
    expect(await vol.checksum(clients[0]!, 0)).toBe(await vol.checksum(clients[1]!, 0));
    const before = await vol.checksum(clients[0]!, 1);
    expect(before).toBe(await vol.checksum(clients[0]!, 0)); // both all zeros
  });
});

describe("durability requests", () => {
  test("FLUSH is forwarded to the peer that got forwarded writes, and only then", async () => {
    // the first FLUSH after start syncs every peer: a restarted primary cannot know which peers
    // still hold writes it forwarded (and acknowledged) before it died
    const f0 = await flushReq(clients[0]!);
    expect(f0.status).toBe(Status.OK);
    expect(nodes[0]!.node.stats.peerFlushesSent).toBe(1);
    const f0b = await flushReq(clients[0]!);
    expect(f0b.status).toBe(Status.OK);
    expect(nodes[0]!.node.stats.peerFlushesSent).toBe(1); // nothing forwarded since
    await vol.write(clients[0]!, 0, 0, pattern(4096, 9));
    const f1 = await flushReq(clients[0]!);
    expect(f1.status).toBe(Status.OK);
    expect(nodes[0]!.node.stats.peerFlushesSent).toBe(2);
    expect(nodes[1]!.node.stats.flushes).toBe(2);
    const f2 = await flushReq(clients[0]!);
    expect(f2.status).toBe(Status.OK);
    expect(nodes[0]!.node.stats.peerFlushesSent).toBe(2);
  });

  test("two primaries replicating to each other can FLUSH at the same time (no flush cycle)", async () => {
    for (let round = 0; round < 20; round++) {
      await Promise.all([vol.write(clients[0]!, 0, round * 4096, pattern(4096, round)), vol.write(clients[1]!, 1, round * 4096, pattern(4096, 50 + round))]);
      const [a, b] = await Promise.all([flushReq(clients[0]!), flushReq(clients[1]!)]);
      expect(a.status).toBe(Status.OK);
      expect(b.status).toBe(Status.OK);
    }
  });

  test("FUA makes the write durable on both copies before the reply", async () => {
    const r = await vol.write(clients[0]!, 0, 8192, pattern(4096, 10), { fua: true });
    expect(r.status).toBe(Status.OK);
    expect(nodes[0]!.node.stats.fuaSyncs).toBe(1);
    expect(nodes[1]!.node.stats.fuaSyncs).toBe(1);
  });
});

describe("refusals", () => {
  test("a request with another epoch is refused with STALE_EPOCH before touching the device", async () => {
    const r = await vol.write(clients[0]!, 0, 0, pattern(4096, 11), { epoch: 2 });
    expect(r.status).toBe(Status.STALE_EPOCH);
    const rr = await vol.req(clients[0]!, Op.READ, 0, 0, 4096, { epoch: 0 });
    expect(rr.status).toBe(Status.STALE_EPOCH);
    expect(nodes[0]!.store.usedBytes(nodes[0]!.store.slots[0]!)).toBe(0);
  });

  test("an extent or volume the SDS does not hold is refused with NOT_OWNER", async () => {
    expect((await vol.write(clients[0]!, 7, 0, pattern(4096, 12))).status).toBe(Status.NOT_OWNER);
    const other = new Vol("0a00000000000002");
    expect((await other.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    // same low half, different high half
    const twin = new Vol("0b00000000000001");
    expect((await twin.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
  });

  test("a range past the extent's end is INVALID", async () => {
    expect((await vol.req(clients[0]!, Op.READ, 0, EXTENT - 4096, 8192)).status).toBe(Status.INVALID);
  });

  test("after a new epoch is applied, the old epoch is refused and the new one served", async () => {
    const bumped: ExtentPlan[] = [{ ...plan[0]!, extents: plan[0]!.extents.map((x) => ({ ...x, epoch: 2 })) }];
    applyAll(nodes, bumped, 2);
    expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 13), { epoch: 1 })).status).toBe(Status.STALE_EPOCH);
    expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 13), { epoch: 2 })).status).toBe(Status.OK);
  });

  test("an extent no longer assigned is freed and then refused", async () => {
    await vol.write(clients[0]!, 0, 0, pattern(2 * MiB, 14));
    applyAll(nodes, [{ ...plan[0]!, extents: [plan[0]!.extents[1]!] }], 2);
    expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    for (const n of nodes) expect(n.store.usedBytes(n.store.slots[0]!)).toBe(0);
  });
});

describe("failures", () => {
  test("secondary down: the write is not acknowledged (UNAVAILABLE)", async () => {
    await nodes[1]!.stop();
    const r = await vol.write(clients[0]!, 0, 0, pattern(4096, 15));
    expect(r.status).toBe(Status.UNAVAILABLE);
    // the next heartbeat tells the MDM that this copy missed a write (it must be resynced)
    const failed = nodes[0]!.node.takeFailedForwards();
    expect(failed).toEqual([{ volumeId: VOL, extentIndex: 0, epoch: expect.any(Number), peerSdsId: nodes[1]!.sdsId }]);
    expect(nodes[0]!.node.takeFailedForwards()).toEqual([]);
    const fl = await flushReq(clients[0]!);
    expect(fl.status === Status.OK || fl.status === Status.UNAVAILABLE).toBe(true);
  });

  test("a full device answers NO_SPACE and earlier data stays intact on both copies", async () => {
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    dir = tmpDir("sdsfull");
    nodes = [startNode(dir, 0, 3 * MiB), startNode(dir, 1, 3 * MiB)];
    applyAll(nodes, plan);
    clients = nodes.map((n) => clientTo(n));
    const first = pattern(2 * MiB, 16);
    expect((await vol.write(clients[0]!, 0, 0, first)).status).toBe(Status.OK);
    expect((await vol.write(clients[1]!, 1, 0, pattern(4096, 17))).status).toBe(Status.OK);
    // device (3 chunks) is now full on both; a write to a fourth chunk must fail
    const r = await vol.write(clients[0]!, 0, 3 * MiB, pattern(4096, 18));
    expect(r.status).toBe(Status.NO_SPACE);
    // a write spanning an allocated and an unallocated chunk fails as a whole
    const span = await vol.write(clients[0]!, 0, 2 * MiB - 2048, pattern(4096, 19));
    expect(span.status).toBe(Status.NO_SPACE);
    for (const n of nodes) {
      const back = readCopy(n, VOL, 0, 0, 2 * MiB);
      expect(Buffer.from(back).equals(Buffer.from(first))).toBe(true);
    }
    // overwriting allocated space still works
    expect((await vol.write(clients[0]!, 0, 4096, pattern(4096, 20))).status).toBe(Status.OK);
  });
});

test("FUA flag is echoed on the reply and flags are validated", async () => {
  const r = await clients[0]!.request({ opcode: Op.WRITE, flags: Flag.FUA, epoch: 1, volumeHi: vol.hi, volumeLo: vol.lo, extentIndex: 0, offset: 0, length: 4096 }, pattern(4096, 21));
  expect(r.status).toBe(Status.OK);
});
