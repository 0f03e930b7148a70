// In-process cost of a REST volume create and map on a large seeded database (no socket, no
// TLS): copies BENCH_SEED_DB (an mdm.db made by bench/mdm_scale.ts with BENCH_SEED and
// BENCH_SEED_CACHE) to a temp dir, opens an MDM core on it (test/mdm_fixture.ts, fake clock),
// lets every node beat once (so placement sees the SDSs connected), then times BENCH_CREATES
// creates and as many maps one by one: CPU (process; and the main thread's mean, without the
// WAL checkpoint worker) and wall per call, median, p90 and max, and the sqlite commits (each
// one WAL fsync) per call. Only the create/map phase runs under the optional CPU profile
// window, so `bun --cpu-prof` of this bench shows where a create and a map go.
// Run: BENCH_SEED_DB=/path/mdm.db npx bun bench/mdm_rest_inproc.ts   (env BENCH_CREATES=100)
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, MdmFixture } from "../test/mdm_fixture.ts";
import * as mdmDb from "../src/store/mdm_db.ts";

const SRC = process.env.BENCH_SEED_DB;
if (!SRC) throw new Error("BENCH_SEED_DB=<path of a seeded mdm.db> is required");
const CREATES = Number(process.env.BENCH_CREATES ?? 100);
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
/** CPU ns of the main thread alone (the process figure also counts sqlite's checkpoint worker) */
const mainNs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")[0]);
const dir = mkdtempSync(join(tmpdir(), "pf-restlat-inproc-"));
mkdirSync(join(dir, "mdm"), { recursive: true });
copyFileSync(SRC, join(dir, "mdm", "mdm.db"));
const clock = new FakeClock(Date.now());
const m = await MdmFixture.open({ dir, clock, recovery: { rebuildGraceMs: 0 } });
const ctx = m.core.ctx;
const db = ctx.store.sqlite;
// (read through the module so this bench also runs on a tree without the checkpointer, for A/B)
const walCheckpointerOf = (d: typeof db): { stats: Record<string, unknown> & { runs: number; fellBack: boolean }; run(): Promise<void> } | undefined =>
  (mdmDb as unknown as { walCheckpointerOf?: (d: unknown) => never }).walCheckpointerOf?.(d);
function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return `median ${at(0.5).toFixed(2)}, p90 ${at(0.9).toFixed(2)}, max ${s[s.length - 1]!.toFixed(2)}`;
}
try {
  const sdsIds = db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all().map((r) => r.id);
  const sdcIds = db.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY rowid").all().map((r) => r.id);
  for (const id of sdsIds) ctx.health.sdsSeen(id, 0);
  for (const id of sdcIds) ctx.health.sdcSeen(id, 0);
  await m.login();
  const pool = await m.idOf("StoragePool", "sp1");
  // warm-up (statement caches, the placement view)
  // (and the WAL's first checkpoint after the open, which holds what the start wrote: thousands of pages)
  const WARM = Number(process.env.BENCH_WARM ?? 40);
  for (let i = 0; i < WARM; i++) {
    await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: `warm${i}`, volumeType: "ThinProvisioned" });
    await new Promise((r) => setTimeout(r, 1));
  }
  await walCheckpointerOf(db)?.run();
  console.log(`load ${load()}`);
  const ids: string[] = [];
  const cCpu: number[] = [];
  const cWall: number[] = [];
  const mCpu: number[] = [];
  const mWall: number[] = [];
  let commits = 0;
  const orig = db.transaction.bind(db);
  // count the transactions a call commits (each is one fsync of the WAL)
  (db as { transaction: unknown }).transaction = (fn: (...a: unknown[]) => unknown) => {
    const t = orig(fn);
    return Object.assign((...a: unknown[]) => {
      const r = t(...a);
      if (!db.inTransaction) commits++;
      return r;
    }, t);
  };
  let createCommits = 0;
  const cMain0 = mainNs();
  // a turn of the event loop between calls, as a server has (timers run: the WAL checkpointer's)
  const turn = () => new Promise((r) => setTimeout(r, 1));
  for (let i = 0; i < CREATES; i++) {
    await turn();
    const c0 = cpuUs();
    const t0 = performance.now();
    const k0 = commits;
    const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: `restlat${i}`, volumeType: "ThinProvisioned" });
    cWall.push(performance.now() - t0);
    if (process.env.BENCH_DEBUG && cWall[i]! > 50) console.log(`create ${i}: ${cWall[i]!.toFixed(0)} ms wall; checkpoints so far ${JSON.stringify(walCheckpointerOf(db)?.stats)}`);
    cCpu.push((cpuUs() - c0) / 1000);
    createCommits += commits - k0;
    if (r.status !== 200) throw new Error(`create: ${r.status} ${r.text}`);
    ids.push((r.json as { id: string }).id);
  }
  const cMain = (mainNs() - cMain0) / 1e6 / CREATES;
  let mapCommits = 0;
  const mMain0 = mainNs();
  for (let i = 0; i < CREATES; i++) {
    await turn();
    const c0 = cpuUs();
    const t0 = performance.now();
    const k0 = commits;
    const r = await m.api("POST", `/instances/Volume::${ids[i]}/action/addMappedSdc`, { sdcId: sdcIds[i % sdcIds.length], accessMode: "ReadWrite" });
    mWall.push(performance.now() - t0);
    mCpu.push((cpuUs() - c0) / 1000);
    mapCommits += commits - k0;
    if (r.status !== 200) throw new Error(`map: ${r.status} ${r.text}`);
  }
  const mMain = (mainNs() - mMain0) / 1e6 / CREATES;
  console.log(`REST create (1 GiB thin, ${CREATES}): CPU ms ${stats(cCpu)}; main thread ${cMain.toFixed(2)} ms CPU each (mean); wall ms ${stats(cWall)}; ${(createCommits / CREATES).toFixed(1)} commits each`);
  console.log(`REST map (${CREATES}): CPU ms ${stats(mCpu)}; main thread ${mMain.toFixed(2)} ms CPU each (mean); wall ms ${stats(mWall)}; ${(mapCommits / CREATES).toFixed(1)} commits each`);
  const ck = walCheckpointerOf(db)?.stats;
  console.log(`WAL checkpoints off the loop: ${ck ? `${ck.runs} run${ck.fellBack ? " (fell back to sqlite's auto-checkpoint)" : ""}` : "none (auto-checkpoint in the commit)"}; load ${load()}`);
} finally {
  m.close();
  rmSync(dir, { recursive: true, force: true });
}
