// The copy loop an SDS drives as the primary of an extent with a sync target (rebuild onto a new
// SDS, resync of a returning one, move): chunk by chunk (Limits.thinChunkBytes), throttled per
// source device by the pool's I/O priority policy (copy_throttle.ts: rebuild and resync by the
// rebuild policy, moves by the rebalance policy; its token bucket serves the oldest job first, so
// copies end one after another and the younger ones keep the rate busy while the MDM plans the
// next), at most Limits.rebuildCopiesPerTarget chunk copies in flight per target SDS, with
// progress for the heartbeat's RebuildReport.
//
// What is copied: mode "full", and mode "resync" without a trustworthy change record for that
// target, go over every chunk; mode "resync" with a record (sds_node.ts keeps it while a copy is
// missing) goes over the recorded chunks only. A chunk is copied with every layer that owns it
// (snapshots): REBUILD_OWNERS names those layers (the target drops the chunk from all others,
// so a target holding stale ownership ends identical), then one REBUILD_WRITE per owning layer
// with Flag.LAYER: its data, or no payload for a layer owning the chunk as zeros.
//
// Ordering (durability-and-resync.md §7(c)). The primary forwards every client write to the
// target from the moment the assignment names it (sds_node.ts), over ONE ordered connection per
// peer, and the target applies frames in arrival order. A chunk copy reads the local data and
// queues its frames in one synchronous step of the event loop: every client write to the chunk
// applied before it (finished or still in flight) is contained in the data read; every write
// applied after it must land on top of it. The copy's frames go on a connection of their own
// (the copy lane, SdsNode.copyPeers), so a forward could overtake them: from that step until the
// target answered the chunk's last frame, the chunk is in flight (Extent.copyOrder), and a
// forward overlapping it is held until then (copy_order.ts; the target applies a frame before it
// answers it, also when it writes it off its loop). A forward applied before the read may land
// before or after the copy: the copy contains it, so either order ends identical. Other ranges
// never wait. (PF_COPY_LANE=off sends the frames on the forward link, as before: then the send
// order alone is the range lock.)
//
// Invariants:
// - a job reports done only after every planned chunk reached the target with OK, no forwarded
//   write to any copy of the extent failed meanwhile (else it starts over after a pause), and a
//   FLUSH made the target's copy durable;
// - a job belongs to one (extent, epoch, target, mode); any change of the assignment cancels it;
// - a job that failed reports done=false until its retry finishes; the MDM may re-plan meanwhile.

import { consola } from "consola";
import type { DeviceCopyPolicy, RebuildReport, SyncTarget } from "../proto/cluster_api.ts";
import { Flag, Op, Status, encodeLayerKeys } from "../proto/dataplane.ts";
import type { DataPlanePool, DataRequest } from "../proto/dataplane_client.ts";
import { ioNowMs } from "../proto/io_meter.ts";
import { Limits } from "../proto/limits.ts";
import { idToHalves } from "../proto/ids.ts";
import type { Extent, ExtentStore } from "./extent_store.ts";
import type { SdsClock } from "./sds_clock.ts";
import type { CopyKind, SdsMetrics } from "./sds_metrics.ts";
import { AppIoGauges, DeviceThrottle, Slots, legacyPolicy, type CopyPermit } from "./copy_throttle.ts";
import { returnPayload, takePayload } from "../proto/payload_pool.ts";
import { CopyOrder } from "./copy_order.ts";

const CHUNK = Limits.thinChunkBytes;
const REBUILD_FIRST_RETRY_MS = 100;
/**
 * A copy asks its target to FLUSH (without waiting) after this many chunks, except under
 * dynamicBwThrottling: there the target writes back at the copy's final FLUSH only (each mid-copy
 * fdatasync, 60-170 ms on the bench's disk, stalls the target's writes of client forwards; the p99
 * figures in docs/design.md, "Client latency during a copy").
 */
const COPY_SYNC_EVERY_CHUNKS = 8;

export interface CopyStats {
  /** REBUILD_WRITE frames and their payload bytes sent */
  rebuildWritesSent: number;
  rebuildBytesSent: number;
  /** chunks a copy sent as owned by no layer here (the target drops them) */
  rebuildZeroesSent: number;
  jobsDone: number;
  jobsFailed: number;
}

