// FLUSH answered by the SDC without the network when every write acknowledged since the last
// completed flush was durable on every copy (Flag.DURABLE on its reply: a writeThrough pool or
// FUA; src/sdc/volume_io.ts). Two real SDS cores, the SDC's VolumeIo behind a real NBD server,
// NBD clients on it; "reached the SDSs" is read from each SDS's FLUSH counter.

import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient, DataRequest, ReplyCallback } from "../src/proto/dataplane_client.ts";
import { MetricRegistry } from "../src/proto/metrics.ts";
import { renderText } from "../src/proto/metrics_text.ts";
import type { VolumeMap } from "../src/proto/cluster_api.ts";
import { startNbdServer, type NbdServer } from "../src/sdc/nbd_server.ts";
import { SdcMetrics } from "../src/sdc/sdc_metrics.ts";
import { VolumeIo, type SdsLink } from "../src/sdc/volume_io.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import type { Bytes } from "../src/proto/scatter.ts";
import { NbdTestClient } from "./helpers/nbd_client.ts";
import { promtoolMetrics } from "./helpers/promtool.ts";
import { LONG_LEASE_MS, MiB, SDC_ID, Vol, assignmentsFor, clientTo, pattern, sdsIdOf, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000051";
const EXTENT = 4 * MiB;
// extent 0: primary SDS 0; extent 1: primary SDS 1 (both copies on both)
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: EXTENT, extents: [{ index: 0, replicas: [0, 1] }, { index: 1, replicas: [1, 0] }] }];

let dir: string;
let nodes: SdsCore[];
let links: DataPlaneClient[];
let server: NbdServer;
let io: VolumeIo;
let registry: MetricRegistry;
let nbd: NbdTestClient[];
/** SDS numbers whose replies lose Flag.DURABLE on the way (an SDS of an older build) */
let older: Set<number>;

function apply(writeThrough: boolean, mapVersion: number): void {
  nodes.forEach((n, i) => {
    n.node.applyAssignments({ ...assignmentsFor(i, nodes, plan, mapVersion), writeThroughVolumes: writeThrough ? [VOL] : [] });
    n.node.grantLease(n.node.clock.nowMs(), LONG_LEASE_MS);
  });
}

/** A link that hides Flag.DURABLE when its SDS plays an older build. */
function linkOf(i: number): SdsLink {
  const c = links[i]!;
  const strip = (cb: ReplyCallback): ReplyCallback => (st, p, fl) => cb(st, p, older.has(i) ? (fl ?? 0) & ~Flag.DURABLE : fl);
  return {
    request: (h: DataRequest, payload?: Uint8Array) =>
      new Promise((resolve) => c.send(h, payload, strip((status, p, flags) => resolve({ status, payload: p, flags: flags ?? 0 })))),
    send: (h: DataRequest, payload: Bytes | undefined, cb: ReplyCallback, immutable?: boolean) => c.send(h, payload, strip(cb), immutable),
  };
}

function flushesAtSds(): number {
  return nodes.reduce((s, n) => s + n.node.stats.flushes, 0);
}

beforeEach(async () => {
  dir = tmpDir("sdcflush");
  older = new Set();
  nodes = [startNode(dir, 0), startNode(dir, 1)];
  apply(true, 1);
  links = nodes.map((n) => clientTo(n));
  const map: VolumeMap = {
    volumeId: VOL,
    name: "v",
    sizeBytes: 2 * EXTENT,
    accessMode: "ReadWrite",
    extentSizeBytes: EXTENT,
    extents: [
      { epoch: 1, replicas: [sdsIdOf(0), sdsIdOf(1)] },
      { epoch: 1, replicas: [sdsIdOf(1), sdsIdOf(0)] },
    ],
    limitIops: 0,
    limitBwKbps: 0,
  };
  io = new VolumeIo(map, {
    link: (id) => {
      const i = nodes.findIndex((_, k) => sdsIdOf(k) === id);
      return i < 0 ? undefined : linkOf(i);
    },
    refreshMaps: async () => undefined,
    sleep: (ms) => Bun.sleep(ms),
    nowMs: () => Date.now(),
  });
  registry = new MetricRegistry();
  io.meter = new SdcMetrics(registry, SDC_ID).volume(VOL, "v");
  server = await startNbdServer({ host: "127.0.0.1", port: 0, registry: { get: (n) => (n === "v" ? io : undefined), list: () => [io] } });
  nbd = [await NbdTestClient.connect(server.port, "v"), await NbdTestClient.connect(server.port, "v")];
});

