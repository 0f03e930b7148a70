// Heartbeat answers move a node's mapVersion only when a change concerns it (core/health.ts
// mapVersionFor): a new volume concerns the SDSs holding its extents, a new mapping the one SDC,
// an unmap (or a switch to ReadOnly) that SDC and the SDSs holding the volume (grant floors),
// a recovery change the SDSs holding a copy of a changed extent before or after and the SDCs
// mapping its volume; anything else (a join, an SDS removal) every node. A node behind on a change that concerns
// it is always told the current version, whatever happened after.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { HeartbeatResponse, SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { HealthTracker } from "../src/mdm/core/health.ts";
import { MdmFixture } from "./mdm_fixture.ts";
import { recoveryTick } from "../src/mdm/recovery/recovery.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterEach(() => m.close());

async function beat(kind: "sds" | "sdc", id: string, applied: number): Promise<number> {
  const r = await m.cluster("POST", `/${kind}/${id}/heartbeat`, kind === "sds" ? { devices: [], appliedMapVersion: applied } : { appliedMapVersion: applied });
  expect(r.status).toBe(200);
  return HeartbeatResponse.parse(r.json).mapVersion;
}

async function assignments(sdsId: string): Promise<{ mapVersion: number; extents: number }> {
  const a = SdsAssignmentsResponse.parse((await m.cluster("GET", `/sds/${sdsId}/assignments`)).json);
  return { mapVersion: a.mapVersion, extents: a.extents.length };
}

