// Rows -> PowerFlex REST objects: PowerFlex field names, sizes in KiB, `links` arrays with the
// rel/href patterns goscaleio follows, and System's mdmCluster (Ansible `info` reads it).
// Pure shaping plus the reads each object needs; nothing here writes.

import { asc, eq } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { POWERFLEX_SYSTEM_VERSION_NAME, POWERFLEX_VERSION_INFO, type Link, type PowerFlexType, type RebuildStatus } from "../../proto/powerflex_api.ts";
import { recoveryStatus } from "../recovery/recovery.ts";
import { copiesHeldBy } from "../recovery/recovery_view.ts";
import {
  deviceTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  volumeMappingTable,
  volumeTable,
  vtreeTable,
  type DeviceRow,
  type FaultSetRow,
  type ProtectionDomainRow,
  type SdcRow,
  type SdsRow,
  type StoragePoolRow,
  type SystemRow,
  type VolumeRow,
  type VTreeRow,
} from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { getDevice, getFaultSet, getPd, getPool, getSdc, getSds, getVolume } from "../core/lookup.ts";
import { getSystem } from "../core/system_state.ts";
import { parseIpList } from "../topology/topology.ts";
import { mappingsByVolume, type MappingBrief } from "../topology/volumes.ts";
import { getVTree } from "../vtree/vtree_store.ts";

export type PfObject = Record<string, unknown>;

const CHILDREN: Record<PowerFlexType, string[]> = {
  System: ["ProtectionDomain", "Sdc", "User"],
  ProtectionDomain: ["StoragePool", "Sds", "FaultSet"],
  StoragePool: ["Volume", "Device", "SpSds", "VTree"],
  FaultSet: ["Sds"],
  Sds: ["Device"],
  Device: [],
  Sdc: ["Volume"],
  Volume: [],
  VTree: ["Volume"],
};

function links(type: PowerFlexType, id: string, parents: [field: string, type: PowerFlexType, id: string | null][] = []): Link[] {
  const self = `/api/instances/${type}::${id}`;
  const out: Link[] = [
    { rel: "self", href: self },
    { rel: `/api/${type}/relationship/Statistics`, href: `${self}/relationships/Statistics` },
  ];
  for (const child of CHILDREN[type]) out.push({ rel: `/api/${type}/relationship/${child}`, href: `${self}/relationships/${child}` });
  for (const [field, ptype, pid] of parents) {
    if (pid !== null) out.push({ rel: `/api/parent/relationship/${field}`, href: `/api/instances/${ptype}::${pid}` });
  }
  return out;
}

const kb = (bytes: number) => Math.floor(bytes / 1024);

// ---- System ----

/** Host and port of the active MDM: this one, or (on an HA standby) the leader it follows. */
function activeMdmAddress(ctx: MdmContext): { ip: string; port: number } {
  const leader = ctx.meta.isLeader() ? null : ctx.meta.leader();
  if (leader) {
    try {
      const u = new URL(leader.url);
      return { ip: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port) };
    } catch {
      // an unparsable URL in the leader record: fall back to this MDM's own address
    }
  }
  return { ip: ctx.listenHost, port: ctx.listenPort };
}

function mdmClusterOf(ctx: MdmContext, sys: SystemRow): PfObject {
  const { ip, port } = activeMdmAddress(ctx);
  const master = {
    id: `${sys.id.slice(0, 8)}00000001`,
    name: "mdm1",
    port,
    ips: [ip],
    managementIPs: [ip],
    role: "Manager",
    status: "Normal",
    versionInfo: POWERFLEX_VERSION_INFO,
    opensslVersion: "N/A",
    virtualInterfaces: [],
  };
  return {
    id: sys.id,
    name: sys.name,
    clusterMode: "OneNode",
    clusterState: "ClusteredNormal",
    goodNodesNum: 1,
    goodReplicasNum: 1,
    master,
    slaves: [],
    tieBreakers: [],
    standbyMDMs: [],
    virtualIps: [],
  };
}

