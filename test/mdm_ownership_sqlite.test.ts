// changeMdmOwnership (scli --switch_mdm_ownership) on a single MDM (sqlite store): refused with a
// reason, nothing changes; a body naming no MDM (or two ways at once) is a bad request.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeAll(async () => {
  m = await MdmFixture.open();
  await m.login();
});
afterAll(async () => {
  m.close();
});

test("changeMdmOwnership on a single sqlite MDM is refused (no standby) and changes nothing", async () => {
  const before = await m.api("POST", "/instances/System/queryMdmCluster", {});
  const r = await m.api("POST", "/instances/System/action/changeMdmOwnership", { id: "0123456789abcdef" });
  expect(r.status).toBe(500);
  expect((r.json as { message: string }).message).toContain("no standby MDM");
  expect((await m.api("POST", "/instances/System/action/changeMdmOwnership", {})).status).toBe(400);
  expect((await m.api("POST", "/instances/System/action/changeMdmOwnership", { id: "a", name: "b" })).status).toBe(400);
  const after = await m.api("POST", "/instances/System/queryMdmCluster", {});
  expect(after.json).toEqual(before.json);
});
