// The MDM's GET /metrics (Prometheus text 0.0.4): cluster-wide series built at scrape time from
// the IO totals of the heartbeats (io_accounting.ts) and the MDM's own state. Families:
// - IO counters since this MDM started, per volume (pf_volume_{read,write,trim}_{ops,bytes}_total,
//   pf_volume_flush_ops_total, pf_volume_*_latency_seconds summaries {volume_id,volume}), per
//   SDC (pf_sdc_io_*{sdc_id,sdc,op}), per SDS (pf_sds_io_*{sds_id,sds,role,op},
//   pf_sds_copy_*{sds_id,sds,kind,op}) and per device (pf_device_io_*{device_id,sds_id,op},
//   pf_device_sync_*, pf_device_errors_total);
// - state and capacity gauges: pf_sds_up, pf_sdc_up, pf_device_state, capacity per pool, SDS
//   and device, rebuild/rebalance pending/active bytes, rate and progress per pool;
// - pf_alerts_active{severity,alert_type}, pf_health_status, pf_health_check{name};
// - pf_mdm_rest_requests_total / _request_duration_seconds by route pattern, the webhook's
//   counters, process metrics, pf_build_info, pf_mdm_scrape_duration_seconds.
// The names of the per-object IO families are the ones the SDC and SDS export themselves (so
// one dashboard query fits both); the MDM's latency families are summaries (sum and count of
// the heartbeat's latency sums), where the roles export histograms. Filter by job when both are
// scraped. Invariants: labels are ids, names and bounded enums, never raw paths or extents; one
// pass over each object table per scrape; counters only grow while this MDM runs (an MDM
// restart is a counter reset, as Prometheus expects).

import { renderText } from "../../proto/metrics_text.ts";
import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import { activeAlertCounts, healthStatus } from "./alerts.ts";
import { ALERT_TYPE_NAMES } from "./alert_rules.ts";
import {
  BYTES,
  client,
  device,
  DEVICE_ERRORS,
  LAT_US,
  OPS,
  sds,
  type ClientKind,
  type DeviceKind,
  type SdsKind,
} from "./io_channels.ts";
import { labels, TextWriter, withLabel } from "./metrics_writer.ts";
import { OVERCOMMIT_LIMIT, poolUsages } from "./pool_usage.ts";
import { REST_LATENCY_BUCKETS_S } from "./rest_stats.ts";
import { scrapedRecoveryStatus } from "./recovery_pacing.ts";

/** µs -> s by division: the shortest decimal form (123456 / 1e6 prints 0.123456; x 1e-6 prints 0.12345599999999999) */
const US_PER_S = 1e6;

interface Obj {
  labels: string;
  totals: Float64Array | undefined;
}

/** Counter, bytes and latency-summary families of one IO kind over many objects (the hot loop of a big scrape: channel indexes computed once). */
function ioFamilies(w: TextWriter, objs: readonly Obj[], spec: { ops: string; bytes?: string; latency: string; what: string; channelOf: (field: number) => number }): void {
  const chOps = spec.channelOf(OPS);
  const chBytes = spec.channelOf(BYTES);
  const chLat = spec.channelOf(LAT_US);
  w.family(spec.ops, "counter", `${spec.what}: operations completed (heartbeat totals since this MDM started).`);
  for (const o of objs) w.sample(spec.ops, o.labels, o.totals?.[chOps] ?? 0);
  if (spec.bytes !== undefined) {
    w.family(spec.bytes, "counter", `${spec.what}: bytes of the completed operations.`);
    for (const o of objs) w.sample(spec.bytes, o.labels, o.totals?.[chBytes] ?? 0);
  }
  w.family(spec.latency, "summary", `${spec.what}: latency sum and count, in seconds (mean = rate(_sum) / rate(_count)).`);
  const sum = `${spec.latency}_sum`;
  const count = `${spec.latency}_count`;
  for (const o of objs) {
    w.sample(sum, o.labels, (o.totals?.[chLat] ?? 0) / US_PER_S);
    w.sample(count, o.labels, o.totals?.[chOps] ?? 0);
  }
}

