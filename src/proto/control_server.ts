// The control HTTP port of a pf role (SDS and SDC today; the MDM can mount the same app): plain
// HTTP (Hono on Bun.serve) answering GET /health, GET /metrics and GET /status for operators,
// load balancers and Prometheus. The role hands in a ControlSource; this file only speaks HTTP.
//
// Invariants:
// - /health is 200 {"status":"ok"} only while the source reports no reason; otherwise 503 with
//   {"status":"unavailable","reasons":[...]} (every reason one line naming the object);
// - every other answer is JSON: unknown path 404, wrong method 405 (with Allow), a failing
//   source 500; no request body is read (Bun refuses bodies over Limits.controlMaxRequestBodyBytes),
//   so a bad peer costs one error answer, never the process;
// - /metrics is the text exposition 0.0.4 (metrics_text.ts) with its content type.

import { consola } from "consola";
import { Hono, type Context } from "hono";
import { PfError, httpStatusOf, type ErrorCode } from "./errors.ts";
import { Limits } from "./limits.ts";
import type { MetricRegistry } from "./metrics.ts";
import { TEXT_CONTENT_TYPE, renderText } from "./metrics_text.ts";

export interface HealthReport {
  /** why this role is not ready to serve; empty = healthy */
  reasons: string[];
}

export interface ControlSource {
  /** "sds", "sdc", "mdm": used in logs */
  role: string;
  health(): HealthReport;
  status(): Record<string, unknown>;
  registry: MetricRegistry;
}

type ErrorStatus = 404 | 405 | 500 | 503 | 400 | 401 | 409 | 413;

interface ControlErrorBody {
  message: string;
  httpStatusCode: number;
  pfCode: ErrorCode;
}

const PATHS = ["/health", "/metrics", "/status"] as const;

function errorBody(c: Context, status: ErrorStatus, code: ErrorCode, message: string): Response {
  const body: ControlErrorBody = { message, httpStatusCode: status, pfCode: code };
  return c.json(body, status);
}

/** The Hono app of the control port (tests call app.request). */
export function controlApp(src: ControlSource): Hono {
  const app = new Hono();
  const scrapeSeconds = src.registry.gauge({ name: "pf_scrape_duration_seconds", help: "Time the previous /metrics answer took to render, in seconds." }).with();
  app.onError((e, c) => {
    consola.error(`${src.role} control: ${c.req.method} ${c.req.path} failed:`, e);
    const code: ErrorCode = e instanceof PfError ? e.code : "INTERNAL";
    return errorBody(c, 500, code, `${c.req.method} ${c.req.path} failed: ${e instanceof Error ? e.message : String(e)}`);
  });
  app.notFound((c) => errorBody(c, 404, "NOT_FOUND", `no such path ${c.req.path}; this port serves ${PATHS.join(", ")}`));

  app.get("/health", (c) => {
    const h = src.health();
    if (h.reasons.length === 0) return c.json({ status: "ok" }, 200);
    return c.json({ status: "unavailable", reasons: h.reasons }, httpStatusOf.UNAVAILABLE);
  });
  app.get("/metrics", (c) => {
    const t0 = performance.now();
    const text = renderText(src.registry);
    scrapeSeconds.set((performance.now() - t0) / 1000);
    return c.body(text, 200, { "content-type": TEXT_CONTENT_TYPE });
  });
  app.get("/status", (c) => c.json(src.status(), 200));
  for (const p of PATHS) {
    app.all(p, (c) => {
      c.header("allow", "GET, HEAD");
      return errorBody(c, 405, "BAD_REQUEST", `${c.req.method} ${p} is not allowed; use GET`);
    });
  }
  return app;
}

export interface ControlServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Listen on host:port (0 = any free port); a port already taken is a clear UNAVAILABLE error. */
export function startControlServer(opts: { host: string; port: number; source: ControlSource }): ControlServer {
  const app = controlApp(opts.source);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ hostname: opts.host, port: opts.port, fetch: app.fetch, maxRequestBodySize: Limits.controlMaxRequestBodyBytes });
  } catch (e) {
    throw new PfError("UNAVAILABLE", `${opts.source.role}: cannot listen for the control port on ${opts.host}:${opts.port}: ${(e as Error).message}`);
  }
  const port = server.port ?? opts.port;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    port,
    async stop() {
      await server.stop(true);
    },
  };
}
