// Volume changes from the console, each a dialog over the PowerFlex REST call scli makes:
// create (POST /api/types/Volume/instances), extend (setVolumeSize), map (addMappedSdc), unmap
// (removeMappedSdc) and delete (removeVolume, after typing the volume's name). A 403 hides the
// actions for the rest of the session; any other error stays in the dialog in the MDM's words.

import type { DashSummary, DashVolume } from "../dashboard_model.ts";
import { post, type Result } from "./api.ts";
import { field, openDialog } from "./dialog.ts";
import { h } from "./dom.ts";
import { bytes } from "./format.ts";
import { poolLabel, sdcLabel, volumeLabel } from "./names.ts";
import type { AppCtx } from "./page.ts";

const GiB = 1024 * 1024 * 1024;

/** null when the call succeeded, else the text to show (and a 403 hides every action). */
function outcome(app: AppCtx, r: Result<unknown>): string | null {
  switch (r.kind) {
    case "ok":
      app.refresh();
      return null;
    case "forbidden":
      app.forbid();
      return `Not allowed for user ${app.session.user}: ${r.message}`;
    case "unauthorized":
      return "The session has ended; log in again.";
    case "missing":
      return "The object no longer exists.";
    case "error":
      return r.message;
    default: {
      const never: never = r;
      return never;
    }
  }
}

const action = (app: AppCtx, volumeId: string, name: string, body: unknown) => post<unknown>(`/api/instances/Volume::${volumeId}/action/${name}`, app.session, body);

function gibInput(testid: string, min: number, value: number): HTMLInputElement {
  return h("input", { type: "number", min, step: 1, value, required: true, "data-testid": testid });
}

export function createVolumeDialog(app: AppCtx, sum: DashSummary): void {
  const name = h("input", { type: "text", required: true, maxlength: 31, pattern: "[A-Za-z0-9_.:\\-]+", "data-testid": "vol-name", autocomplete: "off" });
  const pool = h("select", { "data-testid": "vol-pool" }, ...sum.storagePools.map((p) => h("option", { value: p.id }, `${poolLabel(sum, p.id)} (${bytes(p.availableForVolumeBytes)} available)`)));
  const size = gibInput("vol-size", 1, 8);
  const type = h("select", { "data-testid": "vol-type" }, h("option", { value: "ThinProvisioned" }, "Thin"), h("option", { value: "ThickProvisioned" }, "Thick"));
  openDialog({
    title: "Create volume",
    action: "Create",
    body: [field("Name", name), field("Storage pool", pool), field("Size (GiB)", size, "rounded up to the pool's allocation granularity"), field("Provisioning", type)],
    run: async () => {
      const gib = Number(size.value);
      if (!name.value.trim()) return "A name is required.";
      if (!Number.isInteger(gib) || gib < 1) return "The size must be a whole number of GiB, at least 1.";
      const r = await post<unknown>("/api/types/Volume/instances", app.session, {
        name: name.value.trim(),
        storagePoolId: pool.value,
        volumeSizeInKb: String(gib * 1024 * 1024),
        volumeType: type.value,
      });
      return outcome(app, r);
    },
  });
}

export function extendVolumeDialog(app: AppCtx, v: DashVolume): void {
  const current = Math.ceil(v.sizeBytes / GiB);
  const size = gibInput("vol-new-size", current + 1, current + 1);
  openDialog({
    title: `Extend volume ${v.name ?? v.id}`,
    action: "Extend",
    body: [h("p", null, `Current size ${bytes(v.sizeBytes)}. A volume grows only; shrinking is refused.`), field("New size (GiB)", size)],
    run: async () => {
      const gib = Number(size.value);
      if (!Number.isInteger(gib) || gib * GiB <= v.sizeBytes) return `The new size must be a whole number of GiB above ${bytes(v.sizeBytes)}.`;
      return outcome(app, await action(app, v.id, "setVolumeSize", { sizeInGB: String(gib) }));
    },
  });
}

export function mapVolumeDialog(app: AppCtx, sum: DashSummary, v: DashVolume): void {
  const mapped = new Set(sum.mappings.filter((m) => m.volumeId === v.id).map((m) => m.sdcId));
  const free = sum.sdcs.filter((c) => !mapped.has(c.id));
  const sdc = h("select", { "data-testid": "map-sdc" }, ...free.map((c) => h("option", { value: c.id }, `${c.name ?? "(unnamed)"} — ${c.ip}`)));
  const mode = h("select", { "data-testid": "map-mode" }, h("option", { value: "ReadWrite" }, "Read-write"), h("option", { value: "ReadOnly" }, "Read-only"));
  openDialog({
    title: `Map volume ${volumeLabel(sum, v.id)}`,
    action: "Map",
    body: free.length === 0 ? [h("p", null, "Every SDC already has this volume mapped.")] : [field("SDC", sdc), field("Access mode", mode)],
    run: async () => {
      if (free.length === 0) return "No SDC left to map to.";
      const body = { sdcId: sdc.value, accessMode: mode.value, ...(mapped.size > 0 ? { allowMultipleMappings: "TRUE" } : {}) };
      return outcome(app, await action(app, v.id, "addMappedSdc", body));
    },
  });
}

export function unmapVolumeDialog(app: AppCtx, sum: DashSummary, v: DashVolume): void {
  const maps = sum.mappings.filter((m) => m.volumeId === v.id);
  const sdc = h("select", { "data-testid": "unmap-sdc" }, ...maps.map((m) => h("option", { value: m.sdcId }, `${sdcLabel(sum, m.sdcId)} (${m.accessMode})`)));
  openDialog({
    title: `Unmap volume ${volumeLabel(sum, v.id)}`,
    action: "Unmap",
    danger: true,
    body: [h("p", null, "Clients on that SDC lose access to the volume at once; open NBD connections get errors."), field("SDC", sdc)],
    run: async () => outcome(app, await action(app, v.id, "removeMappedSdc", { sdcId: sdc.value })),
  });
}

export function deleteVolumeDialog(app: AppCtx, sum: DashSummary, v: DashVolume): void {
  const label = v.name ?? v.id;
  const maps = sum.mappings.filter((m) => m.volumeId === v.id).length;
  openDialog({
    title: `Delete volume ${label}`,
    action: "Delete",
    danger: true,
    typeToConfirm: label,
    body: [
      h("p", null, `The volume's ${bytes(v.sizeBytes)} and every byte on it are gone for good.`),
      maps > 0 ? h("p", { class: "warn-t" }, `It is mapped to ${maps} SDC${maps === 1 ? "" : "s"}; the MDM refuses to delete a mapped volume — unmap it first.`) : null,
    ],
    run: async () => outcome(app, await action(app, v.id, "removeVolume", { removeMode: "ONLY_ME" })),
  });
}
