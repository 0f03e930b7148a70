// Pool capacity math (src/mdm/capacity.ts): the figures add up, rounding errs on the side of
// promising less, available capacity is never negative and only shrinks as reservations grow,
// and thick volumes accepted one after another never oversubscribe the usable raw capacity.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  checkThickFits,
  poolCapacity,
  roundUpToGranularity,
  type PoolCapacityInput,
} from "../src/mdm/topology/capacity.ts";
import { isPfError } from "../src/proto/errors.ts";

const GiB = 1024 ** 3;
const granularityArb = fc.constantFrom(1, 4096, 1024 ** 2, 8 * GiB, 1000);

const inputArb: fc.Arbitrary<PoolCapacityInput> = fc.record({
  devices: fc.array(
    fc.record({
      capacityBytes: fc.integer({ min: 0, max: 2 ** 40 }),
      usedBytes: fc.integer({ min: 0, max: 2 ** 40 }),
      state: fc.constantFrom("Normal" as const, "Normal" as const, "Failed" as const),
    }),
    { maxLength: 12 },
  ),
  sparePercentage: fc.integer({ min: 0, max: 100 }),
  thickReservedBytes: fc.integer({ min: 0, max: 2 ** 42 }),
  thinUsedBytes: fc.integer({ min: 0, max: 2 ** 42 }),
});

function thrownCode(f: () => void): string | null {
  try {
    f();
    return null;
  } catch (e) {
    if (isPfError(e)) return e.code;
    throw e;
  }
}

