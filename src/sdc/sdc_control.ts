// What an SDC's control port answers (src/proto/control_server.ts serves it): health reasons,
// the JSON status, and the scrape-time gauges next to the IO counters of sdc_metrics.ts (NBD
// connections, requests in flight, mapped volumes, MDM connection, map version, the MDM term it
// follows: proto/term_metrics.ts).
//
// Invariants: it exists before the SDC joins (so /health can say "not joined"), gets the node and
// the NBD server once they run (attach), and only reads them; gauges are computed at scrape
// time, never on the IO path.

import type { ControlSource, HealthReport } from "../proto/control_server.ts";
import { registerTermMetrics, type TermView } from "../proto/term_metrics.ts";
import type { MetricRegistry } from "../proto/metrics.ts";
import type { ProcessMetrics } from "../proto/process_metrics.ts";
import type { NbdServer } from "./nbd_server.ts";
import type { SdcNode } from "./sdc_node.ts";

export interface SdcControlInfo {
  name: string | null;
  guid: string;
  version: string;
  mdmUrl: string;
  nbdHost: string;
}

interface Running {
  sdcId: string;
  node: SdcNode;
  nbd: NbdServer;
  terms: TermView;
}

export class SdcControl implements ControlSource {
  readonly role = "sdc";
  private running: Running | null = null;

  constructor(
    readonly registry: MetricRegistry,
    private readonly info: SdcControlInfo,
    private readonly proc: ProcessMetrics,
  ) {}

  attach(sdcId: string, node: SdcNode, nbd: NbdServer, terms: TermView): void {
    this.running = { sdcId, node, nbd, terms };
    this.registerGauges(this.running);
    registerTermMetrics(this.registry, terms, { role: "sdc", labelNames: ["sdc_id"], labels: [sdcId] });
  }

  health(): HealthReport {
    const r = this.running;
    if (r === null) return { reasons: [`not joined: waiting for the MDM at ${this.info.mdmUrl}`] };
    const reasons: string[] = [];
    const mdm = r.node.mdmState;
    if (mdm.consecutiveFailures > 0) reasons.push(`MDM ${this.info.mdmUrl} unreachable: ${mdm.consecutiveFailures} heartbeat(s) failed in a row (last: ${mdm.lastError ?? "?"}); IO continues on cached maps`);
    if (r.node.mapsStale) reasons.push(`maps stale: applied map version ${r.node.mapVersion}, the MDM announced another; fetching it failed or is under way`);
    return { reasons };
  }

  status(): Record<string, unknown> {
    const r = this.running;
    const base = {
      role: "sdc",
      name: this.info.name,
      guid: this.info.guid,
      version: this.info.version,
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      startTimeSeconds: this.proc.startTimeSeconds,
      mdm: { url: this.info.mdmUrl, ...(r === null ? {} : r.node.mdmState) },
      health: this.health().reasons,
    };
    if (r === null) return { ...base, id: null, joined: false };
    const st = r.nbd.stats();
    return {
      ...base,
      id: r.sdcId,
      joined: true,
      mapVersion: r.node.mapVersion,
      mapsStale: r.node.mapsStale,
      mdmTerm: { term: r.terms.highest, refused: r.terms.refused, changes: r.terms.changes },
      nbd: { host: this.info.nbdHost, port: r.nbd.port, connections: st.connections, inflightIos: st.inflightIos },
      volumes: r.node.list().map((v) => ({
        name: v.name,
        volumeId: v.volumeId,
        sizeBytes: v.sizeBytes,
        accessMode: v.readOnly ? "ReadOnly" : "ReadWrite",
        nbdConnections: st.connectionsByExport.get(v.name) ?? 0,
      })),
      eventLoopLagSeconds: this.proc.eventLoopLagSeconds,
    };
  }

  private registerGauges(r: Running): void {
    const reg = this.registry;
    const id = r.sdcId;
    reg.gauge({ name: "pf_sdc_info", help: "This SDC: its id, name and GUID; value 1.", labelNames: ["sdc_id", "name", "guid"] }).with(id, this.info.name ?? "", this.info.guid).set(1);
    const g = (name: string, help: string) => reg.gauge({ name, help, labelNames: ["sdc_id"] }).with(id);
    const conns = g("pf_nbd_connections", "Open NBD client connections.");
    const inflight = g("pf_sdc_inflight_ios", "NBD requests started on a volume and not yet answered.");
    const mapped = g("pf_sdc_mapped_volumes", "Volumes mapped to this SDC and exported over NBD.");
    const mapVersion = g("pf_sdc_map_version", "mapVersion of the volume maps the SDC applies.");
    const stale = g("pf_sdc_maps_stale", "1 while the MDM announced a map version the SDC has not applied, else 0.");
    const connected = g("pf_sdc_mdm_connected", "1 while the last heartbeat was answered by the MDM, else 0.");
    const failures = g("pf_sdc_heartbeat_failures", "Heartbeats failed since the last answered one.");
    const labels = ["volume", "volume_id"] as const;
    const size = reg.gauge({ name: "pf_volume_size_bytes", help: "Size of the mapped volume, in bytes.", labelNames: labels });
    const volConns = reg.gauge({ name: "pf_volume_nbd_connections", help: "NBD connections serving the volume.", labelNames: labels });
    const readOnly = reg.gauge({ name: "pf_volume_read_only", help: "1 when the volume is mapped read-only to this SDC, else 0.", labelNames: labels });
    reg.onCollect(() => {
      const st = r.nbd.stats();
      const mdm = r.node.mdmState;
      conns.value = st.connections;
      inflight.value = st.inflightIos;
      mapVersion.value = r.node.mapVersion;
      stale.value = r.node.mapsStale ? 1 : 0;
      connected.value = mdm.consecutiveFailures === 0 ? 1 : 0;
      failures.value = mdm.consecutiveFailures;
      const vols = r.node.list();
      mapped.value = vols.length;
      // the mapped set changes with the maps: rebuilt at each scrape (allocates, off the IO path)
      size.clear();
      volConns.clear();
      readOnly.clear();
      for (const v of vols) {
        size.with(v.name, v.volumeId).set(v.sizeBytes);
        volConns.with(v.name, v.volumeId).set(st.connectionsByExport.get(v.name) ?? 0);
        readOnly.with(v.name, v.volumeId).set(v.readOnly ? 1 : 0);
      }
    });
  }
}
