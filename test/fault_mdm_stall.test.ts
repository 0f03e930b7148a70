// The MDM itself stands still (SIGSTOP for longer than the heartbeat timeout, as a blocked event
// loop or a VM pause would): when it wakes, its recovery tick runs before the heartbeats that
// queued up meanwhile. It must not read its own stall as every node's silence: no SDS is
// declared down, no alert is raised, no extent changes, and IO goes on (after the SDS leases,
// which did run out, are renewed) with every block verifying.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { runFio } from "./helpers/real_clients.ts";
import { verifyJob, waitFor } from "./helpers/recovery.ts";
import { HealthTracker, TickLateness } from "../src/mdm/core/health.ts";

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({ mdmYaml: "heartbeatTimeout: 3s", volumes: [{ name: "vol1", size: "512MiB" }] });
  await c.start();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
}, 30_000);

test("forgiveStall moves every deadline by the stall, never past now; TickLateness measures a blocked loop", () => {
  let now = 0;
  const h = new HealthTracker(() => now, 5000);
  h.sdsSeen("s1", 1);
  h.sdcSeen("c1", 1);
  now = 6000;
  expect(h.sdsState("s1")).toBe("Disconnected");
  h.forgiveStall(4000); // seen at 0 + 4000: 2000 ms ago
  expect(h.sdsState("s1")).toBe("Connected");
  expect(h.sdcState("c1")).toBe("Connected");
  h.forgiveStall(60_000); // never past now
  now = 6000 + 4999;
  expect(h.sdsState("s1")).toBe("Connected");
  now = 6000 + 5000;
  expect(h.sdsState("s1")).toBe("Disconnected");

  const t = new TickLateness(100, 200);
  expect(t.late()).toBe(0);
  const until = performance.now() + 450;
  while (performance.now() < until) {
    // the loop blocked for 450 ms
  }
  const late = t.late();
  expect(late).toBeGreaterThan(300);
  expect(late).toBeLessThan(450);
});

test("SIGSTOP of the MDM past the heartbeat timeout, then SIGCONT: nothing is declared down, IO goes on", async () => {
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "before", sizeMiB: 32 }));
  const pid = c.pidOf("mdm");
  const mark = c.output.length;
  process.kill(pid, "SIGSTOP");
  await Bun.sleep(6000); // 2 x the heartbeat timeout; the SDS leases (below it) run out too
  process.kill(pid, "SIGCONT");
  await waitFor("the MDM to notice its stall", 10_000, async () => c.output.slice(mark).includes("stood still"));
  await Bun.sleep(3000); // heartbeats resume; any wrong decision would have been taken by now
  const after = c.output.slice(mark);
  expect(after).not.toContain("SDS_DISCONNECTED");
  expect(after).not.toContain("UNAVAILABLE");
  expect(after).not.toMatch(/degraded|rebuild/i);
  // the data is intact and IO works again
  await runFio([...verifyJob(c.nbdUri("vol1"), { name: "before", sizeMiB: 32 }), "--verify_only"]);
  await runFio(verifyJob(c.nbdUri("vol1"), { name: "after", sizeMiB: 16, offsetMiB: 64 }));
}, 90_000);