/** One family whose series are (object x a fixed list of label values), e.g. op="read"|"write". */
function multiFamily(
  w: TextWriter,
  name: string,
  type: "counter" | "gauge" | "summary",
  help: string,
  objs: readonly Obj[],
  label: string,
  variants: readonly [value: string, pick: (t: Float64Array | undefined) => number, count?: (t: Float64Array | undefined) => number][],
): void {
  w.family(name, type, help);
  for (const o of objs) {
    for (const [value, pick, count] of variants) {
      const l = withLabel(o.labels, label, value);
      if (type === "summary") {
        w.sample(`${name}_sum`, l, pick(o.totals));
        w.sample(`${name}_count`, l, count ? count(o.totals) : 0);
      } else w.sample(name, l, pick(o.totals));
    }
  }
}

// ---- volumes ----

function writeVolumes(ctx: MdmContext, w: TextWriter): void {
  const q = ctx.store.sqlite;
  const rows = q.query<{ id: string; name: string | null; pool_id: string; size_bytes: number }, []>("SELECT id, name, pool_id, size_bytes FROM volume ORDER BY id").all();
  const mapped = new Map(q.query<{ volume_id: string; n: number }, []>("SELECT volume_id, count(*) AS n FROM volume_mapping GROUP BY volume_id").all().map((r) => [r.volume_id, r.n]));
  const totals = ctx.observe.io.volumeTotals;
  const cache = ctx.observe.volumeLabelCache;
  const objs: Obj[] = rows.map((r) => {
    let l = cache.get(r.id);
    if (l === undefined || l.name !== r.name) {
      l = { name: r.name, text: labels(["volume_id", "volume"], [r.id, r.name ?? ""]) };
      cache.set(r.id, l);
    }
    return { labels: l.text, totals: totals.get(r.id) };
  });
  if (cache.size > rows.length) {
    const live = new Set(rows.map((r) => r.id));
    for (const id of cache.keys()) if (!live.has(id)) cache.delete(id);
  }
  for (const k of ["read", "write", "trim"] as const satisfies readonly ClientKind[]) {
    ioFamilies(w, objs, {
      ops: `pf_volume_${k}_ops_total`,
      bytes: `pf_volume_${k}_bytes_total`,
      latency: `pf_volume_${k}_latency_seconds`,
      what: `NBD ${k === "trim" ? "TRIM and WRITE_ZEROES" : k.toUpperCase()} requests on the volume, summed over the SDCs that map it`,
      channelOf: (f) => client(k, f),
    });
  }
  w.family("pf_volume_flush_ops_total", "counter", "NBD FLUSH requests on the volume, summed over the SDCs that map it (heartbeat totals since this MDM started).");
  for (const o of objs) w.sample("pf_volume_flush_ops_total", o.labels, o.totals?.[client("flush", OPS)] ?? 0);
  w.family("pf_volume_size_bytes", "gauge", "Size of the volume (net, one copy), in bytes.");
  rows.forEach((r, i) => w.sample("pf_volume_size_bytes", objs[i]!.labels, r.size_bytes));
  w.family("pf_volume_mapped_sdcs", "gauge", "SDCs the volume is mapped to.");
  rows.forEach((r, i) => w.sample("pf_volume_mapped_sdcs", objs[i]!.labels, mapped.get(r.id) ?? 0));
}

// ---- SDCs ----

