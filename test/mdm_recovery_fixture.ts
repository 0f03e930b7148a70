// Fixture of the MDM recovery tests: an in-process MDM (MdmFixture, fake clock) with fake SDSs
// that heartbeat through the cluster API when the test says so, a planner step run on demand
// (recoveryTick, as the MDM's timer would), copies "finished" by sending the primary's rebuild
// report, and the invariants every step must keep (copies on distinct SDSs and fault sets,
// device accounting equal to the copies on each device).

import { expect } from "bun:test";
import { HeartbeatResponse, SdsAssignmentsResponse, type RebuildReport } from "../src/proto/cluster_api.ts";
import { RebuildStatus } from "../src/proto/powerflex_api.ts";
import { recoveryTick, type TickResult } from "../src/mdm/recovery/recovery.ts";
import { extentFromRow, type ExtentState } from "../src/mdm/recovery/recovery_model.ts";
import { extentTable, type ExtentRow } from "../src/store/mdm_schema.ts";
import type { RecoveryOptions } from "../src/mdm/recovery/runtime.ts";
import { GiB, MdmFixture } from "./mdm_fixture.ts";

export interface FakeSds {
  name: string;
  id: string;
  devices: string[];
  faultSet?: string;
}

export class RecoveryCluster {
  readonly sds = new Map<string, FakeSds>();
  /** names of SDSs whose heartbeats reach the MDM */
  readonly alive = new Set<string>();
  /** device states each SDS reports */
  readonly failedDevices = new Set<string>();

  private constructor(readonly m: MdmFixture) {}

  static async open(opts: { recovery?: RecoveryOptions; dir?: string } = {}): Promise<RecoveryCluster> {
    const m = await MdmFixture.open({ recovery: opts.recovery, ...(opts.dir ? { dir: opts.dir } : {}) });
    await m.login();
    return new RecoveryCluster(m);
  }

  /** Reopen the MDM on the same data dir and clock (an MDM restart), keeping the fake SDSs. */
  async restart(opts: { recovery?: RecoveryOptions; whileStopped?: (dataDir: string) => void } = {}): Promise<RecoveryCluster> {
    this.m.close({ keepDir: true });
    opts.whileStopped?.(`${this.m.dir}/mdm`);
    const m = await MdmFixture.open({ dir: this.m.dir, clock: this.m.clock, recovery: opts.recovery });
    await m.login();
    const c = new RecoveryCluster(m);
    for (const [k, v] of this.sds) c.sds.set(k, v);
    for (const a of this.alive) c.alive.add(a);
    return c;
  }

  close(): void {
    this.m.close();
  }

  get ctx() {
    return this.m.core.ctx;
  }

  now(): number {
    return this.m.clock.nowMs;
  }

  async addSds(name: string, opts: { faultSet?: string; devicesGiB?: number[] } = {}): Promise<FakeSds> {
    const j = await this.m.joinSds(name, { devicesGiB: opts.devicesGiB ?? [100], ...(opts.faultSet ? { faultSet: opts.faultSet } : {}) });
    const s: FakeSds = { name, id: j.sdsId, devices: j.devices.map((d) => d.deviceId), ...(opts.faultSet ? { faultSet: opts.faultSet } : {}) };
    this.sds.set(name, s);
    this.alive.add(name);
    return s;
  }

  byId(id: string): FakeSds {
    for (const s of this.sds.values()) if (s.id === id) return s;
    throw new Error(`no fake SDS ${id}`);
  }

  id(name: string): string {
    const s = this.sds.get(name);
    if (!s) throw new Error(`no fake SDS ${name}`);
    return s.id;
  }

  async poolId(): Promise<string> {
    return this.m.idOf("StoragePool", "sp1");
  }

  async createVolume(name: string, sizeGb: number, type: "ThinProvisioned" | "ThickProvisioned" = "ThinProvisioned"): Promise<string> {
    const r = await this.m.api("POST", "/types/Volume/instances", { storagePoolId: await this.poolId(), volumeSizeInGb: sizeGb, name, volumeType: type });
    if (r.status !== 200) throw new Error(`create volume: ${r.status} ${r.text}`);
    return (r.json as { id: string }).id;
  }

  async heartbeat(name: string, rebuilds: RebuildReport[] = []): Promise<HeartbeatResponse> {
    const s = this.sds.get(name)!;
    const r = await this.m.cluster("POST", `/sds/${s.id}/heartbeat`, {
      devices: s.devices.map((d) => ({ deviceId: d, state: this.failedDevices.has(d) ? "Failed" : "Normal", usedBytes: 0 })),
      appliedMapVersion: 0,
      rebuilds,
    });
    if (r.status !== 200) throw new Error(`heartbeat ${name}: ${r.status} ${r.text}`);
    return HeartbeatResponse.parse(r.json);
  }

  async beatAll(): Promise<void> {
    for (const name of this.alive) await this.heartbeat(name);
  }

  tick(): TickResult {
    const r = recoveryTick(this.ctx);
    // a removed SDS process would stop: it heartbeats no more
    for (const id of r.removedSds) for (const s of this.sds.values()) if (s.id === id) this.alive.delete(s.name);
    this.checkInvariants();
    return r;
  }

