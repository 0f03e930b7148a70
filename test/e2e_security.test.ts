// Data-plane security end to end, with the compiled binary (`pf up`, 3 SDSs, 1 SDC on
// loopback) and a "member" SDC played by the test (helpers/rogue_sdc.ts): it holds the cluster
// secret and its own keys, and talks to the SDSs straight, so what is checked here is what the
// SDSs enforce. Unmapping during fio stops IO within one heartbeat and remapping resumes it;
// the time from unmap to refused IO is measured over several trials.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PF_BIN, TestCluster, freePort } from "./helpers/cluster.ts";
import { nbdinfoJson, runFio, runQemuIo } from "./helpers/real_clients.ts";
import { Op, RogueSdc, Status, adminEndpoint, idOf, rest } from "./helpers/rogue_sdc.ts";
import type { MdmEndpoint } from "../src/proto/mdm_http.ts";
import type { VolumeMap } from "../src/proto/cluster_api.ts";
import { DataPlanePool } from "../src/proto/dataplane_client.ts";

const MiB = 1024 * 1024;
const HEARTBEAT_MS = 1000;
/** one heartbeat, plus the assignments fetch and scheduling on a busy 2-core machine */
const REVOKE_BOUND_MS = HEARTBEAT_MS + 500;
/** trials of the revocation measurement (PF_REVOKE_TRIALS for a longer run) */
const TRIALS = Number(process.env.PF_REVOKE_TRIALS ?? 8);

let c: TestCluster;
let admin: MdmEndpoint;
let localSdc: string;
const rogues: RogueSdc[] = [];

beforeAll(async () => {
  c = await TestCluster.create({
    volumes: [
      { name: "vol1", size: "64MiB" },
      { name: "ro1", size: "64MiB", access: "ReadOnly" },
      { name: "fio1", size: "128MiB" },
      { name: "rv", size: "64MiB", mapped: false },
    ],
  });
  await c.start();
  await c.login();
  admin = await adminEndpoint(c);
  localSdc = ((await rest(admin, "GET", "/types/Sdc/instances")) as { id: string }[])[0]!.id;
  await runQemuIo(c.nbdUri("vol1"), ["write -P 0x5a 0 1M", "flush"]);
}, 120_000);

afterAll(async () => {
  for (const r of rogues) r.close();
  await c?.destroy();
});

async function rogue(guid: string): Promise<RogueSdc> {
  const r = await RogueSdc.join(c, guid);
  rogues.push(r);
  await r.refresh();
  return r;
}

async function mapTo(volume: string, sdcId: string, accessMode: "ReadWrite" | "ReadOnly"): Promise<void> {
  await rest(admin, "POST", `/instances/Volume::${await idOf(admin, "Volume", volume)}/action/addMappedSdc`, { sdcId, accessMode, allowMultipleMappings: "TRUE" });
}

async function unmapFrom(volume: string, sdcId: string): Promise<void> {
  await rest(admin, "POST", `/instances/Volume::${await idOf(admin, "Volume", volume)}/action/removeMappedSdc`, { sdcId });
}

/** A map of `volume` as an SDC mapped to it sees it (learned through a short mapping to `r`). */
async function mapOf(r: RogueSdc, volume: string): Promise<VolumeMap> {
  await mapTo(volume, r.sdcId, "ReadOnly");
  const vm = (await r.refresh()).volumes.find((v) => v.name === volume)!;
  await unmapFrom(volume, r.sdcId);
  await r.refresh();
  expect(r.volume(volume)).toBeUndefined();
  return vm;
}

