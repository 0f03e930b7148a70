// Placement spread: how widely each SDS's copies pair with partner SDSs (the SDS holding the
// other copy of an extent) after many volume creates, as the MDM's create places them
// (placeExtents over the pool's thin placement view: capacity x Limits.maxThinOvercommitRatio,
// assignedBytes growing with every copy placed). Partners decide two things an operator sees:
// - two SDSs of different fault sets lost together leave unavailable exactly the extents they
//   share: with partners spread over all ~900 others, ~E/pairs each; with a few fixed partners,
//   tens of extents for the pairs that partner and 0 for the rest;
// - one SDS's rebuild reads from its partners: the more sources, the faster (the busiest source
//   bounds it).
// Prints: partners per SDS (min/median/max of the distinct SDSs sharing an extent), extents
// shared per SDS pair in different fault sets (mean over all such pairs, which only E fixes,
// share of pairs sharing none, max), the busiest rebuild source of a lost SDS (its share of the
// lost SDS's copies), fill spread (SDSs and devices), primaries share, distinct SDSs per volume,
// and placeExtents CPU per extent (process.cpuUsage around each call). Then one SDS's loss is
// planned through src/mdm/recovery/target_placement.ts (chooseTargetDevice + addToDevice, as the
// recovery planner asks, read only): how many SDSs the new copies go to and how they run.
//
// Run: npx bun bench/placement_spread.ts
// env: BENCH_SDS=1000 BENCH_FAULT_SETS=10 BENCH_DEVICES=8 BENCH_VOLUMES=100000 BENCH_VOLUME_GIB=1
//      BENCH_SHAPE=seed (bench/mdm_scale.ts's seed: equal 4 TiB devices, BENCH_VOLUME_GIB volumes
//        of 64 MiB extents) | mixed (device capacities 150..450 GiB drawn at random, 2 devices,
//        1..64 extents per volume: test/placement.test.ts's simulation)
//      BENCH_PLACEMENT=path (a placement.ts to measure instead of this tree's, e.g. a copy of the
//        previous revision next to a symlink of src/proto, for A/B runs)
//      BENCH_RANDOM_SEED=1 (the seeded PRNG every run draws from, pool and placement)
//      BENCH_REBUILD=1 (0: skip the loss planned through target_placement.ts)

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { PlacementSds, ReplicaSlot } from "../src/mdm/topology/placement.ts";
import { Limits } from "../src/proto/limits.ts";

const N_SDS = Number(process.env.BENCH_SDS ?? 1000);
const FAULT_SETS = Number(process.env.BENCH_FAULT_SETS ?? 10);
const SHAPE = process.env.BENCH_SHAPE ?? "seed";
const DEVICES = Number(process.env.BENCH_DEVICES ?? (SHAPE === "mixed" ? 2 : 8));
const VOLUMES = Number(process.env.BENCH_VOLUMES ?? 100_000);
const VOLUME_GIB = Number(process.env.BENCH_VOLUME_GIB ?? 1);
const SEED = Number(process.env.BENCH_RANDOM_SEED ?? 1);
const REBUILD = process.env.BENCH_REBUILD !== "0";
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const EXTENT = Limits.defaultExtentBytes;
const IMPL = resolve(process.env.BENCH_PLACEMENT ?? resolve(import.meta.dir, "../src/mdm/topology/placement.ts"));
const { placeExtents } = (await import(IMPL)) as typeof import("../src/mdm/topology/placement.ts");

const loadAvg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

