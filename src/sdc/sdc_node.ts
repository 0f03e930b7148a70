// The SDC's cache of volume maps and its conversation with the MDM: join, heartbeat, and a map
// refresh whenever the MDM's mapVersion moves (map/unmap/extend take effect without a restart)
// or an SDS refuses a request (stale epoch, SDS gone). Holds one VolumeIo per mapped volume and
// one pooled data-plane link per SDS (re-opened when its address changes).
//
// A map watch (proto/map_watch.ts, started by watchMaps) fetches the maps as soon as the MDM has
// a change for this SDC; heartbeats remain the fallback.
//
// Invariants: at most one map refresh runs at a time (callers during one share the next, which
// asks the MDM after they called: proto/map_watch.ts FreshRun); a volume
// that disappears from the maps is unexported at once and its NBD sessions are closed; the
// revoked NBD client certificates of every map replace the previous list (the NBD server closes
// the sessions of newly revoked ones). Every
// heartbeat carries the SDC's cumulative IO counters (deps.ioReport); the outcome of the last
// heartbeats and map fetches is kept for /health (mdmState, mapsStale).

import type { TlsDrift } from "../proto/dataplane_tls.ts";
import { consola } from "consola";
import { BeatFetch } from "../proto/beat_fetch.ts";
import { Limits } from "../proto/limits.ts";
import { FreshRun, MapWatch } from "../proto/map_watch.ts";
import { isMapsDelta, mergeMaps } from "../proto/maps_delta.ts";
import { assert } from "../proto/errors.ts";
import {
  ClusterPaths,
  HeartbeatResponse,
  SdcMapsResponse,
  type SdcMapsResponse as SdcMaps,
  type SdsAddress,
} from "../proto/cluster_api.ts";
import type { SdcIoReport } from "../proto/io_report.ts";
import { keysFromHex, type NodeKeyring } from "../proto/dataplane_keys.ts";
import type { SdcGrants } from "./sdc_grants.ts";
import { clusterRequest, type MdmEndpoint } from "../proto/mdm_http.ts";
import type { ExportMeter } from "./nbd_export.ts";
import type { NbdRevocations } from "./nbd_revocations.ts";
import { VolumeIo, type SdsLink } from "./volume_io.ts";

/** Links to SDSs by id (a DataPlanePool from src/proto/dataplane_client.ts in production). */
export interface SdsLinks {
  setAddress(sdsId: string, host: string, port: number): void;
  retain(sdsIds: ReadonlySet<string>): void;
  link(sdsId: string): SdsLink | undefined;
  /** a volume's grant changed: present it again on every connection */
  forgetGrant?(volumeLo: number): void;
  close(): void;
}

export interface SdcNodeDeps {
  mdm: MdmEndpoint;
  sdcId: string;
  /** this SDC's data-plane node keys (the links' credentials); renewed from every map */
  keys?: NodeKeyring;
  /** the mapping grants the links present (sdc_grants.ts); renewed from every map */
  grants?: SdcGrants;
  /** wall clock (grant renewal); default Date.now */
  wallNowMs?(): number;
  links: SdsLinks;
  /** called when a volume stops being exported (unmapped/removed) */
  onUnexport(name: string): void;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
  /** the IO counters of a volume being exported (absent: not metered) */
  meterFor?(volumeId: string, name: string): ExportMeter;
  /** cumulative IO counters for the heartbeat (absent: the heartbeat carries none) */
  ioReport?(): SdcIoReport;
  /** this SDC's data-plane TLS mode, compared with what every map says (dataplane_tls.ts) */
  tlsDrift?: TlsDrift;
  /** the heartbeat interval (a beat waits at most this long for the map fetch it started); default Limits.heartbeatIntervalMs */
  heartbeatMs?: number;
  /** the NBD client certificates the MDM revoked, replaced by every map (nbd_revocations.ts) */
  nbdRevocations?: NbdRevocations;
}


export class SdcNode {
  private volumes = new Map<string, VolumeIo>(); // by export (volume) name
  private appliedMapVersion = 0;
  /** tag of the SDS address list applied (sent with each fetch: the MDM omits an unchanged list) */
  private addressesTag: string | null = null;
  private readonly fetches = new FreshRun(() => this.fetchAndApply());
  private watch: MapWatch | null = null;
  /** mapVersion the MDM last announced (heartbeat answer or map fetch) */
  private announcedMapVersion = 0;
  private heartbeatFailures = 0;
  private answeredBeats = 0;
  private lastError: string | null = null;
  /** a fetch the MDM shed waits for its turn (beats go on without waiting for it) */
  /** the map fetch as the beats see it (shed, slow: beats go on without waiting for it) */
  private readonly fetchWait = new BeatFetch();
  /** the whole map applied last and the MDM log it is current with: a fetch asks a delta since it (proto/maps_delta.ts) */
  private held: SdcMaps | null = null;

  constructor(private readonly deps: SdcNodeDeps) {}

  get mapVersion(): number {
    return this.appliedMapVersion;
  }

  /** How the conversation with the MDM goes (for /health and /status). */
  get mdmState(): { answeredBeats: number; consecutiveFailures: number; lastError: string | null } {
    return { answeredBeats: this.answeredBeats, consecutiveFailures: this.heartbeatFailures, lastError: this.lastError };
  }

  /** The MDM announced another map than the one applied (its fetch failed or is under way). */
  get mapsStale(): boolean {
    return this.announcedMapVersion !== this.appliedMapVersion;
  }

  /** ExportRegistry for the NBD server. */
  get(name: string): VolumeIo | undefined {
    return this.volumes.get(name);
  }
  list(): VolumeIo[] {
    return [...this.volumes.values()];
  }

  /** Fetch and apply maps; calls while a fetch runs share the one after it (FreshRun). */
  refresh(): Promise<void> {
    return this.fetches.run();
  }

