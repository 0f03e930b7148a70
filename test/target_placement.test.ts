// chooseTargetDevice walks a heap of each pool's devices instead of scanning every device per
// choice (src/mdm/recovery/target_placement.ts): it must choose exactly what the scan of the rule
// chooses, through any sequence of choices and addToDevice accounting on the same view array.
import { describe, expect, test } from "bun:test";
import { addToDevice, chooseTargetDevice, chooseTargetDeviceByScan, type SdsView, type TargetRequest } from "../src/mdm/recovery/target_placement.ts";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const GiB = 1024 ** 3;

function views(r: () => number): SdsView[] {
  const n = 2 + Math.floor(r() * 30);
  const pools = ["p1", "p2", "p3"];
  const out: SdsView[] = [];
  for (let i = 0; i < n; i++) {
    const devices = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, d) => {
      // few distinct figures, so fills tie often and the tie-breaks decide
      const capacityBytes = [0, 4, 8, 8, 16][Math.floor(r() * 5)]! * GiB;
      const assignedBytes = Math.floor(r() * 6) * GiB;
      return {
        deviceId: `d${String(i).padStart(2, "0")}-${d}`,
        poolId: pools[Math.floor(r() * pools.length)]!,
        capacityBytes,
        assignedBytes,
        thickAssignedBytes: Math.floor(r() * 3) * GiB,
        usedBytes: Math.floor(r() * 3) * GiB,
        failed: r() < 0.1,
      };
    });
    // ids not in array order, so "lowest id" and "first found" differ
    out.push({
      sdsId: `s${String(Math.floor(r() * 1000)).padStart(3, "0")}-${i}`,
      faultSetId: r() < 0.2 ? null : `fs${Math.floor(r() * 4)}`,
      connected: r() < 0.85,
      confirmed: r() < 0.95,
      downSinceMs: null,
      removing: r() < 0.05,
      devices,
    });
  }
  return out;
}

function request(r: () => number, sds: SdsView[]): TargetRequest {
  const pick = () => sds[Math.floor(r() * sds.length)]!;
  const holders = Array.from({ length: Math.floor(r() * 3) }, pick);
  return {
    poolId: ["p1", "p2", "p3", "p4"][Math.floor(r() * 4)]!,
    extentBytes: [GiB / 4, GiB / 4, GiB][Math.floor(r() * 3)]!,
    thick: r() < 0.3,
    hasFaultSets: r() < 0.7,
    excludeSds: new Set(holders.map((s) => s.sdsId)),
    avoidDomainsOf: holders,
    ...(r() < 0.1 ? { onlySdsId: pick().sdsId } : {}),
  };
}

describe("chooseTargetDevice (heap) agrees with the scan", () => {
  test("random views, 400 choices each, accounted as the planner does (copies added and removed)", () => {
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const sds = views(r);
      for (let k = 0; k < 400; k++) {
        const req = request(r, sds);
        const fast = chooseTargetDevice(sds, req);
        const scan = chooseTargetDeviceByScan(sds, req);
        if (JSON.stringify(fast) !== JSON.stringify(scan)) throw new Error(`seed ${seed} choice ${k}: heap ${JSON.stringify(fast)}, scan ${JSON.stringify(scan)} for ${JSON.stringify({ ...req, excludeSds: [...req.excludeSds] })}`);
        if (fast !== null) addToDevice(sds, fast.deviceId, req.extentBytes, req.thick);
        // a copy finished or dropped elsewhere: accounting down as well as up
        if (r() < 0.3) {
          const s = sds[Math.floor(r() * sds.length)]!;
          const d = s.devices[Math.floor(r() * s.devices.length)]!;
          addToDevice(sds, d.deviceId, (r() < 0.5 ? -1 : 1) * GiB, r() < 0.3);
        }
      }
    }
  });

  test("a view array that gains an SDS is indexed anew", () => {
    const sds: SdsView[] = [
      { sdsId: "a", faultSetId: null, connected: true, confirmed: true, downSinceMs: null, removing: false, devices: [{ deviceId: "da", poolId: "p", capacityBytes: 8 * GiB, assignedBytes: 4 * GiB, thickAssignedBytes: 0, usedBytes: 0, failed: false }] },
    ];
    const req: TargetRequest = { poolId: "p", extentBytes: GiB, thick: false, hasFaultSets: false, excludeSds: new Set(), avoidDomainsOf: [] };
    expect(chooseTargetDevice(sds, req)).toEqual({ sdsId: "a", deviceId: "da" });
    sds.push({ sdsId: "b", faultSetId: null, connected: true, confirmed: true, downSinceMs: null, removing: false, devices: [{ deviceId: "db", poolId: "p", capacityBytes: 8 * GiB, assignedBytes: 0, thickAssignedBytes: 0, usedBytes: 0, failed: false }] });
    expect(chooseTargetDevice(sds, req)).toEqual({ sdsId: "b", deviceId: "db" });
    addToDevice(sds, "db", 6 * GiB, false);
    expect(chooseTargetDevice(sds, req)).toEqual({ sdsId: "a", deviceId: "da" });
  });
});

describe("targets spread over SDSs", () => {
  test("equally filled devices: one loss's new copies go to nearly every SDS, not to the lowest ids device after device", () => {
    // 100 SDSs x 4 equal devices with ids handed out in order (an SDS's devices are neighbours),
    // 200 new copies, each next to a random survivor: the old tie-break (SDS id, then device id)
    // put them on the 50 lowest SDSs, 4 in a row each
    const hex = (n: number) => n.toString(16).padStart(16, "0");
    let next = 0x100;
    const sds: SdsView[] = Array.from({ length: 100 }, (_, i) => ({
      sdsId: hex(next++),
      faultSetId: null,
      connected: true,
      confirmed: true,
      downSinceMs: null,
      removing: false,
      devices: Array.from({ length: 4 }, () => ({ deviceId: hex(next++), poolId: "p", capacityBytes: 64 * GiB, assignedBytes: 8 * GiB, thickAssignedBytes: 0, usedBytes: 0, failed: false })),
    }));
    const r = rng(7);
    const targets = new Map<string, number>();
    let runs = 0;
    let last = "";
    for (let k = 0; k < 200; k++) {
      const survivor = sds[Math.floor(r() * sds.length)]!;
      const got = chooseTargetDevice(sds, { poolId: "p", extentBytes: GiB, thick: false, hasFaultSets: false, excludeSds: new Set([survivor.sdsId]), avoidDomainsOf: [survivor] });
      expect(got).not.toBeNull();
      targets.set(got!.sdsId, (targets.get(got!.sdsId) ?? 0) + 1);
      if (got!.sdsId === last) runs++;
      last = got!.sdsId;
      addToDevice(sds, got!.deviceId, GiB, false);
    }
    expect(targets.size).toBeGreaterThanOrEqual(85);
    expect(Math.max(...targets.values())).toBeLessThanOrEqual(4); // the fill rule itself: one per device
    expect(runs).toBeLessThan(20);
  });
});
