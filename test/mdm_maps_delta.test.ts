// Delta SDC maps (proto/maps_delta.ts, mdm/cluster/copy_log.ts's map part): over random change
// sequences (creates, maps and unmaps, access mode and QoS changes, extends, renames, snapshots
// sharing a V-Tree, removals, SDS losses and returns with recovery and copies finishing, the
// restricted SDC mode switched, log trims, MDM restarts clean and crashed), the whole map an SDC
// holds merged with the delta since it gives exactly the whole map of the same moment (grants
// aside: a kept entry keeps its grant). An SDC that sends no `since` (an older build) gets the
// whole map; anything the log cannot vouch for gets the whole map too.

import { afterEach, expect, test } from "bun:test";
import { SdcMapsResponse } from "../src/proto/cluster_api.ts";
import { mergeMaps } from "../src/proto/maps_delta.ts";
import { copyLogOf } from "../src/mdm/cluster/copy_log.ts";
import { allocateId, bumpMapVersion } from "../src/mdm/core/system_state.ts";
import { inTransaction } from "../src/mdm/core/context.ts";
import { RecoveryCluster } from "./mdm_recovery_fixture.ts";

const TIMEOUT = 6_000;
const recovery = { heartbeatTimeoutMs: TIMEOUT, rebuildGraceMs: 4_000, stallTimeoutMs: 600_000 };

let c: RecoveryCluster | null = null;
afterEach(() => {
  c?.close();
  c = null;
});

type Maps = SdcMapsResponse;

/** The comparable content of a whole map: grants as presence only (each mint is new), no delta/address/log/term fields. */
function norm(a: Maps): unknown {
  const { sds: _s, sdsTag: _t, mapLog: _l, since: _since, volumeIds: _ids, ...rest } = a as Maps & { term?: number };
  delete (rest as { term?: number }).term;
  return { ...rest, volumes: a.volumes.map(({ grant, ...v }) => ({ ...v, grant: grant !== undefined })) };
}

async function fetchMaps(c: RecoveryCluster, sdcId: string, q = ""): Promise<Maps> {
  const r = await c.m.cluster("GET", `/sdc/${sdcId}/maps${q}`);
  expect(r.status).toBe(200);
  return SdcMapsResponse.parse(r.json);
}

/** seeded PRNG (the test is reproducible) */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An MDM restart without the clean stop's hand-off (as after a crash: nothing is written). */
async function crashRestart(c: RecoveryCluster): Promise<RecoveryCluster> {
  c.ctx.store.sqlite.run("DROP TRIGGER temp.pf_map_log_ext_u");
  return c.restart({ recovery });
}

/**
 * A snapshot as its commit leaves the tables, for what a map shows: a new volume on the same
 * V-Tree (owner), same size and extents (the real call needs every holder's write fence).
 */
function fakeSnapshot(c: RecoveryCluster, of: string): string {
  return inTransaction(c.ctx, () => {
    const id = allocateId(c.ctx, "Volume");
    c.ctx.store.sqlite
      .query(
        `INSERT INTO volume (id, name, pool_id, volume_type, size_bytes, extent_bytes, vtree_id, access_mode_limit, creation_time_s, owner_id, open_layer_id, ancestor_volume_id, consistency_group_id)
         SELECT ?1, 'snap-' || ?1, pool_id, volume_type, size_bytes, extent_bytes, vtree_id, access_mode_limit, creation_time_s, owner_id, open_layer_id, id, NULL FROM volume WHERE id = ?2`,
      )
      .run(id, of);
    c.ctx.store.sqlite.query("UPDATE vtree SET graph_version = graph_version + 1 WHERE owner_id = (SELECT owner_id FROM volume WHERE id = ?)").run(of);
    bumpMapVersion(c.ctx);
    return id;
  });
}

class Checker {
  readonly held = new Map<string, Maps>();
  deltas = 0;
  crossLife = 0;
  wholes = 0;
  changedEntries = 0;
  keptEntries = 0;
  dropped = 0;

  constructor(public c: RecoveryCluster) {}

  async checkAll(ids: string[]): Promise<void> {
    for (const id of ids) await this.check(id);
  }

