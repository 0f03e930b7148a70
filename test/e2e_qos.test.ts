// Per-mapping QoS end to end: setMappedSdcLimits on a running mapping (no remap) holds fio at
// the limit (500 IOPS ± 5 %) while an unlimited volume on the same SDC keeps its speed; scli
// --set_sdc_volume_limit changes it live and --query_volume shows it; 0 lifts it. The SDC holds
// back by not reading the NBD connection: fio sees no error and no timeout.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./helpers/cluster.ts";
import { fioIops, runFio } from "./helpers/real_clients.ts";

let c: TestCluster;

beforeAll(async () => {
  c = await TestCluster.create({ volumes: [{ name: "q1", size: "64MiB" }, { name: "q2", size: "64MiB" }] });
  await c.start();
  await c.login();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

const job = (volume: string, seconds: number) => [
  `--name=${volume}`,
  "--ioengine=nbd",
  `--uri=${c.nbdUri(volume)}`,
  "--rw=randwrite",
  "--bs=4k",
  "--iodepth=16",
  "--size=64M",
  "--time_based",
  `--runtime=${seconds}`,
  "--ramp_time=2", // the first second of burst is not part of the measure
];

/**
 * Wait until the SDC enforces the limit (it applies a new map at its next heartbeat, later under
 * load): short fio probes until one runs at no more than 1.5x the limit (0: more than 5000).
 * The probes also spend the bucket's burst, so a measure that follows starts at the steady rate.
 */
async function waitLimit(volume: string, iops: number): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const probe = fioIops(await runFio([...job(volume, 1).filter((a) => !a.startsWith("--ramp_time"))]));
    if (iops === 0 ? probe > 5000 : probe < iops * 1.5) return;
  }
  throw new Error(`the SDC never enforced ${iops} IOPS on ${volume}`);
}

test("a 500 IOPS limit holds fio at 500 ± 5 % while an unlimited volume on the same SDC keeps its speed", async () => {
  const alone = fioIops(await runFio(job("q2", 4)));
  const r = await c.scli(["--set_sdc_volume_limit", "--volume_name", "q1", "--sdc_name", "local", "--limit_iops", "500"]);
  expect(r.code, r.stderr).toBe(0);
  await waitLimit("q1", 500);
  const [limited, free] = await Promise.all([runFio(job("q1", 8)), runFio(job("q2", 8))]);
  const li = fioIops(limited);
  const fi = fioIops(free);
  console.log(`QoS: limited ${li.toFixed(0)} IOPS (limit 500); unlimited alone ${alone.toFixed(0)}, beside the limited one ${fi.toFixed(0)} IOPS`);
  expect(li).toBeGreaterThan(475);
  expect(li).toBeLessThan(525);
  // the other volume is not throttled: far above the limit, and (this host is shared, figures
  // move a lot between runs) in the range of its speed alone
  // (5x the limit: a throttled volume cannot get there; 10x failed once at load ~6 with the
  // volume alone at 4,885 and beside the limited one at 3,501)
  expect(fi).toBeGreaterThan(500 * 5);
  expect(fi).toBeGreaterThan(alone * 0.4);
  const q = await c.scli(["--query_volume", "--volume_name", "q1"]);
  expect(q.stdout).toContain("IOPS limit: 500");
}, 90_000);

test("a live change applies on the running mapping; 0 lifts the limit", async () => {
  const run = runFio(job("q1", 8));
  await Bun.sleep(4000); // 2 s ramp + 2 s at 500
  expect((await c.scli(["--set_sdc_volume_limit", "--volume_name", "q1", "--sdc_name", "local", "--limit_iops", "1500"])).code).toBe(0);
  const iops = fioIops(await run);
  // about 2 s at 500 then up to 6 s at 1500 (the change lands within a heartbeat)
  expect(iops).toBeGreaterThan(900);
  expect(iops).toBeLessThan(1500 * 1.05);
  expect((await c.scli(["--set_sdc_volume_limit", "--volume_name", "q1", "--sdc_name", "local", "--limit_iops", "0", "--limit_bandwidth_in_mbps", "0"])).code).toBe(0);
  await waitLimit("q1", 0);
  const unlimited = fioIops(await runFio(job("q1", 3)));
  expect(unlimited).toBeGreaterThan(1500);
}, 90_000);
