// `pf sds` wiring: open the devices, listen on the data plane, join the MDM with the cluster
// secret, assemble the SDS core with the data key and device ids the MDM returned, then keep
// the assignments current with heartbeats (a changed mapVersion fetches them again). Each
// answered heartbeat renews the SDS's lease (sds_node.ts) and carries the progress of the copies
// this SDS drives. Env PF_FAULT_DEVICE_FILE arms device fault injection (store/block_fault.ts).
//
// Invariants: the data port is listening before the join announces it (requests before the
// core is attached are refused, UNAVAILABLE); assignments are fetched and applied before the
// first heartbeat reports them applied, and nothing is served before that heartbeat's answer
// gives a lease; the lease counts from when the heartbeat was SENT; an unreachable MDM stops
// nothing until the lease runs out, heartbeats keep being retried, and the first answer after
// the MDM is back renews the lease. A request naming a newer epoch (or a forwarded frame held
// for one, sds/epoch_hold.ts) gets a heartbeat within EARLY_BEAT_MIN_GAP_MS, never a dropped
// one; an answered heartbeat whose assignments are applied is reported to the node, which ends
// the holds of frames that arrived before it was sent. The control port (HTTP /health, /metrics, /status) listens
// before the join, so it can tell an operator the SDS is not joined yet; every heartbeat carries
// the cumulative IO counters (src/proto/io_report.ts) under a random per-process incarnation.
//
// MDM fencing (src/proto/mdm_term.ts): the highest MDM term seen is kept in DATA_DIR/mdm-term.json;
// an answer of a lower term is refused (no lease, no map) and the next MDM of the list is asked.
// A failed heartbeat is retried after FAILED_BEAT_RETRY_MS, not a whole interval, so that a
// standby MDM taking over is found well inside the lease. A mapVersion lower than the one
// applied is logged as an error (it never happens while the MDMs keep their invariants).

import { Limits } from "../proto/limits.ts";
import type { RefusalKind, RefusalReport } from "./refusal_log.ts";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { consola } from "consola";
import { BeatFetch } from "../proto/beat_fetch.ts";
import { busyRetryMs, ClusterPaths, HeartbeatResponse, SdsAssignmentsResponse, SdsJoinResponse, type DeviceReport, type SdsJoinRequest } from "../proto/cluster_api.ts";
import { startControlServer, type ControlServer } from "../proto/control_server.ts";
import { PfError } from "../proto/errors.ts";
import { newIncarnation } from "../proto/io_meter.ts";
import { clusterRequest, joinWithRetry, type MdmEndpoint } from "../proto/mdm_http.ts";
import { FreshRun, MapWatch } from "../proto/map_watch.ts";
import { isDelta, mergeAssignments } from "../proto/assignments_delta.ts";
import { MetricRegistry } from "../proto/metrics.ts";
import { registerProcessMetrics } from "../proto/process_metrics.ts";
import { TermGuard } from "../proto/mdm_term.ts";
import { openBlockDevice, type BlockDevice } from "../store/block_device.ts";
import { FaultFile } from "../store/block_fault.ts";
import { VOLATILE_CACHE_ENV, VolatileCacheDevice } from "../store/volatile_cache.ts";
import { DataPlaneServer } from "./dataplane_server.ts";
import { X509Certificate } from "node:crypto";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { TlsDrift, loadOrMakeNodeKey, refuseInsecureTlsEnv, tlsAfterJoin } from "../proto/dataplane_tls.ts";
import { SdsControl, type MdmLinkState } from "./sds_control.ts";
import { startSdsCore, type SdsCore } from "./sds_core.ts";
import { LiveDevices } from "./live_devices.ts";

export interface SdsOptions {
  mdm: MdmEndpoint;
  dataDir: string;
  name: string;
  /** advertised and listen address */
  host: string;
  /** 0 = any free port */
  port: number;
  devices: { path: string; sizeBytes?: number }[];
  protectionDomainName: string;
  storagePoolName: string;
  faultSetName?: string;
  /** pf version, for pf_build_info and /status */
  version?: string;
  /** control HTTP port (0 = any free port); null or absent: none */
  control?: { host: string; port: number } | null;
  /** --data-plane-tls: TLS expected on (true) or off (false); absent: as the MDM says at join */
  dataPlaneTls?: boolean;
}

