// MDM /metrics at scale: an in-process MDM core (temp dir) with 3 SDSs, one SDC and N volumes
// (default 10,000) all mapped to that SDC, which reports IO for every volume in its heartbeats;
// then GET /metrics is timed in-process (app.request), over HTTPS (the same app behind
// Bun.serve with TLS, body read in full, as Prometheus scrapes it) and the rendering alone.
// Prints p50/p90/max, the size and the number of samples.
// Run: npx bun bench/mdm_metrics.ts   (env: BENCH_VOLUMES=10000, BENCH_SCRAPES=20)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import consola from "consola";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER } from "../src/proto/cluster_api.ts";
import { Units } from "../src/proto/limits.ts";
import { openMdmCore } from "../src/mdm/app.ts";
import { createVolume, addMappedSdc } from "../src/mdm/topology/volumes.ts";
import { renderMdmMetrics } from "../src/mdm/observe/mdm_metrics.ts";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";
import { generateSelfSignedCert } from "../src/proto/tls_cert.ts";

const VOLUMES = Number(process.env.BENCH_VOLUMES ?? 10_000);
const SCRAPES = Number(process.env.BENCH_SCRAPES ?? 20);
consola.level = 2;

const dir = mkdtempSync(join(tmpdir(), "pf-mdm-metrics-bench-"));
const secret = "bench-cluster-secret-0123456789";
// a clock that moves only when the bench says (volume creation takes longer than a heartbeat timeout)
let nowMs = Date.now();
const core = await openMdmCore({ dataDir: join(dir, "mdm"), clusterSecret: secret, adminPassword: "bench-password", clock: () => nowMs });
const cluster = async (path: string, body: unknown) => {
  const r = await core.app.request(CLUSTER_API_PREFIX + path, { method: "POST", headers: { [CLUSTER_SECRET_HEADER]: secret, "content-type": "application/json" }, body: JSON.stringify(body) });
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as Record<string, unknown>;
};
try {
  for (let i = 1; i <= 3; i++) {
    await cluster("/sds/join", { name: `sds${i}`, host: "127.0.0.1", dataPort: 7100 + i, protectionDomainName: "pd1", storagePoolName: "sp1", devices: [{ path: `/dev/fake${i}`, capacityBytes: 1024 * 1024 * Units.GiB }] });
  }
  const sdcId = (await cluster("/sdc/join", { guid: "bench-sdc", host: "127.0.0.1", name: "bench" })).sdcId as string;
  const ctx = core.ctx;
  const poolId = ctx.store.sqlite.query<{ id: string }, []>("SELECT id FROM storage_pool").get()!.id;
  // one extent per 1 GiB volume: creating 10,000 volumes takes seconds, not minutes (the scrape does not read extents)
  ctx.store.sqlite.run("UPDATE storage_pool SET extent_bytes = ?", [Units.GiB]);
  const t0 = performance.now();
  const ids: string[] = [];
  ctx.store.sqlite.transaction(() => {
    for (let i = 0; i < VOLUMES; i++) {
      const id = createVolume(ctx, { storagePoolId: poolId, name: `vol-${String(i).padStart(5, "0")}`, volumeSizeInGb: 1, volumeSizeInKb: undefined, protectionDomainId: undefined, volumeType: "ThinProvisioned" });
      addMappedSdc(ctx, id, { sdcId, accessMode: "ReadWrite", allowMultipleMappings: false });
      ids.push(id);
    }
  })();
  consola.level = 3;
  consola.info(`bench: ${VOLUMES} volumes created and mapped in ${(performance.now() - t0).toFixed(0)} ms`);
  const op = (n: number) => ({ ops: n, bytes: n * 4096, latencyUs: n * 200 });
  const beatMs: number[] = [];
  const tickMs: number[] = [];
  for (let beat = 1; beat <= 8; beat++) {
    nowMs += 1000;
    const volumes = ids.map((volumeId) => ({ volumeId, read: op(beat * 10), write: op(beat * 20), trim: op(0), flush: op(beat) }));
    const b0 = performance.now();
    await cluster(`/sdc/${sdcId}/heartbeat`, { appliedMapVersion: 0, io: { incarnation: "bench", volumes, nbdConnections: VOLUMES, inflightIos: 0 } });
    beatMs.push(performance.now() - b0);
    const t1 = performance.now();
    observeTick(ctx);
    tickMs.push(performance.now() - t1);
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  consola.info(`bench: an SDC heartbeat reporting ${VOLUMES} volumes: median ${med(beatMs).toFixed(1)} ms (JSON, zod, ingest); observe step (history, alerts): median ${med(tickMs).toFixed(1)} ms`);
  const times: number[] = [];
  let size = 0;
  let lines = 0;
  for (let i = 0; i < SCRAPES; i++) {
    const s = performance.now();
    const r = await core.app.request("/metrics");
    const text = await r.text();
    times.push(performance.now() - s);
    size = text.length;
    lines = text.split("\n").filter((l) => l.length > 0 && !l.startsWith("#")).length;
  }
  times.sort((a, b) => a - b);
  // over HTTPS, as Prometheus scrapes it: the same app behind Bun.serve with a self-signed cert
  const cert = generateSelfSignedCert({ commonName: "bench", hosts: ["127.0.0.1"] });
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: core.app.fetch, tls: { cert: cert.certPem, key: cert.keyPem } });
  const https: number[] = [];
  try {
    for (let i = 0; i < SCRAPES; i++) {
      const s = performance.now();
      const r = await fetch(`https://127.0.0.1:${server.port}/metrics`, { tls: { ca: cert.certPem } } as RequestInit);
      await r.arrayBuffer();
      https.push(performance.now() - s);
    }
  } finally {
    await server.stop(true);
  }
  https.sort((a, b) => a - b);
  consola.info(`bench: GET /metrics over HTTPS with ${VOLUMES} volumes: p50 ${https[Math.floor(https.length / 2)]!.toFixed(1)} ms, p90 ${https[Math.floor(https.length * 0.9)]!.toFixed(1)} ms, max ${https.at(-1)!.toFixed(1)} ms`);
  const render: number[] = [];
  for (let i = 0; i < SCRAPES; i++) {
    const s = performance.now();
    renderMdmMetrics(ctx);
    render.push(performance.now() - s);
  }
  render.sort((a, b) => a - b);
  consola.info(`bench: renderMdmMetrics alone: p50 ${render[Math.floor(render.length / 2)]!.toFixed(1)} ms, max ${render.at(-1)!.toFixed(1)} ms`);
  consola.info(`bench: GET /metrics with ${VOLUMES} volumes: p50 ${times[Math.floor(times.length / 2)]!.toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms, ${(size / 1e6).toFixed(1)} MB, ${lines} samples`);
} finally {
  core.close();
  rmSync(dir, { recursive: true, force: true });
}
