// Extent placement for two-copy mesh mirroring: which SDS device holds the primary and the
// secondary copy of each extent of a new volume. Pure: reads the pool, returns decisions.
//
// Rules (asserted for every extent placed):
// - the two copies of an extent are on two different SDSs, and in two different fault sets when
//   the pool has fault sets (an SDS without one is then its own singleton set). Internally both
//   cases are one rule: copies go to different *domains* (a fault set, or a single SDS);
// - only connected SDSs and Normal devices with room for a whole extent are used, and a device is
//   never given more extents than fit in capacityBytes - assignedBytes;
// - an error is thrown exactly when no placement exists: NOT_ENOUGH_SDS when fewer than two
//   domains have a connected SDS with a Normal device (a topology problem), NO_SPACE when they
//   do but their free extent slots cannot hold the copies (a capacity problem).
//
// Algorithm. One linear pass turns the pool into typed arrays (eligible SDSs, their eligible
// devices, domains with their free extent slots). Every eligible SDS gets a key
//     key = 2 * round + fill
// where fill = (assigned + extent) / capacity of its emptiest eligible device (0 < fill <= 1),
// rounded down to a band one extent of the pool's largest eligible device wide, and
// round = floor(copies of this volume on the SDS / weight), weight = the SDS's free extent slots
// relative to the mean over eligible SDSs. SDSs sit in one min-heap per domain; domains sit in a
// top min-heap ordered by their best SDS. Each extent takes the best SDS of the best domain and
// the best SDS of the best *other* domain (the root's smaller child in the top heap), then the
// keys of those two SDSs grow and they sift down: O(log SDSs) per extent, no scan per extent.
// - "fill" balances assignedBytes/capacity across devices: every copy goes to the emptiest
//   device the rules allow, so fill ratios stay within about one extent of each other (one band
//   plus the chosen device's own step: at most about two extents of any device).
// - "round" spreads each volume wide: no SDS takes a copy in round r+1 while another still
//   has round-r share left, so a volume with >= 2 x N extents touches all N SDSs (the round-0
//   shares sum to < 2N copies, and every extent uses at least one of them). Weighting by free
//   room means a volume larger than one round also narrows fill differences instead of
//   copying them (an SDS with twice the room takes twice the copies per round).
// - Ties (equal keys: same round, same fill band) go first to the SDSs with fewer copies of this
//   volume (an SDS with more than the mean room has two copies in round 0: it takes its second
//   after the tied others took their first), then by a pseudo-random order, drawn anew for each
//   call (a salt from `random`) and for an SDS at every copy it takes (tieOf). The order is
//   what makes the mesh: each SDS's copies partner near-uniformly with all eligible SDSs of the
//   other domains. A fixed order (a rotation, as before) or exact fill keys make the two
//   emptiest SDSs move in lockstep: they are consumed in the same relative order at every fill
//   level, so the same neighbours pair again volume after volume (1,000 SDSs / 10 fault sets /
//   100k volumes: 21-31 partners of 900 each, ~70 extents shared by a partnering pair). With a
//   band of one extent, SDSs whose fills differ by less than one extent count as tied, so pools
//   of unequal devices (whose exact fills never tie) mix too; the price is about one extent more
//   fill difference. Measured: bench/placement_spread.ts.
// Primaries: the extents of a volume form a multigraph on SDSs (one edge per extent); orienting
// every edge along Euler trails (open trails from odd-degree SDSs first, then closed ones) makes
// each SDS primary for half its copies of the volume, rounded either way: |copies - 2 x
// primaries| <= 1 per SDS and volume. Each trail is reversed with probability 1/2, so which end
// of an open trail gets the odd primary is random, and over many volumes primaries spread evenly
// too. O(extents).
// Exactness near full: with domain free slots c_d, k extents fit iff sum c_d >= 2k and
// max c_d <= sum c_d - k (checked once up front). The sum stays feasible by itself (each extent
// uses exactly two slots); the max can break it, so a domain whose slots reach sum - remaining
// ("tight") must be used by the next extent. Only domains that can become tight during this call
// (c_d > sum - 2k) are watched, in a max-heap of slots; in a pool with room the watch is empty.
// Cost: O(SDSs + devices) per call for the pass (unavoidable: the pool comes in whole, and the
// error rules need every domain's slots) plus O(extents x log SDSs). The typed arrays are module
// scratch reused across calls (a call allocates only its result), so placeExtents is not
// reentrant, which holds because it never awaits and calls nothing of the caller's but `random`.

