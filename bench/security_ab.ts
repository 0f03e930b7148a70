// A/B of what data-plane security costs: the same one-host cluster (3 SDSs, two copies, 1 SDC)
// from a build without it (A, e.g. the main branch's dist/pf) and from this build (B), both up
// at once, fio 4k randwrite QD16 through NBD on each in turn (A B A B ...), plus the per-IO and
// per-connection costs measured in process (grant check, handshake, grant presentation). Each
// fio run also reports the CPU the SDSs and the SDC spent per IO (from /proc: far steadier than
// IOPS on a shared machine, which is what can resolve a cost of a few percent).
//
// Run: npm run build && npx bun bench/security_ab.ts --base /path/to/baseline/pf
// Env: BENCH_SECONDS (default 15) per fio run, BENCH_ROUNDS (default 3) runs per build.

import { parseArgs } from "node:util";
import { Op, Status, type FrameHeader } from "../src/proto/dataplane.ts";
import { Binding, NodeRole, UNBOUND, clientProof, encodeAuth, encodeHelloAuth, newNonce, transcriptHash } from "../src/proto/dataplane_auth.ts";
import { deriveNodeKey } from "../src/proto/dataplane_keys.ts";
import { encodeGrantPresentation } from "../src/proto/grant.ts";
import { ConnGrants, GrantBook } from "../src/sds/grant_book.ts";
import { ServerHandshake } from "../src/sds/handshake_server.ts";
import { SdsAccess } from "../src/sds/sds_access.ts";
import { TestCluster } from "../test/helpers/cluster.ts";
import { mintTestGrant } from "../test/sds_harness.ts";
import { fioIops, runFio } from "../test/helpers/real_clients.ts";
import { CpuSampler, median } from "./proc_cpu.ts";

const { values: args } = parseArgs({ options: { base: { type: "string" } } });
const seconds = Number(process.env.BENCH_SECONDS ?? 15);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const out = (s: string) => process.stdout.write(s + "\n");

function micro(): { checkNs: number; handshakeUs: number; presentUs: number } {
  const sdcId = "c000000000000001";
  const member = new Uint8Array(32).fill(0xab);
  const grantKey = new Uint8Array(32).fill(0xcd);
  const access = new SdsAccess("5d50000000000000");
  access.setMemberKeys([{ kid: 1, key: member }]);
  const book = new GrantBook("5d50000000000000", { nowMs: () => performance.now(), sleep: (ms) => Bun.sleep(ms) });
  book.apply({ memberKeys: [{ kid: 1, key: "ab".repeat(32) }], grantKeys: [{ kid: 1, key: Buffer.from(grantKey).toString("hex") }], grantFloors: [] });
  const h: FrameHeader = { opcode: Op.HELLO, flags: 0, status: Status.OK, requestId: 0, epoch: 0, volumeHi: 0, volumeLo: 0, extentIndex: 0, offset: 0, length: 0, payloadLength: 0, gen: 0 };
  const nodeKey = deriveNodeKey(member, NodeRole.SDC, sdcId);
  // a whole handshake, both sides' work (client proof, server checks and proof)
  const nHs = 20_000;
  let t = performance.now();
  for (let i = 0; i < nHs; i++) {
    const s = new ServerHandshake(() => access, () => UNBOUND);
    const hello = encodeHelloAuth({ version: 1, role: NodeRole.SDC, binding: Binding.NONE, nodeHi: 0xc0000000, nodeLo: 1, nonce: newNonce() });
    const ch = s.onFrame(h, hello);
    if (ch.kind !== "reply") throw new Error("handshake refused");
    const th = transcriptHash(hello, ch.payload, 1, UNBOUND);
    if (s.onFrame({ ...h, opcode: Op.AUTH }, encodeAuth({ kid: 1, proof: clientProof(nodeKey, th) })).kind !== "done") throw new Error("handshake refused");
  }
  const handshakeUs = ((performance.now() - t) / nHs) * 1000;
  const th = new Uint8Array(32).fill(1);
  const grant = encodeGrantPresentation(mintTestGrant({ volumeId: "0a00000000000001", key: grantKey }), th);
  const conn = { peer: "bench", nodeId: sdcId, role: NodeRole.SDC, sessionHash: th, grants: new ConnGrants() };
  const nPr = 20_000;
  t = performance.now();
  for (let i = 0; i < nPr; i++) if (book.present(conn, grant) !== Status.OK) throw new Error("grant refused");
  const presentUs = ((performance.now() - t) / nPr) * 1000;
  const nCk = 20_000_000;
  let ok = 0;
  const now = performance.now();
  t = performance.now();
  for (let i = 0; i < nCk; i++) if (conn.grants.check(0x0a000000, 1, (i & 1) === 0, now) === Status.OK) ok++;
  const checkNs = ((performance.now() - t) / nCk) * 1e6;
  if (ok !== nCk) throw new Error("grant check failed");
  return { checkNs, handshakeUs, presentUs };
}

