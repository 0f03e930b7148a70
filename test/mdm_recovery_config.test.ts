// Where the recovery timeouts come from: durations in the cluster YAML (mdm.heartbeatTimeout,
// rebuildGrace, stallTimeout), the duration parser, and a real `runMdm` given a short heartbeat
// timeout handing SDSs a lease derived from it (0.8 x timeout, strictly less).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseClusterConfig } from "../src/proto/cluster_config.ts";
import { parseDurationMs } from "../src/proto/sizes.ts";
import { runMdm } from "../src/mdm/main.ts";
import { SdsJoinResponse } from "../src/proto/cluster_api.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("durations", () => {
  test("parseDurationMs reads ms, s, m, h and bare numbers; refuses anything else", () => {
    expect(parseDurationMs("500ms")).toBe(500);
    expect(parseDurationMs("5s")).toBe(5000);
    expect(parseDurationMs("1.5s")).toBe(1500);
    expect(parseDurationMs("2m")).toBe(120_000);
    expect(parseDurationMs("1h")).toBe(3_600_000);
    expect(parseDurationMs("250")).toBe(250);
    expect(parseDurationMs(750)).toBe(750);
    for (const bad of ["", "5 parsecs", "-1s", "s", "1e3"]) expect(parseDurationMs(bad)).toBeNull();
    expect(parseDurationMs(-1)).toBeNull();
  });

  test("the cluster YAML takes mdm timeouts as durations, and names a bad one with its line", () => {
    const base = (mdm: string) => `mdm:\n${mdm}\nhosts:\n  - name: h1\n    address: 127.0.0.1\n    mdm: true\n`;
    const c = parseClusterConfig(base("  heartbeatTimeout: 2s\n  rebuildGrace: 500ms\n  stallTimeout: 30000"), "c.yaml");
    expect(c.mdm).toMatchObject({ heartbeatTimeout: 2000, rebuildGrace: 500, stallTimeout: 30_000 });
    expect(parseClusterConfig(base("  port: 6611"), "c.yaml").mdm.heartbeatTimeout).toBeUndefined();
    expect(() => parseClusterConfig(base("  heartbeatTimeout: soon"), "c.yaml")).toThrow(/c\.yaml:2: mdm\.heartbeatTimeout: not a duration/);
  });
});

describe("runMdm", () => {
  test("a short heartbeat timeout gives SDSs a lease of 0.8 x the timeout", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pf-mdm-recovery-config-"));
    dirs.push(dir);
    const h = await runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, plainHttp: true, clusterSecret: "0123456789abcdef0123", heartbeatTimeoutMs: 2000, rebuildGraceMs: 500, stallTimeoutMs: 1000 });
    try {
      const r = await fetch(`${h.url}/pf/v1/sds/join`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-pf-cluster-secret": "0123456789abcdef0123" },
        body: JSON.stringify({ name: "sds1", host: "127.0.0.1", dataPort: 7001, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: "/d", capacityBytes: 1 << 30 }] }),
      });
      expect(r.status).toBe(200);
      expect(SdsJoinResponse.parse(await r.json()).leaseMs).toBe(1600);
    } finally {
      await h.stop();
    }
    await expect(runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, plainHttp: true, clusterSecret: "0123456789abcdef0123", heartbeatTimeoutMs: 900 })).rejects.toThrow(/too short/);
  });
});
