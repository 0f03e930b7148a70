// What the pages draw from: one Snapshot per poll, made of the dashboard summary (which carries
// the health checks, i.e. the active alerts) and the statistics/alert sources of the observe
// service a page needs. A source that answers 404 (not deployed) is "missing" and the page
// shows "no data yet"; alert replies are normalised to a list, and an alert's severity maps
// onto the health levels (HIGH and CRITICAL are errors).

import type { DashSummary, HealthLevel, HistoryReply, IoRates, LiveReply, PfAlert } from "../dashboard_model.ts";
import { get, type Result, type Session } from "./api.ts";

export type Source<T> = { state: "ok"; data: T } | { state: "missing" } | { state: "error"; message: string } | { state: "idle" };

export interface Snapshot {
  summary: DashSummary;
  history: Source<HistoryReply>;
  live: Source<LiveReply>;
  alerts: Source<PfAlert[]>;
  alertHistory: Source<PfAlert[]>;
  historySeconds: number;
}

/** The optional sources a page reads besides the summary. */
export interface Needs {
  history: boolean;
  live: boolean;
  /** the open alerts and the history with cleared ones */
  alerts: boolean;
}

function sourceOf<T>(r: Result<T>): Source<T> {
  switch (r.kind) {
    case "ok":
      return { state: "ok", data: r.data };
    case "missing":
      return { state: "missing" };
    case "unauthorized":
      return { state: "error", message: "not logged in" };
    case "forbidden":
      return { state: "error", message: r.message };
    case "error":
      return { state: "error", message: r.message };
    default: {
      const never: never = r;
      return never;
    }
  }
}

function isAlert(v: unknown): v is PfAlert {
  return typeof v === "object" && v !== null && "id" in v && "alertType" in v && "severity" in v;
}

/** Alert replies as a list: a bare array, or an object holding one (e.g. {alerts: [...]}). */
function alertList(v: unknown): PfAlert[] {
  if (Array.isArray(v)) return v.filter(isAlert);
  if (typeof v === "object" && v !== null) {
    for (const x of Object.values(v)) if (Array.isArray(x)) return x.filter(isAlert);
  }
  return [];
}

function alertSource(r: Result<unknown>): Source<PfAlert[]> {
  const s = sourceOf(r);
  return s.state === "ok" ? { state: "ok", data: alertList(s.data) } : s;
}

export function alertLevel(a: PfAlert): Exclude<HealthLevel, "OK"> {
  return a.severity === "ALERT_CRITICAL" || a.severity === "ALERT_HIGH" ? "ERR" : "WARN";
}

export function isActive(a: PfAlert): boolean {
  return a.clearedTime === undefined || a.clearedTime === null || a.clearedTime === "";
}

const idle = { state: "idle" } as const;

/** One poll: the summary (null on 401: the session is gone), then every needed source at once. */
export async function poll(session: Session, needs: Needs, historySeconds: number): Promise<{ kind: "ok"; snap: Snapshot } | { kind: "logged-out" } | { kind: "error"; message: string }> {
  const [summary, alerts, history, live, alertHistory] = await Promise.all([
    get<DashSummary>("/dashboard/api/summary", session),
    needs.alerts ? get<unknown>("/api/types/Alert/instances", session) : Promise.resolve(null),
    needs.history ? get<HistoryReply>(`/api/pf/history?seconds=${historySeconds}`, session) : Promise.resolve(null),
    needs.live ? get<LiveReply>("/api/pf/live", session) : Promise.resolve(null),
    needs.alerts ? get<unknown>("/api/pf/alerts?all=true", session) : Promise.resolve(null),
  ]);
  if (summary.kind === "unauthorized") return { kind: "logged-out" };
  if (summary.kind !== "ok") return { kind: "error", message: summary.kind === "error" || summary.kind === "forbidden" ? summary.message : "the dashboard data route is missing" };
  return {
    kind: "ok",
    snap: {
      summary: summary.data,
      alerts: alerts ? alertSource(alerts) : idle,
      history: history ? sourceOf(history) : idle,
      live: live ? sourceOf(live) : idle,
      alertHistory: alertHistory ? alertSource(alertHistory) : idle,
      historySeconds,
    },
  };
}

const ZERO_RATES: IoRates = { readIops: 0, writeIops: 0, readBps: 0, writeBps: 0, readLatencyUs: 0, writeLatencyUs: 0 };

/** Live IO of one object, zero when the object is idle (absent), null when live IO is not available. */
export function liveRates(live: Source<LiveReply>, kind: "volumes" | "sds" | "sdc", id: string): IoRates | null {
  if (live.state !== "ok") return null;
  return live.data[kind]?.[id] ?? ZERO_RATES;
}
