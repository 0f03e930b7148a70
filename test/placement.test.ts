// Extent placement (src/mdm/placement.ts): the replica rules hold for arbitrary pools, errors
// are thrown exactly when no placement exists, a volume spreads over the whole pool, and a
// simulated 1000-SDS pool filled with 100k volumes stays balanced.

import { describe, expect, test } from "bun:test";
import { createConsola } from "consola";
import fc from "fast-check";
import { isPfError } from "../src/proto/errors.ts";
import { placeExtents, type PlacementSds, type ReplicaSlot } from "../src/mdm/topology/placement.ts";

// bun test sets NODE_ENV=test, which silences consola's default instance; these figures are the point.
const log = createConsola({ level: 3 });

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Seeded PRNG (mulberry32), so a failing seed replays. */
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

type Outcome = "OK" | "NOT_ENOUGH_SDS" | "NO_SPACE";

/**
 * Independent oracle: group connected SDSs with a Normal device into domains (fault sets, or
 * single SDSs); k extents fit iff there are >= 2 domains and sum_d min(slots_d, k) >= 2k.
 */
function expectedOutcome(pool: PlacementSds[], k: number, extentBytes: number): Outcome {
  if (k === 0) return "OK";
  const hasFaultSets = pool.some((s) => s.faultSetId !== null);
  const slots = new Map<string, number>();
  for (const s of pool) {
    if (!s.connected || !s.devices.some((d) => d.state === "Normal")) continue;
    const domain = hasFaultSets && s.faultSetId !== null ? `fs:${s.faultSetId}` : `sds:${s.sdsId}`;
    let free = 0;
    for (const d of s.devices) {
      if (d.state === "Normal" && d.capacityBytes - d.assignedBytes >= extentBytes) {
        free += Math.floor((d.capacityBytes - d.assignedBytes) / extentBytes);
      }
    }
    slots.set(domain, (slots.get(domain) ?? 0) + free);
  }
  if (slots.size < 2) return "NOT_ENOUGH_SDS";
  let capped = 0;
  for (const c of slots.values()) capped += Math.min(c, k);
  return capped >= 2 * k ? "OK" : "NO_SPACE";
}

/** Every rule of a placement result, checked against the pool it was computed from. */
function checkPlacement(pool: PlacementSds[], k: number, extentBytes: number, result: ReplicaSlot[][]): void {
  expect(result.length).toBe(k);
  const hasFaultSets = pool.some((s) => s.faultSetId !== null);
  const sdsById = new Map(pool.map((s) => [s.sdsId, s]));
  const added = new Map<string, number>();
  for (const extent of result) {
    expect(extent.length).toBe(2);
    const [a, b] = extent as [ReplicaSlot, ReplicaSlot];
    expect(a.sdsId).not.toBe(b.sdsId);
    const sa = sdsById.get(a.sdsId);
    const sb = sdsById.get(b.sdsId);
    if (sa === undefined || sb === undefined) throw new Error("placement names an unknown SDS");
    if (hasFaultSets && sa.faultSetId !== null && sb.faultSetId !== null) {
      expect(sa.faultSetId).not.toBe(sb.faultSetId);
    }
    for (const [slot, sds] of [
      [a, sa],
      [b, sb],
    ] as const) {
      expect(sds.connected).toBe(true);
      const dev = sds.devices.find((d) => d.deviceId === slot.deviceId);
      if (dev === undefined) throw new Error(`device ${slot.deviceId} is not on SDS ${sds.sdsId}`);
      expect(dev.state).toBe("Normal");
      const key = `${sds.sdsId}/${dev.deviceId}`;
      const now = (added.get(key) ?? 0) + extentBytes;
      added.set(key, now);
      expect(dev.assignedBytes + now).toBeLessThanOrEqual(dev.capacityBytes);
    }
  }
}

