// zod schemas of the MDM's public REST API in the PowerFlex gateway shape (API "3.6"): request
// bodies of creates and actions. One source of types for the MDM and for scli.
// PowerFlex clients send numbers and booleans as strings ("8", "True", "TRUE"): the loose*
// helpers accept both forms; unknown fields are dropped (zod objects strip them), so
// PyPowerFlex's extra "volumeClass" and friends pass. Omitted and null mean "not given".

import { z } from "zod";
import { IoPriorityPolicy } from "./cluster_api.ts";
import { Limits } from "./limits.ts";

export const POWERFLEX_API_VERSION = "3.6";
export const POWERFLEX_VERSION_INFO = "R3_6.0.0";
export const POWERFLEX_SYSTEM_VERSION_NAME = "DellEMC PowerFlex Version: R3_6.0.0";

export const PowerFlexTypes = ["System", "ProtectionDomain", "StoragePool", "FaultSet", "Sds", "Device", "Sdc", "Volume", "VTree"] as const;
export type PowerFlexType = (typeof PowerFlexTypes)[number];

export const id16 = z.string().regex(/^[0-9a-f]{16}$/, "expected a 16-hex-digit id");
export const objectName = z
  .string()
  .min(1, "name must not be empty")
  .max(31, "name is longer than 31 characters")
  .regex(/^[A-Za-z0-9_.:\-]+$/, "names use letters, digits, _ . : -");

/** An integer sent as a JSON number or a decimal string ("8"). */
export const looseInt = z.preprocess((v) => {
  if (typeof v === "string" && /^\s*-?\d+\s*$/.test(v)) return Number(v.trim());
  return v;
}, z.number().int().refine(Number.isSafeInteger, "number too large"));

/** A boolean sent as JSON true/false or a string "true"/"TRUE"/"True"/"false"…. */
export const looseBool = z.preprocess((v) => {
  if (typeof v === "string") {
    const s = v.trim().toLowerCase();
    if (s === "true") return true;
    if (s === "false") return false;
  }
  return v;
}, z.boolean());

/** null and undefined both mean "not given". */
function opt<T extends z.ZodType>(t: T) {
  return t.nullish().transform((v) => (v === null ? undefined : v));
}

export const MediaType = z.enum(["HDD", "SSD", "NVDIMM", "Transitional"]);
export const VolumeType = z.enum(["ThinProvisioned", "ThickProvisioned"]);
export type VolumeType = z.infer<typeof VolumeType>;
export const AccessMode = z.enum(["ReadWrite", "ReadOnly"]);
export type AccessMode = z.infer<typeof AccessMode>;

// ---- login ----

/** POST /api/login may carry the credentials as JSON too (GET uses Basic auth only). */
export const LoginBody = z.object({ username: opt(z.string().max(256)), password: opt(z.string().max(1024)) });

// ---- creates ----

export const CreateProtectionDomain = z.object({ name: objectName });
export type CreateProtectionDomain = z.infer<typeof CreateProtectionDomain>;

/** A pool's write cache mode (pf extension; cluster YAML key writeCache on the pool). */
export const WriteCache = z.enum(["writeBack", "writeThrough"], { message: "writeCache is writeBack or writeThrough" });
export type WriteCache = z.infer<typeof WriteCache>;

export const CreateStoragePool = z.object({
  protectionDomainId: id16,
  name: objectName,
  mediaType: opt(MediaType),
  dataLayout: opt(z.enum(["MediumGranularity"], { message: "only dataLayout MediumGranularity is supported" })),
  sparePercentage: opt(looseInt.pipe(z.number().min(0).max(99))),
  zeroPaddingEnabled: opt(looseBool),
  rebuildEnabled: opt(looseBool),
  rebalanceEnabled: opt(looseBool),
  /** pf extension: extent size (default Limits.defaultExtentBytes) */
  extentSizeInKb: opt(looseInt.pipe(z.number().positive())),
  /** pf extension: volume size granularity (default Limits.defaultAllocationGranularityBytes) */
  allocationGranularityInKb: opt(looseInt.pipe(z.number().positive())),
  /** pf extension: default volume type when a create omits volumeType */
  defaultVolumeType: opt(VolumeType),
  /** pf extension: rebuild rate limit per device */
  rebuildRateLimitInKbps: opt(looseInt.pipe(z.number().int().min(0).max(Limits.maxCopyBwKbps, `rebuildRateLimitInKbps is 0 (none) to ${Limits.maxCopyBwKbps}`))),
  /** pf extension: writeBack (default) or writeThrough (every write durable on both copies at its ack) */
  writeCache: opt(WriteCache),
});
export type CreateStoragePool = z.infer<typeof CreateStoragePool>;

