// The SDC's cache of volume maps and its conversation with the MDM: join, heartbeat, and a map
// refresh whenever the MDM's mapVersion moves (map/unmap/extend take effect without a restart)
// or an SDS refuses a request (stale epoch, SDS gone). Holds one VolumeIo per mapped volume and
// one pooled data-plane link per SDS (re-opened when its address changes).
//
// Invariants: at most one map refresh runs at a time (concurrent callers share it); a volume
// that disappears from the maps is unexported at once and its NBD sessions are closed.

import { consola } from "consola";
import {
  ClusterPaths,
  HeartbeatResponse,
  SdcMapsResponse,
  type SdcMapsResponse as SdcMaps,
  type SdsAddress,
} from "../proto/cluster_api.ts";
import { clusterRequest, type MdmEndpoint } from "../proto/mdm_http.ts";
import { VolumeIo, type SdsLink } from "./volume_io.ts";

/** Links to SDSs by id (a DataPlanePool from src/proto/dataplane_client.ts in production). */
export interface SdsLinks {
  setAddress(sdsId: string, host: string, port: number): void;
  retain(sdsIds: ReadonlySet<string>): void;
  link(sdsId: string): SdsLink | undefined;
  close(): void;
}

export interface SdcNodeDeps {
  mdm: MdmEndpoint;
  sdcId: string;
  links: SdsLinks;
  /** called when a volume stops being exported (unmapped/removed) */
  onUnexport(name: string): void;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

export class SdcNode {
  private volumes = new Map<string, VolumeIo>(); // by export (volume) name
  private appliedMapVersion = 0;
  private refreshing: Promise<void> | null = null;

  constructor(private readonly deps: SdcNodeDeps) {}

  get mapVersion(): number {
    return this.appliedMapVersion;
  }

  /** ExportRegistry for the NBD server. */
  get(name: string): VolumeIo | undefined {
    return this.volumes.get(name);
  }
  list(): VolumeIo[] {
    return [...this.volumes.values()];
  }

  /** Fetch and apply maps; concurrent calls share one MDM request. */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = this.fetchAndApply().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** One heartbeat; refreshes maps when the MDM's mapVersion moved. */
  async heartbeat(): Promise<void> {
    const r = await clusterRequest(this.deps.mdm, {
      method: "POST",
      path: ClusterPaths.sdcHeartbeat(this.deps.sdcId),
      body: { appliedMapVersion: this.appliedMapVersion },
      schema: HeartbeatResponse,
    });
    if (r.mapVersion !== this.appliedMapVersion) await this.refresh();
  }

  close(): void {
    this.deps.links.close();
  }

  private async fetchAndApply(): Promise<void> {
    const maps = await clusterRequest(this.deps.mdm, { method: "GET", path: ClusterPaths.sdcMaps(this.deps.sdcId), schema: SdcMapsResponse });
    this.apply(maps);
  }

  apply(maps: SdcMaps): void {
    this.applyLinks(maps.sds);
    const seen = new Set<string>();
    for (const vm of maps.volumes) {
      seen.add(vm.name);
      const cur = this.volumes.get(vm.name);
      if (cur && cur.volumeId === vm.volumeId) {
        if (cur.sizeBytes !== vm.sizeBytes || cur.readOnly !== (vm.accessMode === "ReadOnly")) {
          consola.info(`sdc: volume ${vm.name} now ${vm.sizeBytes} bytes, ${vm.accessMode}`);
        }
        if (cur.limits.iops !== vm.limitIops || cur.limits.bytesPerSec !== vm.limitBwKbps * 1024) {
          consola.info(`sdc: volume ${vm.name} limits now ${vm.limitIops || "unlimited"} IOPS, ${vm.limitBwKbps || "unlimited"} KB/s`);
        }
        cur.setMap(vm);
        continue;
      }
      if (cur) this.unexport(vm.name);
      consola.info(`sdc: exporting volume ${vm.name} (${vm.volumeId}, ${vm.sizeBytes} bytes, ${vm.accessMode}, ${vm.extents.length} extents)`);
      this.volumes.set(
        vm.name,
        new VolumeIo(vm, {
          link: (sdsId) => this.deps.links.link(sdsId),
          refreshMaps: () => this.refresh(),
          sleep: this.deps.sleep,
          nowMs: this.deps.nowMs,
        }),
      );
    }
    for (const name of [...this.volumes.keys()]) if (!seen.has(name)) this.unexport(name);
    this.appliedMapVersion = maps.mapVersion;
  }

  private unexport(name: string): void {
    consola.info(`sdc: volume ${name} no longer mapped here; closing its NBD sessions`);
    this.volumes.delete(name);
    this.deps.onUnexport(name);
  }

  private applyLinks(sds: SdsAddress[]): void {
    for (const a of sds) this.deps.links.setAddress(a.sdsId, a.host, a.port);
    this.deps.links.retain(new Set(sds.map((a) => a.sdsId)));
  }
}
