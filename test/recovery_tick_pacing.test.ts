// The recovery step's pacing (src/mdm/recovery/tick_pacing.ts): cheap steps run at every tick; a
// dear one makes the next wait for its cost / SHARE unless the cluster's signature (SDS states,
// failed devices) changed. Times are given, not measured. The signature itself:
// HealthTracker.sdsStatesSignature changes with any SDS's state.

import { expect, test } from "bun:test";
import { HealthTracker } from "../src/mdm/core/health.ts";
import { PACE_FROM_MS, RecoveryPacer, SHARE } from "../src/mdm/recovery/tick_pacing.ts";

test("cheap steps run at every tick, whatever the signature", () => {
  const p = new RecoveryPacer();
  for (let t = 0; t < 10_000; t += 250) {
    expect(p.due(t, "same")).toBe(true);
    p.ran(t, PACE_FROM_MS - 1, "same");
  }
  expect(p.skipped).toBe(0);
});

test("after a dear step the next waits for its cost / SHARE, unless the signature changed", () => {
  const p = new RecoveryPacer();
  const cost = 4000; // 100 SDSs down at 100,000 volumes
  expect(p.due(0, "a")).toBe(true);
  p.ran(0, cost, "a");
  const end = cost;
  const wait = cost / SHARE;
  for (let t = end + 250; t < end + wait; t += 250) expect(p.due(t, "a")).toBe(false);
  expect(p.skipped).toBe(Math.ceil(wait / 250) - 1);
  // an SDS changed state meanwhile: at once
  expect(p.due(end + 500, "b")).toBe(true);
  p.ran(end + 500, cost, "b");
  // the wait has passed: the step runs again (time-driven decisions: grace periods, next copies)
  expect(p.due(end + 500 + cost + wait, "b")).toBe(true);
  // it got cheap: back to every tick
  p.ran(end + 500 + cost + wait, 5, "b");
  expect(p.due(end + 500 + cost + wait + 250, "b")).toBe(true);
});

test("a dear step whose cap left membership repairs (failovers) for later: the next runs at the next tick", () => {
  const p = new RecoveryPacer();
  expect(p.due(0, "a")).toBe(true);
  p.ran(0, 3000, "a", 14_000); // one loss at 100,000 volumes under etcd: 1,024 changes a step
  expect(p.due(3250, "a")).toBe(true);
  p.ran(3250, 3000, "a", 0); // every repair done: copy starts and timed decisions wait again
  expect(p.due(6500, "a")).toBe(false);
});

test("the signature taken before a long step: an SDS lost during it is answered at the next tick", () => {
  let now = 0;
  const h = new HealthTracker(() => now, 5000);
  h.sdsSeen("s1", 0);
  h.sdsSeen("s2", 0);
  const p = new RecoveryPacer();
  const before = h.sdsStatesSignature();
  expect(p.due(0, before)).toBe(true);
  // the step runs 6 s; s2's deadline (5 s) passes during it, s1 beats
  now = 6000;
  h.sdsSeen("s1", 0);
  p.ran(0, 6000, before);
  const after = h.sdsStatesSignature();
  expect(after).not.toBe(before);
  expect(p.due(6250, after)).toBe(true);
});

test("the SDS signature changes with any SDS's state, and not while nothing changes", () => {
  let now = 0;
  const h = new HealthTracker(() => now, 5000);
  h.seedAll(["a", "b", "c"], []);
  const seeded = h.sdsStatesSignature();
  expect(seeded).toBe("3:ccc");
  h.sdsSeen("b", 0); // heard: confirmed
  expect(h.sdsStatesSignature()).toBe("3:cCc");
  now = 1000;
  h.sdsSeen("b", 0);
  expect(h.sdsStatesSignature()).toBe("3:cCc");
  now = 5500; // a and c never beat: down; b beat at 1000: still connected
  expect(h.sdsStatesSignature()).toBe("3:dCd");
  h.forgetSds("c");
  expect(h.sdsStatesSignature()).toBe("2:dC");
});

test("the recovery signature (main.ts's pacer) changes when a device fails or comes back, from the placement view", async () => {
  const { MdmFixture } = await import("./mdm_fixture.ts");
  const { recoverySignature } = await import("../src/mdm/recovery/recovery_view.ts");
  const m = await MdmFixture.open();
  try {
    const joined = await m.joinSds("sds1");
    const ctx = m.core.ctx;
    const devices = ctx.store.sqlite.query<{ id: string }, [string]>("SELECT id FROM device WHERE sds_id = ? ORDER BY rowid").all(joined.sdsId);
    expect(devices.length).toBeGreaterThan(0);
    const beat = async (state: string) => {
      const body = { devices: devices.map((d, i) => ({ deviceId: d.id, state: i === 0 ? state : "Normal", usedBytes: 0 })), appliedMapVersion: 0 };
      expect((await m.cluster("POST", `/sds/${joined.sdsId}/heartbeat`, body)).status).toBe(200);
    };
    await beat("Normal");
    const normal = recoverySignature(ctx);
    expect(recoverySignature(ctx)).toBe(normal);
    await beat("Failed");
    const failed = recoverySignature(ctx);
    expect(failed).not.toBe(normal);
    expect(failed).toContain(devices[0]!.id);
    await beat("Normal");
    expect(recoverySignature(ctx)).toBe(normal);
  } finally {
    m.close();
  }
});
