// The observe step's recovery figures are paced by what they cost (src/mdm/observe/recovery_pacing.ts):
// cheap ones are fresh every step, a dear one is reused for its cost / SHARE, and a scrape takes
// the step's figures instead of computing them again. The cost is injected into the cache (no
// timing): the rule is what is tested, on an in-process MDM with a fake clock. Figures that show
// no recovery work are also reused while nothing they are computed from changes (the last
// tests); the pacing tests mark theirs as not quiet (quietKey null) to test the pacing alone.

import { afterEach, expect, test } from "bun:test";
import { observedRecoveryStatus, PACE_FROM_MS, scrapedRecoveryStatus, SHARE } from "../src/mdm/observe/recovery_pacing.ts";
import { ObserveCluster } from "./mdm_observe_fixture.ts";

let oc: ObserveCluster | undefined;
afterEach(() => {
  oc?.close();
  oc = undefined;
});

test("cheap recovery figures are computed at every observe step", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("v1");
  const first = observedRecoveryStatus(oc.ctx);
  oc.ctx.observe.recoveryCache!.costMs = PACE_FROM_MS - 1;
  oc.ctx.observe.recoveryCache!.quietKey = null;
  const again = observedRecoveryStatus(oc.ctx); // same clock instant, but cheap: fresh
  expect(again).not.toBe(first);
  expect([...again.keys()]).toEqual([...first.keys()]);
});

test("dear recovery figures are reused for cost / SHARE, then computed again; a scrape takes them meanwhile", async () => {
  oc = await ObserveCluster.open();
  await oc.volume("v1");
  const dear = observedRecoveryStatus(oc.ctx);
  const costMs = 300;
  oc.ctx.observe.recoveryCache!.costMs = costMs;
  oc.ctx.observe.recoveryCache!.quietKey = null;
  const reuseMs = costMs / SHARE; // 3 s
  oc.m.clock.advance(reuseMs - 1000);
  expect(observedRecoveryStatus(oc.ctx)).toBe(dear);
  expect(scrapedRecoveryStatus(oc.ctx)).toBe(dear); // older than a scrape's 2 s, still the paced figures
  await oc.tick(); // 1 s later: reuseMs reached, the step computes them again
  const fresh = observedRecoveryStatus(oc.ctx);
  expect(fresh).not.toBe(dear);
  expect(oc.ctx.observe.recoveryCache!.status).toBe(fresh);
});

test("a scrape reuses the observe step's fresh figures and computes its own once they are old", async () => {
  oc = await ObserveCluster.open();
  await oc.tick();
  const step = oc.ctx.observe.recoveryCache!.status;
  expect(scrapedRecoveryStatus(oc.ctx)).toBe(step);
  oc.ctx.observe.recoveryCache!.costMs = 1;
  oc.ctx.observe.recoveryCache!.quietKey = null;
  oc.m.clock.advance(2500);
  const own = scrapedRecoveryStatus(oc.ctx);
  expect(own).not.toBe(step);
  expect(oc.ctx.observe.recoveryCache!.status).toBe(own);
});

test("a clock stepped back does not freeze dear figures: they are computed again", async () => {
  oc = await ObserveCluster.open();
  const dear = observedRecoveryStatus(oc.ctx);
  oc.ctx.observe.recoveryCache!.costMs = 1000; // reused for 10 s while time runs forward
  oc.ctx.observe.recoveryCache!.quietKey = null;
  oc.m.clock.advance(-3_600_000); // NTP stepped back an hour
  const again = observedRecoveryStatus(oc.ctx);
  expect(again).not.toBe(dear);
});
