// The cluster's health as shown in the top bar and the overview's status card: the MDM's own
// checks from the summary merged with the open PowerFlex alerts of the alert service (HIGH and
// CRITICAL count as errors, LOW and MEDIUM as warnings). Pure: snapshot in, level and counts out.

import type { HealthLevel } from "../dashboard_model.ts";
import { alertLevel, isActive, type Snapshot } from "./data.ts";

export interface HealthView {
  level: HealthLevel;
  errors: number;
  warnings: number;
}

export function healthView(snap: Snapshot): HealthView {
  let errors = 0;
  let warnings = 0;
  for (const c of snap.summary.health.checks) {
    if (c.level === "ERR") errors++;
    else warnings++;
  }
  if (snap.alerts.state === "ok") {
    for (const a of snap.alerts.data) {
      if (!isActive(a)) continue;
      if (alertLevel(a) === "ERR") errors++;
      else warnings++;
    }
  }
  return { level: errors > 0 ? "ERR" : warnings > 0 ? "WARN" : "OK", errors, warnings };
}

export const LEVEL_TEXT: Record<HealthLevel, string> = { OK: "Healthy", WARN: "Warning", ERR: "Error" };
