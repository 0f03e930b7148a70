// Restart of an SDS on the same data dir: data, chunk allocation, extents and epochs survive;
// a chunk freed before the restart is zeroed (never leaks old data into a new allocation).

import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, Vol, applyAll, checksumCopy, clientTo, flushReq, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const VOL = "0a00000000000003";
const vol = new Vol(VOL);
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 8 * MiB, extents: [{ index: 0, replicas: [0, 1], epoch: 3 }, { index: 1, replicas: [1, 0], epoch: 3, thick: true }] }];

const dirs: string[] = [];
let nodes: SdsCore[] = [];
let clients: DataPlaneClient[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  nodes = [];
  clients = [];
});

function boot(dir: string, bytes = 64 * MiB): void {
  nodes = [startNode(dir, 0, bytes), startNode(dir, 1, bytes)];
  clients = nodes.map((n) => clientTo(n));
}

async function shutdown(): Promise<void> {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  nodes = [];
  clients = [];
}

test("data, allocation and epochs survive a stop and restart; nothing is served before new assignments and a lease", async () => {
  const dir = tmpDir("sdspersist");
  dirs.push(dir);
  boot(dir);
  applyAll(nodes, plan);
  const a = pattern(300 * 1024, 1);
  expect((await vol.write(clients[0]!, 0, 5 * MiB - 1000, a, { epoch: 3 })).status).toBe(Status.OK);
  expect((await vol.write(clients[1]!, 1, 123, pattern(5000, 2), { epoch: 3 })).status).toBe(Status.OK);
  const used0 = nodes.map((n) => n.store.usedBytes(n.store.slots[0]!));
  const sums = [await vol.checksum(clients[0]!, 0, 3), await vol.checksum(clients[0]!, 1, 3)];
  await shutdown();

  boot(dir);
  // the restarted SDSs hold the extents they held, at the epoch they held
  expect(nodes.map((n) => n.store.usedBytes(n.store.slots[0]!))).toEqual(used0);
  expect(used0[0]).toBe(2 * MiB + 8 * MiB); // two thin chunks + one thick extent
  for (const n of nodes) {
    expect(n.store.find(VOL, 0)!.epoch).toBe(3);
    const back = readCopy(n, VOL, 0, 5 * MiB - 1000, a.byteLength);
    expect(Buffer.from(back).equals(Buffer.from(a))).toBe(true);
  }
  expect(await checksumCopy(nodes[1]!, VOL, 0)).toBe(sums[0]!);
  expect(await checksumCopy(nodes[1]!, VOL, 1)).toBe(sums[1]!);
  // ... but serve nothing until the MDM's assignments are applied and a lease is held
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096, { epoch: 3 })).status).toBe(Status.UNAVAILABLE);
  // an assignment older than the persisted epoch does not take it back
  applyAll(nodes, [{ ...plan[0]!, extents: plan[0]!.extents.map((x) => ({ ...x, epoch: 2 })) }], 2);
  expect(nodes[0]!.store.find(VOL, 0)!.epoch).toBe(3);
  expect((await vol.req(clients[0]!, Op.READ, 0, 0, 4096, { epoch: 2 })).status).toBe(Status.STALE_EPOCH);
  // replication works again once the (MDM's) assignments give the peers' new addresses
  applyAll(nodes, plan, 3);
  expect((await vol.write(clients[0]!, 0, 0, pattern(4096, 3), { epoch: 3 })).status).toBe(Status.OK);
  expect(Buffer.from(readCopy(nodes[1]!, VOL, 0, 0, 4096)).equals(Buffer.from(pattern(4096, 3)))).toBe(true);
});

test("a chunk freed by TRIM is zeroed before it is reused, also across a restart", async () => {
  const dir = tmpDir("sdsreuse");
  dirs.push(dir);
  boot(dir, 2 * MiB); // two chunks only
  const small: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }];
  applyAll(nodes, small);
  expect((await vol.write(clients[0]!, 0, 0, pattern(2 * MiB, 4))).status).toBe(Status.OK);
  expect((await vol.write(clients[0]!, 0, 2 * MiB, pattern(4096, 5))).status).toBe(Status.NO_SPACE);
  expect((await vol.req(clients[0]!, Op.TRIM, 0, 0, MiB)).status).toBe(Status.OK);
  expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
  await shutdown(); // possibly before the background cleaner zeroed the freed chunk

  boot(dir, 2 * MiB);
  applyAll(nodes, small, 2);
  // the freed chunk is reused for another logical chunk: only the 4 KiB written shows
  expect((await vol.write(clients[0]!, 0, 3 * MiB, pattern(4096, 6))).status).toBe(Status.OK);
  for (const n of nodes) {
    const back = readCopy(n, VOL, 0, 3 * MiB, MiB);
    expect(Buffer.from(back.subarray(0, 4096)).equals(Buffer.from(pattern(4096, 6)))).toBe(true);
    expect(back.subarray(4096).every((x) => x === 0)).toBe(true);
    expect(readCopy(n, VOL, 0, 0, MiB).every((x) => x === 0)).toBe(true);
  }
});

test("an existing device file unknown to the metadata is zeroed on first use (its old bytes never show)", async () => {
  const dir = tmpDir("sdsvirgin");
  dirs.push(dir);
  fs.mkdirSync(`${dir}/sds0`, { recursive: true });
  fs.mkdirSync(`${dir}/sds1`, { recursive: true });
  fs.writeFileSync(`${dir}/sds0/dev0.img`, new Uint8Array(4 * MiB).fill(0xee));
  fs.writeFileSync(`${dir}/sds1/dev0.img`, new Uint8Array(4 * MiB).fill(0xdd));
  boot(dir, 4 * MiB);
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }]);
  expect((await vol.write(clients[0]!, 0, MiB + 10, pattern(10, 7))).status).toBe(Status.OK);
  for (const n of nodes) {
    const back = readCopy(n, VOL, 0, MiB, MiB);
    expect(back.subarray(0, 10).every((x) => x === 0)).toBe(true);
    expect(back.subarray(20).every((x) => x === 0)).toBe(true);
  }
  expect(await vol.checksum(clients[0]!, 0)).toBe(await vol.checksum(clients[1]!, 0));
});
