// End to end with the compiled binary (`pf up` on loopback, 3 SDSs, 1 SDC): the MDM's view of IO
// and its alerts, as an operator and Prometheus see them.
// - A paced fio job (nbd engine, 500 IOPS of 4k random writes for ~10 s): the volume's write
//   IOPS from PowerFlex's userDataWriteBwc (numOccured / numSeconds) and from the rate of the
//   MDM's pf_volume_write_ops_total (scraped every 200 ms, between the counter's first and last
//   move) are both within 10 % of fio's reported IOPS, and so is
//   /api/pf/live; the system history follows; promtool check metrics is clean on the MDM's
//   /metrics (HTTPS, no token).
// - kill -9 of one SDS: SDS_DISCONNECTED and the pool's degraded-capacity alert are raised; once
//   the SDS is back and resynced both clear, and the history keeps them.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { AlertObject } from "../src/proto/powerflex_api.ts";
import { TestCluster } from "./helpers/cluster.ts";
import { promtoolMetrics, sampleValue } from "./helpers/promtool.ts";
import { runFio } from "./helpers/real_clients.ts";
import { waitFor, waitPoolHealthy } from "./helpers/recovery.ts";

let c: TestCluster;
let token = "";
let ca = "";
const FIO_IOPS = 500;

async function mdm(path: string, auth = true): Promise<Response> {
  const headers: Record<string, string> = auth ? { authorization: `Basic ${Buffer.from(`admin:${token}`).toString("base64")}` } : {};
  return fetch(`${c.mdmUrl}${path}`, { headers, tls: { ca } } as RequestInit);
}

async function json<T>(path: string): Promise<T> {
  const r = await mdm(path);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}

async function metrics(): Promise<string> {
  const r = await mdm("/metrics", false);
  expect(r.status).toBe(200);
  return r.text();
}

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 3,
    devicesPerSds: 1,
    deviceSize: "256MiB",
    mdmYaml: "heartbeatTimeout: 3s, rebuildGrace: 60s",
    volumes: [{ name: "vol1", size: "128MiB" }],
  });
  await c.start();
  ca = readFileSync(c.caFile, "utf8");
  const r = await fetch(`${c.mdmUrl}/api/login`, { headers: { authorization: `Basic ${Buffer.from("admin:test-admin-pw").toString("base64")}` }, tls: { ca } } as RequestInit);
  token = (await r.json()) as string;
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

