// The mapWatch long poll (cluster_service.ts mapWatch, core/health.ts waitForMapChange) and its
// node side (proto/map_watch.ts): a watch is answered as soon as a change concerns its node
// and takes access away (an unmap: that SDC and the SDSs holding the volume); a change that does
// not (a mapping) and changes of other nodes leave it held to waitMs, which then answers what a
// heartbeat would (moved or "nothing new"); an MDM close answers every watch. FreshRun never hands a caller a fetch that
// began before it called.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { MapWatchResponse } from "../src/proto/cluster_api.ts";
import { FreshRun } from "../src/proto/map_watch.ts";
import { HealthTracker } from "../src/mdm/core/health.ts";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

/** Start a watch; resolves with the answered version and how long it was held. */
function watch(kind: "sds" | "sdc", id: string, after: number, waitMs: number): Promise<{ mapVersion: number; heldMs: number; status: number }> {
  const t0 = performance.now();
  return m.cluster("GET", `/${kind}/${id}/mapWatch?after=${after}&waitMs=${waitMs}`).then((r) => ({
    status: r.status,
    mapVersion: r.status === 200 ? MapWatchResponse.parse(r.json).mapVersion : -1,
    heldMs: performance.now() - t0,
  }));
}

async function settled<T>(p: Promise<T>, withinMs: number): Promise<T | "pending"> {
  return Promise.race([p, Bun.sleep(withinMs).then(() => "pending" as const)]);
}

describe("mapWatch long poll", () => {
  test("answered at a change for the node, held for others' changes, 'nothing new' at waitMs", async () => {
    const sds = (await m.joinSds("sds1")).sdsId;
    await m.joinSds("sds2");
    await m.joinSds("sds3");
    const sdcA = await m.joinSdc("guid-a");
    const sdcB = await m.joinSdc("guid-b");
    const pool = await m.idOf("StoragePool", "sp1");
    const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })).json as { id: string }).id;
    const now = ((await m.cluster("GET", `/sdc/${sdcA}/maps`)).json as { mapVersion: number }).mapVersion;
    const sdsNow = ((await m.cluster("GET", `/sds/${sds}/assignments`)).json as { mapVersion: number }).mapVersion;

    // caught up, nothing changes: answered at waitMs with the same version
    const idle = await watch("sdc", sdcA, now, 300);
    expect(idle.mapVersion).toBe(now);
    expect(idle.heldMs).toBeGreaterThanOrEqual(250);

    // a mapping to SDC A is not urgent (it gives access, heartbeats bring it): A's watch stays
    // held, and at its end says that A's maps moved; B's and the SDS's say nothing new
    const wA = watch("sdc", sdcA, now, 1500);
    const wB = watch("sdc", sdcB, now, 4000);
    const wS = watch("sds", sds, sdsNow, 4000);
    await Bun.sleep(50);
    expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: sdcA, accessMode: "ReadWrite" })).status).toBe(200);
    expect(await settled(wA, 300)).toBe("pending");
    const a = await wA;
    expect(a.mapVersion).toBeGreaterThan(now);
    expect(a.heldMs).toBeGreaterThanOrEqual(1400);
    expect(await settled(wB, 10)).toBe("pending");
    expect(await settled(wS, 10)).toBe("pending");

    // an unmap is urgent (it takes access away) and concerns the SDC losing the volume and the
    // SDSs holding it (grant floors; these 3 SDSs hold all of a 1 GiB volume's 16 x 2 copies):
    // their watches are answered at once, B's not
    const wA2 = watch("sdc", sdcA, a.mapVersion, 4000);
    await Bun.sleep(50);
    const t0 = performance.now();
    expect((await m.api("POST", `/instances/Volume::${vol}/action/removeMappedSdc`, { sdcId: sdcA })).status).toBe(200);
    const [a2, s] = await Promise.all([wA2, wS]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(a2.mapVersion).toBeGreaterThan(a.mapVersion);
    expect(s.mapVersion).toBeGreaterThan(sdsNow);
    const b = await wB; // held to its end: nothing for B
    expect(b.mapVersion).toBe(now);
    expect(b.heldMs).toBeGreaterThanOrEqual(3500);

    // a node behind is answered at once, without waiting
    const behind = await watch("sds", sds, sdsNow, 4000);
    expect(behind.mapVersion).toBeGreaterThan(sdsNow);
    expect(behind.heldMs).toBeLessThan(1000);
  });

  test("bad queries, unknown nodes and a wrong token are refused; close answers held watches", async () => {
    const sds = (await m.joinSds("sds1")).sdsId;
    expect((await m.cluster("GET", `/sds/${sds}/mapWatch?after=-1&waitMs=10`)).status).toBe(400);
    expect((await m.cluster("GET", `/sds/${sds}/mapWatch?after=0&waitMs=999999`)).status).toBe(400);
    expect((await m.cluster("GET", `/sds/${sds}/mapWatch`)).status).toBe(400);
    expect((await m.cluster("GET", `/sds/${sds}/mapWatch?after=0&waitMs=10`, undefined, undefined, "not-the-token")).status).toBe(401);
    expect((await m.cluster("GET", `/sds/${sds}/mapWatch?after=0&waitMs=10`, undefined, undefined, null)).status).toBe(401);
    const cur = ((await m.cluster("GET", `/sds/${sds}/assignments`)).json as { mapVersion: number }).mapVersion;
    const held = watch("sds", sds, cur, 4000);
    await Bun.sleep(50);
    m.core.ctx.health.releaseWaiters();
    const r = await held;
    expect(r.mapVersion).toBe(cur);
    expect(r.heldMs).toBeLessThan(1000);
  });
});

