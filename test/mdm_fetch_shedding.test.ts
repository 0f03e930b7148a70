// Heartbeats ahead of fetches (src/mdm/cluster/fetch_shedding.ts): while the MDM's event loop
// keeps running late, assignment and map fetches are refused with 429, a Retry-After and an
// "MDM busy ... retry after <n> ms" message naming the node's turn (served then, busy or not);
// heartbeats are always answered. One long task alone sheds nothing.

import { afterEach, beforeEach, expect, test } from "bun:test";
import { busyRetryMs } from "../src/proto/cluster_api.ts";
import { FETCH_SHARE, fetchesShed, noteFetchCost, resetFetchCostForTests, startLagProbe, timedFetch, turnGapMs } from "../src/mdm/cluster/fetch_shedding.ts";
import { PfError } from "../src/proto/errors.ts";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
  startLagProbe(); // as runMdm does
});
afterEach(() => m.close());

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // the MDM is behind: every turn of its loop runs late
  }
}

test("a busy MDM sheds fetches (429 + retry-after), serves each node at its turn, and never refuses a heartbeat", async () => {
  const { sdsId } = await m.joinSds("sds1");
  const sdc = await m.joinSdc("guid-1");
  // a single long stall: nothing is shed once the loop is idle again
  busyWait(400);
  await Bun.sleep(700);
  expect((await m.cluster("GET", `/sds/${sdsId}/assignments`)).status).toBe(200);

  // a backlog: every 20 ms, 180 ms of work
  const hog = setInterval(() => busyWait(180), 20);
  try {
    await Bun.sleep(1500);
    const before = fetchesShed();
    const res = await m.core.app.request(`/pf/v1/sds/${sdsId}/assignments`, { method: "GET", headers: await clusterHeaders(sdsId) });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as { pfCode: "INVALID_STATE"; message: string };
    const err = new PfError(body.pfCode, body.message);
    const ms = busyRetryMs(err);
    expect(ms).not.toBeNull();
    expect(ms!).toBeGreaterThanOrEqual(500);
    expect(ms!).toBeLessThanOrEqual(1500);
    expect(fetchesShed()).toBe(before + 1);
    // early: refused again, same turn; at its turn it is served though the MDM is still behind
    const early = await m.cluster("GET", `/sds/${sdsId}/assignments`);
    expect(early.status).toBe(429);
    expect(busyRetryMs(new PfError("INVALID_STATE", (early.json as { message: string }).message))!).toBeLessThanOrEqual(ms!);
    await Bun.sleep(ms!);
    expect((await m.cluster("GET", `/sds/${sdsId}/assignments`)).status).toBe(200);
    // heartbeats are never shed
    for (let i = 0; i < 3; i++) expect((await m.cluster("POST", `/sds/${sdsId}/heartbeat`, { devices: [], appliedMapVersion: 0 })).status).toBe(200);
    expect((await m.cluster("POST", `/sdc/${sdc}/heartbeat`, { appliedMapVersion: 0 })).status).toBe(200);
    // an SDC's map fetch is shed the same way, its turn after the SDS's
    const r2 = await m.cluster("GET", `/sdc/${sdc}/maps`);
    expect(r2.status).toBe(429);
    await Bun.sleep(busyRetryMs(new PfError("INVALID_STATE", (r2.json as { message: string }).message))!);
    expect((await m.cluster("GET", `/sdc/${sdc}/maps`)).status).toBe(200);
  } finally {
    clearInterval(hog);
  }
  await Bun.sleep(1000);
  expect((await m.cluster("GET", `/sdc/${sdc}/maps`)).status).toBe(200);
}, 30_000);

/** The status of the fetch once the MDM sheds it (asked every 100 ms for up to withinMs; a 200 is a served fetch). */
async function untilShed(path: string, withinMs = 10_000): Promise<number> {
  const until = performance.now() + withinMs;
  for (;;) {
    const r = await m.cluster("GET", path);
    if (r.status === 429 || performance.now() > until) return r.status;
    await Bun.sleep(Math.min(100, withinMs / 8));
  }
}

async function clusterHeaders(sdsId: string): Promise<Record<string, string>> {
  const { CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER } = await import("../src/proto/cluster_api.ts");
  const { nodeTokenOf } = await import("../src/mdm/core/dataplane_secrets.ts");
  const { NodeRole } = await import("../src/proto/dataplane_auth.ts");
  const { SECRET } = await import("./mdm_fixture.ts");
  return { [CLUSTER_SECRET_HEADER]: SECRET, [NODE_TOKEN_HEADER]: nodeTokenOf(m.core.ctx, NodeRole.SDS, sdsId) };
}

