// What a rebuild report from an SDS heartbeat means for an extent: progress to record, a finished
// copy to install, or a stale report to ignore. Pure: extent state + report -> verdict.
// Invariants: only the current primary's report for the current target at the current epoch
// counts (an older epoch is stale: the copy it describes was dropped or restarted); a finished
// rebuild makes the target the secondary, a finished move makes it replace the moved-from copy
// (the remaining copy becomes primary if the primary moved); the away copy is dropped (two in-sync
// copies exist again); the result has epoch + 1. A finished copy that cannot be installed
// (targetMisfit; no state the core produces is like that) is "unusable": the planner settles
// that target at its next tick (rebuild_planner.ts settleMisfitTarget), it is never left running.

import type { RebuildReport } from "../../proto/cluster_api.ts";
import { checkExtent, targetMisfit, type CopyRef, type ExtentState } from "./recovery_model.ts";

export type ReportVerdict =
  | { kind: "stale"; why: string }
  | { kind: "unusable"; why: string }
  | { kind: "progress" }
  | { kind: "complete"; after: ExtentState; reason: string };

export function judgeReport(e: ExtentState, reporterSdsId: string, r: RebuildReport): ReportVerdict {
  const t = e.target;
  if (t === null || t.sdsId !== r.targetSdsId) return { kind: "stale", why: `no copy to SDS ${r.targetSdsId} is running` };
  if (r.epoch !== e.epoch) return { kind: "stale", why: `report for epoch ${r.epoch}, extent is at epoch ${e.epoch}` };
  if (e.inSync[0]?.sdsId !== reporterSdsId) return { kind: "stale", why: `SDS ${reporterSdsId} is not the primary` };
  if (!r.done) return { kind: "progress" };
  const misfit = targetMisfit(e);
  if (misfit !== null) return { kind: "unusable", why: misfit };
  const copy: CopyRef = { sdsId: t.sdsId, deviceId: t.deviceId };
  let inSync: CopyRef[];
  let reason: string;
  if (t.replacesSdsId === null) {
    inSync = [e.inSync[0]!, copy];
    reason = `${t.mode} copy to SDS ${t.sdsId} finished: it is the secondary`;
  } else {
    const stay = e.inSync.filter((c) => c.sdsId !== t.replacesSdsId);
    inSync = [stay[0]!, copy];
    reason = `move finished: SDS ${t.sdsId} replaces SDS ${t.replacesSdsId}`;
  }
  const after: ExtentState = { ...e, epoch: e.epoch + 1, inSync, target: null, away: null };
  checkExtent(after);
  return { kind: "complete", after, reason };
}
