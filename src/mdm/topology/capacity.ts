// Storage-pool capacity math for two-copy mesh mirroring: raw, spare reserve, thick reservations,
// thin usage, and the net capacity still available for volume allocation.
//
// Invariants kept here:
// - Only Normal devices count as raw capacity; a Failed device's bytes are gone until rebuilt.
// - The spare reserve is rounded UP and the available figure rounded DOWN (to the allocation
//   granularity), so every rounding errs on the side of promising less.
// - availableForVolumeAllocationBytes is never negative, and a thick volume accepted by
//   checkThickFits always leaves 2 × (all thick reservations) + 2 × (thin written) <= usable raw:
//   the pool never promises more thick capacity than it holds after its spare reserve.
// All figures are bytes; "net" means one copy, "raw" means both copies on devices.

import { PfError, assert } from "../../proto/errors.ts";
import { formatBytes } from "../../proto/sizes.ts";

/** Number of copies each extent has (PowerFlex "mesh mirroring"). */
export const COPIES = 2;

export interface PoolCapacityInput {
  devices: { capacityBytes: number; usedBytes: number; state: "Normal" | "Failed" }[];
  sparePercentage: number;
  thickReservedBytes: number /* net (one copy) */;
  thinUsedBytes: number /* net */;
}

export interface PoolCapacity {
  rawBytes: number;
  spareBytes: number;
  usableRawBytes: number;
  thickReservedRawBytes: number;
  inUseRawBytes: number;
  availableForVolumeAllocationBytes: number /* net (one copy), rounded down to granularity */;
}

function assertByteCount(value: number, what: string): void {
  assert(Number.isSafeInteger(value) && value >= 0, `${what} must be a non-negative integer byte count`);
}

/**
 * Capacity of one storage pool. inUseRawBytes is what the Normal devices report as used (both
 * copies of thick and thin data); the allocation figure is computed from reservations instead,
 * because a thick volume owns its whole size from creation whether or not it was written.
 */
export function poolCapacity(input: PoolCapacityInput, granularityBytes: number): PoolCapacity {
  assert(Number.isSafeInteger(granularityBytes) && granularityBytes > 0, "granularityBytes must be a positive integer");
  assert(input.sparePercentage >= 0 && input.sparePercentage <= 100, "sparePercentage must be within 0..100");
  assertByteCount(input.thickReservedBytes, "thickReservedBytes");
  assertByteCount(input.thinUsedBytes, "thinUsedBytes");

  let rawBytes = 0;
  let inUseRawBytes = 0;
  for (const device of input.devices) {
    switch (device.state) {
      case "Normal":
        rawBytes += device.capacityBytes;
        inUseRawBytes += device.usedBytes;
        break;
      case "Failed":
        break;
      default: {
        const never: never = device.state;
        throw new Error(`unknown device state ${String(never)}`);
      }
    }
  }
  const spareBytes = Math.min(rawBytes, Math.ceil((rawBytes * input.sparePercentage) / 100));
  const usableRawBytes = rawBytes - spareBytes;
  const thickReservedRawBytes = COPIES * input.thickReservedBytes;
  const thinUsedRawBytes = COPIES * input.thinUsedBytes;
  const freeNetBytes = Math.floor((usableRawBytes - thickReservedRawBytes - thinUsedRawBytes) / COPIES);
  const availableForVolumeAllocationBytes = Math.max(0, roundDownToGranularity(freeNetBytes, granularityBytes));
  return {
    rawBytes,
    spareBytes,
    usableRawBytes,
    thickReservedRawBytes,
    inUseRawBytes,
    availableForVolumeAllocationBytes,
  };
}

/** Smallest multiple of granularityBytes that is >= sizeBytes (0 stays 0). Exact integer math. */
export function roundUpToGranularity(sizeBytes: number, granularityBytes: number): number {
  assertByteCount(sizeBytes, "sizeBytes");
  assert(Number.isSafeInteger(granularityBytes) && granularityBytes > 0, "granularityBytes must be a positive integer");
  const remainder = sizeBytes % granularityBytes;
  return remainder === 0 ? sizeBytes : sizeBytes - remainder + granularityBytes;
}

function roundDownToGranularity(bytes: number, granularityBytes: number): number {
  if (bytes <= 0) return 0;
  return bytes - (bytes % granularityBytes);
}

/** Throws PfError NO_SPACE with a clear human message if a thick volume of sizeBytes (net) does not fit after the spare reserve. */
export function checkThickFits(cap: PoolCapacity, sizeBytes: number): void {
  assertByteCount(sizeBytes, "sizeBytes");
  if (sizeBytes <= cap.availableForVolumeAllocationBytes) return;
  throw new PfError(
    "NO_SPACE",
    `Insufficient capacity: a thick volume of ${formatBytes(sizeBytes)} needs ${formatBytes(COPIES * sizeBytes)} raw ` +
      `(${COPIES} copies), but the pool has only ${formatBytes(cap.availableForVolumeAllocationBytes)} available for ` +
      `volume allocation (raw ${formatBytes(cap.rawBytes)}, spare reserve ${formatBytes(cap.spareBytes)}, ` +
      `thick reserved ${formatBytes(cap.thickReservedRawBytes)} raw)`,
  );
}
