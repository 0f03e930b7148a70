// The copy loop of a primary with a sync target, with in-process SDS cores and injected
// assignments: full rebuild onto an empty SDS, resync of a returning away copy (only the chunks
// changed while it was away, REBUILD_WRITE bytes counted), the fallback to a full copy when the
// primary has no trustworthy record, client writes hammering the extent during the copy (seeded
// random workloads; both copies end byte-identical), the throttle, a target dying mid-copy, and
// the progress reports the heartbeat carries.

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { RebuildReport } from "../src/proto/cluster_api.ts";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, Vol, applyAll, checksumCopy, clientTo, pattern, readCopy, sdsIdOf, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000011";
const vol = new Vol(VOL);
const EXTENT = 16 * MiB;

let dir: string;
let nodes: (SdsCore | null)[] = [];
let clients: DataPlaneClient[] = [];

function boot(count: number): SdsCore[] {
  dir = tmpDir("sdscopy");
  const out: SdsCore[] = [];
  for (let i = 0; i < count; i++) out.push(startNode(dir, i, 64 * MiB));
  nodes = out;
  clients = out.map((n) => clientTo(n));
  return out;
}

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

function plan(extents: ExtentPlan["extents"]): ExtentPlan[] {
  return [{ volumeId: VOL, extentBytes: EXTENT, extents }];
}

const used = (n: SdsCore) => n.store.usedBytes(n.store.slots[0]!);

/** Poll the primary's reports until every copy is done; returns the last reports. */
async function waitDone(primary: SdsCore, timeoutMs = 20_000): Promise<RebuildReport[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = primary.node.rebuildReports();
    if (r.length > 0 && r.every((x) => x.done)) return r;
    if (performance.now() > deadline) throw new Error(`copy not done after ${timeoutMs} ms: ${JSON.stringify(r)}`);
    await Bun.sleep(10);
  }
}

/** Write `chunks` whole 1 MiB chunks of distinct data through the primary. */
async function fillChunks(c: DataPlaneClient, chunks: number[], epoch = 1, seed = 100): Promise<void> {
  const rs = await Promise.all(chunks.map((k) => vol.write(c, 0, k * MiB, pattern(MiB, seed + k), { epoch })));
  expect(rs.every((r) => r.status === Status.OK)).toBe(true);
}

async function expectIdentical(primary: SdsCore, others: SdsCore[]): Promise<void> {
  const want = await checksumCopy(primary, VOL, 0);
  for (const o of others) expect({ sds: o.sdsId, sum: await checksumCopy(o, VOL, 0) }).toEqual({ sds: o.sdsId, sum: want });
  // byte for byte too (a checksum collision would hide nothing here)
  const a = readCopy(primary, VOL, 0, 0, EXTENT);
  for (const o of others) expect(Buffer.from(readCopy(o, VOL, 0, 0, EXTENT)).equals(Buffer.from(a))).toBe(true);
}

test("full rebuild onto an empty SDS: every allocated chunk is copied once and the copies end identical", async () => {
  const [a, b, c] = boot(3);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  await fillChunks(clients[0]!, [0, 1, 2, 5, 8, 9, 15]);
  expect((await vol.write(clients[0]!, 0, 12 * MiB + 4096, pattern(100, 3))).status).toBe(Status.OK);
  await b!.stop();
  nodes[1] = null;
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2 }]), 2);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3, target: { sds: 2, mode: "full" } }]), 3);
  const reports = await waitDone(a!);
  expect(reports).toEqual([{ volumeId: VOL, extentIndex: 0, epoch: 3, targetSdsId: sdsIdOf(2), copiedBytes: 8 * MiB, totalBytes: 8 * MiB, done: true }]);
  expect(a!.node.copies.stats.rebuildBytesSent).toBe(8 * MiB);
  expect(c!.node.stats.rebuildBytes).toBe(8 * MiB);
  expect(used(c!)).toBe(used(a!));
  await expectIdentical(a!, [c!]);
  // the MDM promotes the target: it is now an in-sync secondary, and the copy job is gone
  applyAll(nodes, plan([{ index: 0, replicas: [0, 2], epoch: 4 }]), 4);
  expect(a!.node.rebuildReports()).toEqual([]);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 4), { epoch: 4 })).status).toBe(Status.OK);
  expect(Buffer.from(readCopy(c!, VOL, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 4)))).toBe(true);
});