export const CreateFaultSet = z.object({ protectionDomainId: id16, name: objectName });
export type CreateFaultSet = z.infer<typeof CreateFaultSet>;

const ipRole = z.enum(["all", "sdsOnly", "sdcOnly"]);
const bareIp = z.object({ ip: z.string().min(1).max(253), role: opt(ipRole) });
/** Real arrays wrap each IP as {"SdsIp":{ip,role}}; PyPowerFlex's helper sends the bare form. */
export const SdsIpEntry = z.union([z.object({ SdsIp: bareIp }).transform((x) => x.SdsIp), bareIp]).transform((x) => ({
  ip: x.ip,
  role: x.role ?? "all",
}));
export type SdsIpEntry = z.infer<typeof SdsIpEntry>;

export const DeviceInfo = z.object({
  devicePath: z.string().min(1).max(4096),
  storagePoolId: id16,
  deviceName: opt(objectName),
  mediaType: opt(MediaType),
  /** pf extension: capacity when the SDS process has not reported yet */
  capacityInKb: opt(looseInt.pipe(z.number().min(0))),
});

export const CreateSds = z.object({
  protectionDomainId: id16,
  name: opt(objectName),
  sdsIpList: z.array(SdsIpEntry).min(1, "sdsIpList needs at least one IP").max(8),
  deviceInfoList: opt(z.array(DeviceInfo).max(64)),
  sdsPort: opt(looseInt.pipe(z.number().min(1).max(65535))),
  faultSetId: opt(id16),
  forceClean: opt(looseBool),
});
export type CreateSds = z.infer<typeof CreateSds>;

export const CreateDevice = z.object({
  sdsId: id16,
  storagePoolId: id16,
  deviceCurrentPathname: opt(z.string().min(1).max(4096)),
  devicePath: opt(z.string().min(1).max(4096)),
  name: opt(objectName),
  mediaType: opt(MediaType),
  capacityInKb: opt(looseInt.pipe(z.number().min(0))),
});
export type CreateDevice = z.infer<typeof CreateDevice>;

export const CreateVolume = z.object({
  storagePoolId: opt(id16),
  protectionDomainId: opt(id16),
  name: opt(objectName),
  volumeSizeInKb: opt(looseInt),
  volumeSizeInGb: opt(looseInt),
  volumeType: opt(VolumeType),
});
export type CreateVolume = z.infer<typeof CreateVolume>;

// ---- instance actions ----

export const RemoveMode = z.enum(["ONLY_ME", "INCLUDING_DESCENDANTS", "DESCENDANTS_ONLY", "WHOLE_VTREE"]);
export type RemoveMode = z.infer<typeof RemoveMode>;
export const RemoveVolume = z.object({ removeMode: opt(RemoveMode), allowOnExtManagedVol: opt(looseBool) });

// ---- snapshots (snapshots-qos.md §1.2) ----

/** One volume to snapshot; every snapshotVolumes call is one consistency group. */
export const SnapshotDef = z.object({ volumeId: id16, snapshotName: opt(objectName) });
export const SnapshotVolumes = z.object({
  snapshotDefs: z.array(SnapshotDef).min(1, "snapshotDefs needs at least one volume").max(1024, "at most 1024 snapshotDefs per call"),
  accessModeLimit: opt(AccessMode),
  /** accepted (PyPowerFlex, Ansible send it); pf keeps snapshots until removed */
  retentionPeriodInMin: opt(looseInt.pipe(z.number().min(0, "retentionPeriodInMin must not be negative"))),
  allowOnExtManagedVol: opt(looseBool),
});
export type SnapshotVolumes = z.infer<typeof SnapshotVolumes>;
export const SnapshotVolumesAnswer = z.object({ snapshotGroupId: id16, volumeIdList: z.array(id16) });
export const RemoveConsistencyGroupSnapshots = z.object({ snapGroupId: id16, allowOnExtManagedVol: opt(looseBool) });
export const RemoveConsistencyGroupSnapshotsAnswer = z.object({ numberOfVolumes: z.number().int() });
/** overwriteVolumeContent (3.x) and restore (5.x): the destination is the Volume of the URL */
export const OverwriteVolumeContent = z.object({ srcVolumeId: id16, allowOnExtManagedVol: opt(looseBool) });
export const SetVolumeAccessModeLimit = z.object({ accessModeLimit: AccessMode });

