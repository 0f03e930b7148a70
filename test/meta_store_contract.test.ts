// The metadata store contract (src/mdm/ha/meta_store.ts), run in-process on both engines: sqlite
// (the default) and etcd with 1 and 3 members (Debian's etcd binary; missing = failure). The same
// operator scenarios run on each: a change that was answered survives a restart, the fencing
// term grows with every start/takeover and rides on every cluster API answer. HA-only cases
// follow: standbys follow to an identical sqlite (equal to a range of etcd at appliedRev) and
// serve safe reads and answer 421 naming the leader to the rest; a takeover keeps everything and raises the term; a commit etcd
// refuses is answered NOT_LEADER and undone; a change over etcd's txn limit is TOO_BIG and undone;
// a standby left behind a compaction reloads and converges.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EtcdMetaStore } from "../src/mdm/ha/etcd_meta_store.ts";
import { EtcdClient } from "../src/store/etcd_client.ts";
import { MDM_MIGRATIONS } from "../src/store/mdm_migrate.ts";
import { applyChanges, exportAll, replicatedTables } from "../src/store/row_capture.ts";
import { Database } from "bun:sqlite";
import { Limits } from "../src/proto/limits.ts";
import { MdmFixture, basic } from "./mdm_fixture.ts";
import { EtcdCluster } from "./helpers/etcd.ts";
import { z } from "zod";

const SCHEMA_VERSION = MDM_MIGRATIONS.reduce((m, x) => Math.max(m, x.version), -1);
type Obj = Record<string, unknown>;

interface Engine {
  name: string;
  etcd: EtcdCluster | null;
  cluster: string;
}

let clusterSeq = 0;
function freshCluster(): string {
  return `c${process.pid}x${++clusterSeq}`;
}

/** Open an MDM core on the engine (etcd: member `name` of `cluster`). */
async function openMdm(engine: Engine, dir: string, name: string, opts: { requiredTxnOps?: number } = {}): Promise<MdmFixture> {
  const etcd = engine.etcd;
  if (etcd === null) return MdmFixture.open({ dir });
  return MdmFixture.open({
    dir,
    openMeta: (store) =>
      EtcdMetaStore.open({
        sqlite: store.sqlite,
        endpoints: etcd.endpoints,
        cluster: engine.cluster,
        mdmId: `id-${name}`,
        name,
        url: `https://127.0.0.1:1/${name}`,
        schemaVersion: SCHEMA_VERSION,
        requiredTxnOps: opts.requiredTxnOps,
      }),
  });
}

/** Every replicated row (a password hash shown only as present: sqlite mode re-hashes a given
 *  admin password on every start, with a new salt). */
function dump(m: MdmFixture): string {
  const sqlite = m.core.ctx.store.sqlite;
  const rows = exportAll(sqlite, replicatedTables(sqlite)).map((r) => {
    const row = r.row && "password_hash" in r.row ? { ...r.row, password_hash: "(hash)" } : r.row;
    return `${r.table}/${r.pk.join("/")}=${JSON.stringify(row)}`;
  });
  return rows.sort().join("\n");
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | null | Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(25);
  }
}

async function makeVolume(m: MdmFixture, name: string, sizeKb = "1048576"): Promise<Obj> {
  const poolId = await m.idOf("StoragePool", "sp1");
  const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: poolId, volumeSizeInKb: sizeKb, name });
  return { status: r.status, ...(r.json as Obj) };
}

const engines: Engine[] = [
  { name: "sqlite", etcd: null, cluster: "" },
  { name: "etcd, 1 member", etcd: null, cluster: "" },
  { name: "etcd, 3 members", etcd: null, cluster: "" },
];

