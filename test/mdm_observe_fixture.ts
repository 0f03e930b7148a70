// Fixture of the MDM observability tests: an in-process MDM (MdmFixture, fake clock) with three
// SDSs and one SDC joined through the cluster API, volumes created and mapped through REST, and
// a `tick` that plays one second of the cluster: advance the clock, every live SDS and the SDC
// send their heartbeat with their cumulative IO counters, then the observe step runs (history
// sample, alerts). open() lets the MDM's start-up settle period pass first.

import { expect } from "bun:test";
import { observeTick } from "../src/mdm/observe/observe_tick.ts";
import type { AlertChanges } from "../src/mdm/observe/alerts.ts";
import type { WebhookOptions } from "../src/mdm/observe/alert_webhook.ts";
import { SdcCounters, SdsCounters } from "./helpers/io_reports.ts";
import { MdmFixture } from "./mdm_fixture.ts";

export type Obj = Record<string, unknown>;

export interface SdsMember {
  name: string;
  id: string;
  deviceIds: string[];
  counters: SdsCounters;
  /** false: sends no heartbeat (a dead or cut-off SDS) */
  alive: boolean;
  devices: { deviceId: string; state: "Normal" | "Failed"; usedBytes: number; error?: string }[];
}

export class ObserveCluster {
  readonly sdc = new SdcCounters();
  sdcAlive = true;
  private constructor(
    readonly m: MdmFixture,
    readonly sds: SdsMember[],
    readonly sdcId: string,
    readonly poolId: string,
    readonly pdId: string,
  ) {}

  static async open(opts: { sdsCount?: number; devicesGiB?: number[]; dir?: string; alertWebhook?: WebhookOptions } = {}): Promise<ObserveCluster> {
    const m = await MdmFixture.open({ ...(opts.dir ? { dir: opts.dir } : {}), ...(opts.alertWebhook ? { alertWebhook: opts.alertWebhook } : {}) });
    await m.login();
    const sds: SdsMember[] = [];
    for (let i = 1; i <= (opts.sdsCount ?? 3); i++) {
      const j = await m.joinSds(`sds${i}`, { devicesGiB: opts.devicesGiB ?? [100] });
      sds.push({
        name: `sds${i}`,
        id: j.sdsId,
        deviceIds: j.devices.map((d) => d.deviceId),
        counters: new SdsCounters(`sds${i}-inc-1`),
        alive: true,
        devices: j.devices.map((d) => ({ deviceId: d.deviceId, state: "Normal", usedBytes: 0 })),
      });
    }
    const sdcId = await m.joinSdc("guid-observe-sdc", "hostA");
    const poolId = await m.idOf("StoragePool", "sp1");
    const pdId = await m.idOf("ProtectionDomain", "pd1");
    const c = new ObserveCluster(m, sds, sdcId, poolId, pdId);
    // past the MDM's start-up settle period (alerts are not cleared while it lasts)
    while (m.clock.nowMs <= c.ctx.observe.settleUntilMs) await c.tick();
    return c;
  }

  get ctx() {
    return this.m.core.ctx;
  }

  async volume(name: string, opts: { sizeGiB?: number; thick?: boolean; map?: boolean } = {}): Promise<string> {
    const r = await this.m.api("POST", "/types/Volume/instances", {
      storagePoolId: this.poolId,
      volumeSizeInGb: String(opts.sizeGiB ?? 1),
      name,
      volumeType: opts.thick ? "ThickProvisioned" : "ThinProvisioned",
    });
    expect(r.status).toBe(200);
    const id = (r.json as Obj).id as string;
    if (opts.map ?? true) {
      const mp = await this.m.api("POST", `/instances/Volume::${id}/action/addMappedSdc`, { sdcId: this.sdcId, accessMode: "ReadWrite" });
      expect(mp.status).toBe(200);
    }
    return id;
  }

  /** Heartbeats of every live member now (no clock change). */
  async heartbeats(): Promise<void> {
    for (const s of this.sds) {
      if (!s.alive) continue;
      const r = await this.m.cluster("POST", `/sds/${s.id}/heartbeat`, { devices: s.devices, appliedMapVersion: 0, io: s.counters.report() });
      expect(r.status).toBe(200);
    }
    if (this.sdcAlive) {
      const r = await this.m.cluster("POST", `/sdc/${this.sdcId}/heartbeat`, { appliedMapVersion: 0, io: this.sdc.report() });
      expect(r.status).toBe(200);
    }
  }

  /** One second of cluster life: `work` grows counters, then heartbeats, then the observe step. */
  async tick(work: () => void = () => undefined, ms = 1000): Promise<AlertChanges> {
    this.m.clock.advance(ms);
    work();
    await this.heartbeats();
    return observeTick(this.ctx);
  }

  close(opts: { keepDir?: boolean } = {}): void {
    this.m.close(opts);
  }
}
