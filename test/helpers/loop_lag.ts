// How late this test process's own event loop ran: a timing assertion on a loaded host allows
// for it instead of a fixed margin that a busy CI machine sometimes exceeds.

/** The most this process's event loop ran late (ms) between loopLag() and stop(). */
export function loopLag(): { stop(): number } {
  const tickMs = 10;
  let last = performance.now();
  let maxLateMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxLateMs = Math.max(maxLateMs, now - last - tickMs);
    last = now;
  }, tickMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.round(maxLateMs);
    },
  };
}
