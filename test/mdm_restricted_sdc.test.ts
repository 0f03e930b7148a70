// PowerFlex restricted SDC mode through the REST API (in-process MDM): System actions
// setRestrictedSdcMode and approveSdc with PowerFlex's names and bodies; in Guid mode an SDC
// that is not approved joins but cannot be mapped and gets no volume and no grant in its maps.

import { afterEach, beforeEach, expect, test } from "bun:test";
import { SdcJoinResponse, SdcMapsResponse } from "../src/proto/cluster_api.ts";
import { MdmFixture } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;
let m: MdmFixture;
let systemId: string;
let vol: string;

beforeEach(async () => {
  m = await MdmFixture.open();
  await m.login();
  systemId = (((await m.api("GET", "/types/System/instances")).json as Obj[])[0] as Obj).id as string;
  await m.joinSds("sds1");
  await m.joinSds("sds2");
  const pool = await m.idOf("StoragePool", "sp1");
  vol = ((await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: "v1", volumeType: "ThinProvisioned" })).json as Obj).id as string;
});
afterEach(() => m.close());

async function join(guid: string): Promise<string> {
  return SdcJoinResponse.parse((await m.cluster("POST", "/sdc/join", { guid, host: "127.0.0.1" })).json).sdcId;
}
const system = async () => (((await m.api("GET", "/types/System/instances")).json as Obj[])[0] as Obj);
const sdc = async (id: string) => (await m.api("GET", `/instances/Sdc::${id}`)).json as Obj;
const setMode = (mode: string) => m.api("POST", `/instances/System::${systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: mode });
const map = (sdcId: string) => m.api("POST", `/instances/Volume::${vol}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite", allowMultipleMappings: "TRUE" });
const maps = async (sdcId: string) => SdcMapsResponse.parse((await m.cluster("GET", `/sdc/${sdcId}/maps`)).json);

test("None by default: a joining SDC is approved and may be mapped", async () => {
  expect(await system()).toMatchObject({ restrictedSdcMode: "None", restrictedSdcModeEnabled: false });
  const a = await join("g-a");
  expect((await sdc(a)).sdcApproved).toBe(true);
  expect((await map(a)).status).toBe(200);
  expect((await maps(a)).volumes[0]?.grant).toBeDefined();
});

test("Guid: an unapproved SDC joins, cannot be mapped, gets no volume and no grant; approveSdc by GUID lets it in", async () => {
  expect((await setMode("Guid")).status).toBe(200);
  expect(await system()).toMatchObject({ restrictedSdcMode: "Guid", restrictedSdcModeEnabled: true });
  const a = await join("g-a");
  expect((await sdc(a)).sdcApproved).toBe(false);
  const refused = await map(a);
  expect(refused.status).toBe(500);
  expect(refused.text).toContain("INITIATOR_NOT_APPROVED");
  expect((await maps(a)).volumes).toEqual([]);
  const ok = await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcGuid: "g-a", name: "hostA" });
  expect(ok.status).toBe(200);
  expect(ok.json).toEqual({ id: a });
  expect(await sdc(a)).toMatchObject({ sdcApproved: true, name: "hostA" });
  expect((await map(a)).status).toBe(200);
  const mp = await maps(a);
  expect(mp.volumes.map((x) => x.volumeId)).toEqual([vol]);
  expect(mp.volumes[0]!.grant).toBeDefined();
});

test("Guid: an SDC approved by GUID before it ever connects is the one that joins with it", async () => {
  expect((await setMode("Guid")).status).toBe(200);
  const pre = await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcGuid: "g-later" });
  const id = (pre.json as Obj).id as string;
  expect(id).toMatch(/^[0-9a-f]{16}$/);
  expect(await join("g-later")).toBe(id);
  expect((await sdc(id)).sdcApproved).toBe(true);
  expect((await map(id)).status).toBe(200);
  // approveSdc on the SDC instance works as well
  const b = await join("g-b");
  expect((await m.api("POST", `/instances/Sdc::${b}/action/approveSdc`, {})).status).toBe(200);
  expect((await sdc(b)).sdcApproved).toBe(true);
});

test("switching to Guid is refused while an unapproved SDC has mappings; ApprovedIp and approval by IP are refused", async () => {
  expect((await setMode("Guid")).status).toBe(200);
  const a = await join("g-a"); // unapproved
  expect((await setMode("None")).status).toBe(200);
  expect((await maps(a)).volumes).toEqual([]); // not mapped yet
  expect((await map(a)).status).toBe(200); // None: any SDC may be mapped
  expect((await maps(a)).volumes.length).toBe(1);
  const r = await setMode("Guid");
  expect(r.status).toBe(500);
  expect(r.text).toContain("UNAPPROVED_SDC_HAS_MAPPINGS");
  expect((await system()).restrictedSdcMode).toBe("None");
  expect((await setMode("ApprovedIp")).status).toBe(400);
  expect((await setMode("Bogus")).status).toBe(400);
  expect((await m.api("POST", `/instances/System::${systemId}/action/approveSdc`, { sdcIp: "10.0.0.1" })).status).toBe(400);
});