export interface SdsHandle {
  sdsId: string;
  port: number;
  /** http://HOST:PORT of the control port, null when there is none */
  controlUrl: string | null;
  stop(): Promise<void>;
}

const EARLY_BEAT_MIN_GAP_MS = 200; // a newer epoch seen on the data plane asks the MDM at most this often
const RECOVERY_HEARTBEAT_MS = 250; // heartbeat interval while this SDS drives or receives a copy
const FAILED_BEAT_RETRY_MS = 250; // after a failed heartbeat (MDM down, standby, takeover under way)
const HEARTBEAT_REQUEST_TIMEOUT_MS = 1500; // a heartbeat to a paused or cut-off MDM gives up this soon
const FENCE_ASK_INTERVAL_MS = 500; // how often an SDS asks the MDM about a fence in doubt

export async function runSds(opts: SdsOptions): Promise<SdsHandle> {
  const opened = new Map<string, BlockDevice>();
  let server: DataPlaneServer | null = null;
  let core: SdsCore | null = null;
  const faults = FaultFile.fromEnv();
  if (faults !== null) consola.warn(`sds ${opts.name}: device fault injection armed by the file ${faults.path}`);
  // the power-loss model (store/volatile_cache.ts): unsynced writes live in this process only
  const volatileCache = process.env[VOLATILE_CACHE_ENV] === "1";
  if (volatileCache) consola.warn(`sds ${opts.name}: ${VOLATILE_CACHE_ENV}=1: devices keep unsynced writes in memory (a kill -9 is a power cut)`);
  const wrap = (d: BlockDevice): BlockDevice => {
    const v = volatileCache ? new VolatileCacheDevice(d) : d;
    return faults === null ? v : faults.wrap(v);
  };
  const registry = new MetricRegistry();
  const proc = registerProcessMetrics(registry, { role: "sds", version: opts.version ?? "unknown" });
  const control = new SdsControl(
    registry,
    { name: opts.name, version: opts.version ?? "unknown", mdmUrl: opts.mdm.url, host: opts.host, protectionDomainName: opts.protectionDomainName, storagePoolName: opts.storagePoolName, faultSetName: opts.faultSetName },
    proc,
  );
  let controlServer: ControlServer | null = null;
  try {
    if (opts.control) {
      controlServer = startControlServer({ host: opts.control.host, port: opts.control.port, source: control });
      consola.info(`sds ${opts.name}: control port ${controlServer.url} (/health /metrics /status)`);
    }
    for (const d of opts.devices) opened.set(d.path, openBlockDevice(d));
    // devices added while an earlier run served (scli --add_sds_device): opened again, so the
    // join names them; one that is gone is left out, and the MDM marks it Failed
    const live = LiveDevices.load(opts.name, opts.dataDir);
    const added: string[] = [];
    for (const path of live.added) {
      if (opened.has(path)) continue;
      try {
        opened.set(path, openBlockDevice({ path }));
        added.push(path);
      } catch (e) {
        consola.warn(`sds ${opts.name}: device ${path}, added through the MDM earlier, does not open (${(e as Error).message}); the MDM will mark it Failed`);
      }
    }
    if (opts.dataPlaneTls === true) refuseInsecureTlsEnv();
    server = DataPlaneServer.listen({ host: opts.host, port: opts.port });
    if (opts.dataPlaneTls === true) server.requireTls();
    const boot = hostBoot(opts.dataDir);
    mkdirSync(opts.dataDir, { recursive: true });
    const tlsKey = loadOrMakeNodeKey(opts.dataDir);
    const terms = new TermGuard(`sds ${opts.name}`, joinPath(opts.dataDir, "mdm-term.json"));
    const joined = await join(opts, server.port, [...opened.values()], boot.rebooted, terms, tlsKey.publicKeyPem, new Set(added));
    boot.remember();
    const tls = tlsAfterJoin(`sds ${opts.name}`, opts.dataPlaneTls, joined.dataPlaneTls, tlsKey, { role: NodeRole.SDS, nodeId: joined.sdsId });
    if (tls !== null) consola.info(`sds ${opts.name} (${joined.sdsId}): data-plane TLS on (certificate issued by the MDM at join, valid to ${new X509Certificate(tls.certPem).validTo})`);
    const idByPath = new Map(joined.devices.map((d) => [d.path, d.deviceId]));
    // an added device the MDM removed while this SDS was down: closed and forgotten here too
    for (const path of added.filter((p) => !idByPath.has(p))) {
      opened.get(path)?.close();
      opened.delete(path);
      added.splice(added.indexOf(path), 1);
      live.forget(path);
      consola.info(`sds ${opts.name}: device ${path} was removed through the MDM while this SDS was down; no longer used`);
    }
    core = startSdsCore({
      sdsId: joined.sdsId,
      mdmId: joined.systemId,
      dataDir: opts.dataDir,
      host: opts.host,
      port: server.port,
      server,
      opened,
      wrapDevice: faults === null && !volatileCache ? undefined : wrap,
      registry,
      hostRebooted: boot.rebooted,
      ...(tls === null ? {} : { tls }),
      devices: [...opts.devices.map((d) => d.path), ...added].map((path) => {
        const deviceId = idByPath.get(path);
        if (deviceId === undefined) throw new PfError("INTERNAL", `the MDM returned no device id for ${path}`);
        return { deviceId, path };
      }),
    });
    // per-node calls carry this SDS's token (it gets its data-plane keys with its assignments)
    const session = new MdmSession({ ...opts.mdm, nodeToken: joined.nodeToken, terms }, core, joined.heartbeatMs, newIncarnation(), new TlsDrift(`sds ${opts.name}`, tls !== null), live);
    control.attach(core, session, terms);
    await session.refreshAssignments();
    await session.firstBeat();
    session.start();
    consola.info(`sds ${opts.name} (${joined.sdsId}): serving ${opened.size} device(s) on ${opts.host}:${server.port}`);
    const c = core;
    const cs = controlServer;
    return {
      sdsId: joined.sdsId,
      port: server.port,
      controlUrl: cs?.url ?? null,
      async stop() {
        await session.stop();
        await c.stop();
        faults?.stop();
        await cs?.stop();
        proc.stop();
      },
    };
  } catch (e) {
    faults?.stop();
    await controlServer?.stop();
    proc.stop();
    if (core) await core.stop();
    else {
      server?.stop();
      for (const d of opened.values()) d.close();
    }
    throw e;
  }
}

