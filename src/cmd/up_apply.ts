// `pf up`'s conversation with the MDM REST API: wait for it, log in as admin, and create what
// the cluster file lists. Every step looks the object up by name first, so running it again
// (a restart) changes nothing that already exists.

import { consola } from "consola";
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import type { ClusterConfig } from "../proto/cluster_config.ts";
import { PfError, isPfError } from "../proto/errors.ts";
import { MdmTlsError, mdmLogin, mdmRequest, type MdmEndpoint } from "../proto/mdm_http.ts";
import type { HostPlan } from "./host_plan.ts";
import { mdmWaitMs } from "./role_options.ts";
import { WaitNotice } from "./wait_notice.ts";

const WAIT_MEMBERS_MS = 180_000;
const POLL_MS = 250;

const Named = z.looseObject({ id: z.string(), name: z.string().nullable() });
const PoolObj = z.looseObject({
  id: z.string(),
  name: z.string().nullable(),
  protectionDomainId: z.string(),
  writeCache: z.string().optional(),
  extentSizeInKb: z.number().optional(),
  allocationGranularityInKb: z.number().optional(),
  rebuildIoPriorityPolicy: z.string().optional(),
  rebuildIoPriorityNumOfConcurrentIosPerDevice: z.number().optional(),
  rebuildIoPriorityBwLimitPerDeviceInKbps: z.number().optional(),
  rebalanceIoPriorityPolicy: z.string().optional(),
  rebalanceIoPriorityNumOfConcurrentIosPerDevice: z.number().optional(),
  rebalanceIoPriorityBwLimitPerDeviceInKbps: z.number().optional(),
});
const SdsObj = z.looseObject({ id: z.string(), name: z.string().nullable(), mdmConnectionState: z.string().optional() });
const VolumeObj = z.looseObject({
  id: z.string(),
  name: z.string().nullable(),
  sizeInKb: z.number(),
  mappedSdcInfo: z.array(z.looseObject({ sdcId: z.string() })).nullable().optional(),
});
const Created = z.looseObject({ id: z.string() });
const Empty = z.unknown();

/** Wait until the MDM answers (and its certificate verifies); a role that died ends the wait. */
export async function waitForMdm(ep: MdmEndpoint, plan: HostPlan, failed: () => PfError | null): Promise<void> {
  const waitMs = mdmWaitMs();
  const deadline = Date.now() + waitMs;
  const notice = new WaitNotice("pf up");
  const caFile = plan.caFile;
  let last = "";
  for (;;) {
    const f = failed();
    if (f) throw f;
    if (caFile === null || existsSync(caFile)) {
      try {
        await mdmRequest({ ...ep, caPem: caFile === null ? null : readFileSync(caFile, "utf8"), timeoutMs: 2000 }, { method: "GET", path: "/api/version", schema: z.string() });
        return;
      } catch (e) {
        if (e instanceof MdmTlsError) {
          throw new PfError("UNAVAILABLE", `${e.message}; ${caFile} is not the certificate of the MDM at ${ep.url}: fix mdm.ca in ${plan.fileName} (the MDM's DATA_DIR/mdm/tls/cert.pem, copied to this host)`);
        }
        last = (e as Error).message;
      }
    } else {
      last = `its certificate ${caFile} is not there yet`;
    }
    notice.update(`the MDM at ${ep.url} (${last})`);
    if (Date.now() > deadline) {
      const where = plan.host.mdm ? "see the mdm log lines above" : `start pf up on host ${plan.mdmHost.name} first, or check its address and mdm.port in ${plan.fileName}`;
      throw new PfError("UNAVAILABLE", `the MDM at ${ep.url} did not answer within ${Math.round(waitMs / 1000)} s (${last}); ${where}`);
    }
    await Bun.sleep(POLL_MS);
  }
}

export function loginAdmin(ep: MdmEndpoint, password: string): Promise<string> {
  return mdmLogin(ep, "admin", password);
}

const list = <T extends z.ZodType>(ep: MdmEndpoint, type: string, schema: T) =>
  mdmRequest(ep, { method: "GET", path: `/api/types/${type}/instances`, schema: z.array(schema) });
