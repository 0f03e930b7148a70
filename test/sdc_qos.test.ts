// The SDC's per-mapping QoS gate with a fake clock: the rate holds, the burst is one second of
// the limit, FLUSH always passes, a request larger than the bucket still goes (once the bucket
// is full) without breaking the long-run rate, 0 is unlimited, and a limit changes live.

import { describe, expect, test } from "bun:test";
import { QosGate } from "../src/sdc/qos_gate.ts";

function fakeClock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

/** Requests admitted in `ms` of simulated time when the client always has one waiting. */
function drive(g: QosGate, clock: ReturnType<typeof fakeClock>, ms: number, bytes: number): number {
  const end = clock.now() + ms;
  let n = 0;
  while (clock.now() < end) {
    const wait = g.admit("io", bytes);
    if (wait === 0) n++;
    else clock.advance(wait);
  }
  return n;
}

describe("QoS gate", () => {
  test("500 IOPS: one second of burst, then 500 per second", () => {
    const clock = fakeClock();
    const g = new QosGate(clock.now);
    g.setLimits(500, 0);
    expect(drive(g, clock, 1, 4096)).toBe(500); // the burst
    const n = drive(g, clock, 10_000, 4096);
    expect(Math.abs(n - 5000)).toBeLessThanOrEqual(2);
  });

  test("bandwidth: bytes per second, big requests included; FLUSH is never held", () => {
    const clock = fakeClock();
    const g = new QosGate(clock.now);
    g.setLimits(0, 1024 * 1024); // 1 MiB/s
    drive(g, clock, 1, 64 * 1024); // drain the burst
    const n = drive(g, clock, 10_000, 64 * 1024);
    expect(Math.abs(n - 160)).toBeLessThanOrEqual(2); // 10 MiB in 64 KiB requests
    expect(g.admit("flush", 0)).toBe(0);
    const huge = drive(g, clock, 20_000, 4 * 1024 * 1024); // 4 MiB requests > the 1 MiB bucket
    expect(Math.abs(huge - 5)).toBeLessThanOrEqual(1);
  });

  test("0 is unlimited; a live change applies at once", () => {
    const clock = fakeClock();
    const g = new QosGate(clock.now);
    g.setLimits(0, 0);
    for (let i = 0; i < 10_000; i++) expect(g.admit("io", 1 << 20)).toBe(0);
    g.setLimits(100, 0);
    drive(g, clock, 1, 4096);
    expect(Math.abs(drive(g, clock, 5000, 4096) - 500)).toBeLessThanOrEqual(2);
    g.setLimits(1000, 0);
    expect(Math.abs(drive(g, clock, 5000, 4096) - 5000)).toBeLessThanOrEqual(2);
    g.setLimits(0, 0);
    expect(g.admit("io", 4096)).toBe(0);
  });
});
