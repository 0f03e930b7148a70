// Alerts the MDM raises and clears by itself, in-process on a fake clock: an SDS that stops
// heart-beating (SDS_DISCONNECTED and the pool's degraded capacity, cleared once it is back and
// resynced, kept in the history), a failed device, a rebuild that makes no progress, an SDC with
// mapped volumes gone, capacity over the pool's thresholds (setCapacityAlertThresholds with
// PowerFlex's string values), thin overcommit past its limit, the TLS certificate near expiry;
// the PowerFlex Alert shape; and persistence: active alerts survive an MDM restart (reopened
// database) with their id and start time, and nothing is cleared while SDSs are only presumed
// alive after the restart.

import { afterEach, describe, expect, test } from "bun:test";
import { Limits, Units } from "../src/proto/limits.ts";
import { AlertObject } from "../src/proto/powerflex_api.ts";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";
import { ObserveCluster, type Obj } from "./mdm_observe_fixture.ts";

const TIMEOUT = 2000;
const GRACE = 10_000;
const STALL = 5000;
const recovery = { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: GRACE, stallTimeoutMs: STALL };

let rc: RecoveryCluster | null = null;
let oc: ObserveCluster | null = null;
afterEach(() => {
  rc?.close();
  oc?.close();
  rc = null;
  oc = null;
});

type Api = { api(method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; json: unknown }> };

async function alerts(m: Api, all = false): Promise<AlertObject[]> {
  const r = await m.api("GET", `/types/Alert/instances${all ? "?all=true" : ""}`);
  expect(r.status).toBe(200);
  return (r.json as unknown[]).map((a) => AlertObject.parse(a));
}

const types = (list: AlertObject[]) => list.map((a) => a.alertType).sort();

/** Let time pass in 1 s steps: heartbeats, the recovery planner, then the observe step. */
async function advance(c: RecoveryCluster, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 1000) {
    await c.advance(Math.min(1000, left));
    observeTick(c.ctx);
  }
}

async function recoveryCluster(): Promise<RecoveryCluster> {
  const c = await RecoveryCluster.open({ recovery });
  for (let i = 1; i <= 3; i++) await c.addSds(`sds${i}`);
  await c.createVolume("v1", 2);
  await advance(c, 1000);
  return c;
}

