// The control port of SDS and SDC (src/proto/control_server.ts) in process with app.request:
// /health 200 vs 503 with reasons, /metrics text and content type, JSON errors for unknown
// paths, wrong methods and a failing source; the flags around it (--control defaults, the YAML
// keys) and --log-level / --log-format json (src/cmd/role_options.ts).

import { afterEach, describe, expect, test } from "bun:test";
import { consola, type ConsolaReporter } from "consola";
import { applyLogOptions, controlFrom } from "../src/cmd/role_options.ts";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { controlApp, startControlServer, type ControlSource } from "../src/proto/control_server.ts";
import { PfError } from "../src/proto/errors.ts";
import { MetricRegistry } from "../src/proto/metrics.ts";

function source(reasons: string[], opts: { failStatus?: boolean } = {}): ControlSource {
  const registry = new MetricRegistry();
  registry.counter({ name: "pf_test_ops_total", help: "Test ops." }).with().inc(7);
  return {
    role: "sds",
    registry,
    health: () => ({ reasons }),
    status: () => {
      if (opts.failStatus) throw new Error("state unreadable");
      return { role: "sds", id: "5d50000000000001" };
    },
  };
}

describe("control port routes", () => {
  test("GET /health is 200 {status: ok} while there is no reason", async () => {
    const r = await controlApp(source([])).request("/health");
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: "ok" });
  });

  test("GET /health is 503 with the reasons when not ready", async () => {
    const r = await controlApp(source(["no lease: it expired 200 ms ago", "device d1 (/x) failed"])).request("/health");
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: "unavailable", reasons: ["no lease: it expired 200 ms ago", "device d1 (/x) failed"] });
  });

  test("GET /metrics is the text exposition with its content type", async () => {
    const r = await controlApp(source([])).request("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await r.text();
    expect(text).toContain("# TYPE pf_test_ops_total counter\npf_test_ops_total 7\n");
    expect(text).toContain("# TYPE pf_scrape_duration_seconds gauge\n");
  });

  test("GET /status is the source's JSON", async () => {
    const r = await controlApp(source([])).request("/status");
    expect(await r.json()).toEqual({ role: "sds", id: "5d50000000000001" });
  });

  test("an unknown path is a JSON 404 naming the paths served", async () => {
    const r = await controlApp(source([])).request("/api/types/Volume/instances");
    expect(r.status).toBe(404);
    const body = (await r.json()) as { message: string; pfCode: string };
    expect(body.pfCode).toBe("NOT_FOUND");
    expect(body.message).toContain("/health, /metrics, /status");
  });

  test("a wrong method is a JSON 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const r = await controlApp(source([])).request("/metrics", { method, body: "x" });
      expect(r.status).toBe(405);
      expect(r.headers.get("allow")).toBe("GET, HEAD");
      expect(((await r.json()) as { message: string }).message).toContain(`${method} /metrics is not allowed`);
    }
  });

  test("a failing source is a JSON 500, and the next request is served", async () => {
    const app = controlApp(source([], { failStatus: true }));
    const r = await app.request("/status");
    expect(r.status).toBe(500);
    expect(((await r.json()) as { pfCode: string }).pfCode).toBe("INTERNAL");
    expect((await app.request("/health")).status).toBe(200);
  });

  test("over a real socket: garbage and an oversized body do not stop the server", async () => {
    const srv = startControlServer({ host: "127.0.0.1", port: 0, source: source([]) });
    try {
      const raw = await Bun.connect({ hostname: "127.0.0.1", port: srv.port, socket: { data() {}, error() {} } });
      raw.write("NOT HTTP AT ALL\r\n\r\n");
      raw.end();
      const big = await fetch(`${srv.url}/health`, { method: "POST", body: new Uint8Array(1024 * 1024) }).catch((e: unknown) => e);
      if (big instanceof Response) expect([405, 413]).toContain(big.status);
      const ok = await fetch(`${srv.url}/health`);
      expect(ok.status).toBe(200);
      // a port already taken is a clear error, not a crash
      expect(() => startControlServer({ host: "127.0.0.1", port: srv.port, source: source([]) })).toThrow(PfError);
    } finally {
      await srv.stop();
    }
  });
});

