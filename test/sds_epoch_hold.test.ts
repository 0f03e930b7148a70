// A peer that has not applied the primary's newer epoch yet (the MDM's answers reach the SDSs at
// different heartbeats) holds the primary's forwarded frames instead of refusing them, so the
// primary reports no failed forward and no healthy copy leaves the in-sync set
// (sds/epoch_hold.ts). In-process SDS cores with injected assignments: the write waits, then is
// acknowledged on both copies once the assignment arrives; overlapping writes keep their order;
// the hold is bounded in frames and bytes (the connection stops reading) and in time (then it is
// a real refusal, reported as a failed forward); an answer from the MDM that brings nothing new
// ends it at once; a closed connection's frames are dropped, never applied.

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient, DataReply } from "../src/proto/dataplane_client.ts";
import type { SdsCore, SdsCoreOptions } from "../src/sds/sds_core.ts";
import { LONG_LEASE_MS, MiB, Vol, assignmentsFor, clientTo, pattern, peerClientTo, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000020";
const vol = new Vol(VOL);
const EXTENT = 8 * MiB;
const BLOCK = 4096;

let dir: string;
let nodes: SdsCore[] = [];
let clients: DataPlaneClient[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

/** Three SDSs; `hold` bounds the hold on SDS 1 (the secondary) and SDS 2 (a target). */
function boot(hold?: SdsCoreOptions["epochHold"]): SdsCore[] {
  dir = tmpDir("sdshold");
  nodes = [0, 1, 2].map((i) => startNode(dir, i, 64 * MiB, undefined, 0, undefined, undefined, i === 0 ? undefined : hold));
  clients = [clientTo(nodes[0]!)];
  return nodes;
}

function plan(epoch: number, target?: number): ExtentPlan[] {
  return [{ volumeId: VOL, extentBytes: EXTENT, extents: [{ index: 0, replicas: [0, 1], epoch, ...(target === undefined ? {} : { target: { sds: target, mode: "full" as const } }) }] }];
}

/** What the MDM's answer to one SDS's heartbeat does: only `which` learn the new map. */
function applyTo(which: number[], plans: ExtentPlan[], mapVersion: number): void {
  for (const i of which) {
    const n = nodes[i]!;
    n.node.applyAssignments(assignmentsFor(i, nodes, plans, mapVersion));
    n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
  }
}

/** Track a reply without awaiting it. */
function pending(p: Promise<DataReply>): { reply: DataReply | null; done: Promise<DataReply> } {
  const t: { reply: DataReply | null; done: Promise<DataReply> } = { reply: null, done: p };
  void p.then((r) => (t.reply = r));
  return t;
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** Poll until cond() holds (at most 10 s): the frames reach the secondary whenever the loop gets to them, later on a loaded host. */
async function settle(cond: () => boolean): Promise<void> {
  for (const until = performance.now() + 10_000; !cond() && performance.now() < until; ) await Bun.sleep(5);
}

test("a secondary behind the primary's epoch holds the forwarded write; it is acknowledged on both copies once the assignment arrives, no failed forward", async () => {
  const [a, b] = boot();
  applyTo([0, 1, 2], plan(1), 1);
  applyTo([0], plan(2), 2); // the primary heard first
  const data = pattern(BLOCK, 1);
  const w = pending(vol.write(clients[0]!, 0, 0, data, { epoch: 2 }));
  await settle(() => b!.node.holds.heldFrames >= 1);
  expect(w.reply).toBeNull(); // not acknowledged: the secondary does not hold it yet
  expect(b!.node.holds.heldFrames).toBe(1);
  applyTo([1], plan(2), 2);
  expect((await w.done).status).toBe(Status.OK);
  expect(same(readCopy(a!, VOL, 0, 0, BLOCK), data)).toBe(true);
  expect(same(readCopy(b!, VOL, 0, 0, BLOCK), data)).toBe(true);
  expect(a!.node.takeFailedForwards()).toEqual([]);
  expect(a!.node.stats.peerFailures).toBe(0);
  expect(b!.node.holds.stats).toMatchObject({ holds: 1, framesHeld: 1, caughtUp: 1, final: 0, timedOut: 0 });
  expect(b!.node.holds.heldFrames).toBe(0);
});

test("overlapping writes, zeroes and a FLUSH held behind the first keep their order: both copies end identical", async () => {
  const [a, b] = boot();
  applyTo([0, 1, 2], plan(1), 1);
  applyTo([0], plan(2), 2);
  const replies: Promise<DataReply>[] = [];
  for (let i = 1; i <= 30; i++) {
    if (i === 12) replies.push(vol.req(clients[0]!, Op.WRITE_ZEROES, 0, 0, 2 * BLOCK, { epoch: 2 }));
    else replies.push(vol.write(clients[0]!, 0, (i % 2) * 1024, pattern(BLOCK, i), { epoch: 2 }));
    if (i === 20) replies.push(clients[0]!.request({ opcode: Op.FLUSH, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }));
  }
  await settle(() => b!.node.holds.heldFrames >= 30);
  expect(b!.node.holds.heldFrames).toBeGreaterThanOrEqual(30);
  applyTo([1], plan(2), 2);
  const rs = await Promise.all(replies);
  expect(rs.map((r) => r.status)).toEqual(rs.map(() => Status.OK));
  expect(same(readCopy(a!, VOL, 0, 0, 2 * BLOCK), readCopy(b!, VOL, 0, 0, 2 * BLOCK))).toBe(true);
  // the last write (30, at offset 0) is on top
  expect(same(readCopy(b!, VOL, 0, 0, BLOCK), pattern(BLOCK, 30))).toBe(true);
  expect(a!.node.takeFailedForwards()).toEqual([]);
});

for (const cap of [{ maxFrames: 8 }, { maxBytes: 16 * BLOCK }]) {
  test(`the hold is bounded (${JSON.stringify(cap)}): at the cap the connection stops reading, then everything is applied in order`, async () => {
    const [a, b] = boot(cap);
    applyTo([0, 1, 2], plan(1), 1);
    applyTo([0], plan(2), 2);
    const n = 60;
    const replies: Promise<DataReply>[] = [];
    for (let i = 1; i <= n; i++) replies.push(vol.write(clients[0]!, 0, 0, pattern(BLOCK, i), { epoch: 2 }));
    const limit = cap.maxFrames ?? (cap.maxBytes ?? 0) / BLOCK;
    await settle(() => b!.node.holds.heldFrames >= limit);
    await Bun.sleep(100); // and no frame beyond the cap arrives after it
    expect(b!.node.holds.heldFrames).toBe(limit);
    expect(b!.node.holds.stats.capReached).toBe(1);
    applyTo([1], plan(2), 2);
    const rs = await Promise.all(replies);
    expect(rs.every((r) => r.status === Status.OK)).toBe(true);
    expect(b!.node.holds.stats.maxQueued).toBe(limit); // never more than the cap
    expect(same(readCopy(a!, VOL, 0, 0, BLOCK), pattern(BLOCK, n))).toBe(true);
    expect(same(readCopy(b!, VOL, 0, 0, BLOCK), pattern(BLOCK, n))).toBe(true);
    expect(a!.node.takeFailedForwards()).toEqual([]);
  });
}

test("a secondary that never gets the epoch refuses after the bounded wait: a real failed forward, reported under that epoch", async () => {
  const [a, b] = boot({ waitMs: 300 });
  applyTo([0, 1, 2], plan(1), 1);
  applyTo([0], plan(2), 2);
  const t0 = performance.now();
  const r = await vol.write(clients[0]!, 0, 0, pattern(BLOCK, 1), { epoch: 2 });
  expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
  expect(r.status).toBe(Status.STALE_EPOCH); // the SDC refreshes its map and retries
  expect(b!.node.holds.stats.timedOut).toBe(1);
  expect(a!.node.takeFailedForwards()).toEqual([{ volumeId: VOL, extentIndex: 0, epoch: 2, peerSdsId: b!.sdsId }]);
});

test("the MDM's answer to a heartbeat sent after the frame arrived is final: no newer epoch for this SDS, refused at once", async () => {
  const [, b] = boot(); // the default wait (Limits.sdsEpochHoldMs)
  applyTo([0, 1, 2], plan(1), 1);
  applyTo([0], plan(2), 2);
  let asked = 0;
  b!.node.onNewerEpoch = () => void asked++;
  const beforeFrame = b!.node.heartbeatBegun(); // in flight when the frame arrives: not final
  const w = pending(vol.write(clients[0]!, 0, 0, pattern(BLOCK, 1), { epoch: 2 }));
  await settle(() => asked > 0);
  expect(asked).toBe(1);
  b!.node.heartbeatAnswered(beforeFrame);
  await Bun.sleep(50);
  expect(w.reply).toBeNull();
  b!.node.heartbeatAnswered(b!.node.heartbeatBegun());
  expect((await w.done).status).toBe(Status.STALE_EPOCH);
  // refused because the answer was final, not because the hold ran out (Limits.sdsEpochHoldMs)
  expect(b!.node.holds.stats.final).toBe(1);
  expect(b!.node.holds.stats.timedOut).toBe(0);
});

test("a new target that has not applied its assignment yet holds the forwarded write and the copy's chunks: no failed attempt", async () => {
  const [a, b, c] = boot();
  applyTo([0, 1, 2], plan(1), 1);
  applyTo([0], plan(2, 2), 2); // the primary starts copying to SDS 2, which knows nothing yet
  const data = pattern(BLOCK, 7);
  const w = pending(vol.write(clients[0]!, 0, 0, data, { epoch: 2 }));
  await settle(() => c!.node.holds.heldFrames > 0);
  expect(w.reply).toBeNull();
  expect(c!.node.holds.heldFrames).toBeGreaterThan(0);
  applyTo([1, 2], plan(2, 2), 2);
  expect((await w.done).status).toBe(Status.OK);
  for (let i = 0; i < 200 && a!.node.copies.stats.jobsDone === 0; i++) await Bun.sleep(20);
  expect(a!.node.copies.stats.jobsDone).toBe(1);
  expect(a!.node.copies.stats.jobsFailed).toBe(0);
  expect(same(readCopy(c!, VOL, 0, 0, BLOCK), data)).toBe(true);
  expect(same(readCopy(b!, VOL, 0, 0, BLOCK), data)).toBe(true);
});

test("frames held on a connection that closes are dropped, never applied", async () => {
  const [, b] = boot({ waitMs: 300 });
  applyTo([0, 1, 2], plan(1), 1);
  const fromPrimary = peerClientTo(b!, 0);
  const r = pending(vol.req(fromPrimary, Op.REPL_WRITE, 0, 0, BLOCK, { epoch: 2, payload: pattern(BLOCK, 3) }));
  for (let i = 0; i < 100 && b!.node.holds.heldFrames === 0; i++) await Bun.sleep(5);
  expect(b!.node.holds.heldFrames).toBe(1);
  fromPrimary.close();
  await r.done.catch(() => undefined);
  await Bun.sleep(400);
  expect(b!.node.holds.heldFrames).toBe(0);
  expect(b!.node.holds.stats.droppedClosed).toBe(1);
  expect(b!.node.stats.replWrites).toBe(0);
  expect(same(readCopy(b!, VOL, 0, 0, BLOCK), new Uint8Array(BLOCK))).toBe(true);
});
