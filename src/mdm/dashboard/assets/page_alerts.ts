// Alerts: the open PowerFlex alerts (GET /api/types/Alert/instances) with severity, type,
// affected object, what happened (the sentence of the health check), start and last-observed
// times; and the history including cleared alerts (/api/pf/alerts?all=true).

import type { PfAlert } from "../dashboard_model.ts";
import { alertLevel, isActive, type Snapshot, type Source } from "./data.ts";
import { h, setText } from "./dom.ts";
import { ago, dateTime, timeMs } from "./format.ts";
import { alertMessage } from "../dashboard_health.ts";
import { objectLabel, objectName } from "./names.ts";
import type { Page, PageDef } from "./page.ts";
import { DataTable, type Column } from "./table.ts";
import { badge, card, toneOfLevel } from "./widgets.ts";

const SEVERITY_RANK: Record<string, number> = { ALERT_CRITICAL: 0, ALERT_HIGH: 1, ALERT_MEDIUM: 2, ALERT_LOW: 3 };

function when(v: string | number | null | undefined, nowMs: number): HTMLElement | string {
  const t = timeMs(v);
  return t === null ? "—" : h("span", { title: dateTime(t) }, ago(t, nowMs));
}

function sourceNote(src: Source<PfAlert[]>, what: string): string {
  switch (src.state) {
    case "missing":
      return `${what}: no data yet (the MDM's alert service is not available).`;
    case "error":
      return `${what}: ${src.message}`;
    default:
      return "";
  }
}

class AlertsPage implements Page {
  readonly el: HTMLElement;
  private snap: Snapshot | null = null;
  private readonly active: DataTable<PfAlert>;
  private readonly history: DataTable<PfAlert>;
  private readonly activeNote = h("p", { class: "muted small" });
  private readonly historyNote = h("p", { class: "muted small" });

  constructor() {
    const now = () => this.snap?.summary.tMs ?? Date.now();
    const object = (a: PfAlert) => (this.snap ? objectLabel(this.snap.summary, a.affectedObject?.type, a.affectedObject?.objectId ?? a.affectedObject?.id) : "");
    // the same sentence the MDM's health check uses, for cleared alerts too
    const detail = (a: PfAlert) => {
      const sum = this.snap?.summary;
      if (!sum) return "";
      const values = Object.fromEntries(Object.entries(a.alertValues ?? {}).map(([k, v]) => [k, String(v)]));
      const facts = { id: a.id, alertType: a.alertType, severity: a.severity, objectType: a.affectedObject?.type ?? "", objectId: a.affectedObject?.objectId ?? a.affectedObject?.id ?? "", values, startMs: timeMs(a.startTime) ?? 0 };
      // pools by their own name, as the MDM's health checks say it
      return alertMessage(facts, (type, id) => (type === "StoragePool" ? (sum.storagePools.find((p) => p.id === id)?.name ?? id) : objectName(sum, type, id)));
    };
    const columns = (withCleared: boolean): Column<PfAlert>[] => [
      { label: "Severity", cell: (a) => badge(a.severity.replace("ALERT_", ""), toneOfLevel(alertLevel(a))), sort: (a) => SEVERITY_RANK[a.severity] ?? 9 },
      { label: "Alert", cell: (a) => h("span", { class: "mono" }, a.alertType), sort: (a) => a.alertType },
      { label: "Object", cls: "nowrap", cell: object, sort: object },
      { label: "Detail", cell: detail },
      { label: "Started", cls: "nowrap", cell: (a) => when(a.startTime, now()), sort: (a) => -(timeMs(a.startTime) ?? 0) },
      { label: "Last observed", cls: "nowrap", cell: (a) => when(a.lastObserved, now()), sort: (a) => -(timeMs(a.lastObserved) ?? 0) },
      ...(withCleared ? [{ label: "Cleared", cls: "nowrap", cell: (a: PfAlert) => (isActive(a) ? badge("active", toneOfLevel(alertLevel(a))) : when(a.clearedTime, now())) }] : []),
    ];
    const filterText = (a: PfAlert) => `${a.alertType} ${a.severity} ${object(a)} ${detail(a)}`;
    this.active = new DataTable<PfAlert>({
      id: "alerts-active",
      columns: columns(false),
      rowKey: (a) => a.id,
      rowAttrs: (a) => ({ "data-testid": "alert-row", "data-type": a.alertType, "data-severity": a.severity }),
      filterText,
      empty: "No open alert.",
    });
    this.history = new DataTable<PfAlert>({
      id: "alerts-history",
      columns: columns(true),
      rowKey: (a) => a.id,
      rowAttrs: (a) => ({ "data-testid": "alert-history-row", "data-type": a.alertType }),
      filterText,
      empty: "No alert in the history.",
    });
    this.el = h(
      "div",
      { class: "page alerts" },
      card("Open alerts", { "data-testid": "card-alerts" }, this.activeNote, this.active.el),
      card("Alert history", { "data-testid": "card-alert-history" }, this.historyNote, this.history.el),
    );
  }

  update(snap: Snapshot): void {
    this.snap = snap;
    setText(this.activeNote, sourceNote(snap.alerts, "Alerts"));
    this.activeNote.hidden = snap.alerts.state === "ok";
    this.active.update(snap.alerts.state === "ok" ? snap.alerts.data.filter(isActive) : []);
    setText(this.historyNote, sourceNote(snap.alertHistory, "History"));
    this.historyNote.hidden = snap.alertHistory.state === "ok";
    const hist = snap.alertHistory.state === "ok" ? [...snap.alertHistory.data] : [];
    hist.sort((a, b) => (timeMs(b.startTime) ?? 0) - (timeMs(a.startTime) ?? 0));
    this.history.update(hist);
  }
}

export const alertsPage: PageDef = {
  id: "alerts",
  title: "Alerts",
  needs: { history: false, live: false, alerts: true },
  create: () => new AlertsPage(),
};
