// Alert commands: --query_alerts (the MDM's active alerts, --all with the cleared history:
// type, severity, affected object, since when, and its values) and
// --set_capacity_alert_thresholds (a pool's high/critical capacity thresholds, sent as
// PowerFlex does: percent strings to setCapacityAlertThresholds).

import type { AlertObject } from "../../proto/powerflex_api.ts";
import type { CommandContext, Output } from "./command_context.ts";
import { resolvePool } from "./selectors.ts";
import { plural } from "./text_format.ts";

/** "2024-05-01 12:00:00 UTC" from the MDM's ISO time */
function when(iso: string | null): string {
  return iso === null ? "N/A" : `${iso.replace("T", " ").replace(/\.\d+Z$/, "")} UTC`;
}

/** The lines of one alert: what, how bad, on which object, since and until when, its values. */
export function alertLines(a: AlertObject): string[] {
  const values = Object.entries(a.alertValues)
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");
  const span = a.state === "active" ? `since ${when(a.startTime)}, last observed ${when(a.lastObserved)}` : `from ${when(a.startTime)} to ${when(a.clearedTime)}`;
  return [`${a.alertType} (${a.severity}) on ${a.affectedObject.type} ${a.affectedObject.id}: ${a.state}, ${span}`, ...(values ? [`\t${values}`] : []), `\tID: ${a.id}`];
}

export function alertsText(list: readonly AlertObject[], all: boolean): string[] {
  const active = list.filter((a) => a.state === "active").length;
  const head = all ? `${plural(list.length, "alert")} (${active} active, ${list.length - active} cleared)` : `${plural(active, "active alert")}`;
  return [head, ...list.flatMap(alertLines)];
}

export async function queryAlerts(ctx: CommandContext): Promise<Output> {
  const all = ctx.args.has("all");
  const list = await ctx.client().alerts({ all });
  return { text: alertsText(list, all), json: list };
}

export async function setCapacityAlertThresholds(ctx: CommandContext): Promise<Output> {
  const client = ctx.client();
  const pool = await resolvePool(client, ctx.args);
  const high = ctx.args.str("capacity_alert_high_threshold");
  const critical = ctx.args.str("capacity_alert_critical_threshold");
  await client.action("StoragePool", pool.id, "setCapacityAlertThresholds", {
    ...(high !== undefined ? { capacityAlertHighThresholdPercent: high } : {}),
    ...(critical !== undefined ? { capacityAlertCriticalThresholdPercent: critical } : {}),
  });
  const after = await client.get("StoragePool", pool.id);
  return {
    text: [`Successfully set the capacity alert thresholds of Storage Pool ${pool.name} (Id: ${pool.id}): high ${after.capacityAlertHighThreshold ?? "?"}%, critical ${after.capacityAlertCriticalThreshold ?? "?"}%`],
    json: { storagePoolId: pool.id, capacityAlertHighThreshold: after.capacityAlertHighThreshold, capacityAlertCriticalThreshold: after.capacityAlertCriticalThreshold },
  };
}