beforeAll(async () => {
  [engines[1]!.etcd, engines[2]!.etcd] = await Promise.all([EtcdCluster.start(1), EtcdCluster.start(3)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(engines.map((e) => e.etcd?.stop()));
});

describe.each(engines.map((e) => [e.name, e] as const))("contract on %s", (_name, engine) => {
  test("a change that was answered survives a restart of the MDM; the term grows and rides on every cluster API answer", async () => {
    engine.cluster = freshCluster();
    const dir = mkdtempSync(join(tmpdir(), "pf-contract-"));
    try {
      let m = await openMdm(engine, dir, "m1");
      expect(m.core.ctx.meta.isLeader()).toBe(true);
      const term1 = m.core.ctx.meta.term();
      expect(term1).toBeGreaterThan(0);
      await m.login();
      const sds = await m.cluster("POST", "/sds/join", { name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d1", capacityBytes: 64 * 2 ** 30 }] });
      expect(sds.status).toBe(200);
      expect((sds.json as Obj).term).toBe(term1);
      await m.joinSds("sds2");
      const vol = await makeVolume(m, "v1");
      expect(vol.status).toBe(200);
      const hb = await m.cluster("POST", `/sds/${(sds.json as Obj).sdsId as string}/heartbeat`, { devices: [], appliedMapVersion: 0 });
      expect((hb.json as Obj).term).toBe(term1);
      const before = dump(m);
      expect(before).toContain('"name":"v1"');
      await m.closeAll({ keepDir: true });

      m = await openMdm(engine, dir, "m1");
      try {
        await waitFor("leadership after restart", 10_000, () => m.core.ctx.meta.isLeader());
        expect(m.core.ctx.meta.term()).toBeGreaterThan(term1);
        expect(dump(m)).toBe(before);
        await m.login();
        const again = await m.cluster("POST", `/sds/${(sds.json as Obj).sdsId as string}/heartbeat`, { devices: [], appliedMapVersion: 0 });
        expect((again.json as Obj).term).toBe(m.core.ctx.meta.term());
      } finally {
        await m.closeAll({ keepDir: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a change refused by the services leaves no trace and is not shipped", async () => {
    engine.cluster = freshCluster();
    const dir = mkdtempSync(join(tmpdir(), "pf-contract-"));
    const m = await openMdm(engine, dir, "m1");
    try {
      await m.login();
      await m.joinSds("sds1");
      await m.joinSds("sds2");
      expect((await makeVolume(m, "v1")).status).toBe(200);
      const before = dump(m);
      const dup = await makeVolume(m, "v1");
      expect(dup.pfCode).toBe("ALREADY_EXISTS");
      // the only trace is the refusal's own audit record (the hash-chained audit log keeps failed requests too)
      const withoutAudit = (d: string) => d.split("\n").filter((l) => !/^audit_(log|head)\//.test(l)).join("\n");
      const after = dump(m);
      expect(withoutAudit(after)).toBe(withoutAudit(before));
      const audited = after.split("\n").filter((l) => l.startsWith("audit_log/") && !before.includes(l));
      expect(audited).toHaveLength(1);
      expect(audited[0]).toContain('"result":"failed"');
      expect(m.core.ctx.meta.hasPending()).toBe(false);
    } finally {
      await m.closeAll();
    }
  }, 30_000);
});

const haEngines = () => engines.slice(1).map((e) => [e.name, e] as const);

describe.each(haEngines())("HA on %s", (_name, engine) => {
  test("standbys follow every answered change: identical sqlite, equal to etcd at appliedRev; they answer 421 naming the leader", async () => {
    engine.cluster = freshCluster();
    const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), "pf-ha-")));
    const a = await openMdm(engine, dirs[0]!, "m1");
    const b = await openMdm(engine, dirs[1]!, "m2");
    const c = await openMdm(engine, dirs[2]!, "m3");
    try {
      expect([a, b, c].map((m) => m.core.ctx.meta.isLeader())).toEqual([true, false, false]);
      await a.login();
      await a.joinSds("sds1");
      await a.joinSds("sds2");
      for (const n of ["v1", "v2", "v3"]) expect((await makeVolume(a, n)).status).toBe(200);
      const del = await a.api("POST", `/instances/Volume::${await a.idOf("Volume", "v2")}/action/removeVolume`, { removeMode: "ONLY_ME" });
      expect(del.status).toBe(200);
      const want = dump(a);
      for (const s of [b, c]) await waitFor("a standby to converge", 5000, () => dump(s) === want);
      // equal to a range of etcd at the standby's appliedRev
      const store = b.core.ctx.meta as EtcdMetaStore;
      const client = new EtcdClient({ endpoints: engine.etcd!.endpoints });
      const r = await client.range(`/pf/${engine.cluster}/meta/`, { prefix: true, revision: store.appliedRev });
      const sqliteRows = exportAll(b.core.ctx.store.sqlite, replicatedTables(b.core.ctx.store.sqlite)).length;
      expect(r.kvs.length).toBe(sqliteRows);

      // a standby serves reads from its followed state (test/ha_standby_reads.test.ts) but not
      // those needing live heartbeat state, nor any change
      b.token = a.token;
      const read = await b.api("GET", "/types/Volume/instances");
      expect(read.status).toBe(200);
      expect(read.json).toEqual((await a.api("GET", "/types/Volume/instances")).json);
      const refused = await b.raw("GET", "/api/types/Sds/instances", { headers: { authorization: `Basic ${Buffer.from(`admin:${a.token}`).toString("base64")}` } });
      expect(refused.status).toBe(421);
      expect((refused.json as Obj).pfCode).toBe("NOT_LEADER");
      expect(((refused.json as Obj).leader as Obj).name).toBe("m1");
      const cl = await b.cluster("POST", "/sdc/join", { guid: "g1", host: "127.0.0.1" });
      expect(cl.status).toBe(421);
      const role = await b.raw("GET", "/api/pf/mdmRole");
      expect((role.json as Obj).role).toBe("standby");
      expect((role.json as Obj).term).toBe(a.core.ctx.meta.term());
    } finally {
      for (const m of [a, b, c]) await m.closeAll();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 40_000);

  test("takeover: the leader goes, a standby leads with every object, a higher term and no SDS declared down", async () => {
    engine.cluster = freshCluster();
    const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), "pf-ha-")));
    const a = await openMdm(engine, dirs[0]!, "m1");
    const b = await openMdm(engine, dirs[1]!, "m2");
    try {
      await a.login();
      const s1 = await a.joinSds("sds1");
      await a.joinSds("sds2");
      expect((await makeVolume(a, "v1")).status).toBe(200);
      const want = dump(a);
      const termA = a.core.ctx.meta.term();
      const t0 = performance.now();
      await a.closeAll({ keepDir: true }); // revokes its lease: the leader key goes at once
      await waitFor("the standby to lead", 10_000, () => b.core.ctx.meta.isLeader());
      const tookMs = performance.now() - t0;
      expect(tookMs).toBeLessThan(3000);
      expect(b.core.ctx.meta.term()).toBeGreaterThan(termA);
      expect(dump(b)).toBe(want);
      // the new leader counts every SDS as seen at takeover
      expect(b.core.ctx.health.sdsState(s1.sdsId)).toBe("Connected");
      // tokens issued by the old leader are valid on the new one
      b.token = a.token;
      const list = await b.api("GET", "/types/Volume/instances");
      expect(list.status).toBe(200);
      expect((list.json as Obj[]).map((v) => v.name)).toEqual(["v1"]);
      expect((await makeVolume(b, "v2")).status).toBe(200);
    } finally {
      await b.closeAll();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 40_000);

});

// a lock-out is a row like any other; one member is enough to show it rides through a takeover
describe("login lock-out on etcd, 1 member", () => {
  const engine = engines[1]!;
  test("a user locked on the leader stays locked after a takeover (the PowerFlex 401) until the lock ends", async () => {
    engine.cluster = freshCluster();
    const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), "pf-ha-")));
    const a = await openMdm(engine, dirs[0]!, "m1");
    const b = await openMdm(engine, dirs[1]!, "m2");
    try {
      await a.login();
      expect((await a.api("POST", "/types/User/instances", { name: "carol", userRole: "Monitor", password: "carol-password-1" })).status).toBe(200);
      for (let i = 0; i < Limits.loginLockoutFailures; i++) expect((await a.raw("GET", "/api/login", { headers: { authorization: basic("carol", `wrong-${i}-xxxx`) } })).status).toBe(401);
      expect(a.core.ctx.meta.hasPending()).toBe(false); // the lock went to etcd with the answer
      await waitFor("the standby to hold the lock", 5000, () => dump(b).includes("login_lockout/carol="));
      await a.closeAll({ keepDir: true });
      await waitFor("the standby to lead", 10_000, () => b.core.ctx.meta.isLeader());
      const carol = () => b.raw("GET", "/api/login", { headers: { authorization: basic("carol", "carol-password-1") } });
      const locked = await carol();
      expect(locked.json).toMatchObject({ httpStatusCode: 401, pfCode: "UNAUTHORIZED" });
      expect((locked.json as Obj).message).toContain("User carol is locked");
      b.clock.advance(Limits.loginLockoutMs + 1);
      expect((await carol()).status).toBe(200);
      expect(dump(b)).not.toContain("login_lockout/");
    } finally {
      await b.closeAll();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 60_000);
});

// the failure paths do not depend on the etcd cluster size: one member keeps the suite short
describe("HA failure paths on etcd, 1 member", () => {
  const engine = engines[1]!;
  test("a commit etcd refuses (leader key gone) is answered NOT_LEADER and undone; the MDM steps down and follows", async () => {
    engine.cluster = freshCluster();
    const dir = mkdtempSync(join(tmpdir(), "pf-ha-"));
    const a = await openMdm(engine, dir, "m1");
    try {
      await a.login();
      await a.joinSds("sds1");
      await a.joinSds("sds2");
      const before = dump(a);
      const client = new EtcdClient({ endpoints: engine.etcd!.endpoints });
      await client.deleteRange(`/pf/${engine.cluster}/mdm/leader`);
      const r = await makeVolume(a, "lost");
      expect(r.status).toBe(421);
      expect(r.pfCode).toBe("NOT_LEADER");
      await waitFor("the undo", 5000, () => !a.core.ctx.meta.hasPending() && dump(a) === before);
      // it campaigns again (the key is free) and leads without the refused change
      await waitFor("leadership again", 10_000, () => a.core.ctx.meta.isLeader());
      expect(dump(a)).not.toContain('"name":"lost"');
    } finally {
      await a.closeAll();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a change over the etcd transaction limit is refused TOO_BIG and undone", async () => {
    engine.cluster = freshCluster();
    const dir = mkdtempSync(join(tmpdir(), "pf-ha-"));
    const a = await openMdm(engine, dir, "m1", { requiredTxnOps: 20 });
    try {
      await a.login();
      await a.joinSds("sds1");
      await a.joinSds("sds2");
      const before = dump(a);
      // 8 GiB in 64 MiB extents = 128 extent rows in one change
      const r = await makeVolume(a, "big", String(8 * 1024 * 1024));
      expect(r.pfCode).toBe("TOO_BIG");
      await waitFor("the undo", 5000, () => !a.core.ctx.meta.hasPending() && dump(a) === before);
    } finally {
      await a.closeAll();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test("a standby left behind a compaction reloads and converges", async () => {
    engine.cluster = freshCluster();
    const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), "pf-ha-")));
    const a = await openMdm(engine, dirs[0]!, "m1");
    let b = await openMdm(engine, dirs[1]!, "m2");
    try {
      await a.login();
      await a.joinSds("sds1");
      await a.joinSds("sds2");
      await waitFor("b to converge", 5000, () => dump(b) === dump(a));
      await b.closeAll({ keepDir: true });
      for (const n of ["v1", "v2"]) expect((await makeVolume(a, n)).status).toBe(200);
      const client = new EtcdClient({ endpoints: engine.etcd!.endpoints });
      const head = await client.put(`/pf/${engine.cluster}/test-marker`, "x");
      await client.call("/v3/kv/compaction", { revision: String(head) }, z.object({}).passthrough());
      b = await openMdm(engine, dirs[1]!, "m2");
      expect(dump(b)).toBe(dump(a));
      expect((await makeVolume(a, "v3")).status).toBe(200);
      await waitFor("b to follow after the reload", 5000, () => dump(b) === dump(a));
    } finally {
      await a.closeAll();
      await b.closeAll();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 40_000);
});

test("replay of one batch holding several revisions of one row keeps the last image", () => {
  const db = new Database(":memory:");
  db.run("CREATE TABLE sys (id TEXT PRIMARY KEY, v INTEGER)");
  db.run("INSERT INTO sys VALUES ('s', 1)");
  const tables = replicatedTables(db);
  applyChanges(db, new Map(tables.map((t) => [t.name, t])), [
    { table: "sys", pk: ["s"], row: { id: "s", v: 2 } },
    { table: "sys", pk: ["s"], row: { id: "s", v: 3 } },
  ]);
  expect(db.query("SELECT v FROM sys").all()).toEqual([{ v: 3 }]);
  applyChanges(db, new Map(tables.map((t) => [t.name, t])), [
    { table: "sys", pk: ["s"], row: { id: "s", v: 4 } },
    { table: "sys", pk: ["s"], row: null },
  ]);
  expect(db.query("SELECT v FROM sys").all()).toEqual([]);
});

test("replay of one batch that swaps unique names between rows applies cleanly (delete all, then insert)", () => {
  const db = new Database(":memory:");
  db.run("CREATE TABLE vol (id TEXT PRIMARY KEY, name TEXT)");
  db.run("CREATE UNIQUE INDEX vol_name ON vol(name)");
  db.run("INSERT INTO vol VALUES ('a', 'x'), ('b', 'y')");
  const tables = replicatedTables(db);
  applyChanges(db, new Map(tables.map((t) => [t.name, t])), [
    { table: "vol", pk: ["a"], row: { id: "a", name: "y" } },
    { table: "vol", pk: ["b"], row: { id: "b", name: "x" } },
  ]);
  expect(db.query("SELECT id, name FROM vol ORDER BY id").all()).toEqual([{ id: "a", name: "y" }, { id: "b", name: "x" }]);
});
