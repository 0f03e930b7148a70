// The metrics core (src/proto/metrics.ts, metrics_text.ts, io_meter.ts, process_metrics.ts):
// the exact text exposition, histogram buckets, escaping, the naming rules the registry
// enforces, the series cap, no growth with the number of IOs recorded, and promtool's verdict
// on a registry holding every kind of family (promtool missing = a failure, never a skip).

import { describe, expect, test } from "bun:test";
import { heapStats } from "bun:jsc";
import { spawnSync } from "node:child_process";
import { IoFamilies, LATENCY_BUCKETS_SECONDS } from "../src/proto/io_meter.ts";
import { SdcIoReport, SdsIoReport } from "../src/proto/io_report.ts";
import { MetricRegistry } from "../src/proto/metrics.ts";
import { TEXT_CONTENT_TYPE, formatSampleValue, renderText } from "../src/proto/metrics_text.ts";
import { Cmd } from "../src/proto/nbd.ts";
import { registerProcessMetrics } from "../src/proto/process_metrics.ts";
import { SdcMetrics } from "../src/sdc/sdc_metrics.ts";
import { SdsMetrics } from "../src/sds/sds_metrics.ts";

/** `promtool check metrics` on text: exit status and its findings (stderr). Fails without promtool. */
export function promtoolCheck(text: string): { code: number; findings: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error !== undefined) throw new Error(`promtool is required (apt-get install -y prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, findings: `${r.stderr}${r.stdout}` };
}

describe("text exposition 0.0.4", () => {
  test("a counter, a gauge and a histogram render exactly, HELP and TYPE first, newline-terminated", () => {
    const reg = new MetricRegistry();
    reg.counter({ name: "pf_test_ops_total", help: "Operations.", labelNames: ["volume", "op"] }).with("v1", "read").inc(3);
    reg.gauge({ name: "pf_test_up", help: "Up." }).with().set(1);
    const h = reg.histogram({ name: "pf_test_latency_seconds", help: "Latency.", labelNames: ["op"], buckets: [0.001, 0.01] }).with("write");
    for (const v of [0.0005, 0.001, 0.002, 0.5]) h.observe(v);
    expect(renderText(reg)).toBe(
      [
        "# HELP pf_test_ops_total Operations.",
        "# TYPE pf_test_ops_total counter",
        'pf_test_ops_total{volume="v1",op="read"} 3',
        "# HELP pf_test_up Up.",
        "# TYPE pf_test_up gauge",
        "pf_test_up 1",
        "# HELP pf_test_latency_seconds Latency.",
        "# TYPE pf_test_latency_seconds histogram",
        'pf_test_latency_seconds_bucket{op="write",le="0.001"} 2',
        'pf_test_latency_seconds_bucket{op="write",le="0.01"} 3',
        'pf_test_latency_seconds_bucket{op="write",le="+Inf"} 4',
        'pf_test_latency_seconds_sum{op="write"} 0.5035',
        'pf_test_latency_seconds_count{op="write"} 4',
        "",
      ].join("\n"),
    );
    expect(TEXT_CONTENT_TYPE).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  test("the IO latency histogram has the 12 documented buckets plus +Inf, cumulative, le inclusive", () => {
    expect([...LATENCY_BUCKETS_SECONDS]).toEqual([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
    const reg = new MetricRegistry();
    const io = new IoFamilies(reg, { opsName: "pf_x_ops_total", bytesName: "pf_x_bytes_total", latencyName: "pf_x_latency_seconds", what: "X", labelNames: [] }).series();
    for (const b of LATENCY_BUCKETS_SECONDS) io.record(4096, b); // exactly on each bound
    io.record(4096, 2); // above the last bound: only +Inf
    const lines = renderText(reg).split("\n").filter((l) => l.startsWith("pf_x_latency_seconds_bucket"));
    expect(lines.length).toBe(13);
    lines.slice(0, 12).forEach((l, i) => expect(l).toBe(`pf_x_latency_seconds_bucket{le="${LATENCY_BUCKETS_SECONDS[i]}"} ${i + 1}`));
    expect(lines[12]).toBe('pf_x_latency_seconds_bucket{le="+Inf"} 13');
    expect(io.totals()).toEqual({ ops: 13, bytes: 13 * 4096, latencyUs: Math.round((LATENCY_BUCKETS_SECONDS.reduce((a, b) => a + b, 0) + 2) * 1e6) });
  });

  test("label values escape backslash, quote and newline; help escapes backslash and newline", () => {
    const reg = new MetricRegistry();
    reg.gauge({ name: "pf_test_info", help: 'Path C:\\dir\nsecond line "quoted"', labelNames: ["path"] }).with('a\\b"c\nd').set(1);
    const text = renderText(reg);
    expect(text).toContain('# HELP pf_test_info Path C:\\\\dir\\nsecond line "quoted"\n');
    expect(text).toContain('pf_test_info{path="a\\\\b\\"c\\nd"} 1\n');
    expect(promtoolCheck(text)).toEqual({ code: 0, findings: "" });
  });

  test("values print as Prometheus parses them", () => {
    expect(formatSampleValue(NaN)).toBe("NaN");
    expect(formatSampleValue(Infinity)).toBe("+Inf");
    expect(formatSampleValue(-Infinity)).toBe("-Inf");
    expect(formatSampleValue(1e21)).toBe("1e+21");
    expect(formatSampleValue(0.25)).toBe("0.25");
  });

  test("a family without series still prints HELP and TYPE", () => {
    const reg = new MetricRegistry();
    reg.counter({ name: "pf_none_total", help: "Nothing yet.", labelNames: ["op"] });
    expect(renderText(reg)).toBe("# HELP pf_none_total Nothing yet.\n# TYPE pf_none_total counter\n");
  });
});

describe("naming rules and limits", () => {
  test("counters end in _total and nothing else does; names, labels and buckets are checked", () => {
    const reg = new MetricRegistry();
    expect(() => reg.counter({ name: "pf_reads", help: "x" })).toThrow(/only counters end in _total/);
    expect(() => reg.gauge({ name: "pf_reads_total", help: "x" })).toThrow(/only counters end in _total/);
    expect(() => reg.gauge({ name: "pf-bad", help: "x" })).toThrow(/bad metric name/);
    expect(() => reg.gauge({ name: "pf_g", help: "x", labelNames: ["volumeId"] })).toThrow(/bad label name/);
    expect(() => reg.gauge({ name: "pf_g2", help: "x", labelNames: ["__x"] })).toThrow(/bad label name/);
    expect(() => reg.gauge({ name: "pf_g3", help: "" })).toThrow(/help/);
    expect(() => reg.histogram({ name: "pf_h_seconds", help: "x", labelNames: ["le"], buckets: [1] })).toThrow(/le label/);
    expect(() => reg.histogram({ name: "pf_h2_seconds", help: "x", buckets: [1, 1] })).toThrow(/strictly increase/);
    reg.gauge({ name: "pf_once", help: "x" });
    expect(() => reg.gauge({ name: "pf_once", help: "x" })).toThrow(/registered twice/);
  });

  test("a family refuses series beyond its cap (labels must be bounded sets)", () => {
    const reg = new MetricRegistry();
    const f = reg.counter({ name: "pf_capped_total", help: "x", labelNames: ["volume_id"], maxSeries: 3 });
    for (const v of ["a", "b", "c"]) f.with(v);
    expect(f.with("a")).toBe(f.with("a")); // an existing series is no new one
    expect(() => f.with("d")).toThrow(/series limit/);
    expect(f.size).toBe(3);
  });

  test("the SDC keeps a renamed volume's counts under the new name", () => {
    const m = new SdcMetrics(new MetricRegistry(), "c000000000000001");
    m.volume("0a00000000000001", "old").completed(Cmd.WRITE, 4096, 0.001, true);
    m.volume("0a00000000000001", "new").completed(Cmd.WRITE, 4096, 0.001, true);
    const text = renderText(m.registry);
    expect(text).toContain('pf_volume_write_ops_total{volume="new",volume_id="0a00000000000001"} 2');
    expect(text).not.toContain('volume="old"');
  });
});

describe("cost on the IO path", () => {
  test("a million IOs add no series, no text lines and no live objects", () => {
    const m = new SdcMetrics(new MetricRegistry(), "c000000000000001");
    const v = m.volume("0a00000000000001", "vol1");
    v.completed(Cmd.WRITE, 4096, 0.0003, true);
    const linesBefore = renderText(m.registry).split("\n").length;
    Bun.gc(true);
    const objectsBefore = heapStats().objectCount;
    for (let i = 0; i < 1_000_000; i++) {
      v.completed(i % 3 === 0 ? Cmd.READ : i % 3 === 1 ? Cmd.WRITE : Cmd.WRITE_ZEROES, 4096, (i % 1000) / 1e6, true);
    }
    Bun.gc(true);
    const objectsAfter = heapStats().objectCount;
    expect(objectsAfter - objectsBefore).toBeLessThan(200);
    expect(renderText(m.registry).split("\n").length).toBe(linesBefore);
    const r = m.report("0123456789abcdef", { connections: 0, inflightIos: 0 });
    expect(r.volumes[0]!.write.ops + r.volumes[0]!.read.ops + r.volumes[0]!.trim.ops).toBe(1_000_001);
  });
});

describe("roles' registries", () => {
  test("promtool accepts SDS, SDC and process families together, with IO recorded", () => {
    const reg = new MetricRegistry();
    const proc = registerProcessMetrics(reg, { role: "sds", version: "0.1.0" });
    try {
      const sds = new SdsMetrics(reg, "5d50000000000001");
      sds.primaryWrite.record(4096, 0.0004);
      sds.copyRead.rebuild.record(1 << 20, 0.002);
      const d = sds.device("de70000000000001", "/data/dev0.img");
      d.write.record(4096, 0.00002);
      d.sync.record(0, 0.003);
      const sdc = new SdcMetrics(reg, "c000000000000001");
      sdc.volume("0a00000000000001", "vol1").completed(Cmd.FLUSH, 0, 0.002, true);
      const text = renderText(reg);
      expect(promtoolCheck(text)).toEqual({ code: 0, findings: "" });
      for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds", "pf_event_loop_lag_seconds", 'pf_build_info{version="0.1.0",role="sds"} 1']) {
        expect(text).toContain(name);
      }
    } finally {
      proc.stop();
    }
  });

  test("the heartbeat reports satisfy the io_report.ts schemas and add up the right series", () => {
    const sds = new SdsMetrics(new MetricRegistry(), "5d50000000000001");
    sds.primaryWrite.record(4096, 0.001);
    sds.secondaryWrite.record(8192, 0.0005);
    sds.secondaryTrim.record(1 << 20, 0.0002);
    sds.copyWrite.resync.record(1 << 20, 0.003);
    const dev = sds.device("de70000000000001", "/d");
    dev.readErrors.inc();
    dev.syncErrors.inc();
    const r = SdsIoReport.parse(sds.report("0123456789abcdef"));
    expect(r.primaryWrite).toEqual({ ops: 1, bytes: 4096, latencyUs: 1000 });
    // secondaryWrite covers forwarded writes and forwarded trims/zeroes (io_report.ts)
    expect(r.secondaryWrite).toEqual({ ops: 2, bytes: 8192 + (1 << 20), latencyUs: 700 });
    expect(r.resync.write.bytes).toBe(1 << 20);
    expect(r.devices).toEqual([{ deviceId: "de70000000000001", read: { ops: 0, bytes: 0, latencyUs: 0 }, write: { ops: 0, bytes: 0, latencyUs: 0 }, sync: { ops: 0, bytes: 0, latencyUs: 0 }, errors: 2 }]);

    const sdc = new SdcMetrics(new MetricRegistry(), "c000000000000001");
    const v = sdc.volume("0a00000000000001", "vol1");
    v.completed(Cmd.TRIM, 65536, 0.001, true);
    v.completed(Cmd.WRITE_ZEROES, 4096, 0.001, true);
    v.completed(Cmd.FLUSH, 0, 0.002, true);
    v.completed(Cmd.READ, 4096, 0.001, false); // failed: not in ops, in errors
    const s = SdcIoReport.parse(sdc.report("0123456789abcdef", { connections: 2, inflightIos: 5 }));
    expect(s.volumes[0]!.trim).toEqual({ ops: 2, bytes: 65536 + 4096, latencyUs: 2000 });
    expect(s.volumes[0]!.flush).toEqual({ ops: 1, bytes: 0, latencyUs: 2000 });
    expect(s.volumes[0]!.read.ops).toBe(0);
    expect(s.nbdConnections).toBe(2);
    expect(s.inflightIos).toBe(5);
    expect(renderText(sdc.registry)).toContain('pf_volume_read_errors_total{volume="vol1",volume_id="0a00000000000001"} 1');
  });
});
