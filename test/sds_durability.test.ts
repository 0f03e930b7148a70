// Durable writes on the SDS: group commit (src/sds/group_commit.ts), writeThrough extents, FLUSH
// and FUA, and chunks prepared off the event loop (src/sds/chunk_prep.ts). Power loss is modelled
// with VolatileCacheDevice (src/store/volatile_cache.ts): a device whose unsynced writes are lost
// on crash(), as a disk's volatile cache is on a power cut. Syncs can be held to see what waits
// for them (HeldSyncDevice below): no test measures time.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { join } from "node:path";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient, DataReply } from "../src/proto/dataplane_client.ts";
import { GroupCommit } from "../src/sds/group_commit.ts";
import { HeldSyncTarget, waiter } from "./helpers/commit_target.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { DeviceWrapper } from "../src/store/block_device.ts";
import { VolatileCacheDevice } from "../src/store/volatile_cache.ts";
import { LONG_LEASE_MS, MiB, Vol, assignmentsFor, clientTo, flushReq, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000031";
const vol = new Vol(VOL);
const EXTENT = 4 * MiB;
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: EXTENT, extents: [{ index: 0, replicas: [0, 1] }] }];

/** A device whose fdatasync can be held until the test releases it; counts syncs. */
class HeldSyncDevice extends DeviceWrapper {
  hold = false;
  syncs = 0;
  private held: (() => void)[] = [];
  get waiting(): number {
    return this.held.length;
  }
  override async datasync(): Promise<void> {
    this.syncs++;
    if (this.hold) await new Promise<void>((r) => this.held.push(r));
    await this.inner.datasync();
  }
  override datasyncNow(): void {
    throw new Error("fdatasync on the event loop");
  }
  release(): void {
    this.hold = false;
    const h = this.held;
    this.held = [];
    for (const r of h) r();
  }
}

/** Each node's devices: the power-loss model, with a holdable sync above it. */
interface Wrapped {
  cache: VolatileCacheDevice;
  held: HeldSyncDevice;
}

let dir: string;
let nodes: SdsCore[];
let devs: Wrapped[];
let clients: DataPlaneClient[];

function start(i: number, wrap: boolean): SdsCore {
  return startNode(dir, i, 64 * MiB, undefined, 0, (d) => {
    if (!wrap) return d;
    const cache = new VolatileCacheDevice(d);
    const held = new HeldSyncDevice(cache);
    devs[i] = { cache, held };
    return held;
  });
}

/** Apply the plan on every node, the volume writeThrough or not, with a long lease. */
function apply(writeThrough: boolean, mapVersion = 1): void {
  nodes.forEach((n, i) => {
    const a = assignmentsFor(i, nodes, plan, mapVersion);
    n.node.applyAssignments({ ...a, writeThroughVolumes: writeThrough ? [VOL] : [] });
    n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
  });
}

/** Power cut of every node: unsynced writes are gone; then the nodes start again on the files. */
async function powerCutAndRestart(): Promise<void> {
  for (const c of clients) c.close();
  for (const d of devs) d.cache.crash();
  for (const n of nodes) await n.stop().catch(() => undefined);
  nodes = [start(0, false), start(1, false)];
  apply(false, 2);
  clients = nodes.map((n) => clientTo(n));
}

/** Let the event loop turn a few times (replies in flight arrive). */
async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

function track(p: Promise<DataReply>): { done: boolean; status: Status | null; p: Promise<DataReply> } {
  const t = { done: false, status: null as Status | null, p };
  void p.then((r) => {
    t.done = true;
    t.status = r.status;
  });
  return t;
}

beforeEach(() => {
  dir = tmpDir("sdsdurable");
  devs = [];
  nodes = [start(0, true), start(1, true)];
  clients = nodes.map((n) => clientTo(n));
});