const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

/**
 * Did the host reboot since this SDS last joined? Its page cache, and with it any write that was
 * acknowledged but not yet flushed, is then gone; the MDM must not trust its copies as complete.
 * Compares the kernel's boot id with the one kept in the data dir (no file: first start).
 */
function hostBoot(dataDir: string): { rebooted: boolean; remember(): void } {
  const file = joinPath(dataDir, "host-boot-id");
  let current: string | null = null;
  try {
    current = readFileSync(BOOT_ID_FILE, "utf8").trim();
  } catch {
    consola.warn(`sds: cannot read ${BOOT_ID_FILE}; a host reboot will not be detected`);
  }
  const previous = existsSync(file) ? readFileSync(file, "utf8").trim() : null;
  return {
    rebooted: current !== null && previous !== null && previous !== current,
    remember() {
      if (current === null || current === previous) return;
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(file, current + "\n");
    },
  };
}

async function join(opts: SdsOptions, dataPort: number, devices: BlockDevice[], hostRebooted: boolean, terms: TermGuard, tlsPublicKey: string, added: ReadonlySet<string>): Promise<SdsJoinResponse> {
  const body: SdsJoinRequest = {
    name: opts.name,
    tlsPublicKey,
    hostRebooted,
    host: opts.host,
    dataPort,
    protectionDomainName: opts.protectionDomainName,
    storagePoolName: opts.storagePoolName,
    faultSetName: opts.faultSetName,
    devices: devices.map((d) => ({ path: d.path, capacityBytes: d.sizeBytes, ...(added.has(d.path) ? { added: true } : {}) })),
  };
  return joinWithRetry(`sds ${opts.name}`, opts.mdm, async () => {
    // the join answer names the system: terms are per system, so it is checked after that
    const r = await clusterRequest(opts.mdm, { method: "POST", path: ClusterPaths.sdsJoin, body, schema: SdsJoinResponse });
    terms.joined(r.systemId);
    if (!terms.observe(r.term, "join")) throw new PfError("STALE_TERM", `the MDM answered the join with term ${r.term}, below ${terms.highest}`);
    return r;
  });
}

