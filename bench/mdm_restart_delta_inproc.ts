// What an SDS's first fetch after an MDM restart costs, in process over a seeded database (as
// bench/mdm_seeded_inproc.ts: BENCH_SEED_DB copied to a temp dir, fake clock, no socket):
// BENCH_SDS SDSs take their full assignments, BENCH_CREATES volumes are created (their SDSs'
// copies change), then the MDM stops cleanly and starts again on the same database, and each of
// those SDSs asks for the delta since the answer it holds (copy_log.ts hand-off); the same once
// more after a crash-like restart (no hand-off written: every answer is whole, as before).
// Prints bytes (JSON) and CPU per fetch, and how many were deltas.
// Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/mdm_restart_delta_inproc.ts   env: BENCH_SDS=100 BENCH_CREATES=5
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, MdmFixture } from "../test/mdm_fixture.ts";
import { sdsAssignments } from "../src/mdm/cluster/cluster_service.ts";
import type { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const N = Number(process.env.BENCH_SDS ?? 100);
const CREATES = Number(process.env.BENCH_CREATES ?? 5);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const cpuMs = (u0: NodeJS.CpuUsage) => {
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000;
};
const dir = mkdtempSync(join(tmpdir(), "pf-mdm-restart-"));
mkdirSync(join(dir, "mdm"), { recursive: true });
copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
const clock = new FakeClock(Date.now());
const open = async () => {
  const m = await MdmFixture.open({ dir, clock, recovery: { rebuildGraceMs: 0 } });
  const ids = m.core.ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
  for (const id of ids) m.core.ctx.health.sdsSeen(id, 0);
  for (const { id } of m.core.ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM sdc").all()) m.core.ctx.health.sdcSeen(id, 0);
  return { m, ids };
};
try {
  let { m, ids } = await open();
  const pick = ids.filter((_, i) => i % Math.max(1, Math.floor(ids.length / N)) === 0).slice(0, N);
  const held = new Map<string, SdsAssignmentsResponse>();
  let fullBytes = 0;
  const u0 = process.cpuUsage();
  for (const id of pick) {
    const a = sdsAssignments(m.core.ctx, id, {});
    fullBytes += JSON.stringify(a).length;
    held.set(id, a);
  }
  const fullCpu = cpuMs(u0) / pick.length;
  await m.login();
  const pool = await m.idOf("StoragePool", "sp1");
  for (let i = 0; i < CREATES; i++) {
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: `restart${i}`, volumeType: "ThinProvisioned" });
    if (r.status !== 200) throw new Error(r.text);
  }
  // the SDSs concerned fetch their deltas (as a heartbeat would send them to), so every SDS
  // holds the current answer at the stop; BENCH_STALE=1 skips this (a change right before it)
  if (process.env.BENCH_STALE !== "1") {
    for (const id of pick) {
      const h = held.get(id)!;
      const d = sdsAssignments(m.core.ctx, id, { since: h.mapVersion, log: h.copyLog, ...(h.sdsTag ? { addresses: h.sdsTag } : {}) });
      if (d.since === undefined || d.extents.length > 0 || (d.removed?.length ?? 0) > 0) held.set(id, sdsAssignments(m.core.ctx, id, {}));
    }
  }
  console.log(`${pick.length} SDSs, full answers: ${(fullBytes / pick.length / 1024).toFixed(1)} KiB, ${fullCpu.toFixed(1)} ms CPU each; ${CREATES} creates after them; load ${load()}`);
  for (const kind of ["clean", "crash"] as const) {
    if (kind === "crash") m.core.ctx.store.sqlite.run("DROP TRIGGER temp.pf_copy_log_i"); // nothing written at the stop, as after a crash
    const t0 = performance.now();
    m.close({ keepDir: true });
    const stopMs = performance.now() - t0;
    ({ m, ids } = await open());
    let bytes = 0;
    let deltas = 0;
    let deltaBytes = 0;
    const u1 = process.cpuUsage();
    for (const id of pick) {
      const h = held.get(id)!;
      const a = sdsAssignments(m.core.ctx, id, { since: h.mapVersion, log: h.copyLog, ...(h.sdsTag ? { addresses: h.sdsTag } : {}) });
      const len = JSON.stringify(a).length;
      bytes += len;
      if (a.since !== undefined) {
        deltas++;
        deltaBytes += len;
      }
      held.set(id, a.since === undefined ? a : h); // (the bench keeps the old base: only sizes matter)
    }
    const cpu = cpuMs(u1) / pick.length;
    console.log(`after a ${kind} restart (stop ${stopMs.toFixed(0)} ms): ${deltas}/${pick.length} deltas (${deltas > 0 ? (deltaBytes / deltas / 1024).toFixed(1) : "-"} KiB each), ${(bytes / pick.length / 1024).toFixed(1)} KiB, ${cpu.toFixed(2)} ms CPU per first fetch; load ${load()}`);
    for (const id of pick) held.set(id, sdsAssignments(m.core.ctx, id, {}));
  }
  m.close({ keepDir: true });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