afterEach(async () => {
  for (const d of devs) d.held.release();
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("group commit (unit)", () => {

  test("requests during a sync share the next one; nothing written since the last sync began is covered by it", async () => {
    const t = new HeldSyncTarget();
    const gc = new GroupCommit(t, "t");
    const clean = waiter();
    gc.request(clean);
    expect(clean.told).toEqual([true]); // nothing written: durable already
    t.dirty = true;
    const a = waiter();
    gc.request(a);
    expect(t.syncs).toBe(1);
    const b = waiter();
    gc.request(b); // nothing written since sync 1 began: sync 1 covers it
    t.dirty = true; // a write while sync 1 runs
    const c = waiter();
    const d = waiter();
    gc.request(c);
    gc.request(d);
    expect(t.syncs).toBe(1); // one sync at a time
    t.finish();
    await turns(2);
    expect(a.told).toEqual([true]);
    expect(b.told).toEqual([true]);
    expect(c.told).toEqual([]); // needs a sync that began after its request
    expect(t.syncs).toBe(2); // started at once, for c and d together
    t.finish();
    await turns(2);
    expect(c.told).toEqual([true]);
    expect(d.told).toEqual([true]);
    expect(gc.stats.maxBatch).toBe(2);
  });

  test("a failed sync fails its batch, the next one and every later request", async () => {
    const t = new HeldSyncTarget();
    const gc = new GroupCommit(t, "t");
    t.dirty = true;
    const a = waiter();
    gc.request(a);
    t.dirty = true;
    const b = waiter();
    gc.request(b);
    t.fail = true;
    t.finish();
    await turns(2);
    expect(a.told).toEqual([false]);
    expect(b.told).toEqual([false]);
    const c = waiter();
    gc.request(c);
    expect(c.told).toEqual([false]);
    expect(gc.failed).toBe(true);
    expect(t.syncs).toBe(1);
  });
});

describe("power loss (volatile device cache model)", () => {
  test("write-back: an acknowledged write without FLUSH is lost on a power cut; after FLUSH it survives", async () => {
    apply(false);
    const flushed = pattern(8192, 1);
    const kept = pattern(8192, 2);
    expect((await vol.write(clients[0]!, 0, 0, flushed)).status).toBe(Status.OK);
    expect((await vol.write(clients[0]!, 0, MiB, kept)).status).toBe(Status.OK);
    expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
    // acknowledged (both copies hold it through the kernel) but never flushed
    const overwrite = pattern(8192, 3);
    expect((await vol.write(clients[0]!, 0, 0, overwrite)).status).toBe(Status.OK);
    expect(readCopy(nodes[1]!, VOL, 0, 0, 8192)).toEqual(overwrite);
    await powerCutAndRestart();
    for (const n of nodes) {
      expect(Buffer.from(readCopy(n, VOL, 0, MiB, 8192)).equals(Buffer.from(kept))).toBe(true);
      // the unflushed overwrite is gone: each copy holds what the FLUSH made durable
      expect(Buffer.from(readCopy(n, VOL, 0, 0, 8192)).equals(Buffer.from(flushed))).toBe(true);
    }
  });

  test("writeThrough: every acknowledged write survives a power cut of both copies, without any FLUSH", async () => {
    apply(true);
    const writes: { off: number; data: Uint8Array }[] = [];
    const ps: Promise<DataReply>[] = [];
    for (let i = 0; i < 64; i++) {
      const w = { off: ((i * 37) % 256) * 4096 * 3, data: pattern(4096 + (i % 3) * 4096, 100 + i) };
      writes.push(w);
      ps.push(vol.write(clients[0]!, 0, w.off, w.data));
    }
    const rs = await Promise.all(ps);
    expect(rs.every((r) => r.status === Status.OK)).toBe(true);
    // group commit: far fewer syncs than writes on each copy
    for (const d of devs) expect(d.held.syncs).toBeLessThan(64);
    await powerCutAndRestart();
    const model = new Uint8Array(EXTENT);
    for (const w of writes) model.set(w.data, w.off);
    for (const n of nodes) expect(Buffer.from(readCopy(n, VOL, 0, 0, EXTENT)).equals(Buffer.from(model))).toBe(true);
  });
});

describe("what waits for a sync", () => {
  test("a writeThrough write is not acknowledged while either copy's sync is held", async () => {
    apply(true);
    // allocate the chunk first, so only the data sync is left to wait for
    expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 5))).status).toBe(Status.OK);
    devs[1]!.held.hold = true;
    const w = track(vol.write(clients[0]!, 0, 4096, pattern(4096, 6)));
    while (devs[1]!.held.waiting === 0) await turns(1);
    await turns();
    expect(w.done).toBe(false);
    // the event loop serves others meanwhile (the sync runs off it)
    expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.OK);
    devs[1]!.held.release();
    expect((await w.p).status).toBe(Status.OK);
  });

  test("no FLUSH is acknowledged before the writes it covers are durable on both copies", async () => {
    apply(false);
    const data = pattern(16384, 7);
    expect((await vol.write(clients[0]!, 0, 0, data)).status).toBe(Status.OK);
    devs[1]!.held.hold = true; // the secondary's sync
    const f = track(flushReq(clients[0]!));
    while (devs[1]!.held.waiting === 0) await turns(1);
    await turns();
    expect(f.done).toBe(false);
    devs[1]!.held.release();
    expect((await f.p).status).toBe(Status.OK);
    devs[0]!.held.hold = true; // now the primary's own sync
    expect((await vol.write(clients[0]!, 0, MiB, data)).status).toBe(Status.OK);
    const g = track(flushReq(clients[0]!));
    while (devs[0]!.held.waiting === 0) await turns(1);
    await turns();
    expect(g.done).toBe(false);
    devs[0]!.held.release();
    expect((await g.p).status).toBe(Status.OK);
    await powerCutAndRestart();
    for (const n of nodes) {
      expect(Buffer.from(readCopy(n, VOL, 0, 0, 16384)).equals(Buffer.from(data))).toBe(true);
      expect(Buffer.from(readCopy(n, VOL, 0, MiB, 16384)).equals(Buffer.from(data))).toBe(true);
    }
  });

  test("writes arriving during a held sync share one later sync (group commit on the data plane)", async () => {
    apply(true);
    expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 8))).status).toBe(Status.OK);
    const before = devs.map((d) => d.held.syncs);
    for (const d of devs) d.held.hold = true;
    const first = track(vol.write(clients[0]!, 0, 0, pattern(4096, 9)));
    while (devs[0]!.held.waiting === 0 || devs[1]!.held.waiting === 0) await turns(1);
    const rest = Array.from({ length: 15 }, (_, i) => track(vol.write(clients[0]!, 0, (i + 1) * 4096, pattern(4096, 10 + i))));
    await turns();
    expect(first.done || rest.some((r) => r.done)).toBe(false);
    for (const d of devs) d.held.release();
    for (const r of [first, ...rest]) expect((await r.p).status).toBe(Status.OK);
    // the first sync, then one for all 15 that came during it
    for (let i = 0; i < 2; i++) expect(devs[i]!.held.syncs - before[i]!).toBe(2);
  });
});

