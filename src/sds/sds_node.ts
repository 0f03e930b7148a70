// The SDS core: serves data-plane requests for the extent copies it holds, in the role the MDM
// gave each (primary / secondary / target / away), replicates writes from the primary to the
// other in-sync copies and to a sync target, keeps the change record a resync needs, and runs
// the copy loops (rebuild_copy.ts). Needs no MDM: assignments (with the data-plane keys and
// revocation floors) and leases are handed in (runSds fetches them; tests inject them).
//
// Invariants:
// - every extent-addressed request (client IO, REPL_*, REBUILD_WRITE, CHECKSUM) is checked
//   before any device IO, in this order: for an SDC's IO, a mapping grant for the volume on its
//   connection that allows the operation (grant_book.ts: else NO_GRANT, READ_ONLY,
//   GRANT_EXPIRED, GRANT_REVOKED); this SDS holds the extent (else NOT_OWNER); it holds a
//   lease (assignments applied since start and the lease from the last answered heartbeat not
//   expired, else UNAVAILABLE); the epoch equals the extent's, older or newer (else
//   STALE_EPOCH); the role allows the operation and a forwarded frame comes from the extent's
//   primary (else NOT_OWNER); the copy's device has not failed (else UNAVAILABLE); the range
//   lies inside the extent (else INVALID);
// - except that a frame a peer SDS forwards (REPL_*, REBUILD_WRITE) naming a newer epoch than
//   held here, or an extent not assigned here yet, is not refused at once: the primary applied a
//   newer assignment than this SDS has. It holds its connection, in order, until this SDS's
//   assignments catch up or are known final, for at most Limits.sdsEpochHoldMs, and is then
//   checked as above (epoch_hold.ts). A refusal the primary sees is therefore a real one;
// - client IO is served by the primary only; REPL_* by a secondary or target, REBUILD_WRITE by a
//   target, from the primary only; an away copy serves nothing and is never freed while assigned;
// - the primary applies writes locally in arrival order and forwards them (REPL_WRITE /
//   REPL_ZERO) in the same order over ONE connection per peer, to every other in-sync copy and
//   to the sync target; receivers apply in arrival order, so overlapping writes end identical;
// - a write is acknowledged OK only when every copy it was forwarded to holds it (returned
//   through the kernel); with FUA, only when every copy has it durable. A copy that fails or
//   cannot be reached makes the reply non-OK (UNAVAILABLE for a target: the SDC retries), never a
//   partial OK; a degraded primary (replicas = [self], no target) acks after its own write;
// - a forward an in-sync copy refused or lost is reported to the MDM (failedForwards) under the
//   epoch it was sent with when the refusal is about epochs (STALE_EPOCH, NOT_OWNER: the MDM
//   ignores it once that epoch is gone), else under the extent's epoch; never retried here;
// - change record (resync): while this SDS is the primary, from the moment an in-sync copy goes
//   missing (a forwarded write to it fails, or an assignment drops it), every written, trimmed
//   or zeroed chunk is marked; the record names the copies it is complete for. A primary that
//   was not primary before (promotion, restart) starts with no record, so a resync of a copy it
//   does not cover copies every chunk;
// - FLUSH makes durable every write acknowledged before it: local devices, local metadata,
//   and a FLUSH to every copy this SDS forwarded to since its last flush. A Failed device is left
//   out only when every extent on it has another in-sync copy (the copy there is lost anyway).
// - layers (snapshots): a client frame names a volume, served through that volume's open layer
//   in the current graph (layer_graphs.ts); the primary forwards with Flag.LAYER naming the
//   layer it wrote, and a secondary writes exactly that layer, refusing (STALE_EPOCH) one it
//   does not know or that its graph says is frozen; a forwarded write into a layer only a
//   pending graph has proves the MDM committed that fence (the primary writes new layers only
//   after commit), so it commits it here too;
// - a fence (write_fence.ts) parks client writes of the volumes it holds until commit/abort;
//   graph changes that free or fold layers (merges, drops) run as one synchronous step per
//   extent when a newer graph is applied, never while a copy or write is half done.

import { consola } from "consola";
import { CopyOrder } from "./copy_order.ts";
import { Flag, FrameError, Op, Status, decodeLayerKeys, opName, statusName, type Frame, type FrameHeader } from "../proto/dataplane.ts";
import type { DataPlaneTlsMaterial } from "../proto/dataplane_tls.ts";
import { DataPlanePool, type DataPlaneLink, type DataRequest } from "../proto/dataplane_client.ts";
import type { ExtentAssignment, ExtentRole, FailedForward, LayerUsage, RebuildReport, SdsAssignmentsResponse } from "../proto/cluster_api.ts";
import { idToHalves } from "../proto/ids.ts";
import { ioNowMs, type IoMeter } from "../proto/io_meter.ts";
import { Limits } from "../proto/limits.ts";
import { flatOf, type Bytes } from "../proto/scatter.ts";
import { MetricRegistry } from "../proto/metrics.ts";
import { decodeControl, type ControlRequest } from "../proto/vtree_control.ts";
import { DirtyChunks } from "./dirty_chunks.ts";
import type { DeviceSlot, Extent, ExtentStore } from "./extent_store.ts";
import type { RequestConn, RequestHandler } from "./dataplane_server.ts";
import { LayerGraphs, type LayerState, type VTreeState } from "./layer_graphs.ts";
import { AppIoGauge, AppIoGauges } from "./copy_throttle.ts";
import { CopyEngine } from "./rebuild_copy.ts";
import { EpochHolds, isForwarded } from "./epoch_hold.ts";
import type { CommitWaiter } from "./group_commit.ts";
import { realClock, type SdsClock } from "./sds_clock.ts";
import { SdsMetrics } from "./sds_metrics.ts";
import { SdsAccess } from "./sds_access.ts";
import { GrantBook } from "./grant_book.ts";
import { NodeRole } from "../proto/dataplane_auth.ts";
import { WriteFence } from "./write_fence.ts";

const CHUNK = Limits.thinChunkBytes;

/** What a request wants to do with an extent copy (decides which roles may serve it). */
type Use = "client" | "replica" | "rebuild" | "checksum";

export interface SdsNodeStats {
  reads: number;
  writes: number;
  replWrites: number;
  zeroes: number;
  /** FLUSH requests served (from clients or peers) */
  flushes: number;
  /** FLUSH requests this SDS sent to peers */
  peerFlushesSent: number;
  /** writes with FUA that were made durable locally */
  fuaSyncs: number;
  refusedNotOwner: number;
  refusedStaleEpoch: number;
  /** extent requests refused because this SDS held no valid lease */
  refusedNoLease: number;
  /** extent requests refused because the copy's device failed */
  refusedFailedDevice: number;
  /** REBUILD_WRITE frames applied (as a target) and their bytes */
  rebuildWrites: number;
  rebuildBytes: number;
  /** forwards to a copy target held behind a copy of an overlapping chunk on the copy lane (copy_order.ts) */
  forwardsHeld: number;
  peerFailures: number;
  /** client writes parked by a fence, and fences committed / aborted here */
  parkedWrites: number;
  fencesCommitted: number;
  fencesAborted: number;
  /** layers folded into a child and chunks they gave up (metadata-only merges) */
  layerMerges: number;
}

export interface SdsNodeOptions {
  sdsId: string;
  /** the MDM's id (its consistency check connects under it) */
  mdmId?: string;
  store: ExtentStore;
  /** peer connections; default: a pool with one ordered connection per peer */
  peers?: DataPlanePool;
  /** data-plane TLS for the default peer pool (this SDS's certificate; dataplane_tls.ts) */
  peerTls?: () => DataPlaneTlsMaterial | null;
  /** monotonic clock for leases and the copy throttle (tests pass a fake) */
  clock?: SdsClock;
  /** IO counters (default: a registry of its own) */
  metrics?: SdsMetrics;
  /** bounds of the hold of forwarded frames ahead of the assignments (default: Limits.sdsEpochHold*) */
  epochHold?: { waitMs?: number; maxFrames?: number; maxBytes?: number };
}

const PEER_WARN_INTERVAL_MS = 5000;
/**
 * FLUSHes that keep coming (FLUSH_STREAK in a row, each within this long of the last) make later
 * write-back writes start their device's sync at once (sync ahead) for this long after the last
 * one: a client that flushes often (fsync per write at QD1) then finds the sync of its writes
 * running or done when its FLUSH reaches each copy, instead of waiting for a whole one. One FLUSH
 * is no pattern: a client that flushes now and then keeps plain write-back (its later writes stay
 * in the page cache until its next FLUSH). PF_FLUSH_ANTICIPATION_MS overrides it for A/B runs (0: off).
 */
