// The node side of the cluster API's mapWatch long poll (SDS and SDC): one request held open at
// the MDM that is answered as soon as a change that takes access away concerns this node (an
// unmap, a switch to ReadOnly, an NBD certificate revocation; other changes at the end of the
// wait, as a heartbeat would tell them), so the node fetches its assignments or maps within a
// round trip instead of at its next heartbeat. Heartbeats stay what they are (liveness, lease, the
// fallback when a watch is down); a failed watch is retried after a growing pause.
//
// Invariants: at most one watch per node is in flight; a watch never renews a lease or counts
// as a heartbeat; fetches it causes are at least WATCH_MIN_GAP_MS apart, so a burst of changes (a
// script mapping 100 volumes) costs each node a few fetches, not one per change; stop() ends
// the loop without waiting for the held request.

import { consola } from "consola";
import { ClusterPaths, MapWatchResponse } from "./cluster_api.ts";
import { Limits } from "./limits.ts";
import { clusterRequest, type MdmEndpoint } from "./mdm_http.ts";

/** A held watch gives up this long after the MDM should have answered it. */
const WATCH_SLACK_MS = 3000;
/** pause after a failed watch, doubled per failure up to the max */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/** fetches caused by the watch start at least this far apart (bench/mdm_scale.ts plays the same) */
export const WATCH_MIN_GAP_MS = 200;

export interface MapWatchOptions {
  mdm: MdmEndpoint;
  kind: "sds" | "sdc";
  nodeId: string;
  /** the map version the node applies now */
  applied(): number;
  /** the MDM has a map change for this node: fetch and apply it */
  onChange(): Promise<void>;
}

export class MapWatch {
  private stopped = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(private readonly o: MapWatchOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    let failures = 0;
    let lastChangeMs = -Infinity;
    while (!this.stopped) {
      try {
        const askedAt = performance.now();
        const r = await clusterRequest(
          { ...this.o.mdm, timeoutMs: Limits.mapWatchMaxMs + WATCH_SLACK_MS },
          {
            method: "GET",
            path: ClusterPaths.mapWatch(this.o.kind, this.o.nodeId, { after: this.o.applied(), waitMs: Limits.mapWatchMaxMs }),
            schema: MapWatchResponse,
          },
        );
        failures = 0;
        if (this.stopped) return;
        if (r.mapVersion === this.o.applied()) {
          // nothing new: normally after the whole wait; an early one (the MDM's version behind
          // ours, a change rolled back) must not turn into a loop of round trips
          const earlyMs = askedAt + WATCH_MIN_GAP_MS - performance.now();
          if (earlyMs > 0) await this.pause(earlyMs);
          continue;
        }
        const waitMs = lastChangeMs + WATCH_MIN_GAP_MS - performance.now();
        if (waitMs > 0) await this.pause(waitMs);
        lastChangeMs = performance.now();
        if (!this.stopped) await this.o.onChange();
      } catch (e) {
        if (this.stopped) return;
        if (failures++ === 0) consola.debug(`${this.o.kind} ${this.o.nodeId}: map watch failed (heartbeats carry map changes meanwhile): ${(e as Error).message}`);
        await this.pause(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures - 1, 5)));
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }
}

/**
 * Runs an async task at most once at a time. A call made while a run is in flight gets a further
 * run that starts after it (shared by every call made meanwhile), never the run already under
 * way: that one may have asked the MDM before the change the caller heard about.
 */
export class FreshRun {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(private readonly task: () => Promise<void>) {}

  run(): Promise<void> {
    if (this.running === null) return this.begin();
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.begin();
      });
    return this.queued;
  }

  private begin(): Promise<void> {
    const p = this.task().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}
