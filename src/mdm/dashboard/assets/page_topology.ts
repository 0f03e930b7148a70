// Topology: protection domains with their storage pools (state, recovery activity, capacity
// against the thresholds) and fault sets; every SDS with its connection, state, devices (as
// sub-rows with path, pool, capacity and state) and live IO; every SDC with its connection,
// mapped volumes and live IO. Rows carry data-name and data-health for scripts and tests.

import type { DashSds, DashSummary, IoRates } from "../dashboard_model.ts";
import { liveRates, type Snapshot } from "./data.ts";
import { h, redraw } from "./dom.ts";
import { ago, bytes, bytesPerSec, iops } from "./format.ts";
import { poolLabel, volumeLabel } from "./names.ts";
import type { Page, PageDef } from "./page.ts";
import { DataTable } from "./table.ts";
import { badge, bar, card, usage, usageTone, type Tone } from "./widgets.ts";

export type SdsHealth = "healthy" | "down" | "removing";

export function sdsHealth(s: DashSds): SdsHealth {
  if (s.connection === "Disconnected") return "down";
  return s.state === "Normal" ? "healthy" : "removing";
}

const SDS_TONE: Record<SdsHealth, Tone> = { healthy: "ok", down: "err", removing: "warn" };
const SDS_TEXT: Record<SdsHealth, string> = { healthy: "Connected", down: "Disconnected", removing: "Removing" };

function ioCells(r: IoRates | null): [iops: string, throughput: string] {
  if (r === null) return ["—", "—"];
  return [`${iops(r.readIops)} / ${iops(r.writeIops)}`, `${bytesPerSec(r.readBps)} / ${bytesPerSec(r.writeBps)}`];
}

function domains(sum: DashSummary): HTMLElement {
  if (sum.protectionDomains.length === 0) return h("p", { class: "muted" }, "No protection domain yet.");
  return h(
    "div",
    { class: "pds" },
    ...sum.protectionDomains.map((pd) => {
      const pools = sum.storagePools.filter((p) => p.pdId === pd.id);
      const fs = sum.faultSets.filter((f) => f.pdId === pd.id);
      const sdsCount = sum.sds.filter((s) => s.pdId === pd.id).length;
      return h(
        "div",
        { class: "pd", "data-testid": "pd", "data-name": pd.name },
        h("h3", null, `Protection domain ${pd.name} `, badge(pd.state, pd.state === "Active" ? "ok" : "warn"), h("span", { class: "muted small" }, ` ${sdsCount} SDS, ${pools.length} pools`)),
        h(
          "table",
          { class: "grid-t" },
          h("thead", null, h("tr", null, ...["Storage pool", "Media", "State", "Recovery", "Used of usable", "Thresholds", "Spare", "Volumes", "Provisioned", "Available"].map((t) => h("th", null, t)))),
          h(
            "tbody",
            null,
            ...pools.map((p) => {
              const pct = p.utilizationPct;
              const high = p.highThresholdPct;
              const crit = p.criticalThresholdPct;
              const stTone: Tone = p.rebuild.poolState === "Normal" ? "ok" : p.rebuild.poolState === "Degraded" ? "warn" : "err";
              return h(
                "tr",
                { "data-testid": "pool-row", "data-name": p.name, "data-state": p.rebuild.poolState },
                h("td", null, h("a", { href: "#/rebuild" }, p.name)),
                h("td", null, p.mediaType),
                h("td", null, badge(p.rebuild.poolState, stTone)),
                h("td", null, p.rebuild.activity === "Idle" ? "Idle" : `${p.rebuild.activity} ${p.rebuild.progressPercent.toFixed(0)} %`),
                h("td", null, h("span", { class: "usage" }, bar(pct, usageTone(pct, high, crit), [high, crit]), h("span", { class: "usage-t" }, `${pct.toFixed(1)} % · ${bytes(p.usedRawBytes)} / ${bytes(p.usableRawBytes)}`))),
                h("td", { class: "num" }, `${high} / ${crit} %`),
                h("td", { class: "num" }, `${p.sparePercentage} %`),
                h("td", { class: "num" }, p.volumes),
                h("td", { class: "num" }, bytes(p.provisionedBytes)),
                h("td", { class: "num" }, bytes(p.availableForVolumeBytes)),
              );
            }),
          ),
        ),
        h("p", { class: "small" }, h("b", null, "Fault sets: "), fs.length === 0 ? "none (every SDS is its own fault unit)" : fs.map((f) => `${f.name} (${sum.sds.filter((s) => s.faultSetId === f.id).length} SDS)`).join(", ")),
      );
    }),
  );
}

class TopologyPage implements Page {
  readonly el: HTMLElement;
  private readonly pds = h("div");
  private snap: Snapshot | null = null;
  private readonly sdsTable: DataTable<DashSds>;
  private readonly sdcTable: DataTable<DashSummary["sdcs"][number]>;