interface Round {
  iops: number;
  /** CPU microseconds per IO: the three SDSs together, and the SDC */
  sdsUs: number;
  sdcUs: number;
}

async function fio(c: TestCluster): Promise<Round> {
  const sampler = new CpuSampler(new Map([["sdc", c.pidOf("sdc")], ["sds1", c.pidOf("sds sds1")], ["sds2", c.pidOf("sds sds2")], ["sds3", c.pidOf("sds sds3")]]));
  sampler.start();
  const r = await runFio(["--name=ab", "--ioengine=nbd", `--uri=${c.nbdUri("bench")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=1G", `--runtime=${seconds}`, "--time_based", "--randrepeat=0"], { timeoutMs: (seconds + 60) * 1000 });
  const cpu = sampler.stop();
  const ios = r.json.jobs.reduce((n, j) => n + j.write.io_bytes / 4096, 0);
  const sds = (cpu.get("sds1") ?? 0) + (cpu.get("sds2") ?? 0) + (cpu.get("sds3") ?? 0);
  return { iops: fioIops(r), sdsUs: (sds / ios) * 1e6, sdcUs: ((cpu.get("sdc") ?? 0) / ios) * 1e6 };
}

async function main(): Promise<void> {
  const m = micro();
  out(`in process: grant check ${m.checkNs.toFixed(1)} ns per IO; handshake ${m.handshakeUs.toFixed(1)} us per connection (both sides); grant presentation ${m.presentUs.toFixed(1)} us per connection and volume`);
  if (args.base === undefined) {
    out("no --base: skipping the end-to-end A/B (give a pf binary built without data-plane security)");
    return;
  }
  const spec = { deviceSize: "1GiB", extentSize: "64MiB", granularity: "1GiB", volumes: [{ name: "bench", size: "1GiB" }] };
  // b is created (its free ports picked) only once a holds its own: both at once could pick one port
  const a = await TestCluster.create({ ...spec, bin: args.base });
  let b: TestCluster | null = null;
  try {
    await a.start();
    b = await TestCluster.create(spec);
    await b.start();
    await Bun.sleep(500);
    // warm up both (first writes allocate thin chunks)
    for (const c of [a, b]) await runFio(["--name=w", "--ioengine=nbd", `--uri=${c.nbdUri("bench")}`, "--rw=write", "--bs=1M", "--iodepth=8", "--size=1G"], { timeoutMs: 600_000 });
    const ra: Round[] = [];
    const rb: Round[] = [];
    const line = (x: Round) => `${Math.round(x.iops).toLocaleString("en")} IOPS, CPU per IO: SDSs ${x.sdsUs.toFixed(1)} us, SDC ${x.sdcUs.toFixed(1)} us`;
    for (let i = 0; i < rounds; i++) {
      ra.push(await fio(a));
      out(`round ${i + 1}: A (no security) ${line(ra[i]!)}`);
      rb.push(await fio(b));
      out(`round ${i + 1}: B (handshake + grants) ${line(rb[i]!)}`);
    }
    const ma = median(ra.map((x) => x.iops));
    const mb = median(rb.map((x) => x.iops));
    const cpuA = median(ra.map((x) => x.sdsUs + x.sdcUs));
    const cpuB = median(rb.map((x) => x.sdsUs + x.sdcUs));
    const pairs = ra.map((x, i) => (rb[i]!.sdsUs + rb[i]!.sdcUs) / (x.sdsUs + x.sdcUs));
    const perIoBudgetNs = 1e9 / mb;
    out("");
    out(`| 4k randwrite QD16, ${seconds}s x ${rounds} | A: without | B: with handshake + grants | B/A |`);
    out("| --- | --- | --- | --- |");
    out(`| median IOPS | ${Math.round(ma).toLocaleString("en")} | ${Math.round(mb).toLocaleString("en")} | ${(mb / ma).toFixed(3)} (${(((mb - ma) / ma) * 100).toFixed(1)} %) |`);
    out(`| runs | ${ra.map((x) => Math.round(x.iops)).join(", ")} | ${rb.map((x) => Math.round(x.iops)).join(", ")} | |`);
    out(`| median CPU us per IO (SDSs + SDC) | ${cpuA.toFixed(1)} | ${cpuB.toFixed(1)} | ${(cpuB / cpuA).toFixed(3)} (${(((cpuB - cpuA) / cpuA) * 100).toFixed(1)} %) |`);
    out(`| per-round CPU ratio B/A | | | ${pairs.map((x) => x.toFixed(3)).join(", ")} (median ${median(pairs).toFixed(3)}) |`);
    out(`grant check per IO: ${m.checkNs.toFixed(1)} ns = ${((m.checkNs / perIoBudgetNs) * 100).toFixed(3)} % of one IO's time at ${Math.round(mb)} IOPS on one core`);
  } finally {
    await a.destroy();
    await b?.destroy();
  }
}

await main();
