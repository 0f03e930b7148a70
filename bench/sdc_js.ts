// The SDC's own JavaScript per IO, without sockets, kernel or other processes: an NbdSession (fake
// socket) over a VolumeIo over a DataPlaneClient whose socket is a fake sink, fed NBD requests
// and SDS reply frames in batches as the sockets would deliver them (each batch a fresh Buffer,
// as Bun's data events are). Prints ns of JS per IO, repeatable to a few percent on an idle core,
// so a change to the read/write path can be judged without the noise of the whole cluster.
//
//   npx bun bench/sdc_js.ts [--ops read,write] [--qd 16,1] [--ios 200000]

import { parseArgs } from "node:util";
import { HEADER_BYTES, Op, Flag, Status, encodeHeader, type FrameHeader } from "../src/proto/dataplane.ts";
import { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { Cmd, REQUEST_BYTES, encodeRequest } from "../src/proto/nbd.ts";
import { SocketWriter } from "../src/proto/socket_writer.ts";
import { NbdSession } from "../src/sdc/nbd_session.ts";
import { VolumeIo } from "../src/sdc/volume_io.ts";

const { values } = parseArgs({ options: { ops: { type: "string", default: "read,write" }, qd: { type: "string", default: "16,1" }, ios: { type: "string", default: "200000" }, reps: { type: "string", default: "7" } } });
const EXTENT = 64 * 1024 * 1024;
const BS = 4096;

/** A sink that takes every byte and keeps the last writes for the bench to parse. */
class Sink {
  chunks: Uint8Array[] = [];
  write(data: Uint8Array, off = 0, len = data.byteLength - off): number {
    this.chunks.push(data.slice(off, off + len));
    return len;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  take(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    return b;
  }
}

function setup() {
  const dpSink = new Sink();
  const client = new DataPlaneClient({ host: "x", port: 1, credentials: { role: NodeRole.SDC, nodeId: "0000000000000001", keyFor: () => null } });
  const c = client as unknown as { state: string; writer: SocketWriter; reader: { push(d: Uint8Array, f: unknown): void }; onFrame: unknown };
  c.state = "open";
  c.writer = new SocketWriter(dpSink);
  const io = new VolumeIo(
    {
      volumeId: "0000000a00000001",
      name: "v",
      sizeBytes: EXTENT,
      extentSizeBytes: EXTENT,
      accessMode: "ReadWrite",
      extents: [{ replicas: ["5d50000000000001"], epoch: 1 }],
      limitIops: 0,
      limitBwKbps: 0,
    },
    { link: () => client, refreshMaps: async () => {}, sleep: async () => {}, nowMs: () => performance.now() },
  );
  const nbdSink = new Sink();
  const session = new NbdSession(1, nbdSink, { get: () => io, list: () => [io] }, "bench");
  const s = session as unknown as { phase: string; exp: unknown; exportName: string; hs: { structuredReplies: boolean } };
  s.phase = "request";
  s.exp = io;
  s.exportName = "v";
  s.hs.structuredReplies = true;
  return { dpSink, nbdSink, session, feedReplies: (b: Uint8Array) => c.reader.push(b, c.onFrame) };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

async function run(op: "read" | "write", qd: number, ios: number): Promise<number> {
  const { dpSink, nbdSink, session, feedReplies } = setup();
  const payload = Buffer.alloc(BS, 7);
  const reqBytes = op === "read" ? REQUEST_BYTES : REQUEST_BYTES + BS;
  const reply: FrameHeader = { opcode: Op.READ, flags: Flag.REPLY, status: Status.OK, requestId: 0, epoch: 1, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: BS, payloadLength: 0, gen: 0 };
  let cookie = 0;
  let ns = 0;
  let done = 0;
  const rounds = Math.ceil(ios / qd);
  for (let r = 0; r < rounds + 50; r++) {
    if (r === 50) ns = 0; // warm-up
    // qd requests arrive in one socket chunk (a fresh Buffer, as Bun hands a data event)
    const nbd = Buffer.allocUnsafe(qd * reqBytes);
    for (let i = 0; i < qd; i++) {
      const off = ((cookie * 7919) % (EXTENT / BS)) * BS;
      encodeRequest({ flags: 0, type: op === "read" ? Cmd.READ : Cmd.WRITE, cookieHi: 0, cookieLo: ++cookie, offsetBytes: off, lengthBytes: BS }).copy(nbd, i * reqBytes);
      if (op === "write") payload.copy(nbd, i * reqBytes + REQUEST_BYTES);
    }
    const t0 = Bun.nanoseconds();
    session.onData(nbd);
    await Promise.resolve(); // the batched socket write (a microtask)
    ns += Bun.nanoseconds() - t0;
    // the SDS's replies: one frame per request it got, in one chunk
    const sent = dpSink.take();
    const replyBytes = op === "read" ? HEADER_BYTES + BS : HEADER_BYTES;
    const frames = Buffer.allocUnsafe(qd * replyBytes);
    let n = 0;
    for (let at = 0; at < sent.length; ) {
      const id = sent.readUInt32LE(at + 8);
      const pl = sent.readUInt32LE(at + 36);
      if (sent[at + 4] === Op.GRANT) {
        at += HEADER_BYTES + pl;
        continue;
      }
      reply.requestId = id;
      reply.opcode = sent[at + 4] as typeof Op.READ;
      reply.payloadLength = op === "read" ? BS : 0;
      encodeHeader(frames, n * replyBytes, reply);
      n++;
      at += HEADER_BYTES + pl;
    }
    const t1 = Bun.nanoseconds();
    feedReplies(frames.subarray(0, n * replyBytes));
    await Promise.resolve();
    if (nbdSink.chunks.length === 0) await tick(); // replies flushed at the end of the loop iteration (QD > 1)
    ns += Bun.nanoseconds() - t1;
    const answered = nbdSink.take().length;
    const want = qd * (op === "read" ? 28 + BS : 16);
    if (answered !== want || n !== qd) throw new Error(`round ${r}: ${n} frames to the SDS, ${answered} NBD reply bytes (want ${qd}, ${want})`);
    if (r >= 50) done += qd;
    if (r % 64 === 0) await tick();
  }
  session.onClose();
  return ns / done;
}

for (const op of (values.ops ?? "read").split(",") as ("read" | "write")[]) {
  for (const qd of (values.qd ?? "16").split(",").map(Number)) {
    const xs: number[] = [];
    for (let i = 0; i < Number(values.reps); i++) xs.push(await run(op, qd, Number(values.ios)));
    xs.sort((a, b) => a - b);
    process.stdout.write(`${op} QD${qd}: ${xs[xs.length >> 1]!.toFixed(0)} ns of SDC JS per IO (min ${xs[0]!.toFixed(0)}, max ${xs[xs.length - 1]!.toFixed(0)})\n`);
  }
}
