// The dashboard's HTTP side, in-process (app.request): a browser opening the MDM lands on
// /dashboard/, the shell and embedded assets come with a strict CSP and revalidate by ETag, the
// data route answers 401 without a token and the cluster's snapshot with one, and the health
// checks are the MDM's active alerts in the operator's words.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { healthOf, type AlertFacts } from "../src/mdm/dashboard/dashboard_health.ts";
import type { DashSummary } from "../src/mdm/dashboard/dashboard_model.ts";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";
import { basic, MdmFixture } from "./mdm_fixture.ts";

let m: MdmFixture;
beforeEach(async () => {
  m = await MdmFixture.open();
});
afterEach(() => m.close());

async function cluster(): Promise<void> {
  await m.login();
  for (let i = 1; i <= 3; i++) await m.joinSds(`sds${i}`, { devicesGiB: [100, 100] });
  const sdcId = await m.joinSdc("guid-host-a", "hostA");
  const poolId = await m.idOf("StoragePool", "sp1");
  const v = await m.api("POST", "/types/Volume/instances", { name: "vol1", storagePoolId: poolId, volumeSizeInKb: String(8 * 1024 * 1024), volumeType: "ThinProvisioned" });
  expect(v.status).toBe(200);
  const mapped = await m.api("POST", `/instances/Volume::${(v.json as { id: string }).id}/action/addMappedSdc`, { sdcId, accessMode: "ReadWrite" });
  expect(mapped.status).toBe(200);
}

async function summary(): Promise<DashSummary> {
  const r = await m.raw("GET", "/dashboard/api/summary", { headers: { authorization: basic("admin", m.token) } });
  expect(r.status).toBe(200);
  return r.json as DashSummary;
}