describe("control port address", () => {
  test("--control defaults to the role's own host and port + 1000; none turns it off", () => {
    expect(controlFrom(undefined, { host: "10.0.0.11", port: 7072 })).toEqual({ host: "10.0.0.11", port: 8072 });
    expect(controlFrom(undefined, { host: "127.0.0.1", port: 10809 })).toEqual({ host: "127.0.0.1", port: 11809 });
    expect(controlFrom(undefined, { host: "127.0.0.1", port: 0 })).toEqual({ host: "127.0.0.1", port: 0 });
    expect(controlFrom("0.0.0.0:9100", { host: "127.0.0.1", port: 7072 })).toEqual({ host: "0.0.0.0", port: 9100 });
    expect(controlFrom("none", { host: "127.0.0.1", port: 7072 })).toBeNull();
    expect(() => controlFrom("a b", { host: "127.0.0.1", port: 7072 })).toThrow(/not HOST:PORT/);
    expect(() => controlFrom(undefined, { host: "127.0.0.1", port: 65000 })).toThrow(/over 65535/);
  });

  test("the cluster YAML takes controlPort on an SDS and control on an SDC", () => {
    const c = parseClusterConfig(
      [
        "hosts:",
        "  - name: h1",
        "    address: 127.0.0.1",
        "    mdm: true",
        "    sds: [{ name: s1, pool: pd1/sp1, controlPort: 9101, devices: [{ path: d.img, size: 1GiB }] }]",
        "    sdc: { nbd: 127.0.0.1:10809, control: 127.0.0.1:9102 }",
        "protectionDomains: [{ name: pd1, storagePools: [{ name: sp1 }] }]",
      ].join("\n"),
      "c.yaml",
    );
    expect(c.hosts[0]!.sds[0]!.controlPort).toBe(9101);
    expect(c.hosts[0]!.sdc!.control).toEqual({ host: "127.0.0.1", port: 9102 });
  });
});

describe("--log-level and --log-format", () => {
  const saved = { reporters: [...consola.options.reporters] as ConsolaReporter[], level: consola.level };
  afterEach(() => {
    consola.setReporters(saved.reporters);
    consola.level = saved.level;
  });

  test("json writes one object per line with time, level, role and message", () => {
    applyLogOptions({ "log-level": "debug", "log-format": "json" }, "sds");
    const lines: string[] = [];
    const out = process.stdout.write.bind(process.stdout);
    const err = process.stderr.write.bind(process.stderr);
    const grab = (chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    };
    process.stdout.write = grab as typeof process.stdout.write;
    process.stderr.write = grab as typeof process.stderr.write;
    try {
      consola.debug("extent %s: primary", "0a/1");
      consola.warn("peer down", 3);
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
    }
    const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.map((o) => [o.level, o.role, o.message])).toEqual([
      ["debug", "sds", "extent 0a/1: primary"],
      ["warn", "sds", "peer down 3"],
    ]);
    expect(Number.isNaN(Date.parse(String(objs[0]!.time)))).toBe(false);
    expect(lines.every((l) => l.endsWith("\n") && l.indexOf("\n") === l.length - 1)).toBe(true);
  });

  test("the level filters; bad values are refused with the choices", () => {
    applyLogOptions({ "log-level": "warn" }, "sdc");
    expect(consola.level).toBe(1);
    applyLogOptions({ "log-level": "error" }, "sdc");
    expect(consola.level).toBe(0);
    expect(() => applyLogOptions({ "log-level": "verbose" }, "sdc")).toThrow(/error, warn, info, debug/);
    expect(() => applyLogOptions({ "log-format": "xml" }, "sdc")).toThrow(/text, json/);
  });
});
