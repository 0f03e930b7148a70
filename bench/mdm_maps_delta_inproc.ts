// In-process cost of the SDC map fetches after one SDS's loss, whole maps against deltas
// (proto/maps_delta.ts), over a large seeded database: copies BENCH_SEED_DB to a temp dir,
// opens an MDM core on it (test/mdm_fixture.ts, fake clock), takes every SDC's whole map (what
// each holds), declares one SDS down and runs recovery ticks until its rebuild plan is complete
// (as bench/mdm_seeded_inproc.ts), then answers every SDC once whole and once as a delta since
// the map it holds (alternating which goes first), with JSON.stringify: CPU, wall and bytes of
// each, and how many SDCs' deltas carry volumes. Checks merge(held, delta) == whole for every SDC.
// Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/mdm_maps_delta_inproc.ts (env BENCH_ROUNDS=2)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, MdmFixture } from "../test/mdm_fixture.ts";
import { sdcMaps } from "../src/mdm/cluster/cluster_service.ts";
import { recoveryTick } from "../src/mdm/recovery/recovery.ts";
import { Limits } from "../src/proto/limits.ts";
import { copyLogOf } from "../src/mdm/cluster/copy_log.ts";
import { mergeMaps } from "../src/proto/maps_delta.ts";
import { addressesFor } from "../src/mdm/cluster/sds_addresses.ts";
import type { SdcMapsResponse } from "../src/proto/cluster_api.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const cpuMs = (u0: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000;
};
const dir = mkdtempSync(join(tmpdir(), "pf-sdcdelta-inproc-"));
mkdirSync(join(dir, "mdm"), { recursive: true });
copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
const clock = new FakeClock(Date.now());
const m = await MdmFixture.open({ dir, clock, recovery: { rebuildGraceMs: 0 } });
const ctx = m.core.ctx;
const db = ctx.store.sqlite;
const q = (sql: string) => db.query<{ n: number }, []>(sql).get()!.n;
console.log(`database: ${q("SELECT COUNT(*) AS n FROM volume")} volumes, ${q("SELECT COUNT(*) AS n FROM volume_mapping")} mappings, ${q("SELECT COUNT(*) AS n FROM sds")} SDS, ${q("SELECT COUNT(*) AS n FROM sdc")} SDC; load ${load()}`);
try {
  const sdsIds = db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
  const sdcIds = db.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY rowid").all().map((r) => r.id);
  const beatAll = (except?: string) => {
    for (const id of sdsIds) if (id !== except) ctx.health.sdsSeen(id, 0);
    for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
  };
  beatAll();
  copyLogOf(ctx); // a running MDM whose nodes fetched has its log
  // the SDCs hold the current address list (an unchanged list is not sent again: sds_addresses.ts)
  const addresses = addressesFor(ctx, undefined).sdsTag;
  const held = new Map<string, SdcMapsResponse>();
  for (const id of sdcIds) held.set(id, sdcMaps(ctx, id, { addresses }));
  // one SDS's loss: ticks until its plan is complete (bench/mdm_seeded_inproc.ts)
  const victim = sdsIds[0]!;
  clock.advance(ctx.health.heartbeatTimeoutMs + 1);
  beatAll(victim);
  const degraded = () => q("SELECT COUNT(*) AS n FROM extent WHERE secondary_sds_id IS NULL");
  const started = () => q("SELECT COUNT(*) AS n FROM extent WHERE target_sds_id IS NOT NULL");
  const cap = Limits.maxConcurrentRebuildsPerSds * (sdsIds.length - 1);
  const u0 = process.cpuUsage();
  let ticks = 0;
  for (;;) {
    recoveryTick(ctx);
    ticks++;
    const d = degraded();
    if ((d > 0 && started() >= Math.min(d, cap)) || ticks >= 40) break;
    clock.advance(250);
    beatAll(victim);
  }
  console.log(`SDS loss: ${ticks} ticks, ${cpuMs(u0).toFixed(0)} ms CPU, ${degraded()} degraded extents, ${started()} targets`);
  const whole = () => {
    let bytes = 0;
    const u = process.cpuUsage();
    const t0 = performance.now();
    for (const id of sdcIds) bytes += JSON.stringify(sdcMaps(ctx, id, { addresses })).length;
    return { cpu: cpuMs(u), wall: performance.now() - t0, bytes };
  };
  const delta = () => {
    let bytes = 0;
    let nonEmpty = 0;
    let entries = 0;
    const u = process.cpuUsage();
    const t0 = performance.now();
    for (const id of sdcIds) {
      const h = held.get(id)!;
      const d = sdcMaps(ctx, id, { addresses, since: h.mapVersion, log: h.mapLog });
      if (d.since === undefined) throw new Error(`SDC ${id}: no delta`);
      bytes += JSON.stringify(d).length;
      if (d.volumes.length > 0) nonEmpty++;
      entries += d.volumes.length;
    }
    return { cpu: cpuMs(u), wall: performance.now() - t0, bytes, nonEmpty, entries };
  };
  const fmt = (x: { cpu: number; wall: number; bytes: number }) =>
    `${x.cpu.toFixed(0)} ms CPU (${(x.cpu / sdcIds.length).toFixed(2)} per SDC), ${x.wall.toFixed(0)} ms wall, ${(x.bytes / 2 ** 20).toFixed(1)} MiB (${(x.bytes / sdcIds.length / 1024).toFixed(1)} KiB per SDC)`;
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ["whole", "delta"] : ["delta", "whole"];
    for (const k of order) {
      if (k === "whole") console.log(`round ${r + 1}: whole maps of all ${sdcIds.length} SDCs: ${fmt(whole())}; load ${load()}`);
      else {
        const d = delta();
        console.log(`round ${r + 1}: deltas of all ${sdcIds.length} SDCs: ${fmt(d)}; ${d.nonEmpty} SDCs with changed volumes, ${d.entries} entries in all; load ${load()}`);
      }
    }
  }
  // merge(held, delta) == whole, every SDC (grants aside)
  const norm = (a: SdcMapsResponse) => JSON.stringify(a.volumes.map(({ grant: _g, ...v }) => v));
  let bad = 0;
  for (const id of sdcIds) {
    const h = held.get(id)!;
    const merged = mergeMaps(h, sdcMaps(ctx, id, { addresses, since: h.mapVersion, log: h.mapLog }));
    if (merged === null || norm(merged) !== norm(sdcMaps(ctx, id, { addresses }))) bad++;
  }
  console.log(`merge(held, delta) == whole: ${sdcIds.length - bad} of ${sdcIds.length} SDCs`);
} finally {
  m.close();
  rmSync(dir, { recursive: true, force: true });
}
