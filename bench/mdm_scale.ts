// MDM at scale (simulated nodes, real MDM): one process plays BENCH_SDS SDSs (10 fault sets,
// 8 devices each) and BENCH_SDC SDCs that join a real `pf mdm` child process over its HTTPS
// cluster API and heartbeat at the real interval (Limits.heartbeatIntervalMs), refetching their
// assignments / maps whenever the heartbeat answer's mapVersion moved, as src/sds/main.ts and
// src/sdc/sdc_node.ts do. Each also holds one map watch (GET mapWatch, src/proto/map_watch.ts)
// and fetches after an answer that moved, at least 200 ms after its previous such fetch; fetches
// of one node never overlap (a caller during one gets the next: FreshRun), and each sends the
// tag of the SDS address list it holds (the MDM omits an unchanged list). BENCH_VOLUMES volumes are created and mapped (round robin over the
// SDCs) through REST under that load. Prints: MDM RSS and CPU (from /proc/<pid>), CPU per
// heartbeat answered at rest, REST create/map p50/p99, heartbeat p50/p99 and the longest gap a
// node saw between answered beats, GET of all volumes (time, bytes), and the time from one SDS's
// loss to a complete rebuild plan, seen both through the recovery state REST (queryRebuild) and
// through the assignments the surviving SDSs fetch (sync targets they carry).
//
// Run: npx bun bench/mdm_scale.ts
// env: BENCH_SDS=1000 BENCH_SDC=500 BENCH_VOLUMES=100000 BENCH_VOLUME_GIB=1 BENCH_CONCURRENCY=4
//      BENCH_STEADY_S=15 (heartbeat-only window for CPU per heartbeat)
//      BENCH_SEED=0 (volumes created and mapped through the MDM's code before it starts: see "seeding")
//      BENCH_SEED_CACHE=DIR (keep the seeded database per size and reuse it)  BENCH_SEED_ONLY=1 (exit after seeding)
//      BENCH_REJOIN=1 (0 with BENCH_SEED: no joins, the nodes beat at once with the tokens the MDM's
//        code derives from the seeded database, as running nodes after an MDM restart)
//      BENCH_HELD=0 (1 with BENCH_REJOIN=0: the nodes start at the seeded mapVersion, holding their maps)
//      BENCH_HELD_LOG=0 (1 with BENCH_HELD=1: the SDSs also hold the previous MDM life's copy-log id: deltas after a clean restart)
//      BENCH_RAMP_S=0 (with BENCH_REJOIN=0: first beats spread over this many seconds)
//      BENCH_REFETCH=1 (0: nodes never fetch assignments/maps after joining; not what real nodes do)
//      BENCH_WATCH=1 (0: no map watches, heartbeats alone, as before the map watch)
//      BENCH_WATCH_GAP=doubling (watch fetches 200 ms apart doubling to 1 s while changes keep
//        coming: a pacing tried for the real nodes and not kept, see docs/design.md)
//      BENCH_ADDR_TAG=1 (0: nodes send no address-list tag, i.e. get every SDS address in every answer)
//      BENCH_DELTA=1 (0: SDSs never ask for delta assignments, i.e. refetch their whole list)
//      BENCH_PF_BIN=dist/pf (default: `bun src/cmd/main.ts`, i.e. runMdm in a child, this tree's code)
//      BENCH_CPU_PROF=DIR (MDM child runs under bun --cpu-prof, profile written to DIR on exit)
//      BENCH_CLIENT=http1 (fetch: every request through Bun's one fetch pool, as before: it keeps few
//        idle sockets, so most beats paid the MDM a new TLS connection, ~300 µs of its CPU each)
// The simulated nodes are cheap: one 10 ms pacing loop for all of them, pre-built bodies and
// headers, answers read as text and only scanned (never zod-parsed). Each node holds its own
// kept-alive TLS connections (bench/http1_client.ts: a pool per node, as a real node's own fetch
// pool; its beat, its fetch and its held map watch each on one), so the MDM pays a handshake per
// node, not per request; the new connections are counted and printed per phase.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { FreshRun, WATCH_MIN_GAP_MS } from "../src/proto/map_watch.ts";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cpuSecondsOf } from "./proc_cpu.ts";
import { freePort } from "../test/helpers/cluster.ts";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, ClusterPaths, NODE_TOKEN_HEADER } from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import { Http1Client, type Http1Pool } from "./http1_client.ts";

const N_SDS = Number(process.env.BENCH_SDS ?? 1000);
const N_SDC = Number(process.env.BENCH_SDC ?? 500);
const VOLUMES = Number(process.env.BENCH_VOLUMES ?? 100_000);
const VOLUME_GIB = Number(process.env.BENCH_VOLUME_GIB ?? 1);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const STEADY_S = Number(process.env.BENCH_STEADY_S ?? 15);
const REFETCH = process.env.BENCH_REFETCH !== "0";
const WATCH = REFETCH && process.env.BENCH_WATCH !== "0";
const ADDR_TAG = process.env.BENCH_ADDR_TAG !== "0";
const DOUBLING_GAP = process.env.BENCH_WATCH_GAP === "doubling";
/** SDSs ask for delta assignments (since= their version, log= the copy-log id), as src/sds/main.ts */
const DELTA = process.env.BENCH_DELTA !== "0";
/** BENCH_SDC_DELTA=0: the SDCs ask whole maps (as before SDC map deltas) while the SDSs still ask deltas */
const SDC_DELTA = process.env.BENCH_SDC_DELTA !== "0";
/** as src/proto/map_watch.ts: retry pauses after a failed watch */
const WATCH_RETRY_MIN_MS = 250;
const WATCH_RETRY_MAX_MS = 5000;
const FAULT_SETS = 10;
const DEVICES_PER_SDS = 8;
const DEVICE_BYTES = 4 * 1024 ** 4; // 4 TiB each: thin, nothing is written
const HEARTBEAT_MS = Limits.heartbeatIntervalMs;
const HEARTBEAT_TIMEOUT_MS = Limits.heartbeatTimeoutMs;
const ROOT = resolve(import.meta.dir, "..");

// Bun's fetch runs at most BUN_CONFIG_MAX_HTTP_REQUESTS (default 256) requests at once, read at
// start: with a held watch per node the heartbeats would queue behind them (real nodes are one
// process each), so run again with room for every node's watch, beat and fetch.
const NEED_REQUESTS = Math.min(65_000, 3 * (N_SDS + N_SDC) + 64);
if (Number(process.env.BUN_CONFIG_MAX_HTTP_REQUESTS ?? 256) < NEED_REQUESTS) {
  const child = Bun.spawn([process.execPath, ...process.argv.slice(1)], { stdio: ["inherit", "inherit", "inherit"], env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: String(NEED_REQUESTS) } });
  process.exit(await child.exited);
}