  constructor() {
    const io = (kind: "sds" | "sdc", id: string) => ioCells(this.snap ? liveRates(this.snap.live, kind, id) : null);
    const sum = () => this.snap!.summary;
    this.sdsTable = new DataTable<DashSds>({
      id: "sds-table",
      rowKey: (s) => s.id,
      rowAttrs: (s) => ({ "data-testid": "sds-row", "data-name": s.name, "data-health": sdsHealth(s) }),
      filterText: (s) => `${s.name} ${s.ips.join(" ")} ${s.id}`,
      empty: "No SDS has joined.",
      columns: [
        { label: "SDS", cell: (s) => h("b", null, s.name), sort: (s) => s.name },
        { label: "State", cell: (s) => badge(SDS_TEXT[sdsHealth(s)], SDS_TONE[sdsHealth(s)], { "data-testid": "sds-state" }), sort: (s) => sdsHealth(s) },
        { label: "Address", cell: (s) => h("span", { class: "mono" }, `${s.ips.join(", ")}:${s.port}`) },
        { label: "Fault set", cell: (s) => sum().faultSets.find((f) => f.id === s.faultSetId)?.name ?? "—" },
        { label: "Last heartbeat", cell: (s) => (s.lastHeartbeatMs === null ? "never" : ago(s.lastHeartbeatMs, sum().tMs)) },
        { label: "Devices", cls: "num", cell: (s) => sum().devices.filter((d) => d.sdsId === s.id).length },
        { label: "Used", cell: (s) => usage(s.usedBytes, s.capacityBytes, sum().system.capacityAlertHighPct, sum().system.capacityAlertCriticalPct), sort: (s) => s.usedBytes },
        { label: "Extent copies", cls: "num", cell: (s) => s.extentCopies, sort: (s) => s.extentCopies },
        { label: "IOPS r/w", cls: "num", cell: (s) => io("sds", s.id)[0] },
        { label: "Throughput r/w", cls: "num", cell: (s) => io("sds", s.id)[1] },
      ],
      subRows: (s) =>
        sum()
          .devices.filter((d) => d.sdsId === s.id)
          .map((d) =>
            h(
              "tr",
              { class: "sub", "data-testid": "device-row", "data-path": d.path, "data-state": d.state },
              h("td", { class: "nowrap" }, h("span", { class: "tree" }, "└ "), d.name ?? d.path.split("/").pop() ?? "device"),
              h("td", null, badge(d.state, d.state === "Normal" ? (s.connection === "Connected" ? "ok" : "muted") : "err")),
              h("td", { colspan: 4 }, h("span", { class: "mono" }, d.path), h("span", { class: "muted" }, ` · ${d.mediaType} · pool ${poolLabel(sum(), d.poolId)}`)),
              h("td", null, usage(d.usedBytes, d.capacityBytes, sum().system.capacityAlertHighPct, sum().system.capacityAlertCriticalPct)),
              h("td", { colspan: 3 }, ""),
            ),
          ),
    });
    this.sdcTable = new DataTable({
      id: "sdc-table",
      rowKey: (c) => c.id,
      rowAttrs: (c) => ({ "data-testid": "sdc-row", "data-name": c.name ?? c.ip, "data-health": c.connection === "Connected" ? "healthy" : "down" }),
      filterText: (c) => `${c.name ?? ""} ${c.ip} ${c.guid}`,
      empty: "No SDC has joined.",
      columns: [
        { label: "SDC", cell: (c) => h("b", null, c.name ?? "(unnamed)"), sort: (c) => c.name ?? "" },
        { label: "State", cell: (c) => badge(c.connection, c.connection === "Connected" ? "ok" : "err"), sort: (c) => c.connection },
        { label: "IP", cell: (c) => h("span", { class: "mono" }, c.ip), sort: (c) => c.ip },
        { label: "GUID", cell: (c) => h("span", { class: "mono small" }, c.guid) },
        { label: "Last heartbeat", cell: (c) => (c.lastHeartbeatMs === null ? "never" : ago(c.lastHeartbeatMs, sum().tMs)) },
        {
          label: "Mapped volumes",
          cell: (c) => {
            const m = sum().mappings.filter((x) => x.sdcId === c.id);
            return m.length === 0 ? h("span", { class: "muted" }, "none") : m.map((x) => h("span", { class: "chip" }, `${volumeLabel(sum(), x.volumeId)} (${x.accessMode === "ReadWrite" ? "RW" : "RO"})`));
          },
        },
        { label: "IOPS r/w", cls: "num", cell: (c) => io("sdc", c.id)[0] },
        { label: "Throughput r/w", cls: "num", cell: (c) => io("sdc", c.id)[1] },
      ],
    });
    this.el = h(
      "div",
      { class: "page topology" },
      card("Protection domains and storage pools", { "data-testid": "card-pds" }, this.pds),
      card("Storage data servers (SDS) and devices", { "data-testid": "card-sds" }, this.sdsTable.el),
      card("Storage data clients (SDC)", { "data-testid": "card-sdc" }, this.sdcTable.el),
    );
  }

  update(snap: Snapshot): void {
    this.snap = snap;
    redraw(this.pds, domains(snap.summary));
    this.sdsTable.update(snap.summary.sds);
    this.sdcTable.update(snap.summary.sdcs);
  }
}

export const topologyPage: PageDef = {
  id: "topology",
  title: "Topology",
  needs: { history: false, live: true, alerts: false },
  create: () => new TopologyPage(),
};
