// The SDC's side of map deltas (proto/maps_delta.ts, sdc_node.ts fetchAndApply), against a fake
// MDM over loopback http: the first fetch asks the whole map; later ones send since=<the held
// map's version>&log=<its mapLog>, and a delta is merged per volume (a listed volume's held
// entry stays, an unlisted one is unexported, a sent one replaces or is exported); a delta that
// does not fit the held map is never applied as it is: the SDC asks the whole map at once; an
// MDM without deltas (no mapLog) always gets plain fetches; grants due for renewal ask whole.

import { afterEach, expect, test } from "bun:test";
import { CLUSTER_API_PREFIX, type VolumeMap } from "../src/proto/cluster_api.ts";
import { SdcNode, type SdsLinks } from "../src/sdc/sdc_node.ts";
import type { SdcGrants } from "../src/sdc/sdc_grants.ts";

let server: ReturnType<typeof Bun.serve> | null = null;
const cleanups: (() => void)[] = [];
afterEach(() => {
  server?.stop(true);
  server = null;
  for (const c of cleanups.splice(0)) c();
});

const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
const KEY = { kid: 1, key: "ab".repeat(32) };
const LOG = "00000000000000aa";
const vol = (n: number, epoch = 1): VolumeMap => ({
  volumeId: `000000000000000${n}`,
  name: `vol${n}`,
  sizeBytes: 1 << 20,
  accessMode: "ReadWrite",
  extentSizeBytes: 1 << 20,
  extents: [{ epoch, replicas: ["5d50000000000000"] }],
  limitIops: 0,
  limitBwKbps: 0,
});

function node(answers: ((q: URLSearchParams) => unknown)[], opts: { grants?: Pick<SdcGrants, "renewDueAtMs" | "update"> } = {}) {
  const sdcId = "c000000000000001";
  const queries: string[] = [];
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const u = new URL(req.url);
      if (u.pathname !== `${CLUSTER_API_PREFIX}/sdc/${sdcId}/maps`) return new Response("no", { status: 404 });
      queries.push(u.search);
      const a = answers.shift();
      if (a === undefined) throw new Error("no more answers");
      return json({ term: 0, nodeKeys: [KEY], sds: [], ...(a(u.searchParams) as object) });
    },
  });
  const unexported: string[] = [];
  const links: SdsLinks = { setAddress: () => undefined, retain: () => undefined, link: () => undefined, close: () => undefined };
  const sdc = new SdcNode({
    mdm: { url: `http://127.0.0.1:${server.port}` },
    sdcId,
    links,
    onUnexport: (n) => void unexported.push(n),
    sleep: Bun.sleep,
    nowMs: () => performance.now(),
    ...(opts.grants ? { grants: opts.grants as SdcGrants } : {}),
  });
  cleanups.push(() => sdc.close());
  return { sdc, queries, unexported };
}

test("a delta since the held map is merged per volume; the next fetch asks since the merged version", async () => {
  const { sdc, queries, unexported } = node([
    () => ({ mapVersion: 5, mapLog: LOG, volumes: [vol(1), vol(2)] }),
    () => ({ mapVersion: 8, mapLog: LOG, since: 5, volumeIds: [vol(1).volumeId, vol(3).volumeId], volumes: [vol(3)] }),
    () => ({ mapVersion: 9, mapLog: LOG, since: 8, volumeIds: [vol(1).volumeId, vol(3).volumeId], volumes: [vol(1, 2)] }),
  ]);
  await sdc.refresh();
  expect(sdc.list().map((v) => v.volumeId)).toEqual([vol(1).volumeId, vol(2).volumeId]);
  const kept = sdc.get("vol1");
  await sdc.refresh();
  expect(sdc.mapVersion).toBe(8);
  expect(sdc.list().map((v) => v.volumeId).sort()).toEqual([vol(1).volumeId, vol(3).volumeId]);
  expect(unexported).toEqual(["vol2"]);
  expect(sdc.get("vol1")).toBe(kept); // a kept entry: the same export, never re-opened
  await sdc.refresh();
  expect(sdc.get("vol1")).toBe(kept);
  expect((sdc.get("vol1") as unknown as { map: VolumeMap }).map.extents[0]!.epoch).toBe(2);
  expect(queries).toEqual(["", `?since=5&log=${LOG}`, `?since=8&log=${LOG}`]);
});

test("a delta that does not fit the held map is not applied: the SDC asks the whole map at once", async () => {
  const { sdc, queries, unexported } = node([
    () => ({ mapVersion: 5, mapLog: LOG, volumes: [vol(1)] }),
    // lists a volume the SDC never held and does not send it
    () => ({ mapVersion: 8, mapLog: LOG, since: 5, volumeIds: [vol(1).volumeId, vol(2).volumeId], volumes: [] }),
    () => ({ mapVersion: 8, mapLog: LOG, volumes: [vol(1), vol(2)] }),
  ]);
  await sdc.refresh();
  await sdc.refresh();
  expect(queries).toEqual(["", `?since=5&log=${LOG}`, ""]);
  expect(sdc.mapVersion).toBe(8);
  expect(sdc.list().map((v) => v.volumeId)).toEqual([vol(1).volumeId, vol(2).volumeId]);
  expect(unexported).toEqual([]);
});

test("an MDM without deltas (no mapLog) gets plain fetches; grants due for renewal ask the whole map", async () => {
  const plain = node([() => ({ mapVersion: 5, volumes: [vol(1)] }), () => ({ mapVersion: 6, volumes: [vol(1)] })]);
  await plain.sdc.refresh();
  await plain.sdc.refresh();
  expect(plain.queries).toEqual(["", ""]);
  server?.stop(true);

  let due = Infinity;
  const grants = { renewDueAtMs: 0, update: () => [] as number[] };
  Object.defineProperty(grants, "renewDueAtMs", { get: () => due });
  const r = node([() => ({ mapVersion: 5, mapLog: LOG, volumes: [vol(1)] }), () => ({ mapVersion: 6, mapLog: LOG, volumes: [vol(1)] }), () => ({ mapVersion: 6, mapLog: LOG, since: 6, volumeIds: [vol(1).volumeId], volumes: [] })], { grants });
  await r.sdc.refresh();
  due = 0; // renewal due: a delta would renew only the grants of the volumes it sends
  await r.sdc.refresh();
  due = Infinity;
  await r.sdc.refresh();
  expect(r.queries).toEqual(["", "", `?since=6&log=${LOG}`]);
  expect(r.sdc.mapVersion).toBe(6);
});
