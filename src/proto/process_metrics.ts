// Process-level metrics every role exports next to its own: CPU seconds, resident memory, open
// file descriptors, start time (the standard process_* names Prometheus client libraries use),
// event-loop lag measured by a timer, and pf_build_info{version,role}.
//
// Invariants: the lag timer is unref'd (it never keeps a stopping process alive) and stopped by
// stop(); pf_event_loop_lag_seconds is the worst lag among the last
// Limits.eventLoopLagWindowSamples samples, one every Limits.eventLoopLagSampleMs; the values are
// read at scrape time, nothing here runs on the IO path.

import { readdirSync } from "node:fs";
import { Limits } from "./limits.ts";
import type { MetricRegistry } from "./metrics.ts";

export interface ProcessMetricsOptions {
  role: string;
  version: string;
}

export interface ProcessMetrics {
  /** worst event-loop lag of the recent window, seconds */
  readonly eventLoopLagSeconds: number;
  readonly startTimeSeconds: number;
  stop(): void;
}

export function registerProcessMetrics(reg: MetricRegistry, opts: ProcessMetricsOptions): ProcessMetrics {
  const startTimeSeconds = Date.now() / 1000 - process.uptime();
  const cpu = reg.counter({ name: "process_cpu_seconds_total", help: "Total user and system CPU time spent, in seconds." }).with();
  const rss = reg.gauge({ name: "process_resident_memory_bytes", help: "Resident memory size, in bytes." }).with();
  const fds = reg.gauge({ name: "process_open_fds", help: "Number of open file descriptors." }).with();
  reg.gauge({ name: "process_start_time_seconds", help: "Start time of the process since the Unix epoch, in seconds." }).with().set(startTimeSeconds);
  const lag = reg.gauge({ name: "pf_event_loop_lag_seconds", help: `Worst event-loop lag over the last ${(Limits.eventLoopLagSampleMs * Limits.eventLoopLagWindowSamples) / 1000} s, in seconds (a ${Limits.eventLoopLagSampleMs} ms timer measures how late it fires).` }).with();
  reg.gauge({ name: "pf_build_info", help: "Version of pf and the role this process plays; value 1.", labelNames: ["version", "role"] }).with(opts.version, opts.role).set(1);

  const sampler = new LagSampler();
  reg.onCollect(() => {
    const u = process.cpuUsage();
    cpu.value = (u.user + u.system) / 1e6;
    rss.value = process.memoryUsage.rss();
    fds.value = openFds();
    lag.value = sampler.worstSeconds;
  });
  return {
    get eventLoopLagSeconds() {
      return sampler.worstSeconds;
    },
    startTimeSeconds,
    stop: () => sampler.stop(),
  };
}

/** A timer that notes how late it fires; keeps a fixed ring of samples (no growth). */
class LagSampler {
  private readonly samplesSeconds = new Float64Array(Limits.eventLoopLagWindowSamples);
  private next = 0;
  private expectedMs: number;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor() {
    this.expectedMs = performance.now() + Limits.eventLoopLagSampleMs;
    this.timer = setInterval(() => this.tick(), Limits.eventLoopLagSampleMs);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    this.samplesSeconds[this.next] = Math.max(0, now - this.expectedMs) / 1000;
    this.next = (this.next + 1) % this.samplesSeconds.length;
    this.expectedMs = now + Limits.eventLoopLagSampleMs;
  }

  get worstSeconds(): number {
    let worst = 0;
    for (const s of this.samplesSeconds) if (s > worst) worst = s;
    return worst;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0; // no /proc (not Linux): the gauge stays 0
  }
}