export function renderSystem(ctx: MdmContext): PfObject {
  const sys = getSystem(ctx);
  return {
    id: sys.id,
    name: sys.name,
    systemVersionName: POWERFLEX_SYSTEM_VERSION_NAME,
    mdmMode: "Cluster",
    mdmClusterState: "ClusteredNormal",
    mdmCluster: mdmClusterOf(ctx, sys),
    primaryMdmActorIpList: [activeMdmAddress(ctx).ip],
    secondaryMdmActorIpList: [],
    tiebreakerMdmIpList: [],
    mdmManagementIpList: [ctx.listenHost],
    mdmManagementPort: ctx.listenPort,
    mdmToSdsPolicy: "Authentication",
    capacityAlertHighThresholdPercent: sys.capacityAlertHighPct,
    capacityAlertCriticalThresholdPercent: sys.capacityAlertCriticalPct,
    perfProfile: "HighPerformance",
    installId: sys.id,
    swid: "",
    daysInstalled: Math.floor((ctx.clock() - sys.createdAtMs) / 86_400_000),
    maxCapacityInGb: "Unlimited",
    capacityTimeLeftInDays: "Unlimited",
    isInitialLicense: false,
    enterpriseFeaturesEnabled: true,
    defaultIsVolumeObfuscated: false,
    restrictedSdcModeEnabled: sys.restrictedSdcMode !== "None",
    restrictedSdcMode: sys.restrictedSdcMode,
    remoteReadOnlyLimitState: false,
    authenticationMethod: "Native",
    upgradeState: "NoUpgrade",
    cliPasswordAllowed: true,
    managementClientSecureCommunicationEnabled: true,
    tlsVersion: "TLSv1.2",
    systemVersion: "3.6",
    links: links("System", sys.id),
  };
}

// ---- ProtectionDomain / StoragePool / FaultSet ----

export function renderPd(ctx: MdmContext, pd: ProtectionDomainRow): PfObject {
  return {
    id: pd.id,
    name: pd.name,
    systemId: ctx.systemId,
    protectionDomainState: pd.state,
    rebuildNetworkThrottlingInKbps: pd.rebuildNetworkKbps,
    rebalanceNetworkThrottlingInKbps: pd.rebalanceNetworkKbps,
    overallIoNetworkThrottlingInKbps: null,
    vtreeMigrationNetworkThrottlingInKbps: null,
    rebuildNetworkThrottlingEnabled: pd.rebuildNetworkKbps !== null,
    rebalanceNetworkThrottlingEnabled: pd.rebalanceNetworkKbps !== null,
    overallIoNetworkThrottlingEnabled: false,
    fglDefaultNumConcurrentWrites: 1000,
    fglMetadataCacheEnabled: false,
    fglDefaultMetadataCacheSize: 0,
    rfcacheEnabled: false,
    rfcacheAccpId: null,
    rfcacheOpertionalMode: "None",
    rfcachePageSizeKb: 64,
    rfcacheMaxIoSizeKb: 128,
    links: links("ProtectionDomain", pd.id, [["systemId", "System", ctx.systemId]]),
  };
}