function writeSdcs(ctx: MdmContext, w: TextWriter): void {
  const q = ctx.store.sqlite;
  const rows = q.query<{ id: string; name: string | null }, []>("SELECT id, name FROM sdc ORDER BY id").all();
  const mapped = new Map(q.query<{ sdc_id: string; n: number }, []>("SELECT sdc_id, count(*) AS n FROM volume_mapping GROUP BY sdc_id").all().map((r) => [r.sdc_id, r.n]));
  const io = ctx.observe.io;
  const objs: Obj[] = rows.map((r) => ({ labels: labels(["sdc_id", "sdc"], [r.id, r.name ?? ""]), totals: io.sdcTotals.get(r.id) }));
  const kinds: ClientKind[] = ["read", "write", "trim", "flush"];
  const what = "NBD requests on every volume of the SDC (op=trim includes WRITE_ZEROES), heartbeat totals since this MDM started";
  multiFamily(w, "pf_sdc_io_ops_total", "counter", `${what}: operations.`, objs, "op", kinds.map((k) => [k, (t) => t?.[client(k, OPS)] ?? 0]));
  multiFamily(w, "pf_sdc_io_bytes_total", "counter", `${what}: bytes.`, objs, "op", kinds.slice(0, 3).map((k) => [k, (t) => t?.[client(k, BYTES)] ?? 0]));
  multiFamily(
    w,
    "pf_sdc_io_latency_seconds",
    "summary",
    `${what}: latency sum and count, in seconds.`,
    objs,
    "op",
    kinds.map((k) => [k, (t) => (t?.[client(k, LAT_US)] ?? 0) / US_PER_S, (t) => t?.[client(k, OPS)] ?? 0]),
  );
  w.family("pf_sdc_up", "gauge", "Whether the MDM sees the SDC as connected (1) or not (0).");
  for (const [i, r] of rows.entries()) w.sample("pf_sdc_up", objs[i]!.labels, ctx.health.sdcState(r.id) === "Connected" ? 1 : 0);
  w.family("pf_sdc_mapped_volumes", "gauge", "Volumes mapped to the SDC.");
  for (const [i, r] of rows.entries()) w.sample("pf_sdc_mapped_volumes", objs[i]!.labels, mapped.get(r.id) ?? 0);
  w.family("pf_nbd_connections", "gauge", "NBD client connections the SDC reported in its last heartbeat.");
  for (const [i, r] of rows.entries()) w.sample("pf_nbd_connections", objs[i]!.labels, io.sdcGauges.get(r.id)?.nbdConnections ?? 0);
  w.family("pf_sdc_inflight_ios", "gauge", "NBD requests in flight the SDC reported in its last heartbeat.");
  for (const [i, r] of rows.entries()) w.sample("pf_sdc_inflight_ios", objs[i]!.labels, io.sdcGauges.get(r.id)?.inflightIos ?? 0);
}

// ---- SDSs and devices ----

