// Overview (the Ceph dashboard-v3 landing layout): Details, Inventory, Status (health level,
// critical/warning pills, the active alerts with "since"), Capacity (used share of the usable
// capacity, coloured at the pools' 80 %/90 % thresholds) and the utilisation charts — IOPS, throughput, latency, recovery
// throughput — from /api/pf/history with a 1/5/10 minute window selector.

import type { DashSummary, HistorySample } from "../dashboard_model.ts";
import { READ_WRITE, RECOVERY_SERIES, TimeChart, type ChartPoint } from "./chart.ts";
import type { Snapshot } from "./data.ts";
import { h, redraw, setAttr, setText } from "./dom.ts";
import { ago, bytes, bytesPerSec, compactCount, iops, latencyUs, percent } from "./format.ts";
import { healthView, LEVEL_TEXT } from "./health_view.ts";
import type { AppCtx, Page, PageDef } from "./page.ts";
import { badge, card, donut, kv, legend, toneOfLevel, usageTone } from "./widgets.ts";

const MiB = 1024 * 1024;

const WINDOWS: [seconds: number, label: string][] = [
  [60, "1 min"],
  [300, "5 min"],
  [600, "10 min"],
];

function points(samples: HistorySample[], pick: (s: HistorySample) => number[]): ChartPoint[] {
  return samples.map((s) => ({ t: s.t, values: pick(s) }));
}

function details(sum: DashSummary): HTMLElement {
  const sys = sum.system;
  return kv([
    ["System", sys.name ?? "(unnamed)"],
    ["System ID", sys.id, { class: "mono" }],
    ["Version", sys.versionName],
    ["MDM cluster", `${sys.mdmClusterMode}, ${sys.mdmClusterState}`],
    ["REST API", `${location.origin}/api (version ${sys.apiVersion})`, { class: "mono" }],
    ["Logged in as", `${sum.user.name} (${sum.user.role})`],
  ]);
}

function inventory(sum: DashSummary): HTMLElement {
  const sdsUp = sum.sds.filter((s) => s.connection === "Connected").length;
  const sdcUp = sum.sdcs.filter((s) => s.connection === "Connected").length;
  const failedDev = sum.devices.filter((d) => d.state === "Failed").length;
  const mappedVols = new Set(sum.mappings.map((m) => m.volumeId)).size;
  const item = (label: string, href: string, value: string, key: string, tone: "ok" | "warn" | "err" | null, note?: string) =>
    h("li", null, h("a", { href, "data-testid": `inv-${key}`, "data-value": value }, h("span", null, label), tone ? badge(note ?? "", tone) : null, h("b", null, value)));
  return h(
    "ul",
    { class: "inventory" },
    item("MDM", "#/overview", "1", "mdm", null),
    item("Protection domains", "#/topology", String(sum.protectionDomains.length), "pd", null),
    item("Storage pools", "#/topology", String(sum.storagePools.length), "pools", null),
    item("Fault sets", "#/topology", String(sum.faultSets.length), "faultsets", null),
    item("SDS up", "#/topology", `${sdsUp}/${sum.sds.length}`, "sds", sdsUp < sum.sds.length ? "err" : null, `${sum.sds.length - sdsUp} down`),
    item("Devices", "#/topology", String(sum.devices.length), "devices", failedDev > 0 ? "err" : null, `${failedDev} failed`),
    item("SDC connected", "#/topology", `${sdcUp}/${sum.sdcs.length}`, "sdc", sdcUp < sum.sdcs.length ? "warn" : null, `${sum.sdcs.length - sdcUp} disconnected`),
    item("Volumes", "#/volumes", String(sum.volumes.length), "volumes", null),
    item("Mapped volumes", "#/volumes", String(mappedVols), "mapped", null),
  );
}

function status(snap: Snapshot): HTMLElement {
  const hv = healthView(snap);
  const sum = snap.summary;
  const checks = sum.health.checks.map((c) =>
    h(
      "li",
      { class: `chk ${toneOfLevel(c.level)}`, "data-testid": "overview-check", "data-name": c.name },
      badge(c.severity.replace("ALERT_", ""), toneOfLevel(c.level)),
      h("span", { class: "chk-m" }, c.message),
      h("span", { class: "muted small chk-s" }, `since ${ago(c.sinceMs, sum.tMs)}`),
    ),
  );
  return h(
    "div",
    { class: "status" },
    h(
      "div",
      { class: `status-h ${toneOfLevel(hv.level)}`, "data-testid": "health", "data-level": hv.level },
      h("span", { class: "status-icon" }, hv.level === "OK" ? "✓" : hv.level === "WARN" ? "!" : "✕"),
      h("span", { class: "status-t" }, LEVEL_TEXT[hv.level]),
      h("span", { class: "pills" }, badge(`${hv.errors} critical`, hv.errors > 0 ? "err" : "muted"), badge(`${hv.warnings} warning`, hv.warnings > 0 ? "warn" : "muted")),
    ),
    checks.length === 0 ? h("p", { class: "muted" }, "No alert is active.") : h("ul", { class: "checks" }, ...checks),
    h("p", { class: "small" }, h("a", { href: "#/alerts" }, "All alerts and history ›")),
  );
}

/** The thresholds shared by every pool, else the system's defaults. */
function thresholds(sum: DashSummary): [high: number, critical: number] {
  const first = sum.storagePools[0];
  if (first && sum.storagePools.every((p) => p.highThresholdPct === first.highThresholdPct && p.criticalThresholdPct === first.criticalThresholdPct)) {
    return [first.highThresholdPct, first.criticalThresholdPct];
  }
  return [sum.system.capacityAlertHighPct, sum.system.capacityAlertCriticalPct];
}

