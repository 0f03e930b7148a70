// Snapshots end to end, as PowerFlex clients use them: the compiled binary's `pf up` (MDM, 3
// SDSs, SDC on loopback), the REST calls PyPowerFlex/Cinder/CSI send, and real NBD clients
// (qemu-img, qemu-io, fio with crc32c verification, a pipelined test client that logs when
// every write was issued and acknowledged).
//   - frozen image: a mapped snapshot compares identical to an image saved before it while the
//     volume verifies with a later pattern; a restore brings the saved image back;
//   - the cut of a group under concurrent writes on several SDSs: nothing acknowledged before
//     the call is missing, nothing issued after the reply is present, causal chains alternating
//     between the group's volumes are cut prefix-closed;
//   - a writable snapshot (clone) and its source diverge independently;
//   - removing a snapshot in the middle of a chain frees exactly what only it held;
//   - after snapshots, a clone and a snapshot of the clone are removed, the pool's in-use and
//     snapCapacityInUseInKb figures are exactly what they were before the first snapshot;
//   - bad input is refused the PowerFlex way (unknown ids, rc 182 past 126 snapshots, restore
//     across V-Trees, QoS limits outside the rules, numbers sent as strings).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { NbdTestClient } from "./helpers/nbd_client.ts";
import { waitFor } from "./helpers/recovery.ts";
import { nbdinfoJson, run, runFio, runQemuImg, runQemuIo } from "./helpers/real_clients.ts";
import { Rest } from "./helpers/rest.ts";

const MiB = 1024 * 1024;
let c: TestCluster;
let rest: Rest;
let sdcId: string;

