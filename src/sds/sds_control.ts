// What an SDS's control port answers (src/proto/control_server.ts serves it): health reasons,
// the JSON status, and the scrape-time gauges next to the IO counters of sds_metrics.ts (lease,
// MDM connection, devices' capacity and state, extents by role, refusals, connections, the MDM
// term followed and the answers refused for a lower one: proto/term_metrics.ts).
//
// Invariants: it exists before the SDS joins (so /health can say "not joined"), gets the core and
// the MDM session once they exist (attach), and only reads them: nothing here changes the SDS;
// the gauges are computed at scrape time, never on the IO path.

import type { HealthReport, ControlSource } from "../proto/control_server.ts";
import type { ExtentRole } from "../proto/cluster_api.ts";
import type { MetricRegistry } from "../proto/metrics.ts";
import type { ProcessMetrics } from "../proto/process_metrics.ts";
import { registerTermMetrics, type TermView } from "../proto/term_metrics.ts";
import type { SdsCore } from "./sds_core.ts";

/** What the SDS's heartbeat loop (main.ts MdmSession) tells about the MDM. */
export interface MdmLinkState {
  /** heartbeats the MDM answered since start */
  readonly answeredBeats: number;
  /** heartbeats failed since the last answered one */
  readonly consecutiveFailures: number;
  readonly lastError: string | null;
}

export interface SdsControlInfo {
  name: string;
  version: string;
  mdmUrl: string;
  host: string;
  protectionDomainName: string;
  storagePoolName: string;
  faultSetName?: string;
}

const ROLES: readonly ExtentRole[] = ["primary", "secondary", "target", "away"];
const DEVICE_STATES = ["Normal", "Failed"] as const;

export class SdsControl implements ControlSource {
  readonly role = "sds";
  private core: SdsCore | null = null;
  private mdm: MdmLinkState | null = null;
  private terms: TermView | null = null;

  constructor(
    readonly registry: MetricRegistry,
    private readonly info: SdsControlInfo,
    private readonly proc: ProcessMetrics,
  ) {}

  /** The SDS joined and its core runs: serve its state from now on. */
  attach(core: SdsCore, mdm: MdmLinkState, terms: TermView): void {
    this.core = core;
    this.mdm = mdm;
    this.terms = terms;
    this.registerGauges(core, mdm);
    registerTermMetrics(this.registry, terms, { role: "sds", labelNames: ["sds_id"], labels: [core.sdsId] });
  }

  health(): HealthReport {
    const core = this.core;
    const mdm = this.mdm;
    if (core === null || mdm === null) return { reasons: [`not joined: waiting for the MDM at ${this.info.mdmUrl}`] };
    const reasons: string[] = [];
    const node = core.node;
    if (!node.serving) {
      const left = node.leaseRemainingMs;
      if (!Number.isFinite(left)) reasons.push(`no lease yet: ${mdm.answeredBeats === 0 ? "no heartbeat answered by the MDM" : "assignments not caught up with the MDM's map"}`);
      else if (left <= 0) reasons.push(`no lease: it expired ${Math.round(-left)} ms ago (extents are not served)`);
      else reasons.push("no lease: assignments not applied yet (extents are not served)");
    }
    if (mdm.consecutiveFailures > 0) reasons.push(`MDM ${this.info.mdmUrl} unreachable: ${mdm.consecutiveFailures} heartbeat(s) failed in a row (last: ${mdm.lastError ?? "?"})`);
    for (const s of core.store.slots) if (s.state === "Failed") reasons.push(`device ${s.deviceId} (${s.dev.path}) failed`);
    return { reasons };
  }

  status(): Record<string, unknown> {
    const core = this.core;
    const base = {
      role: "sds",
      name: this.info.name,
      version: this.info.version,
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      startTimeSeconds: this.proc.startTimeSeconds,
      protectionDomain: this.info.protectionDomainName,
      storagePool: this.info.storagePoolName,
      faultSet: this.info.faultSetName ?? null,
      mdm: { url: this.info.mdmUrl, ...(this.mdm === null ? {} : { answeredBeats: this.mdm.answeredBeats, consecutiveFailures: this.mdm.consecutiveFailures, lastError: this.mdm.lastError }) },
      health: this.health().reasons,
    };
    if (core === null) return { ...base, id: null, joined: false };
    const node = core.node;
    return {
      ...base,
      id: core.sdsId,
      joined: true,
      lease: { valid: node.serving, remainingMs: Math.round(node.leaseRemainingMs) },
      appliedMapVersion: node.appliedMapVersion,
      dataPlane: { host: this.info.host, port: core.port, connections: core.server.connectionCount },
      devices: core.store.slots.map((s) => ({ deviceId: s.deviceId, path: s.dev.path, state: s.state, capacityBytes: s.dev.sizeBytes, usedBytes: core.store.usedBytes(s) })),
      extents: countRoles(core),
      writeCache: writeCacheFigures(core),
      // copy-on-write copies off the loop (prepared by the extent gate) and on it; zeroings on it
      chunkPrep: { ...core.store.stats },
      copies: { active: node.copies.activeJobs, ...node.copies.stats, throttles: node.copies.throttleFigures() },
      refused: { notOwner: node.stats.refusedNotOwner, staleEpoch: node.stats.refusedStaleEpoch, noLease: node.stats.refusedNoLease, failedDevice: node.stats.refusedFailedDevice },
      mdmTerm: this.terms === null ? null : { term: this.terms.highest, refused: this.terms.refused, changes: this.terms.changes },
      eventLoopLagSeconds: this.proc.eventLoopLagSeconds,
    };
  }

