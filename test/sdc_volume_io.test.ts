// The SDC's IO router against scripted data-plane links: where FLUSH goes and when it is
// acknowledged (the NBD multi-connection promise), and retries through map changes.

import { expect, test } from "bun:test";
import type { VolumeMap } from "../src/proto/cluster_api.ts";
import { Op, Status, opName } from "../src/proto/dataplane.ts";
import type { DataRequest, DataReply } from "../src/proto/dataplane_client.ts";
import { VolumeIo, type SdsLink } from "../src/sdc/volume_io.ts";

const EXTENT = 1 << 24;
const OK: DataReply = { status: Status.OK, payload: new Uint8Array(0) };

function volume(replicas: string[][]): VolumeMap {
  return {
    volumeId: "0000000a00000001",
    name: "v",
    sizeBytes: EXTENT * replicas.length,
    extentSizeBytes: EXTENT,
    accessMode: "ReadWrite",
    extents: replicas.map((r) => ({ replicas: r, epoch: 1 })),
    limitIops: 0,
    limitBwKbps: 0,
  };
}

/** Links that log every request as "sds:OP" and let the test hold FLUSH replies. */
function scripted() {
  const log: string[] = [];
  const heldFlushes: (() => void)[] = [];
  const down = new Set<string>();
  const link = (sdsId: string): SdsLink => ({
    request(h: DataRequest): Promise<DataReply> {
      log.push(`${sdsId}:${opName(h.opcode)}`);
      if (down.has(sdsId)) return Promise.resolve({ status: Status.UNAVAILABLE, payload: new Uint8Array(0) });
      if (h.opcode === Op.FLUSH) return new Promise((r) => heldFlushes.push(() => r(OK)));
      return Promise.resolve(OK);
    },
  });
  return { log, heldFlushes, down, link };
}

test("a FLUSH is not acknowledged before an earlier FLUSH still running (multi-conn)", async () => {
  const s = scripted();
  const io = new VolumeIo(volume([["a", "b"]]), { link: s.link, refreshMaps: async () => {}, sleep: async () => {}, nowMs: () => 0 });
  await io.write(0, new Uint8Array(4096), false);
  const order: string[] = [];
  const f1 = io.flush().then(() => order.push("flush1"));
  const f2 = io.flush().then(() => order.push("flush2"));
  await Bun.sleep(5);
  expect(order).toEqual([]); // flush2 had nothing new to send, but must wait for flush1
  s.heldFlushes.shift()!();
  await Promise.all([f1, f2]);
  expect(order.sort()).toEqual(["flush1", "flush2"]);
});

test("FLUSH goes to each written extent's current primary, once per SDS", async () => {
  const s = scripted();
  const io = new VolumeIo(volume([["a", "b"], ["b", "c"], ["a", "c"]]), { link: s.link, refreshMaps: async () => {}, sleep: async () => {}, nowMs: () => 0 });
  await io.write(0, new Uint8Array(4096), false);
  await io.write(2 * EXTENT, new Uint8Array(4096), false);
  const f = io.flush();
  await Bun.sleep(1);
  for (const h of s.heldFlushes.splice(0)) h();
  await f;
  expect(s.log.filter((l) => l.endsWith("FLUSH"))).toEqual(["a:FLUSH"]);
});

test("when the primary that acknowledged a write is gone, FLUSH reaches the new primary", async () => {
  const s = scripted();
  let map = volume([["a", "b"]]);
  const io = new VolumeIo(map, {
    link: s.link,
    refreshMaps: async () => {
      map = volume([["b"]]); // the MDM moved the extent to its surviving copy
      io.setMap(map);
    },
    sleep: async () => {},
    nowMs: () => 0,
  });
  await io.write(0, new Uint8Array(4096), false);
  s.down.add("a");
  const f = io.flush();
  for (let i = 0; i < 20 && s.heldFlushes.length === 0; i++) await Bun.sleep(1);
  s.heldFlushes.shift()!();
  await f;
  expect(s.log.filter((l) => l.endsWith("FLUSH"))).toEqual(["a:FLUSH", "b:FLUSH"]);
});