export interface CopyEngineDeps {
  sdsId: string;
  store: ExtentStore;
  /** links to copy targets: the copy lane (sds_node.ts copyPeers) or the forward links themselves */
  peers: DataPlanePool;
  /** `peers` is the copy lane, not the ordered forward link: chunks in flight are tracked for the forwards (copy_order.ts) */
  copyLane?: boolean;
  clock: SdsClock;
  /** copy traffic is counted in metrics.copyRead (the target counts its writes) */
  metrics: SdsMetrics;
  /** a copy finished: the MDM wants to know soon (runSds sends a heartbeat early) */
  onDone?: () => void;
  /** application IO per device (sds_node.ts counts it): writes in flight for favorAppIos, their latency for dynamicBwThrottling's tuner */
  appIo?: AppIoGauges;
}

/** A device's throttles: rebuild and resync by the pool's rebuild policy, moves by its rebalance policy. */
interface DeviceThrottles {
  rebuild: DeviceThrottle;
  rebalance: DeviceThrottle;
  /** the MDM named this device's policies (else the legacy per-device rate applies) */
  listed: boolean;
}

type JobState = "running" | "done" | "failed" | "cancelled";

class CopyJob {
  state: JobState = "running";
  copiedBytes = 0;
  totalBytes = 0;
  attempts = 0;
  /** resync when the mode says so; else a rebuild while the extent has one in-sync copy, a move otherwise */
  readonly kind: CopyKind;
  constructor(
    readonly e: Extent,
    readonly epoch: number,
    readonly target: SyncTarget,
    /** start order on this SDS: the bucket serves older jobs first (token_bucket.ts) */
    readonly order: number,
  ) {
    this.kind = target.mode === "resync" ? "resync" : e.replicas.length < 2 ? "rebuild" : "move";
  }

  /** still the copy the assignment asks for */
  get current(): boolean {
    const e = this.e;
    return this.state !== "cancelled" && !e.removed && e.epoch === this.epoch && e.role === "primary" && e.syncTarget?.sdsId === this.target.sdsId && e.syncTarget.mode === this.target.mode;
  }
}

export class CopyEngine {
  readonly stats: CopyStats = { rebuildWritesSent: 0, rebuildBytesSent: 0, rebuildZeroesSent: 0, jobsDone: 0, jobsFailed: 0 };
  readonly appIo: AppIoGauges;
  private readonly throttles = new Map<string, DeviceThrottles>();
  private legacyRateBytesPerSec = 0;
  private readonly jobs = new Map<string, CopyJob>();
  private readonly slotsByTarget = new Map<string, Slots>();
  private closed = false;
  private jobsStarted = 0;

  constructor(private readonly deps: CopyEngineDeps) {
    this.appIo = deps.appIo ?? new AppIoGauges();
  }

  /**
   * The copy policies of this SDS's devices (assignment answer). A device not listed (an older
   * MDM) copies at `legacyRateBytesPerSec` with no concurrency cap, as before policies existed.
   */
  setPolicies(policies: readonly DeviceCopyPolicy[], legacyRateBytesPerSec: number): void {
    this.legacyRateBytesPerSec = legacyRateBytesPerSec;
    const listed = new Set<string>();
    for (const p of policies) {
      listed.add(p.deviceId);
      const t = this.throttlesOf(p.deviceId);
      t.listed = true;
      t.rebuild.set(p.rebuild);
      t.rebalance.set(p.rebalance);
    }
    for (const [id, t] of this.throttles) {
      if (listed.has(id)) continue;
      t.listed = false;
      this.applyLegacy(t);
    }
  }

  /** A device the MDM named no policy for: the legacy per-device rate on both classes, no concurrency cap. */
  private applyLegacy(t: DeviceThrottles): void {
    t.rebuild.set(legacyPolicy(this.legacyRateBytesPerSec));
    t.rebalance.set(legacyPolicy(this.legacyRateBytesPerSec));
  }

  /** A device's throttle for a kind of copy (tests and the control port read its counters). */
  throttleOf(deviceId: string, kind: CopyKind): DeviceThrottle {
    const t = this.throttlesOf(deviceId);
    return kind === "move" ? t.rebalance : t.rebuild;
  }