  private registerGauges(core: SdsCore, mdm: MdmLinkState): void {
    const reg = this.registry;
    const id = core.sdsId;
    const info = this.info;
    reg.gauge({ name: "pf_sds_info", help: "This SDS: its id, name, protection domain, storage pool and fault set; value 1.", labelNames: ["sds_id", "name", "protection_domain", "storage_pool", "fault_set"] })
      .with(id, info.name, info.protectionDomainName, info.storagePoolName, info.faultSetName ?? "")
      .set(1);
    const lease = reg.gauge({ name: "pf_sds_lease_valid", help: "1 while the SDS holds a lease from the MDM and serves its extents, else 0.", labelNames: ["sds_id"] }).with(id);
    const leaseLeft = reg.gauge({ name: "pf_sds_lease_remaining_seconds", help: "Lease time left (negative once expired), in seconds.", labelNames: ["sds_id"] }).with(id);
    const connected = reg.gauge({ name: "pf_sds_mdm_connected", help: "1 while the last heartbeat was answered by the MDM, else 0.", labelNames: ["sds_id"] }).with(id);
    const failures = reg.gauge({ name: "pf_sds_heartbeat_failures", help: "Heartbeats failed since the last answered one.", labelNames: ["sds_id"] }).with(id);
    const mapVersion = reg.gauge({ name: "pf_sds_map_version", help: "mapVersion of the assignments the SDS applies.", labelNames: ["sds_id"] }).with(id);
    const extents = reg.gauge({ name: "pf_sds_extents", help: "Extent copies this SDS holds, by role.", labelNames: ["sds_id", "role"] });
    const roleSeries = ROLES.map((r) => extents.with(id, r));
    const conns = reg.gauge({ name: "pf_sds_dataplane_connections", help: "Open data-plane connections (SDCs and peer SDSs).", labelNames: ["sds_id"] }).with(id);
    const copyJobs = reg.gauge({ name: "pf_sds_copy_jobs_active", help: "Copies (rebuild, resync, move) this SDS drives that are not done.", labelNames: ["sds_id"] }).with(id);
    const refused = reg.counter({ name: "pf_sds_refused_total", help: "Extent requests refused before any device IO, by reason.", labelNames: ["sds_id", "reason"] });
    const refusedBy = {
      notOwner: refused.with(id, "not_owner"),
      staleEpoch: refused.with(id, "stale_epoch"),
      noLease: refused.with(id, "no_lease"),
      failedDevice: refused.with(id, "failed_device"),
    };
    const peerFailures = reg.counter({ name: "pf_sds_peer_failures_total", help: "Requests forwarded to a peer SDS that failed or were refused.", labelNames: ["sds_id"] }).with(id);
    const capacity = reg.gauge({ name: "pf_device_capacity_bytes", help: "Size of the device, in bytes.", labelNames: ["device_id", "path"] });
    const used = reg.gauge({ name: "pf_device_used_bytes", help: "Space allocated on the device (thin chunks and thick reservations), in bytes.", labelNames: ["device_id", "path"] });
    const state = reg.gauge({ name: "pf_device_state", help: "1 for the device's current state, 0 for the others.", labelNames: ["device_id", "path", "state"] });
    const slots = core.store.slots.map((s) => ({
      slot: s,
      capacity: capacity.with(s.deviceId, s.dev.path),
      used: used.with(s.deviceId, s.dev.path),
      states: DEVICE_STATES.map((st) => ({ st, g: state.with(s.deviceId, s.dev.path, st) })),
    }));
    reg.onCollect(() => {
      const node = core.node;
      lease.value = node.serving ? 1 : 0;
      leaseLeft.value = Number.isFinite(node.leaseRemainingMs) ? node.leaseRemainingMs / 1000 : -1;
      connected.value = mdm.consecutiveFailures === 0 ? 1 : 0;
      failures.value = mdm.consecutiveFailures;
      mapVersion.value = node.appliedMapVersion;
      const counts = countRoles(core);
      ROLES.forEach((r, i) => (roleSeries[i]!.value = counts[r]));
      conns.value = core.server.connectionCount;
      copyJobs.value = node.copies.activeJobs;
      refusedBy.notOwner.value = node.stats.refusedNotOwner;
      refusedBy.staleEpoch.value = node.stats.refusedStaleEpoch;
      refusedBy.noLease.value = node.stats.refusedNoLease;
      refusedBy.failedDevice.value = node.stats.refusedFailedDevice;
      peerFailures.value = node.stats.peerFailures;
      for (const d of slots) {
        d.capacity.value = d.slot.dev.sizeBytes;
        d.used.value = core.store.usedBytes(d.slot);
        for (const { st, g } of d.states) g.value = d.slot.state === st ? 1 : 0;
      }
    });
  }
}

function countRoles(core: SdsCore): Record<ExtentRole, number> {
  const out: Record<ExtentRole, number> = { primary: 0, secondary: 0, target: 0, away: 0 };
  for (const e of core.store.extents()) out[e.role]++;
  return out;
}

/** Extents served writeThrough, and the group commits of devices and metadata (syncs, waiters, largest batch). */
function writeCacheFigures(core: SdsCore): Record<string, unknown> {
  let extents = 0;
  let writeThroughExtents = 0;
  for (const e of core.store.extents()) {
    extents++;
    if (e.writeThrough) writeThroughExtents++;
  }
  return {
    extents,
    writeThroughExtents,
    groupCommit: {
      devices: core.store.slots.map((s) => ({ deviceId: s.deviceId, ...s.commit.stats })),
      metadata: { ...core.store.metaCommit.stats },
    },
  };
}