import { PfError, assert } from "../../proto/errors.ts";
import { formatBytes } from "../../proto/sizes.ts";

export interface PlacementDevice {
  deviceId: string;
  capacityBytes: number;
  assignedBytes: number;
  state: "Normal" | "Failed";
}
export interface PlacementSds {
  sdsId: string;
  faultSetId: string | null;
  connected: boolean;
  devices: PlacementDevice[];
}
export interface ReplicaSlot {
  sdsId: string;
  deviceId: string;
}

/** Place `extentCount` extents of `extentBytes`, 2 copies each: never 2 copies on one SDS, never 2 in one fault set when the pool has fault sets (any SDS with a faultSetId non-null means fault sets exist; then SDSs without one count as their own singleton set); spread wide (a volume touches every SDS of its pool when it has enough extents) and balance assignedBytes/capacity across devices. Only connected SDSs and Normal devices with room (capacityBytes - assignedBytes >= extentBytes) are eligible. Mutates nothing; returns one [primary, secondary] per extent; primaries also spread evenly. Throws PfError("NOT_ENOUGH_SDS", msg) when fewer than 2 eligible SDSs / fault sets, PfError("NO_SPACE", msg) when capacity runs out (messages say how many SDSs/fault sets/bytes were needed vs available). */
export function placeExtents(input: {
  sds: PlacementSds[];
  extentCount: number;
  extentBytes: number;
  random: () => number;
}): ReplicaSlot[][] {
  const { sds, extentCount, extentBytes, random } = input;
  assert(Number.isSafeInteger(extentCount) && extentCount >= 0, "extentCount must be a non-negative integer");
  assert(Number.isSafeInteger(extentBytes) && extentBytes > 0, "extentBytes must be a positive integer");
  if (extentCount === 0) return [];
  assert(!scratch.busy, "placeExtents re-entered");
  scratch.busy = true;
  try {
    scratch.load(sds, extentBytes);
    scratch.checkFeasible(extentCount);
    scratch.buildHeaps(extentCount, random);
    for (let i = 0; i < extentCount; i++) scratch.placeOne(i, extentCount - i);
    scratch.orientPrimaries(extentCount, random);
    return scratch.result(extentCount);
  } finally {
    scratch.release();
  }
}

const NO_POOL: PlacementSds[] = [];
/** how many top-heap nodes are considered for the second copy (see partnerDomain) */
const PARTNER_CANDIDATES = 7;
/** width of a fill band, in extents of the largest eligible device (see "Ties" in the opening comment) */
const BAND_EXTENTS = 1;

/** An index in [0, n) from `random`, safe against a source that returns 1 or strays outside [0, 1). */
function randomIndex(random: () => number, n: number): number {
  const i = Math.floor(random() * n);
  return i >= 0 && i < n ? i : 0;
}

/**
 * The pool of the current placeExtents call as typed arrays: `p` indexes the input pool,
 * `s` eligible SDSs, `v` eligible devices, `d` domains, `i` extents. Arrays only grow.
 */
class Layout {
  busy = false;
  private pool: PlacementSds[] = NO_POOL;
  private extentBytes = 1;
  private hasFaultSets = false;
  private connectedSds = 0;
  private readonly faultSetDomain = new Map<string, number>();
  private lastFaultSet: string | null = null;
  private lastFaultSetDomain = -1;

  // eligible SDSs: connected, with at least one Normal device with room for an extent
  private n = 0;
  /** extents of this call per unordered SDS pair (key: pairKey) */
  private readonly pairs = new Map<number, number>();
  private bandScale = 1; // 1 / the width of a fill band (see band)
  private slotSum = 0; // free extent slots of all eligible SDSs at the start, for the round weight
  private sdsInput = new Int32Array(0);
  private sdsDomain = new Int32Array(0);
  private sdsDevStart = new Int32Array(0);
  private sdsDevEnd = new Int32Array(0);
  private sdsSlots = new Float64Array(0); // free extent slots at the start
  private sdsCopies = new Int32Array(0); // copies of this volume
  private sdsKey = new Float64Array(0);
  private sdsTie = new Int32Array(0); // tieOf(s, copies): redrawn at every copy the SDS takes
  private tieSalt = 0; // per call, from random
  private sdsBestDev = new Int32Array(0);
  private touched = new Int32Array(0); // SDSs holding a copy of this volume, in first-touch order
  private touchedLen = 0;
  private trailStart = new Int32Array(0); // Euler orientation: adjacency offset per SDS
  private trailNext = new Int32Array(0); // next adjacency entry to look at
  private trailLeft = new Int32Array(0); // unoriented extents left at the SDS

