// The clock an SDS core reads: monotonic milliseconds (leases, copy throttle) and a sleep.
// Passed in so tests can drive lease expiry without waiting.

export interface SdsClock {
  /** monotonic milliseconds (never wall-clock time: leases must not jump with NTP) */
  nowMs(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: SdsClock = {
  nowMs: () => performance.now(),
  sleep: (ms) => Bun.sleep(ms),
};
