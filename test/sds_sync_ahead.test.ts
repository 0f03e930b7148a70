// Group commit started at the end of the task (GroupCommit deferStart, used by device commits)
// and syncs started ahead of a FLUSH that is expected (GroupCommit.syncAhead; SdsNode starts them
// for write-back writes while FLUSHes keep coming). Power loss is modelled as in
// sds_durability.test.ts (VolatileCacheDevice: unsynced writes are lost on crash()). No test
// measures time: the FLUSH window is set to a minute so a loaded host cannot close it.

process.env.PF_FLUSH_ANTICIPATION_MS = "60000";

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { HeldSyncTarget, waiter } from "./helpers/commit_target.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { DeviceWrapper } from "../src/store/block_device.ts";
import { VolatileCacheDevice } from "../src/store/volatile_cache.ts";

// imported after the environment above is set (the node reads its FLUSH window at load)
const { GroupCommit } = await import("../src/sds/group_commit.ts");
const { LONG_LEASE_MS, MiB, Vol, assignmentsFor, clientTo, flushReq, pattern, readCopy, startNode, tmpDir } = await import("./sds_harness.ts");
type ExtentPlan = import("./sds_harness.ts").ExtentPlan;

async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe("group commit started at the end of the task (deferStart)", () => {
  test("every request of one task shares one sync, started after the task; the next batch likewise", async () => {
    const t = new HeldSyncTarget();
    const gc = new GroupCommit(t, "t", undefined, 1, true);
    t.dirty = true;
    const a = waiter();
    gc.request(a);
    t.dirty = true; // a second write in the same task
    const b = waiter();
    gc.request(b);
    expect(t.syncs).toBe(0); // not inside request()
    await Promise.resolve();
    expect(t.syncs).toBe(1); // one sync for both
    expect(t.dirty).toBe(false);
    t.dirty = true; // written while it runs
    const c = waiter();
    gc.request(c);
    await turns(2);
    expect(t.syncs).toBe(1); // one at a time
    t.finish();
    await turns(2);
    expect(a.told).toEqual([true]);
    expect(b.told).toEqual([true]);
    expect(c.told).toEqual([]); // needs a sync that began after its request
    expect(t.syncs).toBe(2);
    t.finish();
    await turns(2);
    expect(c.told).toEqual([true]);
    expect(gc.stats.maxBatch).toBe(2);
  });

  test("a sync that fails before a queued start fails the queued waiters too", async () => {
    const t = new HeldSyncTarget();
    const gc = new GroupCommit(t, "t", undefined, 1, true);
    t.dirty = true;
    const a = waiter();
    gc.request(a);
    await Promise.resolve();
    t.dirty = true;
    const b = waiter();
    gc.request(b);
    t.fail = true;
    t.finish();
    await turns(2);
    expect(a.told).toEqual([false]);
    expect(b.told).toEqual([false]);
    expect(t.syncs).toBe(1);
    expect(gc.failed).toBe(true);
  });

  test("syncAhead starts a sync nobody waits for; a request with nothing written since joins it", async () => {
    const t = new HeldSyncTarget();
    const gc = new GroupCommit(t, "t", undefined, 1, true);
    gc.syncAhead(); // nothing written: nothing to do
    await turns(2);
    expect(t.syncs).toBe(0);
    t.dirty = true;
    gc.syncAhead();
    await turns(2);
    expect(t.syncs).toBe(1);
    const a = waiter();
    gc.request(a); // nothing written since that sync began: it covers a
    const b = waiter();
    t.dirty = true;
    gc.request(b); // written after: needs the next one
    t.finish();
    await turns(2);
    expect(a.told).toEqual([true]);
    expect(b.told).toEqual([]);
    expect(t.syncs).toBe(2);
    t.finish();
    await turns(2);
    expect(b.told).toEqual([true]);
    expect(gc.stats.ahead).toBe(1);
  });
});

/** A device that counts its fdatasyncs. */
class CountingDevice extends DeviceWrapper {
  syncs = 0;
  override async datasync(): Promise<void> {
    this.syncs++;
    await this.inner.datasync();
  }
  override datasyncNow(): void {
    throw new Error("fdatasync on the event loop");
  }
}

const VOL = "0a00000000000032";
const vol = new Vol(VOL);
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }];

describe("sync ahead on the SDS (write-back, FLUSHes keep coming)", () => {
  let dir: string;
  let nodes: SdsCore[];
  let caches: VolatileCacheDevice[];
  let counts: CountingDevice[];
  let clients: DataPlaneClient[];

  const start = (i: number, wrap: boolean): SdsCore =>
    startNode(dir, i, 64 * MiB, undefined, 0, (d) => {
      if (!wrap) return d;
      caches[i] = new VolatileCacheDevice(d);
      counts[i] = new CountingDevice(caches[i]!);
      return counts[i]!;
    });
  const apply = (mapVersion = 1): void =>
    nodes.forEach((n, i) => {
      n.node.applyAssignments({ ...assignmentsFor(i, nodes, plan, mapVersion), writeThroughVolumes: [] });
      n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
    });

  beforeEach(() => {
    dir = tmpDir("sdssyncahead");
    caches = [];
    counts = [];
    nodes = [start(0, true), start(1, true)];
    clients = nodes.map((n) => clientTo(n));
    apply();
  });
  afterEach(async () => {
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("after three FLUSHes in a row a write-back write is synced on both copies before any FLUSH; the next FLUSH needs no sync of its own", async () => {
    for (let i = 0; i < 3; i++) {
      expect((await vol.write(clients[0]!, 0, i * 8192, pattern(8192, 10 + i))).status).toBe(Status.OK);
      expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
    }
    const before = counts.map((c) => c.syncs);
    const ahead = pattern(8192, 42);
    expect((await vol.write(clients[0]!, 0, MiB, ahead)).status).toBe(Status.OK);
    await turns(40);
    // each copy synced once for it, with no FLUSH asked
    expect(counts.map((c, i) => c.syncs - before[i]!)).toEqual([1, 1]);
    expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
    expect(counts.map((c, i) => c.syncs - before[i]!)).toEqual([1, 1]);
    // a power cut now keeps it on both copies (it was not FLUSHed, but its sync had started)
    for (const c of clients) c.close();
    for (const c of caches) c.crash();
    for (const n of nodes) await n.stop().catch(() => undefined);
    nodes = [start(0, false), start(1, false)];
    apply(2);
    clients = nodes.map((n) => clientTo(n));
    for (const n of nodes) expect(Buffer.from(readCopy(n, VOL, 0, MiB, 8192)).equals(Buffer.from(ahead))).toBe(true);
  });

  test("one FLUSH is no streak: a later write stays unsynced until the next FLUSH", async () => {
    expect((await vol.write(clients[0]!, 0, 0, pattern(8192, 1))).status).toBe(Status.OK);
    expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
    const before = counts.map((c) => c.syncs);
    expect((await vol.write(clients[0]!, 0, MiB, pattern(8192, 2))).status).toBe(Status.OK);
    await turns(40);
    expect(counts.map((c, i) => c.syncs - before[i]!)).toEqual([0, 0]);
  });
});
