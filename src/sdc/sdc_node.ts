// The SDC's cache of volume maps and its conversation with the MDM: join, heartbeat, and a map
// refresh whenever the MDM's mapVersion moves (map/unmap/extend take effect without a restart)
// or an SDS refuses a request (stale epoch, SDS gone). Holds one VolumeIo per mapped volume and
// one pooled data-plane link per SDS address.
//
// Invariants: at most one map refresh runs at a time (concurrent callers share it); a volume
// that disappears from the maps is unexported at once and its NBD sessions are closed; links are
// keyed by address, so an SDS that moves gets a fresh link.

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

export interface ClosableLink extends SdsLink {
  close(): void;
}

export interface SdcNodeDeps {
  mdm: MdmEndpoint;
  sdcId: string;
  /** open a pipelined link pool to an SDS data-plane address */
  openLink(addr: SdsAddress): ClosableLink;
  /** called when a volume stops being exported (unmapped/removed) */
  onUnexport(name: string): void;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

export class SdcNode {
  private volumes = new Map<string, VolumeIo>(); // by export (volume) name
  private links = new Map<string, { key: string; link: ClosableLink }>(); // by sdsId
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
    for (const { link } of this.links.values()) link.close();
    this.links.clear();
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
        cur.setMap(vm);
        continue;
      }
      if (cur) this.unexport(vm.name);
      consola.info(`sdc: exporting volume ${vm.name} (${vm.volumeId}, ${vm.sizeBytes} bytes, ${vm.accessMode}, ${vm.extents.length} extents)`);
      this.volumes.set(
        vm.name,
        new VolumeIo(vm, {
          link: (sdsId) => this.links.get(sdsId)?.link,
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
    const wanted = new Map(sds.map((a) => [a.sdsId, a]));
    for (const [sdsId, cur] of this.links) {
      const a = wanted.get(sdsId);
      if (!a || `${a.host}:${a.port}` !== cur.key) {
        cur.link.close();
        this.links.delete(sdsId);
      }
    }
    for (const a of sds) {
      if (!this.links.has(a.sdsId)) this.links.set(a.sdsId, { key: `${a.host}:${a.port}`, link: this.deps.openLink(a) });
    }
  }
}