function writeSdss(ctx: MdmContext, w: TextWriter): void {
  const q = ctx.store.sqlite;
  const rows = q.query<{ id: string; name: string; state: string }, []>("SELECT id, name, state FROM sds ORDER BY id").all();
  const cap = new Map(
    q.query<{ sds_id: string; cap: number; used: number }, []>("SELECT sds_id, sum(capacity_bytes) AS cap, sum(used_bytes) AS used FROM device GROUP BY sds_id").all().map((r) => [r.sds_id, r]),
  );
  const io = ctx.observe.io;
  const objs: Obj[] = rows.map((r) => ({ labels: labels(["sds_id", "sds"], [r.id, r.name]), totals: io.sdsTotals.get(r.id) }));
  const served: [string, string, SdsKind][] = [
    ["primary", "read", "primaryRead"],
    ["primary", "write", "primaryWrite"],
    ["primary", "trim", "primaryTrim"],
    ["secondary", "write", "secondaryWrite"],
  ];
  const what = "Data-plane requests the SDS served (role=primary from SDCs, role=secondary forwarded by a primary), heartbeat totals since this MDM started";
  const both = (o: Obj, role: string) => withLabel(o.labels, "role", role);
  for (const [name, field, type] of [
    ["pf_sds_io_ops_total", OPS, "counter"],
    ["pf_sds_io_bytes_total", BYTES, "counter"],
  ] as const) {
    w.family(name, type, `${what}: ${field === OPS ? "operations" : "bytes"}.`);
    for (const o of objs) for (const [role, op, k] of served) w.sample(name, withLabel(both(o, role), "op", op), o.totals?.[sds(k, field)] ?? 0);
  }
  w.family("pf_sds_io_latency_seconds", "summary", `${what}: latency sum and count, in seconds.`);
  for (const o of objs) {
    for (const [role, op, k] of served) {
      const l = withLabel(both(o, role), "op", op);
      w.sample("pf_sds_io_latency_seconds_sum", l, (o.totals?.[sds(k, LAT_US)] ?? 0) / US_PER_S);
      w.sample("pf_sds_io_latency_seconds_count", l, o.totals?.[sds(k, OPS)] ?? 0);
    }
  }
  const copies: [string, string, SdsKind][] = [
    ["rebuild", "read", "rebuildRead"],
    ["rebuild", "write", "rebuildWrite"],
    ["resync", "read", "resyncRead"],
    ["resync", "write", "resyncWrite"],
    ["move", "read", "moveRead"],
    ["move", "write", "moveWrite"],
  ];
  const cwhat = "Extent copy traffic of the SDS (kind=rebuild|resync|move, PowerFlex fwdRebuild|bckRebuild|rebalance; op=read as source, op=write as target)";
  for (const [name, field] of [
    ["pf_sds_copy_ops_total", OPS],
    ["pf_sds_copy_bytes_total", BYTES],
  ] as const) {
    w.family(name, "counter", `${cwhat}: ${field === OPS ? "chunks" : "bytes"}.`);
    for (const o of objs) for (const [kind, op, k] of copies) w.sample(name, withLabel(withLabel(o.labels, "kind", kind), "op", op), o.totals?.[sds(k, field)] ?? 0);
  }
  w.family("pf_sds_up", "gauge", "Whether the MDM sees the SDS as connected (1) or not (0).");
  for (const [i, r] of rows.entries()) w.sample("pf_sds_up", objs[i]!.labels, ctx.health.sdsConnected(r.id) ? 1 : 0);
  w.family("pf_sds_removing", "gauge", "Whether the SDS is being removed (its data drains to the others).");
  for (const [i, r] of rows.entries()) w.sample("pf_sds_removing", objs[i]!.labels, r.state === "RemovalInProgress" ? 1 : 0);
  w.family("pf_sds_capacity_bytes", "gauge", "Capacity of the SDS's devices, in bytes.");
  for (const [i, r] of rows.entries()) w.sample("pf_sds_capacity_bytes", objs[i]!.labels, cap.get(r.id)?.cap ?? 0);
  w.family("pf_sds_capacity_in_use_bytes", "gauge", "Bytes the SDS's devices report in use.");
  for (const [i, r] of rows.entries()) w.sample("pf_sds_capacity_in_use_bytes", objs[i]!.labels, cap.get(r.id)?.used ?? 0);
}

interface DeviceRowLite {
  id: string;
  sds_id: string;
  pool_id: string;
  path: string;
  capacity_bytes: number;
  used_bytes: number;
  assigned_bytes: number;
  thick_assigned_bytes: number;
  state: string;
}