describe("pages and assets", () => {
  test("a browser opening / is sent to /dashboard/; an API client gets 404", async () => {
    const res = await m.core.app.request("/", { headers: { accept: "text/html,application/xhtml+xml" } });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("/dashboard/");
    const api = await m.raw("GET", "/");
    expect(api.status).toBe(404);
    const bare = await m.core.app.request("/dashboard");
    expect(bare.status).toBe(301);
    expect(bare.headers.get("location")).toBe("/dashboard/");
  });

  test("the shell is HTML under a strict CSP and carries no cluster data", async () => {
    await cluster();
    const res = await m.core.app.request("/dashboard/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const html = await res.text();
    expect(html).toContain('<script type="module" src="/dashboard/assets/app.js"></script>');
    expect(html).not.toMatch(/<script>|<style|style=|https?:\/\//);
    expect(html).not.toContain(m.core.ctx.systemId);
    expect(html).not.toContain("sds1");
  });

  test("embedded assets: the bundled app, the style sheet and the icon, revalidated by ETag", async () => {
    for (const [name, type, marker] of [
      ["app.js", "text/javascript", "/dashboard/api/summary"],
      ["app.css", "text/css", "--accent"],
      ["icon.svg", "image/svg+xml", "<svg"],
    ] as const) {
      const res = await m.core.app.request(`/dashboard/assets/${name}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain(type);
      expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
      const body = await res.text();
      expect(body).toContain(marker);
      const etag = res.headers.get("etag");
      expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
      const again = await m.core.app.request(`/dashboard/assets/${name}`, { headers: { "if-none-match": etag! } });
      expect(again.status).toBe(304);
    }
    const js = await (await m.core.app.request("/dashboard/assets/app.js")).text();
    // bundled for the browser: no import of another file or origin is left
    expect(js).not.toMatch(/\bimport\s*[^(]*from\s*["']/);
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect((await m.raw("GET", "/dashboard/assets/nope.js")).status).toBe(404);
    expect((await m.raw("GET", "/dashboard/other")).status).toBe(404);
  });
});

describe("the data route needs the REST login", () => {
  test("no token, a wrong token or a logged-out token: 401 and no data", async () => {
    await cluster();
    for (const headers of [{}, { authorization: basic("admin", "not-a-token") }, { authorization: basic("admin", "Scaleio123") }] as Record<string, string>[]) {
      const r = await m.raw("GET", "/dashboard/api/summary", { headers });
      expect(r.status).toBe(401);
      expect(r.text).not.toContain(m.core.ctx.systemId);
      expect(r.text).not.toContain("sds1");
    }
    const token = m.token;
    await m.api("POST", "/logout", {});
    const after = await m.raw("GET", "/dashboard/api/summary", { headers: { authorization: basic("admin", token) } });
    expect(after.status).toBe(401);
  });

  test("with a token: one snapshot of the whole cluster, sizes in bytes", async () => {
    await cluster();
    const res = await m.core.app.request("/dashboard/api/summary", { headers: { authorization: basic("admin", m.token) } });
    expect(res.headers.get("cache-control")).toBe("no-store");
    const s = (await res.json()) as DashSummary;
    expect(s.user).toEqual({ name: "admin", role: "SuperUser", canModify: true });
    expect(s.system.id).toBe(m.core.ctx.systemId);
    expect(s.system.capacityAlertHighPct).toBe(80);
    expect(s.system.capacityAlertCriticalPct).toBe(90);
    expect(s.protectionDomains.map((p) => p.name)).toEqual(["pd1"]);
    expect(s.storagePools).toHaveLength(1);
    const pool = s.storagePools[0]!;
    expect(pool.rawBytes).toBe(600 * 1024 ** 3);
    expect(pool.usableRawBytes).toBe(pool.rawBytes - pool.spareBytes);
    expect([pool.highThresholdPct, pool.criticalThresholdPct]).toEqual([80, 90]);
    expect(pool.utilizationPct).toBe(0); // thin and nothing written yet
    expect(pool.volumes).toBe(1);
    expect(pool.provisionedBytes).toBe(8 * 1024 ** 3);
    expect(pool.rebuild.poolState).toBe("Normal");
    expect(s.sds.map((x) => [x.name, x.connection, x.state])).toEqual([
      ["sds1", "Connected", "Normal"],
      ["sds2", "Connected", "Normal"],
      ["sds3", "Connected", "Normal"],
    ]);
    expect(s.sds.reduce((n, x) => n + x.extentCopies, 0)).toBe(2 * (8 * 1024 ** 3) / s.volumes[0]!.extentBytes);
    expect(s.devices).toHaveLength(6);
    expect(s.sdcs.map((c) => [c.name, c.connection])).toEqual([["hostA", "Connected"]]);
    expect(s.volumes.map((v) => [v.name, v.sizeBytes, v.volumeType])).toEqual([["vol1", 8 * 1024 ** 3, "ThinProvisioned"]]);
    expect(s.mappings).toEqual([{ volumeId: s.volumes[0]!.id, sdcId: s.sdcs[0]!.id, accessMode: "ReadWrite" }]);
    expect(s.health).toEqual({ level: "OK", checks: [] });
  });

  test("an SDS silent past the heartbeat timeout: Disconnected, and its alert is a health check", async () => {
    await cluster();
    observeTick(m.core.ctx);
    expect((await summary()).health).toEqual({ level: "OK", checks: [] });
    m.clock.advance(m.core.ctx.health.heartbeatTimeoutMs + 1);
    // two SDSs and the SDC check in again; sds2 stays silent
    for (const name of ["sds1", "sds3"]) m.core.ctx.health.sdsSeen(await m.idOf("Sds", name), 0);
    m.core.ctx.health.sdcSeen(await m.idOf("Sdc", "hostA"), 0);
    observeTick(m.core.ctx);
    const s = await summary();
    const sds2 = s.sds.find((x) => x.name === "sds2")!;
    expect(sds2.connection).toBe("Disconnected");
    const check = s.health.checks.find((c) => c.name === "SDS_DISCONNECTED");
    expect(check).toMatchObject({ level: "ERR", severity: "ALERT_HIGH", objectType: "Sds", objectId: sds2.id, message: "SDS sds2 is disconnected", sinceMs: m.clock.nowMs });
    expect(s.health.level).toBe("ERR");
    // the same alert the REST API lists
    const alerts = (await m.api("GET", "/types/Alert/instances")).json as { id: string }[];
    expect(alerts.map((a) => a.id)).toContain(check!.alertId);
  });
});

describe("health checks", () => {
  const names: Record<string, string> = { p1: "sp1", s2: "sds2", d1: "dev0", c1: "hostA" };
  const nameOf = (_type: string, id: string) => names[id] ?? id;
  const alert = (alertType: string, severity: AlertFacts["severity"], objectType: string, objectId: string, values: Record<string, string>, startMs: number): AlertFacts => ({
    id: `${alertType}-${objectId}`,
    alertType,
    severity,
    objectType,
    objectId,
    values,
    startMs,
  });

  test("no alert: OK; MEDIUM and LOW alerts warn; HIGH and CRITICAL are errors, listed first", () => {
    expect(healthOf([], nameOf)).toEqual({ level: "OK", checks: [] });
    const warn = alert("CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD", "ALERT_MEDIUM", "StoragePool", "p1", { utilizationPercent: "81.0", thresholdPercent: "80" }, 1);
    expect(healthOf([warn], nameOf).level).toBe("WARN");
    const h = healthOf([warn, alert("SDS_DISCONNECTED", "ALERT_HIGH", "Sds", "s2", { sdsName: "sds2" }, 5), alert("DEVICE_FAILED", "ALERT_HIGH", "Device", "d1", { devicePath: "/x/dev0.img" }, 3)], nameOf);
    expect(h.level).toBe("ERR");
    expect(h.checks.map((c) => [c.level, c.message])).toEqual([
      ["ERR", "device dev0 (/x/dev0.img) failed"],
      ["ERR", "SDS sds2 is disconnected"],
      ["WARN", "pool sp1: 81.0 % used (threshold 80 %)"],
    ]);
    // with its SDS's reason
    const why = healthOf([alert("DEVICE_FAILED", "ALERT_HIGH", "Device", "d1", { devicePath: "/x/dev0.img", errorMessage: "fdatasync /x/dev0.img: EIO" }, 3)], nameOf);
    expect(why.checks.map((c) => c.message)).toEqual(["device dev0 (/x/dev0.img) failed: fdatasync /x/dev0.img: EIO"]);
    // an unnamed device goes by its path, once
    const unnamed = healthOf([alert("DEVICE_FAILED", "ALERT_HIGH", "Device", "d9", { devicePath: "/x/dev9.img" }, 3)], (_t, id) => (id === "d9" ? "/x/dev9.img" : id));
    expect(unnamed.checks.map((c) => c.message)).toEqual(["device /x/dev9.img failed"]);
  });

  test("every alert type gets a sentence; an unknown type still names its object and facts", () => {
    const h = healthOf(
      [
        alert("SDC_DISCONNECTED", "ALERT_MEDIUM", "Sdc", "c1", { mappedVolumes: "2" }, 1),
        alert("STORAGE_POOL_HAS_DEGRADED_CAPACITY", "ALERT_MEDIUM", "StoragePool", "p1", { degradedExtents: "12" }, 2),
        alert("FWD_REBUILD_STUCK", "ALERT_HIGH", "StoragePool", "p1", { rebuildState: "Rebuilding", noProgressSeconds: "31" }, 3),
        alert("SOMETHING_NEW", "ALERT_LOW", "System", "sys", { a: "1" }, 4),
      ],
      nameOf,
    );
    expect(h.checks.map((c) => c.message)).toEqual([
      "pool sp1: Rebuilding made no progress for 31 s",
      "SDC hostA is disconnected with 2 mapped volumes",
      "pool sp1: 12 extents on one copy only",
      "System sys: a=1",
    ]);
  });
});