describe("map change scopes", () => {
  test("a new volume moves only its holders; a mapping only its SDC; an unmap its holders and that SDC", async () => {
    // 40 SDSs and a 1 GiB volume of 16 extents x 2 copies: at least 8 SDSs hold none of it
    const sds: string[] = [];
    for (let i = 1; i <= 40; i++) sds.push((await m.joinSds(`sds${i}`)).sdsId);
    const sdcA = await m.joinSdc("guid-a");
    const sdcB = await m.joinSdc("guid-b");
    // every node catches up with the joins (a join concerns everyone: SDS addresses)
    const applied = new Map<string, number>();
    for (const id of sds) applied.set(id, (await assignments(id)).mapVersion);
    const sdcVersion = await beat("sdc", sdcA, 0);
    expect(await beat("sdc", sdcB, 0)).toBe(sdcVersion);
    for (const id of sds) expect(await beat("sds", id, applied.get(id)!)).toBe(applied.get(id)!);

    const pool = await m.idOf("StoragePool", "sp1");
    const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })).json as { id: string }).id;
    let holders = 0;
    const holderIds = new Set<string>();
    for (const id of sds) {
      const told = await beat("sds", id, applied.get(id)!);
      const now = await assignments(id);
      if (told === applied.get(id)) {
        // told to keep its assignments: they must indeed be the same as before (none of v1)
        expect(now.extents).toBe(0);
      } else {
        expect(told).toBe(now.mapVersion);
        expect(now.extents).toBeGreaterThan(0);
        holders++;
        holderIds.add(id);
        applied.set(id, now.mapVersion);
      }
    }
    expect(holders).toBeGreaterThanOrEqual(2);
    expect(holders).toBeLessThan(sds.length);
    // no SDC is concerned by a volume mapped to none
    expect(await beat("sdc", sdcA, sdcVersion)).toBe(sdcVersion);
    expect(await beat("sdc", sdcB, sdcVersion)).toBe(sdcVersion);

    // a mapping: SDC A only
    expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: sdcA, accessMode: "ReadWrite" })).status).toBe(200);
    const toA = await beat("sdc", sdcA, sdcVersion);
    expect(toA).toBeGreaterThan(sdcVersion);
    expect(await beat("sdc", sdcB, sdcVersion)).toBe(sdcVersion);
    for (const id of sds) expect(await beat("sds", id, applied.get(id)!)).toBe(applied.get(id)!);
    // SDC A, still at its old version, is told again until it applies (never skipped)
    expect(await beat("sdc", sdcA, sdcVersion)).toBe(toA);
    expect(await beat("sdc", sdcA, toA)).toBe(toA);

    // an unmap reaches the SDSs holding the volume (they check its grants: new floors) and the
    // SDC that loses it; the other SDSs and SDCs keep what they have
    expect((await m.api("POST", `/instances/Volume::${vol}/action/removeMappedSdc`, { sdcId: sdcA })).status).toBe(200);
    for (const id of sds) {
      const told = await beat("sds", id, applied.get(id)!);
      if (holderIds.has(id)) expect(told).toBeGreaterThan(applied.get(id)!);
      else expect(told).toBe(applied.get(id)!);
    }
    expect(await beat("sdc", sdcA, toA)).toBeGreaterThan(toA);
    expect(await beat("sdc", sdcB, sdcVersion)).toBe(sdcVersion);
  });

  test("a recovery change moves the SDSs holding a copy of a changed extent, before or after, and the SDCs mapping its volume", async () => {
    m.close();
    m = await MdmFixture.open({ recovery: { rebuildGraceMs: 0 } });
    await m.login();
    const sds: string[] = [];
    for (let i = 1; i <= 40; i++) sds.push((await m.joinSds(`sds${i}`)).sdsId);
    const sdcA = await m.joinSdc("guid-a");
    const sdcB = await m.joinSdc("guid-b");
    const pool = await m.idOf("StoragePool", "sp1");
    const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })).json as { id: string }).id;
    expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: sdcA, accessMode: "ReadWrite" })).status).toBe(200);
    // every node catches up
    const applied = new Map<string, number>();
    const holders = new Set<string>();
    for (const id of sds) {
      const a = await assignments(id);
      applied.set(id, a.mapVersion);
      if (a.extents > 0) holders.add(id);
    }
    const versionA = await beat("sdc", sdcA, 0);
    const versionB = await beat("sdc", sdcB, 0);
    // one holder goes silent past the heartbeat timeout; the others beat on
    const victim = [...holders][0]!;
    const ctx = m.core.ctx;
    m.clock.advance(ctx.health.heartbeatTimeoutMs + 1);
    for (const id of sds) if (id !== victim) expect(await beat("sds", id, applied.get(id)!)).toBe(applied.get(id)!);
    expect(await beat("sdc", sdcA, versionA)).toBe(versionA);
    expect(await beat("sdc", sdcB, versionB)).toBe(versionB);
    // its copies fail over and are rebuilt elsewhere (grace period 0): one step
    const rowsOf = () =>
      ctx.store.sqlite
        .query<{ idx: number; p: string; s: string | null; t: string | null }, [string]>("SELECT idx, primary_sds_id AS p, secondary_sds_id AS s, target_sds_id AS t FROM extent WHERE volume_id = ?")
        .all(vol);
    const changedIdx = new Set(rowsOf().filter((r) => r.p === victim || r.s === victim).map((r) => r.idx));
    const step = recoveryTick(ctx);
    expect(step.changed).toBe(changedIdx.size);
    // the holders of the changed extents after the step (their new targets among them)
    const concerned = new Set<string>();
    for (const r of rowsOf()) if (changedIdx.has(r.idx)) for (const x of [r.p, r.s, r.t]) if (x !== null) concerned.add(x);
    let unconcerned = 0;
    for (const id of sds) {
      if (id === victim) continue;
      const told = await beat("sds", id, applied.get(id)!);
      if (concerned.has(id)) expect(told).toBeGreaterThan(applied.get(id)!);
      else {
        expect(told).toBe(applied.get(id)!);
        // told to keep its assignments: one that held nothing of v1 still holds nothing
        if (!holders.has(id)) expect((await assignments(id)).extents).toBe(0);
        unconcerned++;
      }
    }
    expect(unconcerned).toBeGreaterThan(0);
    // the SDC mapping the volume refetches (epochs, in-sync copies); the other keeps its map
    expect(await beat("sdc", sdcA, versionA)).toBeGreaterThan(versionA);
    expect(await beat("sdc", sdcB, versionB)).toBe(versionB);
  });

  test("a new tracker (MDM start, HA takeover) treats every change so far as concerning everyone", () => {
    const h = new HealthTracker(() => 0);
    // nothing recorded: a node behind the current version is told it, one at it keeps it
    expect(h.mapVersionFor("sds", "a", 5, 9)).toBe(9);
    expect(h.mapVersionFor("sds", "a", 9, 9)).toBe(9);
    h.noteMapChange(10, { sds: ["b"], sdc: [] });
    expect(h.mapVersionFor("sds", "a", 9, 10)).toBe(9);
    expect(h.mapVersionFor("sds", "b", 9, 10)).toBe(10);
    expect(h.mapVersionFor("sdc", "b", 9, 10)).toBe(9);
    h.noteMapChange(11);
    expect(h.mapVersionFor("sds", "a", 9, 11)).toBe(11);
    expect(h.mapVersionFor("sdc", "x", 10, 11)).toBe(11);
    // a version ahead of the MDM's (another cluster's) is answered with the MDM's own
    expect(h.mapVersionFor("sds", "a", 12, 11)).toBe(11);
  });
});