const FLUSH_ANTICIPATION_MS = Number(process.env.PF_FLUSH_ANTICIPATION_MS ?? 20);
const FLUSH_STREAK = 3;
/** copy frames on connections of their own (SdsNode.copyPeers); PF_COPY_LANE=off: on the forward link, as before (A/B runs) */
const COPY_LANE = process.env.PF_COPY_LANE !== "off";
/** a target writes copy frames off the loop (rebuildWrite); PF_COPY_APPLY=sync: on it, as before (A/B runs) */
const COPY_APPLY_ASYNC = process.env.PF_COPY_APPLY !== "sync";
/** the one "lane" of a target's CopyOrder: its copy writes in flight */
const APPLY_LANE = "";
/** opcodes that address an extent's range (held behind a copy write of it in flight) */
const EXTENT_ADDRESSED = ((ops: Op[]) => {
  const a = new Uint8Array(256);
  for (const op of ops) a[op] = 1;
  return a;
})([Op.READ, Op.WRITE, Op.REPL_WRITE, Op.TRIM, Op.WRITE_ZEROES, Op.REPL_ZERO, Op.CHECKSUM, Op.REBUILD_WRITE, Op.REBUILD_OWNERS]);
/** after a peer connection failed, heartbeat fast this long (> the MDM's default heartbeat timeout + a rebuild plan) */
const PEER_TROUBLE_FAST_BEAT_MS = 15_000;

/** fences whose timing is kept at once (a fence never released leaves its entry: oldest dropped) */
const FENCE_TIMINGS_KEPT = 64;

export class SdsNode implements RequestHandler {
  readonly sdsId: string;
  readonly store: ExtentStore;
  readonly peers: DataPlanePool;
  /**
   * the copy lane: connections of their own to copy targets for the copies' frames, so client
   * forwards on `peers` never queue behind 1 MiB copy writes (copy_order.ts keeps the order that
   * matters); `peers` itself with PF_COPY_LANE=off (A/B runs)
   */
  readonly copyPeers: DataPlanePool;
  /** handshake keys and who may connect (sds_access.ts) */
  readonly access: SdsAccess;
  /** mapping grants and their revocation floors (grant_book.ts) */
  readonly grants: GrantBook;
  readonly stats: SdsNodeStats = {
    reads: 0,
    writes: 0,
    replWrites: 0,
    zeroes: 0,
    flushes: 0,
    peerFlushesSent: 0,
    fuaSyncs: 0,
    refusedNotOwner: 0,
    refusedStaleEpoch: 0,
    refusedNoLease: 0,
    refusedFailedDevice: 0,
    rebuildWrites: 0,
    forwardsHeld: 0,
    rebuildBytes: 0,
    peerFailures: 0,
    parkedWrites: 0,
    fencesCommitted: 0,
    fencesAborted: 0,
    layerMerges: 0,
  };
  /** V-Tree layer graphs (snapshots) */
  readonly graphs = new LayerGraphs();
  /** write fences of crash-consistent snapshots */
  readonly fence = new WriteFence();
  /** a fence held writes longer than its timeout: ask the MDM (runSds refreshes assignments) */
  onFenceExpired: (() => void) | null = null;
  /** fences past their timeout -> when (this node's clock) */
  private readonly expiredFences = new Map<string, number>();
  /** per fence held here: when FENCE came and how long the drain took (one log line at release) */
  private readonly fenceTimings = new Map<string, { startMs: number; drainedMs: number }>();
  /** the layer admit() resolved the request to (read right after admit, same synchronous step) */
  private admitted: LayerState | null = null;
  appliedMapVersion = 0;
  /** tag of the SDS address list applied (sent with the next fetch: the MDM omits it if unchanged) */
  addressesTag: string | null = null;
  readonly clock: SdsClock;
  readonly copies: CopyEngine;
  readonly metrics: SdsMetrics;
  /** forwarded frames held while ahead of this SDS's assignments (epoch_hold.ts) */
  readonly holds: EpochHolds;
  /** called when a request names a newer epoch than held, or a forwarded frame an extent not held:
   *  the MDM has news (runSds heartbeats at once) */
  onNewerEpoch: (() => void) | null = null;
  /** called when a copy this SDS drives finished (runSds reports it at once) */
  onCopyDone: (() => void) | null = null;
  private assignmentsApplied = false;
  private leaseUntilMs = -Infinity;
  /** peers that are a copy or target of some extent this SDS is primary of */
  private memberPeers = new Set<string>();
  /** peers this SDS forwarded writes to since its last FLUSH began */
  private readonly peersWritten = new Set<string>();
  /** copy frames being written off the loop here as a target (rebuildWrite): while > 0, requests are checked against them */
  private copyApplies = 0;
  /** until then a FLUSH is expected soon after any write (one came within FLUSH_ANTICIPATION_MS): writes start their device's sync ahead */
  private flushExpectedUntilMs = 0;
  private lastFlushMs = -Infinity;
  /** FLUSHes in a row, each within FLUSH_ANTICIPATION_MS of the one before */
  private flushStreak = 0;
  /** forwarded writes refused or lost by an in-sync copy, for the next heartbeat (bounded) */
  private readonly failedForwards = new Map<string, FailedForward>();
  private readonly inflightFlushes = new Set<Promise<Status>>();
  /** application IO per device, which copies yield to (copy_throttle.ts) */
  private readonly appIo = new AppIoGauges();
  private readonly lastPeerWarnMs = new Map<string, number>();
  /** until then heartbeat fast (recovering): a peer connection failed recently */
  private peerTroubleUntilMs = -Infinity;

  constructor(opts: SdsNodeOptions) {
    this.sdsId = opts.sdsId;
    this.store = opts.store;
    // chunks of frozen layers no member reaches are freed once what shadows them is durable
    this.store.liveLayers = (ownerLo) => (this.graphs.pendingKeys(ownerLo).size > 0 ? null : this.graphs.owner(ownerLo));
    this.clock = opts.clock ?? realClock;
    this.metrics = opts.metrics ?? new SdsMetrics(new MetricRegistry(), opts.sdsId);
    this.access = new SdsAccess(opts.sdsId);
    this.grants = new GrantBook(opts.sdsId, this.clock);
    if (opts.mdmId !== undefined) this.access.setMdmId(opts.mdmId);
    // ONE connection per peer: forwarded writes must reach it in the order they were applied
    const peerPool = () => new DataPlanePool({ credentials: this.access, connsPerSds: 1, onLinkDown: () => this.peerLinkDown(), ...(opts.peerTls === undefined ? {} : { tls: opts.peerTls }) });
    this.peers = opts.peers ?? peerPool();
    this.copyPeers = COPY_LANE && opts.peers === undefined ? peerPool() : this.peers;
    this.copies = new CopyEngine({ sdsId: this.sdsId, store: this.store, peers: this.copyPeers, copyLane: this.copyPeers !== this.peers, clock: this.clock, metrics: this.metrics, onDone: () => this.onCopyDone?.(), appIo: this.appIo });
    this.holds = new EpochHolds({
      sdsId: this.sdsId,
      behind: (h) => this.aheadOfAssignments(h),
      handle: (conn, f) => this.handleNow(conn, f),
      askMdm: () => this.onNewerEpoch?.(),
      ...opts.epochHold,
    });
  }

  // ---- heartbeats (runSds) ----

  /** A heartbeat is being sent: its number, for heartbeatAnswered. */
  heartbeatBegun(): number {
    return this.holds.heartbeatBegun();
  }

  /**
   * The MDM answered heartbeat `beat` and this SDS applied the assignments it announced: they
   * are at least as new as anything a peer learned before that heartbeat was sent, so forwarded
   * frames held since before it wait no longer (epoch_hold.ts).
   */
  heartbeatAnswered(beat: number): void {
    this.holds.heartbeatAnswered(beat);
  }

  // ---- lease ----

