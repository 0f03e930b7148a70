// The recovery state of an extent and of the SDSs around it, as the pure failure/rebuild core
// sees it (rebuild_planner.ts, rebuild_completion.ts), and its mapping to/from extent rows.
// Invariants (checkExtent asserts them on every state the core produces):
// - 1 or 2 in-sync copies, primary first; the in-sync list, the target and the away copy never
//   name one SDS twice;
// - a running copy can always be installed when it finishes (targetMisfit): a rebuild or resync
//   target (replacesSdsId null) runs only while the extent has ONE in-sync copy, a move only while
//   it has TWO, one of them the copy it replaces. A change of the in-sync set that breaks this
//   settles the target at once (withInSync): the move becomes a rebuild, or the copy is dropped;
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
  const misfit = targetMisfit(e);
  assert(misfit === null, `a running copy can be installed when it finishes (${misfit ?? ""})`);
}

/**
 * Why the running copy of `e` could not be installed when it finishes, or null when it could
 * (rebuild_completion.ts installs exactly these): a rebuild or resync needs exactly one in-sync
 * copy (the target becomes the second), a move needs two, one of them the copy it replaces.
 */
export function targetMisfit(e: ExtentState): string | null {
  const t = e.target;
  if (t === null) return null;
  if (t.replacesSdsId === null) return e.inSync.length === 1 ? null : `a ${t.mode} copy to SDS ${t.sdsId} on an extent that has two in-sync copies`;
  const replaced = t.replacesSdsId;
  if (!e.inSync.some((c) => c.sdsId === replaced)) return `the move to SDS ${t.sdsId} replaces SDS ${replaced}, which is not in sync`;
  return e.inSync.length === 2 ? null : `the move to SDS ${t.sdsId} would replace the only in-sync copy (SDS ${replaced})`;
}

/** Whether two SDSs share a fault domain of the extent's pool (its fault set, else the SDS itself). */
export type SameDomain = (a: string, b: string) => boolean;

export interface Settled {
  next: ExtentState;
  /** what happened to the running copy (empty: nothing) */
  reasons: string[];
}

/**
 * The extent with the in-sync set `inSync` (copies left it, or a stored state to repair), its
 * running copy settled so that it can still be installed (targetMisfit):
 * - the primary changed: the copy is dropped (its source, the old primary, drives it no more);
 * - a move left with one in-sync copy: the copy being built is needed as the second copy, so the
 *   move becomes a rebuild, unless its target shares a fault domain with the copy left (then it is
 *   dropped). Without `sameDomain` only the copy the move was placed apart from (the one it did
 *   not replace) is known to be safe; next to the copy it replaced, the move is dropped;
 * - a rebuild next to two in-sync copies is dropped (nothing to rebuild).
 * Epoch and away copy are the caller's.
 */
export function withInSync(e: ExtentState, inSync: CopyRef[], sameDomain: SameDomain | null): Settled {
  const t = e.target;
  const next: ExtentState = { ...e, inSync };
  if (t === null) return { next, reasons: [] };
  if (e.inSync[0]?.sdsId !== inSync[0]?.sdsId) return { next: { ...next, target: null }, reasons: [`dropped the copy to SDS ${t.sdsId}: its source (the primary) left`] };
  if (targetMisfit(next) === null) return { next, reasons: [] };
  if (t.replacesSdsId === null || inSync.length !== 1) return { next: { ...next, target: null }, reasons: [`dropped the ${t.mode} copy to SDS ${t.sdsId}: ${targetMisfit(next)}`] };
  const left = inSync[0]!.sdsId;
  const apart = sameDomain === null ? left !== t.replacesSdsId : !sameDomain(left, t.sdsId);
  if (!apart) {
    const why = sameDomain === null ? `it was not placed apart from SDS ${left}, the copy left` : "it shares a fault set with the copy left";
    return { next: { ...next, target: null }, reasons: [`dropped the move to SDS ${t.sdsId}: ${why}`] };
  }
  return { next: { ...next, target: { ...t, replacesSdsId: null } }, reasons: [`the move to SDS ${t.sdsId} becomes a rebuild (one in-sync copy is left)`] };
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

/**
 * The devices that gain (+1) or lose (-1) a copy between two states of one extent: `fn` is called
 * once per device whose count changes, with the change (no Map: once or twice per extent of a
 * recovery step).
 */
export function forEachDeviceDelta(before: ExtentState, after: ExtentState, fn: (deviceId: string, n: number) => void): void {
  const ids: string[] = [];
  const ns: number[] = [];
  const add = (c: CopyRef | null, d: number) => {
    if (c === null) return;
    const i = ids.indexOf(c.deviceId);
    if (i >= 0) ns[i]! += d;
    else {
      ids.push(c.deviceId);
      ns.push(d);
    }
  };
  for (const c of before.inSync) add(c, -1);
  add(before.target, -1);
  add(before.away, -1);
  for (const c of after.inSync) add(c, 1);
  add(after.target, 1);
  add(after.away, 1);
  for (let i = 0; i < ids.length; i++) if (ns[i] !== 0) fn(ids[i]!, ns[i]!);
}