  // eligible devices, contiguous per SDS
  private devInput = new Int32Array(64); // index into its SDS's devices
  private devAssigned = new Float64Array(64);
  private devCap = new Float64Array(64);

  // domains: fault sets, or single SDSs (only those with a connected SDS holding a Normal device)
  private domains = 0;
  private domainSlots = new Float64Array(0); // free extent slots
  private domainSdsCount = new Int32Array(0); // eligible SDSs
  private domainRep = new Int32Array(0); // pool index of one member, for messages
  private totalSlots = 0;

  // per-domain min-heaps of SDSs, as segments of one array
  private heap = new Int32Array(0);
  private segStart = new Int32Array(0);
  private segLen = new Int32Array(0);
  // min-heap of the domains that still have an eligible SDS, by their best SDS
  private top = new Int32Array(0);
  private topPos = new Int32Array(0);
  private topLen = 0;
  // max-heap (by free slots) of the domains that could become tight
  private watch = new Int32Array(0);
  private watchPos = new Int32Array(0);
  private watchLen = 0;

  // extents of this volume
  private extSdsA = new Int32Array(0);
  private extSdsB = new Int32Array(0);
  private extDevA = new Int32Array(0);
  private extDevB = new Int32Array(0);
  private extPrimaryIsA = new Uint8Array(0);
  private extOriented = new Uint8Array(0);
  private trail = new Int32Array(0); // extents of the trail being walked
  private adjacency = new Int32Array(0); // 2 entries per extent, grouped by SDS

  /** The one linear pass over the pool (locals instead of fields: this loop is the hot part of a call). */
  load(pool: PlacementSds[], extentBytes: number): void {
    this.pool = pool;
    this.extentBytes = extentBytes;
    this.ensurePoolSize(pool.length);
    this.domains = 0;
    this.touchedLen = 0;
    let hasFaultSets = false;
    for (let p = 0; p < pool.length; p++) {
      if (pool[p]!.faultSetId !== null) {
        hasFaultSets = true;
        break;
      }
    }
    this.hasFaultSets = hasFaultSets;
    const e = extentBytes;
    const { sdsInput, sdsDomain, sdsDevStart, sdsDevEnd, sdsSlots, sdsCopies, sdsKey, sdsBestDev, domainSlots, domainSdsCount } =
      this;
    let { devInput, devAssigned, devCap } = this;
    let n = 0;
    let m = 0;
    let totalSlots = 0;
    let connectedSds = 0;
    let maxCap = 0;
    for (let p = 0; p < pool.length; p++) {
      const sds = pool[p]!;
      if (!sds.connected) continue;
      connectedSds++;
      const devs = sds.devices;
      const devStart = m;
      let hasNormal = false;
      let slots = 0;
      let best = -1;
      let bestFill = Infinity;
      for (let j = 0; j < devs.length; j++) {
        const dev = devs[j]!;
        if (dev.state !== "Normal") continue;
        hasNormal = true;
        const assigned = dev.assignedBytes;
        const capacity = dev.capacityBytes;
        if (capacity - assigned < e) continue;
        if (m === devCap.length) {
          this.growDevices();
          ({ devInput, devAssigned, devCap } = this);
        }
        devInput[m] = j;
        devAssigned[m] = assigned;
        devCap[m] = capacity;
        if (capacity > maxCap) maxCap = capacity;
        slots += Math.floor((capacity - assigned) / e);
        const fill = (assigned + e) / capacity;
        if (fill < bestFill) {
          bestFill = fill;
          best = m;
        }
        m++;
      }
      if (!hasNormal) continue;
      const d = hasFaultSets ? this.domainOf(sds, p) : this.newDomain(p);
      if (slots === 0) continue;
      domainSlots[d] = domainSlots[d]! + slots;
      domainSdsCount[d] = domainSdsCount[d]! + 1;
      totalSlots += slots;
      const s = n++;
      sdsInput[s] = p;
      sdsDomain[s] = d;
      sdsDevStart[s] = devStart;
      sdsDevEnd[s] = m;
      sdsSlots[s] = slots;
      sdsCopies[s] = 0;
      sdsKey[s] = bestFill; // round 0
      sdsBestDev[s] = best;
    }
    this.n = n;
    this.totalSlots = totalSlots;
    this.slotSum = totalSlots;
    this.connectedSds = connectedSds;
    this.bandScale = maxCap / (BAND_EXTENTS * e);
    for (let s = 0; s < n; s++) sdsKey[s] = this.band(sdsKey[s]!);
  }