test("resync of a returning copy sends only the chunks changed while it was away (trimmed ones as zeros)", async () => {
  const [a, b] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  await fillChunks(clients[0]!, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  // SDS 1 goes away: the primary runs degraded and records what changes
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, away: [1] }]), 2);
  expect(a!.store.find(VOL, 0)!.changes?.missing).toEqual(new Set([sdsIdOf(1)]));
  expect((await vol.write(clients[0]!, 0, 3 * MiB + 8192, pattern(4096, 1), { epoch: 2 })).status).toBe(Status.OK);
  expect((await vol.write(clients[0]!, 0, 7 * MiB, pattern(MiB, 2), { epoch: 2 })).status).toBe(Status.OK);
  expect((await vol.write(clients[0]!, 0, 13 * MiB + 1, pattern(10, 3), { epoch: 2 })).status).toBe(Status.OK); // a new chunk
  expect((await vol.req(clients[0]!, Op.TRIM, 0, 5 * MiB, MiB, { epoch: 2 })).status).toBe(Status.OK); // freed here
  expect((await vol.req(clients[0]!, Op.WRITE_ZEROES, 0, 9 * MiB + 512, 512, { epoch: 2 })).status).toBe(Status.OK);
  expect(a!.store.find(VOL, 0)!.changes!.chunks.list()).toEqual([3, 5, 7, 9, 13]);
  // it is back within the grace period: resync
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3, target: { sds: 1, mode: "resync" } }]), 3);
  const reports = await waitDone(a!);
  expect(reports[0]).toMatchObject({ copiedBytes: 4 * MiB, totalBytes: 4 * MiB, done: true, epoch: 3 });
  expect(a!.node.copies.stats.rebuildBytesSent).toBe(4 * MiB); // chunks 3, 7, 9, 13
  expect(a!.node.copies.stats.rebuildZeroesSent).toBe(1); // chunk 5
  expect(b!.node.stats.rebuildBytes).toBe(4 * MiB);
  expect(used(b!)).toBe(used(a!));
  await expectIdentical(a!, [b!]);
  // promoted: the record has served its purpose
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 4 }]), 4);
  expect(a!.store.find(VOL, 0)!.changes).toBeNull();
});

test("a promoted primary has no record of what the old primary wrote: its resync copies everything", async () => {
  const [a, b] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [1, 0] }])); // SDS 1 is the primary
  await fillChunks(clients[1]!, [0, 1, 2, 3]);
  // SDS 1 applied a write SDS 0 never got, then died (as with a write in flight at a crash)
  const eb = b!.store.find(VOL, 0)!;
  expect(b!.store.write(eb, 10 * MiB, pattern(4096, 7))).toBe(Status.OK);
  expect(b!.store.write(eb, 2 * MiB, pattern(4096, 8))).toBe(Status.OK);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, away: [1] }]), 2);
  expect(a!.store.find(VOL, 0)!.changes).toBeNull();
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 9), { epoch: 2 })).status).toBe(Status.OK);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3, target: { sds: 1, mode: "resync" } }]), 3);
  await waitDone(a!);
  expect(a!.node.copies.stats.rebuildBytesSent).toBe(4 * MiB); // every allocated chunk
  expect(a!.node.copies.stats.rebuildZeroesSent).toBe(12); // and zeros for the others
  await expectIdentical(a!, [b!]);
});

test("a forwarded write that fails on a secondary starts the record, so that copy's later resync is exact", async () => {
  const [a, b] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  await fillChunks(clients[0]!, [0, 1, 2]);
  await b!.stop();
  nodes[1] = null;
  // not acknowledged, but applied here: chunk 1 now differs from SDS 1's copy
  expect((await vol.write(clients[0]!, 0, MiB, pattern(4096, 5))).status).toBe(Status.UNAVAILABLE);
  expect(a!.store.find(VOL, 0)!.changes!.chunks.list()).toEqual([1]);
  // an unrelated map change (same copies) keeps the record: SDS 1 still misses chunk 1
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]), 2);
  expect(a!.store.find(VOL, 0)!.changes!.missing).toEqual(new Set([sdsIdOf(1)]));
  nodes[1] = startNode(dir, 1, 64 * MiB);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, away: [1] }]), 3);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3, target: { sds: 1, mode: "resync" } }]), 4);
  await waitDone(a!);
  expect(a!.node.copies.stats.rebuildBytesSent).toBe(MiB);
  await expectIdentical(a!, [nodes[1]!]);
});

