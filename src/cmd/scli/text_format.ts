// Small pure formatters shared by scli's text output, in PowerFlex's wording: sizes as
// "8.0 GB (8192 MB)" where 1 GB = 1024 MiB (PowerFlex's GB are binary), "N/A" for absent names,
// "Thin-provisioned"/"Thick-provisioned", "Mapped to N SDC"/"Unmapped".

import type { VolumeObj } from "./mdm_objects.ts";

const KB_PER_MB = 1024;
const KB_PER_GB = 1024 * 1024;

/** "8.0 GB (8192 MB)" */
export function sizeText(sizeInKb: number): string {
  return `${(sizeInKb / KB_PER_GB).toFixed(1)} GB (${Math.floor(sizeInKb / KB_PER_MB)} MB)`;
}

/** "8" for whole GB, else up to three decimals ("0.25"). */
export function gbText(sizeInKb: number): string {
  const gb = sizeInKb / KB_PER_GB;
  return Number.isInteger(gb) ? String(gb) : String(Number(gb.toFixed(3)));
}

export function orNA(v: string | null | undefined): string {
  return v === null || v === undefined || v === "" ? "N/A" : v;
}

export function provisioningText(volumeType: string): string {
  switch (volumeType) {
    case "ThinProvisioned":
      return "Thin-provisioned";
    case "ThickProvisioned":
      return "Thick-provisioned";
    default:
      return volumeType;
  }
}

export function mappedSdcCount(v: VolumeObj): number {
  return v.mappedSdcInfo?.length ?? 0;
}

export function mappingText(v: VolumeObj): string {
  const n = mappedSdcCount(v);
  return n === 0 ? "Unmapped" : `Mapped to ${n} SDC`;
}

/** "1 volume" / "2 volumes" */
export function plural(n: number, word: string, pluralWord = `${word}s`): string {
  return `${n} ${n === 1 ? word : pluralWord}`;
}

/** Epoch seconds -> "2024-05-01 12:00:00 UTC" (UTC so that output does not depend on the host). */
export function timeText(epochS: number | null | undefined): string {
  if (epochS === null || epochS === undefined) return "N/A";
  return `${new Date(epochS * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "")} UTC`;
}

/** Group items by a key, keeping the first-seen order of keys. */
export function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return m;
}