  /** A fill ratio rounded down to its band: BAND_EXTENTS extents of the largest eligible device. */
  private band(fill: number): number {
    // + 1e-6: fills that are whole multiples of the band (equal devices) must not fall one band
    // low by a rounding error of the division, or SDSs one extent apart would tie
    return Math.floor(fill * this.bandScale + 1e-6) / this.bandScale;
  }

  /** Domain of an SDS in a pool with fault sets: its fault set's, or a singleton of its own. */
  private domainOf(sds: PlacementSds, p: number): number {
    const fs = sds.faultSetId;
    if (fs === null) return this.newDomain(p);
    if (fs === this.lastFaultSet) return this.lastFaultSetDomain; // members often come together
    let d = this.faultSetDomain.get(fs);
    if (d === undefined) {
      d = this.newDomain(p);
      this.faultSetDomain.set(fs, d);
    }
    this.lastFaultSet = fs;
    this.lastFaultSetDomain = d;
    return d;
  }

  release(): void {
    this.pairs.clear();
    this.pool = NO_POOL; // keep no reference to the caller's objects
    this.faultSetDomain.clear();
    this.lastFaultSet = null;
    this.busy = false;
  }

  private newDomain(p: number): number {
    const d = this.domains++;
    this.domainSlots[d] = 0;
    this.domainSdsCount[d] = 0;
    this.domainRep[d] = p;
    return d;
  }

  private ensurePoolSize(size: number): void {
    if (this.sdsInput.length >= size) return;
    const cap = Math.max(size, 2 * this.sdsInput.length);
    this.sdsInput = new Int32Array(cap);
    this.sdsDomain = new Int32Array(cap);
    this.sdsDevStart = new Int32Array(cap);
    this.sdsDevEnd = new Int32Array(cap);
    this.sdsSlots = new Float64Array(cap);
    this.sdsCopies = new Int32Array(cap);
    this.sdsKey = new Float64Array(cap);
    this.sdsTie = new Int32Array(cap);
    this.sdsBestDev = new Int32Array(cap);
    this.touched = new Int32Array(cap);
    this.trailStart = new Int32Array(cap);
    this.trailNext = new Int32Array(cap);
    this.trailLeft = new Int32Array(cap);
    this.heap = new Int32Array(cap);
    this.domainSlots = new Float64Array(cap);
    this.domainSdsCount = new Int32Array(cap);
    this.domainRep = new Int32Array(cap);
    this.segStart = new Int32Array(cap);
    this.segLen = new Int32Array(cap);
    this.top = new Int32Array(cap);
    this.topPos = new Int32Array(cap);
    this.watch = new Int32Array(cap);
    this.watchPos = new Int32Array(cap);
  }

  private growDevices(): void {
    const cap = 2 * this.devCap.length;
    const devInput = new Int32Array(cap);
    devInput.set(this.devInput);
    this.devInput = devInput;
    const devAssigned = new Float64Array(cap);
    devAssigned.set(this.devAssigned);
    this.devAssigned = devAssigned;
    const devCap = new Float64Array(cap);
    devCap.set(this.devCap);
    this.devCap = devCap;
  }

  private ensureExtents(k: number): void {
    if (this.extSdsA.length >= k) return;
    const cap = Math.max(k, 2 * this.extSdsA.length);
    this.extSdsA = new Int32Array(cap);
    this.extSdsB = new Int32Array(cap);
    this.extDevA = new Int32Array(cap);
    this.extDevB = new Int32Array(cap);
    this.extPrimaryIsA = new Uint8Array(cap);
    this.extOriented = new Uint8Array(cap);
    this.trail = new Int32Array(cap);
    this.adjacency = new Int32Array(2 * cap);
  }

  private unit(plural: boolean): string {
    if (this.hasFaultSets) return plural ? "fault sets" : "fault set";
    return plural ? "SDSs" : "SDS";
  }

  private domainName(d: number): string {
    const sds = this.pool[this.domainRep[d]!];
    assert(sds !== undefined, "domain representative out of range");
    return this.hasFaultSets && sds.faultSetId !== null ? `fault set ${sds.faultSetId}` : `SDS ${sds.sdsId}`;
  }