export function renderPool(ctx: MdmContext, p: StoragePoolRow, status?: RebuildStatus): PfObject {
  const rs = status ?? recoveryStatus(ctx, [p.id]).get(p.id);
  return {
    id: p.id,
    name: p.name,
    protectionDomainId: p.pdId,
    mediaType: p.mediaType,
    dataLayout: "MediumGranularity",
    sparePercentage: p.sparePercentage,
    rebuildEnabled: p.rebuildEnabled,
    rebalanceEnabled: p.rebalanceEnabled,
    rebuildIoPriorityPolicy: p.rebuildIoPolicy,
    rebalanceIoPriorityPolicy: p.rebalanceIoPolicy,
    rebuildIoPriorityNumOfConcurrentIosPerDevice: p.rebuildIoConcurrency,
    rebalanceIoPriorityNumOfConcurrentIosPerDevice: p.rebalanceIoConcurrency,
    rebuildIoPriorityBwLimitPerDeviceInKbps: p.rebuildRateLimitKbps,
    rebalanceIoPriorityBwLimitPerDeviceInKbps: p.rebalanceBwLimitKbps,
    rebuildIoPriorityAppIopsPerDeviceThreshold: null,
    rebalanceIoPriorityAppIopsPerDeviceThreshold: null,
    rebuildIoPriorityAppBwPerDeviceThresholdInKbps: null,
    rebalanceIoPriorityAppBwPerDeviceThresholdInKbps: null,
    rebuildIoPriorityQuietPeriodInMsec: null,
    rebalanceIoPriorityQuietPeriodInMsec: null,
    numOfParallelRebuildRebalanceJobsPerDevice: 2,
    zeroPaddingEnabled: p.zeroPaddingEnabled,
    useRmcache: false,
    useRfcache: false,
    checksumEnabled: false,
    compressionMethod: "Invalid",
    fglAccpId: null,
    capacityUsageState: "Normal",
    capacityUsageType: "NetCapacity",
    capacityAlertHighThreshold: p.capacityAlertHighPct,
    capacityAlertCriticalThreshold: p.capacityAlertCriticalPct,
    addressSpaceUsage: "Normal",
    addressSpaceUsageType: "DeviceCapacityLimit",
    backgroundScannerMode: "Disabled",
    backgroundScannerBWLimitKBps: 0,
    externalAccelerationType: "None",
    fragmentationEnabled: true,
    persistentChecksumEnabled: false,
    spClass: "Default",
    // pf extensions
    extentSizeInKb: kb(p.extentBytes),
    allocationGranularityInKb: kb(p.granularityBytes),
    defaultVolumeType: p.defaultThin ? "ThinProvisioned" : "ThickProvisioned",
    rebuildRateLimitInKbps: p.rebuildRateLimitKbps,
    writeCache: p.writeCache,
    storagePoolState: rs?.storagePoolState ?? "Normal",
    rebuildState: rs?.rebuildState ?? "Idle",
    rebuildStalled: rs?.rebuildStalled ?? false,
    links: links("StoragePool", p.id, [["protectionDomainId", "ProtectionDomain", p.pdId]]),
  };
}

export function renderFaultSet(_ctx: MdmContext, f: FaultSetRow): PfObject {
  return {
    id: f.id,
    name: f.name,
    protectionDomainId: f.pdId,
    links: links("FaultSet", f.id, [["protectionDomainId", "ProtectionDomain", f.pdId]]),
  };
}

// ---- Sds / Device / Sdc ----

export function renderSds(ctx: MdmContext, s: SdsRow): PfObject {
  return {
    id: s.id,
    name: s.name,
    protectionDomainId: s.pdId,
    faultSetId: s.faultSetId,
    ipList: parseIpList(s.ipList),
    port: s.dataPort,
    sdsState: s.state,
    membershipState: "Joined",
    mdmConnectionState: ctx.health.sdsState(s.id),
    maintenanceState: "NoMaintenance",
    drlMode: "Volatile",
    rmcacheEnabled: false,
    rmcacheSizeInKb: 0,
    rmcacheFrozen: false,
    rmcacheMemoryAllocationState: "AllocationPending",
    rfcacheEnabled: false,
    perfProfile: "HighPerformance",
    softwareVersionInfo: POWERFLEX_VERSION_INFO,
    onVmWare: false,
    authenticationError: "None",
    sdsDecoupled: null,
    sdsConfigurationFailure: null,
    sdsReceiveBufferAllocationFailures: null,
    numOfIoBuffers: null,
    fglMetadataCacheState: "Disabled",
    fglNumConcurrentWrites: 1000,
    lastUpgradeTime: 0,
    certificateInfo: null,
    // pf extension: extent copies held (in-sync, being built, kept away); 0 before removal ends
    numOfExtentCopies: copiesHeldBy(ctx, s.id),
    links: links("Sds", s.id, [
      ["protectionDomainId", "ProtectionDomain", s.pdId],
      ["faultSetId", "FaultSet", s.faultSetId],
    ]),
  };
}

export function renderDevice(ctx: MdmContext, d: DeviceRow): PfObject {
  const failed = d.state === "Failed";
  return {
    id: d.id,
    name: d.name,
    sdsId: d.sdsId,
    storagePoolId: d.poolId,
    deviceCurrentPathName: d.path,
    deviceOriginalPathName: d.path,
    capacityLimitInKb: kb(d.capacityBytes),
    maxCapacityInKb: kb(d.capacityBytes),
    capacity: kb(d.capacityBytes),
    mediaType: d.mediaType,
    deviceState: d.state,
    errorState: failed ? "Error" : "None",
    // pf: why it failed, in its SDS's words (null when Normal, or not said since this MDM started)
    errorMessage: failed ? ctx.health.deviceError(d.id) : null,
    aggregatedState: failed ? "Failed" : "NeverFailed",
    ledSetting: "Off",
    deviceType: "Unknown",
    temperatureState: "NeverFailed",
    modelName: null,
    vendorName: null,
    serialNumber: null,
    firmwareVersion: null,
    spSdsId: d.sdsId,
    rfcacheErrorDeviceDoesNotExist: false,
    links: links("Device", d.id, [
      ["sdsId", "Sds", d.sdsId],
      ["storagePoolId", "StoragePool", d.poolId],
    ]),
  };
}

