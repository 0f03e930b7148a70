// The observe room's once-a-second step (main.ts runs it on a Limits.observeTickMs timer; tests
// call it with a fake clock): one system-wide history sample, the alert rules applied, and now
// and then the IO totals of removed objects forgotten. Each part is cheap: the sample reads one
// window per reporter, the rules read per-object rows (SDSs, SDCs, devices, pools), never
// extents beyond the recovery view's attention set.

import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import { applyAlerts, type AlertChanges } from "./alerts.ts";
import { systemSample } from "./io_live.ts";
import { observeStamp } from "./observe_cache.ts";

const RETAIN_EVERY_MS = 60_000;

export function observeTick(ctx: MdmContext): AlertChanges {
  const now = ctx.clock();
  const obs = ctx.observe;
  const t0 = performance.now();
  if (now - obs.lastHistoryMs >= Limits.historyIntervalMs / 2) {
    obs.history.push(systemSample(ctx, now));
    obs.lastHistoryMs = now;
  }
  const changes = applyAlerts(ctx);
  if (now - obs.lastRetainMs >= RETAIN_EVERY_MS) {
    obs.lastRetainMs = now;
    // no object made or removed since the last time (observe_cache.ts): nothing new to forget (a
    // read of every volume id, 100,000 of them, skipped), but at least every RETAIN_ANYWAY_MS
    // (totals a node reported meanwhile for an object already gone)
    const stamp = observeStamp(ctx);
    const last = obs.retainedAt;
    if (stamp !== null && last?.stamp === stamp && now >= last.atMs && now - last.atMs < RETAIN_ANYWAY_MS) return finish(changes);
    if (stamp !== null) obs.retainedAt = { stamp, atMs: now };
    const ids = (table: string) => new Set(ctx.store.sqlite.query<{ id: string }, []>(`SELECT id FROM ${table}`).all().map((r) => r.id));
    obs.io.retain({ volumes: ids("volume"), sdcs: ids("sdc"), sdss: ids("sds"), devices: ids("device") });
  }
  return finish(changes);
  function finish(c: AlertChanges): AlertChanges {
    obs.lastTickMs = performance.now() - t0;
    return c;
  }
}

const RETAIN_ANYWAY_MS = 10 * RETAIN_EVERY_MS;