/** Heartbeats and assignment refreshes; failures are logged and retried, IO goes on. */
/** exported for tests (test/mdm_fetch_shedding_nodes.test.ts) */
export class MdmSession implements MdmLinkState {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private failures = 0;
  private lastBeatMs = -Infinity;
  /** someone asked for a heartbeat before the next regular one (see the constructor) */
  private earlyWanted = false;
  answeredBeats = 0;
  lastError: string | null = null;
  private readonly fetches = new FreshRun(() => this.fetchAssignments());
  /** the full assignments last applied (a delta answer is merged into them); memory ~ extents held */
  private heldAssignments: SdsAssignmentsResponse | null = null;
  /** the assignments fetch as the beats see it (shed, slow: beats go on without waiting for it) */
  private readonly fetchWait = new BeatFetch();
  /** IO waits for the next assignments (an epoch hold, a fence in doubt): the fetch says urgent=1 (a busy MDM serves it without a turn) */
  private urgentWanted = false;
  private readonly watch: MapWatch;

  constructor(
    private readonly mdm: MdmEndpoint,
    private readonly core: SdsCore,
    private readonly heartbeatMs: number,
    /** random per process start: the MDM reads a counter drop under a new one as a restart */
    private readonly incarnation: string,
    private readonly tlsDrift: TlsDrift,
    /** devices the MDM adds and removes while this SDS runs (null: tests' sessions without a data dir) */
    private readonly live: LiveDevices | null = null,
  ) {
    // a client named a newer epoch than ours (or a peer forwarded one, and waits for us): the MDM
    // has news, ask now instead of at the next beat. Never dropped: a beat in flight, or one sent
    // less than EARLY_BEAT_MIN_GAP_MS ago, is followed by another that soon after.
    const early = () => {
      this.earlyWanted = true;
      this.wake?.();
    };
    core.node.onNewerEpoch = () => {
      this.wantUrgent(); // requests wait in an epoch hold for these assignments
      early();
    };
    core.node.onCopyDone = early;
    core.node.onFenceExpired = () => void this.settleFencesInDoubt();
    // a map change for this SDS (an unmap, a switch to ReadOnly: grant floors) is fetched within
    // a round trip of the MDM's commit, not at the next beat (proto/map_watch.ts)
    this.watch = new MapWatch({
      mdm,
      kind: "sds",
      nodeId: core.sdsId,
      applied: () => core.node.appliedMapVersion,
      onChange: () => this.refreshAssignments(),
    });
  }

  /** IO waits for the next assignments: the next fetch asks urgent=1, and one waiting for its turn asks now. */
  private wantUrgent(): void {
    if (this.urgentWanted) return; // asked already: one ask per fetch attempt
    this.urgentWanted = true;
    this.fetchWait.wake();
  }

  /** A fence outlived its timeout: ask the MDM (assignments asked after now) until it is settled. */
  private async settleFencesInDoubt(): Promise<void> {
    while (!this.stopped && this.core.node.fencesInDoubt > 0) {
      try {
        this.wantUrgent(); // writes are held until the MDM settles the fence
        await this.refreshAssignments();
      } catch (e) {
        consola.warn(`sds ${this.core.sdsId}: cannot ask the MDM about a fence in doubt (writes stay held): ${(e as Error).message}`);
      }
      if (this.core.node.fencesInDoubt > 0) await Bun.sleep(FENCE_ASK_INTERVAL_MS);
    }
  }

  /** The heartbeat that gives the first lease (a failure is logged; the loop retries). */
  async firstBeat(): Promise<void> {
    try {
      await this.beat();
    } catch (e) {
      this.failures++;
      this.lastError = (e as Error).message;
      consola.warn(`sds ${this.core.sdsId}: first heartbeat failed (serving nothing until one is answered): ${(e as Error).message}`);
    }
  }

  start(): void {
    this.loop = this.run();
    this.watch.start();
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watch.stop();
    this.wake?.();
    await this.loop;
  }

  /** Fetch and apply this SDS's assignments; a call while a fetch runs gets a fetch after it. */
  refreshAssignments(): Promise<void> {
    return this.fetches.run();
  }

