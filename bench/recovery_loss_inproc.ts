// One SDS's loss, planned and persisted in process on a large seeded database, several times:
// each round copies BENCH_SEED_DB (an mdm.db made by bench/mdm_scale.ts with BENCH_SEED and
// BENCH_SEED_CACHE) afresh, opens an MDM core on it (fake clock, grace period 0, the copy log
// installed as a running MDM whose SDSs fetched has it), lets SDS number `round` go silent past
// the heartbeat timeout and times the recovery step that plans and persists its rebuild (CPU
// and wall, its commit apart). The first round runs cold code (as an MDM's first loss does); the
// later ones show the work with the JIT warm, and their median is steadier under load than one
// run. Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/recovery_loss_inproc.ts (BENCH_ROUNDS=5)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import consola from "consola";
import { FakeClock, MdmFixture } from "../test/mdm_fixture.ts";
import { recoveryTick } from "../src/mdm/recovery/recovery.ts";
import { copyLogOf } from "../src/mdm/cluster/copy_log.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
consola.level = 1; // the step's own lines (20 a step) are not what is timed
const cpu: number[] = [];
const wall: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const dir = mkdtempSync(join(tmpdir(), "pf-recovery-loss-"));
  mkdirSync(join(dir, "mdm"), { recursive: true });
  copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
  const clock = new FakeClock(Date.now());
  const m = await MdmFixture.open({ dir, clock, recovery: { rebuildGraceMs: 0 } });
  try {
    const ctx = m.core.ctx;
    const db = ctx.store.sqlite;
    const sdsIds = db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
    const sdcIds = db.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY rowid").all().map((r) => r.id);
    const victim = sdsIds[round % sdsIds.length]!;
    const beat = () => {
      for (const id of sdsIds) if (id !== victim) ctx.health.sdsSeen(id, 0);
      for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
    };
    copyLogOf(ctx);
    beat();
    recoveryTick(ctx); // at rest: the placement view and the statements made
    db.run("PRAGMA wal_checkpoint(TRUNCATE)");
    clock.advance(ctx.health.heartbeatTimeoutMs + 1);
    beat();
    const u0 = process.cpuUsage();
    const t0 = performance.now();
    const step = recoveryTick(ctx);
    const w = performance.now() - t0;
    const u = process.cpuUsage(u0);
    const c = (u.user + u.system) / 1000;
    const targets = db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL").get()!.n;
    console.log(`round ${round} (SDS ${victim}): ${step.changed} changes, ${targets} targets, ${c.toFixed(0)} ms CPU, ${w.toFixed(0)} ms wall; load ${load()}`);
    cpu.push(c);
    wall.push(w);
  } finally {
    m.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const warm = cpu.slice(1);
console.log(`one SDS's loss step: cold ${cpu[0]!.toFixed(0)} ms CPU; warm median ${warm.length ? median(warm).toFixed(0) : "-"} ms CPU (wall ${wall.length > 1 ? median(wall.slice(1)).toFixed(0) : "-"} ms); load ${load()}`);