  /** Whole map now; a delta since what the SDC holds, merged, equals it. */
  async check(id: string): Promise<void> {
    const held = this.held.get(id);
    const whole = await fetchMaps(this.c, id);
    expect(whole.since).toBeUndefined();
    expect(whole.volumeIds).toBeUndefined();
    if (held === undefined || held.mapLog === undefined) {
      this.held.set(id, whole);
      return;
    }
    const d = await fetchMaps(this.c, id, `?since=${held.mapVersion}&log=${held.mapLog}`);
    if (d.since === undefined) {
      // refused (barrier, trim, another log): then it is the whole map itself
      this.wholes++;
      expect(norm(d)).toEqual(norm(whole));
      this.held.set(id, d);
      return;
    }
    this.deltas++;
    if (d.mapLog !== held.mapLog) this.crossLife++;
    expect(d.since).toBe(held.mapVersion);
    expect(d.mapVersion).toBe(whole.mapVersion);
    this.changedEntries += d.volumes.length;
    this.keptEntries += d.volumeIds!.length - d.volumes.length;
    const now = new Set(d.volumeIds);
    this.dropped += held.volumes.filter((v) => !now.has(v.volumeId)).length;
    const merged = mergeMaps(held, d);
    expect(merged).not.toBeNull();
    expect(norm(merged as Maps)).toEqual(norm(whole));
    this.held.set(id, merged as Maps);
  }
}