describe("the MDM's IO figures under a paced fio job", () => {
  test("userDataWriteBwc, the rate of pf_volume_write_ops_total and /api/pf/live are within 10 % of fio's IOPS; promtool clean", async () => {
    const volId = ((await json<{ id: string; name: string }[]>("/api/types/Volume/instances")).find((v) => v.name === "vol1"))!.id;
    const fio = runFio([
      "--name=paced",
      "--ioengine=nbd",
      `--uri=${c.nbdUri("vol1")}`,
      "--rw=randwrite",
      "--bs=4k",
      "--iodepth=4",
      `--rate_iops=${FIO_IOPS}`,
      "--time_based",
      "--runtime=10",
      "--size=64M",
      "--randrepeat=1",
    ]);
    // scrapes every 200 ms inside the run (after 1.5 s of warm-up); the counter moves when a
    // heartbeat lands, so the rate is taken between the first and the last move: a whole number
    // of heartbeat intervals (two scrapes at fixed times would catch 5 or 6 heartbeats of ~1.02 s)
    await Bun.sleep(1500);
    const seen: { t: number; v: number }[] = [];
    let text = "";
    while (seen.length === 0 || performance.now() - seen[0]!.t < 7000) {
      text = await metrics();
      seen.push({ t: performance.now(), v: sampleValue(text, "pf_volume_write_ops_total", `volume_id="${volId}"`)! });
      await Bun.sleep(200);
    }
    const moves = seen.filter((s, i) => i > 0 && s.v !== seen[i - 1]!.v);
    const first = moves[0]!;
    const last = moves.at(-1)!;
    expect(last.t - first.t).toBeGreaterThan(3000); // several whole heartbeat intervals
    const stats = await json<Record<string, { numOccured: number; numSeconds: number; totalWeightInKb: number }>>(`/api/instances/Volume::${volId}/relationships/Statistics`);
    const live = await json<{ volumes: Record<string, { writeIops: number; writeBps: number }> }>("/api/pf/live");
    const history = await json<{ intervalMs: number; samples: { writeIops: number }[] }>("/api/pf/history?seconds=5");
    const done = await fio;
    const fioIops = (done.json.jobs[0] as unknown as { write: { iops: number } }).write.iops;

    const bwc = stats.userDataWriteBwc!;
    const bwcIops = bwc.numOccured / bwc.numSeconds;
    const metricsIops = (last.v - first.v) / ((last.t - first.t) / 1000);
    process.stderr.write(
      `paced fio ${FIO_IOPS} IOPS: fio ${fioIops.toFixed(1)}, userDataWriteBwc ${bwcIops.toFixed(1)} (${bwc.numOccured}/${bwc.numSeconds} s, ${bwc.totalWeightInKb} KiB), ` +
        `rate(pf_volume_write_ops_total) ${metricsIops.toFixed(1)}, /api/pf/live ${live.volumes[volId]?.writeIops}\n`,
    );
    expect(Math.abs(fioIops - FIO_IOPS) / FIO_IOPS).toBeLessThan(0.1);
    expect(bwc.numSeconds).toBe(5);
    expect(Math.abs(bwcIops - fioIops) / fioIops).toBeLessThan(0.1);
    expect(Math.abs(bwc.totalWeightInKb / bwc.numOccured - 4)).toBeLessThan(0.01); // 4 KiB each
    expect(Math.abs(metricsIops - fioIops) / fioIops).toBeLessThan(0.1);
    expect(Math.abs(live.volumes[volId]!.writeIops - fioIops) / fioIops).toBeLessThan(0.1);
    expect(history.intervalMs).toBe(1000);
    expect(history.samples.length).toBeGreaterThanOrEqual(4);
    const hist = history.samples.map((s) => s.writeIops).sort((a, b) => a - b);
    expect(Math.abs(hist[Math.floor(hist.length / 2)]! - fioIops) / fioIops).toBeLessThan(0.15);
    expect(sampleValue(text, "pf_sds_up")).toBe(1);
    expect(promtoolMetrics(text)).toEqual({ code: 0, findings: "" });
  }, 90_000);
});

describe("alerts of a lost SDS", () => {
  test("kill -9 of an SDS raises SDS_DISCONNECTED and degraded capacity; back and resynced, they clear and stay in the history", async () => {
    const argv = c.killRole("sds sds2");
    const raised = await waitFor("SDS_DISCONNECTED and STORAGE_POOL_HAS_DEGRADED_CAPACITY", 30_000, async () => {
      const list = (await json<unknown[]>("/api/types/Alert/instances")).map((a) => AlertObject.parse(a));
      const types = list.map((a) => a.alertType);
      return types.includes("SDS_DISCONNECTED") && types.includes("STORAGE_POOL_HAS_DEGRADED_CAPACITY") ? list : null;
    });
    expect(raised.find((a) => a.alertType === "SDS_DISCONNECTED")!.alertValues.sdsName).toBe("sds2");
    const m = await metrics();
    expect(sampleValue(m, "pf_alerts_active", 'alert_type="SDS_DISCONNECTED"')).toBe(1);
    expect(sampleValue(m, "pf_health_status")).toBe(2);
    expect(sampleValue(m, "pf_sds_up", 'sds="sds2"')).toBe(0);
    const r = await c.scli(["--query_alerts"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("SDS_DISCONNECTED (ALERT_HIGH)");

    c.restartRole(argv);
    await waitPoolHealthy((a) => c.scli(a), 90_000);
    await waitFor("the alerts to clear", 20_000, async () => (await json<unknown[]>("/api/types/Alert/instances")).length === 0);
    const history = (await json<unknown[]>("/api/types/Alert/instances?all=true")).map((a) => AlertObject.parse(a));
    for (const t of ["SDS_DISCONNECTED", "STORAGE_POOL_HAS_DEGRADED_CAPACITY"]) {
      const a = history.find((x) => x.alertType === t);
      expect(a?.state).toBe("cleared");
      expect(Date.parse(a!.clearedTime!)).toBeGreaterThan(Date.parse(a!.startTime));
    }
    expect(sampleValue(await metrics(), "pf_health_status")).toBe(0);
  }, 180_000);
});