function writeDevices(ctx: MdmContext, w: TextWriter): void {
  const rows = ctx.store.sqlite
    .query<DeviceRowLite, []>("SELECT id, sds_id, pool_id, path, capacity_bytes, used_bytes, assigned_bytes, thick_assigned_bytes, state FROM device ORDER BY id")
    .all();
  const totals = ctx.observe.io.deviceTotals;
  const objs: Obj[] = rows.map((r) => ({ labels: labels(["device_id", "sds_id", "storage_pool_id"], [r.id, r.sds_id, r.pool_id]), totals: totals.get(r.id) }));
  const kinds: DeviceKind[] = ["read", "write"];
  const what = "Reads and writes that reached the device (heartbeat totals since this MDM started)";
  multiFamily(w, "pf_device_io_ops_total", "counter", `${what}: operations.`, objs, "op", kinds.map((k) => [k, (t) => t?.[device(k, OPS)] ?? 0]));
  multiFamily(w, "pf_device_io_bytes_total", "counter", `${what}: bytes.`, objs, "op", kinds.map((k) => [k, (t) => t?.[device(k, BYTES)] ?? 0]));
  multiFamily(w, "pf_device_io_latency_seconds", "summary", `${what}: latency sum and count, in seconds.`, objs, "op", kinds.map((k) => [k, (t) => (t?.[device(k, LAT_US)] ?? 0) / US_PER_S, (t) => t?.[device(k, OPS)] ?? 0]));
  w.family("pf_device_sync_total", "counter", "fdatasync calls on the device (heartbeat totals since this MDM started).");
  for (const o of objs) w.sample("pf_device_sync_total", o.labels, o.totals?.[device("sync", OPS)] ?? 0);
  w.family("pf_device_sync_seconds", "summary", "fdatasync time on the device: sum and count, in seconds.");
  for (const o of objs) {
    w.sample("pf_device_sync_seconds_sum", o.labels, (o.totals?.[device("sync", LAT_US)] ?? 0) / US_PER_S);
    w.sample("pf_device_sync_seconds_count", o.labels, o.totals?.[device("sync", OPS)] ?? 0);
  }
  w.family("pf_device_errors_total", "counter", "Reads, writes and fdatasyncs the device failed (heartbeat totals since this MDM started).");
  for (const o of objs) w.sample("pf_device_errors_total", o.labels, o.totals?.[DEVICE_ERRORS] ?? 0);
  const gauges: [string, string, (r: DeviceRowLite) => number][] = [
    ["pf_device_capacity_bytes", "Capacity of the device, in bytes.", (r) => r.capacity_bytes],
    ["pf_device_capacity_in_use_bytes", "Bytes the SDS reports in use on the device.", (r) => r.used_bytes],
    ["pf_device_assigned_bytes", "Extent copies placed on the device (thin and thick, in-sync, being built and kept away), in bytes.", (r) => r.assigned_bytes],
    ["pf_device_thick_assigned_bytes", "Thick extent copies reserved on the device, in bytes.", (r) => r.thick_assigned_bytes],
  ];
  for (const [name, help, pick] of gauges) {
    w.family(name, "gauge", help);
    rows.forEach((r, i) => w.sample(name, objs[i]!.labels, pick(r)));
  }
  w.family("pf_device_state", "gauge", "State of the device: 1 for its current state, 0 for the others.");
  rows.forEach((r, i) => {
    for (const s of ["Normal", "Failed"]) w.sample("pf_device_state", withLabel(objs[i]!.labels, "state", s), r.state === s ? 1 : 0);
  });
}

// ---- pools ----