  private async fetchAssignments(): Promise<void> {
    const askedAtMs = this.core.node.clock.nowMs();
    // ask for a delta since the full answer we hold (proto/assignments_delta.ts); a log id we
    // did not get from this MDM's current life, or a gap in its log, gets the full list instead
    const held = this.heldAssignments;
    // an MDM that is behind sheds fetches (429, "MDM busy"): wait the time it names, ask again
    // (its turn may be many seconds away at a cold start: the beats go on meanwhile, see beat())
    try {
      await this.fetchAndApply(held, askedAtMs);
    } catch (e) {
      // only a transport failure (unreachable, a standby, an old term, still busy) keeps the held
      // answer for the next delta: anything else (the MDM refused the query, an answer of the
      // wrong shape, a delta that does not fit, a failed apply) asks for the full list next time
      if (!keepsHeldAnswer(e)) this.heldAssignments = null;
      throw e;
    }
  }

  private async fetchAndApply(held: SdsAssignmentsResponse | null, askedAtMs: number): Promise<void> {
    const delta = held?.copyLog === undefined ? null : { since: held.mapVersion, log: held.copyLog };
    // urgent is read per try: a need that came while this fetch waited for its turn goes out now
    const resp = await this.fetchWait.run(async () => {
      const urgent = this.urgentWanted;
      this.urgentWanted = false;
      try {
        return await clusterRequest(this.mdm, { method: "GET", path: ClusterPaths.sdsAssignments(this.core.sdsId, this.core.node.addressesTag, delta, urgent), schema: SdsAssignmentsResponse });
      } catch (e) {
        if (urgent) this.urgentWanted = true; // still wanted: the next try asks again
        throw e;
      }
    });
    const before = this.core.node.appliedMapVersion;
    this.tlsDrift.check(resp.dataPlaneTls);
    let full: SdsAssignmentsResponse;
    if (isDelta(resp)) {
      if (held === null || resp.since !== held.mapVersion) {
        // (fetchAssignments drops the held answer: the next fetch asks for the full list)
        throw new PfError("INTERNAL", `the MDM answered a delta since ${resp.since}, not since the held version ${held?.mapVersion ?? "none"}`);
      }
      full = mergeAssignments(held, resp);
    } else {
      full = resp;
    }
    this.core.node.applyAssignments(full, askedAtMs);
    this.heldAssignments = full; // only once applied: a failed apply leaves no base for a delta
    if (resp.mapVersion !== before) consola.debug(`sds ${this.core.sdsId}: applied map version ${resp.mapVersion} (${full.extents.length} extents${isDelta(resp) ? `, ${resp.extents.length} changed and ${resp.removed?.length ?? 0} removed by a delta` : ""})`);
  }