  /**
   * A heartbeat sent at `sentAtMs` (this node's clock) was answered with `leaseMs`: serve until
   * sentAtMs + leaseMs. Timing from the send, not the answer, keeps the lease inside the one
   * the MDM counts from when it received the heartbeat.
   */
  grantLease(sentAtMs: number, leaseMs: number): void {
    const until = sentAtMs + leaseMs;
    if (until > this.leaseUntilMs) this.leaseUntilMs = until;
  }

  /** True while extents may be served (assignments applied since start and the lease holds). */
  get serving(): boolean {
    return this.assignmentsApplied && this.clock.nowMs() < this.leaseUntilMs;
  }

  /** Milliseconds of lease left (negative once expired). */
  get leaseRemainingMs(): number {
    return this.leaseUntilMs - this.clock.nowMs();
  }

  /**
   * True while this SDS takes part in recovery: it drives a copy that is not done, or holds a
   * copy being built (target). runSds then heartbeats more often, so that the MDM's next step
   * (promotion, the next copy) reaches it sooner.
   */
  get recovering(): boolean {
    if (this.copies.activeJobs > 0) return true;
    // a peer's connection just failed: the MDM may soon plan a rebuild this SDS takes part in
    if (this.clock.nowMs() < this.peerTroubleUntilMs) return true;
    for (const e of this.store.extents()) if (e.role === "target") return true;
    return false;
  }

  /** Copies this SDS drives, for the heartbeat. */
  rebuildReports(): RebuildReport[] {
    return this.copies.reports();
  }

  /** Failed forwards to in-sync copies since the last call (give them back with restoreFailedForwards if unsent). */
  takeFailedForwards(): FailedForward[] {
    const out = [...this.failedForwards.values()];
    this.failedForwards.clear();
    return out;
  }

  restoreFailedForwards(list: readonly FailedForward[]): void {
    for (const f of list) {
      if (this.failedForwards.size >= Limits.maxRebuildReports) break;
      this.failedForwards.set(`${f.volumeId}/${f.extentIndex}/${f.peerSdsId}`, f);
    }
  }

  // ---- assignments ----

  /**
   * Apply the MDM's assignments: extents held with their role (new ones created, changed ones
   * updated), extents not listed freed, copy jobs started or cancelled, throttle updated.
   */
  applyAssignments(resp: SdsAssignmentsResponse, askedAtMs?: number): void {
    const firstApply = !this.assignmentsApplied;
    const changedGraphs = new Map<number, VTreeState>();
    for (const g of resp.vtrees) {
      try {
        const st = this.graphs.apply(g);
        if (st !== null) changedGraphs.set(st.ownerLo, st);
      } catch (e) {
        consola.error(`sds ${this.sdsId}: cannot apply the graph of V-Tree ${g.ownerId} version ${g.version}: ${(e as Error).message}`);
      }
    }
    const newOwners = new Set<number>();
    // an answer without the address list (the MDM saw this SDS holds its current tag) keeps the peers
    if (resp.sds !== undefined) {
      const ids = new Set<string>();
      for (const s of resp.sds) {
        if (s.sdsId === this.sdsId) continue;
        ids.add(s.sdsId);
        this.peers.setAddress(s.sdsId, s.host, s.port);
        if (this.copyPeers !== this.peers) this.copyPeers.setAddress(s.sdsId, s.host, s.port);
      }
      this.peers.retain(ids);
      if (this.copyPeers !== this.peers) this.copyPeers.retain(ids);
      this.access.setPeers(ids);
      this.addressesTag = resp.sdsTag ?? null;
    }
    this.access.apply(resp.dataPlane);
    this.grants.apply(resp.dataPlane);
    const keep = new Set<string>();
    const roleChanges = new RoleChangeCount();
    const writeThrough = new Set(resp.writeThroughVolumes);
    for (const a of resp.extents) {
      const key = `${a.volumeId}/${a.extentIndex}`;
      const role = roleOf(a, this.sdsId);
      if (role === null) {
        consola.error(`sds ${this.sdsId}: assignment of ${key} says ${a.role} but replicas are [${a.replicas.join(", ")}]; holding the copy without serving it`);
        const held = this.store.find(a.volumeId, a.extentIndex);
        if (held !== undefined) {
          keep.add(key);
          this.setRole(held, "away", a, null, roleChanges);
        }
        continue;
      }
      const sizeBytes = resp.extentSizeBytesByVolume[a.volumeId];
      if (sizeBytes === undefined) {
        consola.warn(`sds ${this.sdsId}: assignment of ${key} has no extent size; skipped`);
        if (this.store.find(a.volumeId, a.extentIndex) !== undefined) keep.add(key);
        continue;
      }
      // still assigned to us: never free a copy we hold because its new assignment is unusable
      keep.add(key);
      const prev = this.store.find(a.volumeId, a.extentIndex);
      if (prev !== undefined && a.epoch < prev.epoch) {
        consola.warn(`sds ${this.sdsId}: extent ${key}: assignment epoch ${a.epoch} is older than held ${prev.epoch}; ignored`);
        continue;
      }
      const before = prev === undefined ? null : { role: prev.role, replicas: prev.replicas };
      const owner = idToHalves(a.volumeId);
      if (prev === undefined) newOwners.add(owner.lo);
      // a V-Tree with snapshots is thin past its first layer: no reservation by the SDS
      const thick = a.thick && this.graphs.owner(owner.lo) === null;
      try {
        this.store.put({ volumeId: a.volumeId, extentIndex: a.extentIndex, epoch: a.epoch, sizeBytes, thick, replicas: a.replicas, deviceId: a.deviceId });
      } catch (e) {
        consola.error(`sds ${this.sdsId}: cannot apply the assignment of extent ${key}: ${(e as Error).message}`);
        continue;
      }
      const e = this.store.find(a.volumeId, a.extentIndex);
      if (e === undefined) continue;
      e.writeThrough = writeThrough.has(a.volumeId);
      // what kind of copy a target receives (metrics only): a copy it held before (away) is
      // being resynced; a new one is a rebuild while the extent has a single in-sync copy,
      // otherwise a move. The target cannot see the primary's mode; this is its best reading.
      if (role === "target" && e.role !== "target") e.copyKind = e === prev && prev.role === "away" ? "resync" : e.replicas.length < 2 ? "rebuild" : "move";
      this.setRole(e, role, a, e === prev ? before : null, roleChanges);
    }
    const gone: Extent[] = [];
    for (const e of this.store.extents()) if (!keep.has(e.key)) gone.push(e);
    for (const e of gone) {
      consola.debug(`sds ${this.sdsId}: extent ${e.key} no longer assigned; freeing its space`);
      this.store.drop(e);
    }
    if (gone.length > 0) consola.info(`sds ${this.sdsId}: map version ${resp.mapVersion}: ${gone.length} extent(s) no longer assigned, space freed`);
    const changed = roleChanges.summary();
    if (changed !== null) consola.info(`sds ${this.sdsId}: map version ${resp.mapVersion}: ${changed}`);
    for (const st of this.graphs.ownersList()) {
      if (firstApply || changedGraphs.has(st.ownerLo) || newOwners.has(st.ownerLo)) this.graphChanged(st);
    }
    this.graphs.retainOwners(new Set(resp.vtrees.map((g) => idToHalves(g.ownerId).lo)));
    this.settleFences(resp.liveFences, askedAtMs);
    this.memberPeers = new Set();
    for (const e of this.store.extents()) {
      if (e.role !== "primary") continue;
      for (const r of e.replicas) if (r !== this.sdsId) this.memberPeers.add(r);
      if (e.syncTarget !== null) this.memberPeers.add(e.syncTarget.sdsId);
    }
    // After a restart this process does not know which peers hold writes it forwarded before
    // it died (acknowledged, maybe not yet flushed): the first FLUSH syncs every peer.
    if (!this.assignmentsApplied) for (const p of this.memberPeers) this.peersWritten.add(p);
    this.copies.setPolicies(resp.copyPolicies, resp.rebuildRateBytesPerSec);
    this.copies.reconcile(this.store.extents());
    this.appliedMapVersion = resp.mapVersion;
    this.assignmentsApplied = true;
    // forwarded frames that waited for these assignments go on (in order, per connection)
    this.holds.assignmentsApplied();
  }