function writePools(ctx: MdmContext, w: TextWriter): void {
  const usages = poolUsages(ctx);
  // the observe step (once a second, or paced while dear) computed these; a scrape reuses them
  // rather than reading every degraded extent again (tens of ms per 10,000 degraded extents)
  const status = scrapedRecoveryStatus(ctx);
  const lab = new Map(usages.map((u) => [u.poolId, labels(["storage_pool_id", "storage_pool", "protection_domain_id"], [u.poolId, u.name, u.pdId])]));
  const gauge = (name: string, help: string, pick: (u: (typeof usages)[number]) => number) => {
    w.family(name, "gauge", help);
    for (const u of usages) w.sample(name, lab.get(u.poolId)!, pick(u));
  };
  gauge("pf_storage_pool_capacity_total_bytes", "Raw capacity of every device of the pool (both copies), Failed devices included, in bytes.", (u) => u.rawBytes + u.failedBytes);
  gauge("pf_storage_pool_capacity_failed_bytes", "Raw capacity of the pool's Failed devices, in bytes.", (u) => u.failedBytes);
  gauge("pf_storage_pool_capacity_spare_bytes", "Spare reserve of the pool (kept free for rebuilds), raw bytes.", (u) => u.spareBytes);
  gauge("pf_storage_pool_capacity_usable_bytes", "Raw capacity of Normal devices minus the spare reserve, in bytes.", (u) => u.usableRawBytes);
  gauge("pf_storage_pool_capacity_in_use_bytes", "Raw bytes in use: thick reservations (both copies) and thin data written, in bytes.", (u) => u.usedRawBytes);
  gauge("pf_storage_pool_thin_allocated_bytes", "Sizes of the pool's thin volumes (net, one copy), in bytes.", (u) => u.thinAllocatedNetBytes);
  gauge("pf_storage_pool_provisioned_bytes", "Sizes of every volume of the pool (net), in bytes.", (u) => u.provisionedNetBytes);
  gauge("pf_storage_pool_available_for_allocation_bytes", "Net bytes still available for thick volume allocation.", (u) => u.availableForVolumeAllocationBytes);
  gauge("pf_storage_pool_capacity_utilization_ratio", "In use / usable: what the capacity alerts compare with their thresholds.", (u) => u.utilizationRatio);
  w.family("pf_storage_pool_capacity_alert_threshold_ratio", "gauge", "Capacity alert thresholds of the pool (level=high|critical), as ratios.");
  for (const u of usages) {
    w.sample("pf_storage_pool_capacity_alert_threshold_ratio", withLabel(lab.get(u.poolId)!, "level", "high"), u.highThresholdPct / 100);
    w.sample("pf_storage_pool_capacity_alert_threshold_ratio", withLabel(lab.get(u.poolId)!, "level", "critical"), u.criticalThresholdPct / 100);
  }
  gauge("pf_storage_pool_thin_overcommit_ratio", `(thin allocated x 2 + thick reserved raw) / usable; alerted above ${OVERCOMMIT_LIMIT}.`, (u) => u.overcommitRatio);
  const st = (u: (typeof usages)[number]) => status.get(u.poolId);
  w.family("pf_storage_pool_state", "gauge", "State of the pool: 1 for its current state (Normal, Degraded: an extent has one reachable copy, Failed: one has none).");
  for (const u of usages) for (const s of ["Normal", "Degraded", "Failed"]) w.sample("pf_storage_pool_state", withLabel(lab.get(u.poolId)!, "state", s), st(u)?.storagePoolState === s ? 1 : 0);
  gauge("pf_storage_pool_degraded_bytes", "Extent bytes of the pool with fewer than two reachable copies.", (u) => (st(u)?.degradedCapacityInKb ?? 0) * 1024);
  gauge("pf_storage_pool_unavailable_bytes", "Extent bytes of the pool with no reachable copy.", (u) => (st(u)?.unavailableCapacityInKb ?? 0) * 1024);
  w.family("pf_storage_pool_rebuild_remaining_bytes", "gauge", "Recovery work of the pool not done yet: kind=rebuild (incl. resync) or rebalance (incl. drain), phase=pending (queued) or active (copying).");
  for (const u of usages) {
    const s = st(u);
    const l = lab.get(u.poolId)!;
    const put = (kind: string, phase: string, kb: number) => w.sample("pf_storage_pool_rebuild_remaining_bytes", withLabel(withLabel(l, "kind", kind), "phase", phase), kb * 1024);
    put("rebuild", "pending", s?.pendingRebuildCapacityInKb ?? 0);
    put("rebuild", "active", s?.activeRebuildCapacityInKb ?? 0);
    put("rebalance", "pending", s?.pendingRebalanceCapacityInKb ?? 0);
    put("rebalance", "active", s?.activeRebalanceCapacityInKb ?? 0);
  }
  gauge("pf_storage_pool_rebuild_rate_bytes_per_second", `Copy rate of the pool's recovery over the last ${Limits.rebuildRateWindowMs / 1000} s, in bytes per second.`, (u) => (st(u)?.rebuildRateInKbps ?? 0) * 1024);
  gauge("pf_storage_pool_rebuild_progress_ratio", "Share of the pool's current recovery work done (1 when idle).", (u) => (st(u)?.rebuildProgressPercent ?? 100) / 100);
  gauge("pf_storage_pool_rebuild_stalled", "Whether the pool's recovery has made no progress for the stall timeout (1) or not (0).", (u) => (st(u)?.rebuildStalled ? 1 : 0));
}

