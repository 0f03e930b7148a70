// A long listing is streamed in pieces (src/mdm/rest/json_stream.ts): the bytes are exactly
// JSON.stringify's, the text comes in several pieces, and a REST listing long enough to be
// streamed answers the same objects as a short one would.

import { expect, test } from "bun:test";
import { jsonArrayStream, STREAM_FROM } from "../src/mdm/rest/json_stream.ts";
import { basic, MdmFixture } from "./mdm_fixture.ts";

async function pieces(s: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  const dec = new TextDecoder();
  for await (const chunk of s) out.push(dec.decode(chunk));
  return out;
}

test("the streamed text is JSON.stringify's, in pieces of the given size", async () => {
  const obj = (i: number) => ({ id: `v${i}`, name: i % 3 === 0 ? null : `n"${i}\u2028`, sizeInKb: i * 1024, skipped: undefined, nested: { a: [i, "x"] } });
  for (const [n, piece] of [[0, 10], [1, 10], [9, 10], [10, 10], [11, 10], [2500, 1000]] as const) {
    const list = Array.from({ length: n }, (_, i) => obj(i));
    const got = await pieces(jsonArrayStream(list, piece));
    expect(got.join("")).toBe(JSON.stringify(list));
    expect(got.length).toBe(Math.max(1, Math.ceil(n / piece)));
  }
});

test("GET of a type with more objects than STREAM_FROM answers them all, parsed as before", async () => {
  const m = await MdmFixture.open();
  try {
    await m.login();
    // Device objects are cheap to make in bulk: SDSs with many devices each
    const perSds = 64;
    const sdsCount = Math.ceil(STREAM_FROM / perSds) + 1;
    for (let i = 0; i < sdsCount; i++) await m.joinSds(`sds${i}`, { devicesGiB: Array.from({ length: perSds }, () => 1) });
    const res = await m.core.app.request("/api/types/Device/instances", { headers: { authorization: basic("admin", m.token) } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const list = (await res.json()) as { id: string; sdsId: string }[];
    expect(list.length).toBe(sdsCount * perSds);
    expect(new Set(list.map((d) => d.id)).size).toBe(list.length);
  } finally {
    m.close();
  }
}, 120_000);
