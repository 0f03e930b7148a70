// GET /types/Volume/instances at size (src/mdm/rest/rest_render.ts volumeListJson): the same JSON
// as the object listing, built in slices with the event loop free between them, and a snapshot of
// the moment the listing began even when volumes change while it is being built.

import { afterEach, expect, test } from "bun:test";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";
import { listObjects, volumeListJson } from "../src/mdm/rest/rest_render.ts";

let c: RecoveryCluster;
afterEach(() => c?.close());

test("the volume listing is the objects' JSON, yields between slices, and is a snapshot of its start", async () => {
  c = await RecoveryCluster.open();
  for (let i = 1; i <= 3; i++) await c.addSds(`sds${i}`);
  const sdcId = await c.m.joinSdc("guid-list-1", "sdcL");
  const ids: string[] = [];
  for (let i = 0; i < 23; i++) ids.push(await c.createVolume(`lv${i}`, 1));
  for (const id of ids.slice(0, 5)) {
    const r = await c.m.api("POST", `/instances/Volume::${id}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite" });
    expect(r.status).toBe(200);
  }
  const expected = JSON.stringify(listObjects(c.ctx, "Volume"));
  expect(expected).toContain(sdcId);
  expect((await volumeListJson(c.ctx, 4)).join("")).toBe(expected);
  expect((await volumeListJson(c.ctx, 1000)).join("")).toBe(expected);

  // slices of 4: the loop runs other work between them; a volume made meanwhile is not listed
  let ranDuring = 0;
  let done = false;
  const listing = volumeListJson(c.ctx, 4).then((parts) => {
    done = true;
    return parts;
  });
  const other = (async () => {
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((r) => setImmediate(r));
      if (!done) ranDuring++;
    }
    return c.createVolume("made-during", 1);
  })();
  const parts = await listing;
  await other;
  expect(ranDuring).toBeGreaterThan(0);
  expect(parts.length).toBeGreaterThan(2);
  expect(parts.join("")).toBe(expected);
  // through the route: valid JSON, now with the new volume
  const r = await c.m.api("GET", "/types/Volume/instances");
  expect(r.status).toBe(200);
  const names = (r.json as { name: string }[]).map((v) => v.name);
  expect(names).toContain("made-during");
  expect(names).toHaveLength(24);
  expect((await volumeListJson(c.ctx)).join("")).toBe(JSON.stringify(listObjects(c.ctx, "Volume")));
});

test("an empty listing is an empty array", async () => {
  c = await RecoveryCluster.open();
  expect((await volumeListJson(c.ctx)).join("")).toBe("[]");
  const r = await c.m.api("GET", "/types/Volume/instances");
  expect(r.status).toBe(200);
  expect(r.json).toEqual([]);
});