describe("HealthTracker.waitForMapChange", () => {
  test("an urgent scoped change wakes only its nodes, a change that is not wakes none; a newer wait of a node ends the older one", async () => {
    const h = new HealthTracker(Date.now);
    const states: string[] = [];
    const w1 = h.waitForMapChange("sds", "a", 5000).then(() => states.push("a"));
    const w2 = h.waitForMapChange("sds", "b", 5000).then(() => states.push("b"));
    h.noteMapChange(6, { sds: ["a"], sdc: [] }); // not urgent: no one woken
    await Bun.sleep(20);
    expect(states).toEqual([]);
    h.noteMapChange(7, { sds: ["a"], sdc: [] }, true);
    await w1;
    expect(states).toEqual(["a"]);
    // a second watch of b ends the first
    const w3 = h.waitForMapChange("sds", "b", 5000).then(() => states.push("b2"));
    await w2;
    expect(states).toEqual(["a", "b"]);
    h.noteMapChange(8, undefined, true); // unscoped and urgent: everyone
    await w3;
    expect(states).toEqual(["a", "b", "b2"]);
  });
});

describe("FreshRun", () => {
  test("a call during a run gets the next run (shared), never the one under way", async () => {
    let started = 0;
    const gates: (() => void)[] = [];
    const run = new FreshRun(() => {
      started++;
      return new Promise<void>((resolve) => gates.push(resolve));
    });
    const first = run.run();
    expect(started).toBe(1);
    let secondDone = false;
    const second = run.run().then(() => (secondDone = true));
    const third = run.run();
    expect(started).toBe(1); // queued behind the first, and shared
    gates[0]!();
    await first;
    await Bun.sleep(0);
    expect(started).toBe(2);
    expect(secondDone).toBe(false); // the first run's end does not answer a later caller
    gates[1]!();
    await Promise.all([second, third]);
    expect(started).toBe(2);
    // a failed run does not stop the queued one
    const failing = new FreshRun(async () => {
      started++;
      if (started === 3) throw new Error("boom");
    });
    const f1 = failing.run();
    const f2 = failing.run();
    await expect(f1).rejects.toThrow("boom");
    await f2;
    expect(started).toBe(4);
  });
});