const log = (s: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

// ---- the MDM child ----

const dir = mkdtempSync(join(tmpdir(), "pf-mdm-scale-"));
const dataDir = join(dir, "mdm");
const secretFile = join(dir, "cluster-secret");
const passwordFile = join(dir, "admin-password");
const CLUSTER_SECRET = "mdm-scale-bench-cluster-secret-0123456789";
const ADMIN_PASSWORD = "mdm-scale-bench-password";
writeFileSync(secretFile, CLUSTER_SECRET, { mode: 0o600 });
writeFileSync(passwordFile, ADMIN_PASSWORD, { mode: 0o600 });
const port = await freePort();
const mdmArgs = [
  "mdm",
  "--data-dir", dataDir,
  "--listen", `127.0.0.1:${port}`,
  "--cluster-secret-file", secretFile,
  "--admin-password-file", passwordFile,
  "--heartbeat-timeout-ms", String(HEARTBEAT_TIMEOUT_MS),
  "--rebuild-grace-ms", "0", // rebuild at once on loss: the bench times the planner, not the grace period
];

// ---- seeding (BENCH_SEED volumes) ----
// Creating 100,000 volumes one REST call at a time takes longer than a run should. BENCH_SEED
// volumes are made BEFORE the MDM child starts, in this process, through the MDM's own code on
// the same data dir: the SDS/SDC joins (cluster_service.ts sdsJoin/sdcJoin, the same requests
// the simulated nodes send later, which then rejoin by name/guid), createVolume (placement and
// extent rows as a REST create) and addMappedSdc, then the database is closed and the child opens
// it. No row is written by hand. The REST create/map phases then add BENCH_VOLUMES more under
// the heartbeat load of every node, with the seeded ones already there.
const SEED = Number(process.env.BENCH_SEED ?? 0);
function sdsJoinBody(i: number) {
  return {
    name: `sds${i}`,
    host: "127.0.0.1",
    dataPort: 20_000 + i,
    protectionDomainName: "pd1",
    storagePoolName: "sp1",
    faultSetName: `fs${i % FAULT_SETS}`,
    devices: Array.from({ length: DEVICES_PER_SDS }, (_, d) => ({ path: `/dev/sim${i}-${d}`, capacityBytes: DEVICE_BYTES })),
  };
}
const sdcJoinBody = (i: number) => ({ guid: `bench-sdc-${i}`, name: `sdc${i}`, host: "127.0.0.1" });
// BENCH_SEED_CACHE=DIR keeps the seeded database (per size) and reuses it in later runs
const SEED_CACHE = process.env.BENCH_SEED_CACHE ? join(resolve(process.env.BENCH_SEED_CACHE), `seed-${N_SDS}-${N_SDC}-${SEED}-${VOLUME_GIB}`) : null;
const { existsSync, mkdirSync, copyFileSync } = await import("node:fs");
/**
 * The joins made while seeding (ids, node tokens, device ids): with BENCH_REJOIN=0 the simulated
 * nodes start beating with them at the MDM's start, as running nodes do after an MDM restart
 * (they keep their tokens and do not join again), instead of 1,500 joins first.
 */
const seededJoins: { sds: { sdsId: string; nodeToken: string; deviceIds: string[] }[]; sdc: { sdcId: string; nodeToken: string }[] } = { sds: [], sdc: [] };
const REJOIN = SEED === 0 || process.env.BENCH_REJOIN !== "0";
/**
 * BENCH_HELD=1 (with BENCH_REJOIN=0): the nodes start applying the seeded database's mapVersion,
 * as running nodes that hold their maps when the MDM restarts (nothing changed meanwhile: no
 * fetch at their first beat; an SDS's first fetch later is still whole, its copy-log id being
 * from the MDM's previous life). Default 0: they start at 0, a cluster start (every node's first
 * beat sends it to a full fetch).
 */
const HELD = !REJOIN && process.env.BENCH_HELD === "1";
/**
 * BENCH_HELD_LOG=1 (with BENCH_HELD=1): the SDSs also hold the previous MDM life's copy-log id
 * and the address-list tag, as running SDSs that fetched before a clean MDM restart (the
 * seeding's MDM opens its copy log and stops cleanly: its hand-off lets the bench's MDM answer
 * their first fetch by a delta, mdm/cluster/copy_log.ts). Default 0: a node's first fetch is whole.
 */
const HELD_LOG = HELD && process.env.BENCH_HELD_LOG === "1";
let heldCopyLog: string | null = null;
let heldAddressTag: string | null = null;
let seededMapVersion = 0;
/** BENCH_RAMP_S (with BENCH_REJOIN=0): the nodes' first beats spread over this many seconds instead of one interval (reconnects not all at once) */
const RAMP_MS = Number(process.env.BENCH_RAMP_S ?? 0) * 1000;
if (SEED > 0 && SEED_CACHE !== null && existsSync(join(SEED_CACHE, "mdm.db"))) {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  copyFileSync(join(SEED_CACHE, "mdm.db"), join(dataDir, "mdm.db"));
  if (!REJOIN) {
    // the tokens the nodes hold: made by the MDM's own code from the database's key
    const { openMdmCore } = await import("../src/mdm/app.ts");
    const { nodeTokenOf } = await import("../src/mdm/core/dataplane_secrets.ts");
    const { NodeRole } = await import("../src/proto/dataplane_auth.ts");
    const core = await openMdmCore({ dataDir, clusterSecret: CLUSTER_SECRET, adminPassword: ADMIN_PASSWORD });
    const db = core.ctx.store.sqlite;
    const devs = Map.groupBy(db.query<{ id: string; sds: string }, []>("SELECT id, sds_id AS sds FROM device ORDER BY rowid").all(), (d) => d.sds);
    for (const { id } of db.query<{ id: string }, []>("SELECT id FROM sds ORDER BY rowid").all()) {
      seededJoins.sds.push({ sdsId: id, nodeToken: nodeTokenOf(core.ctx, NodeRole.SDS, id), deviceIds: (devs.get(id) ?? []).map((d) => d.id) });
    }
    for (const { id } of db.query<{ id: string }, []>("SELECT id FROM sdc ORDER BY rowid").all()) seededJoins.sdc.push({ sdcId: id, nodeToken: nodeTokenOf(core.ctx, NodeRole.SDC, id) });
    seededMapVersion = db.query<{ v: number }, []>("SELECT map_version AS v FROM system").get()!.v;
    if (HELD_LOG) {
      const { copyLogOf } = await import("../src/mdm/cluster/copy_log.ts");
      const { addressesFor } = await import("../src/mdm/cluster/sds_addresses.ts");
      heldCopyLog = copyLogOf(core.ctx).id;
      heldAddressTag = addressesFor(core.ctx, undefined).sdsTag;
    }
    core.close(); // a clean stop: with BENCH_HELD_LOG it writes the copy-log hand-off
  }
  log(`seeded database reused from ${SEED_CACHE}`);
} else if (SEED > 0) {
  const t0 = performance.now();
  const { openMdmCore } = await import("../src/mdm/app.ts");
  const svc = await import("../src/mdm/cluster/cluster_service.ts");
  const vols = await import("../src/mdm/topology/volumes.ts");
  const topo = await import("../src/mdm/topology/topology.ts");
  const api = await import("../src/proto/cluster_api.ts");
  const pf = await import("../src/proto/powerflex_api.ts");
  const core = await openMdmCore({ dataDir, clusterSecret: CLUSTER_SECRET, adminPassword: ADMIN_PASSWORD });
  await core.ctx.meta.start();
  const ctx = core.ctx;
  const sdsIds: string[] = [];
  for (let i = 0; i < N_SDS; i++) {
    const r = svc.sdsJoin(ctx, api.SdsJoinRequest.parse(sdsJoinBody(i)));
    sdsIds.push(r.sdsId);
    seededJoins.sds.push({ sdsId: r.sdsId, nodeToken: r.nodeToken, deviceIds: r.devices.map((d) => d.deviceId) });
  }
  // nobody heartbeats here: placement wants connected SDSs, so count them seen as we go
  const seenAll = () => {
    for (const id of sdsIds) ctx.health.sdsSeen(id, 0);
  };
  const sdcs: string[] = [];
  for (let i = 0; i < N_SDC; i++) {
    const r = svc.sdcJoin(ctx, api.SdcJoinRequest.parse(sdcJoinBody(i)));
    sdcs.push(r.sdcId);
    seededJoins.sdc.push({ sdcId: r.sdcId, nodeToken: r.nodeToken });
  }
  const poolId = ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM storage_pool WHERE name = 'sp1'").get()!.id;
  topo.setPoolFlags(ctx, poolId, { rebalanceEnabled: false });
  let lastSeen = 0;
  let lastMark = performance.now();
  let lastMarkN = 0;
  // 200 creates per sqlite transaction (nested ones are savepoints): one commit, not 200 fsyncs
  const BATCH = 200;
  const batch = ctx.store.sqlite.transaction((from: number) => {
    for (let i = from; i < Math.min(SEED, from + BATCH); i++) seedOne(i);
  });
  const seedOne = (i: number) => {
    if (performance.now() - lastSeen > 1000) {
      seenAll();
      lastSeen = performance.now();
    }
    const id = vols.createVolume(ctx, pf.CreateVolume.parse({ storagePoolId: poolId, volumeSizeInGb: String(VOLUME_GIB), name: `seed${i}`, volumeType: "ThinProvisioned" }));
    vols.addMappedSdc(ctx, id, pf.AddMappedSdc.parse({ sdcId: sdcs[i % N_SDC], accessMode: "ReadWrite", allowMultipleMappings: "FALSE" }));
    if ((i + 1) % (SEED >= 20_000 ? 10_000 : 1000) === 0) {
      const now = performance.now();
      log(`  seeded ${i + 1}/${SEED} volumes (${((now - t0) / 1000).toFixed(0)} s; ${((now - lastMark) / (i + 1 - lastMarkN)).toFixed(2)} ms a volume since the last line; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`);
      lastMark = now;
      lastMarkN = i + 1;
    }
  };
  for (let from = 0; from < SEED; from += BATCH) batch(from);
  await ctx.meta.close();
  ctx.store.sqlite.run("PRAGMA wal_checkpoint(TRUNCATE)");
  core.close();
  if (SEED_CACHE !== null) {
    mkdirSync(SEED_CACHE, { recursive: true });
    copyFileSync(join(dataDir, "mdm.db"), join(SEED_CACHE, "mdm.db"));
  }
  log(`seeded ${N_SDS} SDS, ${N_SDC} SDC and ${SEED} mapped volumes through the MDM's code in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
// BENCH_SEED_ONLY=1: stop after seeding (to time or profile the seeding alone)
if (process.env.BENCH_SEED_ONLY === "1") {
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
const prof = process.env.BENCH_CPU_PROF;
const cmd = process.env.BENCH_PF_BIN
  ? [resolve(process.env.BENCH_PF_BIN), ...mdmArgs]
  : [process.execPath, ...(prof ? ["--cpu-prof", "--cpu-prof-dir", resolve(prof)] : []), join(ROOT, "src/cmd/main.ts"), ...mdmArgs];
const mdm = Bun.spawn(cmd, { stdout: "inherit", stderr: "inherit", cwd: ROOT, env: { ...process.env, CONSOLA_LEVEL: "1" } });
const base = `https://127.0.0.1:${port}`;
let stopping = false;
void mdm.exited.then((code) => {
  if (!stopping) log(`the MDM exited unexpectedly: code ${code}, signal ${mdm.signalCode ?? "none"}`);
});

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}
function hwmMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}
const loadAvg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

// ---- HTTP ----

let tls: { ca: string } | undefined;

let resets = 0;
/** BENCH_CLIENT=fetch: every request through Bun's one fetch pool (few idle sockets: most requests paid a new TLS connection) */
const FETCH_CLIENT = process.env.BENCH_CLIENT === "fetch";
let http1: Http1Client | null = null;
let adminPool: Http1Pool | null = null;
const openedInAll = (): string => {
  const c = http1 as Http1Client | null;
  return c === null ? "client fetch()" : `client: kept-alive TLS connections per node, ${c.counters.opened} opened in all`;
};
async function request(method: string, path: string, headers: Record<string, string>, body?: string, pool: Http1Pool | null = adminPool): Promise<{ status: number; text: string }> {
  if (pool !== null) return pool.request(method, path, headers, body);
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(base + path, { method, headers, body, tls } as RequestInit);
      return { status: res.status, text: await res.text() };
    } catch (e) {
      // a pooled keep-alive connection the server closed as idle: retry once on a new one
      if (attempt > 1 || (e as { code?: string }).code !== "ECONNRESET") throw e;
      resets++;
    }
  }
}

