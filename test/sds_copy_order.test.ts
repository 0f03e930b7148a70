// The copy lane's ordering on the primary (src/sds/copy_order.ts): a forward to a copy target that
// overlaps a chunk whose copy frames are unanswered waits until they are; one overlapping a
// forward held before it waits behind it; others pass at once; held forwards leave in order.

import { expect, test } from "bun:test";
import { CopyOrder } from "../src/sds/copy_order.ts";

const MiB = 1024 * 1024;

function recorder(): { sent: string[]; send: (name: string) => () => void } {
  const sent: string[] = [];
  return { sent, send: (name) => () => sent.push(name) };
}

test("a forward overlapping a chunk in flight is held until every frame of that chunk is answered", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 3, 1); // REBUILD_OWNERS
  o.begin("t", 3, 1); // REBUILD_WRITE
  expect(o.holdIfNeeded("t", 3 * MiB + 4096, 4096, r.send("w1"))).toBe(true);
  o.end("t", 3);
  expect(r.sent).toEqual([]); // one frame of the chunk still unanswered
  o.end("t", 3);
  expect(r.sent).toEqual(["w1"]);
  expect(o.idle).toBe(true);
});

test("forwards of other chunks or other targets pass at once", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 3, 2);
  expect(o.holdIfNeeded("t", 4 * MiB, 4096, r.send("other chunk"))).toBe(false);
  expect(o.holdIfNeeded("t", 3 * MiB - 4096, 4096, r.send("chunk before"))).toBe(false);
  expect(o.holdIfNeeded("u", 3 * MiB, 4096, r.send("other target"))).toBe(false);
  expect(r.sent).toEqual([]); // not held: the caller sends those itself
  expect(o.idle).toBe(false);
});

test("a write spanning into the chunk in flight is held; zero-length ranges count their chunk", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 5, 1);
  expect(o.holdIfNeeded("t", 5 * MiB - 4096, 8192, r.send("span"))).toBe(true);
  expect(o.holdIfNeeded("t", 5 * MiB, 0, r.send("zero-length"))).toBe(true);
  o.end("t", 5);
  expect(r.sent).toEqual(["span", "zero-length"]);
});

test("a forward overlapping an earlier held one waits behind it even when no copy blocks it; non-overlapping ones pass", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 1, 1);
  // held: spans chunks 1 and 2
  expect(o.holdIfNeeded("t", 2 * MiB - 4096, 8192, r.send("a (1-2)"))).toBe(true);
  // chunk 2 has no copy in flight, but overlaps "a": must not overtake it
  expect(o.holdIfNeeded("t", 2 * MiB + 4096, 4096, r.send("b (2)"))).toBe(true);
  // chunk 7: nothing in the way
  expect(o.holdIfNeeded("t", 7 * MiB, 4096, r.send("c (7)"))).toBe(false);
  o.end("t", 1);
  expect(r.sent).toEqual(["a (1-2)", "b (2)"]);
  expect(o.idle).toBe(true);
});

test("held forwards leave in order, each once nothing it overlaps is in flight", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 1, 1);
  o.begin("t", 2, 1);
  expect(o.holdIfNeeded("t", 2 * MiB, 4096, r.send("x (2)"))).toBe(true);
  expect(o.holdIfNeeded("t", 1 * MiB, 4096, r.send("y (1)"))).toBe(true);
  expect(o.holdIfNeeded("t", 1 * MiB, 2 * MiB, r.send("z (1-2)"))).toBe(true);
  o.end("t", 1);
  // y's chunk is answered and no earlier held forward overlaps it; z still waits for chunk 2 (and x)
  expect(r.sent).toEqual(["y (1)"]);
  o.end("t", 2);
  expect(r.sent).toEqual(["y (1)", "x (2)", "z (1-2)"]);
  expect(o.idle).toBe(true);
});

test("a chunk copied again while a forward is held keeps it held until that copy is answered too", () => {
  const o = new CopyOrder();
  const r = recorder();
  o.begin("t", 4, 1);
  expect(o.holdIfNeeded("t", 4 * MiB, 4096, r.send("w"))).toBe(true);
  o.begin("t", 4, 1); // a retry of the chunk queued before the first copy's answer
  o.end("t", 4);
  expect(r.sent).toEqual([]);
  o.end("t", 4);
  expect(r.sent).toEqual(["w"]);
});
