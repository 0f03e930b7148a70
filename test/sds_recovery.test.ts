// SDS side of failure and recovery, with in-process SDS cores, injected assignments and (where
// time matters) a fake lease clock: leases, epochs on every opcode, roles (primary, secondary,
// target, away), degraded writes, and the refusals that protect them. The copy loop (rebuild,
// resync, throttle, target failure) is in sds_recovery_copy.test.ts.

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsClock } from "../src/sds/sds_clock.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, Vol, applyAll, assignmentsFor, clientTo, pattern, peerClientTo, readCopy, sdsIdOf, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000010";
const vol = new Vol(VOL);
const EXTENT = 8 * MiB;

class FakeClock implements SdsClock {
  t = 10_000;
  nowMs(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    return Bun.sleep(ms);
  }
}

let dir: string;
let nodes: (SdsCore | null)[] = [];
let clients: DataPlaneClient[] = [];

function boot(count: number, clock?: SdsClock): SdsCore[] {
  dir = tmpDir("sdsrecov");
  const out: SdsCore[] = [];
  for (let i = 0; i < count; i++) out.push(startNode(dir, i, 64 * MiB, undefined, 0, undefined, clock));
  nodes = out;
  clients = out.map((n) => clientTo(n));
  return out;
}

/** A client authenticated as SDS number `i`: forwarded frames are accepted from a primary only. */
function peerClient(to: SdsCore, i: number): DataPlaneClient {
  const c = peerClientTo(to, i);
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

function plan(extents: ExtentPlan["extents"]): ExtentPlan[] {
  return [{ volumeId: VOL, extentBytes: EXTENT, extents }];
}

const used = (n: SdsCore) => n.store.usedBytes(n.store.slots[0]!);

// ---- leases ----

test("lease: nothing served before a lease; served until sentAt + leaseMs; UNAVAILABLE after; served again once renewed", async () => {
  const clock = new FakeClock();
  const [a] = boot(1, clock);
  a!.node.applyAssignments(assignmentsFor(0, [a!], plan([{ index: 0, replicas: [0] }])));
  // assignments applied, no heartbeat answered yet
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.UNAVAILABLE);
  expect(used(a!)).toBe(0);
  // heartbeat sent at t, answered with leaseMs 4000 (the answer arriving later does not extend it)
  const sentAt = clock.t;
  clock.t += 1500;
  a!.node.grantLease(sentAt, 4000);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 2))).status).toBe(Status.OK);
  clock.t = sentAt + 3999;
  expect(Buffer.from(await vol.read(clients[0]!, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 2)))).toBe(true);
  clock.t = sentAt + 4000;
  for (const op of [Op.READ, Op.TRIM, Op.WRITE_ZEROES, Op.CHECKSUM]) {
    expect((await vol.req(clients[0]!, op, 0, 0, op === Op.CHECKSUM ? 0 : 4096)).status).toBe(Status.UNAVAILABLE);
  }
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 3))).status).toBe(Status.UNAVAILABLE);
  expect(a!.node.stats.refusedNoLease).toBe(6);
  // the MDM is back: the next answered heartbeat renews the lease
  a!.node.grantLease(clock.t, 4000);
  expect(Buffer.from(await vol.read(clients[0]!, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 2)))).toBe(true);
  // an older answer never shortens a lease
  a!.node.grantLease(clock.t - 3000, 4000);
  clock.t += 3500;
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.OK);
});

test("lease: a secondary without a lease refuses forwarded writes, so its primary acknowledges nothing", async () => {
  const clock = new FakeClock();
  const [a, b] = boot(2, clock);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  // both got LONG leases from applyAll; give the primary a fresh one and let the secondary's lapse
  clock.t += 4_000_000;
  a!.node.grantLease(clock.t, 4000);
  const r = await vol.write(clients[0]!, 0, 0, pattern(4096, 2));
  expect(r.status).toBe(Status.UNAVAILABLE);
  expect(b!.node.stats.refusedNoLease).toBe(1);
  expect(Buffer.from(readCopy(b!, VOL, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 1)))).toBe(true);
});

// ---- epochs ----