export function renderSdc(ctx: MdmContext, s: SdcRow): PfObject {
  return {
    id: s.id,
    name: s.name,
    sdcIp: s.host,
    sdcIps: [s.host],
    sdcGuid: s.guid,
    sdcApproved: s.approved,
    sdcApprovedIps: null,
    mdmConnectionState: ctx.health.sdcState(s.id),
    osType: "Linux",
    sdcType: "AppSdc",
    perfProfile: "HighPerformance",
    systemId: ctx.systemId,
    versionInfo: POWERFLEX_VERSION_INFO,
    installedSoftwareVersionInfo: POWERFLEX_VERSION_INFO,
    kernelVersion: null,
    kernelBuildNumber: null,
    peerMdmId: null,
    onVmWare: false,
    memoryAllocationFailure: null,
    socketAllocationFailure: null,
    sdcAgentActive: false,
    links: links("Sdc", s.id, [["systemId", "System", ctx.systemId]]),
  };
}

// ---- Volume / VTree ----

interface SdcBrief {
  host: string;
  name: string | null;
}

function sdcBriefs(ctx: MdmContext): Map<string, SdcBrief> {
  return new Map(ctx.store.db.select({ id: sdcTable.id, host: sdcTable.host, name: sdcTable.name }).from(sdcTable).all().map((s) => [s.id, { host: s.host, name: s.name }]));
}

export function renderVolumes(ctx: MdmContext, volumes: VolumeRow[]): PfObject[] {
  const all = volumes.length > 200;
  return volumes.map(volumeRenderer(mappingsByVolume(ctx, all ? null : volumes.map((v) => v.id)), sdcBriefs(ctx)));
}

/** every column of a volume row, named as drizzle's VolumeRow (a raw read: drizzle's row mapping was ~40 % of reading 100,000) */
const VOLUME_COLUMNS =
  "id, name, pool_id AS poolId, volume_type AS volumeType, size_bytes AS sizeBytes, extent_bytes AS extentBytes, vtree_id AS vtreeId, access_mode_limit AS accessModeLimit, " +
  "creation_time_s AS creationTimeS, owner_id AS ownerId, open_layer_id AS openLayerId, ancestor_volume_id AS ancestorVolumeId, consistency_group_id AS consistencyGroupId";

/** volumes rendered and turned into JSON between two yields of the listing */
export const VOLUME_LIST_SLICE = 2000;

/**
 * GET /types/Volume/instances as JSON text in parts (their concatenation is the JSON array).
 * Consistency: the rows (volumes, mappings, SDC names) are read in one synchronous stretch, before
 * the first yield, so the listing is a snapshot of that moment (no write of this MDM runs between
 * those reads: it has one connection and one thread). Then the objects are rendered and turned into
 * JSON in slices of `slice` volumes with a macrotask between slices, so heartbeats and other
 * requests are served meanwhile: at 100,000 volumes (136 MiB) that work was 1.2-1.7 s of the loop
 * at once and SDSs missed their beats (docs/design.md "MDM at scale").
 */
export async function volumeListJson(ctx: MdmContext, slice = VOLUME_LIST_SLICE): Promise<string[]> {
  const sqlite = ctx.store.sqlite;
  const volumes = sqlite.query<VolumeRow, []>(`SELECT ${VOLUME_COLUMNS} FROM volume ORDER BY id`).all();
  const mappings = new Map<string, MappingBrief[]>();
  for (const r of sqlite
    .query<MappingBrief & { volumeId: string }, []>("SELECT volume_id AS volumeId, sdc_id AS sdcId, access_mode AS accessMode, limit_iops AS limitIops, limit_bw_kbps AS limitBwKbps FROM volume_mapping")
    .all()) {
    const list = mappings.get(r.volumeId);
    const m = { sdcId: r.sdcId, accessMode: r.accessMode, limitIops: r.limitIops, limitBwKbps: r.limitBwKbps };
    if (list) list.push(m);
    else mappings.set(r.volumeId, [m]);
  }
  const render = volumeRenderer(mappings, sdcBriefs(ctx));
  const parts: string[] = [];
  for (let i = 0; i < volumes.length; i += slice) {
    if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    let text = i === 0 ? "[" : ",";
    const end = Math.min(volumes.length, i + slice);
    for (let j = i; j < end; j++) text += (j === i ? "" : ",") + JSON.stringify(render(volumes[j]!));
    parts.push(text);
  }
  parts.push(volumes.length === 0 ? "[]" : "]");
  return parts;
}

