// In-process costs of an MDM over a large seeded database (no socket, no TLS): copies
// BENCH_SEED_DB (an mdm.db made by bench/mdm_scale.ts with BENCH_SEED and BENCH_SEED_CACHE) to a
// temp dir, opens an MDM core on it (test/mdm_fixture.ts, fake clock) and times, CPU and wall:
// the cold start (open), full SDS assignments and SDC maps (the answer every node's first fetch
// after a start gets), GET of all volumes, REST create and map, the recovery and observe ticks at
// rest, and one SDS's loss: the ticks from its heartbeat timeout to a complete rebuild plan.
// Run it on databases of several sizes to see what grows faster than the volume count; under
// bun --cpu-prof to see where. Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/mdm_seeded_inproc.ts
// env: BENCH_FETCHES=20 BENCH_CREATES=200 BENCH_TICKS=8 BENCH_MASS_DOWN=100 (SDSs declared down at once at the end)
//      BENCH_LOSS_ONLY=1 (only the SDS loss and the mass loss: no cold-start ticks, beats, full answers, GET all or creates;
//      for bun --cpu-prof of the loss step), BENCH_NO_COPY_LOG=1 (the loss without the copy log's triggers)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, MdmFixture, SECRET } from "../test/mdm_fixture.ts";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER } from "../src/proto/cluster_api.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { nodeTokenOf } from "../src/mdm/core/dataplane_secrets.ts";
import { sdcMaps, sdsAssignments } from "../src/mdm/cluster/cluster_service.ts";
import { recoveryTick } from "../src/mdm/recovery/recovery.ts";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";
import { Limits } from "../src/proto/limits.ts";
import { copyLogOf } from "../src/mdm/cluster/copy_log.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const FETCHES = Number(process.env.BENCH_FETCHES ?? 20);
const CREATES = Number(process.env.BENCH_CREATES ?? 200);
const TICKS = Number(process.env.BENCH_TICKS ?? 8);
const LOSS_ONLY = process.env.BENCH_LOSS_ONLY === "1";
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const cpuMs = (u0: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000;
};
async function timed<T>(fn: () => T | Promise<T>): Promise<{ v: T; cpu: number; wall: number }> {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const v = await fn();
  return { v, cpu: cpuMs(u0), wall: performance.now() - t0 };
}
const dir = mkdtempSync(join(tmpdir(), "pf-mdm-seeded-"));
mkdirSync(join(dir, "mdm"), { recursive: true });
copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
const clock = new FakeClock(Date.now());
const open = await timed(() => MdmFixture.open({ dir, clock, recovery: { rebuildGraceMs: 0 } }));
const m = open.v;
const ctx = m.core.ctx;
const db = ctx.store.sqlite;
const q = (sql: string) => db.query<{ n: number }, []>(sql).get()!.n;
console.log(`database: ${q("SELECT COUNT(*) AS n FROM volume")} volumes, ${q("SELECT COUNT(*) AS n FROM extent")} extents, ${q("SELECT COUNT(*) AS n FROM sds")} SDS, ${q("SELECT COUNT(*) AS n FROM sdc")} SDC; load ${load()}`);
console.log(`open: ${open.cpu.toFixed(0)} ms CPU, ${open.wall.toFixed(0)} ms wall`);
try {
  const sdsIds = db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
  const sdcIds = db.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY rowid").all().map((r) => r.id);
  const beatAll = (except?: string) => {
    for (const id of sdsIds) if (id !== except) ctx.health.sdsSeen(id, 0);
    for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
  };
  // the timers before any node beat (an MDM start: every node seeded as seen, none confirmed)
  for (const [name, fn] of LOSS_ONLY ? [] : [["recovery tick before any beat", (): unknown => recoveryTick(ctx)], ["observe tick before any beat", (): unknown => observeTick(ctx)]] as const) {
    const t = await timed(fn);
    const t2 = await timed(() => {
      for (let i = 0; i < 4; i++) fn();
    });
    console.log(`${name}: first ${t.cpu.toFixed(1)} ms CPU (${t.wall.toFixed(1)} ms wall), then ${(t2.cpu / 4).toFixed(1)} ms CPU each`);
  }
  // every node's first beat to this MDM life (as after a restart: appliedMapVersion 0), then a second round
  if (!LOSS_ONLY) {
    const devs = Map.groupBy(db.query<{ id: string; sds: string }, []>("SELECT id, sds_id AS sds FROM device ORDER BY rowid").all(), (d) => d.sds);
    const beats = [
      ...sdsIds.map((id) => ({ path: `/sds/${id}/heartbeat`, token: nodeTokenOf(ctx, NodeRole.SDS, id), body: `{"devices":${JSON.stringify((devs.get(id) ?? []).map((d) => ({ deviceId: d.id, state: "Normal", usedBytes: 0 })))},"rebuilds":[],"failedForwards":[],"appliedMapVersion":0}` })),
      ...sdcIds.map((id) => ({ path: `/sdc/${id}/heartbeat`, token: nodeTokenOf(ctx, NodeRole.SDC, id), body: `{"appliedMapVersion":0}` })),
    ];
    for (const round of ["first", "second"]) {
      const t = await timed(async () => {
        for (const b of beats) {
          const res = await m.core.app.request(CLUSTER_API_PREFIX + b.path, { method: "POST", body: b.body, headers: { [CLUSTER_SECRET_HEADER]: SECRET, [NODE_TOKEN_HEADER]: b.token, "content-type": "application/json" } });
          if (res.status !== 200) throw new Error(`beat: ${res.status} ${await res.text()}`);
          await res.text();
        }
      });
      console.log(`${round} beat of every node (${beats.length}): ${((t.cpu * 1000) / beats.length).toFixed(0)} µs CPU, ${((t.wall * 1000) / beats.length).toFixed(0)} µs wall each`);
    }
  }
  beatAll();
  // full answers (a node's first fetch in an MDM life)
  for (const [name, ids, fn] of LOSS_ONLY ? [] : [
    ["full SDS assignments", sdsIds, (id: string) => sdsAssignments(ctx, id, {})],
    ["full SDC maps", sdcIds, (id: string) => sdcMaps(ctx, id, {})],
  ] as const) {
    fn(ids[0]!);
    let bytes = 0;
    const t = await timed(() => {
      for (let i = 0; i < FETCHES; i++) bytes += JSON.stringify(fn(ids[(i * 37) % ids.length]!)).length;
    });
    console.log(`${name}: ${(t.cpu / FETCHES).toFixed(2)} ms CPU, ${(t.wall / FETCHES).toFixed(2)} ms wall, ${(bytes / FETCHES / 1024).toFixed(1)} KiB each (with JSON.stringify)`);
  }
  await m.login();
  const all = LOSS_ONLY ? null : await timed(() => m.api("GET", "/types/Volume/instances"));
  if (all) console.log(`GET all volumes: ${all.v.status}, ${(all.v.text.length / 2 ** 20).toFixed(1)} MiB, ${all.cpu.toFixed(0)} ms CPU, ${all.wall.toFixed(0)} ms wall`);
  const perTick = async (name: string, n: number, fn: () => unknown) => {
    const t = await timed(() => {
      for (let i = 0; i < n; i++) fn();
    });
    console.log(`${name}: ${(t.cpu / n).toFixed(2)} ms CPU, ${(t.wall / n).toFixed(2)} ms wall per tick`);
  };
  await perTick("recovery tick at rest", TICKS, () => recoveryTick(ctx));
  await perTick("observe tick at rest", TICKS, () => observeTick(ctx));
  if (CREATES > 0 && !LOSS_ONLY) {
    const pool = await m.idOf("StoragePool", "sp1");
    const ids: string[] = [];
    const c = await timed(async () => {
      for (let i = 0; i < CREATES; i++) {
        const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: `inproc${i}`, volumeType: "ThinProvisioned" });
        if (r.status !== 200) throw new Error(`create: ${r.status} ${r.text}`);
        ids.push((r.json as { id: string }).id);
      }
    });
    console.log(`REST create (1 GiB thin): ${(c.cpu / CREATES).toFixed(2)} ms CPU, ${(c.wall / CREATES).toFixed(2)} ms wall per create`);
    const mp = await timed(async () => {
      for (let i = 0; i < CREATES; i++) {
        const r = await m.api("POST", `/instances/Volume::${ids[i]}/action/addMappedSdc`, { sdcId: sdcIds[i % sdcIds.length], accessMode: "ReadWrite" });
        if (r.status !== 200) throw new Error(`map: ${r.status} ${r.text}`);
      }
    });
    console.log(`REST map: ${(mp.cpu / CREATES).toFixed(2)} ms CPU, ${(mp.wall / CREATES).toFixed(2)} ms wall per map`);
  }
  // one SDS's loss: every other node beats, the victim does not; ticks until the plan is complete
  const victim = sdsIds[0]!;
  const held = q(`SELECT COUNT(*) AS n FROM extent WHERE primary_sds_id = '${victim}' OR secondary_sds_id = '${victim}'`);
  clock.advance(ctx.health.heartbeatTimeoutMs + 1);
  beatAll(victim);
  const degraded = () => q("SELECT COUNT(*) AS n FROM extent WHERE secondary_sds_id IS NULL");
  const started = () => q("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL");
  const cap = Limits.maxConcurrentRebuildsPerSds * (sdsIds.length - 1);
  // a running MDM whose SDSs fetched keeps the copy log (its triggers log every extent change)
  if (process.env.BENCH_NO_COPY_LOG !== "1") copyLogOf(ctx);
  let ticks = 0;
  const stepCosts: string[] = [];
  const loss = await timed(() => {
    for (;;) {
      const u0 = process.cpuUsage();
      const r = recoveryTick(ctx);
      stepCosts.push(`${cpuMs(u0).toFixed(0)} ms (${r.changed} changes)`);
      ticks++;
      const d = degraded();
      if ((d > 0 && started() >= Math.min(d, cap)) || ticks >= 40) break;
      clock.advance(250);
      beatAll(victim);
    }
  });
  console.log(`SDS loss (${held} copies on it): ${ticks} recovery ticks to a complete plan (${degraded()} degraded, ${started()} targets), ${loss.cpu.toFixed(0)} ms CPU, ${loss.wall.toFixed(0)} ms wall; steps: ${stepCosts.join(", ")}`);
  {
    // who the loss's changes concern (their heartbeat answers send them to fetch)
    const sdsHolders = q(`SELECT COUNT(*) AS n FROM (SELECT primary_sds_id AS s FROM extent WHERE target_sds_id IS NOT NULL UNION SELECT target_sds_id FROM extent WHERE target_sds_id IS NOT NULL UNION SELECT secondary_sds_id FROM extent WHERE target_sds_id IS NOT NULL)`);
    const sdcs = q(`SELECT COUNT(DISTINCT m.sdc_id) AS n FROM volume_mapping m JOIN volume v ON v.id = m.volume_id WHERE v.owner_id IN (SELECT volume_id FROM extent WHERE target_sds_id IS NOT NULL OR secondary_sds_id IS NULL)`);
    console.log(`the loss's changes concern ${sdsHolders} SDSs (holders of the changed extents) and ${sdcs} SDCs (mapping their volumes)`);
  }
  await perTick("recovery tick after the loss", TICKS, () => {
    clock.advance(250);
    beatAll(victim);
    recoveryTick(ctx);
  });
  await perTick("observe tick after the loss", TICKS, () => observeTick(ctx));
  // many SDSs down at once (the collapse: an MDM too busy to hear them declares them down): one tick
  const massDown = Number(process.env.BENCH_MASS_DOWN ?? 100);
  if (massDown > 0) {
    const down = new Set(sdsIds.slice(0, massDown));
    clock.advance(ctx.health.heartbeatTimeoutMs + 1);
    for (const id of sdsIds) if (!down.has(id)) ctx.health.sdsSeen(id, 0);
    for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
    const r = await timed(() => recoveryTick(ctx));
    const o = await timed(() => observeTick(ctx));
    const r2 = await timed(() => recoveryTick(ctx));
    console.log(`${massDown} SDSs down: first recovery tick ${r.cpu.toFixed(0)} ms CPU (${r.v.changed} changes, ${r.v.examined} examined), observe tick ${o.cpu.toFixed(0)} ms CPU, next recovery tick ${r2.cpu.toFixed(0)} ms CPU (${r2.v.changed} changes)`);
    // the steps until every failover is done (the worklist's first pass; ticks 250 ms apart)
    const costs: number[] = [r.cpu, r2.cpu];
    let changes = r.v.changed + r2.v.changed;
    let last = r2.v;
    const all = await timed(async () => {
      while ((last.failoversLeft > 0 || last.repairsLeft > 0) && costs.length < 3000) {
        clock.advance(250);
        for (const id of sdsIds) if (!down.has(id)) ctx.health.sdsSeen(id, 0);
        for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
        const s = await timed(() => recoveryTick(ctx));
        costs.push(s.cpu);
        changes += s.v.changed;
        last = s.v;
      }
    });
    const sorted = [...costs].sort((a, b) => a - b);
    console.log(
      `${massDown} SDSs down: ${costs.length} steps to the end of the failovers (${changes} changes), ${all.cpu.toFixed(0)} ms CPU in all; per step CPU median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} ms, max ${sorted[sorted.length - 1]!.toFixed(0)} ms; ` +
        `${q("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL")} copies running, pass done: ${last.passDone}, ${ctx.recovery.worklist.passes} passes`,
    );
    // the observe steps that follow, a second apart: the recovery figures are paced by their cost
    // (observe/recovery_pacing.ts), so most of these reuse the first one's
    const steps: number[] = [];
    for (let i = 0; i < 8; i++) {
      clock.advance(1000);
      for (const id of sdsIds) if (!down.has(id)) ctx.health.sdsSeen(id, 0);
      for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
      steps.push((await timed(() => observeTick(ctx))).cpu);
    }
    console.log(`${massDown} SDSs down: the next 8 observe ticks, 1 s apart: ${steps.map((c) => c.toFixed(0)).join(" / ")} ms CPU`);
  }
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  console.log(`RSS ${(Number(rss) / 1024).toFixed(0)} MiB; load ${load()}`);
} finally {
  m.close();
}
