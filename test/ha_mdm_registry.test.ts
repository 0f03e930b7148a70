// scli --add_standby_mdm / --remove_standby_mdm behind REST addStandbyMdm / removeStandbyMdm
// (in-process MDMs on one etcd member): the registry of MDMs in etcd, reported by
// queryMdmCluster (standbyMDMs: registered and not running; registeredMdms: every entry with the
// running MDM at its address). The active MDM cannot be removed; a removed running standby stops
// campaigning at once and refuses to start again until an MDM at its address is added anew.
// sqlite mode refuses both.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MdmFixture } from "./mdm_fixture.ts";
import { EtcdCluster, openMdmOnEtcd, waitUntil } from "./helpers/etcd.ts";

type Obj = Record<string, unknown>;
const CLUSTER = `reg${process.pid}`;

let etcd: EtcdCluster;
const dirs = new Map<string, string>();

function open(name: string, port: number): Promise<MdmFixture> {
  let dir = dirs.get(name);
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), "pf-reg-"));
    dirs.set(name, dir);
  }
  return openMdmOnEtcd(dir, etcd, { cluster: CLUSTER, mdmId: `a0${name}`, name, url: `https://127.0.0.${port}:${6600 + port}` });
}


beforeAll(async () => {
  etcd = await EtcdCluster.start(1);
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
  for (const d of dirs.values()) rmSync(d, { recursive: true, force: true });
});

test("add and remove standby MDMs: the registry queryMdmCluster reports; the active one stays; a removed standby never campaigns", async () => {
  const a = await open("m1", 11);
  let b = await open("m2", 12);
  const fixtures = [a, b];
  try {
    expect(a.core.ctx.meta.isLeader()).toBe(true);
    await a.login();
    const cluster = async (m: MdmFixture) => (await m.api("POST", "/instances/System/queryMdmCluster", {})).json as Obj;

    // a registered MDM that is not running is a standby MDM (outside the cluster)
    const added = await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["10.9.9.9"], role: "Manager", name: "m9", port: 6611 });
    expect(added.status).toBe(200);
    const m9 = (added.json as Obj).id as string;
    expect(m9).toMatch(/^[0-9a-f]{16}$/);
    let c = await cluster(a);
    expect((c.standbyMDMs as Obj[]).map((s) => [s.name, s.ips, s.status])).toEqual([["m9", ["10.9.9.9"], "Disconnected"]]);
    // the same name or address again, and bad bodies, are refused
    expect((await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["10.9.9.8"], name: "m9" })).json).toMatchObject({ pfCode: "ALREADY_EXISTS" });
    expect((await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["10.9.9.9"] })).json).toMatchObject({ pfCode: "ALREADY_EXISTS" });
    expect((await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: [] })).status).toBe(400);
    expect((await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["10.1.1.1"], role: "Boss" })).status).toBe(400);
    // registering the running standby's address: it is a slave, not a standby MDM
    const m2reg = ((await a.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["127.0.0.12"], name: "m2reg" })).json as Obj).id as string;
    c = await cluster(a);
    expect((c.registeredMdms as Obj[]).find((r) => r.id === m2reg)?.runningAs).toBe("a0m2");
    expect((c.standbyMDMs as Obj[]).map((s) => s.name)).toEqual(["m9"]);
    expect((c.slaves as Obj[]).map((s) => s.name)).toEqual(["m2"]);
    // a standby answers the same view (it is a read from etcd)
    b.token = a.token;
    expect(((await cluster(b)).standbyMDMs as Obj[]).map((s) => s.name)).toEqual(["m9"]);

    // never the active MDM; an unknown id is NOT_FOUND
    expect((await a.api("POST", "/instances/System/action/removeStandbyMdm", { id: "a0m1" })).json).toMatchObject({ pfCode: "INVALID_STATE" });
    expect((await a.api("POST", "/instances/System/action/removeStandbyMdm", { id: "ffff" })).json).toMatchObject({ pfCode: "NOT_FOUND" });
    // a registered, not running one goes from the registry
    expect((await a.api("POST", "/instances/System/action/removeStandbyMdm", { id: `0x${m9}` })).status).toBe(200);
    expect(((await cluster(a)).standbyMDMs as Obj[]).length).toBe(0);
    // the running standby, by its registry id: it leaves the view and never campaigns
    expect((await a.api("POST", "/instances/System/action/removeStandbyMdm", { id: m2reg })).status).toBe(200);
    await Bun.sleep(700);
    c = await cluster(a);
    expect(c.slaves).toEqual([]);
    expect(c.registeredMdms).toEqual([]);
    await a.closeAll({ keepDir: true }); // revokes its lease: the leader key goes at once
    fixtures.shift();
    await Bun.sleep(3000);
    expect(b.core.ctx.meta.isLeader()).toBe(false);
    await b.closeAll({ keepDir: true });
    fixtures.pop();
    // it refuses to start again, saying how to come back
    let refused = "";
    await open("m2", 12).catch((e: Error) => (refused = e.message));
    expect(refused).toContain("was removed from cluster");
    expect(refused).toContain("scli --add_standby_mdm --new_mdm_ip 127.0.0.12");

    // m1 again leads; adding an MDM at m2's address lets m2 back in, as a standby
    const a2 = await open("m1", 11);
    fixtures.push(a2);
    await waitUntil("m1 to lead again", 10_000, () => a2.core.ctx.meta.isLeader());
    await a2.login();
    expect((await a2.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["127.0.0.12"], port: 6612, name: "m2" })).status).toBe(200);
    b = await open("m2", 12);
    fixtures.push(b);
    expect(b.core.ctx.meta.isLeader()).toBe(false);
    await Bun.sleep(700);
    const back = await a2.api("POST", "/instances/System/queryMdmCluster", {});
    expect(((back.json as Obj).slaves as Obj[]).map((s) => s.name)).toEqual(["m2"]);
    expect(((back.json as Obj).registeredMdms as Obj[]).map((r) => [r.name, r.runningAs])).toEqual([["m2", "a0m2"]]);
  } finally {
    for (const m of fixtures) await m.closeAll().catch(() => {});
  }
}, 60_000);

test("sqlite mode refuses standby MDMs with a clear error", async () => {
  const m = await MdmFixture.open({});
  try {
    await m.login();
    const r = await m.api("POST", "/instances/System/action/addStandbyMdm", { ips: ["10.0.0.2"] });
    expect(r.json).toMatchObject({ pfCode: "INVALID_STATE" });
    expect((r.json as Obj).message).toContain("standby MDMs need the metadata on etcd");
    expect(((await m.api("POST", "/instances/System/action/removeStandbyMdm", { id: "ab" })).json as Obj).pfCode).toBe("INVALID_STATE");
  } finally {
    await m.closeAll();
  }
});