  /**
   * Set an extent's role and sync target, and keep its change record (file comment): started
   * or extended when an in-sync copy is dropped while this SDS stays primary, trimmed when
   * copies come back, dropped when this SDS is not primary. `before` is the extent's state
   * before this assignment (null: a copy new to this process, e.g. after a restart).
   */
  private setRole(e: Extent, role: ExtentRole, a: ExtentAssignment, before: { role: ExtentRole; replicas: string[] } | null, changes: RoleChangeCount): void {
    if (role !== e.role) {
      // one line per extent would be 32 info lines for a new 1 GiB volume: debug, plus one
      // info summary per applied map (applyAssignments)
      consola.debug(`sds ${this.sdsId}: extent ${e.key} epoch ${e.epoch}: ${e.role} -> ${role}`);
      changes.add(role);
    }
    e.role = role;
    e.syncTarget = role === "primary" && a.syncTarget !== null && a.syncTarget.sdsId !== this.sdsId ? a.syncTarget : null;
    if (role !== "primary") {
      e.changes = null;
      return;
    }
    if (before === null || before.role !== "primary") {
      e.changes = null; // promoted or restarted: an old primary may hold writes we never saw
      return;
    }
    const dropped = before.replicas.filter((r) => r !== this.sdsId && !e.replicas.includes(r));
    if (dropped.length > 0) this.recordMissing(e, dropped);
    // a copy that joined the in-sync set was just made identical by its copy: the record no
    // longer needs to cover it (one still in the set after a failed forward stays covered)
    const rec = e.changes;
    if (rec !== null) {
      for (const r of e.replicas) if (!before.replicas.includes(r)) rec.missing.delete(r);
      if (rec.missing.size === 0) e.changes = null;
    }
  }

  /** These in-sync copies went missing while this SDS is primary: record changes from now on. */
  private recordMissing(e: Extent, sdsIds: string[]): void {
    if (e.changes === null) {
      e.changes = { chunks: new DirtyChunks(e.chunkCount), missing: new Set() };
      consola.info(`sds ${this.sdsId}: extent ${e.key}: copy on ${sdsIds.join(", ")} missing; recording changed chunks for its resync`);
    }
    for (const r of sdsIds) e.changes.missing.add(r);
  }

  private markChanged(e: Extent, offsetBytes: number, lengthBytes: number): void {
    if (e.changes === null || lengthBytes === 0) return;
    e.changes.chunks.mark(Math.floor(offsetBytes / CHUNK), Math.floor((offsetBytes + lengthBytes - 1) / CHUNK));
  }

  // ---- requests ----

  onRequest(conn: RequestConn, f: Frame): void {
    if (this.holds.offer(conn, f)) return;
    this.handleNow(conn, f);
  }

  /** A forwarded frame ahead of this SDS's assignments: a newer epoch, or an extent not held yet. */
  private aheadOfAssignments(h: FrameHeader): boolean {
    // resolve the frame as admit() does: a forwarded write may name a layer (Flag.LAYER), whose
    // extent is keyed by its V-Tree's owner; a layer or volume no graph here knows yet is ahead
    const layer = this.route(h);
    if (typeof layer === "number") return true;
    const e = this.store.lookup(layer.ownerHi, layer.ownerLo, h.extentIndex);
    return e === undefined || h.epoch > e.epoch;
  }

  private handleNow(conn: RequestConn, f: Frame): void {
    if (this.copyApplies > 0 && this.heldBehindCopyApply(conn, f)) return;
    this.handleInOrder(conn, f);
  }

  /**
   * A request overlapping a copy frame still being written off the loop (rebuildWrite) waits
   * for it, and behind any held request it overlaps: it runs, in arrival order, as it would have
   * after a synchronous write. Requests of other ranges run at once.
   */
  private heldBehindCopyApply(conn: RequestConn, f: Frame): boolean {
    const h = f.header;
    if (EXTENT_ADDRESSED[h.opcode] !== 1) return false;
    const layer = this.route(h);
    if (typeof layer === "number") return false;
    const e = this.store.lookup(layer.ownerHi, layer.ownerLo, h.extentIndex);
    const order = e?.applying ?? null;
    if (e === undefined || order === null) return false;
    // a layer's checksum reads all of it
    const whole = h.opcode === Op.CHECKSUM && (h.flags & Flag.LAYER) !== 0;
    // one whose connection closed meanwhile is dropped, never applied (as epoch_hold.ts does:
    // its sender saw it fail)
    return order.holdIfNeeded(APPLY_LANE, whole ? 0 : h.offset, whole ? e.sizeBytes : h.length, () => {
      if (!conn.closed) this.handleInOrder(conn, f);
    });
  }

  private handleInOrder(conn: RequestConn, f: Frame): void {
    const h = f.header;
    try {
      this.dispatch(conn, h, f);
    } catch (e) {
      // a device error (the device is now Failed and its extents refused): the SDC retries
      // and finds the copy the MDM routes to next
      consola.error(`sds ${this.sdsId}: opcode ${h.opcode} on ${h.volumeHi.toString(16)}${h.volumeLo.toString(16)}/${h.extentIndex} failed: ${(e as Error).message}`);
      conn.reply(h, Status.UNAVAILABLE);
    }
  }

  private dispatch(conn: RequestConn, h: FrameHeader, f: Frame): void {
    switch (h.opcode) {
      case Op.PING:
        conn.reply(h, Status.OK);
        return;
      case Op.READ:
        return this.read(conn, h);
      // writes take a payload that spans socket chunks as its pieces (no reassembly copy)
      case Op.WRITE:
        return this.writePrimary(conn, h, f.scatter ?? f.payload);
      case Op.REPL_WRITE:
        return this.writeSecondary(conn, h, f.scatter ?? f.payload);
      case Op.TRIM:
      case Op.WRITE_ZEROES:
        return this.zeroPrimary(conn, h);
      case Op.REPL_ZERO:
        return this.zeroSecondary(conn, h);
      case Op.FLUSH:
        this.stats.flushes++;
        this.noteFlush();
        ((h.flags & Flag.LOCAL_ONLY) !== 0 ? this.flushLocal() : this.flush()).then((st) => conn.reply(h, st));
        return;
      case Op.CHECKSUM:
        return this.checksum(conn, h);
      case Op.REBUILD_WRITE:
        return this.rebuildWrite(conn, h, f.scatter ?? f.payload);
      case Op.GRANT:
        conn.reply(h, this.grants.present(conn, f.payload));
        return;
      case Op.REBUILD_OWNERS:
        return this.rebuildOwners(conn, h, f.payload);
      case Op.CONTROL:
        return this.control(conn, h, f.payload);
      case Op.HELLO:
      case Op.AUTH:
        conn.reply(h, Status.INVALID);
        return;
      default: {
        const never: never = h.opcode;
        conn.reply(h, Status.INVALID);
        return never;
      }
    }
  }

  /**
   * The layer a frame addresses: with Flag.LAYER the layer it names, else the open layer of the
   * volume it names; a plain V-Tree's single layer when no graph knows the id.
   */
  private route(h: FrameHeader): LayerState | Status {
    if ((h.flags & Flag.LAYER) !== 0) {
      const l = this.graphs.layer(h.volumeHi, h.volumeLo);
      if (l !== null) return l;
      if (this.graphs.owner(h.volumeLo) !== null) {
        this.onNewerEpoch?.(); // a layer our graph lacks: the MDM has a newer one
        return Status.STALE_EPOCH;
      }
      return this.graphs.plainLayer(h.volumeHi, h.volumeLo);
    }
    const m = this.graphs.member(h.volumeHi, h.volumeLo);
    if (m !== null) return m;
    if (this.graphs.owner(h.volumeLo) !== null) return Status.NOT_OWNER; // that volume was removed
    return this.graphs.plainLayer(h.volumeHi, h.volumeLo);
  }