function pctl(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

describe("the SDSs enforce mappings (pf up, 3 SDSs)", () => {
  test("a member SDC without a grant for a volume cannot read or write it straight at any SDS", async () => {
    const r = await rogue("rogue-nogrant");
    const vm = await mapOf(r, "vol1"); // the member knows the map, but holds no grant for it
    for (const sdsId of new Set(vm.extents.flatMap((e) => e.replicas))) {
      // every SDS, primary or not, refuses before it even looks at ownership
      const link = r.pool.link(sdsId)!;
      for (const [op, payload] of [
        [Op.READ, undefined],
        [Op.WRITE, new Uint8Array(4096).fill(0xee)],
        [Op.TRIM, undefined],
        [Op.WRITE_ZEROES, undefined],
      ] as const) {
        const st = await link.request({ opcode: op, flags: 0, epoch: vm.extents[0]!.epoch, volumeHi: Number.parseInt(vm.volumeId.slice(0, 8), 16), volumeLo: Number.parseInt(vm.volumeId.slice(8), 16), extentIndex: 0, offset: 0, length: 4096 }, payload);
        expect(st.status).toBe(Status.NO_GRANT);
      }
    }
    await runQemuIo(c.nbdUri("vol1"), ["read -P 0x5a 0 1M"]); // unchanged
  }, 60_000);

  test("hand-made WRITE, TRIM and WRITE_ZEROES under a ReadOnly grant are refused; the data is unchanged", async () => {
    await runQemuIo(c.nbdUri("ro1"), ["read -P 0 0 1M"], { readOnly: true });
    const r = await rogue("rogue-ro");
    await mapTo("ro1", r.sdcId, "ReadOnly");
    const vm = (await r.refresh()).volumes.find((v) => v.name === "ro1")!;
    expect(vm.accessMode).toBe("ReadOnly");
    expect((await r.request(vm, Op.WRITE, 0, 4096, new Uint8Array(4096).fill(0x77))).status).toBe(Status.READ_ONLY);
    expect((await r.request(vm, Op.TRIM, 0, MiB)).status).toBe(Status.READ_ONLY);
    expect((await r.request(vm, Op.WRITE_ZEROES, 0, MiB)).status).toBe(Status.READ_ONLY);
    const rd = await r.request(vm, Op.READ, 0, 4096);
    expect(rd.status).toBe(Status.OK);
    expect(rd.payload.every((b) => b === 0)).toBe(true);
    await runQemuIo(c.nbdUri("ro1"), ["read -P 0 0 1M"], { readOnly: true });
  }, 60_000);

  test("another SDC's grant is refused; a grant works only for the SDC it names", async () => {
    const a = await rogue("rogue-a");
    const b = await rogue("rogue-b");
    await mapTo("vol1", a.sdcId, "ReadWrite");
    const vm = (await a.refresh()).volumes.find((v) => v.name === "vol1")!;
    expect((await a.request(vm, Op.READ, 0, 4096)).status).toBe(Status.OK);
    // B authenticates as itself and presents A's grant
    const stolen = new DataPlanePool({ credentials: b.keys, grants: a.grants });
    for (const s of a.maps!.sds!) stolen.setAddress(s.sdsId, s.host, s.port);
    const { hi, lo } = { hi: Number.parseInt(vm.volumeId.slice(0, 8), 16), lo: Number.parseInt(vm.volumeId.slice(8), 16) };
    const st = await stolen.link(vm.extents[0]!.replicas[0]!)!.request({ opcode: Op.READ, flags: 0, epoch: vm.extents[0]!.epoch, volumeHi: hi, volumeLo: lo, extentIndex: 0, offset: 0, length: 4096 });
    expect(st.status).toBe(Status.NO_GRANT); // its GRANT frame got GRANT_WRONG_SDC
    stolen.close();
    await unmapFrom("vol1", a.sdcId);
  }, 60_000);

  test("unmap reaches the SDSs within one heartbeat: a member's IO under its old grant stops; remap: IO resumes (fio load meanwhile)", async () => {
    const r = await rogue("rogue-revoke");
    const load = Bun.spawn(["fio", "--name=load", "--ioengine=nbd", `--uri=${c.nbdUri("fio1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=64M", "--time_based", "--runtime=120"], { stdout: "ignore", stderr: "ignore" });
    await Bun.sleep(1000);
    const stopMs: number[] = [];
    const resumeMs: number[] = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      await mapTo("rv", r.sdcId, "ReadWrite");
      await r.refresh();
      const vm = r.volume("rv")!;
      const data = new Uint8Array(4096).fill(trial);
      expect((await r.request(vm, Op.WRITE, 0, 4096, data)).status).toBe(Status.OK);
      // IO in a loop (QD 4) under the grant; note when the first refusal comes back
      let refusedAt = 0;
      let refusal = Status.OK as Status;
      let stop = false;
      const workers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const st = (await r.request(vm, Op.WRITE, ((i * 4 + w) % 256) * 4096, 4096, data)).status;
          if (st !== Status.OK && refusedAt === 0) {
            refusedAt = performance.now();
            refusal = st;
            stop = true;
          }
        }
      });
      await Bun.sleep(200 + trial * 97); // unmap at a different phase of the heartbeat each trial
      const t0 = performance.now();
      await unmapFrom("rv", r.sdcId);
      const watchdog = setTimeout(() => (stop = true), 10_000);
      await Promise.all(workers);
      clearTimeout(watchdog);
      expect(refusal).toBe(Status.GRANT_REVOKED);
      stopMs.push(refusedAt - t0);
      // remap: the member's next maps carry a new grant and its IO works again
      const t1 = performance.now();
      await mapTo("rv", r.sdcId, "ReadWrite");
      await r.refresh();
      expect((await r.request(r.volume("rv")!, Op.READ, 0, 4096)).status).toBe(Status.OK);
      resumeMs.push(performance.now() - t1);
      await unmapFrom("rv", r.sdcId);
      await r.refresh();
    }
    expect(load.exitCode).toBeNull(); // the load on another volume never failed
    load.kill("SIGKILL");
    process.stdout.write(
      `revocation, unmap -> first refused IO at the SDS (${stopMs.length} trials, fio 4k randwrite QD16 load): p50 ${pctl(stopMs, 50).toFixed(0)} ms, p99 ${pctl(stopMs, 99).toFixed(0)} ms, max ${Math.max(...stopMs).toFixed(0)} ms; all ${stopMs.map((x) => x.toFixed(0)).join(", ")}\n` +
        `remap -> IO resumes: p50 ${pctl(resumeMs, 50).toFixed(0)} ms, max ${Math.max(...resumeMs).toFixed(0)} ms\n`,
    );
    for (const x of stopMs) expect(x).toBeLessThan(REVOKE_BOUND_MS);
  }, 180_000);

  test("unmap during fio on the SDC: fio's IO stops within one heartbeat; remap: fio runs again", async () => {
    const stopMs: number[] = [];
    for (let trial = 0; trial < 4; trial++) {
      const fio = Bun.spawn(["fio", "--name=u", "--ioengine=nbd", `--uri=${c.nbdUri("fio1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=64M", "--time_based", "--runtime=60"], { stdout: "ignore", stderr: "ignore" });
      try {
        await Bun.sleep(1000 + trial * 131);
        expect(fio.exitCode).toBeNull(); // running fine under the grant
        const t0 = performance.now();
        await unmapFrom("fio1", localSdc);
        const exited = await Promise.race([fio.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
        expect(exited).toBe(true);
        stopMs.push(performance.now() - t0);
        expect(fio.exitCode).not.toBe(0);
      } finally {
        fio.kill("SIGKILL");
      }
      await mapTo("fio1", localSdc, "ReadWrite");
      // the SDC exports it again within a heartbeat; fio runs clean
      const deadline = performance.now() + 10_000;
      for (;;) {
        const ok = await runFio(["--name=r", "--ioengine=nbd", `--uri=${c.nbdUri("fio1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=16M", "--runtime=1", "--time_based"], { timeoutMs: 30_000 }).then(
          () => true,
          () => false,
        );
        if (ok) break;
        if (performance.now() > deadline) throw new Error("fio did not resume within 10 s of the remap");
        await Bun.sleep(200);
      }
    }
    process.stdout.write(`unmap during fio on the SDC -> fio stopped: ${stopMs.map((x) => x.toFixed(0)).join(", ")} ms (p50 ${pctl(stopMs, 50).toFixed(0)}, max ${Math.max(...stopMs).toFixed(0)})\n`);
    for (const x of stopMs) expect(x).toBeLessThan(REVOKE_BOUND_MS);
  }, 180_000);

  test("restricted SDC mode (Guid): a second, unapproved SDC joins but cannot read any volume; approveSdc lets it", async () => {
    const sys = ((await rest(admin, "GET", "/types/System/instances")) as { id: string }[])[0]!.id;
    await rest(admin, "POST", `/instances/System::${sys}/action/setRestrictedSdcMode`, { restrictedSdcMode: "Guid" });
    const port = await freePort();
    const secret = readFileSync(join(c.dataDir, "cluster-secret"), "utf8").trim();
    const guid = "guid-unapproved-sdc2";
    const sdc2 = Bun.spawn([PF_BIN, "sdc", "--mdm", c.mdmUrl, "--mdm-ca", c.caFile, "--nbd", `127.0.0.1:${port}`, "--guid", guid, "--name", "sdc2"], {
      env: { ...process.env, PF_CLUSTER_SECRET: secret, CONSOLA_LEVEL: "3" },
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      let id = "";
      for (let i = 0; i < 100 && id === ""; i++) {
        const all = (await rest(admin, "GET", "/types/Sdc/instances")) as { id: string; sdcGuid: string; sdcApproved: boolean }[];
        const me = all.find((s) => s.sdcGuid === guid);
        if (me) {
          expect(me.sdcApproved).toBe(false);
          id = me.id;
        } else await Bun.sleep(100);
      }
      expect(id).not.toBe("");
      await expect(mapTo("vol1", id, "ReadOnly")).rejects.toThrow(/INITIATOR_NOT_APPROVED/);
      await Bun.sleep(500); // serving NBD by now
      expect((await nbdinfoJson(`nbd://127.0.0.1:${port}`, ["--list"])).exports).toEqual([]);
      const r = await runQemuIo(`nbd://127.0.0.1:${port}/vol1`, ["read -P 0x5a 0 4096"], { readOnly: true, expectFailure: true });
      expect(r.exitCode).not.toBe(0);
      // approved by GUID, mapped: it serves the volume within a heartbeat or two
      expect(await rest(admin, "POST", `/instances/System::${sys}/action/approveSdc`, { sdcGuid: guid })).toEqual({ id });
      await mapTo("vol1", id, "ReadOnly");
      const deadline = performance.now() + 10_000;
      while ((await nbdinfoJson(`nbd://127.0.0.1:${port}`, ["--list"])).exports.length === 0) {
        if (performance.now() > deadline) throw new Error("sdc2 did not export vol1 after approval and mapping");
        await Bun.sleep(200);
      }
      await runQemuIo(`nbd://127.0.0.1:${port}/vol1`, ["read -P 0x5a 0 1M"], { readOnly: true });
      await unmapFrom("vol1", id);
    } finally {
      sdc2.kill("SIGKILL");
      await sdc2.exited;
      await rest(admin, "POST", `/instances/System::${sys}/action/setRestrictedSdcMode`, { restrictedSdcMode: "None" });
    }
  }, 120_000);

  test("key rotation during fio: no IO error; new connections use the new key", async () => {
    const sys = ((await rest(admin, "GET", "/types/System/instances")) as { id: string }[])[0]!.id;
    const fio = runFio(["--name=k", "--ioengine=nbd", `--uri=${c.nbdUri("fio1")}`, "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=64M", "--time_based", "--runtime=9", "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0"], { timeoutMs: 60_000 });
    await Bun.sleep(1000);
    await rest(admin, "POST", `/instances/System::${sys}/action/rotateDataPlaneKey`, {});
    await Bun.sleep(4000); // past the new key's activation: grants are signed with it now
    await rest(admin, "POST", `/instances/System::${sys}/action/rotateDataPlaneKey`, {}); // the first key is retired
    await fio; // exit 0 and verified: no IO error through two rotations
    const r = await rogue("rogue-rotation");
    expect(r.keys.kids).toEqual([3, 2]);
    await mapTo("vol1", r.sdcId, "ReadOnly");
    await r.refresh();
    await Bun.sleep(HEARTBEAT_MS + 500); // every SDS holds kid 3 by now
    const rd = await r.request(r.volume("vol1")!, Op.READ, 0, 4096);
    expect(rd.status).toBe(Status.OK);
    expect(rd.payload.every((b) => b === 0x5a)).toBe(true);
    await unmapFrom("vol1", r.sdcId);
  }, 120_000);
});
