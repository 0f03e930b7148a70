// Two (or three) SDSs with injected assignments and layer graphs: what a snapshot does on the
// data path. A write fence sent over Op.CONTROL holds new writes until commit (or abort), the
// snapshot keeps the old content while the volume takes new writes by redirect-on-write at the
// 1 MiB chunk, both copies of every layer stay identical, a merge frees exactly the shadowed
// chunks, a layered extent is copied to a new SDS with every layer, and it all survives a
// restart.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import type { VTreeGraph } from "../src/proto/cluster_api.ts";
import { Flag, Op, Status } from "../src/proto/dataplane.ts";
import type { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { idToHalves } from "../src/proto/ids.ts";
import { encodeControl, type ControlRequest } from "../src/proto/vtree_control.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { join } from "node:path";
import { startSdsCore } from "../src/sds/sds_core.ts";
import { MDM_ID, MiB, Vol, mdmClientTo, peerClientTo, applyAll, assignmentsFor, clientTo, deviceIdOf, flushReq, pattern, sdsIdOf, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";

const OWNER = "0a00000000000001"; // the base volume: its id keys the V-Tree's extents and is its first layer
const SNAP = "0a00000000000002";
const L_V1 = "1a00000000000003"; // the base volume's open layer after the snapshot
const L_S1 = "1a00000000000004"; // the snapshot's own (empty while it is only read) layer
const EXTENT = 4 * MiB;
const base = new Vol(OWNER);
const snap = new Vol(SNAP);

const plan = (extra?: number): ExtentPlan[] => [
  {
    volumeId: OWNER,
    extentBytes: EXTENT,
    extents: [
      { index: 0, replicas: [0, 1], ...(extra !== undefined ? { target: { sds: extra, mode: "full" as const } } : {}) },
      { index: 1, replicas: [1, 0] },
    ],
  },
];

/** Graph after one snapshot: OWNER frozen, the base writes L_V1, the snapshot L_S1. */
const afterSnapshot: VTreeGraph = {
  ownerId: OWNER,
  version: 2,
  layers: [
    { layerId: OWNER, parentLayerId: null, frozen: true },
    { layerId: L_V1, parentLayerId: OWNER, frozen: false },
    { layerId: L_S1, parentLayerId: OWNER, frozen: false },
  ],
  members: [
    { volumeId: OWNER, layerId: L_V1 },
    { volumeId: SNAP, layerId: L_S1 },
  ],
  merges: [],
};

/** Graph after removing the snapshot again: OWNER (one child left) folded into L_V1. */
const afterRemove: VTreeGraph = {
  ownerId: OWNER,
  version: 3,
  layers: [{ layerId: L_V1, parentLayerId: null, frozen: false }],
  members: [{ volumeId: OWNER, layerId: L_V1 }],
  merges: [{ fromLayerId: OWNER, intoLayerId: L_V1 }],
};

let dir: string;
let nodes: SdsCore[];
let clients: DataPlaneClient[];

beforeEach(() => {
  dir = tmpDir("sdssnap");
  nodes = [startNode(dir, 0), startNode(dir, 1)];
  applyAll(nodes, plan());
  clients = nodes.map((n) => clientTo(n));
});

afterEach(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A V-Tree control message to the SDS that `c` talks to, sent as the MDM (only the MDM may). */
async function control(c: DataPlaneClient, req: ControlRequest) {
  const node = nodes[clients.indexOf(c)];
  if (!node) throw new Error("control: no SDS behind that client");
  const mdm = mdmClientTo(node);
  try {
    return await mdm.request({ opcode: Op.CONTROL, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }, encodeControl(req));
  } finally {
    mdm.close();
  }
}

const FENCE = "f000000000000001";

/** The MDM's snapshot: fence every holder, then commit everywhere. */
async function takeSnapshot(): Promise<void> {
  const acks = await Promise.all(clients.map((c) => control(c, { kind: "fence", fenceId: FENCE, graphs: [afterSnapshot], holdVolumeIds: [OWNER], timeoutMs: 3000 })));
  expect(acks.map((a) => a.status)).toEqual([Status.OK, Status.OK]);
  const done = await Promise.all(clients.map((c) => control(c, { kind: "commit", fenceId: FENCE })));
  expect(done.map((a) => a.status)).toEqual([Status.OK, Status.OK]);
}

async function layerSum(c: DataPlaneClient, layerId: string, ext: number, epoch = 1): Promise<string> {
  const { hi, lo } = idToHalves(layerId);
  const r = await c.request({ opcode: Op.CHECKSUM, flags: Flag.LAYER, epoch, volumeHi: hi, volumeLo: lo, extentIndex: ext, offset: 0, length: 0 });
  expect(r.status).toBe(Status.OK);
  return Buffer.from(r.payload).toString("hex");
}

async function expectLayersIdentical(a: number, b: number, layers: string[]): Promise<void> {
  for (const ext of [0, 1]) for (const l of layers) expect(await layerSum(clients[a]!, l, ext)).toBe(await layerSum(clients[b]!, l, ext));
}

const used = (n: SdsCore) => n.store.usedBytes(n.store.slots[0]!);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("snapshot on the data path", () => {
  test("after a snapshot the volume takes new writes by copy-on-write and the snapshot keeps the old bytes, on both copies", async () => {
    const a = pattern(2 * MiB, 1);
    expect((await base.write(clients[0]!, 0, 0, a)).status).toBe(Status.OK);
    expect(used(nodes[0]!)).toBe(2 * MiB);
    await takeSnapshot();
    const b = pattern(4096, 2);
    expect((await base.write(clients[0]!, 0, 512 * 1024, b)).status).toBe(Status.OK); // partial: copies chunk 0 first
    expect(used(nodes[0]!)).toBe(3 * MiB);
    expect(used(nodes[1]!)).toBe(3 * MiB);
    const expectV = a.slice();
    expectV.set(b, 512 * 1024);
    expect(same(await base.read(clients[0]!, 0, 0, 2 * MiB), expectV)).toBe(true);
    expect(same(await snap.read(clients[0]!, 0, 0, 2 * MiB), a)).toBe(true);
    // the snapshot is writable too (a clone): its own layer, invisible to the base
    expect((await snap.write(clients[0]!, 0, 1 * MiB, pattern(4096, 3))).status).toBe(Status.OK);
    expect(same(await base.read(clients[0]!, 0, 1 * MiB, 4096), a.subarray(1 * MiB, 1 * MiB + 4096))).toBe(true);
    await expectLayersIdentical(0, 1, [OWNER, L_V1, L_S1]);
    expect(await snap.checksum(clients[0]!, 0)).toBe(await snap.checksum(clients[1]!, 0));
  });

  test("on devices of unknown content, writes and copy-on-write take chunks zeroed off the event loop (gate), never garbage", async () => {
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    for (const i of [0, 1]) {
      fs.mkdirSync(join(dir, `sds${i}`), { recursive: true });
      fs.writeFileSync(join(dir, `sds${i}`, "dev0.img"), new Uint8Array(64 * MiB).fill(0xee));
    }
    nodes = [startNode(dir, 0), startNode(dir, 1)];
    applyAll(nodes, plan());
    clients = nodes.map((n) => clientTo(n));
    expect(nodes[0]!.store.slots[0]!.dev.createdZeroFilled).toBe(false);
    const a = pattern(4096, 7);
    expect((await base.write(clients[0]!, 0, 4096, a)).status).toBe(Status.OK); // virgin chunk: prepared first
    await takeSnapshot();
    const b = pattern(4096, 8);
    expect((await base.write(clients[0]!, 0, 3 * 4096, b)).status).toBe(Status.OK); // copy-on-write into a prepared chunk
    const old = new Uint8Array(MiB);
    old.set(a, 4096);
    const now = old.slice();
    now.set(b, 3 * 4096);
    for (const c of clients.slice(0, 1)) {
      expect(same(await base.read(c, 0, 0, MiB), now)).toBe(true);
      expect(same(await snap.read(c, 0, 0, MiB), old)).toBe(true);
    }
    await expectLayersIdentical(0, 1, [OWNER, L_V1]);
    for (const n of nodes) expect(n.store.stats.zeroedOnLoop).toBe(0);
  });

  test("the first write into a chunk the parent holds copies it off the event loop (gate): overlapping writes behind it apply in order, reads go on", async () => {
    const a = pattern(2 * MiB, 11);
    expect((await base.write(clients[0]!, 0, 0, a)).status).toBe(Status.OK);
    await takeSnapshot();
    const b1 = pattern(8192, 12);
    const b2 = pattern(4096, 13);
    // pipelined: the first needs a copy of chunk 0; the read and the second write come behind it
    const w1 = base.write(clients[0]!, 0, 512 * 1024, b1);
    const r = base.read(clients[0]!, 0, 0, MiB);
    const w2 = base.write(clients[0]!, 0, 512 * 1024 + 4096, b2);
    const w3 = base.write(clients[0]!, 0, MiB + 100 * 4096, b2); // chunk 1: its own copy
    expect((await Promise.all([w1, w2, w3])).map((x) => x.status)).toEqual([Status.OK, Status.OK, Status.OK]);
    const seen = await r;
    const withB1 = a.slice(0, MiB);
    withB1.set(b1, 512 * 1024);
    const withBoth = withB1.slice();
    withBoth.set(b2, 512 * 1024 + 4096);
    // an unacknowledged write may or may not be visible to a read; a mix of the two writes is not a state
    expect([a.subarray(0, MiB), withB1, withBoth].some((x) => same(seen, x))).toBe(true);
    const expectV = a.slice();
    expectV.set(b1, 512 * 1024);
    expectV.set(b2, 512 * 1024 + 4096);
    expectV.set(b2, MiB + 100 * 4096);
    expect(same(await base.read(clients[0]!, 0, 0, 2 * MiB), expectV)).toBe(true); // the secondary: layer checksums below
    expect(same(await snap.read(clients[0]!, 0, 0, 2 * MiB), a)).toBe(true);
    for (const n of nodes) {
      expect(n.store.stats.copiesPrepared).toBe(2); // primary and secondary each copied chunks 0 and 1
      expect(n.store.stats.copiesOnLoop).toBe(0);
      expect(n.store.stats.zeroedOnLoop).toBe(0);
      expect(used(n)).toBe(4 * MiB);
    }
    await expectLayersIdentical(0, 1, [OWNER, L_V1, L_S1]);
  });

  test("a prepared copy is discarded when a chunk of the extent was freed while it was made; the write copies again and reads right", async () => {
    const a = pattern(2 * MiB, 21);
    expect((await base.write(clients[0]!, 0, 0, a)).status).toBe(Status.OK);
    await takeSnapshot();
    const clone = pattern(4096, 22);
    expect((await snap.write(clients[0]!, 0, MiB, clone)).status).toBe(Status.OK); // the clone's layer owns chunk 1
    const store = nodes[0]!.store;
    const e = store.find(OWNER, 0)!;
    const layer = e.head;
    const b = pattern(4096, 23);
    expect(store.mustWait(e, layer, 4096, 4096)).toBe(true);
    const done: Status[] = [];
    store.waitFor(e, layer, 4096, 4096, () => {
      done.push(store.write(e, 4096, b, layer));
    });
    // while the copy runs, a chunk of the extent leaves a mapping (the clone's layer is dropped)
    expect(store.dropLayer(e, idToHalves(L_S1).lo)).toBe(1);
    for (let i = 0; i < 200 && done.length === 0; i++) await Bun.sleep(5);
    expect(done).toEqual([Status.OK]);
    expect(store.stats.copiesDiscarded).toBe(1);
    expect(store.stats.copiesOnLoop).toBe(1);
    const out = new Uint8Array(MiB);
    store.read(e, 0, out, layer);
    const expectV = a.slice(0, MiB);
    expectV.set(b, 4096);
    expect(same(out, expectV)).toBe(true);
    expect(e.gate).toBeNull();
  });

  test("a parent's chunk that both children overwrote is freed once their copies are durable (FLUSH), on both copies; what each reads stays", async () => {
    const a = pattern(2 * MiB, 31);
    expect((await base.write(clients[0]!, 0, 0, a)).status).toBe(Status.OK);
    await takeSnapshot();
    const v = pattern(4096, 32);
    const cl = pattern(4096, 33);
    expect((await base.write(clients[0]!, 0, 4096, v)).status).toBe(Status.OK); // the volume's layer copies chunk 0
    expect((await snap.write(clients[0]!, 0, 8192, cl)).status).toBe(Status.OK); // the clone's layer copies chunk 0 too
    for (const n of nodes) expect(used(n)).toBe(4 * MiB); // OWNER's chunk 0 is unreachable but pending rows keep it
    expect((await flushReq(clients[0]!)).status).toBe(Status.OK); // settles both copies (the peer's flush is forwarded)
    for (const n of nodes) {
      expect(used(n)).toBe(3 * MiB);
      expect(n.store.stats.unreachableFreed).toBe(1);
    }
    const expectV = a.slice();
    expectV.set(v, 4096);
    const expectS = a.slice();
    expectS.set(cl, 8192);
    expect(same(await base.read(clients[0]!, 0, 0, 2 * MiB), expectV)).toBe(true);
    expect(same(await snap.read(clients[0]!, 0, 0, 2 * MiB), expectS)).toBe(true);
    await expectLayersIdentical(0, 1, [OWNER, L_V1, L_S1]);
    // a restart keeps it so (the release was committed with the settling)
    for (const c of clients) c.close();
    for (const n of nodes) await n.stop();
    nodes = [startNode(dir, 0), startNode(dir, 1)];
    applyAll(nodes, plan(), 2, 0, [afterSnapshot]);
    clients = nodes.map((n) => clientTo(n));
    for (const n of nodes) expect(used(n)).toBe(3 * MiB);
    expect(same(await snap.read(clients[0]!, 0, 0, 2 * MiB), expectS)).toBe(true);
  });

  test("a fence holds new writes (reads go on) until commit; the held write lands after the cut", async () => {
    const a = pattern(4096, 4);
    await base.write(clients[0]!, 0, 0, a);
    expect((await control(clients[0]!, { kind: "fence", fenceId: FENCE, graphs: [afterSnapshot], holdVolumeIds: [OWNER], timeoutMs: 3000 })).status).toBe(Status.OK);
    expect((await control(clients[1]!, { kind: "fence", fenceId: FENCE, graphs: [afterSnapshot], holdVolumeIds: [OWNER], timeoutMs: 3000 })).status).toBe(Status.OK);
    let replied = false;
    const held = base.write(clients[0]!, 0, 0, pattern(4096, 5)).then((r) => {
      replied = true;
      return r;
    });
    expect(same(await base.read(clients[0]!, 0, 0, 4096), a)).toBe(true);
    await Bun.sleep(50);
    expect(replied).toBe(false);
    expect(nodes[0]!.node.fence.parkedCount).toBe(1);
    await Promise.all(clients.map((c) => control(c, { kind: "commit", fenceId: FENCE })));
    expect((await held).status).toBe(Status.OK);
    expect(same(await snap.read(clients[0]!, 0, 0, 4096), a)).toBe(true);
    expect(same(await base.read(clients[0]!, 0, 0, 4096), pattern(4096, 5))).toBe(true);
  });

  test("abort: the held write goes into the old layer, no snapshot exists", async () => {
    await control(clients[0]!, { kind: "fence", fenceId: FENCE, graphs: [afterSnapshot], holdVolumeIds: [OWNER], timeoutMs: 3000 });
    const held = base.write(clients[0]!, 0, 0, pattern(4096, 6));
    await Bun.sleep(20);
    await control(clients[0]!, { kind: "abort", fenceId: FENCE });
    expect((await held).status).toBe(Status.OK);
    expect((await snap.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    expect(nodes[0]!.node.graphs.owner(idToHalves(OWNER).lo)).toBeNull();
  });

  test("a trimmed chunk over snapshot data is owned as zeros; the snapshot still reads its data", async () => {
    const a = pattern(1 * MiB, 7);
    await base.write(clients[0]!, 0, 0, a);
    await takeSnapshot();
    expect((await base.req(clients[0]!, Op.TRIM, 0, 0, 1 * MiB)).status).toBe(Status.OK);
    expect((await base.read(clients[0]!, 0, 0, 1 * MiB)).every((x) => x === 0)).toBe(true);
    expect(same(await snap.read(clients[0]!, 0, 0, 1 * MiB), a)).toBe(true);
    expect(used(nodes[1]!)).toBe(1 * MiB);
    await expectLayersIdentical(0, 1, [OWNER, L_V1, L_S1]);
  });

  test("removing the snapshot folds its parent into the volume's layer: only the shadowed chunks are freed, no data moves", async () => {
    await base.write(clients[0]!, 0, 0, pattern(3 * MiB, 8)); // chunks 0..2 in OWNER
    await takeSnapshot();
    await base.write(clients[0]!, 0, 0, pattern(1 * MiB, 9)); // chunk 0 overwritten whole (no copy)
    expect(used(nodes[0]!)).toBe(4 * MiB);
    const before = await base.read(clients[0]!, 0, 0, 3 * MiB);
    const reads = nodes[0]!.node.stats.reads;
    applyAll(nodes, plan(), 2, 0, [afterRemove]);
    expect(used(nodes[0]!)).toBe(3 * MiB); // OWNER's chunk 0 (only the snapshot read it) is free
    expect(used(nodes[1]!)).toBe(3 * MiB);
    expect(nodes[0]!.node.stats.reads).toBe(reads);
    expect(same(await base.read(clients[0]!, 0, 0, 3 * MiB), before)).toBe(true);
    expect((await snap.req(clients[0]!, Op.READ, 0, 0, 4096)).status).toBe(Status.NOT_OWNER);
    await expectLayersIdentical(0, 1, [L_V1]);
  });

  test("a forwarded write into a frozen layer is refused; an unknown layer is stale", async () => {
    await takeSnapshot();
    const { hi, lo } = idToHalves(OWNER);
    // SDS 1 forwarding to SDS 0 as if it were the primary of extent 1 (it is)
    const peer = peerClientTo(nodes[0]!, 1);
    const frozen = await peer.request({ opcode: Op.REPL_WRITE, flags: Flag.LAYER, epoch: 1, volumeHi: hi, volumeLo: lo, extentIndex: 1, offset: 0, length: 4096 }, pattern(4096, 1));
    expect(frozen.status).toBe(Status.STALE_EPOCH);
    const unknown = idToHalves("1a000000000000ff");
    const stale = await peer.request({ opcode: Op.REPL_WRITE, flags: Flag.LAYER, epoch: 1, volumeHi: unknown.hi, volumeLo: unknown.lo, extentIndex: 1, offset: 0, length: 4096 }, pattern(4096, 1));
    peer.close();
    expect(stale.status).not.toBe(Status.OK);
  });

  test("a full copy to a new SDS carries every layer; the layers survive a restart", async () => {
    await base.write(clients[0]!, 0, 0, pattern(2 * MiB, 10));
    await takeSnapshot();
    await base.write(clients[0]!, 0, 4096, pattern(4096, 11));
    await snap.req(clients[0]!, Op.TRIM, 0, 1 * MiB, 1 * MiB); // snapshot owns chunk 1 as zeros
    nodes.push(startNode(dir, 2));
    clients.push(clientTo(nodes[2]!));
    applyAll(nodes, plan(2), 2, 0, [afterSnapshot]);
    for (let i = 0; i < 200 && nodes[0]!.node.copies.reports().find((r) => r.extentIndex === 0)?.done !== true; i++) await Bun.sleep(20);
    expect(nodes[0]!.node.copies.reports().find((r) => r.extentIndex === 0)?.done).toBe(true);
    for (const l of [OWNER, L_V1, L_S1]) expect(await layerSum(clients[2]!, l, 0)).toBe(await layerSum(clients[0]!, l, 0));
    const vBefore = await base.read(clients[0]!, 0, 0, 2 * MiB);
    const sBefore = await snap.read(clients[0]!, 0, 0, 2 * MiB);
    clients[0]!.close();
    await nodes[0]!.stop();
    nodes[0] = startNode(dir, 0);
    clients[0] = clientTo(nodes[0]!);
    applyAll(nodes, plan(), 3, 0, [afterSnapshot]);
    expect(same(await base.read(clients[0]!, 0, 0, 2 * MiB), vBefore)).toBe(true);
    expect(same(await snap.read(clients[0]!, 0, 0, 2 * MiB), sBefore)).toBe(true);
  });
});

describe("fence edge cases", () => {
  test("a forwarded write into the old layer while a fence is pending does not commit it (the primary may have aborted)", async () => {
    await control(clients[1]!, { kind: "fence", fenceId: FENCE, graphs: [afterSnapshot], holdVolumeIds: [OWNER], timeoutMs: 3000 });
    // SDS 0 (primary of extent 0) never got the fence: its write forwards into the owner layer
    expect((await base.write(clients[0]!, 0, 0, pattern(4096, 12))).status).toBe(Status.OK);
    expect(nodes[1]!.node.graphs.pendingOf(FENCE)).toHaveLength(1);
    expect(nodes[1]!.node.stats.fencesCommitted).toBe(0);
    await control(clients[1]!, { kind: "abort", fenceId: FENCE });
    expect(await base.checksum(clients[0]!, 0)).toBe(await base.checksum(clients[1]!, 0));
  });
});

describe("copy-on-write durability", () => {
  test("a copied chunk's mapping stays pending until a FLUSH synced its bytes; after a host reboot a pending one is dropped (old content), after a plain restart it stands", async () => {
    const a = pattern(1 * MiB, 20);
    const b = pattern(4096, 21);
    await base.write(clients[0]!, 0, 0, a);
    await flushReq(clients[0]!);
    await takeSnapshot();
    expect((await base.write(clients[0]!, 0, 4096, b)).status).toBe(Status.OK); // acknowledged at once: no sync
    const pendingRows = (n: SdsCore) => n.store.meta.sqlite.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM sds_chunk WHERE pending != 0").get()!.n;
    expect(pendingRows(nodes[0]!)).toBe(1);
    expect(pendingRows(nodes[1]!)).toBe(1);
    expect((await flushReq(clients[0]!)).status).toBe(Status.OK);
    expect(pendingRows(nodes[0]!)).toBe(0);
    expect(pendingRows(nodes[1]!)).toBe(0); // the peer's flush (LOCAL_ONLY) settles its copy too
    const withB = a.slice();
    withB.set(b, 4096);
    // as if the SDS died before a FLUSH settled the row
    const restart = async (hostRebooted: boolean) => {
      nodes[0]!.store.meta.sqlite.run(`UPDATE sds_chunk SET pending = 99 WHERE layer_id = '${L_V1}'`);
      clients[0]!.close();
      await nodes[0]!.stop();
      const d = join(dir, "sds0");
      nodes[0] = startSdsCore({ sdsId: sdsIdOf(0), mdmId: MDM_ID, dataDir: d, host: "127.0.0.1", port: 0, devices: [{ deviceId: deviceIdOf(0), path: join(d, "dev0.img") }], hostRebooted });
      clients[0] = clientTo(nodes[0]!);
      applyAll(nodes, plan(), 3, 0, [afterSnapshot]);
    };
    await restart(false); // a kill -9: the page cache kept the bytes, the mapping stands
    expect(same(await base.read(clients[0]!, 0, 0, 1 * MiB), withB)).toBe(true);
    await restart(true); // a power cut: the bytes may be gone, the chunk shows its old content
    expect(same(await base.read(clients[0]!, 0, 0, 1 * MiB), a)).toBe(true);
    expect(used(nodes[0]!)).toBe(1 * MiB);
  });
});

describe("resync with layers", () => {
  test("a copy away while the volume took copy-on-write writes and a snapshot was removed resyncs identical in every layer", async () => {
    const one = (x: { replicas: number[]; epoch: number; away?: number[]; target?: { sds: number; mode: "resync" } }): ExtentPlan[] => [
      { volumeId: OWNER, extentBytes: EXTENT, extents: [{ index: 0, ...x }] },
    ];
    applyAll(nodes, one({ replicas: [0, 1], epoch: 1 }), 2, 0, [afterSnapshot]);
    await base.write(clients[0]!, 0, 0, pattern(3 * MiB, 30)); // before: all in the base's layer L_V1
    applyAll(nodes, one({ replicas: [0], epoch: 2, away: [1] }), 3, 0, [afterSnapshot]);
    await base.write(clients[0]!, 0, 1 * MiB + 100, pattern(4096, 31), { epoch: 2 });
    // while SDS 1 is away (it hears nothing), a snapshot is taken and removed again on SDS 0
    const snapped: VTreeGraph = {
      ownerId: OWNER,
      version: 3,
      layers: [...afterSnapshot.layers.map((l) => ({ ...l, frozen: l.layerId === OWNER || l.layerId === L_V1 })), { layerId: "1a00000000000005", parentLayerId: L_V1, frozen: false }, { layerId: "1a00000000000006", parentLayerId: L_V1, frozen: false }],
      members: [
        { volumeId: OWNER, layerId: "1a00000000000005" },
        { volumeId: SNAP, layerId: L_S1 },
        { volumeId: "0a00000000000007", layerId: "1a00000000000006" },
      ],
      merges: [],
    };
    nodes[0]!.node.applyAssignments(assignmentsFor(0, nodes, one({ replicas: [0], epoch: 2, away: [1] }), 4, 0, [snapped]));
    await base.write(clients[0]!, 0, 2 * MiB + 8, pattern(4096, 32), { epoch: 2 }); // copy-on-write into ...05
    const removed: VTreeGraph = {
      ownerId: OWNER,
      version: 4,
      layers: [
        { layerId: OWNER, parentLayerId: null, frozen: true },
        { layerId: L_S1, parentLayerId: OWNER, frozen: false },
        { layerId: "1a00000000000005", parentLayerId: OWNER, frozen: false },
      ],
      members: [
        { volumeId: OWNER, layerId: "1a00000000000005" },
        { volumeId: SNAP, layerId: L_S1 },
      ],
      merges: [{ fromLayerId: L_V1, intoLayerId: "1a00000000000005" }],
    };
    nodes[0]!.node.applyAssignments(assignmentsFor(0, nodes, one({ replicas: [0], epoch: 2, away: [1] }), 5, 0, [removed]));
    // back within the grace period: SDS 1 gets the graph (with the fold it missed) and a resync
    applyAll(nodes, one({ replicas: [0], epoch: 3, target: { sds: 1, mode: "resync" } }), 6, 0, [removed]);
    for (let i = 0; i < 200 && nodes[0]!.node.copies.reports()[0]?.done !== true; i++) await Bun.sleep(20);
    expect(nodes[0]!.node.copies.reports()[0]?.done).toBe(true);
    applyAll(nodes, one({ replicas: [0, 1], epoch: 4 }), 7, 0, [removed]);
    for (const l of [OWNER, L_S1, "1a00000000000005"]) expect(await layerSum(clients[1]!, l, 0, 4)).toBe(await layerSum(clients[0]!, l, 0, 4));
    expect(used(nodes[1]!)).toBe(used(nodes[0]!));
  });
});