  /**
   * The extent a request addresses, or the refusal status (checked before any device IO); the
   * layer it resolved to is left in this.admitted.
   */
  private admit(conn: RequestConn, h: FrameHeader, use: Use): Extent | Status {
    // an SDC's IO needs a grant for the volume on this connection (grant_book.ts)
    if (use === "client" || (use === "checksum" && conn.role === NodeRole.SDC)) {
      const g = conn.grants.check(h.volumeHi, h.volumeLo, h.opcode !== Op.READ && h.opcode !== Op.CHECKSUM, this.clock.nowMs());
      if (g !== Status.OK) {
        this.grants.refusedIo(conn, h.volumeHi, h.volumeLo, opName(h.opcode), g);
        return g;
      }
    }
    const layer = this.route(h);
    if (typeof layer === "number") {
      if (layer === Status.NOT_OWNER) this.stats.refusedNotOwner++;
      else this.stats.refusedStaleEpoch++;
      return layer;
    }
    // a client names volumes only: writing a layer directly is for copies (frozen layers too)
    if (use === "client" && (h.flags & Flag.LAYER) !== 0) return Status.INVALID;
    this.admitted = layer;
    const e = this.store.lookup(layer.ownerHi, layer.ownerLo, h.extentIndex);
    if (e === undefined) {
      this.stats.refusedNotOwner++;
      return Status.NOT_OWNER;
    }
    if (!this.serving) {
      this.stats.refusedNoLease++;
      return Status.UNAVAILABLE;
    }
    if (h.epoch !== e.epoch) {
      this.stats.refusedStaleEpoch++;
      // a forwarded frame asked when its hold began (epoch_hold.ts); it is past waiting now
      if (h.epoch > e.epoch && !isForwarded(conn, h)) this.onNewerEpoch?.();
      return Status.STALE_EPOCH;
    }
    if (!roleServes(e.role, use) || (use !== "client" && use !== "checksum" && conn.nodeId !== e.replicas[0])) {
      this.stats.refusedNotOwner++;
      return Status.NOT_OWNER;
    }
    if (e.slot.state === "Failed") {
      this.stats.refusedFailedDevice++;
      return Status.UNAVAILABLE;
    }
    if (h.offset + h.length > e.sizeBytes) return Status.INVALID;
    return e;
  }

  private read(conn: RequestConn, h: FrameHeader): void {
    const e = this.admit(conn, h, "client");
    if (typeof e === "number") return conn.reply(h, e);
    if (h.length > Limits.dataMaxPayloadBytes) return conn.reply(h, Status.INVALID);
    this.stats.reads++;
    const t0 = ioNowMs();
    const len = h.length;
    const layer = this.admitted!;
    const out = conn.replyInto(h, len);
    try {
      this.store.read(e, h.offset, out, layer);
    } catch (err) {
      conn.retractReplyInto(h, len);
      this.metrics.primaryRead.fail();
      throw err;
    }
    this.metrics.primaryRead.record(len, (ioNowMs() - t0) / 1000);
  }

  private writePrimary(conn: RequestConn, h: FrameHeader, payload: Bytes): void {
    if (this.fence.holds(h.volumeLo)) return this.parkWrite(conn, h, flatOf(payload));
    const e = this.admit(conn, h, "client");
    if (typeof e === "number") return conn.reply(h, e);
    if (payload.byteLength !== h.length) return conn.reply(h, Status.INVALID);
    const layer = this.admitted!;
    if (this.store.mustWait(e, layer, h.offset, h.length)) return this.waitInGate(conn, h, flatOf(payload), e, layer, true);
    const t0 = ioNowMs();
    this.stats.writes++;
    this.markChanged(e, h.offset, h.length);
    const st = this.store.write(e, h.offset, payload, layer);
    if (st !== Status.OK) {
      this.metrics.primaryWrite.fail();
      return conn.reply(h, st);
    }
    h.gen = ++e.gen;
    this.replicate(conn, h, e, layer, Op.REPL_WRITE, payload, this.metrics.primaryWrite, t0);
  }

  private zeroPrimary(conn: RequestConn, h: FrameHeader): void {
    if (this.fence.holds(h.volumeLo)) return this.parkWrite(conn, h, EMPTY);
    const e = this.admit(conn, h, "client");
    if (typeof e === "number") return conn.reply(h, e);
    const layer = this.admitted!;
    if (this.store.mustWait(e, layer, h.offset, h.length, false)) return this.waitInGate(conn, h, EMPTY, e, layer, false);
    const t0 = ioNowMs();
    this.stats.zeroes++;
    this.markChanged(e, h.offset, h.length);
    const st = this.store.zero(e, h.offset, h.length, layer);
    if (st !== Status.OK) {
      this.metrics.primaryTrim.fail();
      return conn.reply(h, st);
    }
    h.gen = ++e.gen;
    this.replicate(conn, h, e, layer, Op.REPL_ZERO, undefined, this.metrics.primaryTrim, t0);
  }

  /**
   * The extent's earlier operations wait for a chunk preparation (chunk_prep.ts), or this one
   * needs one (zeroed chunks, or copy-on-write copies of a parent's chunks when `cow`): the request
   * runs again, from the top, once they are done (in arrival order).
   */
  private waitInGate(conn: RequestConn, h: FrameHeader, payload: Uint8Array, e: Extent, layer: LayerState, allocates: boolean, cow = allocates): void {
    this.store.waitFor(e, layer, h.offset, allocates ? h.length : 0, () => this.handleNow(conn, { header: h, payload }), cow);
  }

  private parkWrite(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    this.stats.parkedWrites++;
    this.fence.park(conn, h, payload);
  }

  /**
   * Forward to every other in-sync copy and to the sync target (and sync locally for FUA);
   * reply when all are done.
   */
  private replicate(conn: RequestConn, h: FrameHeader, e: Extent, layer: LayerState, op: Op, payload: Bytes | undefined, meter: IoMeter, startMs: number): void {
    // FUA, or a writeThrough pool: durable on every copy before the reply (group commit)
    const durable = (h.flags & Flag.FUA) !== 0 || e.writeThrough;
    const join = new ReplyJoin(conn, h, this.fence, meter, startMs, durable, this.gaugeOf(e.slot));
    const fwd: DataRequest = {
      opcode: op,
      flags: (durable ? Flag.FUA : 0) | Flag.LAYER,
      epoch: h.epoch,
      volumeHi: layer.hi,
      volumeLo: layer.key,
      extentIndex: h.extentIndex,
      offset: h.offset,
      length: h.length,
      gen: h.gen,
    };
    const offset = h.offset;
    const length = h.length;
    for (let i = 1; i < e.replicas.length; i++) this.forward(e, e.replicas[i]!, true, fwd, payload, join, offset, length);
    const t = e.syncTarget;
    if (t !== null && !e.replicas.includes(t.sdsId)) this.forward(e, t.sdsId, false, fwd, payload, join, offset, length);
    if (durable) {
      // told twice: the device's group commit and the metadata's
      join.expect();
      join.expect();
      this.stats.fuaSyncs++;
      this.store.commitWrite(e.slot, join);
    } else if (startMs < this.flushExpectedUntilMs) {
      // FLUSHes come often: the sync starts now (after the forwards are on their sockets), so the
      // FLUSH that follows finds it running or done instead of starting one
      this.store.syncAhead(e.slot);
    }
    join.arm();
  }

  private forward(e: Extent, peer: string, inSync: boolean, fwd: DataRequest, payload: Bytes | undefined, join: ReplyJoin, offset: number, length: number): void {
    const link = this.peers.link(peer);
    join.expect();
    if (link === undefined) {
      this.forwardFailed(e, peer, inSync, offset, length, "no address known", e.epoch);
      join.done(Status.UNAVAILABLE);
      return;
    }
    // a durable forward is synced by the peer before it answers: a FLUSH owes it nothing
    if ((fwd.flags & Flag.FUA) === 0) this.peersWritten.add(peer);
    // a copy of an overlapping chunk to this peer is unanswered on the copy lane: the forward
    // must land after it, so it waits (copy_order.ts; the closure only then)
    const order = e.copyOrder;
    if (order !== null && order.holdIfNeeded(peer, offset, length, () => this.sendForward(e, link, peer, inSync, fwd, payload, join, offset, length))) {
      this.stats.forwardsHeld++;
      return;
    }
    this.sendForward(e, link, peer, inSync, fwd, payload, join, offset, length);
  }

  private sendForward(e: Extent, link: DataPlaneLink, peer: string, inSync: boolean, fwd: DataRequest, payload: Bytes | undefined, join: ReplyJoin, offset: number, length: number): void {
    // payload is a FrameReader view of a socket chunk nobody writes into again, or the views of
    // several (Scatter; see test/dataplane_buffers.test.ts): forward it without a copy
    link.send(
      fwd,
      payload,
      (st) => {
        if (st !== Status.OK) {
          // an epoch refusal is about the epoch the forward was sent with (fwd.epoch), which this
          // SDS may have left by the time the reply comes
          const epoch = st === Status.STALE_EPOCH || st === Status.NOT_OWNER ? fwd.epoch : e.epoch;
          this.forwardFailed(e, peer, inSync, offset, length, `status ${statusName(st)}`, epoch);
        }
        join.done(inSync ? peerStatus(st) : targetStatus(st));
      },
      true,
    );
  }