const create = (ep: MdmEndpoint, type: string, body: Record<string, unknown>) =>
  mdmRequest(ep, { method: "POST", path: `/api/types/${type}/instances`, body, schema: Created });
const action = (ep: MdmEndpoint, obj: string, name: string, body: Record<string, unknown>) =>
  mdmRequest(ep, { method: "POST", path: `/api/instances/${obj}/action/${name}`, body, schema: Empty });

const kb = (bytes: number | undefined) => (bytes === undefined ? undefined : Math.ceil(bytes / 1024));

/** phase "structure": PDs, fault sets, pools. phase "volumes": volumes and mappings (waits for SDSs/SDCs). */
export async function applyClusterObjects(ep: MdmEndpoint, config: ClusterConfig, phase: "structure" | "volumes", failed: () => PfError | null = () => null): Promise<void> {
  if (phase === "structure") return applyStructure(ep, config);
  await waitForMembers(ep, config, failed);
  await applyVolumes(ep, config);
}

/**
 * Create an object unless it exists. An SDS that joins meanwhile (its host was started at the same
 * time) creates the protection domain, pool and fault set it names, so a create may meet
 * ALREADY_EXISTS between our look-up and our create: then the object made by the other side is used.
 */
async function findOrCreate<T extends { id: string }>(find: () => Promise<T | undefined>, make: () => Promise<string>, what: string): Promise<{ created: true; id: string } | { created: false; obj: T }> {
  const found = await find();
  if (found) return { created: false, obj: found };
  try {
    return { created: true, id: await make() };
  } catch (e) {
    if (!isPfError(e) || e.code !== "ALREADY_EXISTS") throw e;
    const raced = await find();
    if (!raced) throw e;
    consola.info(`pf up: ${what} was created meanwhile by a joining SDS (${raced.id}); using it`);
    return { created: false, obj: raced };
  }
}

async function applyStructure(ep: MdmEndpoint, config: ClusterConfig): Promise<void> {
  for (const pd of config.protectionDomains) {
    const pdRes = await findOrCreate(
      async () => (await list(ep, "ProtectionDomain", Named)).find((x) => x.name === pd.name),
      async () => (await create(ep, "ProtectionDomain", { name: pd.name })).id,
      `protection domain ${pd.name}`,
    );
    const pdId = pdRes.created ? pdRes.id : pdRes.obj.id;
    if (pdRes.created) consola.info(`pf up: created protection domain ${pd.name} (${pdId})`);
    for (const fs of pd.faultSets) {
      const r = await findOrCreate(
        async () => (await list(ep, "FaultSet", PoolObj)).find((f) => f.protectionDomainId === pdId && f.name === fs),
        async () => (await create(ep, "FaultSet", { protectionDomainId: pdId, name: fs })).id,
        `fault set ${pd.name}/${fs}`,
      );
      if (r.created) consola.info(`pf up: created fault set ${pd.name}/${fs} (${r.id})`);
    }
    for (const p of pd.storagePools) {
      const body = {
        protectionDomainId: pdId,
        name: p.name,
        sparePercentage: p.sparePercentage,
        extentSizeInKb: kb(p.extentSize),
        allocationGranularityInKb: kb(p.granularity),
        rebuildRateLimitInKbps: p.rebuildRateLimit === undefined ? undefined : Math.ceil(p.rebuildRateLimit / 1024),
        writeCache: p.writeCache,
      };
      const r = await findOrCreate(
        async () => (await list(ep, "StoragePool", PoolObj)).find((x) => x.protectionDomainId === pdId && x.name === p.name),
        async () => (await create(ep, "StoragePool", body)).id,
        `storage pool ${pd.name}/${p.name}`,
      );
      if (r.created) {
        consola.info(`pf up: created storage pool ${pd.name}/${p.name} (${r.id})`);
        await applyIoPriority(ep, pd.name, p, r.id, null);
      } else await reconcilePool(ep, pd.name, p, r.obj);
    }
  }
  consola.info(`pf up: topology of ${config.protectionDomains.length} protection domain(s) is in place`);
}