async function call<T>(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<T> {
  const r = await request(method, path, body === undefined ? headers : { ...headers, "content-type": "application/json" }, body === undefined ? undefined : JSON.stringify(body));
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`);
  return JSON.parse(r.text) as T;
}

const clusterHeaders = { [CLUSTER_SECRET_HEADER]: CLUSTER_SECRET, "content-type": "application/json" };

async function waitForMdm(): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    if (mdm.exitCode !== null) throw new Error(`the MDM exited with ${mdm.exitCode} before it served`);
    try {
      tls = { ca: readFileSync(join(dataDir, "tls", "cert.pem"), "utf8") };
      const r = await request("GET", "/api/version", {}, undefined, null);
      if (r.status > 0) {
        if (!FETCH_CLIENT) {
          http1 = new Http1Client("127.0.0.1", port, tls.ca);
          adminPool = http1.pool(CONCURRENCY + 4);
        }
        return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`the MDM did not serve ${base} within 60 s`);
    await Bun.sleep(100);
  }
}

// ---- series ----

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}
function summary(ms: readonly number[]): { n: number; p50: number; p99: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1] ?? Number.NaN };
}

async function measure(count: number, fn: (i: number) => Promise<unknown>): Promise<{ ms: number[]; wallMs: number; errors: number }> {
  const ms: number[] = [];
  let next = 0;
  let errors = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const s = performance.now();
      try {
        await fn(i);
        ms.push(performance.now() - s);
      } catch (e) {
        // an overloaded MDM: Bun.serve drops a request unanswered for 10 s (idleTimeout); count it, go on
        if (errors++ < 3) log(`  call ${i} failed after ${(performance.now() - s).toFixed(0)} ms: ${(e as Error).message.slice(0, 200)}`);
      }
      if ((i + 1) % 10_000 === 0) log(`  ${i + 1}/${count}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
  return { ms, wallMs: performance.now() - t0, errors };
}

// ---- simulated nodes ----

interface SimNode {
  kind: "sds" | "sdc";
  id: string;
  hbPath: string;
  fetchPath: string;
  headers: Record<string, string>;
  /** heartbeat body = bodyHead + appliedMapVersion + bodyTail */
  bodyHead: string;
  bodyTail: string;
  applied: number;
  /** offset of this node's beats within the interval, so beats spread evenly */
  nextDueMs: number;
  busy: boolean;
  stopped: boolean;
  lastAnsweredMs: number;
  maxGapMs: number;
  /** extents of this SDS whose assignment carries a sync target (kept only while watching a loss; deltas merged) */
  targets: Map<string, boolean> | null;
  /** the copy-log id of the last assignments answer (sent back with since= for a delta) */
  copyLog: string | null;
  /** tag of the SDS address list this node holds (sent with its fetches) */
  addressesTag: string | null;
  watchPath: string;
  watching: boolean;
  /** one fetch at a time; a caller during one gets the next */
  fetches: FreshRun;
  /** a fetch the MDM shed waits for its turn; beats go on */
  waitingTurn: boolean;
  onShed: (() => void) | null;
  /** this node's kept-alive connections (null: BENCH_CLIENT=fetch) */
  pool: Http1Pool | null;
}

const nodes: SimNode[] = [];

/** A simulated node that has joined: its cluster API paths, node token and heartbeat body head. */
function simNode(kind: SimNode["kind"], id: string, hbPath: string, fetchPath: string, nodeToken: string, bodyHead: string): SimNode {
  // (its first beat goes out right after its join, at a random offset within an interval: beats spread)
  const n: SimNode = {
    kind,
    id,
    hbPath: CLUSTER_API_PREFIX + hbPath,
    fetchPath: CLUSTER_API_PREFIX + fetchPath,
    headers: { ...clusterHeaders, [NODE_TOKEN_HEADER]: nodeToken },
    bodyHead,
    bodyTail: "}",
    applied: 0,
    nextDueMs: performance.now() + Math.random() * HEARTBEAT_MS,
    busy: false,
    stopped: false,
    lastAnsweredMs: 0,
    maxGapMs: 0,
    targets: null,
    copyLog: null,
    addressesTag: null,
    watchPath: CLUSTER_API_PREFIX + `/${kind}/${id}/mapWatch`,
    watching: false,
    fetches: new FreshRun(() => fetchMaps(n)),
    waitingTurn: false,
    onShed: null,
    pool: http1 === null ? null : http1.pool(),
  };
  return n;
}
const stats = {
  beatsAnswered: 0,
  beatsFailed: 0,
  fetches: 0,
  fetchBytes: 0,
  /** fetches whose answer carried the SDS address list */
  fetchesWithList: 0,
  /** assignment answers that were deltas */
  deltas: 0,
  /** SDC map answers that were deltas, SDC map answers, and their bytes */
  sdcDeltas: 0,
  sdcFetches: 0,
  sdcFetchBytes: 0,
  /** fetches the MDM shed (429) */
  shed: 0,
  /** beats that went on without waiting for a fetch slower than an interval */
  slowFetches: 0,
  watchAnswers: 0,
  watchMoved: 0,
  watchFailed: 0,
  beatMs: [] as number[],
  recordBeats: false,
  keepAssignments: false,
};

function mapVersionOf(text: string): number {
  const m = /"mapVersion":(\d+)/.exec(text.slice(0, 200)) ?? /"mapVersion":(\d+)/.exec(text);
  if (!m) throw new Error(`no mapVersion in ${text.slice(0, 200)}`);
  return Number(m[1]);
}

let debugLists = 0;
/** GET the node's assignments / maps (with its address-list tag) and take the version. */
async function fetchMaps(n: SimNode): Promise<void> {
  const q: string[] = [];
  if (ADDR_TAG && n.addressesTag) q.push(`addresses=${n.addressesTag}`);
  if (DELTA && n.copyLog !== null && (n.kind === "sds" || SDC_DELTA)) q.push(`since=${n.applied}`, `log=${n.copyLog}`);
  const path = q.length > 0 ? `${n.fetchPath}?${q.join("&")}` : n.fetchPath;
  let f = await request("GET", path, n.headers, undefined, n.pool);
  // a busy MDM sheds fetches (429, "retry after <n> ms"): wait and ask again, as the real nodes (BeatFetch.run)
  // (its turn may be far at a cold start: the beats go on meanwhile, as src/sds/main.ts)
  try {
    for (let tries = 1; f.status === 429 && tries < 100; tries++) {
      stats.shed++;
      n.waitingTurn = true;
      n.onShed?.();
      // (the real nodes wait at most 10 s, busyRetryMs; the bench waits the whole time named: a run with the cap is in docs/design.md)
      const ms = Number(/retry after (\d+) ms/.exec(f.text)?.[1] ?? 1000);
      await Bun.sleep(ms);
      f = await request("GET", path, n.headers, undefined, n.pool);
    }
  } finally {
    n.waitingTurn = false;
  }
  if (f.status !== 200) throw new Error(`${path}: ${f.status} ${f.text.slice(0, 200)}`);
  stats.fetches++;
  stats.fetchBytes += f.text.length;
  n.applied = mapVersionOf(f.text);
  // the list ("sds", a key no other field uses) comes right before its tag, near the end of the
  // answer: look for it only there; a tag without a list: keep ours
  const at = f.text.lastIndexOf('"sdsTag":"');
  if (at < 0 || f.text.includes('"sds":[', Math.max(0, at - N_SDS * 100 - 1000))) {
    stats.fetchesWithList++;
    if (process.env.BENCH_DEBUG && stats.recordBeats && debugLists++ < 8) log(`list to ${n.kind} ${n.id} (sent tag ${n.addressesTag}, path ${path}): ${f.text.length} chars, ${f.text.slice(0, 160)} ... ${f.text.slice(at - 40, at + 40)}`);
    n.addressesTag = at < 0 ? null : f.text.slice(at + 10, at + 26);
  }
  if (n.kind === "sdc") {
    // the log an SDC map is current with (proto/maps_delta.ts; absent from an MDM without map deltas)
    const c = f.text.lastIndexOf('"mapLog":"');
    n.copyLog = c < 0 ? null : f.text.slice(c + 10, c + 26);
    if (f.text.includes('"since":', Math.max(0, c - 10)) && c >= 0) stats.sdcDeltas++;
    stats.sdcFetches++;
    stats.sdcFetchBytes += f.text.length;
  }
  if (n.kind === "sds") {
    const c = f.text.lastIndexOf('"copyLog":"');
    n.copyLog = c < 0 ? null : f.text.slice(c + 11, c + 27);
    const delta = f.text.includes('"since":', Math.max(0, c - 10));
    if (delta) stats.deltas++;
    if (stats.keepAssignments) {
      // merge as the SDS does: a full answer replaces, a delta's rows replace theirs and `removed` drops
      type A = { extents: { volumeId: string; extentIndex: number; syncTarget: unknown }[]; removed?: { volumeId: string; extentIndex: number }[]; since?: number };
      const a = JSON.parse(f.text) as A;
      if (a.since === undefined || n.targets === null) n.targets = new Map();
      for (const k of a.removed ?? []) n.targets.delete(`${k.volumeId}/${k.extentIndex}`);
      for (const e of a.extents) n.targets.set(`${e.volumeId}/${e.extentIndex}`, e.syncTarget !== null);
    }
  }
}

/** the real nodes' pacing (proto/map_watch.ts): every watch fetch at least `gapMs` after the previous one */
function fixedGap(gapMs: number): { next(nowMs: number): number } {
  let last = -Infinity;
  return { next: (nowMs) => (last = Math.max(nowMs, last + gapMs)) };
}
/** a change heard after the gap goes at once (gap back to minMs); one within it waits, and the next gap doubles up to maxMs */
function doublingGap(minMs: number, maxMs: number): { next(nowMs: number): number } {
  let last = -Infinity;
  let streak = 0;
  return {
    next(nowMs) {
      const gap = Math.min(maxMs, minMs * 2 ** Math.min(streak, 10));
      if (nowMs >= last + gap) {
        streak = 0;
        last = nowMs;
      } else {
        streak++;
        last += gap;
      }
      return last;
    },
  };
}

let stopAll = false;
/** The node's map watch, as src/proto/map_watch.ts MapWatch.run: one held at a time, fetch after a moved answer. */
async function watchLoop(n: SimNode): Promise<void> {
  let failures = 0;
  const pacing = DOUBLING_GAP ? doublingGap(WATCH_MIN_GAP_MS, HEARTBEAT_MS) : fixedGap(WATCH_MIN_GAP_MS); // fixed: the real nodes' pacing
  while (!n.stopped && !stopAll) {
    try {
      const r = await request("GET", `${n.watchPath}?after=${n.applied}&waitMs=${Limits.mapWatchMaxMs}`, n.headers, undefined, n.pool);
      if (r.status !== 200) throw new Error(`${n.watchPath}: ${r.status} ${r.text.slice(0, 200)}`);
      failures = 0;
      stats.watchAnswers++;
      if (n.stopped || stopAll || mapVersionOf(r.text) === n.applied) continue;
      stats.watchMoved++;
      const waitMs = pacing.next(performance.now()) - performance.now();
      if (waitMs > 0) await Bun.sleep(waitMs);
      if (!n.stopped) await n.fetches.run();
    } catch (e) {
      if (n.stopped || stopAll) return;
      if (stats.watchFailed++ < 5) log(`watch of ${n.kind} ${n.id} failed: ${(e as Error).message}`);
      await Bun.sleep(Math.min(WATCH_RETRY_MAX_MS, WATCH_RETRY_MIN_MS * 2 ** Math.min(failures++, 5)));
    }
  }
}

async function beat(n: SimNode, sentMs: number): Promise<void> {
  n.busy = true;
  try {
    const r = await request("POST", n.hbPath, n.headers, n.bodyHead + n.applied + n.bodyTail, n.pool);
    if (r.status !== 200) throw new Error(`heartbeat of ${n.kind} ${n.id}: ${r.status} ${r.text.slice(0, 200)}`);
    const now = performance.now();
    if (stats.recordBeats) stats.beatMs.push(now - sentMs);
    stats.beatsAnswered++;
    const version = mapVersionOf(r.text);
    if (REFETCH && version !== n.applied && !n.waitingTurn) {
      const shed = new Promise<void>((resolve) => (n.onShed = resolve));
      const refresh = n.fetches.run();
      // as the real nodes: a shed fetch, or one slower than an interval, does not hold the next beat
      let slowTimer: ReturnType<typeof setTimeout> | undefined;
      const slow = new Promise<string>((resolve) => (slowTimer = setTimeout(() => resolve("slow"), HEARTBEAT_MS)));
      const first = await Promise.race([refresh.then(() => "done"), shed.then(() => "shed"), slow]).finally(() => {
        n.onShed = null;
        clearTimeout(slowTimer);
      });
      if (first !== "done") {
        refresh.catch(() => stats.beatsFailed++);
        if (first === "slow") stats.slowFetches++;
        return; // no lease from this beat (its maps are not caught up): not an answered beat for the gap
      }
    }
    // like the real SDS: a beat counts (renews the lease) once its maps are caught up
    const done = performance.now();
    if (n.lastAnsweredMs > 0) n.maxGapMs = Math.max(n.maxGapMs, done - n.lastAnsweredMs);
    n.lastAnsweredMs = done;
  } catch (e) {
    if (stopAll) return; // the MDM is being stopped
    stats.beatsFailed++;
    if (stats.beatsFailed <= 5) log(`beat failed: ${(e as Error).message}`);
  } finally {
    n.busy = false;
  }
}

let pacer: ReturnType<typeof setInterval> | null = null;
/** Beats start per node at its join (nextDueMs set then), as a real node beats right after its own join. */
function startPacing(): void {
  pacer = setInterval(() => {
    const now = performance.now();
    for (const n of nodes) {
      if (n.stopped || n.busy || now < n.nextDueMs) continue;
      // fixed rate from the last send, as the real nodes; a late beat goes out at once
      n.nextDueMs = Math.max(n.nextDueMs + HEARTBEAT_MS, now - HEARTBEAT_MS);
      void beat(n, now);
      // a real node starts its watch after its join; here at its first beat, so watches spread too
      if (WATCH && !n.watching) {
        n.watching = true;
        void watchLoop(n);
      }
    }
  }, 10);
}

function resetGaps(): void {
  for (const n of nodes) n.maxGapMs = 0;
}
function worstGap(): number {
  return nodes.reduce((m, n) => (n.stopped ? m : Math.max(m, n.maxGapMs)), 0);
}

// ---- the run ----

interface Row {
  measure: string;
  figure: string;
}
const rows: Row[] = [];
const row = (measure: string, figure: string) => {
  rows.push({ measure, figure });
  log(`${measure}: ${figure}`);
};
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

try {
  await waitForMdm();
  log(`MDM pid ${mdm.pid} serving ${base}; ${N_SDS} SDS x ${DEVICES_PER_SDS} devices in ${FAULT_SETS} fault sets, ${N_SDC} SDC, ${SEED} seeded + ${VOLUMES} volumes of ${VOLUME_GIB} GiB; load ${loadAvg()}`);
  const token = await call<string>("GET", "/api/login", { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString("base64")}` });
  const auth = { authorization: `Basic ${Buffer.from(`:${token}`).toString("base64")}` };

  // join: SDSs then SDCs, a few at a time; each beats from its join on
  startPacing();
  let joined = 0;
  const sdcIds: string[] = [];
  if (!REJOIN) {
    // an MDM restart under running nodes: they beat with the tokens they hold, no join
    for (const j of seededJoins.sds) {
      const devices = j.deviceIds.map((deviceId) => ({ deviceId, state: "Normal", usedBytes: 0 }));
      const n = simNode("sds", j.sdsId, ClusterPaths.sdsHeartbeat(j.sdsId), ClusterPaths.sdsAssignments(j.sdsId), j.nodeToken, `{"devices":${JSON.stringify(devices)},"rebuilds":[],"failedForwards":[],"appliedMapVersion":`);
      if (HELD) n.applied = seededMapVersion;
      if (HELD_LOG) {
        n.copyLog = heldCopyLog;
        n.addressesTag = heldAddressTag;
      }
      if (RAMP_MS > 0) n.nextDueMs = performance.now() + Math.random() * RAMP_MS;
      nodes.push(n);
      joined++;
    }
    for (const j of seededJoins.sdc) {
      sdcIds.push(j.sdcId);
      const n = simNode("sdc", j.sdcId, ClusterPaths.sdcHeartbeat(j.sdcId), ClusterPaths.sdcMaps(j.sdcId), j.nodeToken, `{"appliedMapVersion":`);
      if (HELD) n.applied = seededMapVersion;
      // the SDCs hold maps of the previous life too (its log id is the copy log's: copy_log.ts)
      if (HELD_LOG) {
        n.copyLog = heldCopyLog;
        n.addressesTag = heldAddressTag;
      }
      if (RAMP_MS > 0) n.nextDueMs = performance.now() + Math.random() * RAMP_MS;
      nodes.push(n);
    }
  }
  await measure(REJOIN ? N_SDS : 0, async (i) => {
    const r = await call<{ sdsId: string; nodeToken: string; devices: { deviceId: string }[] }>("POST", CLUSTER_API_PREFIX + ClusterPaths.sdsJoin, clusterHeaders, sdsJoinBody(i));
    const devices = r.devices.map((d) => ({ deviceId: d.deviceId, state: "Normal", usedBytes: 0 }));
    nodes.push(simNode("sds", r.sdsId, ClusterPaths.sdsHeartbeat(r.sdsId), ClusterPaths.sdsAssignments(r.sdsId), r.nodeToken, `{"devices":${JSON.stringify(devices)},"rebuilds":[],"failedForwards":[],"appliedMapVersion":`));
    joined++;
  });
  await measure(REJOIN ? N_SDC : 0, async (i) => {
    const r = await call<{ sdcId: string; nodeToken: string }>("POST", CLUSTER_API_PREFIX + ClusterPaths.sdcJoin, clusterHeaders, sdcJoinBody(i));
    sdcIds[i] = r.sdcId;
    nodes.push(simNode("sdc", r.sdcId, ClusterPaths.sdcHeartbeat(r.sdcId), ClusterPaths.sdcMaps(r.sdcId), r.nodeToken, `{"appliedMapVersion":`));
  });
  log(`joined ${joined} SDSs and ${sdcIds.length} SDCs, each beating since its join (${nodes.length} nodes every ${HEARTBEAT_MS} ms)`);
  await Bun.sleep(2 * HEARTBEAT_MS);
  const pool = await call<string>("POST", "/api/types/StoragePool/instances/action/queryIdByKey", auth, { name: "sp1" });
  // no rebalance moves: the simulated SDSs never finish a copy, so a move would hold part of the
  // pool's copy budget for ever and the loss below would not get its whole budget
  await call("POST", `/api/instances/StoragePool::${pool}/action/setRebalanceEnabled`, auth, { rebalanceEnabled: "FALSE" });

  /** SDSs and SDCs the MDM holds Disconnected now (a live simulated node should never be) */
  const disconnected = async (): Promise<string> => {
    const sdsList = await call<{ mdmConnectionState: string }[]>("GET", "/api/types/Sds/instances", auth);
    const sdcList = await call<{ mdmConnectionState: string }[]>("GET", "/api/types/Sdc/instances", auth);
    const n = (l: { mdmConnectionState: string }[]) => l.filter((x) => x.mdmConnectionState !== "Connected").length;
    return `${n(sdsList)} SDS + ${n(sdcList)} SDC Disconnected`;
  };
  const phase = (name: string) => {
    const cpu0 = cpuSecondsOf(mdm.pid);
    const sim0 = process.cpuUsage();
    const beats0 = stats.beatsAnswered;
    const fetches0 = stats.fetches;
    const bytes0 = stats.fetchBytes;
    const lists0 = stats.fetchesWithList;
    const deltas0 = stats.deltas;
    const sdc0 = { deltas: stats.sdcDeltas, fetches: stats.sdcFetches, bytes: stats.sdcFetchBytes };
    const shed0 = stats.shed;
    const slow0 = stats.slowFetches;
    const watch0 = stats.watchAnswers;
    const moved0 = stats.watchMoved;
    const conns0 = http1 === null ? null : { ...http1.counters };
    debugLists = 0;
    const t0 = performance.now();
    stats.beatMs = [];
    stats.recordBeats = true;
    resetGaps();
    return () => {
      const s = (performance.now() - t0) / 1000;
      const cpu = cpuSecondsOf(mdm.pid) - cpu0;
      const simU = process.cpuUsage(sim0);
      const simCpu = (simU.user + simU.system) / 1e6;
      const beats = stats.beatsAnswered - beats0;
      const hb = summary(stats.beatMs);
      stats.recordBeats = false;
      void disconnected().then((d) => log(`${name}: ${d} at the end`), () => undefined);
      const fetches = stats.fetches - fetches0;
      const fetchBytes = stats.fetchBytes - bytes0;
      row(
        `${name}: MDM CPU, heartbeats, refetches`,
        `${f1(s)} s wall, ${f1(cpu)} CPU s (${f2(cpu / s)} cores; the simulator ${f2(simCpu / s)} cores); ${beats} beats answered (${(beats / s).toFixed(0)}/s, p50 ${f1(hb.p50)} ms, p99 ${f1(hb.p99)} ms, worst gap ${(worstGap() / 1000).toFixed(1)} s); ` +
          `${fetches} assignment/map fetches (${(fetchBytes / 2 ** 20).toFixed(1)} MiB, ${fetches ? (fetchBytes / fetches / 1024).toFixed(1) : "-"} KiB each, ${stats.fetchesWithList - lists0} with the address list, ${stats.deltas - deltas0} deltas; of them ${stats.sdcFetches - sdc0.fetches} SDC map fetches, ${((stats.sdcFetchBytes - sdc0.bytes) / 2 ** 20).toFixed(1)} MiB, ${stats.sdcDeltas - sdc0.deltas} deltas; ${stats.shed - shed0} shed with 429, ${stats.slowFetches - slow0} beats went on past a fetch slower than an interval); ` +
          `${stats.watchAnswers - watch0} watch answers (${stats.watchMoved - moved0} moved); ${connsSince(conns0, s)}`,
      );
      return { s, cpu, beats };
    };
  };

  /** new TLS connections the MDM accepted from us since `c0` (counted on the client side) */
  function connsSince(c0: { opened: number; reused: number; retried: number } | null, s: number): string {
    if (c0 === null || http1 === null) return "new TLS connections not counted (BENCH_CLIENT=fetch)";
    const c = http1.counters;
    return `${c.opened - c0.opened} new TLS connections (${((c.opened - c0.opened) / s).toFixed(1)}/s; ${c.reused - c0.reused} requests on kept-alive ones, ${c.retried - c0.retried} retried after an idle close)`;
  }
  // seeded: every node's first beat to this MDM life sends it to fetch everything (a new
  // tracker); time that catch-up, then measure the rest
  if (SEED > 0) {
    const end = phase("catch-up after the MDM start (seeded)");
    await Bun.sleep(8 * HEARTBEAT_MS);
    end();
  }
  // heartbeats alone
  {
    const end = phase(SEED > 0 ? `rest, ${SEED} seeded volumes` : "rest, no volumes");
    await Bun.sleep(STEADY_S * 1000 * 0.5);
    const r = end();
    row(SEED > 0 ? `MDM CPU per heartbeat (${SEED} seeded volumes)` : "MDM CPU per heartbeat (no volumes)", `${((r.cpu / r.beats) * 1e6).toFixed(0)} µs`);
  }

  const ids: string[] = new Array(VOLUMES);
  {
    const end = phase("create");
    const created = await measure(VOLUMES, async (i) => {
      const r = await call<{ id: string }>("POST", "/api/types/Volume/instances", auth, {
        storagePoolId: pool,
        volumeSizeInGb: String(VOLUME_GIB),
        name: `v${i}`,
        volumeType: "ThinProvisioned",
      });
      ids[i] = r.id;
    });
    const s = summary(created.ms);
    end();
    row("REST create volume", `${((s.n / created.wallMs) * 1000).toFixed(0)}/s at concurrency ${CONCURRENCY}, p50 ${f2(s.p50)} ms, p99 ${f2(s.p99)} ms, max ${f1(s.max)} ms${created.errors ? `, ${created.errors} failed` : ""}`);
  }
  {
    const end = phase("map");
    const mapped = await measure(VOLUMES, (i) =>
      ids[i] === undefined ? Promise.reject(new Error(`volume ${i} was not created`)) : call("POST", `/api/instances/Volume::${ids[i]}/action/addMappedSdc`, auth, { sdcId: sdcIds[i % N_SDC], accessMode: "ReadWrite", allowMultipleMappings: "FALSE" }),
    );
    const s = summary(mapped.ms);
    end();
    row("REST map volume", `${((s.n / mapped.wallMs) * 1000).toFixed(0)}/s at concurrency ${CONCURRENCY}, p50 ${f2(s.p50)} ms, p99 ${f2(s.p99)} ms, max ${f1(s.max)} ms${mapped.errors ? `, ${mapped.errors} failed` : ""}`);
  }
  // let every node catch up with the last map change, then heartbeats alone
  await Bun.sleep(3 * HEARTBEAT_MS);
  {
    const end = phase("rest, all volumes mapped");
    await Bun.sleep(STEADY_S * 1000);
    const r = end();
    row("MDM CPU per heartbeat (all mapped)", `${((r.cpu / r.beats) * 1e6).toFixed(0)} µs`);
    row("MDM RSS", `${rssMiB(mdm.pid).toFixed(0)} MiB (peak ${hwmMiB(mdm.pid).toFixed(0)} MiB)`);
  }
  {
    const times: number[] = [];
    let bytes = 0;
    let count = 0;
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      const r = await request("GET", "/api/types/Volume/instances", auth);
      times.push(performance.now() - t0);
      if (r.status !== 200) throw new Error(`GET all volumes: ${r.status}`);
      bytes = r.text.length;
      count = (JSON.parse(r.text) as unknown[]).length;
    }
    const s = summary(times);
    row("GET all volumes", `${count} volumes, ${(bytes / 2 ** 20).toFixed(1)} MiB, ${s.p50.toFixed(0)} ms (best ${Math.min(...times).toFixed(0)} ms of 3)`);
  }

  // one SDS's loss
  {
    const victim = nodes.find((n) => n.kind === "sds")!;
    stats.keepAssignments = true;
    for (const n of nodes) n.targets = null;
    const before = await call<{ numOfDegradedExtents: number }>("POST", `/api/instances/StoragePool::${pool}/action/queryRebuild`, auth, {});
    while (victim.busy) await Bun.sleep(1);
    victim.stopped = true;
    const lastAnswer = victim.lastAnsweredMs; // the MDM heard it at most this late
    const end = phase("loss");
    const lossAtMs = performance.now();
    const canActMs = lastAnswer + HEARTBEAT_TIMEOUT_MS; // grace period 0: the planner may act from then
    log(`stopped SDS ${victim.id}'s heartbeats (degraded before: ${before.numOfDegradedExtents}); the MDM may declare it down ${((canActMs - lossAtMs) / 1000).toFixed(2)} s from now`);
    let restDone: number | null = null;
    let restSeen: { numOfDegradedExtents: number; numOfActiveRebuildExtents: number; numOfPendingRebuildExtents: number } | null = null;
    let apiDone: number | null = null;
    let targets = 0;
    const cap = Limits.maxConcurrentRebuildsPerSds * (N_SDS - 1);
    const until = lossAtMs + HEARTBEAT_TIMEOUT_MS + 30_000;
    let expected = -1;
    let lastDebug = 0;
    while (performance.now() < until && (restDone === null || apiDone === null)) {
      await Bun.sleep(25);
      if (restDone === null) {
        type Rebuild = { numOfDegradedExtents: number; numOfActiveRebuildExtents: number; numOfPendingRebuildExtents: number };
        // an overloaded MDM drops requests (Bun.serve idleTimeout): ask again rather than end the run without its table
        const st = await call<Rebuild>("POST", `/api/instances/StoragePool::${pool}/action/queryRebuild`, auth, {}).catch((e: Error) => {
          log(`  queryRebuild failed: ${e.message.slice(0, 120)}`);
          return null;
        });
        if (st === null) continue;
        const now = performance.now();
        if (process.env.BENCH_DEBUG) log(JSON.stringify(st));
        // complete: every degraded extent has a target, or waits only for the per-pool copy budget
        if (st.numOfDegradedExtents > 0 && st.numOfActiveRebuildExtents === Math.min(st.numOfDegradedExtents, cap)) {
          restDone = now;
          restSeen = st;
          expected = st.numOfActiveRebuildExtents;
        }
      }
      if (expected >= 0 && apiDone === null) {
        // the assignments the survivors fetched carry the sync targets (the primary's copy has mode full|resync)
        targets = 0;
        for (const n of nodes) if (n.kind === "sds" && !n.stopped && n.targets !== null) for (const t of n.targets.values()) if (t) targets++;
        if (targets >= expected) apiDone = performance.now();
        if (process.env.BENCH_DEBUG && performance.now() - lastDebug > 2000) {
          lastDebug = performance.now();
          const sds = nodes.filter((x) => x.kind === "sds" && !x.stopped);
          log(`  targets ${targets}/${expected}; SDSs with an answer since the loss ${sds.filter((x) => x.targets !== null).length}, waiting for a turn ${sds.filter((x) => x.waitingTurn).length}; fetches ${stats.fetches}, shed ${stats.shed}`);
        }
      }
    }
    end();
    // The MDM's own deadline for the victim: its last heartbeat as the MDM heard it (moved by any
    // stall the MDM forgave), from the dashboard summary, on the MDM's clock (Date.now, this
    // host). canActMs above counts from the simulator's last answered beat, which lags the MDM's
    // hearing of it by up to the beat latency, so it cannot judge a < 1 s aim; this can. Asked
    // once the loss phase is over: the victim's figure no longer moves.
    const wallMinusPerf = Date.now() - performance.now();
    const dash = await call<{ sds: { id: string; lastHeartbeatMs: number | null }[] }>("GET", "/dashboard/api/summary", auth).catch((e: Error) => {
      log(`  dashboard summary failed: ${e.message.slice(0, 120)}`);
      return null;
    });
    const heardMs = dash?.sds.find((x) => x.id === victim.id)?.lastHeartbeatMs ?? null;
    const mdmCanActMs = heardMs === null ? null : heardMs + HEARTBEAT_TIMEOUT_MS - wallMinusPerf;
    const fmt = (t: number | null) => {
      if (t === null) return "not within 30 s";
      const mdm = mdmCanActMs === null ? "" : `, ${((t - mdmCanActMs) / 1000).toFixed(2)} s after the MDM's own deadline`;
      return `${((t - canActMs) / 1000).toFixed(2)} s after the heartbeat timeout${mdm} (${((t - lossAtMs) / 1000).toFixed(2)} s after the last beat)`;
    };
    if (mdmCanActMs !== null) log(`the MDM heard the victim's last beat ${((canActMs - mdmCanActMs) / 1000).toFixed(2)} s after the simulator's last answer`);
    row("SDS loss -> complete plan (recovery REST)", `${fmt(restDone)}; ${restSeen ? `${restSeen.numOfDegradedExtents} degraded, ${restSeen.numOfActiveRebuildExtents} copies started, ${restSeen.numOfPendingRebuildExtents} pending (budget ${cap})` : ""}`);
    row("SDS loss -> targets in survivors' assignments", `${fmt(apiDone)}; ${targets} sync targets carried`);
    stats.keepAssignments = false;
    for (const n of nodes) n.targets = null;
  }
  row("MDM RSS at end", `${rssMiB(mdm.pid).toFixed(0)} MiB (peak ${hwmMiB(mdm.pid).toFixed(0)} MiB); beats failed ${stats.beatsFailed}; watches failed ${stats.watchFailed}; connection resets retried ${resets}; ${openedInAll()}; load ${loadAvg()}`);
} finally {
  if (pacer) clearInterval(pacer);
  stopAll = true;
  stopping = true;
  mdm.kill("SIGTERM");
  const exited = await Promise.race([mdm.exited.then(() => true), Bun.sleep(60_000).then(() => false)]);
  if (!exited) mdm.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

process.stdout.write(
  `\npf MDM at scale: ${N_SDS} SDS (${FAULT_SETS} fault sets x ${DEVICES_PER_SDS} devices), ${N_SDC} SDC, ${SEED} seeded + ${VOLUMES} volumes x ${VOLUME_GIB} GiB, refetch ${REFETCH ? "on" : "off"}, map watch ${WATCH ? (DOUBLING_GAP ? "on (doubling gap)" : "on") : "off"}, address tag ${ADDR_TAG ? "on" : "off"}, delta assignments ${DELTA ? "on" : "off"}, client ${FETCH_CLIENT ? "fetch() (one shared pool)" : "kept-alive TLS connections per node"}; load at end ${loadAvg()}\n` +
    `| measure | figure |\n| --- | --- |\n` +
    rows.map((r) => `| ${r.measure} | ${r.figure} |`).join("\n") +
    "\n",
);
process.exit(0);
