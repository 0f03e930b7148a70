// Data-plane micro benchmark: client -> primary SDS -> secondary SDS, each SDS in its own
// process (as in production), 4 KiB random writes (and reads) at QD16 and QD1 against one
// volume of 4 x 64 MiB extents, all primaries on SDS 0. Prints IOPS and p50/p99 latency.
//
//   npx bun bench/dataplane.ts [--seconds 5] [--ops write,read] [--qd 16,1] [--conns 1] [--bs 4096]
//
// The child processes run this same file with `--role sds --index N --ports A,B --dir D`.

import { parseArgs } from "node:util";
import * as fs from "node:fs";
import * as os from "node:os";
import { join } from "node:path";
import { consola } from "consola";
import { Op, Status } from "../src/proto/dataplane.ts";
import { DataPlanePool, type DataPlaneLink } from "../src/proto/dataplane_client.ts";
import { SdsAssignmentsResponse } from "../src/proto/cluster_api.ts";
import { idToHalves } from "../src/proto/ids.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { NodeKeyring, deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { startSdsCore } from "../src/sds/sds_core.ts";
import { MEMBER_KEY, TestGrants, dataPlaneKeys } from "../test/sds_harness.ts";

const MiB = 1024 * 1024;
const VOL = "0b00000000000001";
const EXTENT_BYTES = 64 * MiB;
const EXTENTS = 4;
const sdsId = (i: number) => `5d5000000000000${i}`;
const devId = (i: number) => `de7000000000000${i}`;

const { values: args } = parseArgs({
  options: {
    role: { type: "string", default: "driver" },
    index: { type: "string", default: "0" },
    ports: { type: "string", default: "" },
    dir: { type: "string", default: "" },
    seconds: { type: "string", default: "5" },
    ops: { type: "string", default: "write,read" },
    qd: { type: "string", default: "16,1" },
    conns: { type: "string", default: "1" },
    bs: { type: "string", default: "4096" },
  },
});

const BLOCK = Number(args.bs);

function assignments(me: number, ports: number[]): SdsAssignmentsResponse {
  return SdsAssignmentsResponse.parse({
    mapVersion: 1,
    dataPlane: dataPlaneKeys(), // the test harness's member and grant keys
    extentSizeBytesByVolume: { [VOL]: EXTENT_BYTES },
    extents: Array.from({ length: EXTENTS }, (_, i) => ({
      volumeId: VOL,
      extentIndex: i,
      epoch: 1,
      replicas: [sdsId(0), sdsId(1)],
      deviceId: devId(me),
      thick: false,
      role: me === 0 ? "primary" : "secondary",
    })),
    sds: ports.map((port, i) => ({ sdsId: sdsId(i), host: "127.0.0.1", port })),
  });
}

async function runSdsChild(): Promise<void> {
  consola.level = 2;
  const me = Number(args.index);
  const ports = args.ports.split(",").map(Number);
  const dir = join(args.dir, `sds${me}`);
  fs.mkdirSync(dir, { recursive: true });
  const core = startSdsCore({
    sdsId: sdsId(me),
    dataDir: dir,
    host: "127.0.0.1",
    port: ports[me]!,
    devices: [{ deviceId: devId(me), path: join(dir, "dev.img"), sizeBytes: EXTENTS * EXTENT_BYTES + 64 * MiB }],
  });
  core.node.applyAssignments(assignments(me, ports));
  core.node.grantLease(core.node.clock.nowMs(), 24 * 3_600_000); // no MDM in this bench: one long lease
  process.stdout.write("ready\n");
  process.on("SIGTERM", () => {
    void core.stop().then(() => process.exit(0));
  });
}

function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

interface Result {
  op: string;
  qd: number;
  iops: number;
  p50us: number;
  p99us: number;
  errors: number;
}

async function load(link: DataPlaneLink, op: "write" | "read", qd: number, seconds: number): Promise<Result> {
  const { hi, lo } = idToHalves(VOL);
  const payload = new Uint8Array(BLOCK).fill(0x5a);
  const lat: number[] = [];
  let errors = 0;
  let done = 0;
  const endAt = performance.now() + seconds * 1000;
  const blocksPerExtent = EXTENT_BYTES / BLOCK;
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  async function worker(): Promise<void> {
    while (performance.now() < endAt) {
      const blk = rnd() % (blocksPerExtent * EXTENTS);
      const extentIndex = Math.floor(blk / blocksPerExtent);
      const offset = (blk % blocksPerExtent) * BLOCK;
      const t0 = performance.now();
      const r = await link.request(
        { opcode: op === "write" ? Op.WRITE : Op.READ, flags: 0, epoch: 1, volumeHi: hi, volumeLo: lo, extentIndex, offset, length: BLOCK },
        op === "write" ? payload : undefined,
      );
      lat.push(performance.now() - t0);
      if (r.status !== Status.OK) errors++;
      done++;
    }
  }
  const t0 = performance.now();
  await Promise.all(Array.from({ length: qd }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 1000);
  return { op, qd, iops: Math.round(done / elapsed), p50us: pct(0.5), p99us: pct(0.99), errors };
}

async function runDriver(): Promise<void> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "pf-dp-bench-"));
  const ports = [freePort(), freePort()];
  // BENCH_CPU_PROF=DIR writes a markdown CPU profile of each SDS process into DIR
  const prof = process.env.BENCH_CPU_PROF;
  const profArgs = (i: number) => (prof ? ["--cpu-prof-md", `--cpu-prof-dir=${prof}`, `--cpu-prof-name=sds${i}.md`] : []);
  const children = ports.map((_, i) =>
    Bun.spawn([process.execPath, ...profArgs(i), import.meta.path, "--role", "sds", "--index", String(i), "--ports", ports.join(","), "--dir", dir], { stdout: "pipe", stderr: "inherit" }),
  );
  try {
    for (const c of children) {
      const reader = c.stdout.getReader();
      const { value } = await reader.read();
      if (!value || !new TextDecoder().decode(value).includes("ready")) throw new Error("an SDS child did not start");
      reader.releaseLock();
    }
    const sdcId = "c000000000000001";
    const credentials = new NodeKeyring(NodeRole.SDC, sdcId, [{ kid: 1, key: deriveNodeKey(MEMBER_KEY, NodeRole.SDC, sdcId) }]);
    // an SDS serves an SDC's IO only under a mapping grant (grant_book.ts): the harness mints them
    const pool = new DataPlanePool({ credentials, grants: new TestGrants(sdcId), connsPerSds: Number(args.conns) });
    pool.setAddress(sdsId(0), "127.0.0.1", ports[0]!);
    const link = pool.link(sdsId(0))!;
    const seconds = Number(args.seconds);
    // warm up: allocate every chunk once so the runs measure steady-state overwrites
    await load(link, "write", 16, 1);
    const results: Result[] = [];
    for (const op of args.ops.split(",") as ("write" | "read")[]) {
      for (const qd of args.qd.split(",").map(Number)) {
        const r = await load(link, op, qd, seconds);
        results.push(r);
        process.stdout.write(`${op.padEnd(5)} ${BLOCK >= MiB ? `${BLOCK / MiB}M` : `${BLOCK / 1024}k`} QD${String(qd).padEnd(3)} ${String(r.iops).padStart(7)} IOPS ${((r.iops * BLOCK) / 1e6).toFixed(0).padStart(5)} MB/s   p50 ${r.p50us} us   p99 ${r.p99us} us   errors ${r.errors}\n`);
      }
    }
    pool.close();
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(children.map((c) => c.exited));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (args.role === "sds") await runSdsChild();
else await runDriver();