  /** Wait until the next heartbeat is due: the regular interval, or the early gap when asked. */
  private async untilNextBeat(): Promise<void> {
    while (!this.stopped) {
      // during recovery, beat faster: each step of a rebuild waits for the MDM's next answer
      const fast = this.core.node.recovering ? RECOVERY_HEARTBEAT_MS : this.failures > 0 ? FAILED_BEAT_RETRY_MS : this.heartbeatMs;
      const intervalMs = Math.min(this.heartbeatMs, fast);
      const gapMs = this.earlyWanted ? Math.min(intervalMs, EARLY_BEAT_MIN_GAP_MS) : intervalMs;
      // fixed rate from the last send (not from the last answer): a slow answer must not stretch
      // the gap between renewals towards the lease length
      const delayMs = this.lastBeatMs + gapMs - performance.now();
      if (delayMs <= 0) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delayMs);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.untilNextBeat();
      if (this.stopped) return;
      this.earlyWanted = false;
      try {
        await this.beat();
        if (this.failures > 0) consola.info(`sds ${this.core.sdsId}: MDM reachable again after ${this.failures} failed heartbeat(s)`);
        this.failures = 0;
      } catch (e) {
        const left = Math.max(0, Math.round(this.core.node.leaseRemainingMs));
        this.lastError = (e as Error).message;
        if (this.failures++ === 0) consola.warn(`sds ${this.core.sdsId}: heartbeat to MDM failed (IO continues while the lease holds, ${left} ms left): ${(e as Error).message}`);
      }
    }
  }

  private async beat(): Promise<void> {
    const node = this.core.node;
    const devices: DeviceReport[] = this.core.store.slots.map((s) => ({
      deviceId: s.deviceId,
      state: s.state,
      usedBytes: this.core.store.usedBytes(s),
      capacityBytes: s.dev.sizeBytes,
      ...(s.failure === undefined ? {} : { error: s.failure }),
    }));
    // the devices it could not open, as many as the beat still carries
    if (this.live !== null) devices.push(...this.live.reports().slice(0, Math.max(0, Limits.maxDevicesPerSds - devices.length)));
    const sentAtMs = node.clock.nowMs();
    const beatNo = node.heartbeatBegun();
    this.lastBeatMs = performance.now();
    const failedForwards = node.takeFailedForwards();
    let hb: HeartbeatResponse;
    try {
      hb = await clusterRequest({ ...this.mdm, timeoutMs: HEARTBEAT_REQUEST_TIMEOUT_MS }, {
        method: "POST",
        path: ClusterPaths.sdsHeartbeat(this.core.sdsId),
        body: {
          devices,
          appliedMapVersion: node.appliedMapVersion,
          rebuilds: node.rebuildReports(),
          failedForwards,
          io: this.core.metrics.report(this.incarnation),
          layerChunks: node.layerChunks(),
          refusals: mergeRefusals(this.core.server.refusals.takeReport(), node.grants.refusals.takeReport()),
        },
        schema: HeartbeatResponse,
      });
    } catch (e) {
      node.restoreFailedForwards(failedForwards);
      throw e;
    }
    this.answeredBeats++;
    this.live?.apply(this.core, hb.openDevices, hb.closeDevices);
    if (hb.mapVersion < node.appliedMapVersion) {
      consola.error(`sds ${this.core.sdsId}: the MDM's map version went back from ${node.appliedMapVersion} to ${hb.mapVersion}`);
    }
    // Apply the MDM's newer map BEFORE renewing the lease: an SDS that was cut off and dropped
    // must not serve its old epoch for even one round trip after it reconnects.
    if (hb.mapVersion !== node.appliedMapVersion && !this.stopped) {
      // a fetch the MDM shed waits for its turn (fetch_shedding.ts): this beat was heard, the
      // next ones must be too, so do not wait for it here; no lease until it is applied
      if (this.fetchWait.waiting) return;
      const refresh = this.refreshAssignments();
      // a slow answer (an MDM that is behind, a full list at a cold start) must not stop the
      // beats either: past one interval this beat goes on without waiting, and the next one goes
      // out on time (the MDM would otherwise declare a live SDS down while it waits for its fetch)
      const first = await this.fetchWait.await(refresh, this.heartbeatMs);
      if (first !== "done") {
        // this beat's lease once its assignments are applied, as if it had waited: counted from
        // its send like every lease (a map that keeps moving under slow fetches must not leave
        // the SDS without one while the MDM hears its beats)
        refresh.then(
          () => {
            if (this.stopped || node.appliedMapVersion < hb.mapVersion) return;
            node.grantLease(sentAtMs, hb.leaseMs);
            node.heartbeatAnswered(beatNo);
          },
          (e: unknown) => consola.warn(`sds ${this.core.sdsId}: assignments fetch failed (${first === "shed" ? "after the MDM shed it" : "after the beat went on without it"}): ${(e as Error).message}`),
        );
        return;
      }
    }
    if (node.appliedMapVersion < hb.mapVersion) return; // not caught up: no lease from this beat
    node.grantLease(sentAtMs, hb.leaseMs);
    // the assignments are now as new as anything a peer knew before this beat was sent
    node.heartbeatAnswered(beatNo);
  }
}

/** A fetch error after which the held assignments still are a base for a delta: the MDM was not reached (or only a standby, an old term, or it stayed busy). */
export function keepsHeldAnswer(e: unknown): boolean {
  if (busyRetryMs(e) !== null) return true;
  return e instanceof PfError && (e.code === "UNAVAILABLE" || e.code === "NOT_LEADER" || e.code === "STALE_TERM");
}

/** The two refusal logs of an SDS (handshakes; grants and IO) as one heartbeat field, bounded. */
function mergeRefusals(a: RefusalReport, b: RefusalReport): RefusalReport | undefined {
  const counts: Partial<Record<RefusalKind, number>> = { ...a.counts };
  for (const [k, n] of Object.entries(b.counts) as [RefusalKind, number][]) counts[k] = (counts[k] ?? 0) + n;
  if (Object.keys(counts).length === 0) return undefined;
  return { counts, samples: [...a.samples, ...b.samples].slice(0, Limits.heartbeatMaxRefusalSamples) };
}