/**
 * Per-mapping QoS. An absent limit is unchanged (os-brick sends only what is set); 0 is
 * unlimited; IOPS is 0 or more than 10; bandwidth is 0 or a multiple of 1024 KB/s.
 */
export const SetMappedSdcLimits = z
  .object({
    sdcId: opt(id16),
    guid: opt(z.string().min(1).max(64)),
    iopsLimit: opt(looseInt.pipe(z.number().min(0, "iopsLimit must not be negative").max(2_147_483_647))),
    bandwidthLimitInKbps: opt(looseInt.pipe(z.number().min(0, "bandwidthLimitInKbps must not be negative").max(2_147_483_647))),
  })
  .superRefine((x, ctx) => {
    if (x.iopsLimit !== undefined && x.iopsLimit !== 0 && x.iopsLimit <= 10) {
      ctx.addIssue({ code: "custom", path: ["iopsLimit"], message: "iopsLimit must be 0 (unlimited) or greater than 10" });
    }
    if (x.bandwidthLimitInKbps !== undefined && x.bandwidthLimitInKbps % 1024 !== 0) {
      ctx.addIssue({ code: "custom", path: ["bandwidthLimitInKbps"], message: "bandwidthLimitInKbps must be 0 (unlimited) or a multiple of 1024" });
    }
  });
export type SetMappedSdcLimits = z.infer<typeof SetMappedSdcLimits>;
export const SetVolumeSize = z.object({ sizeInGB: looseInt });
export const SetVolumeName = z.object({ newName: objectName });
export const AddMappedSdc = z.object({
  sdcId: opt(id16),
  guid: opt(z.string().min(1).max(64)),
  accessMode: opt(AccessMode),
  allowMultipleMappings: opt(looseBool),
});
export const RemoveMappedSdc = z.object({ sdcId: opt(id16), guid: opt(z.string().min(1).max(64)), allSdcs: opt(z.unknown()) });
export const SetVolumeMappingAccessMode = z.object({ sdcId: opt(id16), guid: opt(z.string().min(1).max(64)), accessMode: AccessMode });
export const RemoveSds = z.object({ force: opt(looseBool) });
export const SetSdsName = z.object({ name: objectName });
export const SetSdcName = z.object({ sdcName: objectName });
export const SetName = z.object({ name: objectName });
/** setProtectionDomainName / setStoragePoolName / setFaultSetName accept both spellings. */
export const RenameObject = z
  .object({ name: opt(objectName), newName: opt(objectName) })
  .refine((x) => x.name !== undefined || x.newName !== undefined, "name is required")
  .transform((x) => ({ name: (x.name ?? x.newName) as string }));
/** POST /api/instances/StoragePool::{id}/action/setWriteCache (pf extension) */
export const SetWriteCache = z.object({ writeCache: WriteCache });
export const SetSparePercentage = z.object({ sparePercentage: looseInt.pipe(z.number().min(0).max(99)) });
/** setRebuildIoPriorityPolicy / setRebalanceIoPriorityPolicy: what is given changes (mdm/topology/io_priority.ts) */
export const SetIoPriorityPolicy = z.object({
  policy: opt(IoPriorityPolicy),
  numOfConcurrentIosPerDevice: opt(looseInt.pipe(z.number().int().min(1, "numOfConcurrentIosPerDevice is 1 to 20").max(Limits.maxCopyIosPerDevice, "numOfConcurrentIosPerDevice is 1 to 20"))),
  bwLimitPerDeviceInKbps: opt(looseInt.pipe(z.number().int().min(0, "bwLimitPerDeviceInKbps is 0 (none) or more").max(Limits.maxCopyBwKbps, `bwLimitPerDeviceInKbps is at most ${Limits.maxCopyBwKbps} (0: none)`))),
});
export const SetRebuildIoPriorityPolicy = SetIoPriorityPolicy;
export const SetRebalanceIoPriorityPolicy = SetIoPriorityPolicy;
export const SetEnabled = z.object({ rebuildEnabled: opt(looseBool), rebalanceEnabled: opt(looseBool) });
export const SetDeviceName = z.object({ newName: opt(objectName), name: opt(objectName) });
export const Empty = z.object({});

