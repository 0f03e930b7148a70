// How many durable commits a REST create and map cost, and the WAL checkpointer: a volume
// create or map commits its change and its audit record in one sqlite transaction
// (rest/access_edge.ts auditedChange), a refused one commits nothing but its failure record, and
// the MDM database's WAL checkpoints run on a worker (store/mdm_db.ts WalCheckpointer), not in
// the commit that crossed the threshold.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openMdmDb, walCheckpointerOf } from "../src/store/mdm_db.ts";
import { MdmFixture } from "./mdm_fixture.ts";

type Obj = Record<string, unknown>;

describe("one commit per volume create and map", () => {
  let m: MdmFixture;
  beforeEach(async () => {
    m = await MdmFixture.open();
  });
  afterEach(() => m.close());

  /** Count the outermost transactions (each one WAL fsync) while fn runs. */
  async function commitsOf(fn: () => Promise<unknown>): Promise<number> {
    const db = m.core.ctx.store.sqlite;
    const orig = db.transaction;
    let commits = 0;
    db.transaction = ((f: (...a: unknown[]) => unknown) => {
      const t = orig.call(db, f);
      return Object.assign((...a: unknown[]) => {
        const r = t(...a);
        if (!db.inTransaction) commits++;
        return r;
      }, t);
    }) as typeof db.transaction;
    try {
      await fn();
    } finally {
      db.transaction = orig;
    }
    return commits;
  }

  async function setup(): Promise<{ poolId: string; sdcId: string }> {
    await m.login();
    const pd = await m.api("POST", "/types/ProtectionDomain/instances", { name: "pd1" });
    const sp = await m.api("POST", "/types/StoragePool/instances", { protectionDomainId: (pd.json as Obj).id, name: "sp1", mediaType: "HDD" });
    for (let i = 1; i <= 3; i++) await m.joinSds(`sds${i}`, { devicesGiB: [100] });
    const sdcId = await m.joinSdc("guid-host-a", "hostA");
    return { poolId: (sp.json as Obj).id as string, sdcId };
  }

  async function lastAudit(): Promise<Obj> {
    const r = await m.api("GET", "/pf/audit?limit=1");
    expect(r.status).toBe(200);
    return (r.json as Obj[])[0]!;
  }

  test("a create and a map each commit once, with the audit record a separate commit used to write", async () => {
    const { poolId, sdcId } = await setup();
    let id = "";
    const createCommits = await commitsOf(async () => {
      const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "8", name: "v1" });
      expect(r.status).toBe(200);
      id = (r.json as Obj).id as string;
    });
    expect(createCommits).toBe(1);
    const rec = await lastAudit();
    expect(rec).toMatchObject({ kind: "rest", actor: "admin", method: "POST", objectType: "Volume", objectId: id, action: "create", result: "ok", status: 200 });
    expect(JSON.parse(rec.params as string)).toEqual({ storagePoolId: poolId, volumeSizeInGb: "8", name: "v1" });

    const mapCommits = await commitsOf(async () => {
      const r = await m.api("POST", `/instances/Volume::${id}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite" });
      expect(r.status).toBe(200);
    });
    expect(mapCommits).toBe(1);
    expect(await lastAudit()).toMatchObject({ objectType: "Volume", objectId: id, action: "addMappedSdc", result: "ok", status: 200 });
    expect(await commitsOf(() => m.api("POST", `/instances/Volume::${id}/action/removeMappedSdc`, { sdcId }))).toBe(1);
    expect(await lastAudit()).toMatchObject({ objectId: id, action: "removeMappedSdc", result: "ok" });
    // the chain still verifies with records written inside the changes' transactions
    const v = await m.api("POST", "/pf/audit/verify", {});
    expect(v.status).toBe(200);
    expect((v.json as Obj).ok).toBe(true);
  });

  test("a refused create leaves no volume and its failure record after the answer, as before", async () => {
    const { poolId } = await setup();
    expect((await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "8", name: "dup" })).status).toBe(200);
    const before = ((await m.api("GET", "/types/Volume/instances")).json as Obj[]).length;
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInGb: "8", name: "dup" });
    expect((r.json as Obj).pfCode).toBe("ALREADY_EXISTS");
    expect(((await m.api("GET", "/types/Volume/instances")).json as Obj[]).length).toBe(before);
    const rec = await lastAudit();
    expect(rec).toMatchObject({ objectType: "Volume", action: "create", result: "failed", status: r.status });
    expect(rec.detail as string).toContain("already exists");
    // a map of an unknown SDC: refused, nothing mapped, recorded as failed
    const vols = (await m.api("GET", "/types/Volume/instances")).json as Obj[];
    const vid = vols[0]!.id as string;
    const bad = await m.api("POST", `/instances/Volume::${vid}/action/addMappedSdc`, { sdcId: "ffffffff00000000" });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(await lastAudit()).toMatchObject({ objectId: vid, action: "addMappedSdc", result: "failed", status: bad.status });
    expect(((await m.api("GET", `/instances/Volume::${vid}`)).json as Obj).mappedSdcInfo ?? []).toEqual([]);
  });
});

describe("WAL checkpoints off the event loop", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  test("the main connection does not auto-checkpoint; past the threshold the worker backfills the whole WAL and the data stays", async () => {
    const d = mkdtempSync(join(tmpdir(), "pf-restlat-wal-"));
    dirs.push(d);
    const path = join(d, "mdm.db");
    const db = openMdmDb(path);
    expect(db.sqlite.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint).toBe(0);
    const ck = walCheckpointerOf(db.sqlite)!;
    expect(ck).toBeDefined();
    db.sqlite.run("CREATE TABLE fill (i INTEGER PRIMARY KEY, b BLOB)");
    const ins = db.sqlite.query("INSERT INTO fill (i, b) VALUES (?, ?)");
    // ~6 MiB of pages in the WAL: over the 4 MiB threshold (sqlite would have checkpointed itself)
    db.sqlite.transaction(() => {
      for (let i = 0; i < 1500; i++) ins.run(i, new Uint8Array(4000).fill(i & 0xff));
    })();
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(4 * 1024 * 1024);
    expect(ck.pendingBytes()).toBeGreaterThan(4 * 1024 * 1024);
    expect(ck.stats.runs).toBe(0);
    const done = ck.run();
    ck.check(); // a checkpoint is running: no second one
    await done;
    expect(ck.stats.fellBack).toBe(false);
    expect(ck.stats.runs).toBe(1);
    expect(ck.stats.lastLog).toBeGreaterThan(1000);
    expect(ck.stats.lastDone).toBe(ck.stats.lastLog);
    expect(ck.pendingBytes()).toBe(0); // read from the wal-index: the file keeps its size
    // the next write restarts the WAL from its start instead of growing it
    const size = statSync(`${path}-wal`).size;
    db.sqlite.transaction(() => {
      for (let i = 1500; i < 1600; i++) ins.run(i, new Uint8Array(4000));
    })();
    expect(statSync(`${path}-wal`).size).toBe(size);
    expect(ck.pendingBytes()).toBeGreaterThan(0);
    expect(ck.pendingBytes()).toBeLessThan(1024 * 1024);
    db.close();
    const again = openMdmDb(path);
    expect(again.sqlite.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM fill").get()!.n).toBe(1600);
    again.close();
  });
});