/** Seeded PRNG (mulberry32), as the tests use. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = seededRandom(SEED); // the pool and the volume sizes: the same for every placement measured
const placeRandom = seededRandom(SEED + 1); // placeExtents's own draws

// ---- the pool, as placement_view.ts's thin list: one object per SDS and device, kept and updated ----
const pool: PlacementSds[] = Array.from({ length: N_SDS }, (_, i) => ({
  sdsId: `sds${String(i).padStart(5, "0")}`,
  faultSetId: FAULT_SETS > 0 ? `fs${i % FAULT_SETS}` : null,
  connected: true,
  devices: Array.from({ length: DEVICES }, (_, d) => ({
    deviceId: `sds${i}-d${d}`,
    capacityBytes: (SHAPE === "mixed" ? (150 + Math.floor(random() * 301)) * GiB : 4 * 1024 * GiB) * Limits.maxThinOvercommitRatio,
    assignedBytes: 0,
    state: "Normal" as const,
  })),
}));
const sdsIndex = new Map(pool.map((s, i) => [s.sdsId, i]));
const devIndex = new Map<string, { s: number; d: number }>();
pool.forEach((s, i) => s.devices.forEach((d, j) => devIndex.set(d.deviceId, { s: i, d: j })));
const fsOf = (s: number) => (FAULT_SETS > 0 ? s % FAULT_SETS : s);

const pairs = new Int32Array(N_SDS * N_SDS); // extents per ordered pair, both orders kept
const copies = new Int32Array(N_SDS);
const primaries = new Int32Array(N_SDS);
const extentsPerVolume = () => (SHAPE === "mixed" ? 1 + Math.floor(random() * 64) : Math.round((VOLUME_GIB * GiB) / EXTENT));
// every extent's two copies (device indexes as s * DEVICES + d), for the loss below
let extA = new Int32Array(1 << 20);
let extB = new Int32Array(1 << 20);
let extents = 0;

console.log(
  `placement spread: ${N_SDS} SDSs x ${DEVICES} devices in ${FAULT_SETS} fault sets, ${VOLUMES} volumes (${SHAPE}), ` +
    `extent ${EXTENT / MiB} MiB, placement ${IMPL}; load ${loadAvg()}`,
);
let cpuUs = 0;
let sameDomain = 0;
let touchedShare = 0;
const touched = new Set<number>();
const started = performance.now();
for (let v = 0; v < VOLUMES; v++) {
  const k = extentsPerVolume();
  const c0 = process.cpuUsage();
  const result: ReplicaSlot[][] = placeExtents({ sds: pool, extentCount: k, extentBytes: EXTENT, random: placeRandom });
  const c1 = process.cpuUsage(c0);
  cpuUs += c1.user + c1.system;
  touched.clear();
  for (const [p, q] of result as [ReplicaSlot, ReplicaSlot][]) {
    const a = devIndex.get(p.deviceId)!;
    const b = devIndex.get(q.deviceId)!;
    pool[a.s]!.devices[a.d]!.assignedBytes += EXTENT;
    pool[b.s]!.devices[b.d]!.assignedBytes += EXTENT;
    if (fsOf(a.s) === fsOf(b.s)) sameDomain++;
    pairs[a.s * N_SDS + b.s]!++;
    pairs[b.s * N_SDS + a.s]!++;
    copies[a.s]!++;
    copies[b.s]!++;
    primaries[a.s]!++;
    touched.add(a.s).add(b.s);
    if (extents === extA.length) {
      const na = new Int32Array(2 * extA.length);
      na.set(extA);
      extA = na;
      const nb = new Int32Array(2 * extB.length);
      nb.set(extB);
      extB = nb;
    }
    extA[extents] = a.s * DEVICES + a.d;
    extB[extents] = b.s * DEVICES + b.d;
    extents++;
  }
  touchedShare += touched.size / (2 * k);
}
const wallS = (performance.now() - started) / 1000;

const sorted = (xs: ArrayLike<number>) => Float64Array.from(xs).sort();
const q = (xs: Float64Array, p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const partners = new Int32Array(N_SDS);
const busiest = new Float64Array(N_SDS); // the largest share of an SDS's copies one partner holds
let crossPairs = 0;
let crossZero = 0;
let crossMax = 0;
const crossCounts: number[] = [];
for (let a = 0; a < N_SDS; a++) {
  let most = 0;
  for (let b = 0; b < N_SDS; b++) {
    const c = pairs[a * N_SDS + b]!;
    if (c > 0) partners[a]!++;
    if (c > most) most = c;
    if (b > a && fsOf(a) !== fsOf(b)) {
      crossPairs++;
      if (c === 0) crossZero++;
      if (c > crossMax) crossMax = c;
      crossCounts.push(c);
    }
  }
  busiest[a] = copies[a]! > 0 ? most / copies[a]! : 0;
}
const eligiblePartners = FAULT_SETS > 0 ? N_SDS - Math.ceil(N_SDS / FAULT_SETS) : N_SDS - 1;
const ps = sorted(partners);
const cc = sorted(crossCounts);
const nonzero = cc.filter((c) => c > 0);
const bs = sorted(busiest);
const sdsFill = sorted(
  pool.map((s) => s.devices.reduce((a, d) => a + d.assignedBytes, 0) / s.devices.reduce((a, d) => a + d.capacityBytes, 0)),
);
const devs = pool.flatMap((s) => s.devices);
const devFill = sorted(devs.map((d) => d.assignedBytes / d.capacityBytes));
const medianCap = q(sorted(devs.map((d) => d.capacityBytes)), 0.5);
const mean = (xs: Float64Array) => xs.reduce((a, b) => a + b, 0) / xs.length;
const primaryShare = sorted(Array.from(copies, (c, i) => (c > 0 ? primaries[i]! / c : 0.5)));
const pct = (x: number) => `${(100 * x).toFixed(2)} %`;

console.log(`placed ${extents} extents (${2 * extents} copies) in ${wallS.toFixed(1)} s wall; ${sameDomain} extents with both copies in one fault set`);
console.log(`partners per SDS: min ${ps[0]} median ${q(ps, 0.5)} max ${ps[ps.length - 1]} of ${eligiblePartners} eligible (copies per SDS median ${q(sorted(copies), 0.5)})`);
console.log(
  `extents shared by 2 SDSs of different fault sets (lost together: unavailable): mean ${mean(cc).toFixed(2)} over all ${crossPairs} pairs (fixed by the extent count), ` +
    `${pct(crossZero / crossPairs)} of pairs share none, mean ${mean(Float64Array.from(nonzero)).toFixed(1)} over the pairs sharing any, p99 ${q(cc, 0.99)} max ${crossMax}`,
);
console.log(
  `rebuild sources of a lost SDS = its partners; busiest source's share of its copies: median ${pct(q(bs, 0.5))} max ${pct(bs[bs.length - 1]!)} ` +
    `(uniform over all eligible: ${pct(1 / eligiblePartners)})`,
);
console.log(
  `fill: SDS max-min ${pct(sdsFill[sdsFill.length - 1]! - sdsFill[0]!)} of capacity (${(((sdsFill[sdsFill.length - 1]! - sdsFill[0]!) * medianCap * DEVICES) / EXTENT).toFixed(1)} extents of a median SDS), ` +
    `spread ${pct((sdsFill[sdsFill.length - 1]! - sdsFill[0]!) / mean(sdsFill))}; device max-min ${(((devFill[devFill.length - 1]! - devFill[0]!) * medianCap) / EXTENT).toFixed(1)} extents of a median device, ` +
    `spread ${pct((devFill[devFill.length - 1]! - devFill[0]!) / mean(devFill))}`,
);
console.log(
  `primaries share per SDS ${pct(primaryShare[0]!)}..${pct(primaryShare[primaryShare.length - 1]!)}; distinct SDSs per copy of a volume ${pct(touchedShare / VOLUMES)}`,
);
console.log(`placeExtents CPU: ${(cpuUs / extents).toFixed(2)} µs per extent, ${(cpuUs / VOLUMES).toFixed(1)} µs per call (${(cpuUs / 1e6).toFixed(2)} s); load ${loadAvg()}`);

// ---- one SDS's loss, its new copies chosen by the recovery's target placement (read only) ----
if (REBUILD) {
  const { chooseTargetDevice, addToDevice } = await import("../src/mdm/recovery/target_placement.ts");
  const lost = Math.floor(random() * N_SDS);
  const views = pool.map((s, i) => ({
    sdsId: s.sdsId,
    faultSetId: s.faultSetId,
    connected: i !== lost,
    confirmed: true,
    downSinceMs: i === lost ? 0 : null,
    removing: false,
    devices: s.devices.map((d) => ({
      deviceId: d.deviceId,
      poolId: "p1",
      capacityBytes: d.capacityBytes / Limits.maxThinOvercommitRatio,
      assignedBytes: d.assignedBytes,
      thickAssignedBytes: 0,
      usedBytes: 0,
      failed: false,
    })),
  }));
  const targets = new Map<number, number>();
  const newPairs = new Set<number>();
  let runs = 0;
  let longestRun = 0;
  let run = 0;
  let prev = -1;
  let asked = 0;
  let none = 0;
  const t0 = process.cpuUsage();
  for (let i = 0; i < extents; i++) {
    const sa = Math.floor(extA[i]! / DEVICES);
    const sb = Math.floor(extB[i]! / DEVICES);
    if (sa !== lost && sb !== lost) continue;
    const survivor = sa === lost ? sb : sa;
    asked++;
    const got = chooseTargetDevice(views, {
      poolId: "p1",
      extentBytes: EXTENT,
      thick: false,
      hasFaultSets: FAULT_SETS > 0,
      excludeSds: new Set([pool[lost]!.sdsId, pool[survivor]!.sdsId]),
      avoidDomainsOf: [views[survivor]!],
    });
    if (got === null) {
      none++;
      continue;
    }
    addToDevice(views, got.deviceId, EXTENT, false);
    const t = sdsIndex.get(got.sdsId)!;
    targets.set(t, (targets.get(t) ?? 0) + 1);
    newPairs.add(survivor * N_SDS + t);
    if (t === prev) run++;
    else {
      runs++;
      run = 1;
      prev = t;
    }
    longestRun = Math.max(longestRun, run);
  }
  const t1 = process.cpuUsage(t0);
  const per = sorted([...targets.values()]);
  console.log(
    `loss of ${pool[lost]!.sdsId} planned through target_placement.ts: ${asked} new copies (${none} without a target) on ${targets.size} SDSs ` +
      `(${per[0]}..${per[per.length - 1]} each), ${runs} runs of consecutive choices on one SDS (longest ${longestRun}), ` +
      `${newPairs.size} distinct (survivor, target) pairs; ${((t1.user + t1.system) / 1000).toFixed(0)} ms CPU; load ${loadAvg()}`,
  );
}
