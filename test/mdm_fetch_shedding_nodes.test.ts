// The nodes' side of fetch shedding (src/mdm/cluster/fetch_shedding.ts), against a fake MDM over
// loopback http: an SDC whose map fetch was shed keeps heartbeating while it waits for its turn
// (as the SDS does), an SDS drops its held assignments after a fetch error that is not a
// transport failure (the next fetch asks for the full list, not a delta on a base that may be
// stale), keeps them after a busy answer, and marks the fetch urgent after an epoch hold asked;
// and neither node's beat waits more than one interval for a slow fetch (no lease from it).

import { afterEach, expect, test } from "bun:test";
import { CLUSTER_API_PREFIX, MDM_BUSY_PREFIX } from "../src/proto/cluster_api.ts";
import { TlsDrift } from "../src/proto/dataplane_tls.ts";
import { SdcNode, type SdsLinks } from "../src/sdc/sdc_node.ts";
import { MdmSession } from "../src/sds/main.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { assignmentsFor, startNode, tmpDir } from "./sds_harness.ts";

type Handler = (req: Request, url: URL) => Response | Promise<Response>;
let server: ReturnType<typeof Bun.serve> | null = null;
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  server?.stop(true);
  server = null;
  for (const c of cleanups.splice(0)) await c();
});

function fakeMdm(handler: Handler): string {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => handler(req, new URL(req.url)) });
  return `http://127.0.0.1:${server.port}`;
}
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const busy = (ms: number) => json({ pfCode: "INVALID_STATE", message: `${MDM_BUSY_PREFIX}: requests queue; fetch refused, retry after ${ms} ms` }, 429);
const KEY = { kid: 1, key: "ab".repeat(32) };

test("an SDC whose map fetch was shed keeps heartbeating until its turn, and starts no second fetch meanwhile", async () => {
  const sdcId = "c000000000000001";
  let beats = 0;
  let fetches = 0;
  let served = false;
  const turnAt = performance.now() + 2500; // the turn is 2.5 s away: 10 heartbeat intervals of 250 ms
  const url = fakeMdm((req, u) => {
    if (u.pathname === `${CLUSTER_API_PREFIX}/sdc/${sdcId}/heartbeat`) {
      beats++;
      return json({ term: 0, mapVersion: 7, leaseMs: 5000 });
    }
    if (u.pathname === `${CLUSTER_API_PREFIX}/sdc/${sdcId}/maps`) {
      fetches++;
      const left = Math.ceil(turnAt - performance.now());
      if (left > 0) return busy(Math.min(left, 500));
      served = true;
      return json({ term: 0, mapVersion: 7, nodeKeys: [KEY], volumes: [], sds: [] });
    }
    return json({ message: "no such path" }, 404);
  });
  const links: SdsLinks = { setAddress: () => undefined, retain: () => undefined, link: () => undefined, close: () => undefined };
  const sdc = new SdcNode({ mdm: { url }, sdcId, links, onUnexport: () => undefined, sleep: Bun.sleep, nowMs: () => performance.now() });
  cleanups.push(() => sdc.close());
  // a heartbeat loop as src/sdc/main.ts runs it (every 250 ms); each beat must return promptly
  const beatMs: number[] = [];
  const until = performance.now() + 3500;
  while (performance.now() < until) {
    const t0 = performance.now();
    await sdc.heartbeat();
    beatMs.push(performance.now() - t0);
    if (served) break;
    await Bun.sleep(250);
  }
  await sdc.refresh(); // let the fetch that waited finish (served at its turn)
  expect(served).toBe(true);
  expect(sdc.mapsStale).toBe(false);
  // beats went on while the fetch waited: ~10 in the 2.5 s to its turn (before the fix: 1, then the beat waited inside the busy retry)
  expect(beats).toBeGreaterThanOrEqual(6);
  expect(Math.max(...beatMs.slice(1))).toBeLessThan(200);
  // one fetch asked again at each retry time: ~5 x 500 ms + the served one, never one per beat
  expect(fetches).toBeLessThanOrEqual(8);
}, 20_000);