type PoolSpec = ClusterConfig["protectionDomains"][number]["storagePools"][number];
type PoolRow = z.infer<typeof PoolObj>;

/**
 * An existing pool: the file's writeCache, when given, is applied on every start (a live change by
 * scli lasts until then). Extent size and granularity cannot change on a pool; a pool that a
 * joining SDS created before pf up (defaults) is named with a warning, so the operator sees it.
 */
async function reconcilePool(ep: MdmEndpoint, pdName: string, spec: PoolSpec, existing: PoolRow): Promise<void> {
  if (spec.writeCache !== undefined && existing.writeCache !== spec.writeCache) {
    await action(ep, `StoragePool::${existing.id}`, "setWriteCache", { writeCache: spec.writeCache });
    consola.info(`pf up: storage pool ${pdName}/${spec.name} set to ${spec.writeCache}`);
  }
  await applyIoPriority(ep, pdName, spec, existing.id, existing);
  const differs: string[] = [];
  if (spec.extentSize !== undefined && existing.extentSizeInKb !== undefined && existing.extentSizeInKb !== kb(spec.extentSize)) {
    differs.push(`extent size ${existing.extentSizeInKb} KiB, the file says ${kb(spec.extentSize)} KiB`);
  }
  if (spec.granularity !== undefined && existing.allocationGranularityInKb !== undefined && existing.allocationGranularityInKb !== kb(spec.granularity)) {
    differs.push(`granularity ${existing.allocationGranularityInKb} KiB, the file says ${kb(spec.granularity)} KiB`);
  }
  if (differs.length > 0) {
    consola.warn(
      `pf up: storage pool ${pdName}/${spec.name} (${existing.id}) exists with ${differs.join("; ")} (made by an SDS that joined before the pool was created from the file, or by hand); ` +
        "it keeps its settings: start the MDM host's pf up before the data hosts on a new cluster, or recreate the pool",
    );
  }
}

/**
 * The file's I/O priority keys of a pool, those given and not already so: rebuild (policy,
 * concurrent IOs, rebuildRateLimit) and rebalance (policy, concurrent IOs, rebalanceRateLimit).
 * `existing` null: a pool just created (its rate limit came with the create).
 */
async function applyIoPriority(ep: MdmEndpoint, pdName: string, spec: PoolSpec, poolId: string, existing: PoolRow | null): Promise<void> {
  const classes = [
    { cls: "rebuild", action: "setRebuildIoPriorityPolicy", policy: spec.rebuildIoPriorityPolicy, ios: spec.rebuildConcurrentIos, rate: existing === null ? undefined : spec.rebuildRateLimit },
    { cls: "rebalance", action: "setRebalanceIoPriorityPolicy", policy: spec.rebalanceIoPriorityPolicy, ios: spec.rebalanceConcurrentIos, rate: spec.rebalanceRateLimit },
  ] as const;
  for (const c of classes) {
    const kbps = c.rate === undefined ? undefined : Math.ceil(c.rate / 1024);
    const now = existing === null ? undefined : {
      policy: existing[`${c.cls}IoPriorityPolicy`],
      ios: existing[`${c.cls}IoPriorityNumOfConcurrentIosPerDevice`],
      kbps: existing[`${c.cls}IoPriorityBwLimitPerDeviceInKbps`],
    };
    const body: Record<string, string | number> = {};
    if (c.policy !== undefined && c.policy !== now?.policy) body.policy = c.policy;
    if (c.ios !== undefined && c.ios !== now?.ios) body.numOfConcurrentIosPerDevice = c.ios;
    if (kbps !== undefined && kbps !== now?.kbps) body.bwLimitPerDeviceInKbps = kbps;
    if (Object.keys(body).length === 0) continue;
    await action(ep, `StoragePool::${poolId}`, c.action, body);
    consola.info(`pf up: storage pool ${pdName}/${spec.name} ${c.cls} I/O priority set: ${JSON.stringify(body)}`);
  }
}

