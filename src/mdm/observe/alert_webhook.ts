// The optional alert webhook (`pf mdm --alert-webhook URL`, YAML mdm.alerts.webhook): one JSON
// POST per alert raised and per alert cleared, sent in order by one background loop, retried
// with a doubling backoff, given up after a named number of attempts.
// Invariants: enqueue never blocks and never throws (the MDM's tick calls it); the queue is
// bounded (Limits.alertWebhookQueueMax): when full the oldest waiting event is dropped and
// counted; one request at a time, each with a timeout; close() stops the loop.

import consola from "consola";
import { Limits } from "../../proto/limits.ts";

export interface WebhookEvent {
  /** "raised" or "cleared" */
  event: "raised" | "cleared";
  systemId: string;
  /** the PowerFlex-shaped Alert object (with pf's state/clearedTime) */
  alert: Record<string, unknown>;
}

export interface WebhookOptions {
  url: string;
  queueMax?: number;
  maxAttempts?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  timeoutMs?: number;
  /** injected for tests; default global fetch */
  fetchFn?: (url: string, init: RequestInit) => Promise<Response>;
  sleep?: (ms: number) => Promise<void>;
}

export interface WebhookCounters {
  sent: number;
  /** events given up after maxAttempts */
  failed: number;
  /** events dropped because the queue was full */
  dropped: number;
  /** failed attempts that were retried */
  retries: number;
  queued: number;
}

export class AlertWebhook {
  private readonly queue: WebhookEvent[] = [];
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly opts: Required<Omit<WebhookOptions, "fetchFn" | "sleep">> & Pick<WebhookOptions, "fetchFn" | "sleep">;
  readonly counters: WebhookCounters = { sent: 0, failed: 0, dropped: 0, retries: 0, queued: 0 };

  constructor(opts: WebhookOptions) {
    this.opts = {
      queueMax: Limits.alertWebhookQueueMax,
      maxAttempts: Limits.alertWebhookMaxAttempts,
      backoffMs: Limits.alertWebhookBackoffMs,
      maxBackoffMs: Limits.alertWebhookMaxBackoffMs,
      timeoutMs: Limits.alertWebhookTimeoutMs,
      ...opts,
    };
  }

  get url(): string {
    return this.opts.url;
  }

  /** Queue an event; drops the oldest waiting one when the queue is full. Never blocks. */
  enqueue(ev: WebhookEvent): void {
    if (this.stopped) return;
    if (this.queue.length >= this.opts.queueMax) {
      // the head is in flight while the loop runs: drop the oldest one still waiting
      this.queue.splice(this.running && this.queue.length > 1 ? 1 : 0, 1);
      this.counters.dropped++;
      if (this.counters.dropped === 1 || this.counters.dropped % 100 === 0) {
        consola.warn(`mdm: alert webhook queue full (${this.opts.queueMax} events): dropped the oldest (${this.counters.dropped} dropped so far)`);
      }
    }
    this.queue.push(ev);
    this.counters.queued = this.queue.length;
    if (!this.running) this.running = this.loop().finally(() => (this.running = null));
  }

  /** Wait until the queue is empty (tests), at most timeoutMs. */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while ((this.running || this.queue.length > 0) && Date.now() < deadline) await Bun.sleep(10);
    return this.queue.length === 0 && !this.running;
  }

  close(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.counters.queued = 0;
  }

  private async loop(): Promise<void> {
    const sleep = this.opts.sleep ?? ((ms: number) => Bun.sleep(ms));
    while (!this.stopped && this.queue.length > 0) {
      const ev = this.queue[0]!;
      let delivered = false;
      for (let attempt = 1; attempt <= this.opts.maxAttempts && !this.stopped; attempt++) {
        const err = await this.post(ev);
        if (err === null) {
          delivered = true;
          break;
        }
        if (attempt === this.opts.maxAttempts) {
          consola.warn(`mdm: alert webhook ${this.opts.url}: gave up on a ${ev.event} event after ${attempt} attempts: ${err}`);
          break;
        }
        this.counters.retries++;
        consola.debug(`mdm: alert webhook ${this.opts.url} attempt ${attempt} failed: ${err}`);
        await sleep(Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (attempt - 1)));
      }
      if (this.queue[0] === ev) this.queue.shift();
      if (delivered) this.counters.sent++;
      else if (!this.stopped) this.counters.failed++;
      this.counters.queued = this.queue.length;
    }
  }

  /** One attempt; null on a 2xx answer, else why not. */
  private async post(ev: WebhookEvent): Promise<string | null> {
    const f = this.opts.fetchFn ?? ((url: string, init: RequestInit) => fetch(url, init));
    try {
      const res = await f(this.opts.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(ev),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }
}
