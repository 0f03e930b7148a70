// Snapshots are as safe as volumes: kill -9 of an SDS during fio on a volume with snapshots,
// then the rebuild carries every layer (the consistency check compares each layer copy against
// copy, mapped snapshots compare identical to images saved when they were taken); kill -9 of
// the MDM while a snapshot's fence holds writes leaves the old state (no snapshot, held writes
// released into the volume, nothing acknowledged lost); kill -9 of an SDS in the fence leaves
// the new state (the snapshot exists and its cut is crash-consistent). Fast timeouts (2 s
// heartbeat, 3 s grace) keep the rebuild short.

import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { join } from "node:path";
import { TestCluster } from "./helpers/cluster.ts";
import { NbdTestClient } from "./helpers/nbd_client.ts";
import { runFio, runQemuImg } from "./helpers/real_clients.ts";
import { expectIdentical, verifyJob, waitFor, waitPoolHealthy } from "./helpers/recovery.ts";
import { Rest } from "./helpers/rest.ts";
import { mapAndWait as mapTo, snapshotNamed as snap } from "./helpers/snapshots.ts";

const MiB = 1024 * 1024;
let c: TestCluster;
let mdmArgv: string[] | null = null;
let mdmProc: Subprocess | null = null;
let rest: Rest;
const scli = (a: string[]) => c.scli(a);

beforeAll(async () => {
  c = await TestCluster.create({
    sdsCount: 4,
    devicesPerSds: 1,
    deviceSize: "512MiB",
    mdmYaml: "heartbeatTimeout: 2s, rebuildGrace: 3s",
    volumes: [
      { name: "sv", size: "64MiB" },
      { name: "mk", size: "64MiB" },
    ],
  });
  await c.start();
  await c.login();
  rest = await Rest.login(c);
}, 120_000);

afterAll(async () => {
  await c?.destroy();
});

const snapshotNamed = (volume: string, name: string) => snap(rest, volume, name);

/** kill -9 the MDM (the one pf up started, or the last one started here) and start it again. */
async function restartMdm(faultDelayMs?: number): Promise<Subprocess> {
  if (mdmProc === null) mdmArgv = c.killRole("mdm");
  else {
    mdmProc.kill("SIGKILL");
    await mdmProc.exited;
  }
  await Bun.sleep(300);
  if (faultDelayMs !== undefined) process.env.PF_FAULT_FENCE_COMMIT_DELAY_MS = String(faultDelayMs);
  mdmProc = c.restartRole(mdmArgv!);
  delete process.env.PF_FAULT_FENCE_COMMIT_DELAY_MS;
  await waitFor("the MDM to answer", 20_000, async () => Rest.login(c).then(() => true));
  rest = await Rest.login(c);
  return mdmProc;
}

const mapAndWait = (name: string) => mapTo(c, rest, name, "ReadOnly");

test("kill -9 of an SDS during fio on a volume with snapshots: the rebuild carries every layer", async () => {
  const uri = c.nbdUri("sv");
  const img1 = join(c.dir, "sv1.img");
  const img2 = join(c.dir, "sv2.img");
  await runFio(verifyJob(uri, { name: "p1", sizeMiB: 64, bs: "64k" }));
  await runQemuImg(["convert", "-f", "raw", "-O", "raw", uri, img1]);
  await snapshotNamed("sv", "sv-s1");
  await runFio([...verifyJob(uri, { name: "p2", sizeMiB: 24, bs: "16k" }), "--randseed=2"]);
  await runQemuImg(["convert", "-f", "raw", "-O", "raw", uri, img2]);
  await snapshotNamed("sv", "sv-s2");
  const job = [...verifyJob(uri, { name: "p3", offsetMiB: 16, sizeMiB: 32, rateIops: 800 }), "--randseed=3"];
  const writing = runFio(job, { timeoutMs: 120_000 });
  await Bun.sleep(1200);
  c.killRole("sds sds2");
  const result = await writing; // throws on any fio error, verify included
  expect(result.json.jobs[0]!.error).toBe(0);
  await waitPoolHealthy(scli, 90_000);
  for (const v of ["sv", "sv-s1", "sv-s2"]) await c.explain(expectIdentical(scli, v));
  await mapAndWait("sv-s1");
  await mapAndWait("sv-s2");
  await runQemuImg(["compare", "-f", "raw", "-F", "raw", img1, c.nbdUri("sv-s1")]);
  await runQemuImg(["compare", "-f", "raw", "-F", "raw", img2, c.nbdUri("sv-s2")]);
}, 240_000);

