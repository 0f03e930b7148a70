// An SDS whose host rebooted (not just its process) lost whatever sat only in its page cache:
// writes that were acknowledged but not yet flushed. When it rejoins and says so, none of its
// copies may serve as a resync base: its away copies are dropped and rebuilt in full, and its
// in-sync copies leave the in-sync set wherever another complete copy exists.

import { afterEach, expect, test } from "bun:test";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

const TIMEOUT = 2000;
const GRACE = 10_000;
let c: RecoveryCluster;
afterEach(() => c?.close());

async function fourSds(): Promise<RecoveryCluster> {
  c = await RecoveryCluster.open({ recovery: { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE, stallTimeoutMs: 5000 } });
  for (let i = 1; i <= 4; i++) await c.addSds(`sds${i}`);
  return c;
}

test("back within the grace period after a host reboot: full rebuild, never a resync", async () => {
  await fourSds();
  await c.createVolume("v1", 1);
  const sds2 = c.id("sds2");
  const mine = c.extents().filter((e) => e.inSync.some((x) => x.sdsId === sds2));
  expect(mine.length).toBeGreaterThan(0);
  c.alive.delete("sds2");
  await c.advance(TIMEOUT + 3000);
  expect(c.extents().filter((e) => e.away?.sdsId === sds2).length).toBe(mine.length);
  await c.m.joinSds("sds2", { hostRebooted: true });
  c.alive.add("sds2");
  expect(c.extents().filter((e) => e.away?.sdsId === sds2)).toEqual([]);
  await c.advance(1000);
  for (const e of c.extents()) if (e.target) expect(e.target.mode).toBe("full");
  await c.settle();
  for (const e of c.extents()) expect(e.inSync.length).toBe(2);
});

test("a host that rebooted faster than the heartbeat timeout leaves the in-sync set at once", async () => {
  await fourSds();
  await c.createVolume("v1", 1);
  const sds3 = c.id("sds3");
  const mine = c.extents().filter((e) => e.inSync.some((x) => x.sdsId === sds3));
  await c.m.joinSds("sds3", { hostRebooted: true });
  const now = new Map(c.extents().map((e) => [`${e.volumeId}/${e.idx}`, e]));
  for (const e of mine) {
    const after = now.get(`${e.volumeId}/${e.idx}`)!;
    expect(after.inSync.map((x) => x.sdsId)).not.toContain(sds3);
    expect(after.epoch).toBe(e.epoch + 1);
  }
  await c.settle();
  for (const e of c.extents()) expect(e.inSync.length).toBe(2);
});

test("a rebooted host's copies leave while moves run: each move is settled (a rebuild, or dropped when its source left), none is left running", async () => {
  await fourSds();
  await c.createVolume("v1", 1);
  const leaving = c.id("sds4");
  expect((await c.m.api("POST", `/instances/Sds::${leaving}/action/removeSds`, {})).status).toBe(200);
  c.tick();
  const moves = c.extents().filter((e) => e.target?.replacesSdsId === leaving);
  expect(moves.length).toBeGreaterThan(0);
  // the staying copy of each move is on the rebooted SDS (drop it), or it is the primary (source)
  const staying = moves[0]!.inSync.find((x) => x.sdsId !== leaving)!.sdsId;
  const name = c.byId(staying).name;
  await c.m.joinSds(name, { hostRebooted: true });
  for (const e of c.extents()) {
    if (!moves.some((m) => m.volumeId === e.volumeId && m.idx === e.idx)) continue;
    const before = moves.find((m) => m.volumeId === e.volumeId && m.idx === e.idx)!;
    if (!before.inSync.some((x) => x.sdsId === staying)) continue;
    expect(e.inSync.map((x) => x.sdsId)).toEqual([leaving]);
    if (before.inSync[0]!.sdsId === staying) expect(e.target).toBeNull(); // its source left
    else expect(e.target).toMatchObject({ sdsId: before.target!.sdsId, replacesSdsId: null });
  }
  await c.settle();
  expect(((await c.m.api("GET", `/instances/Sds::${leaving}`)).json as { pfCode: string }).pfCode).toBe("NOT_FOUND");
  for (const e of c.extents()) expect(e.inSync.length).toBe(2);
});