// ---- alerts, REST, the MDM itself ----

function writeAlerts(ctx: MdmContext, w: TextWriter): void {
  const counts = activeAlertCounts(ctx);
  w.family("pf_alerts_active", "gauge", "Active alerts raised by the MDM, by severity and alert type (GET /api/types/Alert/instances).");
  for (const c of counts.values()) w.sample("pf_alerts_active", labels(["severity", "alert_type"], [c.severity, c.alertType]), c.count);
  w.family("pf_health_check", "gauge", "Whether an alert of this type is active (1) or not (0).");
  const active = new Set([...ctx.observe.activeAlerts.values()].map((a) => a.alertType));
  for (const t of ALERT_TYPE_NAMES) w.sample("pf_health_check", labels(["name"], [t]), active.has(t) ? 1 : 0);
  w.family("pf_health_status", "gauge", "Health of the system: 0 OK, 1 warning (only low/medium alerts), 2 error (a high or critical alert).");
  w.sample("pf_health_status", "", healthStatus(ctx));
}

function writeRest(ctx: MdmContext, w: TextWriter): void {
  const rest = ctx.observe.rest;
  w.family("pf_mdm_rest_requests_total", "counter", "REST and cluster API requests the MDM answered, by method, route pattern and status code.");
  for (const r of rest.requests.values()) w.sample("pf_mdm_rest_requests_total", labels(["method", "route", "code"], [r.method, r.route, String(r.status)]), r.count);
  w.family("pf_mdm_rest_request_duration_seconds", "histogram", "Time the MDM took to answer a request, by method and route pattern, in seconds.");
  for (const l of rest.latency.values()) {
    const base = labels(["method", "route"], [l.method, l.route]);
    REST_LATENCY_BUCKETS_S.forEach((b, i) => w.sample("pf_mdm_rest_request_duration_seconds_bucket", withLabel(base, "le", String(b)), l.buckets[i] ?? 0));
    w.sample("pf_mdm_rest_request_duration_seconds_bucket", withLabel(base, "le", "+Inf"), l.buckets[REST_LATENCY_BUCKETS_S.length] ?? 0);
    w.sample("pf_mdm_rest_request_duration_seconds_sum", base, l.sumS);
    w.sample("pf_mdm_rest_request_duration_seconds_count", base, l.count);
  }
}

