// Delta assignments (proto/assignments_delta.ts, mdm/cluster/copy_log.ts): over random change
// sequences (creates thin and thick, removals, SDS losses and returns with recovery and copies
// finishing, V-Tree graph edits, write cache switches, log trims, MDM restarts clean and crashed),
// the full answer an SDS holds merged with the delta since it gives exactly the full answer of
// the same moment. After a clean stop the next MDM life answers deltas of the old log's answers
// (copy_log.ts hand-off); after a crash (no hand-off written) every SDS gets the full list.

import { afterEach, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { mergeAssignments } from "../src/proto/assignments_delta.ts";
import { copyLogOf } from "../src/mdm/cluster/copy_log.ts";
import { bumpMapVersion } from "../src/mdm/core/system_state.ts";
import { inTransaction } from "../src/mdm/core/context.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

const TIMEOUT = 6_000;
const recovery = { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: 4_000, stallTimeoutMs: 600_000 };

let c: RecoveryCluster | null = null;
afterEach(() => {
  c?.close();
  c = null;
});

/** The comparable content of a full answer: lists in a fixed order, no delta/address/log fields. */
function norm(a: SdsAssignmentsResponse): unknown {
  const { sds: _s, sdsTag: _t, copyLog: _l, since: _since, removed: _r, ...rest } = a;
  return {
    ...rest,
    extents: [...a.extents].sort((x, y) => `${x.volumeId}/${x.extentIndex}`.localeCompare(`${y.volumeId}/${y.extentIndex}`)),
    writeThroughVolumes: [...a.writeThroughVolumes].sort(),
    vtrees: [...a.vtrees].sort((x, y) => x.ownerId.localeCompare(y.ownerId)),
  };
}

async function fetch(c: RecoveryCluster, sdsId: string, q = ""): Promise<SdsAssignmentsResponse> {
  const r = await c.m.cluster("GET", `/sds/${sdsId}/assignments${q}`);
  expect(r.status).toBe(200);
  return SdsAssignmentsResponse.parse(r.json);
}

/** seeded PRNG (the test is reproducible) */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An MDM restart without the clean stop's hand-off (as after a crash: nothing is written). */
async function crashRestart(c: RecoveryCluster): Promise<RecoveryCluster> {
  // saveCopyLogHandoff writes nothing for a log whose triggers are gone
  c.ctx.store.sqlite.run("DROP TRIGGER temp.pf_copy_log_i");
  return c.restart({ recovery });
}

class Checker {
  readonly held = new Map<string, SdsAssignmentsResponse>();
  deltas = 0;
  /** deltas answered by a new MDM life for an answer of the previous life's log */
  crossLife = 0;
  fulls = 0;
  changedRows = 0;
  removedRows = 0;

  constructor(public c: RecoveryCluster) {}

  /** Every SDS: delta since what it holds, merged, equals the full answer now. */
  async checkAll(ids: string[]): Promise<void> {
    for (const id of ids) await this.check(id);
  }

  async check(id: string): Promise<void> {
    const held = this.held.get(id);
    const full = await fetch(this.c, id);
    expect(full.since).toBeUndefined();
    if (held === undefined || held.copyLog === undefined) {
      this.held.set(id, full);
      return;
    }
    const d = await fetch(this.c, id, `?since=${held.mapVersion}&log=${held.copyLog}`);
    if (d.since === undefined) {
      // refused (barrier, trim, another log): then it is the full answer itself
      this.fulls++;
      expect(norm(d)).toEqual(norm(full));
      this.held.set(id, d);
      return;
    }
    this.deltas++;
    if (d.copyLog !== held.copyLog) this.crossLife++;
    this.changedRows += d.extents.length;
    this.removedRows += d.removed?.length ?? 0;
    expect(d.since).toBe(held.mapVersion);
    expect(d.mapVersion).toBe(full.mapVersion);
    const merged = mergeAssignments(held, d);
    expect(norm(merged)).toEqual(norm(full));
    this.held.set(id, merged);
  }
}

for (const [seed, restarts] of [
  [1, false],
  [2, false],
  [3, false],
  [4, true],
  [5, true],
] as const) {
  test(`merged deltas equal full answers over random changes${restarts ? " and MDM restarts, clean and crashed" : ""} (seed ${seed})`, async () => {
    c = await RecoveryCluster.open({ recovery });
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const names: string[] = [];
    for (let i = 0; i < 8; i++) {
      const name = `sds${i}`;
      await c.addSds(name, { faultSet: `fs${i % 4}`, devicesGiB: [200, 200] });
      names.push(name);
    }
    const ids = () => names.map((n) => c!.id(n));
    const pool = await c.poolId();
    const chk = new Checker(c);
    await c.beatAll();
    await chk.checkAll(ids());
    const volumes: string[] = [];
    let nextVol = 0;
    let writeThrough = false;
    for (let step = 0; step < 60; step++) {
      const r = rnd();
      if (r < 0.3 || volumes.length < 2) {
        volumes.push(await c.createVolume(`v${nextVol++}`, pick([1, 2]), rnd() < 0.3 ? "ThickProvisioned" : "ThinProvisioned"));
      } else if (r < 0.4) {
        const v = volumes.splice(Math.floor(rnd() * volumes.length), 1)[0]!;
        const res = await c.m.api("POST", `/instances/Volume::${v}/action/removeVolume`, { removeMode: "ONLY_ME" });
        expect(res.status).toBe(200);
      } else if (r < 0.5) {
        // an SDS goes silent: recovery plans copies elsewhere after the timeout and grace
        const up = [...c.alive];
        if (up.length > 6) {
          c.alive.delete(pick(up));
          await c.advance(TIMEOUT + 5_000, 1_000);
        }
      } else if (r < 0.6) {
        // a silent SDS comes back (resync or its leftover copies freed)
        const down = names.filter((n) => !c!.alive.has(n));
        if (down.length > 0) {
          c.alive.add(pick(down));
          await c.advance(2_000, 1_000);
        }
      } else if (r < 0.75) {
        await c.completeCopies();
        c.tick();
      } else if (r < 0.82) {
        // a V-Tree graph edit (as a snapshot's commit makes it): its holders get that V-Tree whole
        const owner = pick(volumes);
        inTransaction(c.ctx, () => {
          bumpMapVersion(c!.ctx);
          c!.ctx.store.sqlite.query("UPDATE vtree SET graph_version = graph_version + 1 WHERE owner_id = ?").run(owner);
        });
      } else if (r < 0.86) {
        writeThrough = !writeThrough;
        expect((await c.m.api("POST", `/instances/StoragePool::${pool}/action/setWriteCache`, { writeCache: writeThrough ? "writeThrough" : "writeBack" })).status).toBe(200);
      } else if (r < 0.9) {
        await c.advance(1_000, 1_000);
      } else if (restarts && r < 0.96) {
        c = await c.restart({ recovery });
        chk.c = c;
        await c.beatAll();
      } else if (restarts) {
        c = await crashRestart(c);
        chk.c = c;
        await c.beatAll();
      }
      // some SDSs check after each step, all of them now and then
      if (step % 7 === 6) await chk.checkAll(ids());
      else for (const id of ids()) if (rnd() < 0.4) await chk.check(id);
    }
    await c.settle();
    await chk.checkAll(ids());
    expect(chk.deltas).toBeGreaterThan(30);
    expect(chk.changedRows).toBeGreaterThan(0);
    expect(chk.removedRows).toBeGreaterThan(0);
    // the write cache switches were barriers: those checks got the full list
    expect(chk.fulls).toBeGreaterThan(0);
    if (restarts) expect(chk.crossLife).toBeGreaterThan(0);
  }, 120_000);
}

test("a trimmed log, an unknown log id, a version from the future or an MDM restart get the full list", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 0; i < 4; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
  await c.beatAll();
  const id = c.id("sds0");
  const first = await fetch(c, id);
  expect(first.copyLog).toMatch(/^[0-9a-f]{16}$/);
  await c.createVolume("a", 2);
  const d = await fetch(c, id, `?since=${first.mapVersion}&log=${first.copyLog}`);
  expect(d.since).toBe(first.mapVersion);
  expect(d.extents.length).toBeGreaterThan(0);
  expect((await fetch(c, id, `?since=${first.mapVersion}&log=0123456789abcdef`)).since).toBeUndefined();
  expect((await fetch(c, id, `?since=${d.mapVersion + 5}&log=${first.copyLog}`)).since).toBeUndefined();
  // nothing changed since: an empty delta
  const empty = await fetch(c, id, `?since=${d.mapVersion}&log=${d.copyLog}`);
  expect(empty.since).toBe(d.mapVersion);
  expect(empty.extents).toEqual([]);
  expect(empty.removed).toEqual([]);

  // trim: a log held to a few rows drops the oldest versions; a delta from before them is refused
  const log = copyLogOf(c.ctx) as unknown as { maxRows: number; trim(): void; trimmedBelow: number };
  (log as { maxRows: number }).maxRows = 4;
  for (const n of ["b", "c", "e"]) await c.createVolume(n, 1);
  log.trim();
  expect(log.trimmedBelow).toBeGreaterThan(first.mapVersion);
  const stale = await fetch(c, id, `?since=${d.mapVersion}&log=${d.copyLog}`);
  expect(stale.since).toBeUndefined();
  expect(norm(stale)).toEqual(norm(await fetch(c, id)));

  // a clean restart: the new life answers the old log's answer by a delta (nothing changed: empty)
  const held = await fetch(c, id);
  c = await c.restart({ recovery });
  expect(c.ctx.store.sqlite.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM copy_log_handoff").get()!.n).toBe(0); // consumed at the start
  const cont = await fetch(c, c.id("sds0"), `?since=${held.mapVersion}&log=${held.copyLog}`);
  expect(cont.since).toBe(held.mapVersion);
  expect(cont.copyLog).not.toBe(held.copyLog);
  expect(cont.extents).toEqual([]);
  expect(cont.removed).toEqual([]);
  // a second restart: the old-old log is not continued (one life back only), nor after a crash
  const held2 = await fetch(c, id);
  c = await c.restart({ recovery });
  expect((await fetch(c, id, `?since=${held.mapVersion}&log=${held.copyLog}`)).since).toBeUndefined();
  const held3 = await fetch(c, id, `?since=${held2.mapVersion}&log=${held2.copyLog}`);
  expect(held3.since).toBe(held2.mapVersion);
  c = await crashRestart(c);
  const after = await fetch(c, c.id("sds0"), `?since=${held3.mapVersion}&log=${held3.copyLog}`);
  expect(after.since).toBeUndefined();
  expect(after.copyLog).not.toBe(held3.copyLog);
  expect({ ...(norm(after) as object), term: 0 }).toEqual({ ...(norm(held) as object), term: 0 }); // the term grows with the restart
}, 60_000);

test("after a clean stop, a change made before the next start's log (the stored version moved) refuses the old log's answers", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 0; i < 4; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
  await c.beatAll();
  const id = c.id("sds0");
  await c.createVolume("a", 2);
  const held = await fetch(c, id);
  // the database changed while no MDM ran (a restored copy, a tool): the version moved on
  c = await c.restart({
    recovery,
    whileStopped: (dataDir) => {
      const db = new Database(`${dataDir}/mdm.db`);
      db.run("UPDATE system SET map_version = map_version + 1");
      db.close();
    },
  });
  expect((await fetch(c, c.id("sds0"), `?since=${held.mapVersion}&log=${held.copyLog}`)).since).toBeUndefined();
}, 60_000);

