// In-process heartbeat cost (no socket, no TLS): an MDM core (test/mdm_fixture.ts) with
// BENCH_SDS SDSs x 8 devices joined and BENCH_SDC SDCs, then BENCH_BEATS heartbeats through
// app.request, each node in turn, as bench/mdm_scale.ts's nodes send them. Prints CPU µs per
// beat (process CPU over the loop) and the load average; run under bun --cpu-prof to see where
// a beat's time goes; then BENCH_CREATES REST creates (CPU per create) and the two timers' ticks. Run: npx bun bench/mdm_heartbeat_inproc.ts
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, NODE_TOKEN_HEADER } from "../src/proto/cluster_api.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { nodeTokenOf } from "../src/mdm/core/dataplane_secrets.ts";
import { MdmFixture, SECRET } from "../test/mdm_fixture.ts";
import { recoveryTick } from "../src/mdm/recovery/recovery.ts";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";

const N_SDS = Number(process.env.BENCH_SDS ?? 1000);
const N_SDC = Number(process.env.BENCH_SDC ?? 500);
const BEATS = Number(process.env.BENCH_BEATS ?? 30_000);
const m = await MdmFixture.open();
try {
  const ctx = m.core.ctx;
  type Node = { path: string; token: string; body: string };
  const nodes: Node[] = [];
  for (let i = 0; i < N_SDS; i++) {
    const j = await m.joinSds(`sds${i}`, { port: 10_000 + i, faultSet: `fs${i % 10}`, devicesGiB: [4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096] });
    const devices = j.devices.map((d) => ({ deviceId: d.deviceId, state: "Normal", usedBytes: 0 }));
    nodes.push({ path: `/sds/${j.sdsId}/heartbeat`, token: nodeTokenOf(ctx, NodeRole.SDS, j.sdsId), body: `{"devices":${JSON.stringify(devices)},"rebuilds":[],"failedForwards":[],"appliedMapVersion":` });
  }
  for (let i = 0; i < N_SDC; i++) {
    const id = await m.joinSdc(`guid-${i}`, `sdc${i}`);
    nodes.push({ path: `/sdc/${id}/heartbeat`, token: nodeTokenOf(ctx, NodeRole.SDC, id), body: `{"appliedMapVersion":` });
  }
  const version = ctx.store.sqlite.query<{ v: number }, []>("SELECT map_version AS v FROM system").get()!.v;
  const beat = async (n: Node) => {
    const res = await m.core.app.request(CLUSTER_API_PREFIX + n.path, {
      method: "POST",
      body: `${n.body}${version}}`,
      headers: { [CLUSTER_SECRET_HEADER]: SECRET, [NODE_TOKEN_HEADER]: n.token, "content-type": "application/json" },
    });
    if (res.status !== 200) throw new Error(`beat: ${res.status} ${await res.text()}`);
    await res.text();
  };
  for (let i = 0; i < 3000; i++) await beat(nodes[i % nodes.length]!); // warm up
  const u0 = process.cpuUsage();
  for (let i = 0; i < BEATS; i++) await beat(nodes[i % nodes.length]!);
  const u = process.cpuUsage(u0);
  console.log(`${N_SDS} SDS + ${N_SDC} SDC, ${BEATS} beats in process: ${((u.user + u.system) / BEATS).toFixed(1)} µs CPU per beat; load ${(await Bun.file("/proc/loadavg").text()).trim()}`);
  // the two timers of src/mdm/main.ts, at rest: CPU per tick
  const perTick = (name: string, n: number, fn: () => void) => {
    fn();
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const t = process.cpuUsage(t0);
    console.log(`${name}: ${((t.user + t.system) / n / 1000).toFixed(2)} ms CPU per tick`);
  };
  // REST creates (1 GiB thin, 16 extents), one at a time: CPU per create
  const creates = Number(process.env.BENCH_CREATES ?? 200);
  if (creates > 0) {
    await m.login();
    const pool = await m.idOf("StoragePool", "sp1");
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < creates; i++) {
      const r = await m.api("POST", "/types/Volume/instances", { storagePoolId: pool, volumeSizeInGb: "1", name: `v${i}`, volumeType: "ThinProvisioned" });
      if (r.status !== 200) throw new Error(`create: ${r.status} ${r.text}`);
    }
    const c = process.cpuUsage(c0);
    console.log(`REST create (1 GiB thin): ${((c.user + c.system) / creates / 1000).toFixed(2)} ms CPU, ${((performance.now() - t0) / creates).toFixed(2)} ms wall per create`);
  }
  perTick("recovery tick", 40, () => recoveryTick(ctx));
  perTick("observe tick", 20, () => observeTick(ctx));
} finally {
  m.close();
}