function volumeRenderer(mappings: Map<string, MappingBrief[]>, sdcs: Map<string, SdcBrief>): (v: VolumeRow) => PfObject {
  return (v) => {
    const m = mappings.get(v.id) ?? [];
    return {
      id: v.id,
      name: v.name,
      sizeInKb: kb(v.sizeBytes),
      volumeType: v.volumeType,
      storagePoolId: v.poolId,
      vtreeId: v.vtreeId,
      ancestorVolumeId: v.ancestorVolumeId,
      dataLayout: "MediumGranularity",
      accessModeLimit: v.accessModeLimit,
      creationTime: v.creationTimeS,
      mappedSdcInfo:
        m.length === 0
          ? null
          : m.map((x) => ({
              sdcId: x.sdcId,
              sdcIp: sdcs.get(x.sdcId)?.host ?? null,
              sdcName: sdcs.get(x.sdcId)?.name ?? null,
              accessMode: x.accessMode,
              limitIops: x.limitIops,
              // PowerFlex reports bandwidth in MB/s (= KB/s / 1024, exact: limits are multiples of 1024)
              limitBwInMbps: x.limitBwKbps / 1024,
              isDirectBufferMapping: false,
            })),
      mappingToAllSdcsEnabled: false,
      useRmcache: false,
      isObfuscated: false,
      isVvol: false,
      compressionMethod: "Invalid",
      consistencyGroupId: v.consistencyGroupId,
      managedBy: "ScaleIO",
      volumeReplicationState: "UnmarkedForReplication",
      replicationJournalVolume: false,
      replicationTimeStamp: 0,
      notGenuineSnapshot: false,
      originalExpiryTime: 0,
      retentionLevels: [],
      secureSnapshotExpTime: 0,
      snplIdOfAutoSnapshot: null,
      snplIdOfSourceVolume: null,
      snapshotPolicyId: null,
      timeStampIsAccurate: false,
      lockedAutoSnapshot: false,
      lockedAutoSnapshotMarkedForRemoval: false,
      autoSnapshotGroupId: null,
      // pf extension
      extentSizeInKb: kb(v.extentBytes),
      links: links("Volume", v.id, [
        ["storagePoolId", "StoragePool", v.poolId],
        ["vtreeId", "VTree", v.vtreeId],
      ]),
    };
  };
}

export function renderVtree(ctx: MdmContext, vt: VTreeRow): PfObject {
  // the base volume is the owner while it exists (snapshots may outlive it)
  const base = ctx.store.db.select({ id: volumeTable.id }).from(volumeTable).where(eq(volumeTable.id, vt.ownerId)).get();
  return {
    id: vt.id,
    name: vt.name,
    baseVolumeId: base?.id ?? null,
    storagePoolId: vt.poolId,
    dataLayout: "MediumGranularity",
    compressionMethod: "Invalid",
    inDeletion: false,
    links: links("VTree", vt.id, [
      ["storagePoolId", "StoragePool", vt.poolId],
      ["baseVolumeId", "Volume", base?.id ?? null],
    ]),
  };
}

// ---- generic access by type ----