/** Writers stamping 4 KiB blocks (chain, seq), logging when each write was acknowledged. */
function startWriters(client: NbdTestClient, chains: number) {
  const acked = Array.from({ length: chains }, () => -1);
  let stop = false;
  let errors = 0;
  const stride = Math.floor((64 * MiB) / chains / 4096) * 4096;
  const block = (k: number, i: number) => {
    const b = new Uint8Array(4096);
    const dv = new DataView(b.buffer);
    for (let at = 0; at < 4096; at += 8) {
      dv.setUint32(at, k);
      dv.setUint32(at + 4, i + 1);
    }
    return b;
  };
  const done = Promise.all(
    Array.from({ length: chains }, async (_, k) => {
      for (let i = 0; !stop; i++) {
        try {
          await client.write(k * stride, block(k, i));
          acked[k] = i + 1;
        } catch {
          errors++;
          return;
        }
      }
    }),
  );
  return {
    acked,
    stride,
    get errors() {
      return errors;
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

test("kill -9 of the MDM while a snapshot's fence holds writes: the old state, no write lost", async () => {
  const mdm = await restartMdm(2500);
  const client = await NbdTestClient.connect(c.ports.nbd, "mk");
  const w = startWriters(client, 8);
  await waitFor("every writer to be acknowledged", 30_000, async () => w.acked.every((a) => a >= 1));
  await Bun.sleep(300);
  const pending = snapshotNamed("mk", "mk-s").then(
    () => "committed",
    () => "failed",
  );
  await Bun.sleep(1200); // the fence is acknowledged and held by the injected delay
  const before = [...w.acked];
  mdm.kill("SIGKILL");
  await mdm.exited;
  expect(await pending).toBe("failed");
  await Bun.sleep(1500);
  expect(w.acked).toEqual(before); // writes stay held while nobody can say how the fence ended
  mdmProc = c.restartRole(mdmArgv!);
  await waitFor("the held writes to go on", 30_000, async () => w.acked.every((a, k) => a > before[k]!));
  await w.stop();
  expect(w.errors).toBe(0);
  client.close();
  rest = await Rest.login(c);
  const names = (await rest.get<{ name: string | null }[]>("/types/Volume/instances")).map((v) => v.name);
  expect(names).not.toContain("mk-s");
  const reader = await NbdTestClient.connect(c.ports.nbd, "mk");
  for (let k = 0; k < 8; k++) {
    const data = await reader.read(k * w.stride, 4096);
    const dv = new DataView(data.buffer, data.byteOffset);
    expect(dv.getUint32(0)).toBe(k);
    expect(dv.getUint32(4)).toBe(w.acked[k]!);
  }
  reader.close();
  await c.explain(expectIdentical(scli, "mk")); // with the cluster's warnings: a failure here was seen once in CI, cause unknown
}, 120_000);

test("kill -9 of an SDS while the fence holds writes: the new state, a consistent cut, no write lost", async () => {
  await restartMdm(2000);
  const client = await NbdTestClient.connect(c.ports.nbd, "mk");
  const w = startWriters(client, 8);
  // the MDM restart may have let the SDS leases lapse: wait until every chain writes again
  await waitFor("every writer to be acknowledged", 30_000, async () => w.acked.every((a) => a >= 1));
  await Bun.sleep(300);
  const atCall = [...w.acked];
  const pending = snapshotNamed("mk", "mk-s2");
  await Bun.sleep(1000); // inside the injected delay: every holder holds writes
  c.killRole("sds sds3");
  await pending; // the MDM had every acknowledgement: it commits
  const atReply = [...w.acked];
  try {
    await waitFor("writes to go on after the failover", 60_000, async () => w.acked.every((a, k) => a > atReply[k]!));
  } catch (e) {
    console.log(JSON.stringify({ atCall, atReply, now: w.acked }));
    console.log(c.output.split("\n").filter((l) => /error|warn|fence/i.test(l)).slice(-80).join("\n"));
    throw e;
  }
  await w.stop();
  expect(w.errors).toBe(0);
  client.close();
  await waitPoolHealthy(scli, 90_000);
  await mapAndWait("mk-s2");
  const reader = await NbdTestClient.connect(c.ports.nbd, "mk-s2");
  for (let k = 0; k < 8; k++) {
    const dv = new DataView((await reader.read(k * w.stride, 4096)).buffer);
    expect(dv.getUint32(0)).toBe(k);
    const seq = dv.getUint32(4);
    expect(seq).toBeGreaterThanOrEqual(atCall[k]!); // acknowledged before the call: in the snapshot
    expect(seq).toBeLessThanOrEqual(atReply[k]! + 1); // at most the one write in flight at the cut
  }
  reader.close();
  await c.explain(expectIdentical(scli, "mk"));
  await c.explain(expectIdentical(scli, "mk-s2"));
}, 180_000);