test("epochs: older and newer epochs are refused with STALE_EPOCH on every extent opcode, before any device IO", async () => {
  const [a, b, c] = boot(3);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 5, target: { sds: 2, mode: "full" } }]));
  let newer = 0;
  // the MDM has nothing newer: a heartbeat sent now is answered with the assignments held (a
  // forwarded frame with a newer epoch waits for that answer, then is refused as final)
  for (const n of [a!, b!, c!]) {
    n.node.onNewerEpoch = () => {
      newer++;
      const beat = n.node.heartbeatBegun();
      queueMicrotask(() => n.node.heartbeatAnswered(beat));
    };
  }
  const fromPrimaryToB = peerClient(b!, 0);
  const fromPrimaryToC = peerClient(c!, 0);
  const data = pattern(4096, 9);
  const cases: [DataPlaneClient, number, Uint8Array | undefined][] = [
    [clients[0]!, Op.READ, undefined],
    [clients[0]!, Op.WRITE, data],
    [clients[0]!, Op.TRIM, undefined],
    [clients[0]!, Op.WRITE_ZEROES, undefined],
    [clients[0]!, Op.CHECKSUM, undefined],
    [fromPrimaryToB, Op.REPL_WRITE, data],
    [fromPrimaryToB, Op.REPL_ZERO, undefined],
    [fromPrimaryToC, Op.REBUILD_WRITE, data],
    [fromPrimaryToC, Op.REPL_WRITE, data],
  ];
  let expectedNewer = 0;
  for (const [cl, op, payload] of cases) {
    for (const epoch of [4, 6, 0, 0xffff_ffff]) {
      const r = await vol.req(cl, op, 0, 0, op === Op.CHECKSUM ? 0 : 4096, { epoch, payload });
      expect({ op, epoch, status: r.status }).toEqual({ op, epoch, status: Status.STALE_EPOCH });
      if (epoch > 5) expectedNewer++;
    }
  }
  expect(newer).toBe(expectedNewer);
  // the forwarded ones with a newer epoch waited for the MDM's answer (4 opcodes x 2 epochs)
  expect(b!.node.holds.stats.final + c!.node.holds.stats.final).toBe(8);
  for (const n of [a!, b!, c!]) expect(used(n)).toBe(0);
  expect(a!.node.stats.refusedStaleEpoch + b!.node.stats.refusedStaleEpoch + c!.node.stats.refusedStaleEpoch).toBe(cases.length * 4);
  // the right epoch goes through (and reaches both copies and the target)
  expect((await vol.write(clients[0]!, 0, 0, data, { epoch: 5 })).status).toBe(Status.OK);
  for (const n of [a!, b!, c!]) expect(Buffer.from(readCopy(n, VOL, 0, 0, 4096)).equals(Buffer.from(data))).toBe(true);
});

test("epochs: a new epoch installed by the MDM wins; an older assignment changes nothing", async () => {
  const [a] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], epoch: 7 }]));
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 6 }]), 2); // stale news: ignored whole
  expect(a!.store.find(VOL, 0)!.epoch).toBe(7);
  expect(a!.store.find(VOL, 0)!.replicas).toEqual([sdsIdOf(0), sdsIdOf(1)]);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 8 }]), 3);
  expect(a!.store.find(VOL, 0)!.epoch).toBe(8);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1), { epoch: 7 })).status).toBe(Status.STALE_EPOCH);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1), { epoch: 8 })).status).toBe(Status.OK);
});

// ---- roles ----

test("degraded primary (replicas = [self]) acknowledges after its own write", async () => {
  const [a, b] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  await b!.stop();
  nodes[1] = null;
  // before the MDM notices, the write cannot be acknowledged
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 2))).status).toBe(Status.UNAVAILABLE);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2 }]), 2);
  const writes = await Promise.all(Array.from({ length: 32 }, (_, i) => vol.write(clients[0]!, 0, i * 64 * 1024, pattern(64 * 1024, 10 + i), { epoch: 2 })));
  expect(writes.every((r) => r.status === Status.OK)).toBe(true);
  expect(Buffer.from(await vol.read(clients[0]!, 0, 31 * 64 * 1024, 64 * 1024, 2)).equals(Buffer.from(pattern(64 * 1024, 41)))).toBe(true);
  expect(a!.node.stats.peerFailures).toBe(1);
});