test("an urgent fetch is never shed: a pending unmap's maps and grant floors, and a node's own urgent=1 once a second", async () => {
  const sds = (await m.joinSds("sds1")).sdsId;
  const sds2 = (await m.joinSds("sds2")).sdsId;
  await m.joinSds("sds3");
  const sdc = await m.joinSdc("guid-1");
  const pool = await m.idOf("StoragePool", "sp1");
  const vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })).json as { id: string }).id;
  expect((await m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId: sdc, accessMode: "ReadWrite" })).status).toBe(200);
  // (served at once, or at its turn if the probe still sees the previous test's load)
  const served = async (path: string) => {
    for (let i = 0; ; i++) {
      const r = await m.cluster("GET", path);
      if (r.status === 200 || i >= 50) return r.json as { mapVersion: number };
      await Bun.sleep(200);
    }
  };
  const mapped = (await served(`/sdc/${sdc}/maps`)).mapVersion;
  const sdsVersion = (await served(`/sds/${sds}/assignments`)).mapVersion;
  // both caught up
  expect((await m.cluster("POST", `/sdc/${sdc}/heartbeat`, { appliedMapVersion: mapped })).status).toBe(200);
  expect((await m.cluster("POST", `/sds/${sds}/heartbeat`, { devices: [], appliedMapVersion: sdsVersion })).status).toBe(200);
  const hog = setInterval(() => busyWait(180), 20);
  try {
    await Bun.sleep(1500);
    // behind: an ordinary fetch waits for a turn (on a loaded host the probe may take longer to see it)
    expect(await untilShed(`/sdc/${sdc}/maps`)).toBe(429);
    expect(await untilShed(`/sds/${sds}/assignments`)).toBe(429);
    // an unmap takes access away: the SDC's maps and the SDSs' grant floors are served at once
    expect((await m.api("POST", `/instances/Volume::${vol}/action/removeMappedSdc`, { sdcId: sdc })).status).toBe(200);
    const r = await m.cluster("GET", `/sdc/${sdc}/maps`);
    expect(r.status).toBe(200);
    const unmapped = (r.json as { mapVersion: number; volumes: unknown[] }).mapVersion;
    expect((r.json as { volumes: unknown[] }).volumes).toHaveLength(0);
    expect((await m.cluster("GET", `/sds/${sds}/assignments`)).status).toBe(200);
    // once the SDC says it applies that version, its fetches wait for turns again
    expect((await m.cluster("POST", `/sdc/${sdc}/heartbeat`, { appliedMapVersion: unmapped })).status).toBe(200);
    expect(await untilShed(`/sdc/${sdc}/maps`)).toBe(429);
    // the node's own urgent ask (an epoch hold, a fence in doubt): served at once, but not twice
    // within a second (sds2: no turn of its own yet, and the unmap applied)
    expect((await m.cluster("POST", `/sds/${sds2}/heartbeat`, { devices: [], appliedMapVersion: unmapped })).status).toBe(200);
    expect((await m.cluster("GET", `/sds/${sds2}/assignments?urgent=1`)).status).toBe(200);
    // (asked again within the second: no longer urgent, so shed whenever the probe says behind)
    const t1 = performance.now();
    const second = await untilShed(`/sds/${sds2}/assignments?urgent=1`, 800);
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(second).toBe(429);
    // a bad flag value is a clear 400, not a crash
    expect((await m.cluster("GET", `/sds/${sds}/assignments?urgent=yes`)).status).toBe(400);
  } finally {
    clearInterval(hog);
  }
}, 60_000);

test("turns are spaced by what a served fetch costs: at most FETCH_SHARE of a core on fetches", () => {
  resetFetchCostForTests();
  const fixedGap = turnGapMs();
  // cheap fetches (deltas): the fixed rate
  for (let i = 0; i < 30; i++) noteFetchCost(1);
  expect(turnGapMs()).toBe(fixedGap);
  // full answers of ~80 ms (an SDS's 3,200 copies at 100,000 volumes): one turn per 80 / share ms
  for (let i = 0; i < 60; i++) noteFetchCost(80);
  expect(turnGapMs()).toBeGreaterThan(fixedGap);
  expect(turnGapMs()).toBeCloseTo(80 / FETCH_SHARE, 0);
  // timedFetch measures the answer it builds
  const out = timedFetch(() => {
    const t0 = performance.now();
    while (performance.now() - t0 < 5);
    return "answer";
  });
  expect(out).toBe("answer");
  expect(turnGapMs()).toBeLessThan(80 / FETCH_SHARE);
  // an outlier counts as at most 200 ms, and turns are never more than 500 ms apart: the queue moves
  resetFetchCostForTests();
  noteFetchCost(5000);
  expect(turnGapMs()).toBe(500);
  for (let i = 0; i < 60; i++) noteFetchCost(1);
  expect(turnGapMs()).toBe(fixedGap);
  resetFetchCostForTests();
  expect(turnGapMs()).toBe(fixedGap);
});
