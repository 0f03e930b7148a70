// DataPlaneClient's request timeout (the sweep that watches the oldest request id, with no
// record per request): a request nobody answers fails UNAVAILABLE between the timeout and the
// timeout plus two sweep intervals, and requests that are answered in time keep the connection.

import { expect, test } from "bun:test";
import { Flag, HEADER_BYTES, Op, Status, encodeFrame } from "../src/proto/dataplane.ts";
import { DataPlaneClient, type DataRequest } from "../src/proto/dataplane_client.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { SocketWriter } from "../src/proto/socket_writer.ts";

interface Internals {
  state: string;
  writer: SocketWriter;
  reader: { push(d: Uint8Array, f: unknown): void };
  onFrame: unknown;
  startSweep(): void;
}

/** A client whose connection is "open" on a fake socket that records what it is sent. */
function openClient(timeoutMs: number) {
  const sent: Uint8Array[] = [];
  const c = new DataPlaneClient({ host: "x", port: 1, requestTimeoutMs: timeoutMs, credentials: { role: NodeRole.SDC, nodeId: "0000000000000001", keyFor: () => null } });
  const i = c as unknown as Internals;
  i.state = "open";
  i.writer = new SocketWriter({ write: (d, o = 0, l = d.byteLength - o) => (sent.push(d.slice(o, o + l)), l) });
  i.startSweep();
  const answer = (requestId: number) =>
    i.reader.push(
      encodeFrame({ opcode: Op.PING, flags: Flag.REPLY, status: Status.OK, requestId, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, gen: 0 }),
      i.onFrame,
    );
  return { c, sent, answer };
}

const PING: DataRequest = { opcode: Op.PING, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 };

test("a request nobody answers fails UNAVAILABLE after the timeout, not before", async () => {
  const { c } = openClient(100);
  const t0 = performance.now();
  const st = await new Promise<number>((resolve) => c.send(PING, undefined, (s) => resolve(s)));
  const waited = performance.now() - t0;
  expect(st).toBe(Status.UNAVAILABLE);
  expect(waited).toBeGreaterThanOrEqual(100);
  expect(waited).toBeLessThan(100 + 2 * 100 + 400); // two sweep intervals, plus slack for a loaded box
  c.close();
});

test("requests answered in time never trip the timeout, even when they keep the connection busy", async () => {
  const { c, sent, answer } = openClient(100);
  let failed = 0;
  let ok = 0;
  const until = performance.now() + 450;
  while (performance.now() < until) {
    c.send(PING, undefined, (s) => (s === Status.OK ? ok++ : failed++));
    await Promise.resolve(); // the batched write
    const f = sent.pop()!;
    await Bun.sleep(20);
    answer(new DataView(f.buffer, f.byteOffset).getUint32(8, true));
  }
  expect(failed).toBe(0);
  expect(ok).toBeGreaterThan(10);
  expect(sent.every((f) => f.byteLength === HEADER_BYTES)).toBe(true);
  c.close();
});
