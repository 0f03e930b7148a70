// What the observe step keeps between steps (src/mdm/observe/observe_cache.ts): the volume size
// sums kept by TEMP triggers equal the GROUP BY they replace through creates, resizes, removals
// and a rolled-back transaction; the stamp stays still when only used bytes change and moves
// with every change the cached parts depend on; the recovery figures of an idle cluster are
// reused while nothing changes and computed again at a change (a volume, an SDS's loss, a
// device's failure); and poolUsages on the active MDM equals the store-read path a standby uses.

import { afterEach, expect, test } from "bun:test";
import { observeStamp, volumeSums } from "../src/mdm/observe/observe_cache.ts";
import { poolUsages } from "../src/mdm/observe/pool_usage.ts";
import { observedRecoveryStatus } from "../src/mdm/observe/recovery_pacing.ts";
import { ObserveCluster } from "./mdm_observe_fixture.ts";

let oc: ObserveCluster | undefined;
afterEach(() => {
  oc?.close();
  oc = undefined;
});

const bySql = (oc: ObserveCluster) =>
  oc.ctx.store.sqlite
    .query<{ pool_id: string; volume_type: string; bytes: number }, []>("SELECT pool_id, volume_type, coalesce(sum(size_bytes), 0) AS bytes FROM volume GROUP BY pool_id, volume_type ORDER BY 1, 2")
    .all();
const kept = (oc: ObserveCluster) => volumeSums(oc.ctx).filter((r) => r.bytes !== 0 || bySql(oc).some((s) => s.pool_id === r.pool_id && s.volume_type === r.volume_type)).sort((a, b) => `${a.pool_id}/${a.volume_type}`.localeCompare(`${b.pool_id}/${b.volume_type}`));

test("the kept volume sums equal the GROUP BY through creates, a resize, removals and a rollback", async () => {
  oc = await ObserveCluster.open();
  expect(kept(oc)).toEqual(bySql(oc));
  const a = await oc.volume("a", { sizeGiB: 8 });
  await oc.volume("b", { sizeGiB: 16, thick: true, map: false });
  const c = await oc.volume("c", { sizeGiB: 1, map: false });
  expect(kept(oc)).toEqual(bySql(oc));
  expect(bySql(oc).length).toBe(2);
  expect((await oc.m.api("POST", `/instances/Volume::${c}/action/setVolumeSize`, { sizeInGB: "24" })).status).toBe(200);
  expect(kept(oc)).toEqual(bySql(oc));
  expect((await oc.m.api("POST", `/instances/Volume::${a}/action/removeMappedSdc`, { sdcId: oc.sdcId })).status).toBe(200);
  expect((await oc.m.api("POST", `/instances/Volume::${a}/action/removeVolume`, { removeMode: "ONLY_ME" })).status).toBe(200);
  expect(kept(oc)).toEqual(bySql(oc));
  // a change rolled back takes its move of the sums with it
  const before = kept(oc);
  const db = oc.ctx.store.sqlite;
  expect(() =>
    db.transaction(() => {
      db.run("UPDATE volume SET size_bytes = size_bytes * 2");
      expect(kept(oc!)).toEqual(bySql(oc!));
      throw new Error("roll back");
    })(),
  ).toThrow("roll back");
  expect(kept(oc)).toEqual(before);
  expect(kept(oc)).toEqual(bySql(oc));
});

test("the stamp stays still when beats change only used bytes and moves with volumes, devices, SDSs and SDCs", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("v1");
  const s0 = observeStamp(oc.ctx);
  expect(s0).not.toBeNull();
  for (const s of oc.sds) s.devices[0]!.usedBytes += 1 << 20;
  await oc.tick();
  expect(observeStamp(oc.ctx)).toBe(s0);
  await oc.volume("v2", { map: false });
  const s1 = observeStamp(oc.ctx);
  expect(s1).not.toBe(s0);
  oc.sds[1]!.devices[0]!.state = "Failed";
  await oc.tick();
  const s2 = observeStamp(oc.ctx);
  expect(s2).not.toBe(s1);
  await oc.m.joinSdc("guid-observe-sdc-2", "hostB");
  expect(observeStamp(oc.ctx)).not.toBe(s2);
});

test("recovery figures of an idle cluster are reused while nothing changes, computed again at a change", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("v1");
  await oc.tick();
  const idle = observedRecoveryStatus(oc.ctx);
  for (let i = 0; i < 5; i++) await oc.tick();
  expect(observedRecoveryStatus(oc.ctx)).toBe(idle);
  // a new volume (its extents): computed again, idle again
  await oc.volume("v2");
  const again = observedRecoveryStatus(oc.ctx);
  expect(again).not.toBe(idle);
  await oc.tick();
  expect(observedRecoveryStatus(oc.ctx)).toBe(again);
  // an SDS stops beating: once it is down the figures are computed again and show it
  oc.sds[0]!.alive = false;
  const timeoutMs = oc.ctx.health.heartbeatTimeoutMs;
  for (let t = 0; t <= timeoutMs + 1000; t += 1000) await oc.tick();
  const down = observedRecoveryStatus(oc.ctx);
  expect(down).not.toBe(again);
  expect(down.get(oc.poolId)!.numOfDegradedExtents).toBeGreaterThan(0);
});

test("a device failure makes idle recovery figures be computed again", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("v1", { sizeGiB: 8 });
  await oc.tick();
  const idle = observedRecoveryStatus(oc.ctx);
  expect(idle.get(oc.poolId)!.numOfDegradedExtents).toBe(0);
  for (const d of oc.sds[2]!.devices) d.state = "Failed";
  await oc.tick();
  const after = observedRecoveryStatus(oc.ctx);
  expect(after).not.toBe(idle);
  expect(after.get(oc.poolId)!.numOfDegradedExtents).toBeGreaterThan(0);
});

test("poolUsages on the active MDM (placement view, kept sums) equals the standby's store read", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("a", { sizeGiB: 8 });
  await oc.volume("b", { sizeGiB: 4, thick: true, map: false });
  for (const s of oc.sds) s.devices[0]!.usedBytes = 3 * 2 ** 30;
  oc.sds[1]!.devices[0]!.state = "Failed";
  await oc.tick();
  const active = poolUsages(oc.ctx);
  const meta = oc.ctx.meta;
  const isLeader = meta.isLeader.bind(meta);
  meta.isLeader = () => false;
  try {
    expect(observeStamp(oc.ctx)).toBeNull();
    expect(poolUsages(oc.ctx)).toEqual(active);
  } finally {
    meta.isLeader = isLeader;
  }
  expect(active[0]!.thinAllocatedNetBytes).toBe(8 * 2 ** 30);
  expect(active[0]!.failedBytes).toBeGreaterThan(0);
});