test("an SDS drops its held assignments after a non-transport fetch error, keeps them across a busy answer, and marks an epoch-hold fetch urgent", async () => {
  const dir = tmpDir("fetch-held-");
  const core: SdsCore = startNode(dir, 0);
  cleanups.push(async () => {
    await core.stop();
  });
  const sdsId = core.sdsId;
  const queries: string[] = [];
  // answers in order, one per fetch: full (log A), a refusal of the delta query, full again,
  // busy then a delta
  let version = 1;
  const script: ((u: URL) => Response)[] = [
    () => json({ ...assignmentsFor(0, [core], [], 1), copyLog: "aaaaaaaaaaaaaaaa" }),
    () => json({ pfCode: "BAD_REQUEST", message: "bad delta query" }, 400),
    () => json({ ...assignmentsFor(0, [core], [], (version = 3)), copyLog: "aaaaaaaaaaaaaaaa" }),
    () => busy(50),
    () => json({ ...assignmentsFor(0, [core], [], (version = 4)), copyLog: "aaaaaaaaaaaaaaaa", since: 3, extents: [], removed: [] }),
    () => json({ ...assignmentsFor(0, [core], [], (version = 5)), copyLog: "aaaaaaaaaaaaaaaa", since: 4, extents: [], removed: [] }),
  ];
  const url = fakeMdm((_req, u) => {
    if (u.pathname !== `${CLUSTER_API_PREFIX}/sds/${sdsId}/assignments`) return json({ message: "no such path" }, 404);
    queries.push(u.search);
    const next = script.shift();
    return next ? next(u) : json({ message: "script ended" }, 500);
  });
  const session = new MdmSession({ url }, core, 250, "inc1", new TlsDrift("sds test", false));
  await session.refreshAssignments();
  expect(core.node.appliedMapVersion).toBe(1);
  await expect(session.refreshAssignments()).rejects.toThrow(/bad delta query/);
  await session.refreshAssignments(); // after the refusal: the full list, no since=
  expect(core.node.appliedMapVersion).toBe(3);
  await session.refreshAssignments(); // busy, then the delta since 3 (held kept across the busy answer)
  expect(core.node.appliedMapVersion).toBe(4);
  core.node.onNewerEpoch?.(); // a client named a newer epoch: requests wait in an epoch hold
  await session.refreshAssignments();
  expect(core.node.appliedMapVersion).toBe(version);
  expect(queries[0]).not.toContain("since=");
  expect(queries[1]).toContain("since=1&log=aaaaaaaaaaaaaaaa");
  expect(queries[2]).not.toContain("since="); // before the fix: since=1 again, on the held answer
  expect(queries[3]).toContain("since=3");
  expect(queries[4]).toContain("since=3"); // the retry after the busy answer: still a delta
  expect(queries[3]).not.toContain("urgent=1");
  expect(queries[5]).toContain("since=4");
  expect(queries[5]).toContain("urgent=1");
}, 20_000);

test("an SDC's beat waits at most one interval for a slow map fetch (an MDM that is behind), then the next beats go out on time", async () => {
  const sdcId = "c000000000000002";
  let beats = 0;
  let fetches = 0;
  const url = fakeMdm(async (_req, u) => {
    if (u.pathname === `${CLUSTER_API_PREFIX}/sdc/${sdcId}/heartbeat`) {
      beats++;
      return json({ term: 0, mapVersion: 3, leaseMs: 5000 });
    }
    if (u.pathname === `${CLUSTER_API_PREFIX}/sdc/${sdcId}/maps`) {
      fetches++;
      await Bun.sleep(2000); // queued behind a backlog
      return json({ term: 0, mapVersion: 3, nodeKeys: [KEY], volumes: [], sds: [] });
    }
    return json({ message: "no such path" }, 404);
  });
  const links: SdsLinks = { setAddress: () => undefined, retain: () => undefined, link: () => undefined, close: () => undefined };
  const sdc = new SdcNode({ mdm: { url }, sdcId, heartbeatMs: 300, links, onUnexport: () => undefined, sleep: Bun.sleep, nowMs: () => performance.now() });
  cleanups.push(() => sdc.close());
  const t0 = performance.now();
  await sdc.heartbeat();
  const first = performance.now() - t0;
  expect(first).toBeGreaterThanOrEqual(250);
  expect(first).toBeLessThan(1000); // before: the whole 2 s of the fetch
  expect(sdc.mapsStale).toBe(true);
  await sdc.heartbeat(); // goes out while the fetch still runs
  expect(beats).toBe(2);
  await sdc.refresh();
  expect(sdc.mapsStale).toBe(false);
  expect(fetches).toBeLessThanOrEqual(2); // the one under way and at most one after it (FreshRun)
}, 20_000);