function tryPlace(pool: PlacementSds[], k: number, extentBytes: number, seed: number): ReplicaSlot[][] | Outcome {
  try {
    return placeExtents({ sds: pool, extentCount: k, extentBytes, random: seededRandom(seed) });
  } catch (e) {
    if (isPfError(e) && (e.code === "NO_SPACE" || e.code === "NOT_ENOUGH_SDS")) return e.code;
    throw e;
  }
}

// ---- arbitrary pools ----
const extentBytesArb = fc.constantFrom(1, 7, 4096, 64 * MiB);

function poolArb(extentBytes: number, maxSds: number): fc.Arbitrary<PlacementSds[]> {
  const deviceArb = fc.record({
    capExtents: fc.integer({ min: 0, max: 6 }),
    extraBytes: fc.integer({ min: 0, max: extentBytes - 1 }),
    assignedPercent: fc.integer({ min: 0, max: 100 }),
    failed: fc.integer({ min: 0, max: 5 }).map((x) => x === 0),
  });
  const sdsArb = fc.record({
    faultSet: fc.option(fc.integer({ min: 0, max: 3 }), { freq: 4 }),
    connected: fc.integer({ min: 0, max: 6 }).map((x) => x !== 0),
    devices: fc.array(deviceArb, { minLength: 0, maxLength: 3 }),
  });
  return fc.tuple(fc.boolean(), fc.array(sdsArb, { minLength: 0, maxLength: maxSds })).map(([faultSets, list]) =>
    list.map((s, i) => ({
      sdsId: `sds${i}`,
      faultSetId: faultSets && s.faultSet !== null ? `fs${s.faultSet}` : null,
      connected: s.connected,
      devices: s.devices.map((d, j) => {
        const capacityBytes = d.capExtents * extentBytes + d.extraBytes;
        return {
          deviceId: `sds${i}-dev${j}`,
          capacityBytes,
          assignedBytes: Math.floor((capacityBytes * d.assignedPercent) / 100),
          state: d.failed ? ("Failed" as const) : ("Normal" as const),
        };
      }),
    })),
  );
}

const scenarioArb = extentBytesArb.chain((extentBytes) =>
  fc.record({
    extentBytes: fc.constant(extentBytes),
    pool: poolArb(extentBytes, 8),
    extentCount: fc.integer({ min: 0, max: 14 }),
    seed: fc.integer(),
  }),
);

