// CPU time of processes from /proc/<pid>/stat (utime + stime, in clock ticks), for benches that
// report CPU microseconds per IO per role: far less sensitive to the other load on a shared
// machine than wall-clock throughput. Linux only; a process that is gone reads as its last value.

import { readFileSync } from "node:fs";

/** Clock ticks per second (USER_HZ); 100 on every Linux this runs on. */
const TICKS_PER_SECOND = Number(process.env.CLK_TCK ?? 100);

/** CPU seconds (user + system) the process has used so far; NaN when it does not exist. */
export function cpuSecondsOf(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return Number.NaN;
  }
  // fields after the ")" of the command name: state is field 3; utime 14, stime 15
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / TICKS_PER_SECOND;
}

/** A named set of processes whose CPU use is sampled before and after a run. */
export class CpuSampler {
  private before = new Map<string, number>();
  constructor(private readonly pids: ReadonlyMap<string, number>) {}

  start(): void {
    this.before = new Map([...this.pids].map(([name, pid]) => [name, cpuSecondsOf(pid)]));
  }

  /** CPU seconds used by each process since start(). */
  stop(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, pid] of this.pids) out.set(name, cpuSecondsOf(pid) - (this.before.get(name) ?? Number.NaN));
    return out;
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
