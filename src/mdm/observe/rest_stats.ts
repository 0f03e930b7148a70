// REST request counters of the MDM, by method, route pattern (Hono's registered path such as
// /api/instances/:ref, never the raw path: bounded labels) and status code, with a latency
// histogram per method and route. Fed by one middleware in app.ts, rendered by mdm_metrics.ts.
// Invariant: the number of series is bounded by the routes the app registers (x methods x
// status codes seen), whatever clients send: unmatched paths all count under one route "*".

export const REST_LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

export interface RouteLatency {
  method: string;
  route: string;
  /** cumulative counts per bucket of REST_LATENCY_BUCKETS_S (le), then +Inf */
  buckets: Float64Array;
  sumS: number;
  count: number;
}

/** A cap on distinct (method, route, status) keys, far above what the app registers. */
const MAX_KEYS = 2000;

export class RestRequestStats {
  /** `${method} ${route} ${status}` -> requests */
  readonly requests = new Map<string, { method: string; route: string; status: number; count: number }>();
  readonly latency = new Map<string, RouteLatency>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const m = method.length <= 10 ? method : "OTHER";
    const k = `${m} ${route} ${status}`;
    let r = this.requests.get(k);
    if (!r) {
      if (this.requests.size >= MAX_KEYS) return;
      r = { method: m, route, status, count: 0 };
      this.requests.set(k, r);
    }
    r.count++;
    const lk = `${m} ${route}`;
    let l = this.latency.get(lk);
    if (!l) {
      l = { method: m, route, buckets: new Float64Array(REST_LATENCY_BUCKETS_S.length + 1), sumS: 0, count: 0 };
      this.latency.set(lk, l);
    }
    for (let i = 0; i < REST_LATENCY_BUCKETS_S.length; i++) if (seconds <= REST_LATENCY_BUCKETS_S[i]!) l.buckets[i] = (l.buckets[i] ?? 0) + 1;
    l.buckets[REST_LATENCY_BUCKETS_S.length] = (l.buckets[REST_LATENCY_BUCKETS_S.length] ?? 0) + 1;
    l.sumS += seconds;
    l.count++;
  }
}