test("an SDS's beat waits at most one interval for a slow assignments fetch, and takes its lease only once it is applied", async () => {
  const dir = tmpDir("fetch-slow-");
  const core: SdsCore = startNode(dir, 1);
  cleanups.push(async () => {
    await core.stop();
  });
  const sdsId = core.sdsId;
  let fetches = 0;
  const url = fakeMdm(async (_req, u) => {
    if (u.pathname === `${CLUSTER_API_PREFIX}/sds/${sdsId}/heartbeat`) return json({ term: 0, mapVersion: 2, leaseMs: 4000 });
    if (u.pathname === `${CLUSTER_API_PREFIX}/sds/${sdsId}/assignments`) {
      fetches++;
      await Bun.sleep(2000); // queued behind a backlog
      return json({ ...assignmentsFor(1, [core], [], 2), copyLog: "bbbbbbbbbbbbbbbb" });
    }
    return json({ message: "no such path" }, 404);
  });
  const session = new MdmSession({ url }, core, 300, "inc2", new TlsDrift("sds test", false));
  const t0 = performance.now();
  await session.firstBeat();
  const took = performance.now() - t0;
  expect(took).toBeGreaterThanOrEqual(250);
  expect(took).toBeLessThan(1500); // before: the whole 2 s of the fetch
  expect(core.node.appliedMapVersion).toBe(0);
  expect(core.node.leaseRemainingMs).toBeLessThanOrEqual(0); // no lease while not caught up
  // the beat's own fetch ends: its lease is granted then, as if the beat had waited (counted from
  // the beat's send: 4 s minus the ~2 s of the fetch), so a map that keeps moving under slow
  // fetches does not leave a heard SDS without a lease
  const deadline = performance.now() + 5000;
  while (core.node.appliedMapVersion < 2 && performance.now() < deadline) await Bun.sleep(20);
  expect(core.node.appliedMapVersion).toBe(2);
  expect(fetches).toBe(1);
  await Bun.sleep(0);
  expect(core.node.leaseRemainingMs).toBeGreaterThan(1000);
  expect(core.node.leaseRemainingMs).toBeLessThanOrEqual(4000);
}, 20_000);

test("an epoch hold while the SDS's fetch waits for a distant turn asks at once with urgent=1 (it does not wait for the turn)", async () => {
  const dir = tmpDir("fetch-urgent-");
  const core: SdsCore = startNode(dir, 0);
  cleanups.push(async () => {
    await core.stop();
  });
  const sdsId = core.sdsId;
  const queries: { at: number; q: string }[] = [];
  const url = fakeMdm((_req, u) => {
    if (u.pathname !== `${CLUSTER_API_PREFIX}/sds/${sdsId}/assignments`) return json({ message: "no such path" }, 404);
    queries.push({ at: performance.now(), q: u.search });
    // a busy MDM: a plain fetch is shed with a turn 8 s away; an urgent one is served
    return u.search.includes("urgent=1") ? json({ ...assignmentsFor(0, [core], [], 2), copyLog: "cccccccccccccccc" }) : busy(8000);
  });
  const session = new MdmSession({ url }, core, 250, "inc3", new TlsDrift("sds test", false));
  const t0 = performance.now();
  const fetch = session.refreshAssignments();
  await Bun.sleep(200); // shed: sleeping until its turn
  expect(queries.length).toBe(1);
  core.node.onNewerEpoch?.(); // a client named a newer epoch: requests wait in an epoch hold
  await fetch;
  expect(core.node.appliedMapVersion).toBe(2);
  expect(performance.now() - t0).toBeLessThan(2000); // before: the 8 s turn, then the urgent ask
  expect(queries.length).toBe(2);
  expect(queries[1]!.q).toContain("urgent=1");
}, 20_000);