function capacity(sum: DashSummary): HTMLElement {
  const pools = sum.storagePools;
  const add = (f: (p: DashSummary["storagePools"][number]) => number) => pools.reduce((n, p) => n + f(p), 0);
  const raw = add((p) => p.rawBytes);
  const usable = add((p) => p.usableRawBytes);
  const used = add((p) => p.usedRawBytes);
  const spare = add((p) => p.spareBytes);
  const [high, critical] = thresholds(sum);
  const pct = usable > 0 ? (100 * used) / usable : 0;
  // the ring's colour is the worst pool's, so one full pool shows even in a large system
  const tone = pools.some((p) => p.utilizationPct >= p.criticalThresholdPct) ? "err" : pools.some((p) => p.utilizationPct >= p.highThresholdPct) ? "warn" : usageTone(pct, high, critical);
  return h(
    "div",
    { class: "capacity", "data-testid": "capacity", "data-used-pct": pct.toFixed(2), "data-tone": tone },
    donut([{ frac: usable > 0 ? used / usable : 0, cls: `used ${tone}` }], [high, critical], percent(pct), "of usable"),
    legend([
      [`used ${tone}`, "Used", bytes(used)],
      ["free", "Free", bytes(Math.max(0, usable - used))],
      ["spare", "Spare", bytes(spare)],
      ["none", "Total raw", bytes(raw)],
    ]),
    kv([
      ["Provisioned (net)", bytes(add((p) => p.provisionedBytes))],
      ["Available for volumes", bytes(add((p) => p.availableForVolumeBytes))],
      ["Alert thresholds", `${high} % high, ${critical} % critical`],
    ]),
  );
}

class OverviewPage implements Page {
  readonly el: HTMLElement;
  private readonly details = h("div");
  private readonly inventory = h("div");
  private readonly status = h("div");
  private readonly capacity = h("div");
  private readonly note = h("p", { class: "muted small chart-note" });
  private readonly windowBtns: HTMLButtonElement[];
  private readonly charts = {
    iops: new TimeChart({ id: "iops-chart", title: "IOPS", series: READ_WRITE, format: iops, axisFormat: compactCount, scale: "decimal", minTop: 100 }),
    bw: new TimeChart({ id: "bw-chart", title: "Client throughput", series: READ_WRITE, format: bytesPerSec, scale: "binary", minTop: MiB }),
    lat: new TimeChart({ id: "lat-chart", title: "Latency (average)", series: READ_WRITE, format: latencyUs, scale: "decimal", minTop: 1000 }),
    rec: new TimeChart({ id: "recovery-chart", title: "Recovery throughput", series: RECOVERY_SERIES, format: bytesPerSec, scale: "binary", minTop: MiB }),
  };

  constructor(private readonly app: AppCtx) {
    this.windowBtns = WINDOWS.map(([sec, label]) =>
      h("button", { class: "btn sm seg", type: "button", "data-seconds": sec, onclick: () => this.setWindow(sec) }, label),
    );
    this.markWindow();
    this.el = h(
      "div",
      { class: "page overview" },
      h(
        "div",
        { class: "grid4" },
        card("Details", { "data-testid": "card-details" }, this.details),
        card("Inventory", { "data-testid": "card-inventory" }, this.inventory),
        card("Status", { "data-testid": "card-status" }, this.status),
        card("Capacity", { "data-testid": "card-capacity" }, this.capacity),
      ),
      h(
        "section",
        { class: "card" },
        h("header", { class: "card-h" }, h("h2", null, "Cluster utilization"), h("span", { class: "seg-group", role: "group", "aria-label": "Time range" }, ...this.windowBtns)),
        h("div", { class: "card-b" }, this.note, h("div", { class: "grid2" }, this.charts.iops.el, this.charts.bw.el, this.charts.lat.el, this.charts.rec.el)),
      ),
    );
  }

  private setWindow(seconds: number): void {
    this.app.setHistorySeconds(seconds);
    this.markWindow();
    this.app.refresh();
  }

  private markWindow(): void {
    for (const b of this.windowBtns) b.classList.toggle("on", Number(b.dataset.seconds) === this.app.historySeconds());
  }

  update(snap: Snapshot): void {
    const sum = snap.summary;
    redraw(this.details, details(sum));
    redraw(this.inventory, inventory(sum));
    redraw(this.status, status(snap));
    redraw(this.capacity, capacity(sum));
    const windowMs = snap.historySeconds * 1000;
    if (snap.history.state === "ok") {
      const samples = snap.history.data.samples;
      setText(this.note, "");
      this.note.hidden = true;
      this.charts.iops.update(points(samples, (s) => [s.readIops, s.writeIops]), windowMs);
      this.charts.bw.update(points(samples, (s) => [s.readBps, s.writeBps]), windowMs);
      this.charts.lat.update(points(samples, (s) => [s.readLatencyUs, s.writeLatencyUs]), windowMs);
      this.charts.rec.update(points(samples, (s) => [s.rebuildBps, s.rebalanceBps]), windowMs);
    } else {
      const text = snap.history.state === "error" ? `Statistics: ${snap.history.message}` : "No data yet";
      for (const c of Object.values(this.charts)) c.message(text);
      this.note.hidden = false;
      setText(this.note, snap.history.state === "missing" ? "The MDM's statistics history (/api/pf/history) is not available yet." : "");
    }
    setAttr(this.el, "data-history", snap.history.state);
  }
}

export const overviewPage: PageDef = {
  id: "overview",
  title: "Overview",
  needs: { history: true, live: false, alerts: false },
  create: (app) => new OverviewPage(app),
};
