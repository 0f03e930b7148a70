// Volumes: every volume with type, size, pool, mappings (SDC and access mode) and live IO
// (IOPS, throughput, latency from /api/pf/live), filterable, 25 to a page. Users whose role may
// change volumes get Create, Extend, Map, Unmap and Delete; the buttons disappear after the
// MDM answers 403 to one of them.

import type { DashVolume, IoRates } from "../dashboard_model.ts";
import { liveRates, type Snapshot } from "./data.ts";
import { h, setText } from "./dom.ts";
import { bytes, bytesPerSec, iops, latencyUs } from "./format.ts";
import { poolLabel, sdcLabel } from "./names.ts";
import type { AppCtx, Page, PageDef } from "./page.ts";
import { DataTable } from "./table.ts";
import { card } from "./widgets.ts";
import { createVolumeDialog, deleteVolumeDialog, extendVolumeDialog, mapVolumeDialog, unmapVolumeDialog } from "./volume_actions.ts";

class VolumesPage implements Page {
  readonly el: HTMLElement;
  private snap: Snapshot | null = null;
  private readonly table: DataTable<DashVolume>;
  private readonly createBtn: HTMLButtonElement;
  private readonly note = h("p", { class: "muted small note" });
  private readonly totals = h("span", { class: "muted small" });

  constructor(private readonly app: AppCtx) {
    const sum = () => this.snap!.summary;
    const io = (v: DashVolume): IoRates | null => (this.snap ? liveRates(this.snap.live, "volumes", v.id) : null);
    const num = (v: DashVolume, f: (r: IoRates) => string) => {
      const r = io(v);
      return r === null ? "—" : f(r);
    };
    const act = (label: string, testid: string, run: () => void, danger = false) =>
      h("button", { class: `btn xs${danger ? " danger-t" : ""}`, type: "button", "data-testid": testid, onclick: run }, label);
    this.table = new DataTable<DashVolume>({
      id: "volumes-table",
      rowKey: (v) => v.id,
      rowAttrs: (v) => {
        const r = io(v);
        return {
          "data-testid": "volume-row",
          "data-name": v.name ?? v.id,
          "data-size-bytes": String(v.sizeBytes),
          ...(r ? { "data-read-iops": String(r.readIops), "data-write-iops": String(r.writeIops) } : {}),
        };
      },
      filterText: (v) => `${v.name ?? ""} ${v.id} ${poolLabel(sum(), v.poolId)}`,
      empty: "No volume yet.",
      columns: [
        { label: "Volume", cell: (v) => [h("b", null, v.name ?? "(unnamed)"), h("div", { class: "mono muted small" }, v.id)], sort: (v) => v.name ?? "" },
        { label: "Type", cell: (v) => (v.volumeType === "ThinProvisioned" ? "Thin" : "Thick"), sort: (v) => v.volumeType },
        { label: "Size", cls: "num", cell: (v) => bytes(v.sizeBytes), sort: (v) => v.sizeBytes },
        { label: "Pool", cell: (v) => poolLabel(sum(), v.poolId), sort: (v) => poolLabel(sum(), v.poolId) },
        {
          label: "Mapped to",
          cell: (v) => {
            const m = sum().mappings.filter((x) => x.volumeId === v.id);
            return m.length === 0 ? h("span", { class: "muted" }, "not mapped") : m.map((x) => h("span", { class: "chip", "data-testid": "mapping" }, `${sdcLabel(sum(), x.sdcId)} (${x.accessMode === "ReadWrite" ? "RW" : "RO"})`));
          },
          sort: (v) => sum().mappings.filter((x) => x.volumeId === v.id).length,
        },
        { label: "Read IOPS", cls: "num", cell: (v) => num(v, (r) => iops(r.readIops)), sort: (v) => io(v)?.readIops ?? 0 },
        { label: "Write IOPS", cls: "num", cell: (v) => num(v, (r) => iops(r.writeIops)), sort: (v) => io(v)?.writeIops ?? 0 },
        { label: "Read", cls: "num", cell: (v) => num(v, (r) => bytesPerSec(r.readBps)), sort: (v) => io(v)?.readBps ?? 0 },
        { label: "Write", cls: "num", cell: (v) => num(v, (r) => bytesPerSec(r.writeBps)), sort: (v) => io(v)?.writeBps ?? 0 },
        { label: "Latency r/w", cls: "num", cell: (v) => num(v, (r) => `${latencyUs(r.readLatencyUs)} / ${latencyUs(r.writeLatencyUs)}`) },
        {
          label: "",
          cls: "actions",
          cell: (v) => {
            if (!this.app.canModify()) return null;
            const maps = sum().mappings.filter((m) => m.volumeId === v.id).length;
            const mapped = maps > 0;
            return [
              act("Extend", "vol-extend", () => extendVolumeDialog(this.app, v)),
              maps < sum().sdcs.length ? act("Map", "vol-map", () => mapVolumeDialog(this.app, sum(), v)) : null,
              mapped ? act("Unmap", "vol-unmap", () => unmapVolumeDialog(this.app, sum(), v)) : null,
              act("Delete", "vol-delete", () => deleteVolumeDialog(this.app, sum(), v), true),
            ];
          },
        },
      ],
    });
    this.createBtn = h("button", { class: "btn primary", type: "button", "data-testid": "vol-create", onclick: () => this.snap && createVolumeDialog(this.app, this.snap.summary) }, "+ Create volume");
    this.table.tools.prepend(this.createBtn, this.totals);
    this.el = h("div", { class: "page volumes" }, card("Volumes", { "data-testid": "card-volumes" }, this.note, this.table.el));
  }

  update(snap: Snapshot): void {
    this.snap = snap;
    const vols = snap.summary.volumes;
    this.createBtn.hidden = !this.app.canModify();
    const total = vols.reduce((n, v) => n + v.sizeBytes, 0);
    setText(this.totals, `${vols.length} volume${vols.length === 1 ? "" : "s"}, ${bytes(total)} provisioned`);
    this.note.hidden = snap.live.state === "ok";
    setText(this.note, snap.live.state === "missing" ? "Live IO: no data yet (the MDM's statistics service is not available)." : snap.live.state === "error" ? `Live IO: ${snap.live.message}` : "");
    this.table.update(vols);
  }
}

export const volumesPage: PageDef = {
  id: "volumes",
  title: "Volumes",
  needs: { history: false, live: true, alerts: false },
  create: (app) => new VolumesPage(app),
};