const ISO_MS_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe("SDS loss and return", () => {
  test("a silent SDS raises SDS_DISCONNECTED and STORAGE_POOL_HAS_DEGRADED_CAPACITY; back and resynced, both clear and stay in the history", async () => {
    const c = (rc = await recoveryCluster());
    expect(await alerts(c.m)).toEqual([]);
    c.alive.delete("sds3");
    await advance(c, TIMEOUT + 1000);
    const active = await alerts(c.m);
    expect(types(active)).toEqual(["SDS_DISCONNECTED", "STORAGE_POOL_HAS_DEGRADED_CAPACITY"]);
    const sds = active.find((a) => a.alertType === "SDS_DISCONNECTED")!;
    expect(sds).toMatchObject({ severity: "ALERT_HIGH", affectedObject: { type: "Sds", id: c.id("sds3"), objectId: c.id("sds3") }, alertValues: { sdsName: "sds3" }, state: "active", clearedTime: null });
    expect(sds.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sds.name).toBe(sds.id);
    expect(sds.uuid).toBe(sds.id);
    expect(sds.startTime).toMatch(ISO_MS_Z);
    expect(sds.lastObserved).toMatch(ISO_MS_Z);
    expect(Date.parse(sds.lastObserved)).toBe(c.now());
    const pool = active.find((a) => a.alertType === "STORAGE_POOL_HAS_DEGRADED_CAPACITY")!;
    expect(pool.affectedObject).toEqual({ type: "StoragePool", id: await c.poolId(), objectId: await c.poolId() });
    expect(Number(pool.alertValues.degradedExtents)).toBeGreaterThan(0);
    const one = await c.m.api("GET", `/instances/Alert::${sds.id}`);
    expect(one.status).toBe(200);
    expect(AlertObject.parse(one.json).alertType).toBe("SDS_DISCONNECTED");
    expect((await c.m.api("GET", "/instances/Alert::00000000-0000-0000-0000-000000000000")).status).toBe(500);

    // it comes back within the grace period: resync, then every copy is in sync again
    c.alive.add("sds3");
    await advance(c, 1000);
    expect(types(await alerts(c.m))).toEqual(["STORAGE_POOL_HAS_DEGRADED_CAPACITY"]);
    await c.settle();
    observeTick(c.ctx);
    expect(await alerts(c.m)).toEqual([]);
    const history = await alerts(c.m, true);
    expect(types(history)).toEqual(["SDS_DISCONNECTED", "STORAGE_POOL_HAS_DEGRADED_CAPACITY"]);
    for (const a of history) {
      expect(a.state).toBe("cleared");
      expect(a.clearedTime).toMatch(ISO_MS_Z);
      expect(Date.parse(a.clearedTime!)).toBeGreaterThanOrEqual(Date.parse(a.startTime));
    }
    const ext = await c.m.api("GET", "/pf/alerts?all=true");
    expect((ext.json as unknown[]).length).toBe(2);
    expect(((await c.m.api("GET", "/pf/alerts")).json as unknown[]).length).toBe(0);
  });

  test("a rebuild that makes no progress raises FWD_REBUILD_STUCK; progress clears it", async () => {
    const c = (rc = await recoveryCluster());
    c.alive.delete("sds1");
    await advance(c, TIMEOUT + GRACE + 1000);
    const running = c.extents().filter((e) => e.target !== null);
    expect(running.length).toBeGreaterThan(0);
    await advance(c, STALL + 1000);
    expect(types(await alerts(c.m))).toContain("FWD_REBUILD_STUCK");
    await c.settle();
    observeTick(c.ctx);
    expect(types(await alerts(c.m))).not.toContain("FWD_REBUILD_STUCK");
  });
});

describe("alerts survive an MDM restart", () => {
  test("active alerts come back with their id and start; none is cleared while SDSs are only presumed alive; then the rules decide", async () => {
    let c = (rc = await recoveryCluster());
    c.failedDevices.add(c.sds.get("sds2")!.devices[0]!);
    c.alive.delete("sds3");
    await advance(c, TIMEOUT + 1000);
    const before = await alerts(c.m);
    // extents with one copy on the failed device and the other on sds3 have no copy left
    const lost = ["DEVICE_FAILED", "SDS_DISCONNECTED", "STORAGE_POOL_HAS_DEGRADED_CAPACITY", "STORAGE_POOL_HAS_FAILED_CAPACITY"];
    expect(types(before)).toEqual(lost);
    // restart the MDM on the same database; the device is Normal again (replaced), sds3 still gone
    c.failedDevices.clear();
    c = rc = await c.restart({ recovery });
    const after = await alerts(c.m);
    expect(after.map((a) => [a.alertType, a.id, a.startTime]).sort()).toEqual(before.map((a) => [a.alertType, a.id, a.startTime]).sort());
    await c.beatAll();
    observeTick(c.ctx);
    // within one heartbeat timeout of the start nothing clears (sds3 is presumed alive, so is the pool)
    expect(types(await alerts(c.m))).toEqual(lost);
    await advance(c, TIMEOUT + 2000);
    const now = await alerts(c.m);
    // the device is fine now: cleared; sds3 is still silent: the same alerts, never cleared in between
    expect(types(now)).toEqual(lost.slice(1));
    expect(now.find((a) => a.alertType === "SDS_DISCONNECTED")!.id).toBe(before.find((a) => a.alertType === "SDS_DISCONNECTED")!.id);
    expect(types((await alerts(c.m, true)).filter((a) => a.state === "cleared"))).toEqual(["DEVICE_FAILED"]);
  });
});