test("secondary and target refuse client reads and writes; forwarded frames are accepted from the primary only", async () => {
  const [a, b, c] = boot(3);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1], target: { sds: 2, mode: "full" } }]));
  for (const i of [1, 2]) {
    expect((await vol.req(clients[i]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    expect((await vol.write(clients[i]!, 0, 0, pattern(4096, 1))).status).toBe(Status.NOT_OWNER);
    expect((await vol.req(clients[i]!, Op.TRIM, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    // an SDC may not send forwarded frames at all (its role), another SDS cannot pose as the primary
    expect((await vol.req(clients[i]!, Op.REPL_WRITE, 0, 0, 4096, { payload: pattern(4096, 1) })).status).toBe(Status.UNAUTHORIZED);
    expect((await vol.req(peerClient(nodes[i]!, 3 - i), Op.REPL_WRITE, 0, 0, 4096, { payload: pattern(4096, 1) })).status).toBe(Status.NOT_OWNER);
  }
  // REBUILD_WRITE goes to a target only; the primary itself refuses forwarded frames (a peer
  // claiming to be the SDS it connects to is not even let in)
  expect((await vol.req(peerClient(b!, 0), Op.REBUILD_WRITE, 0, 0, 4096, { payload: pattern(4096, 2) })).status).toBe(Status.NOT_OWNER);
  expect((await vol.req(peerClient(a!, 0), Op.REPL_WRITE, 0, 0, 4096, { payload: pattern(4096, 2) })).status).toBe(Status.UNAUTHORIZED);
  expect((await vol.req(peerClient(a!, 1), Op.REPL_WRITE, 0, 0, 4096, { payload: pattern(4096, 2) })).status).toBe(Status.NOT_OWNER);
  expect((await vol.req(peerClient(c!, 0), Op.REBUILD_WRITE, 0, 0, 4096, { payload: pattern(4096, 3) })).status).toBe(Status.OK);
  for (const n of [a!, b!]) expect(used(n)).toBe(0);
  expect(c!.node.stats.rebuildBytes).toBe(4096);
});

test("an away copy is neither served nor freed; an unassigned copy is freed", async () => {
  const [a, b] = boot(2);
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }, { index: 1, replicas: [0, 1] }]));
  const data = pattern(3 * MiB, 4);
  for (const ext of [0, 1]) expect((await vol.write(clients[0]!, ext, 0, data)).status).toBe(Status.OK);
  expect(used(b!)).toBe(6 * MiB);
  // SDS 1 was lost: extent 0 keeps its copy there as away, extent 1 is rebuilt elsewhere
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, away: [1] }, { index: 1, replicas: [0], epoch: 2 }]), 2);
  expect(b!.store.find(VOL, 0)!.role).toBe("away");
  expect(b!.store.find(VOL, 1)).toBeUndefined();
  expect(used(b!)).toBe(3 * MiB);
  const toB = peerClient(b!, 0);
  for (const [cl, op] of [
    [clients[1]!, Op.READ],
    [clients[1]!, Op.WRITE],
    [clients[1]!, Op.CHECKSUM],
    [toB, Op.REPL_WRITE],
    [toB, Op.REPL_ZERO],
    [toB, Op.REBUILD_WRITE],
  ] as const) {
    const payload = op === Op.WRITE || op === Op.REPL_WRITE || op === Op.REBUILD_WRITE ? pattern(4096, 5) : undefined;
    expect((await vol.req(cl, op, 0, 0, op === Op.CHECKSUM ? 0 : 4096, { epoch: 2, payload })).status).toBe(Status.NOT_OWNER);
  }
  // the same assignment again (a later map version) keeps it too
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2, away: [1] }, { index: 1, replicas: [0], epoch: 2 }]), 3);
  expect(Buffer.from(readCopy(b!, VOL, 0, 0, 3 * MiB)).equals(Buffer.from(data))).toBe(true);
  // the grace period is over: the MDM stops listing it, and its space is freed
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3 }, { index: 1, replicas: [0], epoch: 2 }]), 4);
  expect(b!.store.find(VOL, 0)).toBeUndefined();
  expect(used(b!)).toBe(0);
  expect(used(a!)).toBe(6 * MiB);
});

test("an assignment whose role contradicts its replica list holds the copy but serves nothing", async () => {
  const [a] = boot(1);
  applyAll(nodes, plan([{ index: 0, replicas: [0] }]));
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  const bad = assignmentsFor(0, [a!], plan([{ index: 0, replicas: [0], epoch: 2 }]), 2);
  bad.extents[0]!.role = "target"; // a target must not be in the in-sync list
  a!.node.applyAssignments(bad);
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
  expect(used(a!)).toBe(MiB);
});