beforeAll(async () => {
  c = await TestCluster.create({
    // room for every layer's copy-on-write chunks of all the tests below on each device: they
    // hold up to ~1.25 GiB raw at once (every cut of g3 copies all its 64 chunks; the clone test
    // adds 112 MiB per copy, 32 of them a parent's chunks both children overwrote, freed only at
    // the next FLUSH), 80-85 % of 6 x 256 MiB, and one 256 MiB device filled in a run (measured
    // per device from the SDSs' /status); nothing leaked (see the capacity test)
    deviceSize: "512MiB",
    volumes: [
      { name: "fz", size: "64MiB" },
      { name: "g1", size: "64MiB" },
      { name: "g2", size: "64MiB" },
      { name: "g3", size: "64MiB" },
      { name: "cl", size: "64MiB" },
      { name: "ch", size: "64MiB" },
      { name: "cap", size: "64MiB" },
      { name: "lim", size: "64MiB", mapped: false },
      { name: "other", size: "64MiB", mapped: false },
    ],
  });
  await c.start();
  await c.login();
  rest = await Rest.login(c);
  sdcId = await rest.sdcId();
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

interface SnapAnswer {
  snapshotGroupId: string;
  volumeIdList: string[];
}

async function snapshot(defs: { volume: string; name: string }[], readOnly = true): Promise<SnapAnswer> {
  const snapshotDefs = await Promise.all(defs.map(async (d) => ({ volumeId: await rest.volumeId(d.volume), snapshotName: d.name })));
  return rest.ok<SnapAnswer>("/instances/System/action/snapshotVolumes", { snapshotDefs, ...(readOnly ? { accessModeLimit: "ReadOnly" } : {}) });
}

/** Map a volume to the SDC and wait until the SDC exports it. */
async function mapAndWait(name: string, accessMode: "ReadOnly" | "ReadWrite"): Promise<void> {
  const id = await rest.volumeId(name);
  await rest.ok(`/instances/Volume::${id}/action/addMappedSdc`, { sdcId, accessMode, allowMultipleMappings: "TRUE" });
  await waitFor(`the SDC to export ${name}`, 15_000, async () => {
    const list = await nbdinfoJson(`nbd://127.0.0.1:${c.ports.nbd}`, ["--list"]);
    return list.exports.some((e) => e["export-name"] === name);
  });
}

async function unmap(name: string): Promise<void> {
  await rest.ok(`/instances/Volume::${await rest.volumeId(name)}/action/removeMappedSdc`, { sdcId });
}

async function volume(name: string): Promise<Record<string, unknown>> {
  return rest.get(`/instances/Volume::${await rest.volumeId(name)}`);
}

async function consistent(name: string): Promise<void> {
  const r = await c.scli(["--check_volume_consistency", "--volume_name", name]);
  expect(r.stdout + r.stderr).toContain("identical");
  expect(r.code).toBe(0);
}

/** A crc32c-verifying random write job over [offsetMiB, offsetMiB+sizeMiB); the same args + --verify_only re-check it. */
function fioArgs(uri: string, seed: number, opts: { sizeMiB?: number; offsetMiB?: number; verify?: boolean } = {}): string[] {
  return [
    `--name=j${seed}`,
    "--ioengine=nbd",
    `--uri=${uri}`,
    "--rw=randwrite",
    "--bs=16k",
    "--iodepth=8",
    `--offset=${opts.offsetMiB ?? 0}M`,
    `--size=${opts.sizeMiB ?? 32}M`,
    "--verify=crc32c",
    `--do_verify=${opts.verify === false ? 0 : 1}`,
    "--verify_state_save=0",
    `--randseed=${seed}`,
  ];
}

describe("snapshots with real clients", () => {
  test("frozen image: the snapshot keeps the saved image while the volume takes a second pattern; restore brings it back", async () => {
    const img = join(c.dir, "fz-before.img");
    await runFio(["--name=a", "--ioengine=nbd", `--uri=${c.nbdUri("fz")}`, "--rw=write", "--bs=1M", "--size=64M", "--verify=crc32c", "--do_verify=0", "--verify_state_save=0"]);
    await runQemuImg(["convert", "-f", "raw", "-O", "raw", c.nbdUri("fz"), img]);
    const snap = await snapshot([{ volume: "fz", name: "fz-s" }]);
    expect(snap.volumeIdList).toHaveLength(1);
    const s = await volume("fz-s");
    expect(s.volumeType).toBe("Snapshot");
    expect(s.ancestorVolumeId).toBe(await rest.volumeId("fz"));
    expect(s.consistencyGroupId).toBe(snap.snapshotGroupId);
    expect(s.vtreeId).toBe((await volume("fz")).vtreeId);
    expect(s.accessModeLimit).toBe("ReadOnly");
    await runFio(fioArgs(c.nbdUri("fz"), 2));
    await mapAndWait("fz-s", "ReadOnly");
    await runQemuImg(["compare", "-f", "raw", "-F", "raw", img, c.nbdUri("fz-s")]);
    const v = await run(["fio", ...fioArgs(c.nbdUri("fz"), 2), "--verify_only"]);
    expect(v.exitCode, v.stdout + v.stderr).toBe(0);
    await consistent("fz");
    await rest.ok(`/instances/Volume::${await rest.volumeId("fz")}/action/overwriteVolumeContent`, { srcVolumeId: snap.volumeIdList[0], allowOnExtManagedVol: "TRUE" });
    await runQemuImg(["compare", "-f", "raw", "-F", "raw", img, c.nbdUri("fz")]);
    await runQemuImg(["compare", "-f", "raw", "-F", "raw", img, c.nbdUri("fz-s")]);
    await consistent("fz");
  }, 90_000);

  test("the cut of a group under concurrent writes on several SDSs is crash-consistent", async () => {
    const BLOCK = 4096;
    const CHAINS = 24;
    const stride = Math.floor(64 * MiB / CHAINS / BLOCK) * BLOCK; // chains spread over every extent (and SDS)
    const vols = ["g1", "g2"] as const;
    const clients = await Promise.all(vols.map((v) => NbdTestClient.connect(c.ports.nbd, v)));
    type Log = { issuedMs: number; ackedMs: number };
    const logs = vols.map(() => Array.from({ length: CHAINS }, () => [] as Log[]));
    const now = () => performance.timeOrigin + performance.now();
    let stop = false;
    const stamp = (vol: number, chain: number, seq: number) => {
      const b = new Uint8Array(BLOCK);
      const dv = new DataView(b.buffer);
      for (let at = 0; at < BLOCK; at += 16) {
        dv.setUint32(at, 0x5eed5eed);
        dv.setUint32(at + 4, vol);
        dv.setUint32(at + 8, chain);
        dv.setUint32(at + 12, seq);
      }
      return b;
    };
    // chain k: g1 seq i, then (after its ack) g2 seq i, then g1 seq i+1 ...
    const chains = Array.from({ length: CHAINS }, async (_, k) => {
      for (let i = 0; !stop; i++) {
        for (let vol = 0; vol < 2; vol++) {
          const log: Log = { issuedMs: now(), ackedMs: Infinity };
          logs[vol]![k]!.push(log);
          await clients[vol]!.write(k * stride, stamp(vol, k, i));
          log.ackedMs = now();
        }
      }
    });
    const load = runFio(["--name=load", "--ioengine=nbd", `--uri=${c.nbdUri("g3")}`, "--rw=randwrite", "--bs=4k", "--iodepth=8", "--size=64M", "--time_based", "--runtime=6", "--rate_iops=2000"]);
    const cuts: { startMs: number; endMs: number; snap: SnapAnswer; names: string[] }[] = [];
    for (let n = 0; n < 3; n++) {
      await Bun.sleep(700);
      const names = [`cut${n}-g1`, `cut${n}-g2`, `cut${n}-g3`];
      const startMs = now();
      const snap = await snapshot(names.map((name, i) => ({ volume: `g${i + 1}`, name })));
      cuts.push({ startMs, endMs: now(), snap, names });
    }
    await Bun.sleep(300);
    stop = true;
    await Promise.all(chains);
    for (const cl of clients) cl.close();
    await load;
    for (const cut of cuts) {
      const groups = await Promise.all(cut.snap.volumeIdList.map(async (id) => (await rest.get<{ consistencyGroupId: string }>(`/instances/Volume::${id}`)).consistencyGroupId));
      expect(new Set(groups)).toEqual(new Set([cut.snap.snapshotGroupId]));
      await Promise.all(cut.names.slice(0, 2).map((n) => mapAndWait(n, "ReadOnly")));
      const readers = await Promise.all(cut.names.slice(0, 2).map((n) => NbdTestClient.connect(c.ports.nbd, n)));
      for (let k = 0; k < CHAINS; k++) {
        const present: number[] = [];
        for (let vol = 0; vol < 2; vol++) {
          const data = await readers[vol]!.read(k * stride, BLOCK);
          const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
          const seq = dv.getUint32(0) === 0x5eed5eed ? dv.getUint32(12) : -1;
          if (seq >= 0) {
            expect(dv.getUint32(4)).toBe(vol);
            expect(dv.getUint32(8)).toBe(k);
          }
          const log = logs[vol]![k]!;
          const ackedBefore = log.findLastIndex((l) => l.ackedMs < cut.startMs);
          const issuedAfter = log.findIndex((l) => l.issuedMs > cut.endMs);
          expect(seq).toBeGreaterThanOrEqual(ackedBefore); // nothing acknowledged before the call is missing
          if (issuedAfter >= 0) expect(seq).toBeLessThan(issuedAfter); // nothing issued after the reply is present
          present.push(seq);
        }
        // chain order g1[0] g2[0] g1[1] g2[1] ...: the cut is a prefix of it
        expect(present[0]! - present[1]!).toBeGreaterThanOrEqual(0);
        expect(present[0]! - present[1]!).toBeLessThanOrEqual(1);
      }
      for (const r of readers) r.close();
      for (const n of cut.names.slice(0, 2)) await unmap(n);
    }
    await consistent("g1");
    await consistent("g2");
  }, 120_000);

  test("a writable snapshot (clone) and its source take writes independently; both verify", async () => {
    await runFio(fioArgs(c.nbdUri("cl"), 5, { sizeMiB: 48 }));
    await snapshot([{ volume: "cl", name: "cl-clone" }], false);
    expect((await volume("cl-clone")).accessModeLimit).toBe("ReadWrite");
    await mapAndWait("cl-clone", "ReadWrite");
    const clone = fioArgs(c.nbdUri("cl-clone"), 6, { offsetMiB: 16, sizeMiB: 32 });
    const source = fioArgs(c.nbdUri("cl"), 7, { offsetMiB: 16, sizeMiB: 32 });
    await Promise.all([runFio(clone), runFio(source)]);
    for (const args of [clone, source]) {
      const v = await run(["fio", ...args, "--verify_only"]);
      expect(v.exitCode, v.stdout + v.stderr).toBe(0);
    }
    // they share what was written before the snapshot and differ where each wrote after it
    await runQemuImg(["compare", c.nbdPrefix("cl", 16 * MiB), c.nbdPrefix("cl-clone", 16 * MiB)]);
    const diff = await run(["qemu-img", "compare", "-f", "raw", "-F", "raw", c.nbdUri("cl"), c.nbdUri("cl-clone")]);
    expect(diff.exitCode, diff.stdout + diff.stderr).toBe(1);
    await consistent("cl-clone");
    await consistent("cl");
  }, 90_000);

  test("removing a snapshot in the middle of a chain frees only what it alone held", async () => {
    const uri = c.nbdUri("ch");
    await runQemuIo(uri, ["write -P 0x10 0 4M", "flush"]); // chunks 0-3
    await snapshot([{ volume: "ch", name: "ch-s1" }]);
    await runQemuIo(uri, ["write -P 0x21 0 2M", "flush"]); // chunks 0-1, whole: no copy
    await snapshot([{ volume: "ch", name: "ch-s2" }]);
    await runQemuIo(uri, ["write -P 0x32 0 1M", "flush"]); // chunk 0: the 0x21 version only s2 sees
    await snapshot([{ volume: "ch", name: "ch-s3" }]);
    const inUse = async () => Number(((await rest.get(`/instances/StoragePool::${(await volume("ch")).storagePoolId}/relationships/Statistics`)) as { capacityInUseInKb: number }).capacityInUseInKb);
    await Bun.sleep(1500); // heartbeats report the allocation
    const before = await inUse();
    await rest.ok(`/instances/Volume::${await rest.volumeId("ch-s2")}/action/removeVolume`, { removeMode: "ONLY_ME" });
    // exactly one 1 MiB chunk on each of the two copies is free
    await waitFor("the freed chunk to show in the pool's capacity", 15_000, async () => before - (await inUse()) === 2 * 1024);
    await Bun.sleep(1500);
    expect(before - (await inUse())).toBe(2 * 1024);
    await Promise.all(["ch-s1", "ch-s3"].map((n) => mapAndWait(n, "ReadOnly")));
    await runQemuIo(c.nbdUri("ch-s1"), ["read -P 0x10 0 4M"], { readOnly: true });
    await runQemuIo(c.nbdUri("ch-s3"), ["read -P 0x32 0 1M", "read -P 0x21 1M 1M", "read -P 0x10 2M 2M"], { readOnly: true });
    await runQemuIo(uri, ["read -P 0x32 0 1M", "read -P 0x21 1M 1M", "read -P 0x10 2M 2M"]);
    await consistent("ch");
    await consistent("ch-s1");
    const tree = await c.scli(["--query_vtree", "--volume_name", "ch"]);
    expect(tree.stdout).toContain("ch-s1");
    expect(tree.stdout).not.toContain("ch-s2");
  }, 90_000);

  test("after snapshots, a clone and its snapshot are removed, pool in-use and snapCapacityInUseInKb are exactly what they were", async () => {
    const uri = c.nbdUri("cap");
    const pool = (await volume("cap")).storagePoolId as string;
    type Figures = { inUseKb: number; snapKb: number };
    const figures = async (): Promise<Figures> => {
      const st = await rest.get<{ capacityInUseInKb: number; snapCapacityInUseInKb: number }>(`/instances/StoragePool::${pool}/relationships/Statistics`);
      return { inUseKb: Number(st.capacityInUseInKb), snapKb: Number(st.snapCapacityInUseInKb) };
    };
    // figures as of the SDSs' heartbeats (1 s): settled when three reads 1.5 s apart agree (a
    // removal reaches the SDSs with their next assignments and shows in the heartbeat after that)
    const sameFigures = (a: Figures, b: Figures) => a.inUseKb === b.inUseKb && a.snapKb === b.snapKb;
    const settled = async (): Promise<Figures> =>
      waitFor("the pool's figures to settle", 30_000, async () => {
        const a = await figures();
        await Bun.sleep(1500);
        const b = await figures();
        await Bun.sleep(1500);
        const c = await figures();
        return sameFigures(a, b) && sameFigures(b, c) ? c : null;
      });
    await runQemuIo(uri, ["write -P 0x41 0 8M", "flush"]); // chunks 0-7 on both copies
    const before = await settled();
    await snapshot([{ volume: "cap", name: "cap-s1" }]);
    await runQemuIo(uri, [0, 1, 2, 3].map((ch) => `write -P 0x42 ${ch * MiB + 65536} 4k`).concat("flush")); // 4 copies
    await snapshot([{ volume: "cap", name: "cap-c1" }], false);
    await runQemuIo(uri, [0, 1].map((ch) => `write -P 0x43 ${ch * MiB + 131072} 4k`).concat("flush")); // 2 copies
    await mapAndWait("cap-c1", "ReadWrite");
    await runQemuIo(c.nbdUri("cap-c1"), [4, 5].map((ch) => `write -P 0x44 ${ch * MiB} 4k`).concat("flush")); // 2 copies in the clone
    await snapshot([{ volume: "cap-c1", name: "cap-c1-s" }]);
    await runQemuIo(c.nbdUri("cap-c1"), [`write -P 0x45 ${4 * MiB + 4096} 4k`, "flush"]); // 1 copy
    const during = await settled();
    // 9 chunks copied, 1 MiB each on two copies
    expect(during.inUseKb - before.inUseKb).toBe(9 * 2 * 1024);
    // snapshot capacity: the frozen layers (8 + 4 + 2 chunks) and the clone's own open layer (1)
    expect(during.snapKb - before.snapKb).toBe(15 * 2 * 1024);
    await unmap("cap-c1");
    await rest.ok(`/instances/Volume::${await rest.volumeId("cap-s1")}/action/removeVolume`, { removeMode: "ONLY_ME" });
    await rest.ok(`/instances/Volume::${await rest.volumeId("cap-c1")}/action/removeVolume`, { removeMode: "INCLUDING_DESCENDANTS" });
    // every layer the removals left without a member is folded or dropped on both copies: exactly
    // the figures from before the first snapshot, and they stay there
    await waitFor("the pool's figures to return to their earlier values", 20_000, async () => sameFigures(await figures(), before));
    expect(await settled()).toEqual(before);
    await runQemuIo(uri, [
      "read -P 0x41 0 64k",
      "read -P 0x42 64k 4k",
      "read -P 0x43 128k 4k",
      "read -P 0x41 132k 892k",
      `read -P 0x42 ${2 * MiB + 65536} 4k`,
      `read -P 0x41 ${4 * MiB} 4M`,
    ]);
    await consistent("cap");
  }, 120_000);

  test("bad input is refused the PowerFlex way; numbers and booleans as strings are accepted", async () => {
    const lim = await rest.volumeId("lim");
    const unknown = await rest.call("POST", "/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId: "00000000deadbeef" }] });
    expect(unknown.status).toBe(500);
    expect((unknown.body as { errorCode: number }).errorCode).toBe(79);
    expect((await rest.call("POST", "/instances/System/action/snapshotVolumes", { snapshotDefs: [] })).status).toBe(400);
    expect((await rest.call("POST", "/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId: lim, snapshotName: "x".repeat(40) }] })).status).toBe(400);
    // 126 snapshots in one V-Tree (one call, one group), then the 127th is refused with rc 182
    const many = await rest.ok<SnapAnswer>(`/instances/System::${(await rest.get<{ id: string }[]>("/types/System/instances"))[0]!.id}/action/snapshotVolumes`, {
      snapshotDefs: Array.from({ length: 126 }, () => ({ volumeId: lim })),
      retentionPeriodInMin: "60",
      allowOnExtManagedVol: "True",
    });
    expect(many.volumeIdList).toHaveLength(126);
    const over = await rest.call("POST", "/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId: many.volumeIdList[5] }] });
    expect(over.status).toBe(500);
    expect((over.body as { details: { rc: number }[] }).details[0]!.rc).toBe(182);
    // restore from another V-Tree
    const cross = await rest.call("POST", `/instances/Volume::${await rest.volumeId("other")}/action/overwriteVolumeContent`, { srcVolumeId: many.volumeIdList[0] });
    expect(cross.status).toBe(500);
    expect(JSON.stringify(cross.body)).toContain("VTree");
    // removal modes: the group, then descendants only; the base stays
    const grp = await rest.ok<{ numberOfVolumes: number }>("/instances/System/action/removeConsistencyGroupSnapshots", { snapGroupId: many.snapshotGroupId });
    expect(grp.numberOfVolumes).toBe(126);
    const again = await snapshot([{ volume: "lim", name: "lim-a" }]);
    await snapshot([{ volume: "lim-a", name: "lim-b" }]);
    expect((await rest.call("POST", `/instances/Volume::${lim}/action/removeVolume`, { removeMode: "SOME_OF_THEM" })).status).toBe(400);
    await rest.ok(`/instances/Volume::${lim}/action/removeVolume`, { removeMode: "DESCENDANTS_ONLY", volumeClass: "defaultclass" });
    expect((await rest.call("GET", `/instances/Volume::${again.volumeIdList[0]}`)).status).toBe(500);
    expect((await volume("lim")).id).toBe(lim);
    // QoS limits: PowerFlex rules, strings where numbers are due
    const fz = await rest.volumeId("fz");
    const limits = (b: Record<string, unknown>) => rest.call("POST", `/instances/Volume::${fz}/action/setMappedSdcLimits`, { sdcId, ...b });
    for (const bad of [{ iopsLimit: 5 }, { iopsLimit: "abc" }, { iopsLimit: -1 }, { bandwidthLimitInKbps: 1000 }, { iopsLimit: "12.5" }, { bandwidthLimitInKbps: true }]) {
      const r = await limits(bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    expect((await limits({ iopsLimit: "500", bandwidthLimitInKbps: "2048" })).status).toBe(200);
    expect((await limits({ iopsLimit: 0 })).status).toBe(200); // bandwidth absent: unchanged
    const info = ((await volume("fz")).mappedSdcInfo as { sdcId: string; limitIops: number; limitBwInMbps: number }[]).find((m) => m.sdcId === sdcId)!;
    expect(info).toMatchObject({ limitIops: 0, limitBwInMbps: 2 });
    expect((await rest.call("POST", `/instances/Volume::${lim}/action/setMappedSdcLimits`, { sdcId, iopsLimit: 100 })).status).toBe(500); // not mapped
    await limits({ bandwidthLimitInKbps: 0 });
    // a mapped snapshot is not removed
    const inUse = await rest.call("POST", `/instances/Volume::${await rest.volumeId("fz-s")}/action/removeVolume`, { removeMode: "ONLY_ME" });
    expect(inUse.status).toBe(500);
    expect(JSON.stringify(inUse.body)).toContain("mapped");
  }, 90_000);
});
