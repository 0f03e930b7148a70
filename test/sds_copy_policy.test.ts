// The copy policies an SDS gets with its assignments (copyPolicies, per device), on in-process SDS
// cores: a rebuild under limitNumOfConcurrentIos 1 never has more than one chunk copy in flight on
// the source device (counted by the SDS), unlimited has the per-target cap in flight, the copy ends
// byte-identical either way; moves follow the rebalance policy; the app IO hook counts client
// requests per device and primary writes in flight until their reply; an assignment answer
// without copyPolicies (an older MDM) keeps the per-SDS rate with no concurrency cap.

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import type { CopyIoPolicy, DeviceCopyPolicy } from "../src/proto/cluster_api.ts";
import { Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { Limits } from "../src/proto/limits.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { LONG_LEASE_MS, MiB, Vol, assignmentsFor, checksumCopy, clientTo, deviceIdOf, pattern, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000031";
const vol = new Vol(VOL);
const EXTENT = 16 * MiB;

let dir: string;
let nodes: SdsCore[] = [];
let clients: DataPlaneClient[] = [];

function boot(count: number): SdsCore[] {
  dir = tmpDir("sdspolicy");
  nodes = Array.from({ length: count }, (_, i) => startNode(dir, i, 64 * MiB));
  clients = nodes.map((n) => clientTo(n));
  return nodes;
}

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

const plan = (extents: ExtentPlan["extents"]): ExtentPlan[] => [{ volumeId: VOL, extentBytes: EXTENT, extents }];
const pol = (policy: CopyIoPolicy["policy"], n = 1, bw = 0): CopyIoPolicy => ({ policy, concurrentIosPerDevice: n, bwLimitBytesPerSec: bw });

/** Every node applies the plan; each gets its own device's policies when `policies` is given. */
function apply(plans: ExtentPlan[], mapVersion: number, policies?: { rebuild: CopyIoPolicy; rebalance: CopyIoPolicy }, legacyRate = 0): void {
  nodes.forEach((n, i) => {
    const a = assignmentsFor(i, nodes, plans, mapVersion, legacyRate);
    const mine: DeviceCopyPolicy[] = policies ? [{ deviceId: deviceIdOf(i), ...policies }] : [];
    n.node.applyAssignments({ ...a, copyPolicies: mine });
    n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
  });
}

async function fill(c: DataPlaneClient, chunks: number): Promise<void> {
  const rs = await Promise.all(Array.from({ length: chunks }, (_, k) => vol.write(c, 0, k * MiB, pattern(MiB, 7 + k))));
  expect(rs.every((r) => r.status === Status.OK)).toBe(true);
}

async function waitDone(primary: SdsCore): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const r = primary.node.rebuildReports();
    if (r.length > 0 && r.every((x) => x.done)) return;
    await Bun.sleep(10);
  }
  throw new Error(`copy not done: ${JSON.stringify(primary.node.rebuildReports())}`);
}

async function rebuildWith(policies: { rebuild: CopyIoPolicy; rebalance: CopyIoPolicy }): Promise<SdsCore> {
  const [a, b] = boot(2);
  apply(plan([{ index: 0, replicas: [0] }]), 1, policies);
  await fill(clients[0]!, 16);
  apply(plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 1, mode: "full" } }]), 2, policies);
  await waitDone(a!);
  expect(await checksumCopy(b!, VOL, 0)).toBe(await checksumCopy(a!, VOL, 0));
  return a!;
}

test("limitNumOfConcurrentIos 1: one chunk copy at a time on the source device, the rebuild ends identical", async () => {
  const a = await rebuildWith({ rebuild: pol("limitNumOfConcurrentIos", 1), rebalance: pol("unlimited") });
  const t = a.node.copies.throttleOf(deviceIdOf(0), "rebuild");
  expect(t.current.policy).toBe("limitNumOfConcurrentIos");
  expect(t.maxInFlight).toBe(1);
  expect(a.node.copies.throttleOf(deviceIdOf(0), "move").maxInFlight).toBe(0);
  // what the control port's status shows for the device
  expect(a.node.copies.throttleFigures()).toContainEqual(expect.objectContaining({ deviceId: deviceIdOf(0), class: "rebuild", fromMdm: true, policy: "limitNumOfConcurrentIos", concurrentIosPerDevice: 1, maxInFlight: 1, inFlight: 0 }));
});