/**
 * A seeded workload of writes, trims and zeroes, mostly crossing chunk edges, aimed at the chunk
 * the copy is working on (`hot()`) and the next one, so that client writes race with the copy of
 * their own chunk and are not all overwritten again later (which would hide a lost race).
 */
function* workload(seed: number, hot: () => number): Generator<{ op: "write" | "trim" | "zero"; off: number; len: number; data?: Uint8Array }> {
  const pool = Array.from({ length: 48 }, (_, i) => pattern(512 * (1 + ((i * 37) % 512)), seed * 1000 + i));
  let x = seed >>> 0 || 1;
  const rnd = (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
  for (;;) {
    const kind = rnd(10);
    const edge = Math.min(15, hot() + rnd(2)) * MiB;
    const off = Math.min(EXTENT - 512, Math.max(0, edge - 512 * rnd(64) + (rnd(2) === 0 ? 0 : 512 * rnd(256))));
    if (kind < 7) {
      // data from a pool made up front: generating it here would hold the one event loop the
      // SDSs share with this test, and hide the races the test is about
      const data = pool[rnd(pool.length)]!;
      const len = Math.min(EXTENT - off, data.byteLength);
      yield { op: "write", off, len, data: data.subarray(0, len) };
    } else if (kind < 9) {
      const whole = Math.min(15, hot() + rnd(2)) * MiB;
      yield { op: "trim", off: whole, len: Math.min(EXTENT - whole, MiB * (1 + rnd(2))) };
    } else {
      yield { op: "zero", off, len: Math.min(EXTENT - off, 512 * (1 + rnd(64))) };
    }
  }
}

test("client writes hammering the extent during a throttled copy: target and every copy end byte-identical (3 seeds)", async () => {
  for (const seed of [1, 2, 3]) {
    for (const c of clients) c.close();
    for (const n of nodes) await n?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    const [a, b, c] = boot(3);
    applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
    await fillChunks(clients[0]!, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 1, seed);
    // a move: a third copy is built on SDS 2 while both in-sync copies take writes
    applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 2, target: { sds: 2, mode: "full" } }]), 2, 16 * MiB);
    const model = readCopy(a!, VOL, 0, 0, EXTENT);
    const gen = workload(seed, () => Math.floor((a!.node.rebuildReports()[0]?.copiedBytes ?? 0) / MiB));
    let issued = 0;
    let copyDoneAt = -1;
    const t0 = performance.now();
    while (copyDoneAt < 0 || issued < copyDoneAt + 8) {
      const batch: Promise<{ status: Status }>[] = [];
      for (let q = 0; q < 8; q++) {
        const w = gen.next().value!;
        issued++;
        if (w.op === "write") {
          model.set(w.data!, w.off);
          batch.push(vol.write(clients[0]!, 0, w.off, w.data!, { epoch: 2 }));
        } else {
          model.fill(0, w.off, w.off + w.len);
          batch.push(vol.req(clients[0]!, w.op === "trim" ? Op.TRIM : Op.WRITE_ZEROES, 0, w.off, w.len, { epoch: 2 }));
        }
      }
      const rs = await Promise.all(batch);
      expect(rs.map((r) => r.status)).toEqual(Array(batch.length).fill(Status.OK));
      if (copyDoneAt < 0 && a!.node.rebuildReports()[0]?.done) copyDoneAt = issued;
      if (performance.now() - t0 > 20_000) throw new Error(`seed ${seed}: copy not done after 20 s`);
    }
    expect(copyDoneAt).toBeGreaterThanOrEqual(40); // the copy really overlapped with client IO
    expect(Buffer.from(readCopy(a!, VOL, 0, 0, EXTENT)).equals(Buffer.from(model))).toBe(true);
    await expectIdentical(a!, [b!, c!]);
    expect(await vol.checksum(clients[0]!, 0, 2)).toBe(await checksumCopy(c!, VOL, 0));
  }
}, 90_000);