test("after a clean stop, an SDS whose copies changed after its answer gets the full list; the others a delta", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 0; i < 6; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
  await c.beatAll();
  const ids = [0, 1, 2, 3, 4, 5].map((i) => c!.id(`sds${i}`));
  await c.createVolume("a", 1);
  const held = new Map<string, SdsAssignmentsResponse>();
  for (const id of ids) held.set(id, await fetch(c, id));
  // one extent's epoch moves after the answers: its two holders changed, the others did not
  const row = c.ctx.store.sqlite.query<{ v: string; p: string; s: string }, []>("SELECT volume_id AS v, primary_sds_id AS p, secondary_sds_id AS s FROM extent WHERE idx = 0").get()!;
  inTransaction(c.ctx, () => {
    c!.ctx.store.sqlite.query("UPDATE extent SET epoch = epoch + 1 WHERE volume_id = ? AND idx = 0").run(row.v);
    bumpMapVersion(c!.ctx);
  });
  const touched = new Set([row.p, row.s]);
  c = await c.restart({ recovery });
  for (const id of ids) {
    const h = held.get(id)!;
    const a = await fetch(c, id, `?since=${h.mapVersion}&log=${h.copyLog}`);
    const full = await fetch(c, id);
    if (touched.has(id)) {
      expect(a.since).toBeUndefined();
      expect(norm(a)).toEqual(norm(full));
    } else {
      expect(a.since).toBe(h.mapVersion);
      expect(norm(mergeAssignments(h, a))).toEqual(norm(full));
    }
  }
}, 60_000);