  /** Fetch the maps as soon as the MDM has a change for this SDC (until close). */
  watchMaps(): void {
    this.watch ??= new MapWatch({ mdm: this.deps.mdm, kind: "sdc", nodeId: this.deps.sdcId, applied: () => this.appliedMapVersion, onChange: () => this.refresh() });
    this.watch.start();
  }

  /** One heartbeat; refreshes maps when the MDM's mapVersion moved. */
  async heartbeat(): Promise<void> {
    let r: HeartbeatResponse;
    try {
      r = await clusterRequest(this.deps.mdm, {
        method: "POST",
        path: ClusterPaths.sdcHeartbeat(this.deps.sdcId),
        body: { appliedMapVersion: this.appliedMapVersion, io: this.deps.ioReport?.() },
        schema: HeartbeatResponse,
      });
    } catch (e) {
      this.heartbeatFailures++;
      this.lastError = (e as Error).message;
      throw e;
    }
    this.heartbeatFailures = 0;
    this.answeredBeats++;
    this.announcedMapVersion = r.mapVersion;
    const renew = (this.deps.grants?.renewDueAtMs ?? Infinity) <= (this.deps.wallNowMs ?? Date.now)();
    if (r.mapVersion === this.appliedMapVersion && !renew) return;
    // a fetch the MDM shed waits for its turn (fetch_shedding.ts): this beat was heard and the
    // next ones must be too (an SDC not heard within the timeout is declared down), so do not
    // wait for it here, and start no second one meanwhile (the waiting one asks after its turn)
    if (this.fetchWait.waiting) return;
    const refresh = this.refresh();
    // nor wait past one interval for a slow answer (an MDM that is behind): the next beat goes on time
    const first = await this.fetchWait.await(refresh, this.deps.heartbeatMs ?? Limits.heartbeatIntervalMs);
    if (first !== "done") refresh.catch((e: unknown) => consola.warn(`sdc ${this.deps.sdcId}: map fetch failed (${first === "shed" ? "after the MDM shed it" : "after the beat went on without it"}): ${(e as Error).message}`));
  }

  /** A map fetch the MDM shed is waiting for its turn (the heartbeats go on meanwhile). */
  get waitingForTurn(): boolean {
    return this.fetchWait.waiting;
  }

  close(): void {
    this.watch?.stop();
    this.deps.links.close();
  }

  private async fetchAndApply(): Promise<void> {
    // an MDM that is behind sheds fetches (429, "MDM busy"): wait the time it names, ask again
    // (its turn may be many seconds away at a cold start: the beats go on meanwhile, see heartbeat())
    // a delta since the whole map held, unless grants are due for renewal: a delta brings fresh
    // grants only for the volumes it lists, so the renewal asks the whole map (every grant anew)
    const held = this.held;
    const renew = (this.deps.grants?.renewDueAtMs ?? Infinity) <= (this.deps.wallNowMs ?? Date.now)();
    const since = held !== null && held.mapLog !== undefined && !renew ? { since: held.mapVersion, log: held.mapLog } : null;
    const get = (delta: typeof since) =>
      this.fetchWait.run(() => clusterRequest(this.deps.mdm, { method: "GET", path: ClusterPaths.sdcMaps(this.deps.sdcId, this.addressesTag, delta), schema: SdcMapsResponse }));
    let maps: SdcMaps = await get(since);
    if (isMapsDelta(maps)) {
      const merged = held === null ? null : mergeMaps(held, maps);
      if (merged === null) {
        consola.warn(`sdc ${this.deps.sdcId}: the MDM's map delta since version ${maps.since} does not fit the map held (version ${held?.mapVersion}); asking the whole map`);
        maps = await get(null);
      } else {
        maps = merged;
      }
    }
    this.apply(maps);
  }

  /** Apply a whole map (a delta is merged first: fetchAndApply). */
  apply(maps: SdcMaps): void {
    assert(!isMapsDelta(maps), "a map delta is merged before it is applied");
    this.deps.tlsDrift?.check(maps.dataPlaneTls);
    if (maps.nbdRevoked !== undefined) this.deps.nbdRevocations?.update(maps.nbdRevoked);
    this.deps.keys?.set(keysFromHex(maps.nodeKeys));
    for (const lo of this.deps.grants?.update(maps.volumes) ?? []) this.deps.links.forgetGrant?.(lo);
    // an answer without the address list (this SDC holds its current tag) keeps the links
    if (maps.sds !== undefined) {
      this.applyLinks(maps.sds);
      this.addressesTag = maps.sdsTag ?? null;
    }
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
      const io = new VolumeIo(vm, {
        link: (sdsId) => this.deps.links.link(sdsId),
        refreshMaps: () => this.refresh(),
        sleep: this.deps.sleep,
        nowMs: this.deps.nowMs,
      });
      io.meter = this.deps.meterFor?.(vm.volumeId, vm.name) ?? null;
      this.volumes.set(vm.name, io);
    }
    for (const name of [...this.volumes.keys()]) if (!seen.has(name)) this.unexport(name);
    this.appliedMapVersion = maps.mapVersion;
    this.held = maps;
    if (this.announcedMapVersion < maps.mapVersion) this.announcedMapVersion = maps.mapVersion;
  }

  private unexport(name: string): void {
    consola.info(`sdc: volume ${name} no longer mapped here; closing its NBD sessions`);
    this.volumes.get(name)?.detach();
    this.volumes.delete(name);
    this.deps.onUnexport(name);
  }

  private applyLinks(sds: SdsAddress[]): void {
    for (const a of sds) this.deps.links.setAddress(a.sdsId, a.host, a.port);
    this.deps.links.retain(new Set(sds.map((a) => a.sdsId)));
  }
}