/** changeMdmOwnership: PowerFlex sends {id}; pf also takes the MDM's name or IP */
export const ChangeMdmOwnership = z
  .object({ id: z.string().min(1).optional(), name: z.string().min(1).optional(), ip: z.string().min(1).optional() })
  .refine((b) => [b.id, b.name, b.ip].filter((x) => x !== undefined).length === 1, { message: "give exactly one of id, name, ip (the MDM to hand ownership to)" });
/** addStandbyMdm (python-powerflex system.add_standby_mdm): register an MDM the cluster expects */
export const AddStandbyMdm = z.object({
  ips: z.array(z.string().min(1).max(253)).min(1, "give the new MDM's IP address (ips)").max(8),
  role: z.enum(["Manager", "TieBreaker"]).default("Manager"),
  managementIps: z.array(z.string().min(1).max(253)).max(8).optional(),
  name: objectName.optional(),
  port: looseInt.pipe(z.number().int().min(1).max(65535)).optional(),
  allowAsymmetricIps: looseBool.optional(),
  forceClean: looseBool.optional(),
});
export type AddStandbyMdm = z.infer<typeof AddStandbyMdm>;
/** removeStandbyMdm {id}: the registered (or running standby) MDM's id */
export const RemoveStandbyMdm = z.object({ id: z.string().min(1).max(64) });
/** System actions of restricted SDC mode (goscaleio SetRestrictedMode, ApproveSdcParam) */
export const SetRestrictedSdcMode = z.object({ restrictedSdcMode: z.enum(["None", "Guid", "ApprovedIp"]) });
export const ApproveSdc = z.object({
  sdcGuid: opt(z.string().min(1).max(64)),
  sdcIp: opt(z.string().min(1).max(253)),
  sdcIps: opt(z.array(z.string().min(1).max(253)).max(16)),
  name: opt(objectName),
});
/** any JSON object; the action's own schema narrows it */
export const AnyObject = z.record(z.string(), z.unknown());

// ---- type actions ----

export const QueryIdByKey = z.object({ name: objectName });
export const QuerySelectedStatistics = z.object({
  ids: opt(z.array(id16).max(100_000)),
  allIds: opt(z.unknown()),
  properties: z.array(z.string().min(1).max(128)).min(1).max(1000),
});
export type QuerySelectedStatistics = z.infer<typeof QuerySelectedStatistics>;

/** POST /api/instances/querySelectedStatistics (netdata, vxflexos-exporter): many types in one
 *  call. `type` is any string: a type pf does not have answers {} instead of failing the batch. */
export const BatchedQuerySelectedStatistics = z.object({
  selectedStatisticsList: z
    .array(
      z.object({
        type: z.string().min(1).max(64),
        ids: opt(z.array(id16).max(100_000)),
        allIds: opt(z.unknown()),
        properties: z.array(z.string().min(1).max(128)).min(1).max(1000),
      }),
    )
    .min(1)
    .max(64),
});
export type BatchedQuerySelectedStatistics = z.infer<typeof BatchedQuerySelectedStatistics>;

/** POST /api/instances/StoragePool::{id}/action/setCapacityAlertThresholds; values are strings on PowerFlex. */
export const SetCapacityAlertThresholds = z
  .object({
    capacityAlertHighThresholdPercent: opt(looseInt),
    capacityAlertCriticalThresholdPercent: opt(looseInt),
  })
  .refine((x) => x.capacityAlertHighThresholdPercent !== undefined || x.capacityAlertCriticalThresholdPercent !== undefined, "capacityAlertHighThresholdPercent or capacityAlertCriticalThresholdPercent is required");

// ---- pf extensions for the dashboard (query strings) ----

/** GET /api/pf/history?seconds=N */
export const HistoryQuery = z.object({ seconds: opt(looseInt.pipe(z.number().min(1, "seconds must be 1..600").max(600, "seconds must be 1..600"))) });
/** GET /api/pf/alerts?all=true, GET /api/types/Alert/instances?all=true */
export const AlertsQuery = z.object({ all: opt(looseBool) });

