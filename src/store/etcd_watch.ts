// A streaming etcd watch over the JSON gateway: POST /v3/watch answers one chunked response of
// newline-delimited JSON messages. The watch resumes by itself from the revision after the last
// one delivered when the stream breaks (member killed, network cut: the next endpoint is tried),
// and reports a compaction (the start revision is gone) instead of skipping events.
//
// Invariants: events reach onEvents in revision order, each revision's events in one call (etcd
// never splits a revision across messages), and no revision is delivered twice or skipped; after
// onCompacted the watch has stopped (the caller reloads by range and starts a new one); stop()
// ends the stream and no callback runs after it resolves.

import { consola } from "consola";
import type { EtcdClient } from "./etcd_client.ts";
import { b64, prefixEnd, unb64, WatchMessage } from "./etcd_wire.ts";

export interface WatchedEvent {
  type: "PUT" | "DELETE";
  key: string;
  value: string;
  modRevision: number;
  createRevision: number;
  lease: string | null;
}

export interface WatchHandlers {
  /** events of one or more whole revisions; `revision` = the last revision they cover */
  onEvents(events: WatchedEvent[], revision: number): void;
  /** the watch has seen everything up to `revision` (a progress notification) */
  onProgress?(revision: number): void;
  /** startRevision was compacted away; the watch has stopped */
  onCompacted(compactRevision: number): void;
}

export interface WatchOptions {
  prefix: string;
  /** first revision wanted */
  startRevision: number;
  /** pause between reconnection attempts */
  retryMs?: number;
}

const DEFAULT_RETRY_MS = 200;

export class EtcdWatch {
  private stopped = false;
  private abort: AbortController | null = null;
  /** the auth token the current stream was opened with (etcd auth), to drop when etcd calls it invalid */
  private token: string | null = null;
  private nextRevision: number;
  private readonly done: Promise<void>;

  constructor(
    private readonly client: EtcdClient,
    private readonly opts: WatchOptions,
    private readonly handlers: WatchHandlers,
  ) {
    this.nextRevision = opts.startRevision;
    this.done = this.run();
  }

  /** The first revision not yet delivered. */
  get resumeRevision(): number {
    return this.nextRevision;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    await this.done;
  }

  private async run(): Promise<void> {
    let endpointIdx = this.client.endpoints.indexOf(this.client.preferredEndpoint);
    let failures = 0;
    while (!this.stopped) {
      const endpoint = this.client.endpoints[endpointIdx % this.client.endpoints.length]!;
      try {
        const outcome = await this.stream(endpoint);
        if (outcome === "compacted" || this.stopped) return;
        failures = 0;
      } catch (e) {
        if (this.stopped) return;
        if (failures++ % 20 === 0) consola.warn(`etcd watch on ${endpoint} broke (${(e as Error).message}); resuming at revision ${this.nextRevision}`);
      }
      endpointIdx++;
      await Bun.sleep(this.opts.retryMs ?? DEFAULT_RETRY_MS);
    }
  }

  /** One stream on one endpoint; returns when it ends, throws when it breaks. */
  private async stream(endpoint: string): Promise<"ended" | "compacted"> {
    const abort = new AbortController();
    this.abort = abort;
    const body = {
      create_request: {
        key: b64(this.opts.prefix),
        range_end: prefixEnd(this.opts.prefix),
        start_revision: String(this.nextRevision),
        progress_notify: true,
      },
    };
    const headers = await this.client.requestHeaders();
    this.token = headers.authorization ?? null;
    const res = await fetch(`${endpoint}/v3/watch`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: abort.signal,
      tls: this.client.tlsOptions,
    } as RequestInit);
    if (!res.ok || res.body === null) throw new Error(`watch answered HTTP ${res.status}`);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        buf += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line.length === 0) continue;
          if (this.stopped) return "ended";
          if (this.handle(line) === "compacted") return "compacted";
        }
      }
    } finally {
      abort.abort();
    }
  }

  private handle(line: string): "ok" | "compacted" {
    const parsed = WatchMessage.safeParse(JSON.parse(line));
    if (!parsed.success) throw new Error(`unexpected watch message: ${line.slice(0, 200)}`);
    const msg = parsed.data;
    if ("error" in msg) throw new Error(`watch error: ${msg.error.message ?? JSON.stringify(msg.error)}`);
    const r = msg.result;
    if (r.canceled) {
      if (r.compact_revision > 0) {
        this.stopped = true;
        this.handlers.onCompacted(r.compact_revision);
        return "compacted";
      }
      // an expired auth token: the next stream authenticates again
      if (this.token !== null && /invalid auth token/.test(r.cancel_reason ?? "")) this.client.dropToken(this.token);
      throw new Error(`watch canceled by etcd: ${r.cancel_reason ?? "no reason given"}`);
    }
    if (r.events.length > 0) {
      const events: WatchedEvent[] = r.events.map((e) => ({
        type: e.type,
        key: unb64(e.kv.key),
        value: unb64(e.kv.value),
        modRevision: e.kv.mod_revision,
        createRevision: e.kv.create_revision,
        lease: e.kv.lease === undefined || e.kv.lease === "0" ? null : e.kv.lease,
      }));
      const last = events[events.length - 1]!.modRevision;
      // advanced only once the handler took the events: a handler that threw gets them again
      // from the resumed stream (never skipped); one that returned never sees them twice
      this.handlers.onEvents(events, last);
      this.nextRevision = last + 1;
      return "ok";
    }
    if (!r.created && r.header.revision > 0) {
      // progress notification: nothing of ours happened up to header.revision
      if (r.header.revision >= this.nextRevision) this.nextRevision = r.header.revision + 1;
      this.handlers.onProgress?.(r.header.revision);
    }
    return "ok";
  }
}