  /** A forwarded write (sent under `epoch`) did not reach `peer`: the copies may differ on that range. */
  private forwardFailed(e: Extent, peer: string, inSync: boolean, offset: number, length: number, what: string, epoch: number): void {
    this.peerFailed(peer, what);
    e.forwardFailures++;
    if (e.removed || e.role !== "primary") return;
    if (inSync && e.replicas.includes(peer)) {
      this.recordMissing(e, [peer]);
      // tell the MDM in the next heartbeat: that copy must leave the in-sync set and be resynced
      if (this.failedForwards.size < Limits.maxRebuildReports) {
        this.failedForwards.set(`${e.key}/${peer}`, { volumeId: e.volumeId, extentIndex: e.extentIndex, epoch, peerSdsId: peer });
      }
    }
    this.markChanged(e, offset, length);
    this.copies.forwardFailed(e);
  }

  /** A copied range (or, with no payload, a chunk the layer owns as zeros) written as is into its layer. */
  private rebuildWrite(conn: RequestConn, h: FrameHeader, payload: Bytes): void {
    const e = this.admit(conn, h, "rebuild");
    if (typeof e === "number") return conn.reply(h, e);
    const layer = this.admitted!;
    const asZeros = (h.flags & Flag.LAYER) !== 0 && payload.byteLength === 0 && h.length > 0;
    if (this.store.mustWait(e, layer, h.offset, h.length, !asZeros, false)) return this.waitInGate(conn, h, flatOf(payload), e, layer, !asZeros, false);
    if (asZeros) {
      if (h.offset % CHUNK !== 0) return conn.reply(h, Status.INVALID);
      this.stats.rebuildWrites++;
      this.store.ownAsZeros(e, h.offset / CHUNK, layer);
      if (h.gen > e.gen) e.gen = h.gen;
      return conn.reply(h, Status.OK);
    }
    if (payload.byteLength !== h.length) return conn.reply(h, Status.INVALID);
    const t0 = ioNowMs();
    this.stats.rebuildWrites++;
    this.stats.rebuildBytes += h.length;
    const meter = this.metrics.copyWrite[e.copyKind];
    if (!COPY_APPLY_ASYNC) {
      const st = this.store.writeOwned(e, h.offset, payload, layer);
      if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
      if (st === Status.OK) meter.record(h.length, (ioNowMs() - t0) / 1000);
      else meter.fail();
      return conn.reply(h, st);
    }
    // off the loop (ExtentStore.writeOwnedAsync): until it is in the page cache, requests
    // overlapping its chunks wait (heldBehindCopyApply); the reply comes after, so the primary
    // sends nothing of this chunk that must land on top of it before then either (copy_order.ts)
    const order = (e.applying ??= new CopyOrder());
    const first = Math.floor(h.offset / CHUNK);
    const last = Math.floor((h.offset + h.length - 1) / CHUNK);
    for (let c = first; c <= last; c++) order.begin(APPLY_LANE, c, 1);
    this.copyApplies++;
    const finish = (st: Status): void => {
      this.copyApplies--;
      if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
      if (st === Status.OK) meter.record(h.length, (ioNowMs() - t0) / 1000);
      else meter.fail();
      conn.reply(h, st);
      // then the requests held behind it, in order (they may start writes of their own)
      for (let c = first; c <= last; c++) order.end(APPLY_LANE, c);
      if (order.idle && e.applying === order) e.applying = null;
    };
    const st = this.store.writeOwnedAsync(e, h.offset, flatOf(payload), layer, finish);
    if (st !== null) finish(st);
  }

  /** A copy frame: only the listed layers own this chunk; the target drops it from the others. */
  private rebuildOwners(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    const e = this.admit(conn, h, "rebuild");
    if (typeof e === "number") return conn.reply(h, e);
    if (h.offset % CHUNK !== 0) return conn.reply(h, Status.INVALID);
    if (this.store.mustWait(e, this.admitted!, h.offset, 0, false)) return this.waitInGate(conn, h, payload, e, this.admitted!, false);
    let keys: number[];
    try {
      keys = decodeLayerKeys(payload);
    } catch {
      return conn.reply(h, Status.INVALID);
    }
    this.store.keepOwners(e, h.offset / CHUNK, keys);
    conn.reply(h, Status.OK);
  }

  /**
   * The layer of a forwarded write, checked: known and not frozen. A layer only a pending graph
   * has commits that fence here (file comment).
   */
  private replicaLayer(h: FrameHeader): Status | null {
    if ((h.flags & Flag.LAYER) === 0) return null;
    const pend = this.graphs.pendingFenceOfLayer(h.volumeHi, h.volumeLo);
    if (pend !== null) {
      consola.info(`sds ${this.sdsId}: a forwarded write into a new layer shows fence ${pend} committed`);
      this.commitFence(pend);
    }
    const l = this.graphs.layer(h.volumeHi, h.volumeLo);
    if (l !== null && l.frozen) {
      this.stats.refusedStaleEpoch++;
      return Status.STALE_EPOCH;
    }
    return null;
  }

  private writeSecondary(conn: RequestConn, h: FrameHeader, payload: Bytes): void {
    const refused = this.replicaLayer(h);
    if (refused !== null) return conn.reply(h, refused);
    const e = this.admit(conn, h, "replica");
    if (typeof e === "number") return conn.reply(h, e);
    if (payload.byteLength !== h.length) return conn.reply(h, Status.INVALID);
    const layer = this.admitted!;
    if (this.store.mustWait(e, layer, h.offset, h.length)) return this.waitInGate(conn, h, flatOf(payload), e, layer, true);
    const t0 = ioNowMs();
    this.stats.replWrites++;
    const st = this.store.write(e, h.offset, payload, layer);
    if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
    this.finishSecondary(conn, h, e, st, this.metrics.secondaryWrite, t0);
  }

  private zeroSecondary(conn: RequestConn, h: FrameHeader): void {
    const refused = this.replicaLayer(h);
    if (refused !== null) return conn.reply(h, refused);
    const e = this.admit(conn, h, "replica");
    if (typeof e === "number") return conn.reply(h, e);
    const layer = this.admitted!;
    if (this.store.mustWait(e, layer, h.offset, h.length, false)) return this.waitInGate(conn, h, EMPTY, e, layer, false);
    const t0 = ioNowMs();
    this.stats.zeroes++;
    const st = this.store.zero(e, h.offset, h.length, layer);
    if (st === Status.OK && h.gen > e.gen) e.gen = h.gen;
    this.finishSecondary(conn, h, e, st, this.metrics.secondaryTrim, t0);
  }

  private finishSecondary(conn: RequestConn, h: FrameHeader, e: Extent, st: Status, meter: IoMeter, startMs: number): void {
    const bytes = h.length;
    if (st !== Status.OK) {
      meter.fail();
      return conn.reply(h, st);
    }
    if ((h.flags & Flag.FUA) === 0 && !e.writeThrough) {
      meter.record(bytes, (ioNowMs() - startMs) / 1000);
      conn.reply(h, st);
      // the primary's FLUSH is expected soon (see replicate): start the sync after the reply
      if (startMs < this.flushExpectedUntilMs) this.store.syncAhead(e.slot);
      return;
    }
    this.stats.fuaSyncs++;
    this.store.commitWrite(e.slot, new DurableReply(conn, h, meter, startMs));
  }

