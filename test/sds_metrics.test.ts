// The SDS's IO counters with in-process SDS cores and injected assignments: a client write is one
// primary write on one SDS and one secondary write on the other (bytes equal), reads and trims
// count on the primary only, refused requests count nowhere but in refusals, devices see the
// pwrite and the fdatasync of a FLUSH, a rebuild counts its bytes read at the source and written
// at the target under kind "rebuild", and a device error counts as one.

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { SdsIoReport } from "../src/proto/io_report.ts";
import { renderText } from "../src/proto/metrics_text.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { FaultInjectingDevice } from "../src/store/block_fault.ts";
import { MiB, Vol, applyAll, clientTo, flushReq, pattern, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000021";
const vol = new Vol(VOL);
const EXTENT = 4 * MiB;
const INC = "0123456789abcdef";

let dir: string;
let nodes: (SdsCore | null)[] = [];
let clients: DataPlaneClient[] = [];

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

const report = (n: SdsCore) => SdsIoReport.parse(n.metrics.report(INC));

test("a client write counts once as primary on one SDS and once as secondary on the other", async () => {
  dir = tmpDir("sdsmetrics");
  const [a, b] = [startNode(dir, 0), startNode(dir, 1)];
  nodes = [a, b];
  clients = nodes.map((n) => clientTo(n!));
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  const c = clients[0]!;
  for (let i = 0; i < 10; i++) expect((await vol.write(c, 0, i * 8192, pattern(8192, i))).status).toBe(Status.OK);
  expect((await vol.read(c, 0, 0, 65536)).byteLength).toBe(65536);
  expect((await vol.req(c, Op.TRIM, 0, 1 * MiB, 1 * MiB)).status).toBe(Status.OK);
  expect((await vol.req(c, Op.WRITE, 0, 0, 4096, { epoch: 9, payload: pattern(4096, 9) })).status).toBe(Status.STALE_EPOCH);
  expect((await flushReq(c)).status).toBe(Status.OK);

  const ra = report(a!);
  const rb = report(b!);
  expect(ra.primaryWrite.ops).toBe(10);
  expect(ra.primaryWrite.bytes).toBe(10 * 8192);
  expect(ra.primaryWrite.latencyUs).toBeGreaterThan(0);
  expect(ra.primaryRead).toMatchObject({ ops: 1, bytes: 65536 });
  expect(ra.primaryTrim).toMatchObject({ ops: 1, bytes: 1 * MiB });
  expect(rb.primaryWrite.ops + rb.primaryRead.ops + rb.primaryTrim.ops).toBe(0);
  // forwarded writes and the forwarded trim (REPL_ZERO) on the secondary
  expect(rb.secondaryWrite).toMatchObject({ ops: 11, bytes: 10 * 8192 + 1 * MiB });
  expect(ra.secondaryWrite.ops).toBe(0);
  // the devices saw the pwrites and at least one fdatasync each (the FLUSH reaches both)
  expect(ra.devices[0]!.write.ops).toBeGreaterThanOrEqual(10);
  expect(ra.devices[0]!.write.bytes).toBeGreaterThanOrEqual(10 * 8192);
  expect(rb.devices[0]!.write.ops).toBeGreaterThanOrEqual(10);
  expect(ra.devices[0]!.sync.ops).toBeGreaterThanOrEqual(1);
  expect(rb.devices[0]!.sync.ops).toBeGreaterThanOrEqual(1);
  const text = renderText(a!.metrics.registry);
  expect(text).toContain(`pf_sds_io_ops_total{sds_id="${a!.sdsId}",role="primary",op="write"} 10\n`);
  expect(text).toContain(`pf_sds_io_latency_seconds_count{sds_id="${a!.sdsId}",role="primary",op="write"} 10\n`);
});

test("a rebuild counts copy bytes read at the source and written at the target (kind rebuild)", async () => {
  dir = tmpDir("sdsmetrics");
  const [a, b, c] = [startNode(dir, 0, 64 * MiB), startNode(dir, 1, 64 * MiB), startNode(dir, 2, 64 * MiB)];
  nodes = [a, b, c];
  clients = nodes.map((n) => clientTo(n!));
  applyAll(nodes, plan([{ index: 0, replicas: [0, 1] }]));
  for (const k of [0, 1, 3]) expect((await vol.write(clients[0]!, 0, k * MiB, pattern(MiB, k))).status).toBe(Status.OK);
  await b!.stop();
  nodes[1] = null;
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 2 }]), 2);
  applyAll(nodes, plan([{ index: 0, replicas: [0], epoch: 3, target: { sds: 2, mode: "full" } }]), 3);
  const deadline = performance.now() + 20_000;
  while (!a!.node.rebuildReports().every((r) => r.done) || a!.node.rebuildReports().length === 0) {
    if (performance.now() > deadline) throw new Error("copy not done");
    await Bun.sleep(10);
  }
  const src = report(a!);
  const dst = report(c!);
  expect(src.rebuild.read).toMatchObject({ ops: 3, bytes: 3 * MiB });
  expect(dst.rebuild.write).toMatchObject({ ops: 3, bytes: 3 * MiB });
  expect(src.move.read.ops + src.resync.read.ops + dst.move.write.ops + dst.resync.write.ops).toBe(0);
});

test("a device error counts once on the device and the request counts as failed", async () => {
  dir = tmpDir("sdsmetrics");
  let dev: FaultInjectingDevice | null = null;
  const a = startNode(dir, 0, 64 * MiB, undefined, 0, (d) => (dev = new FaultInjectingDevice(d)));
  nodes = [a];
  clients = [clientTo(a)];
  applyAll(nodes, plan([{ index: 0, replicas: [0] }]));
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 1))).status).toBe(Status.OK);
  dev!.faults.failReads = true;
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAVAILABLE);
  const r = report(a);
  expect(r.devices[0]!.errors).toBe(1);
  expect(r.primaryRead.ops).toBe(0);
  const text = renderText(a.metrics.registry);
  expect(text).toMatch(/pf_device_errors_total\{device_id="[0-9a-f]+",path="[^"]+",op="read"\} 1\n/);
  expect(text).toMatch(/pf_sds_io_errors_total\{sds_id="[0-9a-f]+",role="primary",op="read"\} 1\n/);
});