test("throttle: a copy of N bytes at R bytes/s takes at least N/R; progress is monotone and well-formed", async () => {
  const [a] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0] }]));
  await fillChunks(clients[0]!, [0, 1, 2, 3, 4, 5]);
  const rate = 12 * MiB; // 6 MiB at 12 MiB/s: >= 500 ms
  const t0 = performance.now();
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 1, mode: "full" } }]), 2, rate);
  let last = 0;
  const seen: number[] = [];
  for (;;) {
    const [r] = a!.node.rebuildReports();
    expect(r).toBeDefined();
    const parsed = RebuildReport.parse(r);
    expect(parsed.copiedBytes).toBeGreaterThanOrEqual(last);
    expect(parsed.copiedBytes).toBeLessThanOrEqual(parsed.totalBytes);
    expect(parsed.totalBytes).toBe(6 * MiB);
    expect(parsed.targetSdsId).toBe(sdsIdOf(1));
    expect(parsed.epoch).toBe(2);
    last = parsed.copiedBytes;
    seen.push(last);
    if (parsed.done) {
      expect(parsed.copiedBytes).toBe(parsed.totalBytes);
      break;
    }
    if (performance.now() - t0 > 10_000) throw new Error("throttled copy did not finish");
    await Bun.sleep(20);
  }
  const elapsedMs = performance.now() - t0;
  expect(elapsedMs).toBeGreaterThanOrEqual(((6 * MiB) / rate) * 1000);
  expect(elapsedMs).toBeLessThan(3000);
  expect(new Set(seen).size).toBeGreaterThan(3); // progress showed in between
  // re-applying the same assignment (a later map version) keeps the finished job, still done
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 1, mode: "full" } }]), 3, rate);
  expect(a!.node.rebuildReports()[0]?.done).toBe(true);
  expect(a!.node.copies.stats.jobsDone).toBe(1);
});

test("unthrottled copies run at full speed (rate 0 = unlimited)", async () => {
  const [a] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0] }]));
  await fillChunks(clients[0]!, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
  const t0 = performance.now();
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 1, mode: "full" } }]), 2, 0);
  await waitDone(a!);
  expect(performance.now() - t0).toBeLessThan(2000);
  await expectIdentical(a!, [nodes[1]!]);
});

test("target dying mid-copy: writes it missed are never acknowledged, the report stays not done, the MDM's re-plan clears it", async () => {
  const [a, , c] = boot(3);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  await fillChunks(clients[0]!, [0, 1, 2, 3, 4, 5, 6, 7]);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 2, target: { sds: 2, mode: "full" } }]), 2, 4 * MiB);
  await Bun.sleep(300);
  expect(a!.node.rebuildReports()[0]).toMatchObject({ done: false });
  await c!.stop();
  nodes[2] = null;
  const rs = await Promise.all(Array.from({ length: 16 }, (_, i) => vol.write(clients[0]!, 0, i * 4096, pattern(4096, 50 + i), { epoch: 2 })));
  expect(rs.map((r) => r.status)).toEqual(Array(16).fill(Status.UNAVAILABLE));
  await Bun.sleep(100);
  const [r] = a!.node.rebuildReports();
  expect(r).toMatchObject({ targetSdsId: sdsIdOf(2), done: false });
  expect(r!.copiedBytes).toBeLessThan(8 * MiB);
  // the MDM drops the dead target: writes go through again on the two in-sync copies
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 3 }]), 3, 4 * MiB);
  expect(a!.node.rebuildReports()).toEqual([]);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 99), { epoch: 3 })).status).toBe(Status.OK);
  await expectIdentical(a!, [nodes[1]!]);
});

test("a forwarded write failing on a finished target undoes done until the copy is redone", async () => {
  const [a, , c] = boot(3);
  applyAll(nodes, plan([{ index: 0, replicas: [0] }]));
  await fillChunks(clients[0]!, [0, 1]);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 2, mode: "full" } }]), 2);
  await waitDone(a!);
  // the target refuses one forwarded write (as if it lagged an epoch behind for a moment)
  const eC = c!.store.find(VOL, 0)!;
  eC.epoch = 1;
  expect((await vol.write(clients[0]!, 0, 4096, pattern(4096, 1), { epoch: 2 })).status).toBe(Status.UNAVAILABLE);
  expect(a!.node.rebuildReports()[0]!.done).toBe(false);
  eC.epoch = 2;
  await waitDone(a!);
  expect(a!.node.copies.stats.jobsDone).toBe(2);
  await expectIdentical(a!, [c!]);
});