  /** CHECKSUM: of what a layer itself owns (Flag.LAYER), or of a volume's content through its chain. */
  private checksum(conn: RequestConn, h: FrameHeader): void {
    const e = this.admit(conn, h, "checksum");
    if (typeof e === "number") return conn.reply(h, e);
    const layer = this.admitted!;
    const sum = (h.flags & Flag.LAYER) !== 0 ? this.store.checksumLayer(e, layer.key) : this.store.checksum(e, h.offset, h.length, layer);
    sum.then(
      (sum) => {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, sum, true);
        conn.reply(h, Status.OK, out);
      },
      (err: unknown) => {
        consola.warn(`sds ${this.sdsId}: checksum of ${e.volumeId}/${e.extentIndex} failed: ${String(err)}`);
        conn.reply(h, Status.IO_ERROR);
      },
    );
  }

  // ---- snapshots: graphs and fences ----

  /** Op.CONTROL from the MDM (src/proto/vtree_control.ts). */
  private control(conn: RequestConn, h: FrameHeader, payload: Uint8Array): void {
    let req: ControlRequest;
    try {
      req = decodeControl(payload);
    } catch (e) {
      consola.warn(`sds ${this.sdsId}: bad CONTROL from ${conn.peer}: ${e instanceof FrameError ? e.message : String(e)}`);
      return conn.reply(h, Status.INVALID);
    }
    switch (req.kind) {
      case "fence":
        return this.startFence(conn, h, req);
      case "commit":
        // the graph switches now; the parked writes go right after the reply is out
        this.commitFence(req.fenceId, true);
        return conn.reply(h, Status.OK);
      case "abort":
        this.abortFence(req.fenceId);
        return conn.reply(h, Status.OK);
      default: {
        const never: never = req;
        return never;
      }
    }
  }

  private startFence(conn: RequestConn, h: FrameHeader, req: Extract<ControlRequest, { kind: "fence" }>): void {
    try {
      for (const g of req.graphs) this.graphs.prepare(req.fenceId, g);
    } catch (e) {
      this.graphs.abort(req.fenceId);
      consola.warn(`sds ${this.sdsId}: fence ${req.fenceId} refused: ${(e as Error).message}`);
      return conn.reply(h, Status.STALE_EPOCH);
    }
    const volumes = req.holdVolumeIds.map((id) => idToHalves(id).lo);
    const timing = { startMs: ioNowMs(), drainedMs: -1 };
    if (this.fenceTimings.size >= FENCE_TIMINGS_KEPT) this.fenceTimings.delete(this.fenceTimings.keys().next().value!);
    this.fenceTimings.set(req.fenceId, timing);
    this.fence.hold(req.fenceId, volumes, req.timeoutMs, () => this.fenceExpired(req.fenceId)).then(() => {
      timing.drainedMs = ioNowMs() - timing.startMs;
      conn.reply(h, Status.OK);
    });
  }

  /** The MDM committed the fence (or a graph or forwarded write shows it did): new layers from now on. */
  commitFence(fenceId: string, releaseLater = false): void {
    for (const st of this.graphs.commit(fenceId)) this.graphChanged(st);
    this.expiredFences.delete(fenceId);
    if (!releaseLater) {
      if (this.releaseParked(fenceId)) this.stats.fencesCommitted++;
      return;
    }
    // new writes of the held volumes keep parking behind the parked ones until this runs
    setImmediate(() => {
      if (this.releaseParked(fenceId)) this.stats.fencesCommitted++;
    });
  }

  abortFence(fenceId: string): void {
    this.graphs.abort(fenceId);
    this.expiredFences.delete(fenceId);
    if (this.releaseParked(fenceId)) this.stats.fencesAborted++;
  }

  /** Serve a fence's parked writes against the graph now current; false if it held nothing. */
  private releaseParked(fenceId: string): boolean {
    const active = this.fence.active().includes(fenceId);
    const t0 = ioNowMs();
    const parked = this.fence.release(fenceId);
    for (const w of parked) this.onRequest(w.conn, { header: w.header, payload: w.payload });
    const timing = this.fenceTimings.get(fenceId);
    this.fenceTimings.delete(fenceId);
    if (timing !== undefined && active) {
      // where a fence's pause goes on this SDS: FENCE -> writes admitted before it answered, the
      // wait for COMMIT, re-serving the parked writes (bench/snapshots.ts reads these lines)
      consola.info(
        `sds ${this.sdsId}: fence ${fenceId}: drained ${timing.drainedMs.toFixed(1)} ms, held ${(t0 - timing.startMs).toFixed(1)} ms, ${parked.length} parked write(s) re-served in ${(ioNowMs() - t0).toFixed(1)} ms`,
      );
    }
    return active;
  }

  private fenceExpired(fenceId: string): void {
    consola.warn(`sds ${this.sdsId}: fence ${fenceId} held writes for its whole timeout; asking the MDM how it ended`);
    this.expiredFences.set(fenceId, this.clock.nowMs());
    this.onFenceExpired?.();
  }

  /** Fences waiting for an answer after their timeout (runSds keeps asking while any). */
  get fencesInDoubt(): number {
    return this.expiredFences.size;
  }

  /**
   * After assignments: a fence whose graphs are all applied was committed; one past its timeout
   * that the MDM (asked after that timeout) no longer runs, and whose graphs it has not
   * committed, was aborted.
   */
  private settleFences(liveFences: readonly string[], askedAtMs: number | undefined): void {
    for (const fenceId of this.fence.active()) {
      if (this.graphs.pendingOf(fenceId).length === 0) this.commitFence(fenceId);
    }
    if (askedAtMs === undefined) return;
    for (const [fenceId, expiredAtMs] of [...this.expiredFences]) {
      if (expiredAtMs > askedAtMs || liveFences.includes(fenceId)) continue;
      if (this.graphs.pendingOf(fenceId).length > 0) {
        consola.warn(`sds ${this.sdsId}: the MDM no longer runs fence ${fenceId} and did not commit it: aborting it here`);
        this.abortFence(fenceId);
      } else this.expiredFences.delete(fenceId);
    }
  }

  /**
   * A newer graph of a V-Tree is current: run its merges (idempotent) and free the layers it no
   * longer has, extent by extent, each in one synchronous step; point plain reads at its head.
   */
  private graphChanged(st: VTreeState): void {
    const pending = this.graphs.pendingKeys(st.ownerLo);
    const head = st.layers.get(st.headChain[0]!)!;
    for (const e of this.store.extentsOf(st.ownerLo)) {
      if (e.volumeHi !== st.ownerHi) continue;
      for (const m of st.merges) {
        const r = this.store.mergeLayer(e, m.fromKey, { key: m.intoKey, id: m.intoId });
        if (r.relabelled + r.freed > 0) this.stats.layerMerges++;
      }
      for (const key of [...e.layers.keys()]) {
        if (st.layers.has(key) || pending.has(key)) continue;
        const freed = this.store.dropLayer(e, key);
        consola.debug(`sds ${this.sdsId}: extent ${e.key}: layer ${key.toString(16)} is gone; ${freed} chunk(s) freed`);
      }
      e.head = head;
    }
  }

  /** Chunks owned per layer of every V-Tree with a graph, for the heartbeat (bounded). */
  layerChunks(): LayerUsage[] {
    const usage = this.store.layerUsage();
    const out: LayerUsage[] = [];
    for (const st of this.graphs.ownersList()) {
      for (const l of st.layers.values()) {
        if (out.length >= Limits.maxLayerUsageReports) return out;
        out.push({ layerId: l.id, chunks: usage.get(l.key)?.chunks ?? 0 });
      }
    }
    return out;
  }

  /** The device's app IO gauge, cached on its slot (the same object AppIoGauges holds for its id). */
  private gaugeOf(slot: DeviceSlot): AppIoGauge {
    return (slot.appIo ??= this.appIo.of(slot.deviceId));
  }

  // ---- flush ----

  /** A FLUSH came: after FLUSH_STREAK of them, each within FLUSH_ANTICIPATION_MS of the last, writes sync ahead (replicate). */
  private noteFlush(): void {
    const now = ioNowMs();
    this.flushStreak = now - this.lastFlushMs <= FLUSH_ANTICIPATION_MS ? this.flushStreak + 1 : 1;
    this.lastFlushMs = now;
    if (this.flushStreak >= FLUSH_STREAK) this.flushExpectedUntilMs = now + FLUSH_ANTICIPATION_MS;
  }

  /** Make every write this SDS applied so far durable on its own devices (a peer's FLUSH). */
  private flushLocal(): Promise<Status> {
    return this.store.flushWritten((slot) => this.lostWithOtherCopies(slot)).then(
      () => Status.OK,
      (err: unknown) => {
        consola.error(`sds ${this.sdsId}: flush failed: ${String(err)}`);
        return Status.IO_ERROR;
      },
    );
  }

  /** Make every write acknowledged so far durable here and on every peer forwarded to. */
  flush(): Promise<Status> {
    // a peer no longer a copy of anything this SDS is primary of owes nothing any more
    const peers = [...this.peersWritten].filter((p) => this.memberPeers.has(p));
    this.peersWritten.clear();
    // the peers' FLUSHes first: they are queued on their sockets before the local sync is handed
    // to the thread pool (the device commit starts it at the end of this task), so both run at once
    const parts: Promise<Status>[] = [];
    for (const peer of peers) parts.push(this.flushPeer(peer));
    parts.push(this.flushLocal());
    const own = Promise.all(parts).then(worstOf);
    const tracked = own.finally(() => this.inflightFlushes.delete(tracked));
    // an earlier flush still in flight may cover writes acked before this one: wait for it
    const waits = [tracked, ...this.inflightFlushes];
    this.inflightFlushes.add(tracked);
    return Promise.all(waits).then(worstOf);
  }

  /**
   * A Failed device may be left out of a flush when every extent on it has another in-sync
   * copy (which the FLUSH reaches): its own copies are lost and will be rebuilt from those.
   */
  private lostWithOtherCopies(slot: DeviceSlot): boolean {
    if (slot.state !== "Failed") return false;
    for (const e of this.store.extents()) if (e.slot === slot && e.role === "primary" && e.replicas.length < 2) return false;
    return true;
  }

  private flushPeer(peer: string): Promise<Status> {
    const link = this.peers.link(peer);
    if (link === undefined) {
      this.peersWritten.add(peer);
      return Promise.resolve(Status.UNAVAILABLE);
    }
    this.stats.peerFlushesSent++;
    return link.request({ opcode: Op.FLUSH, flags: Flag.LOCAL_ONLY, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }).then((r) => {
      if (r.status === Status.OK) return Status.OK;
      this.peersWritten.add(peer); // still owes durability
      this.peerFailed(peer, `FLUSH status ${r.status}`);
      return Status.UNAVAILABLE;
    });
  }

  /** A connection to a peer SDS failed: heartbeat fast for a while, so a rebuild plan that follows reaches this SDS at once. */
  private peerLinkDown(): void {
    this.peerTroubleUntilMs = this.clock.nowMs() + PEER_TROUBLE_FAST_BEAT_MS;
  }

  private peerFailed(peer: string, what: string): void {
    this.stats.peerFailures++;
    const now = performance.now();
    if (now - (this.lastPeerWarnMs.get(peer) ?? -Infinity) < PEER_WARN_INTERVAL_MS) return;
    this.lastPeerWarnMs.set(peer, now);
    consola.warn(`sds ${this.sdsId}: peer SDS ${peer} failed a forwarded request (${what}); not acknowledging it (further failures muted ${PEER_WARN_INTERVAL_MS / 1000}s)`);
  }

  close(): void {
    this.holds.close();
    this.copies.close();
    this.fence.close();
    this.peers.close();
    if (this.copyPeers !== this.peers) this.copyPeers.close();
  }
}