  /** Let time pass in steps: alive SDSs heartbeat and the planner runs after every step. */
  async advance(ms: number, stepMs = 1000): Promise<void> {
    let left = ms;
    while (left > 0) {
      const step = Math.min(stepMs, left);
      this.m.clock.advance(step);
      left -= step;
      await this.beatAll();
      this.tick();
    }
  }

  async assignments(name: string): Promise<SdsAssignmentsResponse> {
    const r = await this.m.cluster("GET", `/sds/${this.id(name)}/assignments`);
    if (r.status !== 200) throw new Error(`assignments ${name}: ${r.status} ${r.text}`);
    return SdsAssignmentsResponse.parse(r.json);
  }

  /** Every copy the primaries are asked to build, as (primary name, report of it done). */
  async runningCopies(): Promise<{ primary: string; report: RebuildReport }[]> {
    const out: { primary: string; report: RebuildReport }[] = [];
    for (const name of this.alive) {
      const a = await this.assignments(name);
      for (const e of a.extents) {
        if (e.role !== "primary" || e.syncTarget === null) continue;
        const total = a.extentSizeBytesByVolume[e.volumeId] ?? 0;
        out.push({
          primary: name,
          report: { volumeId: e.volumeId, extentIndex: e.extentIndex, epoch: e.epoch, targetSdsId: e.syncTarget.sdsId, copiedBytes: total, totalBytes: total, done: true },
        });
      }
    }
    return out;
  }

  /** Primaries report every running copy done (one heartbeat each); returns how many. */
  async completeCopies(): Promise<number> {
    const running = await this.runningCopies();
    const byPrimary = new Map<string, RebuildReport[]>();
    for (const r of running) byPrimary.set(r.primary, [...(byPrimary.get(r.primary) ?? []), r.report]);
    for (const [name, reports] of byPrimary) await this.heartbeat(name, reports);
    this.checkInvariants();
    return running.length;
  }

  /** Tick and complete copies until no copy runs and the planner starts none (bounded). */
  async settle(maxRounds = 200): Promise<number> {
    let rounds = 0;
    for (; rounds < maxRounds; rounds++) {
      await this.beatAll();
      this.tick();
      if ((await this.completeCopies()) === 0) {
        this.tick();
        if ((await this.runningCopies()).length === 0) return rounds;
      }
    }
    throw new Error(`recovery did not settle in ${maxRounds} rounds`);
  }

  extents(): ExtentState[] {
    return this.ctx.store.db
      .select()
      .from(extentTable)
      .all()
      .map((r: ExtentRow) => extentFromRow(r));
  }

  mapVersion(): number {
    return (this.ctx.store.sqlite.query("SELECT map_version AS v FROM system").get() as { v: number }).v;
  }

  async status(): Promise<RebuildStatus> {
    const r = await this.m.api("POST", `/instances/StoragePool::${await this.poolId()}/action/queryRebuild`, {});
    if (r.status !== 200) throw new Error(`queryRebuild: ${r.status} ${r.text}`);
    return RebuildStatus.parse(r.json);
  }

  async sdsObject(name: string): Promise<Record<string, unknown>> {
    return (await this.m.api("GET", `/instances/Sds::${this.id(name)}`)).json as Record<string, unknown>;
  }

  /** Copies on distinct SDSs (and in-sync/target copies in distinct fault sets); device bytes = copies. */
  checkInvariants(): void {
    const faultSetOf = new Map<string, string | null>();
    for (const r of this.ctx.store.sqlite.query("SELECT id, fault_set_id FROM sds").all() as { id: string; fault_set_id: string | null }[]) {
      faultSetOf.set(r.id, r.fault_set_id);
    }
    const hasFs = [...faultSetOf.values()].some((f) => f !== null);
    const perDevice = new Map<string, number>();
    const rows = this.ctx.store.sqlite
      .query("SELECT e.*, v.extent_bytes AS eb FROM extent e JOIN volume v ON v.id = e.volume_id")
      .all() as Record<string, string | number | null>[];
    for (const r of rows) {
      const sds = [r.primary_sds_id, r.secondary_sds_id, r.target_sds_id, r.away_sds_id].filter((x): x is string => typeof x === "string");
      expect(new Set(sds).size).toBe(sds.length);
      if (hasFs) {
        // a move's target may share the fault set of the copy it replaces
        const live = [r.primary_sds_id, r.secondary_sds_id, r.target_sds_id].filter((x): x is string => typeof x === "string" && x !== r.target_replaces_sds_id);
        const domains = live.map((s) => faultSetOf.get(s) ?? `sds:${s}`);
        expect(new Set(domains).size).toBe(domains.length);
      }
      for (const d of [r.primary_device_id, r.secondary_device_id, r.target_device_id, r.away_device_id]) {
        if (typeof d === "string") perDevice.set(d, (perDevice.get(d) ?? 0) + Number(r.eb));
      }
    }
    for (const d of this.ctx.store.sqlite.query("SELECT id, assigned_bytes FROM device").all() as { id: string; assigned_bytes: number }[]) {
      expect(d.assigned_bytes).toBe(perDevice.get(d.id) ?? 0);
    }
  }
}

export { GiB };