afterEach(async () => {
  for (const c of nbd) c.close();
  await server.stop();
  for (const c of links) c.close();
  for (const n of nodes) await n.stop().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

function localFlushMetric(): number {
  const m = /^pf_sdc_flush_local_total\{sdc_id="c000000000000001"\} (\d+)$/m.exec(renderText(registry));
  if (m === null) throw new Error("pf_sdc_flush_local_total missing from /metrics");
  return Number(m[1]);
}

test("the primary sets DURABLE on writeThrough and FUA write replies only, never on an error or a writeBack write", async () => {
  const vol = new Vol(VOL);
  const c = links[0]!;
  const wt = await vol.write(c, 0, 0, pattern(4096, 1));
  expect(wt.status).toBe(Status.OK);
  expect((wt.flags ?? 0) & Flag.DURABLE).toBe(Flag.DURABLE);
  const zero = await vol.req(c, Op.WRITE_ZEROES, 0, 8192, 4096);
  expect((zero.flags ?? 0) & Flag.DURABLE).toBe(Flag.DURABLE);
  const stale = await vol.write(c, 0, 0, pattern(4096, 2), { epoch: 9 });
  expect(stale.status).toBe(Status.STALE_EPOCH);
  expect((stale.flags ?? 0) & Flag.DURABLE).toBe(0);
  apply(false, 2);
  const wb = await vol.write(c, 0, 0, pattern(4096, 3));
  expect(wb.status).toBe(Status.OK);
  expect((wb.flags ?? 0) & Flag.DURABLE).toBe(0);
  const fua = await vol.write(c, 0, 0, pattern(4096, 4), { fua: true });
  expect((fua.flags ?? 0) & Flag.DURABLE).toBe(Flag.DURABLE);
  // a request claiming DURABLE is refused as a bad frame (the connection closes), not echoed
  const bogus = await vol.req(c, Op.WRITE, 0, 0, 4096, { flags: Flag.DURABLE, payload: pattern(4096, 5) });
  expect(bogus.status).not.toBe(Status.OK);
});

test("writeThrough: FLUSH after writes (both extents, both connections) is answered without reaching any SDS", async () => {
  await nbd[0]!.write(0, pattern(64 * 1024, 1));
  await nbd[1]!.write(EXTENT + 4096, pattern(8192, 2)); // extent 1: primary SDS 1
  await nbd[0]!.write(EXTENT - 4096, pattern(8192, 3)); // across the extent boundary (two pieces)
  const before = flushesAtSds();
  await nbd[0]!.flush();
  await nbd[1]!.flush();
  expect(flushesAtSds()).toBe(before);
  expect(io.localFlushes).toBe(2);
  expect(localFlushMetric()).toBe(2);
  expect(promtoolMetrics(renderText(registry)).code).toBe(0);
  // the data is there
  expect(await nbd[1]!.read(0, 64 * 1024)).toEqual(pattern(64 * 1024, 1));
});

test("writeBack: every FLUSH after a write reaches the SDSs", async () => {
  apply(false, 2);
  for (let i = 0; i < 3; i++) {
    await nbd[0]!.write(i * 4096, pattern(4096, i));
    const before = flushesAtSds();
    await nbd[0]!.flush();
    expect(flushesAtSds()).toBeGreaterThan(before);
  }
  expect(io.localFlushes).toBe(0);
});

test("switched live from writeThrough to writeBack: a write then FLUSH reaches the SDSs", async () => {
  await nbd[0]!.write(0, pattern(4096, 1));
  await nbd[0]!.flush();
  expect(io.localFlushes).toBe(1);
  apply(false, 2); // the pool switched to writeBack: replies lose DURABLE
  await nbd[0]!.write(4096, pattern(4096, 2));
  const before = flushesAtSds();
  await nbd[0]!.flush();
  const after = flushesAtSds(); // the primary's, and its peer's LOCAL_ONLY one
  expect(after).toBeGreaterThan(before);
  expect(io.localFlushes).toBe(1);
  // flushed: the next FLUSH with no write between has nothing to send
  await nbd[0]!.flush();
  expect(flushesAtSds()).toBe(after);
  expect(io.localFlushes).toBe(2);
});

test("a write on a second connection whose reply lacked DURABLE forces the first connection's FLUSH out", async () => {
  await nbd[0]!.write(0, pattern(4096, 1));
  older.add(1); // SDS 1 plays an older build: its replies never say DURABLE
  await nbd[1]!.write(EXTENT, pattern(4096, 2)); // extent 1, primary SDS 1
  const before = nodes[1]!.node.stats.flushes;
  await nbd[0]!.flush();
  expect(nodes[1]!.node.stats.flushes).toBeGreaterThan(before);
  expect(io.localFlushes).toBe(0);
  // and the same through a live switch on the other connection
  older.clear();
  await nbd[0]!.flush();
  expect(io.localFlushes).toBe(1);
  apply(false, 2);
  await nbd[1]!.write(0, pattern(4096, 3));
  const mid = flushesAtSds();
  await nbd[0]!.flush();
  expect(flushesAtSds()).toBeGreaterThan(mid);
  expect(io.localFlushes).toBe(1);
});
