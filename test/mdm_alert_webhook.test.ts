// The alert webhook against tiny Bun.serve receivers on 127.0.0.1: a flaky receiver (500 twice,
// then 200) gets the event after retries with backoff, in order; a dead receiver makes the
// webhook give up after its attempts (counted); a hanging receiver fills the bounded queue,
// whose oldest events are dropped and counted while enqueue never blocks; and the MDM posts a
// JSON event when it raises an alert and when it clears it (counters in /metrics). Also the YAML
// key mdm.alerts.webhook and runMdm's --alert-webhook check.

import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlertWebhook, type WebhookEvent } from "../src/mdm/observe/alert_webhook.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { runMdm } from "../src/mdm/main.ts";
import { sampleValue } from "./helpers/promtool.ts";
import { ObserveCluster } from "./mdm_observe_fixture.ts";

interface Receiver {
  url: string;
  got: WebhookEvent[];
  attempts: number;
  stop(): void;
}

/** A receiver that answers `statusFor(attempt)` (or never answers when it returns null). */
function receiver(statusFor: (attempt: number) => number | null): Receiver {
  const got: WebhookEvent[] = [];
  let attempts = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as WebhookEvent;
      const status = statusFor(++attempts);
      if (status === null) return new Promise<Response>(() => undefined);
      if (status >= 200 && status < 300) got.push(body);
      return new Response("", { status });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/hook`,
    got,
    get attempts() {
      return attempts;
    },
    stop: () => server.stop(true),
  };
}

const ev = (n: number): WebhookEvent => ({ event: "raised", systemId: "0123456789abcdef", alert: { id: `a${n}`, alertType: "SDS_DISCONNECTED" } });

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanups.splice(0)) f();
});

describe("alert webhook", () => {
  test("a flaky receiver (500, 500, then 200) gets every event once, in order, after retries with backoff", async () => {
    const r = receiver((n) => (n <= 2 ? 500 : 200));
    cleanups.push(r.stop);
    const hook = new AlertWebhook({ url: r.url, backoffMs: 20 });
    cleanups.push(() => hook.close());
    const t0 = performance.now();
    hook.enqueue(ev(1));
    hook.enqueue(ev(2));
    // never waits for the network: enqueue returned before the receiver saw any request
    expect(r.attempts).toBe(0);
    expect(await hook.idle(5000)).toBe(true);
    expect(r.got.map((e) => e.alert.id)).toEqual(["a1", "a2"]);
    expect(r.attempts).toBe(4);
    expect(hook.counters).toMatchObject({ sent: 2, retries: 2, failed: 0, dropped: 0, queued: 0 });
    // backoff doubles: 20 ms then 40 ms before the third attempt
    expect(performance.now() - t0).toBeGreaterThanOrEqual(60);
  });

  test("a receiver that is down: the event is given up after maxAttempts and counted", async () => {
    const r = receiver(() => 503);
    cleanups.push(r.stop);
    const hook = new AlertWebhook({ url: r.url, backoffMs: 5, maxAttempts: 4 });
    cleanups.push(() => hook.close());
    hook.enqueue(ev(1));
    expect(await hook.idle(5000)).toBe(true);
    expect(r.attempts).toBe(4);
    expect(hook.counters).toMatchObject({ sent: 0, failed: 1, retries: 3 });
    // nothing listening at all
    const gone = new AlertWebhook({ url: "http://127.0.0.1:9/nothing", backoffMs: 5, maxAttempts: 2 });
    cleanups.push(() => gone.close());
    gone.enqueue(ev(2));
    expect(await gone.idle(5000)).toBe(true);
    expect(gone.counters.failed).toBe(1);
  });

  test("a hanging receiver: the queue stays bounded, the oldest events are dropped and counted", async () => {
    const r = receiver(() => null);
    cleanups.push(r.stop);
    const hook = new AlertWebhook({ url: r.url, queueMax: 3, timeoutMs: 10_000 });
    cleanups.push(() => hook.close());
    for (let i = 1; i <= 10; i++) hook.enqueue(ev(i));
    expect(hook.counters.queued).toBe(3);
    expect(hook.counters.dropped).toBe(7);
  });

  test("the MDM posts a JSON event when it raises an alert and when it clears it", async () => {
    const r = receiver(() => 200);
    cleanups.push(r.stop);
    const c = await ObserveCluster.open({ alertWebhook: { url: r.url, backoffMs: 10 } });
    cleanups.push(() => c.close());
    await c.volume("v1");
    c.sdcAlive = false;
    for (let i = 0; i < 6; i++) await c.tick();
    c.sdcAlive = true;
    await c.tick();
    expect(await c.ctx.observe.webhook!.idle(5000)).toBe(true);
    expect(r.got.map((e) => [e.event, e.alert.alertType, e.alert.state])).toEqual([
      ["raised", "SDC_DISCONNECTED", "active"],
      ["cleared", "SDC_DISCONNECTED", "cleared"],
    ]);
    expect(r.got[0]!.systemId).toBe(c.ctx.systemId);
    expect(r.got[1]!.alert.id).toBe(r.got[0]!.alert.id);
    expect(typeof r.got[1]!.alert.clearedTime).toBe("string");
    const metrics = await (await c.m.core.app.request("/metrics")).text();
    expect(sampleValue(metrics, "pf_mdm_alert_webhook_events_total", 'outcome="sent"')).toBe(2);
    expect(sampleValue(metrics, "pf_mdm_alert_webhook_queue_length")).toBe(0);
  });

  test("configuration: YAML mdm.alerts.webhook takes an http(s) URL; runMdm refuses anything else", async () => {
    const yaml = (extra: string) => `mdm: { port: 6611${extra} }\nhosts:\n  - { name: h1, address: 127.0.0.1, mdm: true }\n`;
    expect(parseClusterConfig(yaml(", alerts: { webhook: 'https://hooks.example.com/pf' }"), "c.yaml").mdm.alerts?.webhook).toBe("https://hooks.example.com/pf");
    expect(() => parseClusterConfig(yaml(", alerts: { webhook: 'ftp://x/y' }"), "c.yaml")).toThrow(/c.yaml:1: mdm.alerts.webhook: webhook must be an http/);
    expect(() => parseClusterConfig(yaml(", alerts: { hook: 'http://x' }"), "c.yaml")).toThrow(/mdm.alerts/);
    const dir = mkdtempSync(join(tmpdir(), "pf-webhook-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await expect(runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, plainHttp: true, clusterSecret: "0123456789abcdef0123", alertWebhookUrl: "not a url" })).rejects.toThrow(/is not a URL/);
    const h = await runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, plainHttp: true, clusterSecret: "0123456789abcdef0123", alertWebhookUrl: "http://127.0.0.1:9/x" });
    await h.stop();
  });
});