/**
 * A secondary's reply to a durable (FUA / writeThrough) forwarded write: sent once both the
 * device's and the metadata's group commit covered it.
 */
class DurableReply implements CommitWaiter {
  private left = 2;
  private ok = true;
  constructor(
    private readonly conn: RequestConn,
    private readonly h: FrameHeader,
    private readonly meter: IoMeter,
    private readonly startMs: number,
  ) {}

  committed(ok: boolean): void {
    if (!ok) this.ok = false;
    if (--this.left > 0) return;
    if (this.ok) this.meter.record(this.h.length, (ioNowMs() - this.startMs) / 1000);
    else this.meter.fail();
    this.conn.reply(this.h, this.ok ? Status.OK : Status.UNAVAILABLE);
  }
}

/**
 * Counts outstanding parts of one reply; the worst status wins. The reply is the request's
 * completion: an OK one is metered (bytes, latency since startMs), any other counts as failed.
 * It counts as in flight for write fences until it replies.
 */
class ReplyJoin implements CommitWaiter {
  private outstanding = 0;
  private armed = false;
  private status: Status = Status.OK;
  private readonly bytes: number;
  private readonly era: number;
  constructor(
    private readonly conn: RequestConn,
    private readonly h: FrameHeader,
    private readonly fence: WriteFence,
    private readonly meter: IoMeter,
    private readonly startMs: number,
    /** every copy's group commit is part of this reply (FUA / writeThrough): an OK says DURABLE */
    private readonly durable: boolean,
    /** the device's app writes in flight (copies under favorAppIos wait for them) and their latency (dynamicBwThrottling's tuner) */
    private readonly appIo: AppIoGauge,
  ) {
    this.bytes = h.length;
    this.era = fence.enter();
    appIo.begin();
  }

  expect(): void {
    this.outstanding++;
  }

  /** a group commit this reply waits for (ok: the copy here is durable) */
  committed(ok: boolean): void {
    this.done(ok ? Status.OK : Status.UNAVAILABLE);
  }

  done(st: Status): void {
    if (st !== Status.OK && this.status === Status.OK) this.status = st;
    this.outstanding--;
    if (this.armed && this.outstanding === 0) this.finish();
  }

  /** All parts are issued; reply now if they all finished already. */
  arm(): void {
    this.armed = true;
    if (this.outstanding === 0) this.finish();
  }

  private finish(): void {
    const ms = this.status === Status.OK ? ioNowMs() - this.startMs : -1;
    if (ms >= 0) this.meter.record(this.bytes, ms / 1000);
    else this.meter.fail();
    // the local commit and every in-sync copy's durable forward answered OK: nothing to FLUSH
    if (this.durable && this.status === Status.OK) this.h.flags |= Flag.DURABLE;
    this.conn.reply(this.h, this.status);
    this.fence.done(this.era);
    this.appIo.end(ms); // the copy tuner's samples (dynamicBwThrottling)
  }
}

/** Role changes of one applied map, for its one-line summary. */
class RoleChangeCount {
  private readonly byRole = new Map<ExtentRole, number>();
  add(role: ExtentRole): void {
    this.byRole.set(role, (this.byRole.get(role) ?? 0) + 1);
  }
  /** "16 extent(s) changed role (now 8 primary, 8 secondary)", or null when none did */
  summary(): string | null {
    let total = 0;
    const parts: string[] = [];
    for (const [role, n] of this.byRole) {
      total += n;
      parts.push(`${n} ${role}`);
    }
    return total === 0 ? null : `${total} extent(s) changed role (now ${parts.join(", ")})`;
  }
}

const EMPTY = new Uint8Array(0);

/** How a peer's answer to a forwarded request shows in the reply to the client. */
function peerStatus(st: Status): Status {
  switch (st) {
    case Status.OK:
    case Status.NO_SPACE:
    case Status.STALE_EPOCH:
      return st;
    case Status.IO_ERROR:
      return Status.UNAVAILABLE; // the copy's device failed: the MDM routes around it
    case Status.NOT_OWNER:
      return Status.STALE_EPOCH; // the two copies disagree on membership: the client refreshes
    case Status.INVALID:
    case Status.READ_ONLY:
    case Status.UNAUTHORIZED:
    case Status.UNAVAILABLE:
    case Status.NO_GRANT:
    case Status.GRANT_EXPIRED:
    case Status.GRANT_REVOKED:
    case Status.GRANT_WRONG_SDC:
      return Status.UNAVAILABLE;
    default: {
      const never: never = st;
      return never;
    }
  }
}

/** A sync target's answer: anything but OK makes the client retry (the MDM drops a dead target). */
function targetStatus(st: Status): Status {
  return st === Status.OK ? Status.OK : Status.UNAVAILABLE;
}

/**
 * The role an assignment gives this SDS, checked against the replica list (primary first);
 * null when they disagree. A primary/secondary assignment is placed by the replica list (an
 * MDM that sends no role gets the schema's default, "primary", for every copy).
 */
function roleOf(a: ExtentAssignment, me: string): ExtentRole | null {
  const i = a.replicas.indexOf(me);
  switch (a.role) {
    case "primary":
    case "secondary":
      if (i < 0) return null;
      return i === 0 ? "primary" : "secondary";
    case "target":
    case "away":
      return i >= 0 ? null : a.role;
    default: {
      const never: never = a.role;
      return never;
    }
  }
}

function roleServes(role: ExtentRole, use: Use): boolean {
  switch (role) {
    case "primary":
      return use === "client" || use === "checksum";
    case "secondary":
      return use === "replica" || use === "checksum";
    case "target":
      return use === "replica" || use === "rebuild" || use === "checksum";
    case "away":
      return false;
    default: {
      const never: never = role;
      return never;
    }
  }
}

function worstOf(all: Status[]): Status {
  for (const s of all) if (s !== Status.OK) return s;
  return Status.OK;
}