describe("chunks prepared off the event loop", () => {
  test("a device of unknown content: writes wait for zeroed, synced chunks, in order; the loop keeps serving", async () => {
    // stop the nodes and give them devices that exist already, full of garbage (virgin chunks)
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const i of [0, 1]) {
      fs.mkdirSync(join(dir, `sds${i}`), { recursive: true });
      fs.writeFileSync(join(dir, `sds${i}`, "dev0.img"), new Uint8Array(64 * MiB).fill(0xee));
    }
    devs = [];
    nodes = [start(0, true), start(1, true)];
    clients = nodes.map((n) => clientTo(n));
    apply(false);
    expect(nodes[0]!.store.slots[0]!.dev.createdZeroFilled).toBe(false);
    devs[1]!.held.hold = true; // the secondary's zeroing sync
    const a = track(vol.write(clients[0]!, 0, 4096, pattern(4096, 20)));
    const b = track(vol.write(clients[0]!, 0, 4096 + 2048, pattern(4096, 21))); // overlaps a
    while (devs[1]!.held.waiting === 0) await turns(1);
    await turns();
    expect(a.done).toBe(false);
    expect(b.done).toBe(false);
    expect((await vol.req(clients[0]!, Op.READ, 0, 2 * MiB, 4096)).status).toBe(Status.OK); // served meanwhile
    devs[1]!.held.release();
    expect((await a.p).status).toBe(Status.OK);
    expect((await b.p).status).toBe(Status.OK);
    const model = new Uint8Array(MiB);
    model.set(pattern(4096, 20), 4096);
    model.set(pattern(4096, 21), 4096 + 2048);
    for (const n of nodes) expect(Buffer.from(readCopy(n, VOL, 0, 0, MiB)).equals(Buffer.from(model))).toBe(true); // zeros, not 0xee, around the writes
    // the zeros were durable before the chunk was mapped: a power cut keeps them
    await powerCutAndRestart();
    // (the writes were never flushed: gone; no 0xee anywhere in the chunk)
    for (const n of nodes) expect(readCopy(n, VOL, 0, 0, MiB).every((x) => x === 0)).toBe(true);
  });
});