describe("placement rules on arbitrary pools", () => {
  test("copies on different SDSs / fault sets, only eligible devices, never over capacity; errors exactly when infeasible", () => {
    const seen = { OK: 0, NOT_ENOUGH_SDS: 0, NO_SPACE: 0 };
    fc.assert(
      fc.property(scenarioArb, ({ pool, extentCount, extentBytes, seed }) => {
        const before = structuredClone(pool);
        const got = tryPlace(pool, extentCount, extentBytes, seed);
        const want = expectedOutcome(pool, extentCount, extentBytes);
        expect(pool).toEqual(before); // mutates nothing
        if (typeof got === "string") {
          expect(got).toBe(want);
          seen[got]++;
        } else {
          expect(want).toBe("OK");
          checkPlacement(pool, extentCount, extentBytes, got);
          seen.OK++;
        }
      }),
      { numRuns: 3000 },
    );
    log.info(`placement outcomes over 3000 arbitrary pools: ${JSON.stringify(seen)}`);
    // the generator must exercise every branch, or the property says little
    expect(seen.OK).toBeGreaterThan(300);
    expect(seen.NO_SPACE).toBeGreaterThan(100);
    expect(seen.NOT_ENOUGH_SDS).toBeGreaterThan(100);
  });

  test("filling a pool one volume at a time succeeds until the oracle says the pool is full", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 1, max: 5 }), ({ pool, extentBytes, seed }, volumeExtents) => {
        const random = seededRandom(seed);
        const live = structuredClone(pool);
        const devices = new Map(live.flatMap((s) => s.devices.map((d) => [d.deviceId, d] as const)));
        for (let step = 0; step < 200; step++) {
          const want = expectedOutcome(live, volumeExtents, extentBytes);
          let result: ReplicaSlot[][];
          try {
            result = placeExtents({ sds: live, extentCount: volumeExtents, extentBytes, random });
          } catch (e) {
            if (!isPfError(e)) throw e;
            expect<string>(e.code).toBe(want);
            return;
          }
          expect(want).toBe("OK");
          checkPlacement(live, volumeExtents, extentBytes, result);
          for (const slot of result.flat()) {
            const d = devices.get(slot.deviceId);
            if (d === undefined) throw new Error("unknown device");
            d.assignedBytes += extentBytes;
          }
        }
        throw new Error("pool never filled up in 200 steps");
      }),
      { numRuns: 500 },
    );
  });

  test("same seed, same placement; zero extents place nothing", () => {
    fc.assert(
      fc.property(scenarioArb, ({ pool, extentCount, extentBytes, seed }) => {
        const a = tryPlace(pool, extentCount, extentBytes, seed);
        const b = tryPlace(pool, extentCount, extentBytes, seed);
        expect(b).toEqual(a);
        expect(tryPlace(pool, 0, extentBytes, seed)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  test("error messages say what was needed and what the pool has", () => {
    const dev = (id: string, capacityBytes: number) => ({
      deviceId: id,
      capacityBytes,
      assignedBytes: 0,
      state: "Normal" as const,
    });
    const one: PlacementSds[] = [{ sdsId: "a", faultSetId: null, connected: true, devices: [dev("a0", 10 * GiB)] }];
    expect(() => placeExtents({ sds: one, extentCount: 1, extentBytes: GiB, random: seededRandom(1) })).toThrow(
      /2 copies need 2 SDSs.*the pool has 1 \(1 of 1 SDSs connected\)/,
    );
    const sameFs: PlacementSds[] = [
      { sdsId: "a", faultSetId: "rack1", connected: true, devices: [dev("a0", 10 * GiB)] },
      { sdsId: "b", faultSetId: "rack1", connected: true, devices: [dev("b0", 10 * GiB)] },
    ];
    expect(() => placeExtents({ sds: sameFs, extentCount: 1, extentBytes: GiB, random: seededRandom(1) })).toThrow(
      /2 fault sets/,
    );
    const two: PlacementSds[] = [
      { sdsId: "a", faultSetId: null, connected: true, devices: [dev("a0", 3 * GiB)] },
      { sdsId: "b", faultSetId: null, connected: true, devices: [dev("b0", 3 * GiB)] },
    ];
    expect(() => placeExtents({ sds: two, extentCount: 4, extentBytes: GiB, random: seededRandom(1) })).toThrow(
      /4 extents of 1 GiB need 8 GiB raw \(2 copies\), the pool's eligible devices have room for 6 extents \(6 GiB\)/,
    );
    const skewed: PlacementSds[] = [
      { sdsId: "a", faultSetId: null, connected: true, devices: [dev("a0", 10 * GiB)] },
      { sdsId: "b", faultSetId: null, connected: true, devices: [dev("b0", 2 * GiB)] },
    ];
    expect(() => placeExtents({ sds: skewed, extentCount: 3, extentBytes: GiB, random: seededRandom(1) })).toThrow(
      /SDS a has room for 10 extents but the other SDSs together only for 2, 3 needed/,
    );
  });
});

describe("spread", () => {
  test("a volume with >= 2N extents touches every SDS of an N-SDS pool (any capacities, prior fill, fault sets)", () => {
    const arb = fc.record({
      n: fc.integer({ min: 2, max: 40 }),
      faultSets: fc.integer({ min: 0, max: 6 }), // 0: none
      caps: fc.array(fc.integer({ min: 100, max: 400 }), { minLength: 120, maxLength: 120 }),
      fills: fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 120, maxLength: 120 }),
      extraExtents: fc.integer({ min: 0, max: 20 }),
      seed: fc.integer(),
    });
    let worstPrimaryDeficit = 0; // |copies - 2 x primaries| of one SDS within one volume
    fc.assert(
      fc.property(arb, ({ n, faultSets, caps, fills, extraExtents, seed }) => {
        const extentBytes = MiB;
        const pool: PlacementSds[] = Array.from({ length: n }, (_, i) => ({
          sdsId: `s${i}`,
          faultSetId: faultSets >= 2 ? `fs${i % faultSets}` : null,
          connected: true,
          devices: [0, 1, 2].slice(0, 1 + (i % 3)).map((j) => {
            const capacityBytes = caps[3 * i + j]! * extentBytes;
            return {
              deviceId: `s${i}d${j}`,
              capacityBytes,
              assignedBytes: Math.floor((caps[3 * i + j]! * fills[3 * i + j]!) / 100) * extentBytes,
              state: "Normal" as const,
            };
          }),
        }));
        const k = 2 * n + extraExtents;
        const result = placeExtents({ sds: pool, extentCount: k, extentBytes, random: seededRandom(seed) });
        checkPlacement(pool, k, extentBytes, result);
        const copies = new Map<string, number>();
        const primaries = new Map<string, number>();
        for (const [p, s] of result as [ReplicaSlot, ReplicaSlot][]) {
          copies.set(p.sdsId, (copies.get(p.sdsId) ?? 0) + 1);
          copies.set(s.sdsId, (copies.get(s.sdsId) ?? 0) + 1);
          primaries.set(p.sdsId, (primaries.get(p.sdsId) ?? 0) + 1);
        }
        expect(copies.size).toBe(n);
        for (const [id, c] of copies) {
          worstPrimaryDeficit = Math.max(worstPrimaryDeficit, Math.abs(c - 2 * (primaries.get(id) ?? 0)));
        }
      }),
      { numRuns: 400 },
    );
    log.info(`spread: worst |copies - 2 x primaries| of one SDS within one volume = ${worstPrimaryDeficit}`);
    expect(worstPrimaryDeficit).toBeLessThanOrEqual(1);
  });

  test("an empty 8-SDS pool: a 16-extent volume puts exactly 4 copies and 2 primaries on every SDS", () => {
    const pool: PlacementSds[] = Array.from({ length: 8 }, (_, i) => ({
      sdsId: `s${i}`,
      faultSetId: null,
      connected: true,
      devices: [{ deviceId: `s${i}d0`, capacityBytes: 100 * GiB, assignedBytes: 0, state: "Normal" as const }],
    }));
    const result = placeExtents({ sds: pool, extentCount: 16, extentBytes: GiB, random: seededRandom(7) });
    const copies = new Map<string, number>();
    const primaries = new Map<string, number>();
    for (const [p, s] of result as [ReplicaSlot, ReplicaSlot][]) {
      copies.set(p.sdsId, (copies.get(p.sdsId) ?? 0) + 1);
      copies.set(s.sdsId, (copies.get(s.sdsId) ?? 0) + 1);
      primaries.set(p.sdsId, (primaries.get(p.sdsId) ?? 0) + 1);
    }
    expect([...copies.values()]).toEqual(Array(8).fill(4));
    expect(Math.max(...primaries.values()) - Math.min(...primaries.values())).toBeLessThanOrEqual(1);
  });
});

describe("mesh partners", () => {
  // A lost SDS is rebuilt from the other copies of its extents: those must sit on many SDSs,
  // not on one fixed partner, or the rebuild reads from a single source.
  for (const n of [4, 8]) {
    test(`in an empty ${n}-SDS pool, a ${2 * n * (n - 1)}-extent volume pairs every SDS with every other`, () => {
      const pool: PlacementSds[] = Array.from({ length: n }, (_, i) => ({
        sdsId: `s${i}`,
        faultSetId: null,
        connected: true,
        devices: [{ deviceId: `d${i}`, capacityBytes: 64 * GiB, assignedBytes: 0, state: "Normal" }],
      }));
      const result = placeExtents({ sds: pool, extentCount: 2 * n * (n - 1), extentBytes: 64 * MiB, random: seededRandom(n) });
      const partners = new Map<string, Set<string>>();
      for (const [a, b] of result) {
        if (!partners.has(a!.sdsId)) partners.set(a!.sdsId, new Set());
        if (!partners.has(b!.sdsId)) partners.set(b!.sdsId, new Set());
        partners.get(a!.sdsId)!.add(b!.sdsId);
        partners.get(b!.sdsId)!.add(a!.sdsId);
      }
      for (const [, set] of partners) expect(set.size).toBe(n - 1);
    });
  }
});

describe("partners spread across volumes", () => {
  // Many small volumes, each placed on the pool as the previous ones left it (assignedBytes
  // grown by every copy): each SDS's copies must pair with nearly every SDS it may pair with
  // (those of other fault sets), not with a few neighbours in lockstep. Two SDSs lost together
  // leave unavailable the extents they share, and a lost SDS is rebuilt from its partners.
  /** Place `volumes` volumes of sizeOf() extents; per SDS: distinct partners, copies, eligible partners, the busiest partner's copies. */
  function fillPool(pool: PlacementSds[], volumes: number, sizeOf: () => number, extentBytes: number, seed: number) {
    const random = seededRandom(seed);
    const index = new Map(pool.map((s, i) => [s.sdsId, i]));
    const devices = new Map(pool.flatMap((s) => s.devices.map((d) => [d.deviceId, d] as const)));
    const partners = pool.map(() => new Map<number, number>());
    const copies = pool.map(() => 0);
    for (let v = 0; v < volumes; v++) {
      const k = sizeOf();
      const result = placeExtents({ sds: pool, extentCount: k, extentBytes, random });
      for (const [p, q] of result as [ReplicaSlot, ReplicaSlot][]) {
        const a = index.get(p.sdsId)!;
        const b = index.get(q.sdsId)!;
        // the rules are the other tests' (checkPlacement); here only what the counts rely on
        if (a === b || (pool[a]!.faultSetId !== null && pool[a]!.faultSetId === pool[b]!.faultSetId)) throw new Error("copies share an SDS/fault set");
        partners[a]!.set(b, (partners[a]!.get(b) ?? 0) + 1);
        partners[b]!.set(a, (partners[b]!.get(a) ?? 0) + 1);
        copies[a]!++;
        copies[b]!++;
        devices.get(p.deviceId)!.assignedBytes += extentBytes;
        devices.get(q.deviceId)!.assignedBytes += extentBytes;
      }
    }
    const eligible = pool.map((s) => pool.filter((o) => o !== s && (o.faultSetId === null || o.faultSetId !== s.faultSetId)).length);
    return { partners: partners.map((p) => p.size), copies, eligible, busiest: partners.map((p) => Math.max(0, ...p.values())) };
  }

  test("every SDS pairs with most of the SDSs it may pair with (any fault sets, devices, equal or unequal capacities)", () => {
    const arb = fc.record({
      n: fc.integer({ min: 12, max: 40 }),
      faultSets: fc.integer({ min: 0, max: 6 }), // 0, 1: none
      devices: fc.integer({ min: 1, max: 8 }),
      equal: fc.boolean(),
      caps: fc.array(fc.integer({ min: 1000, max: 2000 }), { minLength: 320, maxLength: 320 }),
      maxExtents: fc.integer({ min: 1, max: 4 }),
      seed: fc.integer(),
    });
    let worst = Infinity;
    let worstMean = Infinity;
    fc.assert(
      fc.property(arb, ({ n, faultSets, devices, equal, caps, maxExtents, seed }) => {
        const extentBytes = MiB;
        const pool: PlacementSds[] = Array.from({ length: n }, (_, i) => ({
          sdsId: `s${i}`,
          faultSetId: faultSets >= 2 ? `fs${i % faultSets}` : null,
          connected: true,
          devices: Array.from({ length: devices }, (_, j) => ({
            deviceId: `s${i}d${j}`,
            capacityBytes: (equal ? 1500 : caps[8 * i + j]!) * extentBytes,
            assignedBytes: 0,
            state: "Normal" as const,
          })),
        }));
        // about 12 copies per SDS per partner it may have (8 for the smallest SDSs): a uniform
        // mesh then misses ~1 % of them
        const m = Math.min(...pool.map((s) => pool.filter((o) => o !== s && (o.faultSetId === null || o.faultSetId !== s.faultSetId)).length));
        const volumes = Math.ceil((6 * n * m) / ((1 + maxExtents) / 2));
        const sizes = seededRandom(seed ^ 0x5bd1e995);
        const { partners, copies, eligible } = fillPool(pool, volumes, () => 1 + Math.floor(sizes() * maxExtents), extentBytes, seed);
        // each SDS: a share of what it may pair with (0.75: at most 2 of 9 missed in the smallest
        // pools, where a uniform mesh misses one now and then); all SDSs: nearly all of it
        let sum = 0;
        for (let i = 0; i < n; i++) {
          const share = partners[i]! / Math.min(eligible[i]!, copies[i]!);
          worst = Math.min(worst, share);
          sum += share;
          expect(share).toBeGreaterThanOrEqual(0.75);
        }
        worstMean = Math.min(worstMean, sum / n);
        expect(sum / n).toBeGreaterThanOrEqual(0.95);
      }),
      { numRuns: 60 },
    );
    log.info(
      `partners: worst SDS paired with ${(100 * worst).toFixed(1)} % of the SDSs it may pair with, ` +
        `worst pool mean ${(100 * worstMean).toFixed(1)} %`,
    );
  });

  test("the 100k seed's shape scaled down: 100 SDSs in 10 fault sets x 8 equal devices, 2,000 volumes of 16 extents", () => {
    const extentBytes = 64 * MiB;
    const pool: PlacementSds[] = Array.from({ length: 100 }, (_, i) => ({
      sdsId: `sds${i}`,
      faultSetId: `fs${i % 10}`,
      connected: true,
      devices: Array.from({ length: 8 }, (_, j) => ({ deviceId: `sds${i}-d${j}`, capacityBytes: 40 * 1024 * GiB, assignedBytes: 0, state: "Normal" as const })),
    }));
    const { partners, copies } = fillPool(pool, 2000, () => 16, extentBytes, 11);
    // 640 copies each over 90 SDSs of other fault sets: a uniform mesh touches all 90
    log.info(`seed shape: partners per SDS ${Math.min(...partners)}..${Math.max(...partners)} of 90; copies ${Math.min(...copies)}..${Math.max(...copies)}`);
    expect(Math.min(...partners)).toBeGreaterThanOrEqual(85);
  });

  test("unequal devices (no two fills ever equal): no SDS shares a large part of its copies with one partner", () => {
    // exact fills never tie here, so without fill bands the order among SDSs is fixed by
    // their capacities and SDSs of similar ones pair again and again (measured: the busiest
    // partner held up to a third of an SDS's copies); in bands of one extent they mix
    const random = seededRandom(5);
    const pool: PlacementSds[] = Array.from({ length: 60 }, (_, i) => ({
      sdsId: `sds${i}`,
      faultSetId: `fs${i % 6}`,
      connected: true,
      devices: [0, 1].map((j) => ({ deviceId: `sds${i}-d${j}`, capacityBytes: (1500 + Math.floor(random() * 3001)) * MiB, assignedBytes: 0, state: "Normal" as const })),
    }));
    const sizes = seededRandom(6);
    const { partners, copies, busiest } = fillPool(pool, 6000, () => 1 + Math.floor(sizes() * 16), MiB, 7);
    const share = busiest.map((b, i) => b / copies[i]!);
    // 50 SDSs of other fault sets: a uniform mesh gives the busiest ~3 % (capacities weigh in)
    log.info(`unequal devices: partners ${Math.min(...partners)}..${Math.max(...partners)} of 50; busiest partner's share of an SDS's copies up to ${(100 * Math.max(...share)).toFixed(1)} %`);
    expect(Math.min(...partners)).toBeGreaterThanOrEqual(48);
    expect(Math.max(...share)).toBeLessThan(0.08);
  });
});

describe("balance", () => {
  test("an empty SDS added to a half-full pool: it takes the largest share, and a big volume narrows the fill gap", () => {
    const mk = (assignedGiB: number): PlacementSds[] =>
      Array.from({ length: 10 }, (_, i) => ({
        sdsId: `s${i}`,
        faultSetId: null,
        connected: true,
        devices: [
          {
            deviceId: `s${i}d0`,
            capacityBytes: 1000 * GiB,
            assignedBytes: i === 9 ? 0 : assignedGiB * GiB, // s9 is the new, empty SDS
            state: "Normal" as const,
          },
        ],
      }));
    // a small volume still spreads (no hot spot on the new SDS), but the empty SDS has the
    // largest share: its weight is 1000/550 of the mean free room, so 2 copies per round
    const small = placeExtents({ sds: mk(500), extentCount: 5, extentBytes: GiB, random: seededRandom(3) });
    const smallCopies = new Map<string, number>();
    for (const slot of small.flat()) smallCopies.set(slot.sdsId, (smallCopies.get(slot.sdsId) ?? 0) + 1);
    expect(smallCopies.get("s9")).toBe(2);
    expect(Math.max(...smallCopies.values())).toBe(2);
    expect(smallCopies.size).toBe(9);

    // a volume of 1800 extents (3600 copies, 10 rounds): copies follow free room, so s9 takes
    // about 2x the share of the others and the fill gap shrinks instead of staying at 50%
    const pool = mk(500);
    const big = placeExtents({ sds: pool, extentCount: 1800, extentBytes: GiB, random: seededRandom(4) });
    checkPlacement(pool, 1800, GiB, big);
    const copies = new Map<string, number>();
    for (const slot of big.flat()) copies.set(slot.sdsId, (copies.get(slot.sdsId) ?? 0) + 1);
    const fillAfter = pool.map((s) => (s.devices[0]!.assignedBytes + (copies.get(s.sdsId) ?? 0) * GiB) / (1000 * GiB));
    const gap = Math.max(...fillAfter) - Math.min(...fillAfter);
    log.info(`new-SDS scenario: fill gap 50% before, ${(100 * gap).toFixed(1)}% after a 1800-extent volume`);
    expect(gap).toBeLessThan(0.5 * 0.75);
    expect(copies.size).toBe(10);
  });
});

describe("simulation: 1000 SDSs in 10 fault sets, 100k volumes", () => {
  test(
    "placement keeps the rules and the SDS fill ratios within a few percent",
    () => {
      const random = seededRandom(20240601);
      const extentBytes = 64 * MiB;
      const pool: PlacementSds[] = Array.from({ length: 1000 }, (_, i) => ({
        sdsId: `sds${i}`,
        faultSetId: `fs${i % 10}`,
        connected: true,
        devices: [0, 1].map((j) => ({
          deviceId: `sds${i}-d${j}`,
          capacityBytes: (150 + Math.floor(random() * 301)) * GiB, // 150..450 GiB
          assignedBytes: 0,
          state: "Normal" as const,
        })),
      }));
      const sdsById = new Map(pool.map((s) => [s.sdsId, s]));
      const deviceById = new Map(pool.flatMap((s) => s.devices.map((d) => [d.deviceId, d] as const)));
      const primaries = new Map<string, number>();
      const copies = new Map<string, number>();
      const volumes = 100_000;
      let extents = 0;
      let placeMs = 0;
      let touchedSum = 0;
      const started = performance.now();
      const startedCpu = process.cpuUsage();
      let placeCpuUs = 0;
      for (let vol = 0; vol < volumes; vol++) {
        const k = 1 + Math.floor(random() * 64);
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const result = placeExtents({ sds: pool, extentCount: k, extentBytes, random });
        const c1 = process.cpuUsage(c0);
        placeMs += performance.now() - t0;
        placeCpuUs += c1.user + c1.system;
        extents += k;
        const touched = new Set<string>();
        for (const extent of result) {
          const [p, s] = extent as [ReplicaSlot, ReplicaSlot];
          const sp = sdsById.get(p.sdsId);
          const ss = sdsById.get(s.sdsId);
          const dp = deviceById.get(p.deviceId);
          const ds = deviceById.get(s.deviceId);
          if (!sp || !ss || !dp || !ds) throw new Error(`volume ${vol}: unknown SDS or device in placement`);
          if (sp === ss || sp.faultSetId === ss.faultSetId) throw new Error(`volume ${vol}: copies share an SDS/fault set`);
          if (!sp.devices.includes(dp) || !ss.devices.includes(ds)) throw new Error(`volume ${vol}: device not on its SDS`);
          dp.assignedBytes += extentBytes;
          ds.assignedBytes += extentBytes;
          if (dp.assignedBytes > dp.capacityBytes || ds.assignedBytes > ds.capacityBytes) {
            throw new Error(`volume ${vol}: device over capacity`);
          }
          primaries.set(p.sdsId, (primaries.get(p.sdsId) ?? 0) + 1);
          copies.set(p.sdsId, (copies.get(p.sdsId) ?? 0) + 1);
          copies.set(s.sdsId, (copies.get(s.sdsId) ?? 0) + 1);
          touched.add(p.sdsId);
          touched.add(s.sdsId);
        }
        touchedSum += touched.size / (2 * k);
      }
      const totalMs = performance.now() - started;
      const totalCpu = process.cpuUsage(startedCpu);

      const sdsFill = pool.map((s) => {
        let assigned = 0;
        let cap = 0;
        for (const d of s.devices) {
          assigned += d.assignedBytes;
          cap += d.capacityBytes;
        }
        return assigned / cap;
      });
      const devFill = [...deviceById.values()].map((d) => d.assignedBytes / d.capacityBytes);
      const stats = (xs: number[]) => {
        const max = Math.max(...xs);
        const min = Math.min(...xs);
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        return { max, min, mean, spread: (max - min) / mean };
      };
      const sdsStats = stats(sdsFill);
      const devStats = stats(devFill);
      const primaryShare = stats(pool.map((s) => (primaries.get(s.sdsId) ?? 0) / (copies.get(s.sdsId) ?? 1)));
      const pct = (x: number) => `${(100 * x).toFixed(3)}%`;
      log.info(
        `sim: ${volumes} volumes, ${extents} extents (${2 * extents} copies) on 1000 SDSs / 10 fault sets / 2000 devices; ` +
          `placeExtents ${(placeMs / 1000).toFixed(2)} s wall / ${(placeCpuUs / 1e6).toFixed(2)} s CPU, ` +
          `whole loop with checks ${(totalMs / 1000).toFixed(2)} s wall / ${((totalCpu.user + totalCpu.system) / 1e6).toFixed(2)} s CPU`,
      );
      log.info(
        `sim: SDS fill max ${pct(sdsStats.max)} min ${pct(sdsStats.min)} mean ${pct(sdsStats.mean)} spread ${pct(sdsStats.spread)}; ` +
          `device fill spread ${pct(devStats.spread)}; primary share per SDS ${pct(primaryShare.min)}..${pct(primaryShare.max)}; ` +
          `distinct SDSs per copy of a volume ${pct(touchedSum / volumes)}`,
      );
      expect(sdsStats.spread).toBeLessThan(0.05);
      expect(devStats.spread).toBeLessThan(0.05);
      expect(primaryShare.min).toBeGreaterThan(0.45);
      expect(primaryShare.max).toBeLessThan(0.55);
      // CPU time, not wall time: the box is shared. ~8 s on a quiet machine, 25 s seen with two
      // other test runs on its 2 cores (contention inflates CPU time too); an O(SDSs) scan per
      // extent would be ~30x the quiet figure, far above this bound.
      expect(placeCpuUs / 1e6).toBeLessThan(60);
    },
    { timeout: 120_000 },
  );
});
