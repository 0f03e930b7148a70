// A primary reports that a write it forwarded to the other in-sync copy failed (that copy's thin
// device was full, the connection dropped): the copies may differ on that range, so the MDM
// takes the copy out of the in-sync set at once and resyncs it; stale reports change nothing.

import { afterEach, expect, test } from "bun:test";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

let c: RecoveryCluster;
afterEach(() => c?.close());

async function failedForward(reporter: string, f: { volumeId: string; extentIndex: number; epoch: number; peerSdsId: string }): Promise<void> {
  const s = c.id(reporter);
  const r = await c.m.cluster("POST", `/sds/${s}/heartbeat`, { devices: [], appliedMapVersion: 0, failedForwards: [f] });
  expect(r.status).toBe(200);
}

test("a failed forward takes the copy out of the in-sync set and resyncs it", async () => {
  c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: 2000, rebuildGraceMs: 10_000, stallTimeoutMs: 5000 } });
  for (let i = 1; i <= 3; i++) await c.addSds(`sds${i}`);
  await c.createVolume("v1", 1);
  const e = c.extents()[0]!;
  const primary = e.inSync[0]!;
  const secondary = e.inSync[1]!;
  const reporter = c.byId(primary.sdsId).name;
  const mv = c.mapVersion();

  // a report from the secondary, or about an older epoch, is ignored
  await failedForward(c.byId(secondary.sdsId).name, { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, peerSdsId: primary.sdsId });
  await failedForward(reporter, { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch - 1 || 999, peerSdsId: secondary.sdsId });
  expect(c.mapVersion()).toBe(mv);

  await failedForward(reporter, { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, peerSdsId: secondary.sdsId });
  const now = c.extents().find((x) => x.volumeId === e.volumeId && x.idx === e.idx)!;
  expect(now.epoch).toBe(e.epoch + 1);
  expect(now.inSync.map((x) => x.sdsId)).toEqual([primary.sdsId]);
  expect(now.away?.sdsId).toBe(secondary.sdsId);
  expect(c.mapVersion()).toBeGreaterThan(mv);

  await c.advance(500);
  const resync = c.extents().find((x) => x.volumeId === e.volumeId && x.idx === e.idx)!;
  expect(resync.target).toMatchObject({ sdsId: secondary.sdsId, mode: "resync" });
  await c.settle();
  const end = c.extents().find((x) => x.volumeId === e.volumeId && x.idx === e.idx)!;
  expect(end.inSync.map((x) => x.sdsId).sort()).toEqual([primary.sdsId, secondary.sdsId].sort());
});

test("a failed forward during a drain, from the primary on the SDS being removed: its move becomes a rebuild and the drain completes", async () => {
  c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: 2000, rebuildGraceMs: 10_000, stallTimeoutMs: 5000 } });
  for (let i = 1; i <= 4; i++) await c.addSds(`sds${i}`);
  await c.createVolume("v1", 1);
  const leaving = c.id("sds4");
  expect((await c.m.api("POST", `/instances/Sds::${leaving}/action/removeSds`, {})).status).toBe(200);
  c.tick();
  // a move whose source, the primary, is the SDS being removed
  const moving = c.extents().find((x) => x.inSync[0]!.sdsId === leaving && x.target?.replacesSdsId === leaving);
  expect(moving).toBeDefined();
  const e = moving!;
  const staying = e.inSync[1]!;
  await failedForward("sds4", { volumeId: e.volumeId, extentIndex: e.idx, epoch: e.epoch, peerSdsId: staying.sdsId });
  const after = c.extents().find((x) => x.volumeId === e.volumeId && x.idx === e.idx)!;
  expect(after.epoch).toBe(e.epoch + 1);
  expect(after.inSync.map((x) => x.sdsId)).toEqual([leaving]);
  expect(after.away?.sdsId).toBe(staying.sdsId);
  // the copy being built is the second copy now (no fault sets: its target is apart from the primary)
  expect(after.target).toMatchObject({ sdsId: e.target!.sdsId, replacesSdsId: null });
  // its copy finishes (and every other), past the grace period too: the SDS is drained and removed
  await c.advance(12_000);
  await c.settle();
  expect(((await c.m.api("GET", `/instances/Sds::${leaving}`)).json as { pfCode: string }).pfCode).toBe("NOT_FOUND");
  for (const x of c.extents()) {
    expect(x.inSync.length).toBe(2);
    expect(x.target).toBeNull();
  }
});