  /** Per device and class: the policy applied and its counters (the control port's status). */
  throttleFigures(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const [deviceId, t] of this.throttles) {
      for (const [cls, d] of [["rebuild", t.rebuild], ["rebalance", t.rebalance]] as const) {
        const p = d.current;
        out.push({
          deviceId,
          class: cls,
          fromMdm: t.listed,
          policy: p.policy,
          concurrentIosPerDevice: Number.isFinite(p.concurrentIosPerDevice) ? p.concurrentIosPerDevice : null,
          bwLimitBytesPerSec: p.bwLimitBytesPerSec,
          rateBytesPerSec: d.bucket.rate,
          inFlight: d.inFlight,
          maxInFlight: d.maxInFlight,
          yieldsDrained: d.yieldsDrained,
          yieldsTimedOut: d.yieldsTimedOut,
          ...(p.policy === "dynamicBwThrottling"
            ? { tuner: { verdict: d.tuner.lastVerdict, steps: d.tuner.steps, baselineMs: d.tuner.baselineMs, lastMeanMs: d.tuner.lastMeanMs, lastRatio: d.tuner.lastRatio } }
            : {}),
        });
      }
    }
    return out;
  }

  private throttlesOf(deviceId: string): DeviceThrottles {
    let t = this.throttles.get(deviceId);
    if (t === undefined) {
      const gauge = this.appIo.of(deviceId);
      t = { rebuild: new DeviceThrottle(this.deps.clock, gauge), rebalance: new DeviceThrottle(this.deps.clock, gauge), listed: false };
      this.applyLegacy(t);
      this.throttles.set(deviceId, t);
    }
    return t;
  }

  /** Start, keep or cancel jobs so that exactly the held primaries with a sync target have one. */
  reconcile(extents: Iterable<Extent>): void {
    if (this.closed) return;
    const want = new Set<string>();
    for (const e of extents) {
      const t = e.syncTarget;
      if (e.role !== "primary" || t === null || t.sdsId === this.deps.sdsId) continue;
      want.add(e.key);
      const j = this.jobs.get(e.key);
      if (j !== undefined && j.e === e && j.current) continue;
      if (j !== undefined) j.state = "cancelled";
      const job = new CopyJob(e, e.epoch, { ...t }, this.jobsStarted++);
      this.jobs.set(e.key, job);
      void this.run(job);
    }
    for (const [key, j] of this.jobs) {
      if (want.has(key)) continue;
      j.state = "cancelled";
      this.jobs.delete(key);
    }
  }

  /** Progress of every copy driven here (bounded), for the heartbeat. */
  reports(): RebuildReport[] {
    const out: RebuildReport[] = [];
    for (const j of this.jobs.values()) {
      if (j.state === "cancelled") continue;
      if (out.length >= Limits.maxRebuildReports) break;
      out.push({
        volumeId: j.e.volumeId,
        extentIndex: j.e.extentIndex,
        epoch: j.epoch,
        targetSdsId: j.target.sdsId,
        copiedBytes: j.copiedBytes,
        totalBytes: j.totalBytes,
        done: j.state === "done",
      });
    }
    return out;
  }

  /**
   * A forwarded write of this extent failed (sds_node.ts counted it in e.forwardFailures): a
   * running job notices by itself; a finished one may no longer be identical, so it starts over.
   */
  forwardFailed(e: Extent): void {
    const j = this.jobs.get(e.key);
    if (j === undefined || j.e !== e || j.state !== "done" || !j.current || this.closed) return;
    consola.warn(`sds ${this.deps.sdsId}: a forwarded write of extent ${e.key} failed after its copy to SDS ${j.target.sdsId} finished; copying again`);
    void this.run(j);
  }

  /** Number of jobs not yet done (tests, logs). */
  get activeJobs(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.state === "running" || j.state === "failed") n++;
    return n;
  }

  close(): void {
    this.closed = true;
    for (const j of this.jobs.values()) j.state = "cancelled";
    this.jobs.clear();
  }

  // ---- one job ----

  private async run(job: CopyJob): Promise<void> {
    const e = job.e;
    const tag = `sds ${this.deps.sdsId}: copy of extent ${e.key} (epoch ${job.epoch}) to SDS ${job.target.sdsId} (${job.target.mode})`;
    while (job.current && !this.closed) {
      job.state = "running";
      job.attempts++;
      const failuresAtStart = e.forwardFailures;
      const plan = this.plan(job);
      const reason = await this.copyAll(job, plan, failuresAtStart);
      if (!job.current) return;
      if (reason === null) {
        const st = await this.flushTarget(job);
        if (!job.current) return;
        if (st === Status.OK && e.forwardFailures === failuresAtStart) {
          job.state = "done";
          this.stats.jobsDone++;
          consola.info(`${tag}: done, ${job.copiedBytes} bytes in ${plan.length} chunk(s)`);
          this.deps.onDone?.();
          return; // reported done until the assignment changes or forwardFailed() restarts it
        }
      }
      job.state = "failed";
      this.stats.jobsFailed++;
      // the first attempts usually fail because the target has not applied its assignment yet
      // (the MDM's answers reach the SDSs at different heartbeats): retry soon, then back off
      const waitMs = Math.min(Limits.rebuildRetryMs, REBUILD_FIRST_RETRY_MS * 2 ** (job.attempts - 1));
      const log = job.attempts <= 2 ? consola.info : consola.warn;
      log(`${tag}: attempt ${job.attempts} failed (${reason ?? "target flush or a forwarded write failed"}); retrying in ${waitMs} ms`);
      await this.deps.clock.sleep(waitMs);
    }
  }

  /** Chunks to visit and the data bytes they are expected to carry. */
  private plan(job: CopyJob): number[] {
    const e = job.e;
    const rec = e.changes;
    const chunks: number[] = [];
    if (job.target.mode === "resync" && rec !== null && rec.missing.has(job.target.sdsId)) {
      chunks.push(...rec.chunks.list());
    } else {
      for (let c = 0; c < e.chunkCount; c++) chunks.push(c);
    }
    job.copiedBytes = 0;
    job.totalBytes = 0;
    for (const c of chunks) job.totalBytes += dataBytesOf(e, c);
    return chunks;
  }

  /** Copy every planned chunk; null when all went through, else why not. */
  private async copyAll(job: CopyJob, plan: number[], failuresAtStart: number): Promise<string | null> {
    let next = 0;
    let failure: string | null = null;
    let copiedSinceSync = 0;
    const worker = async (): Promise<void> => {
      while (failure === null && next < plan.length) {
        if (!job.current) {
          failure = "assignment changed";
          return;
        }
        if (job.e.forwardFailures !== failuresAtStart) {
          failure = "a forwarded write failed during the copy";
          return;
        }
        const chunk = plan[next++]!;
        const st = await this.copyChunk(job, chunk);
        if (st !== Status.OK && failure === null) failure = `chunk ${chunk}: status ${st}`;
        // let the target write back as the copy goes (not all at its final FLUSH, which then
        // holds the disk for the whole extent at the end): a FLUSH every few chunks, not waited for
        if (st === Status.OK && ++copiedSinceSync >= COPY_SYNC_EVERY_CHUNKS && this.throttleOf(job.e.slot.deviceId, job.kind).current.policy !== "dynamicBwThrottling") {
          copiedSinceSync = 0;
          void this.flushTarget(job);
        }
      }
    };
    const workers: Promise<void>[] = [];
    for (let i = 0; i < Limits.rebuildCopiesPerTarget; i++) workers.push(worker());
    await Promise.all(workers);
    return failure;
  }

  private async copyChunk(job: CopyJob, chunk: number): Promise<Status> {
    const e = job.e;
    const len = chunkLength(e, chunk);
    const plannedBytes = dataBytesOf(e, chunk);
    const planned = plannedBytes > 0;
    const slots = this.slotsFor(job.target.sdsId);
    let permit: CopyPermit | null = null;
    if (planned) {
      // the device's throttle first (tokens, then its copy slot and any yield to app IO), then a
      // target slot: a target slot caps chunks on the wire, and one held while its chunk waits for
      // tokens left a single chunk in flight per target (each waited its turn in the bucket, then
      // a round trip), below the rate whenever a round trip took longer than a chunk's share of
      // the rate (1 MiB at 50 MB/s: 20 ms). Every send still follows its take.
      permit = await this.throttleOf(e.slot.deviceId, job.kind).admit(plannedBytes, job.order, () => !job.current);
      await slots.acquire(job.order);
    }
    try {
      if (!job.current) return Status.UNAVAILABLE;
      const link = this.deps.peers.link(job.target.sdsId);
      if (link === undefined) return Status.UNAVAILABLE;
      // ---- one synchronous step: look, read, queue (see the file comment) ----
      const at = chunk * CHUNK;
      const owners = e.ownersOf(chunk);
      const base = { epoch: e.epoch, extentIndex: e.extentIndex, offset: at, length: len, gen: e.gen };
      const sent: Promise<Status>[] = [];
      // the chunk is in flight to the target until its last frame is answered: forwards of writes
      // applied from now on that overlap it wait for that (copy_order.ts), as they would behind
      // these frames on one ordered link
      // (counted per frame as it is queued: a read that throws leaves none counted unsent)
      const target = job.target.sdsId;
      const order = this.deps.copyLane === true ? (e.copyOrder ??= new CopyOrder()) : null;
      const answered = (st: Status, resolve: (st: Status) => void) => {
        if (order !== null) {
          order.end(target, chunk);
          if (order.idle && e.copyOrder === order) e.copyOrder = null;
        }
        resolve(st);
      };
      const send = (h: DataRequest, payload: Uint8Array | undefined) => {
        order?.begin(target, chunk, 1);
        sent.push(new Promise<Status>((resolve) => link.send(h, payload, (st) => answered(st, resolve), true)));
      };
      send({ ...base, opcode: Op.REBUILD_OWNERS, flags: 0, volumeHi: e.volumeHi, volumeLo: e.volumeLo }, encodeLayerKeys(owners));
      if (owners.length === 0) this.stats.rebuildZeroesSent++;
      const taken: Uint8Array[] = [];
      let bytes = 0;
      for (const key of owners) {
        const layerId = e.layerIds.get(key)!;
        const { hi } = idToHalves(layerId);
        const h: DataRequest = { ...base, opcode: Op.REBUILD_WRITE, flags: Flag.LAYER, volumeHi: hi, volumeLo: key };
        if (e.own(key, chunk) >= 0) {
          const payload = takePayload(len); // every byte is read into it; given back once the target answered
          taken.push(payload);
          const t0 = ioNowMs();
          this.deps.store.read(e, at, payload, { key, id: layerId, chain: [key] });
          this.deps.metrics.copyRead[job.kind].record(len, (ioNowMs() - t0) / 1000);
          this.stats.rebuildWritesSent++;
          this.stats.rebuildBytesSent += len;
          bytes += len;
          send(h, payload);
        } else send(h, undefined); // owned as zeros
      }
      const statuses = await Promise.all(sent);
      for (const p of taken) returnPayload(p);
      // ---- end of the step: the replies only tell whether the target holds it ----
      const bad = statuses.find((st) => st !== Status.OK);
      if (bad !== undefined) return bad;
      job.copiedBytes += bytes;
      return Status.OK;
    } catch (err) {
      consola.error(`sds ${this.deps.sdsId}: reading chunk ${chunk} of ${e.key} for a copy failed: ${String(err)}`);
      return Status.IO_ERROR;
    } finally {
      if (planned) slots.release();
      permit?.release();
    }
  }

  private async flushTarget(job: CopyJob): Promise<Status> {
    const link = this.deps.peers.link(job.target.sdsId);
    if (link === undefined) return Status.UNAVAILABLE;
    const r = await link.request({ opcode: Op.FLUSH, flags: Flag.LOCAL_ONLY, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 });
    return r.status;
  }


  private slotsFor(sdsId: string): Slots {
    let s = this.slotsByTarget.get(sdsId);
    if (s === undefined) {
      s = new Slots(Limits.rebuildCopiesPerTarget);
      this.slotsByTarget.set(sdsId, s);
    }
    return s;
  }
}

function chunkLength(e: Extent, chunk: number): number {
  return Math.min(CHUNK, e.sizeBytes - chunk * CHUNK);
}

/** Data bytes a copy of this chunk carries: its length once per layer owning it with data. */
function dataBytesOf(e: Extent, chunk: number): number {
  let n = 0;
  for (const key of e.ownersOf(chunk)) if (e.own(key, chunk) >= 0) n++;
  return n * chunkLength(e, chunk);
}
