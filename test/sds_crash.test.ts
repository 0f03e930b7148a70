// kill -9 of both SDS processes right after writes were acknowledged (no FLUSH): every
// acknowledged write is there after a restart, on both copies, with its chunk allocation.

import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Op, Status } from "../src/proto/dataplane.ts";
import { MiB, Vol, clientTo, pattern, readCopy, startNode, tmpDir, type ExtentPlan } from "./sds_harness.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";

const VOL = "0a00000000000005";
const vol = new Vol(VOL);
const plan: ExtentPlan[] = [{ volumeId: VOL, extentBytes: 16 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }];
const dir = tmpDir("sdscrash");

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

async function spawnSds(i: number, ports: number[]) {
  const child = Bun.spawn([process.execPath, `${import.meta.dir}/sds_child.ts`, String(i), ports.join(","), dir, JSON.stringify(plan)], { stdout: "pipe", stderr: "inherit" });
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (!value || !new TextDecoder().decode(value).includes("ready")) throw new Error(`SDS child ${i} did not start`);
  return child;
}

test("acknowledged writes survive kill -9 of both SDSs", async () => {
  const ports = [freePort(), freePort()];
  const children = [await spawnSds(0, ports), await spawnSds(1, ports)];
  const fakeNode = { port: ports[0]! } as SdsCore;
  const c = clientTo(fakeNode);
  const writes: { off: number; data: Uint8Array }[] = [];
  const pending = [];
  for (let i = 0; i < 300; i++) {
    const off = ((i * 7919) % 4000) * 4096; // spread over ~16 MiB: many fresh chunks
    const data = pattern(4096, 1000 + i);
    writes.push({ off, data });
    pending.push(vol.write(c, 0, off, data));
  }
  const rs = await Promise.all(pending);
  expect(rs.every((r) => r.status === Status.OK)).toBe(true);
  for (const ch of children) ch.kill("SIGKILL");
  await Promise.all(children.map((ch) => ch.exited));
  c.close();

  // restart both in this process on the same dirs: no assignments re-applied, no flush done
  const nodes = [startNode(dir, 0, 64 * MiB), startNode(dir, 1, 64 * MiB)];
  try {
    // a restarted SDS serves nothing before the MDM gave it assignments and a lease
    const cl = clientTo(nodes[0]!);
    expect((await vol.req(cl, Op.READ, 0, 0, 4096)).status).toBe(Status.UNAVAILABLE);
    cl.close();
    const model = new Map<number, Uint8Array>();
    for (const w of writes) model.set(w.off, w.data);
    for (const n of nodes) {
      for (const [off, data] of model) {
        const back = readCopy(n, VOL, 0, off, 4096);
        expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
      }
    }
    expect(nodes[0]!.store.usedBytes(nodes[0]!.store.slots[0]!)).toBe(nodes[1]!.store.usedBytes(nodes[1]!.store.slots[0]!));
  } finally {
    for (const n of nodes) await n.stop();
  }
}, 60_000);