describe("poolCapacity", () => {
  test("a worked example: 4 x 100 GiB, one failed, 10% spare, 20 GiB thick, 5 GiB thin, 8 GiB steps", () => {
    const cap = poolCapacity(
      {
        devices: [
          { capacityBytes: 100 * GiB, usedBytes: 30 * GiB, state: "Normal" },
          { capacityBytes: 100 * GiB, usedBytes: 20 * GiB, state: "Normal" },
          { capacityBytes: 100 * GiB, usedBytes: 10 * GiB, state: "Normal" },
          { capacityBytes: 100 * GiB, usedBytes: 99 * GiB, state: "Failed" },
        ],
        sparePercentage: 10,
        thickReservedBytes: 20 * GiB,
        thinUsedBytes: 5 * GiB,
      },
      8 * GiB,
    );
    expect(cap).toEqual({
      rawBytes: 300 * GiB,
      spareBytes: 30 * GiB,
      usableRawBytes: 270 * GiB,
      thickReservedRawBytes: 40 * GiB,
      inUseRawBytes: 60 * GiB,
      // (270 - 40 - 10) / 2 = 110 GiB net, down to a multiple of 8 GiB
      availableForVolumeAllocationBytes: 104 * GiB,
    });
  });

  test("invariants: parts add up, spare rounded up, available >= 0, a multiple of the granularity, within one step of the exact figure", () => {
    fc.assert(
      fc.property(inputArb, granularityArb, (input, g) => {
        const cap = poolCapacity(input, g);
        const normal = input.devices.filter((d) => d.state === "Normal");
        expect(cap.rawBytes).toBe(normal.reduce((a, d) => a + d.capacityBytes, 0));
        expect(cap.inUseRawBytes).toBe(normal.reduce((a, d) => a + d.usedBytes, 0));
        expect(cap.spareBytes + cap.usableRawBytes).toBe(cap.rawBytes);
        expect(cap.spareBytes * 100).toBeGreaterThanOrEqual(cap.rawBytes * input.sparePercentage);
        expect(cap.spareBytes).toBeLessThanOrEqual(cap.rawBytes);
        expect(cap.thickReservedRawBytes).toBe(2 * input.thickReservedBytes);
        const exactNet = (cap.usableRawBytes - 2 * input.thickReservedBytes - 2 * input.thinUsedBytes) / 2;
        const a = cap.availableForVolumeAllocationBytes;
        expect(a).toBeGreaterThanOrEqual(0);
        expect(a % g).toBe(0);
        expect(a).toBeLessThanOrEqual(Math.max(0, exactNet));
        if (exactNet >= g) expect(a).toBeGreaterThan(exactNet - g);
        // the promise: 2 x (thick + thin + everything still offered) fits in usable raw
        expect(2 * (input.thickReservedBytes + input.thinUsedBytes + a)).toBeLessThanOrEqual(
          Math.max(cap.usableRawBytes, 2 * (input.thickReservedBytes + input.thinUsedBytes)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  test("monotone: more thick reserved, more thin written or a larger spare never raises available; a Normal device never lowers it", () => {
    fc.assert(
      fc.property(
        inputArb,
        granularityArb,
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (input, g, moreThick, moreThin, spare2, newDeviceBytes) => {
          const base = poolCapacity(input, g).availableForVolumeAllocationBytes;
          const thicker = poolCapacity({ ...input, thickReservedBytes: input.thickReservedBytes + moreThick }, g);
          expect(thicker.availableForVolumeAllocationBytes).toBeLessThanOrEqual(base);
          const thinner = poolCapacity({ ...input, thinUsedBytes: input.thinUsedBytes + moreThin }, g);
          expect(thinner.availableForVolumeAllocationBytes).toBeLessThanOrEqual(base);
          const lo = Math.min(input.sparePercentage, spare2);
          const hi = Math.max(input.sparePercentage, spare2);
          expect(poolCapacity({ ...input, sparePercentage: hi }, g).availableForVolumeAllocationBytes).toBeLessThanOrEqual(
            poolCapacity({ ...input, sparePercentage: lo }, g).availableForVolumeAllocationBytes,
          );
          const grown = poolCapacity(
            { ...input, devices: [...input.devices, { capacityBytes: newDeviceBytes, usedBytes: 0, state: "Normal" }] },
            g,
          );
          expect(grown.availableForVolumeAllocationBytes).toBeGreaterThanOrEqual(base);
          const failed = poolCapacity(
            { ...input, devices: [...input.devices, { capacityBytes: newDeviceBytes, usedBytes: 0, state: "Failed" }] },
            g,
          );
          expect(failed).toEqual(poolCapacity(input, g));
        },
      ),
      { numRuns: 1000 },
    );
  });

  test("an empty pool and an over-reserved pool offer 0, never a negative figure", () => {
    expect(poolCapacity({ devices: [], sparePercentage: 10, thickReservedBytes: 0, thinUsedBytes: 0 }, GiB)).toEqual({
      rawBytes: 0,
      spareBytes: 0,
      usableRawBytes: 0,
      thickReservedRawBytes: 0,
      inUseRawBytes: 0,
      availableForVolumeAllocationBytes: 0,
    });
    const over = poolCapacity(
      {
        devices: [{ capacityBytes: 10 * GiB, usedBytes: 0, state: "Normal" }],
        sparePercentage: 0,
        thickReservedBytes: 8 * GiB, // 16 GiB raw on a 10 GiB pool (e.g. after a device failed)
        thinUsedBytes: 0,
      },
      GiB,
    );
    expect(over.availableForVolumeAllocationBytes).toBe(0);
  });
});

describe("roundUpToGranularity", () => {
  test("smallest multiple >= size; idempotent; exact for large sizes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 50 }), granularityArb, (size, g) => {
        const r = roundUpToGranularity(size, g);
        expect(r % g).toBe(0);
        expect(r).toBeGreaterThanOrEqual(size);
        expect(r - size).toBeLessThan(g);
        expect(roundUpToGranularity(r, g)).toBe(r);
      }),
      { numRuns: 2000 },
    );
    expect(roundUpToGranularity(20 * GiB, 8 * GiB)).toBe(24 * GiB); // PowerFlex: 20 GB -> 24 GB
    expect(roundUpToGranularity(0, 8 * GiB)).toBe(0);
    expect(roundUpToGranularity(2 ** 50 + 1, 8 * GiB)).toBe(2 ** 50 + 8 * GiB);
  });
});

describe("checkThickFits", () => {
  test("throws NO_SPACE exactly when the size exceeds what is available", () => {
    fc.assert(
      fc.property(inputArb, granularityArb, fc.integer({ min: 0, max: 2 ** 42 }), (input, g, size) => {
        const cap = poolCapacity(input, g);
        const code = thrownCode(() => checkThickFits(cap, size));
        expect(code).toBe(size > cap.availableForVolumeAllocationBytes ? "NO_SPACE" : null);
      }),
      { numRuns: 2000 },
    );
  });

  test("thick volumes created until refused never oversubscribe the usable raw capacity", () => {
    fc.assert(
      fc.property(
        inputArb,
        granularityArb,
        fc.array(fc.integer({ min: 1, max: 2 ** 40 }), { minLength: 1, maxLength: 30 }),
        (input, g, requests) => {
          let thick = input.thickReservedBytes;
          const startUsable = poolCapacity(input, g).usableRawBytes;
          const oversubscribedAtStart = 2 * (thick + input.thinUsedBytes) > startUsable;
          for (const request of requests) {
            const size = roundUpToGranularity(request, g);
            const cap = poolCapacity({ ...input, thickReservedBytes: thick }, g);
            if (thrownCode(() => checkThickFits(cap, size)) !== null) continue;
            thick += size;
            // accepting a volume never pushes the pool past its usable raw capacity
            expect(oversubscribedAtStart).toBe(false);
            expect(2 * (thick + input.thinUsedBytes)).toBeLessThanOrEqual(startUsable);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  test("the refusal says what was asked and what is left", () => {
    const cap = poolCapacity(
      {
        devices: [
          { capacityBytes: 100 * GiB, usedBytes: 0, state: "Normal" },
          { capacityBytes: 100 * GiB, usedBytes: 0, state: "Normal" },
        ],
        sparePercentage: 10,
        thickReservedBytes: 0,
        thinUsedBytes: 0,
      },
      8 * GiB,
    );
    expect(cap.availableForVolumeAllocationBytes).toBe(88 * GiB); // 90 GiB net, in 8 GiB steps
    expect(() => checkThickFits(cap, 88 * GiB)).not.toThrow();
    expect(() => checkThickFits(cap, 96 * GiB)).toThrow(
      "Insufficient capacity: a thick volume of 96 GiB needs 192 GiB raw (2 copies), but the pool has only 88 GiB " +
        "available for volume allocation (raw 200 GiB, spare reserve 20 GiB, thick reserved 0 B raw)",
    );
  });
});
