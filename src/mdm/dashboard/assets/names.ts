// Names of cluster objects for display: the object's name, else its id (PowerFlex allows
// nameless SDCs and volumes), and the names of the objects an alert or mapping points at.

import type { DashSummary } from "../dashboard_model.ts";

export function sdcLabel(snap: DashSummary, sdcId: string): string {
  const c = snap.sdcs.find((x) => x.id === sdcId);
  return c ? (c.name ?? c.ip) : sdcId;
}

export function volumeLabel(snap: DashSummary, volumeId: string): string {
  return snap.volumes.find((v) => v.id === volumeId)?.name ?? volumeId;
}

export function poolLabel(snap: DashSummary, poolId: string): string {
  const p = snap.storagePools.find((x) => x.id === poolId);
  if (!p) return poolId;
  const pd = snap.protectionDomains.find((d) => d.id === p.pdId);
  return pd ? `${pd.name}/${p.name}` : p.name;
}

/** "SDS sds2" for an alert's affected object {type, id}; unknown ids print as they are. */
export function objectLabel(snap: DashSummary, type: string | undefined, id: string | undefined): string {
  if (id === undefined || id === "") return type ?? "—";
  return `${TYPE_LABEL[type ?? ""] ?? type ?? "Object"} ${objectName(snap, type ?? "", id)}`;
}

const TYPE_LABEL: Record<string, string> = { Sds: "SDS", Sdc: "SDC", StoragePool: "Pool", ProtectionDomain: "PD", Device: "Device", Volume: "Volume", System: "System" };

/** The name of an object by PowerFlex type and id; the id when it is unknown. */
export function objectName(snap: DashSummary, type: string, id: string): string {
  const t = type.toLowerCase();
  const name =
    t === "sds"
      ? snap.sds.find((x) => x.id === id)?.name
      : t === "sdc"
        ? sdcLabel(snap, id)
        : t === "volume"
          ? volumeLabel(snap, id)
          : t === "storagepool"
            ? poolLabel(snap, id)
            : t === "device"
              ? (snap.devices.find((x) => x.id === id)?.name ?? snap.devices.find((x) => x.id === id)?.path)
              : t === "protectiondomain"
                ? snap.protectionDomains.find((x) => x.id === id)?.name
                : t === "system"
                  ? (snap.system.name ?? snap.system.id)
                  : undefined;
  return name ?? id;
}
