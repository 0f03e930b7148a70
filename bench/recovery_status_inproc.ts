// CPU of the pool recovery figures (recoveryStatus: groups of like extents counted by sqlite,
// recovery_groups.ts) against the object-per-extent path they replaced (recoveryStatusByExtent),
// in process over a COPY of a seeded mdm.db (bench/mdm_scale.ts BENCH_SEED), with K SDSs just
// declared down (heartbeat timeout passed, no recovery step yet: every copy of theirs needs
// attention, the state of an MDM start under load). Interleaved A B A B in one process; checks
// both give equal figures. Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/recovery_status_inproc.ts
// env: BENCH_DOWN=1,100 BENCH_REPS=3 BENCH_FAILOVER=1 (measure again once the recovery steps
// have failed over every extent of the down SDSs: degraded, in the attention index)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import consola from "consola";
import { FakeClock, MdmFixture } from "../test/mdm_fixture.ts";
import { recoveryStatus, recoveryStatusByExtent, recoveryTick } from "../src/mdm/recovery/recovery.ts";
import { loadSdsViews } from "../src/mdm/recovery/recovery_view.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const DOWN = (process.env.BENCH_DOWN ?? "1,100").split(",").map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
function cpu<T>(fn: () => T): { v: T; cpu: number; wall: number } {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const v = fn();
  const u = process.cpuUsage(u0);
  return { v, cpu: (u.user + u.system) / 1000, wall: performance.now() - t0 };
}
// the failover steps log every extent change and alert: quiet (the figures are the output)
consola.level = 0;
const dir = mkdtempSync(join(tmpdir(), "pf-rstatus-"));
mkdirSync(join(dir, "mdm"), { recursive: true });
copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
const clock = new FakeClock(Date.now());
const m = await MdmFixture.open({ dir, clock });
const ctx = m.core.ctx;
try {
  const db = ctx.store.sqlite;
  const sdsIds = db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
  console.log(`database: ${(db.query("SELECT COUNT(*) AS n FROM extent").get() as { n: number }).n} extents, ${sdsIds.length} SDS; load ${load()}`);
  for (const k of DOWN) {
    const down = new Set(sdsIds.slice(0, k));
    clock.advance(ctx.health.heartbeatTimeoutMs + 1);
    for (const id of sdsIds) if (!down.has(id)) ctx.health.sdsSeen(id, 0);
    const measure = (label: string) => {
      const sds = loadSdsViews(ctx);
      const disconnected = sds.filter((s) => !s.connected).length;
      const a: number[] = [];
      const b: number[] = [];
      let equal = true;
      for (let i = 0; i < REPS; i++) {
        const g = cpu(() => recoveryStatus(ctx, undefined, sds));
        const o = cpu(() => recoveryStatusByExtent(ctx, undefined, sds));
        a.push(g.cpu);
        b.push(o.cpu);
        equal &&= JSON.stringify([...g.v]) === JSON.stringify([...o.v]);
        console.log(`  ${label} (${disconnected} disconnected) rep ${i + 1}: groups ${g.cpu.toFixed(1)} ms CPU (${g.wall.toFixed(1)} wall), by extent ${o.cpu.toFixed(1)} ms CPU (${o.wall.toFixed(1)} wall); load ${load()}`);
      }
      const med = (x: number[]) => [...x].sort((p, q) => p - q)[Math.floor(x.length / 2)]!;
      const s = [...recoveryStatus(ctx, undefined, sds).values()][0]!;
      console.log(
        `${label}: groups median ${med(a).toFixed(1)} ms CPU, by extent ${med(b).toFixed(1)} ms CPU (x${(med(b) / med(a)).toFixed(1)}); figures equal: ${equal}; ` +
          `degraded ${s.numOfDegradedExtents}, waiting ${s.numOfWaitingExtents}, pending ${s.numOfPendingRebuildExtents}, unavailable ${s.numOfUnavailableExtents}; load ${load()}`,
      );
    };
    measure(`${k} SDSs down`);
    if (process.env.BENCH_FAILOVER === "1" && k > 0) {
      let ticks = 0;
      const t = cpu(() => {
        for (let left = 1; left > 0 && ticks < 5000; ticks++) {
          clock.advance(250);
          for (const id of sdsIds) if (!down.has(id)) ctx.health.sdsSeen(id, 0);
          const r = recoveryTick(ctx);
          left = r.failoversLeft + r.repairsLeft;
        }
      });
      console.log(`  failover of ${k} SDSs: ${ticks} recovery ticks, ${t.cpu.toFixed(0)} ms CPU`);
      measure(`${k} SDSs down, failed over`);
    }
  }
} finally {
  m.close();
  rmSync(dir, { recursive: true, force: true });
}