for (const [seed, restarts] of [
  [1, false],
  [2, false],
  [3, false],
  [4, true],
  [5, true],
] as const) {
  test(`merged map deltas equal whole maps over random changes${restarts ? " and MDM restarts, clean and crashed" : ""} (seed ${seed})`, async () => {
    c = await RecoveryCluster.open({ recovery });
    const rnd = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const names: string[] = [];
    for (let i = 0; i < 8; i++) {
      const name = `sds${i}`;
      await c.addSds(name, { faultSet: `fs${i % 4}`, devicesGiB: [400, 400] });
      names.push(name);
    }
    const sdcs: string[] = [];
    for (let i = 0; i < 4; i++) sdcs.push(await c.m.joinSdc(`guid-${i}`, `host${i}`));
    const chk = new Checker(c);
    await c.beatAll();
    await chk.checkAll(sdcs);
    const volumes: string[] = [];
    /** volume -> SDCs it is mapped to */
    const mapped = new Map<string, Set<string>>();
    const snapshots = new Set<string>();
    let nextVol = 0;
    let restricted = false;
    const ok = async (path: string, body: unknown) => {
      const r = await c!.m.api("POST", path, body);
      expect({ path, status: r.status, text: r.status === 200 ? "" : r.text }).toEqual({ path, status: 200, text: "" });
    };
    const mapTo = async (v: string, sdc: string) => {
      await ok(`/instances/Volume::${v}/action/addMappedSdc`, { sdcId: sdc, allowMultipleMappings: "TRUE", accessMode: rnd() < 0.2 ? "ReadOnly" : "ReadWrite" });
      mapped.get(v)!.add(sdc);
    };
    for (let step = 0; step < 80; step++) {
      const r = rnd();
      const withMaps = volumes.filter((v) => mapped.get(v)!.size > 0);
      if (r < 0.15 || volumes.length < 3) {
        const v = await c.createVolume(`v${nextVol++}`, pick([1, 2, 3]), rnd() < 0.3 ? "ThickProvisioned" : "ThinProvisioned");
        volumes.push(v);
        mapped.set(v, new Set());
        if (rnd() < 0.7) await mapTo(v, pick(sdcs));
      } else if (r < 0.27) {
        const v = pick(volumes);
        const free = sdcs.filter((s) => !mapped.get(v)!.has(s));
        if (free.length > 0) await mapTo(v, pick(free));
      } else if (r < 0.33 && withMaps.length > 0) {
        const v = pick(withMaps);
        const s = pick([...mapped.get(v)!]);
        await ok(`/instances/Volume::${v}/action/removeMappedSdc`, { sdcId: s });
        mapped.get(v)!.delete(s);
      } else if (r < 0.37 && withMaps.length > 0) {
        const v = pick(withMaps);
        await ok(`/instances/Volume::${v}/action/setVolumeMappingAccessMode`, { sdcId: pick([...mapped.get(v)!]), accessMode: pick(["ReadOnly", "ReadWrite"]) });
      } else if (r < 0.41 && withMaps.length > 0) {
        const v = pick(withMaps);
        await ok(`/instances/Volume::${v}/action/setMappedSdcLimits`, { sdcId: pick([...mapped.get(v)!]), iopsLimit: pick(["0", "100", "500"]) });
      } else if (r < 0.46) {
        // extend (the owner's V-Tree grows when this is its largest member)
        const v = pick(volumes);
        const gb = c.ctx.store.sqlite.query<{ s: number }, [string]>("SELECT size_bytes / 1073741824 AS s FROM volume WHERE id = ?").get(v)!.s;
        await ok(`/instances/Volume::${v}/action/setVolumeSize`, { sizeInGB: String(gb + pick([8, 16])) });
      } else if (r < 0.49) {
        await ok(`/instances/Volume::${pick(volumes)}/action/setVolumeName`, { newName: `n${step}` });
      } else if (r < 0.54) {
        // a snapshot of a volume, mapped somewhere or not: an entry on the same V-Tree
        const s = fakeSnapshot(c, pick(volumes));
        snapshots.add(s);
        volumes.push(s);
        mapped.set(s, new Set());
        if (rnd() < 0.7) await mapTo(s, pick(sdcs));
      } else if (r < 0.58) {
        // (fake snapshots share their owner's open layer: the real removal would refuse them)
        const owners = new Set([...snapshots].map((s) => c!.ctx.store.sqlite.query<{ o: string }, [string]>("SELECT owner_id AS o FROM volume WHERE id = ?").get(s)?.o));
        const unmappedVols = volumes.filter((v) => mapped.get(v)!.size === 0 && !snapshots.has(v) && !owners.has(v));
        if (unmappedVols.length > 0) {
          const v = pick(unmappedVols);
          const res = await c.m.api("POST", `/instances/Volume::${v}/action/removeVolume`, { removeMode: "ONLY_ME" });
          expect(res.status).toBe(200);
          volumes.splice(volumes.indexOf(v), 1);
          mapped.delete(v);
        }
      } else if (r < 0.66) {
        // an SDS goes silent: recovery moves its copies (primaries, epochs) after timeout and grace
        const up = [...c.alive];
        if (up.length > 6) {
          c.alive.delete(pick(up));
          await c.advance(TIMEOUT + 5_000, 1_000);
        }
      } else if (r < 0.72) {
        const down = names.filter((n) => !c!.alive.has(n));
        if (down.length > 0) {
          c.alive.add(pick(down));
          await c.advance(2_000, 1_000);
        }
      } else if (r < 0.82) {
        await c.completeCopies();
        c.tick();
      } else if (r < 0.85) {
        // restricted SDC mode switched: a barrier (who may map is not logged per volume)
        restricted = !restricted;
        await ok(`/instances/System::${c.ctx.systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: restricted ? "Guid" : "None" });
      } else if (r < 0.88) {
        copyLogOf(c.ctx).trim();
        await c.advance(1_000, 1_000);
      } else if (restarts && r < 0.94) {
        c = await c.restart({ recovery });
        chk.c = c;
        await c.beatAll();
      } else if (restarts) {
        c = await crashRestart(c);
        chk.c = c;
        await c.beatAll();
      }
      if (step % 7 === 6) await chk.checkAll(sdcs);
      else for (const id of sdcs) if (rnd() < 0.4) await chk.check(id);
    }
    await c.settle();
    await chk.checkAll(sdcs);
    expect(chk.deltas).toBeGreaterThan(30);
    expect(chk.changedEntries).toBeGreaterThan(0);
    expect(chk.keptEntries).toBeGreaterThan(0);
    expect(chk.dropped).toBeGreaterThan(0);
    if (restarts) expect(chk.crossLife).toBeGreaterThan(0);
  }, 180_000);
}

test("one SDS's loss: a delta carries only the volumes whose extents it touched; an older SDC (no since) gets the whole map", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 1; i < 6; i++) await c.addSds(`sds${i}`, { faultSet: `fs${i % 3}`, devicesGiB: [400, 400] });
  const sdc = await c.m.joinSdc("guid-a", "hostA");
  await c.beatAll();
  const vols: string[] = [];
  for (let i = 0; i < 12; i++) {
    // the first four are placed before sds0 joins: the loss of sds0 leaves them as they are
    if (i === 4) {
      // no rebalance onto the newcomer (its moves would change the first four too)
      expect((await c.m.api("POST", `/instances/StoragePool::${await c.poolId()}/action/setRebalanceEnabled`, { rebalanceEnabled: "FALSE" })).status).toBe(200);
      await c.addSds("sds0", { faultSet: "fs0", devicesGiB: [400, 400] });
      await c.beatAll();
    }
    const v = await c.createVolume(`v${i}`, 1);
    vols.push(v);
    expect((await c.m.api("POST", `/instances/Volume::${v}/action/addMappedSdc`, { sdcId: sdc })).status).toBe(200);
  }
  const held = await fetchMaps(c, sdc);
  expect(held.mapLog).toMatch(/^[0-9a-f]{16}$/);
  expect(held.volumes.length).toBe(12);
  const lost = "sds0";
  const lostId = c.id(lost);
  const onLost = new Set(held.volumes.filter((v) => v.extents.some((e) => e.replicas.includes(lostId))).map((v) => v.volumeId));
  expect(onLost.size).toBeGreaterThan(0);
  expect(onLost.size).toBeLessThan(12);
  c.alive.delete(lost);
  await c.advance(TIMEOUT + 5_000, 1_000);
  const d = await fetchMaps(c, sdc, `?since=${held.mapVersion}&log=${held.mapLog}`);
  expect(d.since).toBe(held.mapVersion);
  expect(d.volumeIds).toEqual(held.volumes.map((v) => v.volumeId));
  const whole = await fetchMaps(c, sdc);
  // exactly the entries that changed (no grant compared: each is minted anew), those of the lost SDS among them
  const entry = (v: Maps["volumes"][number]) => JSON.stringify({ ...v, grant: undefined });
  const changed = new Set(whole.volumes.filter((w) => entry(w) !== entry(held.volumes.find((h) => h.volumeId === w.volumeId)!)).map((w) => w.volumeId));
  expect(new Set(d.volumes.map((v) => v.volumeId))).toEqual(changed);
  for (const v of onLost) expect(changed.has(v)).toBe(true);
  expect(changed.size).toBeLessThan(12);
  expect(norm(mergeMaps(held, d)!)).toEqual(norm(whole));
  // an SDC that predates deltas asks without since (or with since and no log): the whole map
  for (const q of ["", `?since=${held.mapVersion}`, `?log=${held.mapLog}`]) {
    const old = await fetchMaps(c, sdc, q);
    expect(old.since).toBeUndefined();
    expect(norm(old)).toEqual(norm(whole));
  }
  // nothing changed since: an empty delta that keeps every entry
  const empty = await fetchMaps(c, sdc, `?since=${whole.mapVersion}&log=${whole.mapLog}`);
  expect(empty.volumes).toEqual([]);
  expect(empty.volumeIds!.length).toBe(12);
  // unknown log, a version from the future: whole
  expect((await fetchMaps(c, sdc, `?since=${held.mapVersion}&log=0123456789abcdef`)).since).toBeUndefined();
  expect((await fetchMaps(c, sdc, `?since=${whole.mapVersion + 5}&log=${whole.mapLog}`)).since).toBeUndefined();
}, 60_000);

test("an SDC not approved gets an empty whole map, and once approved its whole map, never a delta of the empty one", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 0; i < 3; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
  await c.beatAll();
  expect((await c.m.api("POST", `/instances/System::${c.ctx.systemId}/action/setRestrictedSdcMode`, { restrictedSdcMode: "Guid" })).status).toBe(200);
  const sdc = await c.m.joinSdc("guid-late", "late");
  const v = await c.createVolume("a", 1);
  const empty = await fetchMaps(c, sdc);
  expect(empty.volumes).toEqual([]);
  // approved, then mapped: the held (empty) map's delta must list the volume whole
  expect((await c.m.api("POST", `/instances/System::${c.ctx.systemId}/action/approveSdc`, { sdcGuid: "guid-late" })).status).toBe(200);
  expect((await c.m.api("POST", `/instances/Volume::${v}/action/addMappedSdc`, { sdcId: sdc })).status).toBe(200);
  const next = await fetchMaps(c, sdc, `?since=${empty.mapVersion}&log=${empty.mapLog}`);
  const whole = await fetchMaps(c, sdc);
  expect(whole.volumes.length).toBe(1);
  expect(norm(next.since === undefined ? next : mergeMaps(empty, next)!)).toEqual(norm(whole));
}, 60_000);

test("a clean restart continues the old log's maps by a delta; a change after the held map refuses it; a crash gives whole maps", async () => {
  c = await RecoveryCluster.open({ recovery });
  for (let i = 0; i < 4; i++) await c.addSds(`sds${i}`, { devicesGiB: [200] });
  const sdc = await c.m.joinSdc("guid-r", "r");
  await c.beatAll();
  const v = await c.createVolume("a", 1);
  expect((await c.m.api("POST", `/instances/Volume::${v}/action/addMappedSdc`, { sdcId: sdc })).status).toBe(200);
  const held = await fetchMaps(c, sdc);
  c = await c.restart({ recovery });
  const cont = await fetchMaps(c, sdc, `?since=${held.mapVersion}&log=${held.mapLog}`);
  expect(cont.since).toBe(held.mapVersion);
  expect(cont.mapLog).not.toBe(held.mapLog);
  expect(cont.volumes).toEqual([]);
  expect(norm(mergeMaps(held, cont)!)).toEqual(norm(await fetchMaps(c, sdc)));
  // a map change after the held map, then a clean restart: the old log's answer is refused
  const held2 = await fetchMaps(c, sdc);
  const old = await fetchMaps(c, sdc); // (same log, same version)
  await c.createVolume("b", 1);
  expect((await c.m.api("POST", `/instances/Volume::${v}/action/setVolumeName`, { newName: "renamed" })).status).toBe(200);
  c = await c.restart({ recovery });
  expect((await fetchMaps(c, sdc, `?since=${old.mapVersion}&log=${old.mapLog}`)).since).toBeUndefined();
  const held3 = await fetchMaps(c, sdc);
  expect(held3.mapLog).not.toBe(held2.mapLog);
  c = await crashRestart(c);
  expect((await fetchMaps(c, sdc, `?since=${held3.mapVersion}&log=${held3.mapLog}`)).since).toBeUndefined();
}, 60_000);

test("mergeMaps refuses a delta that does not fit the held map", () => {
  const base = { mapVersion: 5, nodeKeys: [], dataPlaneTls: false, mapLog: "0123456789abcdef" } as unknown as Maps;
  const vol = (id: string) => ({ volumeId: id, name: id, sizeBytes: 8, accessMode: "ReadWrite" as const, extentSizeBytes: 8, extents: [{ epoch: 1, replicas: ["00000000000000aa"] }], limitIops: 0, limitBwKbps: 0 });
  const held = { ...base, volumes: [vol("0000000000000001")] };
  // another version than the one held
  expect(mergeMaps(held, { ...base, mapVersion: 7, since: 4, volumeIds: ["0000000000000001"], volumes: [] })).toBeNull();
  // a listed volume neither held nor sent
  expect(mergeMaps(held, { ...base, mapVersion: 7, since: 5, volumeIds: ["0000000000000001", "0000000000000002"], volumes: [] })).toBeNull();
  // an entry for a volume not listed
  expect(mergeMaps(held, { ...base, mapVersion: 7, since: 5, volumeIds: [], volumes: [vol("0000000000000001")] })).toBeNull();
  const ok = mergeMaps(held, { ...base, mapVersion: 7, since: 5, volumeIds: ["0000000000000001", "0000000000000002"], volumes: [vol("0000000000000002")] });
  expect(ok?.volumes.map((v) => v.volumeId)).toEqual(["0000000000000001", "0000000000000002"]);
  expect(ok?.mapVersion).toBe(7);
  expect((ok as Maps).since).toBeUndefined();
});
