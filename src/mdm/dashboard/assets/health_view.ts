// The cluster's health as shown in the top bar and the overview's status card: the level and
// the error/warning counts of the summary's health checks (the MDM's active alerts; HIGH and
// CRITICAL count as errors, LOW and MEDIUM as warnings). Pure: snapshot in, figures out.

import type { HealthLevel } from "../dashboard_model.ts";
import type { Snapshot } from "./data.ts";

export interface HealthView {
  level: HealthLevel;
  errors: number;
  warnings: number;
}

export function healthView(snap: Snapshot): HealthView {
  const checks = snap.summary.health.checks;
  const errors = checks.filter((c) => c.level === "ERR").length;
  return { level: snap.summary.health.level, errors, warnings: checks.length - errors };
}

export const LEVEL_TEXT: Record<HealthLevel, string> = { OK: "Healthy", WARN: "Warning", ERR: "Error" };
