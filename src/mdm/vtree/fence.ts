// The MDM half of a write fence (snapshots-qos.md §6.3, proto/vtree_control.ts): every SDS
// holding a copy of the V-Trees' extents gets FENCE (the new graphs, kept pending, and the
// volumes whose writes it must hold); when all acknowledged (each has drained its in-flight
// writes), the caller's commit runs as one sqlite transaction; then COMMIT releases the held
// writes into the new layers (the caller is answered without waiting for the COMMIT acks). A
// missing acknowledgement within Limits.fenceAckTimeoutMs aborts.
// Graph changes are serialized per MDM (one at a time), so versions never interleave.
//
// Invariants: the commit decision is final and made synchronously together with removing the
// fence from the live set, so an SDS that asks (assignments list live fences) after the MDM
// decided never sees an aborted fence as live nor a committed one as aborted; an MDM restart
// forgets live fences: whatever was not committed is aborted (the database says so).

import { randomBytes } from "node:crypto";
import consola from "consola";
import type { VTreeGraph } from "../../proto/cluster_api.ts";
import { Op, Status, statusName } from "../../proto/dataplane.ts";
import { DataPlanePool } from "../../proto/dataplane_client.ts";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import { encodeControl, type ControlRequest } from "../../proto/vtree_control.ts";
import type { MdmContext } from "../core/context.ts";
import { mdmDataPlanePool } from "../core/mdm_dataplane.ts";

interface FenceState {
  pool: DataPlanePool | null;
  live: Set<string>;
  /** the graph-change queue: each change waits for the one before */
  tail: Promise<void>;
  /** the last fences' hold times (ms, MDM view: FENCE sent -> COMMIT acknowledged), newest last */
  holdMs: number[];
}

const states = new WeakMap<MdmContext, FenceState>();

/**
 * Fault injection (tests): PF_FAULT_FENCE_COMMIT_DELAY_MS keeps every fence held this long
 * between the last SDS acknowledgement and the commit, so a test can kill a role mid-fence.
 */
const COMMIT_DELAY_MS = Number(process.env.PF_FAULT_FENCE_COMMIT_DELAY_MS ?? 0) || 0;

function stateOf(ctx: MdmContext): FenceState {
  let s = states.get(ctx);
  if (s === undefined) {
    s = { pool: null, live: new Set(), tail: Promise.resolve(), holdMs: [] };
    states.set(ctx, s);
  }
  return s;
}

/** Fences running now (SDS assignments carry them). */
export function liveFences(ctx: MdmContext): string[] {
  return [...stateOf(ctx).live];
}

/** Hold times of the last fences, ms (newest last; at most 100). */
export function recentFenceHoldMs(ctx: MdmContext): readonly number[] {
  return stateOf(ctx).holdMs;
}

/** Run graph changes one at a time (snapshot, restore, remove). */
export function withGraphLock<T>(ctx: MdmContext, fn: () => Promise<T> | T): Promise<T> {
  const s = stateOf(ctx);
  const run = s.tail.then(fn);
  s.tail = run.then(
    () => undefined,
    () => undefined,
  );
  return run;
}

function poolOf(ctx: MdmContext): DataPlanePool {
  return mdmDataPlanePool(ctx);
}

async function send(ctx: MdmContext, sdsId: string, req: ControlRequest, timeoutMs: number): Promise<Status> {
  const link = poolOf(ctx).link(sdsId);
  if (link === undefined) return Status.UNAVAILABLE;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<Status>((resolve) => {
    timer = setTimeout(() => resolve(Status.UNAVAILABLE), timeoutMs);
  });
  const reply = link.request({ opcode: Op.CONTROL, flags: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0 }, encodeControl(req)).then((r) => r.status);
  try {
    return await Promise.race([reply, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface FencePlan {
  /** SDSs holding a copy (in-sync or target) of the V-Trees' extents */
  holders: string[];
  /** the V-Trees' new graphs (version = current + 1) */
  graphs: VTreeGraph[];
  /** volumes whose writes are held while the cut is made */
  holdVolumeIds: string[];
  /** for logs: what the fence is for */
  what: string;
  /**
   * answer only once every SDS acknowledged COMMIT (or Limits.fenceCommitWaitMs passed): reads
   * are never held, so a restore must not answer while an SDS still reads the old layers
   */
  waitCommits?: boolean;
}

/**
 * Fence, commit, release. `commit` runs only if every holder acknowledged the fence in time;
 * its result is returned. Any failure before the commit aborts (nothing changed anywhere).
 */
export async function runFenced<T>(ctx: MdmContext, plan: FencePlan, commit: () => T): Promise<T> {
  const s = stateOf(ctx);
  const fenceId = randomBytes(8).toString("hex");
  const started = performance.now();
  s.live.add(fenceId);
  let result: T;
  let ackedAt = 0;
  let committedAt = 0;
  try {
    const acks = await Promise.all(
      plan.holders.map(async (sdsId) => ({
        sdsId,
        st: await send(ctx, sdsId, { kind: "fence", fenceId, graphs: plan.graphs, holdVolumeIds: plan.holdVolumeIds, timeoutMs: Limits.fenceHoldTimeoutMs }, Limits.fenceAckTimeoutMs),
      })),
    );
    const bad = acks.filter((a) => a.st !== Status.OK);
    if (bad.length > 0) {
      throw new PfError("UNAVAILABLE", `${plan.what}: SDS ${bad.map((b) => `${b.sdsId} (${statusName(b.st)})`).join(", ")} did not hold writes in time; nothing was changed, retry`);
    }
    if (COMMIT_DELAY_MS > 0) {
      consola.warn(`mdm: ${plan.what}: fault injection holds the fence ${COMMIT_DELAY_MS} ms before committing`);
      await Bun.sleep(COMMIT_DELAY_MS);
    }
    if (!s.live.has(fenceId)) throw new PfError("INTERNAL", `${plan.what}: fence ${fenceId} vanished`);
    ackedAt = performance.now();
    result = commit();
    committedAt = performance.now();
    s.live.delete(fenceId);
  } catch (e) {
    s.live.delete(fenceId);
    void Promise.all(plan.holders.map((sdsId) => send(ctx, sdsId, { kind: "abort", fenceId }, Limits.fenceCommitWaitMs)));
    throw e;
  }
  // COMMIT goes out now and the caller gets its answer without waiting for the SDSs: a write
  // issued after the answer reaches an SDS that either committed already or still holds it (and
  // releases it into the new layers when COMMIT, or a graph in its assignments, arrives)
  const commits = Promise.all(plan.holders.map(async (sdsId) => ({ sdsId, st: await send(ctx, sdsId, { kind: "commit", fenceId }, Limits.fenceCommitWaitMs) }))).then((done) => {
    const late = done.filter((d) => d.st !== Status.OK);
    if (late.length > 0) consola.warn(`mdm: ${plan.what}: committed; SDS ${late.map((d) => d.sdsId).join(", ")} will learn it from its assignments`);
    const heldMs = performance.now() - started;
    s.holdMs.push(heldMs);
    if (s.holdMs.length > 100) s.holdMs.shift();
    consola.info(
      `mdm: ${plan.what}: fence over ${plan.holders.length} SDS(s), writes held ${heldMs.toFixed(1)} ms (acks ${(ackedAt - started).toFixed(1)}, commit ${(committedAt - ackedAt).toFixed(1)}, releases ${(performance.now() - committedAt).toFixed(1)})`,
    );
  });
  if (plan.waitCommits === true) await commits;
  return result;
}

/** Close the fence connections (MDM stop). */
export function closeFences(ctx: MdmContext): void {
  stateOf(ctx).pool?.close();
}
