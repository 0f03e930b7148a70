// Guards an assumption of the data plane's zero-copy paths: Bun hands every socket `data`
// event a fresh buffer and never writes into one it handed out before. FrameReader keeps
// views of those buffers across events and the SDS forwards payload views to its peer without
// copying them (SocketWriter `payloadImmutable`); a large write payload is kept as the views of
// several events (scatter.ts: NBD ByteQueue.takePayload, FrameReader.scatterPayloads), over TLS
// too. If a Bun upgrade starts reusing buffers, this test fails and those paths must copy.

import { expect, test } from "bun:test";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";

for (const tls of [false, true]) test(`Bun socket data buffers are fresh per event and never rewritten${tls ? " (TLS)" : ""}`, async () => {
  const cert = tls ? generateSelfSignedCert({ commonName: "localhost", hosts: ["127.0.0.1"] }) : null;
  const kept: Uint8Array[] = [];
  const starts: number[] = [];
  let pos = 0;
  const srv = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    ...(cert === null ? {} : { tls: { cert: cert.certPem, key: cert.keyPem } }),
    socket: {
      data(_s, d) {
        kept.push(d);
        starts.push(pos);
        pos += d.byteLength;
      },
    },
  });
  const total = 400;
  let i = 0;
  let pend: Uint8Array | null = null;
  const c = await Bun.connect({
    hostname: "127.0.0.1",
    port: srv.port,
    ...(cert === null ? {} : { tls: { rejectUnauthorized: false } }),
    socket: { data() {}, drain: () => pump() },
  });
  function pump(): void {
    while (i < total) {
      const b: Uint8Array = pend ?? new Uint8Array(65536).fill(i & 0xff);
      const n = c.write(b);
      if (n < b.byteLength) {
        pend = b.subarray(n);
        return;
      }
      pend = null;
      i++;
    }
  }
  pump();
  const deadline = performance.now() + 10_000;
  while (pos < total * 65536 && performance.now() < deadline) await Bun.sleep(10);
  c.end();
  srv.stop(true);
  expect(pos).toBe(total * 65536);
  expect(kept.length).toBeGreaterThan(1);
  // every kept buffer still holds exactly the bytes of its stream position
  let bad = 0;
  for (let k = 0; k < kept.length; k++) {
    const d = kept[k]!;
    for (let j = 0; j < d.byteLength; j += 512) if (d[j] !== (Math.floor((starts[k]! + j) / 65536) & 0xff)) bad++;
  }
  expect(bad).toBe(0);
});