function writeMdm(ctx: MdmContext, w: TextWriter): void {
  const hook = ctx.observe.webhook;
  w.family("pf_mdm_alert_webhook_events_total", "counter", "Alert webhook events by outcome: sent, failed (gave up after retries), dropped (queue full), retried (failed attempts retried).");
  const c = hook?.counters;
  for (const [outcome, v] of [
    ["sent", c?.sent ?? 0],
    ["failed", c?.failed ?? 0],
    ["dropped", c?.dropped ?? 0],
    ["retried", c?.retries ?? 0],
  ] as const) {
    w.sample("pf_mdm_alert_webhook_events_total", labels(["outcome"], [outcome]), v);
  }
  w.family("pf_mdm_alert_webhook_queue_length", "gauge", `Alert webhook events waiting to be sent (at most ${Limits.alertWebhookQueueMax}).`);
  w.sample("pf_mdm_alert_webhook_queue_length", "", c?.queued ?? 0);
  w.family("pf_mdm_tls_certificate_expiry_timestamp_seconds", "gauge", "When the TLS certificate the MDM serves expires (notAfter), in seconds since the Unix epoch; absent over plain HTTP.");
  if (ctx.observe.certValidToMs !== null) w.sample("pf_mdm_tls_certificate_expiry_timestamp_seconds", "", ctx.observe.certValidToMs / 1000);
  w.family("pf_mdm_observe_tick_seconds", "gauge", "Time the last observe step (history sample, alert rules) took, in seconds.");
  w.sample("pf_mdm_observe_tick_seconds", "", ctx.observe.lastTickMs / 1000);
  const count = (t: string) => ctx.store.sqlite.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${t}`).get()?.n ?? 0;
  w.family("pf_mdm_objects", "gauge", "Objects the MDM manages, by type.");
  for (const [type, table] of [
    ["ProtectionDomain", "protection_domain"],
    ["StoragePool", "storage_pool"],
    ["FaultSet", "fault_set"],
    ["Sds", "sds"],
    ["Device", "device"],
    ["Sdc", "sdc"],
    ["Volume", "volume"],
  ] as const) {
    w.sample("pf_mdm_objects", labels(["type"], [type]), count(table));
  }
}

/** Leadership of this MDM (both stores; the revision is 0 in sqlite mode). */
function writeLeadership(ctx: MdmContext, w: TextWriter): void {
  const m = ctx.meta;
  w.family("pf_mdm_leader", "gauge", "1 while this MDM is the active one, 0 while it is a standby.");
  w.sample("pf_mdm_leader", labels(["store"], [m.kind]), m.isLeader() ? 1 : 0);
  w.family("pf_mdm_term", "gauge", "Fencing term of this MDM's leadership, or of the last one it knows of.");
  w.sample("pf_mdm_term", "", m.term());
  w.family("pf_mdm_applied_revision", "gauge", "etcd revision this MDM's sqlite reflects (0 in sqlite mode).");
  w.sample("pf_mdm_applied_revision", "", m.appliedRevision());
  w.family("pf_mdm_takeovers_total", "counter", "Times this MDM became the active one since it started.");
  w.sample("pf_mdm_takeovers_total", "", m.stats.takeovers);
  w.family("pf_mdm_step_downs_total", "counter", "Times this MDM stopped being the active one since it started.");
  w.sample("pf_mdm_step_downs_total", "", m.stats.stepDowns);
  w.family("pf_mdm_etcd_commits_total", "counter", "Metadata commits (etcd transactions) this MDM shipped since it started.");
  w.sample("pf_mdm_etcd_commits_total", "", m.stats.txns);
}

/**
 * /metrics of a standby MDM (HA mode): its own process, REST counters, leadership and object
 * counts (replicated rows). The cluster-wide IO, health and recovery families need the heartbeat
 * state only the active MDM holds: a standby leaves them out rather than report stale values.
 */
export function renderStandbyMdmMetrics(ctx: MdmContext): string {
  const w = new TextWriter();
  const reg = ctx.observe.registry;
  w.raw(renderText(reg), reg.families.map((f) => f.name));
  writeRest(ctx, w);
  writeMdm(ctx, w);
  writeLeadership(ctx, w);
  return w.text();
}

/** The whole exposition text of the MDM's /metrics. */
export function renderMdmMetrics(ctx: MdmContext): string {
  if (!ctx.meta.isLeader()) return renderStandbyMdmMetrics(ctx);
  const t0 = performance.now();
  const w = new TextWriter();
  const reg = ctx.observe.registry;
  w.raw(renderText(reg), reg.families.map((f) => f.name));
  writeVolumes(ctx, w);
  writeSdcs(ctx, w);
  writeSdss(ctx, w);
  writeDevices(ctx, w);
  writePools(ctx, w);
  writeAlerts(ctx, w);
  writeRest(ctx, w);
  writeMdm(ctx, w);
  writeLeadership(ctx, w);
  w.family("pf_mdm_scrape_duration_seconds", "gauge", "Time this /metrics answer took to build, in seconds.");
  w.sample("pf_mdm_scrape_duration_seconds", "", (performance.now() - t0) / 1000);
  return w.text();
}