test("unlimited: the per-target cap is all that holds chunk copies back", async () => {
  const a = await rebuildWith({ rebuild: pol("unlimited"), rebalance: pol("limitNumOfConcurrentIos", 1) });
  expect(a.node.copies.throttleOf(deviceIdOf(0), "rebuild").maxInFlight).toBe(Limits.rebuildCopiesPerTarget);
});

test("the target FLUSHes every few chunks during a copy, except under dynamicBwThrottling: only the final FLUSH", async () => {
  await rebuildWith({ rebuild: pol("limitNumOfConcurrentIos", 4, 1024 * MiB), rebalance: pol("unlimited") });
  const midCopy = nodes[1]!.node.stats.flushes;
  expect(midCopy).toBeGreaterThanOrEqual(2); // 16 chunks: one not waited for after 8 (and 16), then the final one
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  await rebuildWith({ rebuild: pol("dynamicBwThrottling", 1, 1024 * MiB), rebalance: pol("unlimited") });
  expect(nodes[1]!.node.stats.flushes).toBe(1);
});

test("a move follows the rebalance policy, not the rebuild one", async () => {
  const [a, , c] = boot(3);
  const policies = { rebuild: pol("unlimited"), rebalance: pol("limitNumOfConcurrentIos", 1) };
  apply(plan([{ index: 0, replicas: [0, 1] }]), 1, policies);
  await fill(clients[0]!, 8);
  apply(plan([{ index: 0, replicas: [0, 1], epoch: 2, target: { sds: 2, mode: "full" } }]), 2, policies);
  await waitDone(a!);
  expect(a!.node.copies.throttleOf(deviceIdOf(0), "move").maxInFlight).toBe(1);
  expect(a!.node.copies.throttleOf(deviceIdOf(0), "rebuild").maxInFlight).toBe(0);
  expect(await checksumCopy(c!, VOL, 0)).toBe(await checksumCopy(a!, VOL, 0));
});

test("the app IO hook: primary writes in flight until answered, their latency a quiet sample while no copy runs", async () => {
  const [a, b] = boot(2);
  apply(plan([{ index: 0, replicas: [0, 1] }]), 1, { rebuild: pol("favorAppIos"), rebalance: pol("favorAppIos") });
  const g = a!.node.copies.appIo.of(deviceIdOf(0));
  const pending = Array.from({ length: 4 }, (_, i) => vol.write(clients[0]!, 0, i * 4096, pattern(4096, i)));
  const rs = await Promise.all(pending);
  expect(rs.every((r) => r.status === Status.OK)).toBe(true);
  expect((await vol.read(clients[0]!, 0, 0, 4096)).byteLength).toBe(4096);
  expect(g.quietOps).toBe(4); // the writes, not the read
  expect(g.busyOps).toBe(0);
  expect(g.quietMs).toBeGreaterThan(0);
  expect(g.inFlight).toBe(0);
  // a secondary's forwarded writes are the primary's samples, not its own
  expect(b!.node.copies.appIo.of(deviceIdOf(1)).quietOps).toBe(0);
});

test("an assignment answer without copyPolicies (older MDM): the per-SDS rate on every device, no concurrency cap", async () => {
  const [a] = boot(2);
  apply(plan([{ index: 0, replicas: [0] }]), 1, undefined, 32 * MiB);
  await fill(clients[0]!, 8);
  apply(plan([{ index: 0, replicas: [0], epoch: 2, target: { sds: 1, mode: "full" } }]), 2, undefined, 32 * MiB);
  await waitDone(a!);
  const t = a!.node.copies.throttleOf(deviceIdOf(0), "rebuild");
  expect(t.current).toEqual({ policy: "limitNumOfConcurrentIos", concurrentIosPerDevice: Infinity, bwLimitBytesPerSec: 32 * MiB });
  expect(t.bucket.rate).toBe(32 * MiB);
});