  /** Throws when no placement of k extents exists; see the opening comment for the condition. */
  checkFeasible(k: number): void {
    if (this.domains < 2) {
      throw new PfError(
        "NOT_ENOUGH_SDS",
        `Not enough SDSs: 2 copies need 2 ${this.unit(true)} with a connected SDS and a Normal device, ` +
          `the pool has ${this.domains} (${this.connectedSds} of ${this.pool.length} SDSs connected)`,
      );
    }
    let maxDomain = 0;
    for (let d = 1; d < this.domains; d++) {
      if (this.domainSlots[d]! > this.domainSlots[maxDomain]!) maxDomain = d;
    }
    const total = this.totalSlots;
    if (total < 2 * k) {
      let withRoom = 0;
      for (let d = 0; d < this.domains; d++) if (this.domainSlots[d]! > 0) withRoom++;
      throw new PfError(
        "NO_SPACE",
        `Insufficient capacity: ${this.needed(k)}, the pool's eligible devices have room for ${total} extents ` +
          `(${formatBytes(total * this.extentBytes)}) on ${this.n} SDSs` +
          (this.hasFaultSets ? ` in ${withRoom} fault sets with room` : withRoom < this.n ? ` (${withRoom} of them with room)` : ""),
      );
    }
    const maxSlots = this.domainSlots[maxDomain]!;
    if (total - maxSlots < k) {
      throw new PfError(
        "NO_SPACE",
        `Insufficient capacity: ${this.needed(k)} in 2 different ${this.unit(true)}; ${this.domainName(maxDomain)} ` +
          `has room for ${maxSlots} extents but the other ${this.unit(true)} together only for ${total - maxSlots}, ${k} needed`,
      );
    }
  }

  private needed(k: number): string {
    const e = this.extentBytes;
    return `${k} extent${k === 1 ? "" : "s"} of ${formatBytes(e)} need ${formatBytes(2 * k * e)} raw (2 copies)`;
  }

  /** Tie order, per-domain SDS heaps, the top heap and the tight-domain watch. */
  buildHeaps(k: number, random: () => number): void {
    this.ensureExtents(k);
    const n = this.n;
    const D = this.domains;
    this.tieSalt = Math.floor(random() * 4294967296) | 0;
    let start = 0;
    for (let d = 0; d < D; d++) {
      this.segStart[d] = start;
      this.segLen[d] = 0;
      start += this.domainSdsCount[d]!;
    }
    for (let s = 0; s < n; s++) {
      this.sdsTie[s] = this.tieOf(s, 0);
      const d = this.sdsDomain[s]!;
      const i = this.segLen[d]!;
      this.heap[this.segStart[d]! + i] = s;
      this.segLen[d] = i + 1;
    }
    this.topLen = 0;
    for (let d = 0; d < D; d++) {
      const len = this.segLen[d]!;
      for (let i = (len >> 1) - 1; i >= 0; i--) this.segSiftDown(d, i);
      this.topPos[d] = -1;
      if (len > 0) this.top[this.topLen++] = d;
    }
    for (let i = (this.topLen >> 1) - 1; i >= 0; i--) this.topSiftDown(i);
    for (let i = 0; i < this.topLen; i++) this.topPos[this.top[i]!] = i;

    // watch the domains that could become tight while placing k extents: slots > total - 2k
    this.watchLen = 0;
    const threshold = this.totalSlots - 2 * k;
    for (let d = 0; d < D; d++) {
      this.watchPos[d] = -1;
      if (this.domainSlots[d]! > threshold) this.watch[this.watchLen++] = d;
    }
    for (let i = (this.watchLen >> 1) - 1; i >= 0; i--) this.watchSiftDown(i);
    for (let i = 0; i < this.watchLen; i++) this.watchPos[this.watch[i]!] = i;
  }

  /** Place extent i; `remaining` counts it and all after it. */
  placeOne(i: number, remaining: number): void {
    let domainA = -1;
    let domainB = -1;
    if (this.watchLen > 0) {
      const tightAt = this.totalSlots - remaining;
      const w0 = this.watch[0]!;
      assert(this.domainSlots[w0]! <= tightAt, "placement feasibility lost");
      if (this.domainSlots[w0]! === tightAt) {
        domainA = w0; // a second tight domain, if any, is a child of the root (at most 2 exist)
        for (let c = 1; c <= 2 && c < this.watchLen; c++) {
          const wc = this.watch[c]!;
          if (this.domainSlots[wc]! === tightAt) domainB = wc;
        }
      }
    }
    if (domainA < 0) domainA = this.top[0]!;
    const sdsA = this.heap[this.segStart[domainA]!]!;
    if (domainB < 0) domainB = this.partnerDomain(domainA, sdsA);
    assert(domainB >= 0 && domainA !== domainB, "two copies of an extent in one fault domain");
    const sdsB = this.heap[this.segStart[domainB]!]!;
    this.notePair(sdsA, sdsB);
    assert(sdsA !== sdsB, "two copies of an extent on one SDS");
    this.extSdsA[i] = sdsA;
    this.extSdsB[i] = sdsB;
    this.extDevA[i] = this.sdsBestDev[sdsA]!;
    this.extDevB[i] = this.sdsBestDev[sdsB]!;
    this.consume(domainA, sdsA);
    this.consume(domainB, sdsB);
  }

