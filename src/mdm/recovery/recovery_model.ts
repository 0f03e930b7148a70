// The recovery state of an extent and of the SDSs around it, as the pure failure/rebuild core
// sees it (rebuild_planner.ts, rebuild_completion.ts), and its mapping to/from extent rows.
// Invariants (checkExtent asserts them on every state the core produces):
// - 1 or 2 in-sync copies, primary first; the in-sync list, the target and the away copy never
//   name one SDS twice;
// - a target that replaces a copy (a move) names an in-sync SDS;
// - epoch >= 1 and only grows (the core returns epoch + 1 for every membership change).

import { assert } from "../../proto/errors.ts";
import type { ExtentRow } from "../../store/mdm_schema.ts";

export interface CopyRef {
  sdsId: string;
  deviceId: string;
}

export type TargetMode = "full" | "resync";

export interface TargetCopy extends CopyRef {
  mode: TargetMode;
  startedMs: number;
  /** a move: the in-sync SDS this copy replaces when done (null: a rebuild, it becomes secondary) */
  replacesSdsId: string | null;
}

export interface AwayCopy extends CopyRef {
  sinceMs: number;
}

export interface ExtentState {
  volumeId: string;
  idx: number;
  epoch: number;
  /** in-sync copies, primary first */
  inSync: CopyRef[];
  target: TargetCopy | null;
  away: AwayCopy | null;
}

/** Per-extent facts the planner needs besides its copies. */
export interface ExtentInfo {
  poolId: string;
  extentBytes: number;
  thick: boolean;
}

export type PlannedExtent = ExtentState & ExtentInfo;

export function extentKey(e: { volumeId: string; idx: number }): string {
  return `${e.volumeId}/${e.idx}`;
}

/** Every copy of the extent, whatever its role. */
export function copiesOf(e: ExtentState): CopyRef[] {
  const out = [...e.inSync];
  if (e.target) out.push(e.target);
  if (e.away) out.push(e.away);
  return out;
}

export function holdsCopy(e: ExtentState, sdsId: string): boolean {
  return copiesOf(e).some((c) => c.sdsId === sdsId);
}

export function checkExtent(e: ExtentState): void {
  assert(e.epoch >= 1, "extent epoch starts at 1");
  assert(e.inSync.length >= 1 && e.inSync.length <= 2, "an extent has 1 or 2 in-sync copies");
  const sds = copiesOf(e).map((c) => c.sdsId);
  assert(new Set(sds).size === sds.length, "two copies never on one SDS");
  if (e.target?.replacesSdsId) {
    const r = e.target.replacesSdsId;
    assert(e.inSync.some((c) => c.sdsId === r), "a move replaces an in-sync copy");
  }
}

export function extentFromRow(r: ExtentRow): ExtentState {
  const inSync: CopyRef[] = [{ sdsId: r.primarySdsId, deviceId: r.primaryDeviceId }];
  if (r.secondarySdsId !== null) {
    assert(r.secondaryDeviceId !== null, "a secondary copy has a device");
    inSync.push({ sdsId: r.secondarySdsId, deviceId: r.secondaryDeviceId });
  }
  let target: TargetCopy | null = null;
  if (r.targetSdsId !== null) {
    assert(r.targetDeviceId !== null, "a target copy has a device");
    target = {
      sdsId: r.targetSdsId,
      deviceId: r.targetDeviceId,
      mode: r.targetMode === "resync" ? "resync" : "full",
      startedMs: r.targetStartedMs ?? 0,
      replacesSdsId: r.targetReplacesSdsId,
    };
  }
  let away: AwayCopy | null = null;
  if (r.awaySdsId !== null) {
    assert(r.awayDeviceId !== null, "an away copy has a device");
    away = { sdsId: r.awaySdsId, deviceId: r.awayDeviceId, sinceMs: r.awaySinceMs ?? 0 };
  }
  return { volumeId: r.volumeId, idx: r.idx, epoch: r.epoch, inSync, target, away };
}

/** The columns of an extent row that hold its recovery state (for an UPDATE). */
export function rowColumnsOf(e: ExtentState): Omit<ExtentRow, "volumeId" | "idx"> {
  checkExtent(e);
  const [p, s] = e.inSync as [CopyRef, CopyRef | undefined];
  return {
    epoch: e.epoch,
    primarySdsId: p.sdsId,
    primaryDeviceId: p.deviceId,
    secondarySdsId: s?.sdsId ?? null,
    secondaryDeviceId: s?.deviceId ?? null,
    targetSdsId: e.target?.sdsId ?? null,
    targetDeviceId: e.target?.deviceId ?? null,
    targetMode: e.target?.mode ?? null,
    targetStartedMs: e.target?.startedMs ?? null,
    targetReplacesSdsId: e.target?.replacesSdsId ?? null,
    awaySdsId: e.away?.sdsId ?? null,
    awayDeviceId: e.away?.deviceId ?? null,
    awaySinceMs: e.away?.sinceMs ?? null,
  };
}

/** Devices that gain (+1) or lose (-1) a copy between two states of one extent. */
export function deviceCopyDeltas(before: ExtentState, after: ExtentState): Map<string, number> {
  const d = new Map<string, number>();
  for (const c of copiesOf(before)) d.set(c.deviceId, (d.get(c.deviceId) ?? 0) - 1);
  for (const c of copiesOf(after)) d.set(c.deviceId, (d.get(c.deviceId) ?? 0) + 1);
  for (const [k, v] of d) if (v === 0) d.delete(k);
  return d;
}