/** Wait until every SDS of the file is connected and every SDC that volumes map to has joined. */
async function waitForMembers(ep: MdmEndpoint, config: ClusterConfig, failed: () => PfError | null): Promise<void> {
  const wantSds = config.hosts.flatMap((h) => h.sds.map((s) => s.name));
  const wantSdc = [...new Set(config.volumes.flatMap((v) => v.mapTo.map((m) => sdcName(config, m.host))))];
  const deadline = Date.now() + WAIT_MEMBERS_MS;
  const notice = new WaitNotice("pf up");
  for (;;) {
    const f = failed();
    if (f) throw f;
    const sds = await list(ep, "Sds", SdsObj);
    const sdc = await list(ep, "Sdc", Named);
    const missingSds = wantSds.filter((n) => !sds.some((s) => s.name === n && s.mdmConnectionState === "Connected"));
    const missingSdc = wantSdc.filter((n) => !sdc.some((s) => s.name === n));
    if (missingSds.length === 0 && missingSdc.length === 0) return;
    const waiting = [
      ...(missingSds.length > 0 ? [`SDS ${missingSds.join(", ")} to join (connected)`] : []),
      ...(missingSdc.length > 0 ? [`SDC ${missingSdc.join(", ")} to join`] : []),
    ].join(" and ");
    if (Date.now() > deadline) {
      throw new PfError("UNAVAILABLE", `gave up after ${WAIT_MEMBERS_MS / 1000} s waiting for ${waiting}; start pf up on the hosts that run them, or see their log lines`);
    }
    notice.update(waiting);
    await Bun.sleep(POLL_MS);
  }
}

function sdcName(config: ClusterConfig, hostName: string): string {
  const h = config.hosts.find((x) => x.name === hostName)!;
  return h.sdc?.name ?? h.name;
}

async function applyVolumes(ep: MdmEndpoint, config: ClusterConfig): Promise<void> {
  const pds = await list(ep, "ProtectionDomain", Named);
  const pools = await list(ep, "StoragePool", PoolObj);
  const sdcs = await list(ep, "Sdc", Named);
  for (const v of config.volumes) {
    const [pdName, poolName] = v.pool.split("/") as [string, string];
    const pd = pds.find((x) => x.name === pdName);
    const pool = pools.find((x) => x.name === poolName && x.protectionDomainId === pd?.id);
    if (!pool) throw new PfError("NOT_FOUND", `pool ${v.pool} of volume ${v.name} does not exist`);
    let vol = (await list(ep, "Volume", VolumeObj)).find((x) => x.name === v.name);
    if (!vol) {
      const id = (
        await create(ep, "Volume", {
          storagePoolId: pool.id,
          name: v.name,
          volumeSizeInKb: kb(v.size),
          volumeType: v.type === "thick" ? "ThickProvisioned" : "ThinProvisioned",
        })
      ).id;
      consola.info(`pf up: created volume ${v.name} (${id})`);
      vol = (await list(ep, "Volume", VolumeObj)).find((x) => x.id === id)!;
    } else if (vol.sizeInKb * 1024 < v.size) {
      await action(ep, `Volume::${vol.id}`, "setVolumeSize", { sizeInGB: Math.ceil(v.size / 1024 ** 3) });
      consola.info(`pf up: extended volume ${v.name} to ${v.size} bytes`);
    }
    for (const m of v.mapTo) {
      const sdc = sdcs.find((x) => x.name === sdcName(config, m.host))!;
      if ((vol.mappedSdcInfo ?? []).some((x) => x.sdcId === sdc.id)) continue;
      try {
        await action(ep, `Volume::${vol.id}`, "addMappedSdc", {
          sdcId: sdc.id,
          accessMode: m.accessMode,
          allowMultipleMappings: v.mapTo.length > 1 ? "TRUE" : "FALSE",
        });
        consola.info(`pf up: mapped volume ${v.name} to SDC ${sdc.name} (${m.accessMode})`);
      } catch (e) {
        if (!isPfError(e) || e.code !== "ALREADY_MAPPED") throw e;
      }
    }
  }
}