export function listObjects(ctx: MdmContext, type: PowerFlexType): PfObject[] {
  const db = ctx.store.db;
  switch (type) {
    case "System":
      return [renderSystem(ctx)];
    case "ProtectionDomain":
      return db.select().from(protectionDomainTable).orderBy(asc(protectionDomainTable.id)).all().map((r) => renderPd(ctx, r));
    case "StoragePool": {
      const status = recoveryStatus(ctx);
      return db.select().from(storagePoolTable).orderBy(asc(storagePoolTable.id)).all().map((r) => renderPool(ctx, r, status.get(r.id)));
    }
    case "FaultSet":
      return db.select().from(faultSetTable).orderBy(asc(faultSetTable.id)).all().map((r) => renderFaultSet(ctx, r));
    case "Sds":
      return db.select().from(sdsTable).orderBy(asc(sdsTable.id)).all().map((r) => renderSds(ctx, r));
    case "Device":
      return db.select().from(deviceTable).orderBy(asc(deviceTable.id)).all().map((r) => renderDevice(ctx, r));
    case "Sdc":
      return db.select().from(sdcTable).orderBy(asc(sdcTable.id)).all().map((r) => renderSdc(ctx, r));
    case "Volume":
      return renderVolumes(ctx, db.select().from(volumeTable).orderBy(asc(volumeTable.id)).all());
    case "VTree":
      return db.select().from(vtreeTable).orderBy(asc(vtreeTable.id)).all().map((vt) => renderVtree(ctx, vt));
    default: {
      const never: never = type;
      throw new PfError("BAD_REQUEST", `unknown type ${String(never)}`);
    }
  }
}

export function getObject(ctx: MdmContext, type: PowerFlexType, id: string): PfObject {
  switch (type) {
    case "System": {
      if (id !== ctx.systemId) throw new PfError("NOT_FOUND", `Could not find the System ${id}`);
      return renderSystem(ctx);
    }
    case "ProtectionDomain":
      return renderPd(ctx, getPd(ctx, id));
    case "StoragePool":
      return renderPool(ctx, getPool(ctx, id));
    case "FaultSet":
      return renderFaultSet(ctx, getFaultSet(ctx, id));
    case "Sds":
      return renderSds(ctx, getSds(ctx, id));
    case "Device":
      return renderDevice(ctx, getDevice(ctx, id));
    case "Sdc":
      return renderSdc(ctx, getSdc(ctx, id));
    case "Volume":
      return renderVolumes(ctx, [getVolume(ctx, id)])[0] as PfObject;
    case "VTree":
      return renderVtree(ctx, getVTree(ctx, id));
    default: {
      const never: never = type;
      throw new PfError("BAD_REQUEST", `unknown type ${String(never)}`);
    }
  }
}

/** GET /api/instances/{Type}::{id}/relationships/{Child} (Statistics is handled by the caller). */
export function relatedObjects(ctx: MdmContext, type: PowerFlexType, id: string, child: string): PfObject[] {
  getObject(ctx, type, id); // NOT_FOUND for an unknown parent
  const db = ctx.store.db;
  const key = `${type}/${child}`;
  switch (key) {
    case "System/ProtectionDomain":
    case "System/Sdc":
    case "System/StoragePool":
    case "System/Sds":
    case "System/Volume":
    case "System/Device":
    case "System/FaultSet":
      return listObjects(ctx, child as PowerFlexType);
    case "System/User":
      return [{ id: `${ctx.systemId.slice(0, 8)}00000000`, name: "admin", userRole: "SuperUser", systemId: ctx.systemId, passwordChangeRequired: false, links: [] }];
    case "ProtectionDomain/StoragePool":
      return db.select().from(storagePoolTable).where(eq(storagePoolTable.pdId, id)).all().map((r) => renderPool(ctx, r));
    case "ProtectionDomain/Sds":
      return db.select().from(sdsTable).where(eq(sdsTable.pdId, id)).all().map((r) => renderSds(ctx, r));
    case "ProtectionDomain/FaultSet":
      return db.select().from(faultSetTable).where(eq(faultSetTable.pdId, id)).all().map((r) => renderFaultSet(ctx, r));
    case "StoragePool/Volume":
      return renderVolumes(ctx, db.select().from(volumeTable).where(eq(volumeTable.poolId, id)).orderBy(asc(volumeTable.id)).all());
    case "StoragePool/VTree":
      return db.select().from(vtreeTable).where(eq(vtreeTable.poolId, id)).all().map((vt) => renderVtree(ctx, vt));
    case "StoragePool/Device":
      return db.select().from(deviceTable).where(eq(deviceTable.poolId, id)).all().map((r) => renderDevice(ctx, r));
    case "StoragePool/SpSds": {
      const sdsIds = [...new Set(db.select({ s: deviceTable.sdsId }).from(deviceTable).where(eq(deviceTable.poolId, id)).all().map((r) => r.s))];
      return sdsIds.map((sdsId) => ({ id: sdsId, sdsId, storagePoolId: id, links: [] }));
    }
    case "StoragePool/Sds": {
      const sdsIds = new Set(db.select({ s: deviceTable.sdsId }).from(deviceTable).where(eq(deviceTable.poolId, id)).all().map((r) => r.s));
      return db.select().from(sdsTable).all().filter((s) => sdsIds.has(s.id)).map((r) => renderSds(ctx, r));
    }
    case "FaultSet/Sds":
      return db.select().from(sdsTable).where(eq(sdsTable.faultSetId, id)).all().map((r) => renderSds(ctx, r));
    case "Sds/Device":
      return db.select().from(deviceTable).where(eq(deviceTable.sdsId, id)).all().map((r) => renderDevice(ctx, r));
    case "Sdc/Volume": {
      const ids = db.select({ v: volumeMappingTable.volumeId }).from(volumeMappingTable).where(eq(volumeMappingTable.sdcId, id)).all().map((r) => r.v);
      return renderVolumes(ctx, ids.map((v) => getVolume(ctx, v)));
    }
    case "Volume/Sdc": {
      const ids = db.select({ s: volumeMappingTable.sdcId }).from(volumeMappingTable).where(eq(volumeMappingTable.volumeId, id)).all().map((r) => r.s);
      return ids.map((s) => renderSdc(ctx, getSdc(ctx, s)));
    }
    case "VTree/Volume":
      return renderVolumes(ctx, db.select().from(volumeTable).where(eq(volumeTable.vtreeId, id)).all());
    default:
      throw new PfError("BAD_REQUEST", `${type} has no relationship ${child}`);
  }
}