  /** Account one copy on the best device of SDS s (the root of domain d's heap); restore the heaps. */
  private consume(d: number, s: number): void {
    const e = this.extentBytes;
    const v = this.sdsBestDev[s]!;
    assert(this.devCap[v]! - this.devAssigned[v]! >= e, "device given more extents than it holds");
    this.devAssigned[v] = this.devAssigned[v]! + e;
    const copies = this.sdsCopies[s]! + 1;
    this.sdsCopies[s] = copies;
    if (copies === 1) this.touched[this.touchedLen++] = s;
    this.domainSlots[d] = this.domainSlots[d]! - 1;
    this.totalSlots--;
    const wp = this.watchPos[d]!;
    if (wp >= 0) this.watchSiftDown(wp);
    const best = this.bestDevice(s);
    if (best >= 0) {
      this.sdsBestDev[s] = best;
      const round = Math.floor((copies * this.slotSum) / (this.n * this.sdsSlots[s]!));
      this.sdsKey[s] = 2 * round + this.band((this.devAssigned[best]! + e) / this.devCap[best]!);
      this.sdsTie[s] = this.tieOf(s, copies);
      this.segSiftDown(d, 0);
    } else {
      this.segPopRoot(d);
    }
    if (this.segLen[d]! === 0) this.topRemove(d);
    else {
      // s's key never falls and its tie grows with its copies, but past the cap of 2047 copies a
      // new tie can rank s, still the domain's best at an unchanged key, above its old self:
      // then the domain moves up
      const at = this.topPos[d]!;
      this.topSiftDown(at);
      if (this.topPos[d] === at) this.topSiftUp(at);
    }
  }

  /** Emptiest device of SDS s that still has room for an extent, or -1. */
  private bestDevice(s: number): number {
    const e = this.extentBytes;
    let best = -1;
    let bestFill = Infinity;
    const end = this.sdsDevEnd[s]!;
    for (let v = this.sdsDevStart[s]!; v < end; v++) {
      const assigned = this.devAssigned[v]!;
      const cap = this.devCap[v]!;
      if (cap - assigned < e) continue;
      const fill = (assigned + e) / cap;
      if (fill < bestFill) {
        bestFill = fill;
        best = v;
      }
    }
    return best;
  }

  /**
   * Domain of the second copy: among the domains near the top of the top heap (its first
   * PARTNER_CANDIDATES nodes) whose best SDS is in the same round as the best choice, the one
   * whose best SDS shares the fewest extents of this volume with sdsA (ties: the better key).
   * Without this, equal SDSs pair up the same way for every extent (A+B, C+D, A+B, …) and a lost
   * SDS could be rebuilt from one source only; with it, each SDS's copies partner with many
   * others, so a rebuild reads from many SDSs at once (mesh mirroring).
   */
  private partnerDomain(domainA: number, sdsA: number): number {
    const best = this.bestDomainExcept(domainA);
    if (best < 0) return best;
    const bestRound = Math.floor(this.sdsKey[this.heap[this.segStart[best]!]!]! / 2);
    let chosen = best;
    let chosenPairs = this.pairCount(sdsA, this.heap[this.segStart[best]!]!);
    const m = Math.min(this.topLen, PARTNER_CANDIDATES);
    for (let t = 0; t < m && chosenPairs > 0; t++) {
      const d = this.top[t]!;
      if (d === domainA || d === chosen) continue;
      const s = this.heap[this.segStart[d]!]!;
      if (Math.floor(this.sdsKey[s]! / 2) !== bestRound) continue;
      const pc = this.pairCount(sdsA, s);
      if (pc < chosenPairs || (pc === chosenPairs && this.domainLess(d, chosen))) {
        chosen = d;
        chosenPairs = pc;
      }
    }
    return chosen;
  }