describe("SDC, device, capacity, overcommit and certificate alerts", () => {
  test("SDC_DISCONNECTED only for an SDC with mapped volumes", async () => {
    const c = (oc = await ObserveCluster.open());
    c.sdcAlive = false;
    for (let i = 0; i < 7; i++) await c.tick();
    expect(await alerts(c.m)).toEqual([]);
    await c.volume("v1");
    await c.tick();
    const a = await alerts(c.m);
    expect(types(a)).toEqual(["SDC_DISCONNECTED"]);
    expect(a[0]).toMatchObject({ severity: "ALERT_MEDIUM", affectedObject: { type: "Sdc", id: c.sdcId }, alertValues: { sdcName: "hostA", mappedVolumes: "1" } });
    c.sdcAlive = true;
    await c.tick();
    expect(await alerts(c.m)).toEqual([]);
  });

  test("capacity thresholds: the action takes PowerFlex's string values, the pool shows them, the alerts follow", async () => {
    const c = (oc = await ObserveCluster.open());
    const use = (gib: number) => c.sds.forEach((s) => (s.devices[0]!.usedBytes = gib * Units.GiB));
    // usable = 300 GiB raw - 10 % spare = 270 GiB; 77 GiB used on each device = 85.6 %
    use(77);
    await c.tick();
    expect(types(await alerts(c.m))).toEqual(["CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD"]);
    expect((await alerts(c.m))[0]!.alertValues).toMatchObject({ utilizationPercent: "85.6", thresholdPercent: "80" });
    const set = await c.m.api("POST", `/instances/StoragePool::${c.poolId}/action/setCapacityAlertThresholds`, {
      capacityAlertHighThresholdPercent: "88",
      capacityAlertCriticalThresholdPercent: "95",
    });
    expect(set.status).toBe(200);
    expect(set.json).toEqual({});
    const pool = (await c.m.api("GET", `/instances/StoragePool::${c.poolId}`)).json as Obj;
    expect(pool).toMatchObject({ capacityAlertHighThreshold: 88, capacityAlertCriticalThreshold: 95 });
    await c.tick();
    expect(await alerts(c.m)).toEqual([]);
    use(87); // 96.7 %: critical only
    await c.tick();
    const crit = await alerts(c.m);
    expect(types(crit)).toEqual(["CAPACITY_UTILIZATION_ABOVE_CRITICAL_THRESHOLD"]);
    expect(crit[0]!.severity).toBe("ALERT_CRITICAL");
    // only one of the two given: the other stays
    expect((await c.m.api("POST", `/instances/StoragePool::${c.poolId}/action/setCapacityAlertThresholds`, { capacityAlertCriticalThresholdPercent: 99 })).status).toBe(200);
    expect(((await c.m.api("GET", `/instances/StoragePool::${c.poolId}`)).json as Obj).capacityAlertHighThreshold).toBe(88);
    await c.tick();
    expect(types(await alerts(c.m))).toEqual(["CAPACITY_UTILIZATION_ABOVE_HIGH_THRESHOLD"]);
    for (const [body, status] of [
      [{ capacityAlertHighThresholdPercent: "95", capacityAlertCriticalThresholdPercent: "90" }, 400],
      [{ capacityAlertHighThresholdPercent: "abc" }, 400],
      [{ capacityAlertHighThresholdPercent: "0" }, 400],
      [{ capacityAlertCriticalThresholdPercent: "101" }, 400],
      [{}, 400],
    ] as const) {
      const r = await c.m.api("POST", `/instances/StoragePool::${c.poolId}/action/setCapacityAlertThresholds`, body);
      expect({ body, status: r.status, errorCode: (r.json as Obj).errorCode }).toEqual({ body, status, errorCode: 2 });
    }
    const missing = await c.m.api("POST", "/instances/StoragePool::0123456789abcdef/action/setCapacityAlertThresholds", { capacityAlertHighThresholdPercent: "70" });
    expect(missing.status).toBe(500);
    expect((missing.json as Obj).errorCode).toBe(79);
    expect(((await c.m.api("GET", `/instances/StoragePool::${c.poolId}`)).json as Obj).capacityAlertCriticalThreshold).toBe(99);
  });

  test("a failed device raises DEVICE_FAILED; thin volumes past the overcommit limit raise STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT", async () => {
    const c = (oc = await ObserveCluster.open({ devicesGiB: [10] }));
    // usable = 27 GiB; limit 10x: up to 270 GiB raw, i.e. 135 GiB of thin volumes (two copies)
    await c.volume("big1", { sizeGiB: 130, map: false });
    await c.tick();
    expect(await alerts(c.m)).toEqual([]);
    await c.volume("big2", { sizeGiB: 10, map: false });
    await c.tick();
    const over = await alerts(c.m);
    expect(types(over)).toEqual(["STORAGE_POOL_THIN_OVERCOMMIT_ABOVE_LIMIT"]);
    expect(over[0]!.alertValues).toMatchObject({ overcommitRatio: "10.37", limit: String(Limits.maxThinOvercommitRatio) });
    c.sds[0]!.devices[0]!.state = "Failed";
    c.sds[0]!.devices[0]!.error = "fdatasync /data/dev0.img: EIO: i/o error";
    await c.tick();
    const a = await alerts(c.m);
    expect(types(a)).toContain("DEVICE_FAILED");
    const failed = a.find((x) => x.alertType === "DEVICE_FAILED")!;
    expect(failed.affectedObject).toEqual({ type: "Device", id: c.sds[0]!.deviceIds[0]!, objectId: c.sds[0]!.deviceIds[0]! });
    // the SDS's reason travels with the alert (webhook, REST, dashboard)
    expect(failed.alertValues.errorMessage).toBe("fdatasync /data/dev0.img: EIO: i/o error");
  });

  test("the MDM's certificate: an alert 30 days before it expires, escalating as it nears; a new certificate clears it", async () => {
    const c = (oc = await ObserveCluster.open());
    const day = 86_400_000;
    const obs = c.ctx.observe;
    obs.certValidToMs = c.m.clock.nowMs + 90 * day;
    await c.tick();
    expect(await alerts(c.m)).toEqual([]);
    obs.certValidToMs = c.m.clock.nowMs + 20 * day;
    await c.tick();
    const first = await alerts(c.m);
    expect(first.map((a) => [a.alertType, a.severity, a.affectedObject.type])).toEqual([["CERTIFICATE_ABOUT_TO_EXPIRE", "ALERT_MEDIUM", "System"]]);
    expect(first[0]!.alertValues.daysLeft).toBe("19");
    obs.certValidToMs = c.m.clock.nowMs + 3 * day;
    await c.tick();
    expect((await alerts(c.m))[0]).toMatchObject({ id: first[0]!.id, severity: "ALERT_HIGH" });
    obs.certValidToMs = c.m.clock.nowMs - day;
    await c.tick();
    expect((await alerts(c.m))[0]!.severity).toBe("ALERT_CRITICAL");
    obs.certValidToMs = c.m.clock.nowMs + 3650 * day;
    await c.tick();
    expect(await alerts(c.m)).toEqual([]);
  });

  test("the history is capped (oldest cleared go first)", async () => {
    const c = (oc = await ObserveCluster.open());
    await c.volume("v1");
    // flap the SDC more often than the history keeps
    for (let i = 0; i < Limits.maxClearedAlerts + 5; i++) {
      c.sdcAlive = false;
      await c.tick(undefined, Limits.heartbeatTimeoutMs);
      c.sdcAlive = true;
      await c.tick();
    }
    const n = c.ctx.store.sqlite.query<{ n: number }, []>("SELECT count(*) AS n FROM alert WHERE cleared_ms IS NOT NULL").get()!.n;
    expect(n).toBe(Limits.maxClearedAlerts);
  }, 120_000);
});
