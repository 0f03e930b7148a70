// Rebuild / rebalance: per storage pool the state (Normal, Degraded, Failed), what recovery is
// doing, a progress bar with percent, copied and remaining bytes, rate, ETA ("calculating" until
// a rate exists), the extent counts (degraded, waiting for a returning SDS, pending, running,
// resync, moves) and a stall warning; SDSs being drained; and the recovery throughput chart.

import type { DashPool, DashSummary } from "../dashboard_model.ts";
import { RECOVERY_SERIES, TimeChart } from "./chart.ts";
import type { Snapshot } from "./data.ts";
import { h, redraw } from "./dom.ts";
import { bytes, bytesPerSec, duration } from "./format.ts";
import type { Page, PageDef } from "./page.ts";
import { badge, bar, card, kv, type Tone } from "./widgets.ts";

const STATE_TONE: Record<DashPool["rebuild"]["poolState"], Tone> = { Normal: "ok", Degraded: "warn", Failed: "err" };

function poolCard(sum: DashSummary, p: DashPool): HTMLElement {
  const r = p.rebuild;
  const pd = sum.protectionDomains.find((d) => d.id === p.pdId)?.name ?? p.pdId;
  const busy = r.activity !== "Idle";
  const pct = busy ? r.progressPercent : 100;
  const tone: Tone = r.stalled ? "err" : busy ? "info" : "ok";
  return h(
    "section",
    {
      class: "card rb",
      "data-testid": "rebuild-pool",
      "data-name": p.name,
      "data-state": r.poolState,
      "data-activity": r.activity,
      "data-progress": pct.toFixed(1),
      "data-remaining-bytes": String(r.remainingBytes),
    },
    h("header", { class: "card-h" }, h("h2", null, `${pd} / ${p.name}`), badge(r.poolState, STATE_TONE[r.poolState]), badge(r.activity, busy ? "info" : "muted"), r.stalled ? badge("STALLED", "err") : null),
    h(
      "div",
      { class: "card-b" },
      h("div", { class: "rb-progress" }, bar(pct, tone), h("span", { class: "rb-pct", "data-testid": "rebuild-percent" }, `${pct.toFixed(1)} %`)),
      h(
        "div",
        { class: "rb-figs" },
        fig("Copied", bytes(r.copiedBytes)),
        fig("Remaining", bytes(r.remainingBytes)),
        fig("Rate", bytesPerSec(r.rateBytesPerSec), "rebuild-rate"),
        fig("ETA", busy ? duration(r.etaSeconds) : "—", "rebuild-eta"),
      ),
      kv([
        ["Degraded extents", `${r.degradedExtents} (${bytes(r.degradedBytes)})`],
        ["No copy left", String(r.unavailableExtents)],
        ["Waiting for returning SDS", String(r.waitingExtents)],
        ["Rebuild", `${r.activeRebuildExtents} running (${r.activeResyncExtents} resync), ${r.pendingRebuildExtents} pending (${bytes(r.pendingRebuildBytes)})`],
        ["Rebalance / drain", `${r.activeMoveExtents} running, ${bytes(r.pendingRebalanceBytes)} pending`],
        ["I/O priority", p.rebuildIoPolicy === "limitNumOfConcurrentIos" || p.rebuildIoPolicy === "favorAppIos" ? `${p.rebuildIoPolicy}, ${p.rebuildIoConcurrency} per device` : p.rebuildIoPolicy],
        ["Rate limit", p.rebuildRateLimitKbps > 0 ? `${bytesPerSec(p.rebuildRateLimitKbps * 1024)} per device` : "unlimited"],
      ]),
      r.stalled ? h("p", { class: "warn-t" }, `No progress for ${duration(r.noProgressSeconds)}: check that the SDSs holding the copies are connected and have space.`) : null,
    ),
  );
}

function fig(label: string, value: string, testid?: string): HTMLElement {
  return h("div", { class: "fig" }, h("span", null, label), h("b", testid ? { "data-testid": testid } : null, value));
}

function drains(sum: DashSummary): HTMLElement {
  const removing = sum.sds.filter((s) => s.state !== "Normal");
  if (removing.length === 0) return h("p", { class: "muted" }, "No SDS is being removed.");
  return h("ul", { class: "checks" }, ...removing.map((s) => h("li", null, badge(s.state, "warn"), h("b", null, s.name), `${s.extentCopies} extent copies still to move`)));
}

class RebuildPage implements Page {
  readonly el: HTMLElement;
  private readonly pools = h("div", { class: "rb-list" });
  private readonly drain = h("div");
  private readonly chart = new TimeChart({ id: "rebuild-chart", title: "", series: RECOVERY_SERIES, format: bytesPerSec, scale: "binary", minTop: 1024 * 1024 });

  constructor() {
    this.el = h(
      "div",
      { class: "page rebuild" },
      this.pools,
      h("div", { class: "grid2" }, card("Recovery throughput", {}, this.chart.el), card("SDS removal (drain)", {}, this.drain)),
    );
  }

  update(snap: Snapshot): void {
    const sum = snap.summary;
    redraw(this.pools, sum.storagePools.length === 0 ? h("p", { class: "muted" }, "No storage pool yet.") : sum.storagePools.map((p) => poolCard(sum, p)));
    redraw(this.drain, drains(sum));
    if (snap.history.state === "ok") {
      this.chart.update(
        snap.history.data.samples.map((s) => ({ t: s.t, values: [s.rebuildBps, s.rebalanceBps] })),
        snap.historySeconds * 1000,
      );
    } else this.chart.message(snap.history.state === "error" ? `Statistics: ${snap.history.message}` : "No data yet");
  }
}

export const rebuildPage: PageDef = {
  id: "rebuild",
  title: "Rebuild",
  needs: { history: true, live: false, alerts: false },
  create: () => new RebuildPage(),
};
