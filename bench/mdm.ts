// MDM control-plane benchmark: an MDM over HTTPS in a temp dir, 3 SDSs joined through the
// cluster API with big fake devices, then N volumes created through REST, listed, and mapped to
// one SDC; prints the rate and p50/p99 latency of each call kind, and the SDC maps fetch.
// Run: npx bun bench/mdm.ts   (env: BENCH_VOLUMES=10000, BENCH_VOLUME_GIB=1, BENCH_CONCURRENCY=1)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import consola from "consola";
import { runMdm } from "../src/mdm/main.ts";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, ClusterPaths } from "../src/proto/cluster_api.ts";
import { Units } from "../src/proto/limits.ts";

const VOLUMES = Number(process.env.BENCH_VOLUMES ?? 10_000);
const VOLUME_GIB = Number(process.env.BENCH_VOLUME_GIB ?? 1);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 1);

consola.level = 2; // warnings and errors only during the run
const dir = mkdtempSync(join(tmpdir(), "pf-mdm-bench-"));
const h = await runMdm({ dataDir: join(dir, "mdm"), listenHost: "127.0.0.1", listenPort: 0, adminPassword: "bench-password" });
const tls = { ca: h.certPem ?? undefined };

async function call(method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<unknown> {
  const res = await fetch(h.url + path, {
    method,
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls,
  } as RequestInit);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const basic = (user: string, pw: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString("base64")}` });
const clusterHeaders = { [CLUSTER_SECRET_HEADER]: h.clusterSecret };

interface Series {
  name: string;
  ms: number[];
  wallMs: number;
}

async function measure(name: string, count: number, fn: (i: number) => Promise<unknown>): Promise<Series> {
  const ms: number[] = new Array(count);
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const s = performance.now();
      await fn(i);
      ms[i] = performance.now() - s;
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
  return { name, ms, wallMs: performance.now() - t0 };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

function report(s: Series): string {
  const sorted = [...s.ms].sort((a, b) => a - b);
  const rate = (s.ms.length / s.wallMs) * 1000;
  return `${s.name.padEnd(26)} n=${String(s.ms.length).padStart(6)}  ${rate.toFixed(0).padStart(6)}/s  p50 ${pct(sorted, 50).toFixed(2).padStart(8)} ms  p99 ${pct(sorted, 99).toFixed(2).padStart(8)} ms`;
}

try {
  const token = (await call("GET", "/api/login", basic("admin", "bench-password"))) as string;
  const auth = basic("", token);
  for (let i = 1; i <= 3; i++) {
    await call("POST", CLUSTER_API_PREFIX + ClusterPaths.sdsJoin, clusterHeaders, {
      name: `sds${i}`,
      host: "127.0.0.1",
      dataPort: 7100 + i,
      protectionDomainName: "pd1",
      storagePoolName: "sp1",
      devices: [{ path: `/dev/fake${i}`, capacityBytes: 1024 * 1024 * Units.GiB }],
    });
  }
  const sdc = (await call("POST", CLUSTER_API_PREFIX + ClusterPaths.sdcJoin, clusterHeaders, { guid: "bench-sdc", host: "127.0.0.1" })) as { sdcId: string };
  const pool = (await call("POST", "/api/types/StoragePool/instances/action/queryIdByKey", auth, { name: "sp1" })) as string;
  // keep the SDSs connected for the whole run
  const beat = setInterval(() => {
    void (async () => {
      for (let i = 1; i <= 3; i++) {
        const id = (await call("POST", "/api/types/Sds/instances/action/queryIdByKey", auth, { name: `sds${i}` })) as string;
        await call("POST", CLUSTER_API_PREFIX + ClusterPaths.sdsHeartbeat(id), clusterHeaders, { devices: [], appliedMapVersion: 0 });
      }
    })();
  }, 1000);

  const ids: string[] = new Array(VOLUMES);
  const results: Series[] = [];
  results.push(
    await measure(`create volume (${VOLUME_GIB} GiB thin)`, VOLUMES, async (i) => {
      const r = (await call("POST", "/api/types/Volume/instances", auth, {
        storagePoolId: pool,
        volumeSizeInGb: String(VOLUME_GIB),
        name: `bench${i}`,
        volumeType: "ThinProvisioned",
        volumeClass: "defaultclass",
      })) as { id: string };
      ids[i] = r.id;
    }),
  );
  let listed = 0;
  results.push(
    await measure("list all volumes", 5, async () => {
      listed = ((await call("GET", "/api/types/Volume/instances", auth)) as unknown[]).length;
    }),
  );
  results.push(await measure("get one volume", 1000, (i) => call("GET", `/api/instances/Volume::${ids[i % VOLUMES]}`, auth)));
  results.push(
    await measure("map volume to SDC", VOLUMES, (i) =>
      call("POST", `/api/instances/Volume::${ids[i]}/action/addMappedSdc`, auth, { sdcId: sdc.sdcId, accessMode: "ReadWrite", allowMultipleMappings: "FALSE" }),
    ),
  );
  let mapBytes = 0;
  results.push(
    await measure("SDC maps (all mapped)", 3, async () => {
      const res = await fetch(h.url + CLUSTER_API_PREFIX + ClusterPaths.sdcMaps(sdc.sdcId), { headers: clusterHeaders, tls } as RequestInit);
      mapBytes = (await res.arrayBuffer()).byteLength;
    }),
  );
  results.push(await measure("SDC heartbeat", 1000, () => call("POST", CLUSTER_API_PREFIX + ClusterPaths.sdcHeartbeat(sdc.sdcId), clusterHeaders, { appliedMapVersion: 0 })));
  clearInterval(beat);

  const extents = (VOLUMES * VOLUME_GIB * Units.GiB) / (64 * Units.MiB);
  process.stdout.write(
    `pf MDM bench: ${VOLUMES} volumes x ${VOLUME_GIB} GiB (${extents} extents), concurrency ${CONCURRENCY}, HTTPS on 127.0.0.1\n` +
      results.map(report).join("\n") +
      `\nlisted ${listed} volumes; SDC map answer ${(mapBytes / Units.MiB).toFixed(1)} MiB\n`,
  );
} finally {
  await h.stop();
  rmSync(dir, { recursive: true, force: true });
}