  /**
   * Tie of SDS s after it took `copies` copies of this volume: the copies (capped at 2047) in
   * the high bits, then 20 pseudo-random bits (a 32-bit mix of copies x n + s and the call's
   * salt). Among SDSs of equal key, those with fewer copies of this volume come first, in an
   * order shuffled anew at every copy. Equal ties are rare and harmless (the heaps stay valid;
   * the result still depends only on the input and `random`). See the opening comment's "Ties".
   */
  private tieOf(s: number, copies: number): number {
    let x = ((Math.imul(copies, this.n) + s) ^ this.tieSalt) | 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b);
    x ^= x >>> 16;
    return (Math.min(copies, 2047) << 20) | (x >>> 12);
  }

  private pairKey(a: number, b: number): number {
    return a < b ? a * this.n + b : b * this.n + a;
  }
  private pairCount(a: number, b: number): number {
    return this.pairs.get(this.pairKey(a, b)) ?? 0;
  }
  private notePair(a: number, b: number): void {
    const k = this.pairKey(a, b);
    this.pairs.set(k, (this.pairs.get(k) ?? 0) + 1);
  }

  private bestDomainExcept(x: number): number {
    if (this.topLen === 0) return -1;
    const root = this.top[0]!;
    if (root !== x) return root;
    if (this.topLen === 1) return -1;
    if (this.topLen === 2) return this.top[1]!;
    const c1 = this.top[1]!;
    const c2 = this.top[2]!;
    return this.domainLess(c2, c1) ? c2 : c1;
  }

  /** Choose the primary of each extent along Euler trails (see the opening comment). */
  orientPrimaries(k: number, random: () => number): void {
    const T = this.touchedLen;
    let offset = 0;
    for (let t = 0; t < T; t++) {
      const s = this.touched[t]!;
      this.trailStart[s] = offset;
      this.trailNext[s] = offset;
      this.trailLeft[s] = this.sdsCopies[s]!;
      offset += this.sdsCopies[s]!;
    }
    for (let i = 0; i < k; i++) {
      const a = this.extSdsA[i]!;
      const b = this.extSdsB[i]!;
      this.adjacency[this.trailNext[a]!] = i;
      this.trailNext[a] = this.trailNext[a]! + 1;
      this.adjacency[this.trailNext[b]!] = i;
      this.trailNext[b] = this.trailNext[b]! + 1;
      this.extOriented[i] = 0;
    }
    for (let t = 0; t < T; t++) {
      const s = this.touched[t]!;
      this.trailNext[s] = this.trailStart[s]!;
    }
    const rotation = randomIndex(random, T);
    // open trails from odd-degree SDSs first; afterwards every degree left is even
    for (let j = 0; j < T; j++) {
      const s = this.touched[(j + rotation) % T]!;
      if ((this.trailLeft[s]! & 1) === 1) this.walkTrail(s, random);
    }
    for (let j = 0; j < T; j++) {
      const s = this.touched[(j + rotation) % T]!;
      while (this.trailLeft[s]! > 0) this.walkTrail(s, random);
    }
  }

  /**
   * Walk unoriented extents from SDS `from` until stuck, each extent's primary being the SDS it
   * is left from; then reverse the whole trail with probability 1/2 (a reversed trail is just as
   * balanced), so that neither the first-placed copy nor the walk order decides who is primary.
   */
  private walkTrail(from: number, random: () => number): void {
    let at = from;
    let length = 0;
    for (;;) {
      const end = this.trailStart[at]! + this.sdsCopies[at]!;
      let i = -1;
      while (this.trailNext[at]! < end) {
        const candidate = this.adjacency[this.trailNext[at]!]!;
        this.trailNext[at] = this.trailNext[at]! + 1;
        if (this.extOriented[candidate] === 0) {
          i = candidate;
          break;
        }
      }
      if (i < 0) break;
      this.extOriented[i] = 1;
      this.trail[length++] = i;
      const a = this.extSdsA[i]!;
      const next = a === at ? this.extSdsB[i]! : a;
      this.extPrimaryIsA[i] = a === at ? 1 : 0;
      this.trailLeft[at] = this.trailLeft[at]! - 1;
      this.trailLeft[next] = this.trailLeft[next]! - 1;
      at = next;
    }
    if (length > 0 && random() < 0.5) {
      for (let j = 0; j < length; j++) {
        const i = this.trail[j]!;
        this.extPrimaryIsA[i] = this.extPrimaryIsA[i] === 1 ? 0 : 1;
      }
    }
  }

  result(k: number): ReplicaSlot[][] {
    const out = new Array<ReplicaSlot[]>(k);
    for (let i = 0; i < k; i++) {
      assert(this.extOriented[i] === 1, "extent left without a primary");
      const a = this.slotOf(this.extSdsA[i]!, this.extDevA[i]!);
      const b = this.slotOf(this.extSdsB[i]!, this.extDevB[i]!);
      out[i] = this.extPrimaryIsA[i] === 1 ? [a, b] : [b, a];
    }
    return out;
  }

  private slotOf(s: number, v: number): ReplicaSlot {
    const sds = this.pool[this.sdsInput[s]!];
    assert(sds !== undefined, "SDS index out of range");
    const dev = sds.devices[this.devInput[v]!];
    assert(dev !== undefined, "device index out of range");
    return { sdsId: sds.sdsId, deviceId: dev.deviceId };
  }

  // ---- SDS order: key, then the per-call rotation ----
  private sdsLess(a: number, b: number): boolean {
    const ka = this.sdsKey[a]!;
    const kb = this.sdsKey[b]!;
    return ka < kb || (ka === kb && this.sdsTie[a]! < this.sdsTie[b]!);
  }

  private segSiftDown(d: number, from: number): void {
    const base = this.segStart[d]!;
    const len = this.segLen[d]!;
    const heap = this.heap;
    const key = this.sdsKey;
    const tie = this.sdsTie;
    let i = from;
    const s = heap[base + i]!;
    const sKey = key[s]!;
    const sTie = tie[s]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= len) break;
      let cs = heap[base + c]!;
      let cKey = key[cs]!;
      if (c + 1 < len) {
        const rs = heap[base + c + 1]!;
        const rKey = key[rs]!;
        if (rKey < cKey || (rKey === cKey && tie[rs]! < tie[cs]!)) {
          c++;
          cs = rs;
          cKey = rKey;
        }
      }
      if (!(cKey < sKey || (cKey === sKey && tie[cs]! < sTie))) break;
      heap[base + i] = cs;
      i = c;
    }
    heap[base + i] = s;
  }

  private segPopRoot(d: number): void {
    const base = this.segStart[d]!;
    const len = this.segLen[d]! - 1;
    this.segLen[d] = len;
    if (len === 0) return;
    this.heap[base] = this.heap[base + len]!;
    this.segSiftDown(d, 0);
  }

  // ---- domain order: by the domain's best SDS ----
  private domainLess(a: number, b: number): boolean {
    return this.sdsLess(this.heap[this.segStart[a]!]!, this.heap[this.segStart[b]!]!);
  }

  private topSiftDown(from: number): void {
    const top = this.top;
    const len = this.topLen;
    let i = from;
    const d = top[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= len) break;
      let cd = top[c]!;
      if (c + 1 < len) {
        const rd = top[c + 1]!;
        if (this.domainLess(rd, cd)) {
          c++;
          cd = rd;
        }
      }
      if (!this.domainLess(cd, d)) break;
      top[i] = cd;
      this.topPos[cd] = i;
      i = c;
    }
    top[i] = d;
    this.topPos[d] = i;
  }

  private topSiftUp(from: number): void {
    const top = this.top;
    let i = from;
    const d = top[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pd = top[p]!;
      if (!this.domainLess(d, pd)) break;
      top[i] = pd;
      this.topPos[pd] = i;
      i = p;
    }
    top[i] = d;
    this.topPos[d] = i;
  }

  private topRemove(d: number): void {
    const i = this.topPos[d]!;
    assert(i >= 0, "removing a domain that is not in the top heap");
    this.topPos[d] = -1;
    const last = --this.topLen;
    if (i === last) return;
    const moved = this.top[last]!;
    this.top[i] = moved;
    this.topPos[moved] = i;
    this.topSiftDown(i);
    if (this.topPos[moved] === i) this.topSiftUp(i);
  }

  // ---- watch: max-heap of domain free slots ----
  private watchSiftDown(from: number): void {
    const watch = this.watch;
    const slots = this.domainSlots;
    const len = this.watchLen;
    let i = from;
    const d = watch[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= len) break;
      let cd = watch[c]!;
      if (c + 1 < len) {
        const rd = watch[c + 1]!;
        if (slots[rd]! > slots[cd]!) {
          c++;
          cd = rd;
        }
      }
      if (!(slots[cd]! > slots[d]!)) break;
      watch[i] = cd;
      this.watchPos[cd] = i;
      i = c;
    }
    watch[i] = d;
    this.watchPos[d] = i;
  }
}

const scratch = new Layout();
