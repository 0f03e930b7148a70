// The observability state of a running MDM that is not in the database: IO accounting from
// heartbeats, the history ring, the in-memory copy of the active alerts, the optional alert
// webhook, REST request counters, process metrics, and the facts the alert rules need about the MDM itself (its
// certificate's expiry, when it started). It imports nothing of the MDM's context: the context
// holds it (as it holds the recovery runtime) and the observe room works on both.
// Invariant: while `settleUntilMs` has not passed (one heartbeat timeout after start, when
// every SDS/SDC is only presumed alive), alerts may be raised but none is cleared.

import type { AlertInput, AlertSeverity, AlertType, AffectedType } from "./alert_rules.ts";
import { AlertWebhook, type WebhookOptions } from "./alert_webhook.ts";
import { IoAccounting } from "./io_accounting.ts";
import { IoHistory } from "./io_history.ts";
import { RestRequestStats } from "./rest_stats.ts";
import { MetricRegistry } from "../../proto/metrics.ts";
import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import { registerProcessMetrics, type ProcessMetrics } from "../../proto/process_metrics.ts";

/** An alert as kept in memory and in the alert table. */
export interface AlertRecord {
  id: string;
  key: string;
  alertType: AlertType;
  severity: AlertSeverity;
  objectType: AffectedType;
  objectId: string;
  values: Record<string, string>;
  startMs: number;
  lastObservedMs: number;
  clearedMs: number | null;
}

export interface ObserveOptions {
  startedAtMs: number;
  heartbeatTimeoutMs: number;
  webhook?: WebhookOptions | undefined;
  /** pf's version for pf_build_info */
  version?: string | undefined;
}

/** The rows of SDSs, SDCs and devices the alert rules read (alerts.ts). */
export interface AlertObjectRows {
  sds: { id: string; name: string }[];
  sdc: { id: string; name: string | null; host: string }[];
  devices: AlertInput["devices"];
}

export class ObserveRuntime {
  readonly io = new IoAccounting();
  readonly history = new IoHistory();
  /** active alerts by key (loaded from the database at start) */
  readonly activeAlerts = new Map<string, AlertRecord>();
  readonly webhook: AlertWebhook | null;
  readonly rest = new RestRequestStats();
  /** process metrics and pf_build_info (the metrics core); the cluster-wide families are written at scrape time */
  readonly registry = new MetricRegistry();
  private readonly process: ProcessMetrics;
  readonly startedAtMs: number;
  readonly settleUntilMs: number;
  /** notAfter of the TLS certificate the MDM serves (null: plain HTTP or not known) */
  certValidToMs: number | null = null;
  /** ticks of the observe loop, and when it last wrote lastObserved / pruned totals */
  lastFlushMs: number;
  lastRetainMs: number;
  lastHistoryMs = 0;
  /** what the last observe step took (ms) */
  lastTickMs = 0;
  /**
   * the pools' recovery figures as last computed, and what that took (recovery_pacing.ts);
   * quietKey: when they showed no recovery work at all, what they were computed from (the
   * observe stamp and the SDSs' connection states), else null
   */
  recoveryCache: { atMs: number; status: Map<string, RebuildStatus>; costMs: number; quietKey: string | null } | null = null;
  /** the SDS, SDC and device rows the alert rules read, and the observe stamp they were read at (alerts.ts objectRows) */
  objectRows: { stamp: string; rows: AlertObjectRows } | null = null;
  /** the observe stamp at the last retain of totals, and when (observe_tick.ts) */
  retainedAt: { stamp: string; atMs: number } | null = null;
  /** label text of each volume's /metrics series, by id (rebuilt when the name changes) */
  readonly volumeLabelCache = new Map<string, { name: string | null; text: string }>();

  constructor(opts: ObserveOptions) {
    this.startedAtMs = opts.startedAtMs;
    this.settleUntilMs = opts.startedAtMs + opts.heartbeatTimeoutMs + 1000;
    this.lastFlushMs = opts.startedAtMs;
    this.lastRetainMs = opts.startedAtMs;
    this.webhook = opts.webhook ? new AlertWebhook(opts.webhook) : null;
    this.process = registerProcessMetrics(this.registry, { role: "mdm", version: opts.version ?? "unknown" });
  }

  close(): void {
    this.webhook?.close();
    this.process.stop();
  }
}