/** queryIdByKey: id of the object of this type with this name. */
export function idByName(ctx: MdmContext, type: PowerFlexType, name: string): string {
  const db = ctx.store.db;
  let id: string | undefined;
  switch (type) {
    case "Volume":
      id = db.select({ id: volumeTable.id }).from(volumeTable).where(eq(volumeTable.name, name)).get()?.id;
      break;
    case "ProtectionDomain":
      id = db.select({ id: protectionDomainTable.id }).from(protectionDomainTable).where(eq(protectionDomainTable.name, name)).get()?.id;
      break;
    case "StoragePool": {
      const rows = db.select({ id: storagePoolTable.id }).from(storagePoolTable).where(eq(storagePoolTable.name, name)).all();
      if (rows.length > 1) throw new PfError("BAD_REQUEST", `${rows.length} storage pools are named ${name}; query by id`);
      id = rows[0]?.id;
      break;
    }
    case "FaultSet": {
      const rows = db.select({ id: faultSetTable.id }).from(faultSetTable).where(eq(faultSetTable.name, name)).all();
      if (rows.length > 1) throw new PfError("BAD_REQUEST", `${rows.length} fault sets are named ${name}; query by id`);
      id = rows[0]?.id;
      break;
    }
    case "Sds":
      id = db.select({ id: sdsTable.id }).from(sdsTable).where(eq(sdsTable.name, name)).get()?.id;
      break;
    case "Sdc":
      id = db.select({ id: sdcTable.id }).from(sdcTable).where(eq(sdcTable.name, name)).get()?.id;
      break;
    case "Device": {
      const rows = db.select({ id: deviceTable.id }).from(deviceTable).where(eq(deviceTable.name, name)).all();
      if (rows.length > 1) throw new PfError("BAD_REQUEST", `${rows.length} devices are named ${name}; query by id`);
      id = rows[0]?.id;
      break;
    }
    case "System": {
      const sys = getSystem(ctx);
      id = sys.name === name ? sys.id : undefined;
      break;
    }
    case "VTree":
      id = db.select({ id: vtreeTable.id }).from(vtreeTable).where(eq(vtreeTable.name, name)).get()?.id ?? db.select({ id: volumeTable.vtreeId }).from(volumeTable).where(eq(volumeTable.name, name)).get()?.id;
      break;
    default: {
      const never: never = type;
      throw new PfError("BAD_REQUEST", `unknown type ${String(never)}`);
    }
  }
  if (id === undefined) throw new PfError("NOT_FOUND", `Could not find a ${type} named ${name}`);
  return id;
}