export const AlertSeverity = z.enum(["ALERT_LOW", "ALERT_MEDIUM", "ALERT_HIGH", "ALERT_CRITICAL"]);
/** An Alert as the MDM answers it (PowerFlex fields, plus pf's state and clearedTime). */
export const AlertObject = z.object({
  id: z.string(),
  name: z.string(),
  uuid: z.string(),
  alertType: z.string(),
  severity: AlertSeverity,
  affectedObject: z.object({ type: z.string(), id: z.string(), objectId: z.string() }),
  alertValues: z.record(z.string(), z.string()),
  startTime: z.string(),
  lastObserved: z.string(),
  state: z.enum(["active", "cleared"]),
  clearedTime: z.string().nullable(),
});
export type AlertObject = z.infer<typeof AlertObject>;

// ---- answers (for clients such as scli) ----

export const CreatedId = z.object({ id: id16 });
export const PowerFlexErrorBody = z.object({
  message: z.string(),
  httpStatusCode: z.number().int(),
  errorCode: z.number().int(),
  pfCode: z.string().optional(),
  /** PowerFlex return codes (Cinder reads details[0].rc) */
  details: z.array(z.object({ rc: z.number().int(), msg: z.string() })).optional(),
});
export type PowerFlexErrorBody = z.infer<typeof PowerFlexErrorBody>;

export interface Link {
  rel: string;
  href: string;
}

/** pf extension: answer of POST /api/instances/Volume::{id}/action/checkVolumeConsistency */
export const ConsistencyReport = z.object({
  volumeId: z.string(),
  extentsChecked: z.number().int(),
  /** layers of the volume's V-Tree compared on their own (0 without snapshots) */
  layersChecked: z.number().int().default(0),
  consistent: z.boolean(),
  mismatches: z.array(
    z.object({
      extentIndex: z.number().int(),
      /** the layer that differs (absent: the volume's content) */
      layerId: z.string().optional(),
      copies: z.array(
        z.object({ sdsId: z.string(), checksum: z.string().nullable(), error: z.string().nullable(), status: z.number().int().nullable() }),
      ),
    }),
  ),
});
export type ConsistencyReport = z.infer<typeof ConsistencyReport>;

/** pf extension: answer of POST /api/instances/StoragePool::{id}/action/queryRebuild (and the
 *  same figures in the pool's Statistics). Sizes in KiB, rate in KiB/s, ETA null when unknown. */
export const RebuildStatus = z.object({
  storagePoolId: z.string(),
  /** Failed: an extent has no reachable in-sync copy; Degraded: an extent has fewer than 2 */
  storagePoolState: z.enum(["Normal", "Degraded", "Failed"]),
  /** what recovery work the pool is doing (the highest priority one when several) */
  rebuildState: z.enum(["Idle", "WaitingForReturn", "Rebuilding", "Draining", "Rebalancing"]),
  rebuildStalled: z.boolean(),
  numOfDegradedExtents: z.number().int(),
  degradedCapacityInKb: z.number().int(),
  numOfUnavailableExtents: z.number().int(),
  unavailableCapacityInKb: z.number().int(),
  /** degraded extents waiting for their away SDS to return within the grace period */
  numOfWaitingExtents: z.number().int(),
  numOfPendingRebuildExtents: z.number().int(),
  pendingRebuildCapacityInKb: z.number().int(),
  numOfActiveRebuildExtents: z.number().int(),
  numOfActiveResyncExtents: z.number().int(),
  activeRebuildCapacityInKb: z.number().int(),
  numOfActiveMoveExtents: z.number().int(),
  activeRebalanceCapacityInKb: z.number().int(),
  /** copies still to move off SDSs being removed (not yet started) */
  pendingRebalanceCapacityInKb: z.number().int(),
  copiedInKb: z.number().int(),
  remainingInKb: z.number().int(),
  rebuildProgressPercent: z.number(),
  rebuildRateInKbps: z.number().int(),
  rebuildEtaSeconds: z.number().int().nullable(),
  noProgressSeconds: z.number().int(),
});
export type RebuildStatus = z.infer<typeof RebuildStatus>;
