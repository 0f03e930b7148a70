// zod schemas of the REST objects scli reads (PowerFlex gateway shapes, powerflex-reference.md
// §2), holding only the fields scli prints or follows. Objects are loose: unknown fields pass
// through untouched so --json shows the MDM's whole object. Fields real gateways may omit or
// null are optional/nullable here, so a leaner MDM still parses.

import { z } from "zod";
import { id16 } from "../../proto/powerflex_api.ts";

/** ids end up in request paths: only 16-hex ids are accepted from the MDM */
const id = id16;
const maybeString = z.string().nullish();

export const ProtectionDomainObj = z.looseObject({
  id,
  name: z.string(),
  protectionDomainState: maybeString,
  systemId: maybeString,
});
export type ProtectionDomainObj = z.infer<typeof ProtectionDomainObj>;

export const StoragePoolObj = z.looseObject({
  id,
  name: z.string(),
  protectionDomainId: id,
  mediaType: maybeString,
  dataLayout: maybeString,
  sparePercentage: z.number().nullish(),
  zeroPaddingEnabled: z.boolean().nullish(),
  rebuildEnabled: z.boolean().nullish(),
  rebalanceEnabled: z.boolean().nullish(),
  capacityAlertHighThreshold: z.number().nullish(),
  capacityAlertCriticalThreshold: z.number().nullish(),
  /** pf extensions */
  writeCache: maybeString,
  storagePoolState: maybeString,
  rebuildState: maybeString,
  rebuildStalled: z.boolean().nullish(),
});
export type StoragePoolObj = z.infer<typeof StoragePoolObj>;

export const FaultSetObj = z.looseObject({ id, name: z.string(), protectionDomainId: id });
export type FaultSetObj = z.infer<typeof FaultSetObj>;

export const MappedSdcInfo = z.looseObject({
  sdcId: id,
  sdcIp: maybeString,
  sdcName: maybeString,
  accessMode: maybeString,
  limitIops: z.number().nullish(),
  limitBwInMbps: z.number().nullish(),
});

export const VolumeObj = z.looseObject({
  id,
  name: z.string().nullable(),
  sizeInKb: z.number().int().nonnegative(),
  storagePoolId: id,
  volumeType: z.string(),
  vtreeId: maybeString,
  ancestorVolumeId: maybeString,
  consistencyGroupId: maybeString,
  accessModeLimit: maybeString,
  creationTime: z.number().nullish(),
  mappedSdcInfo: z.array(MappedSdcInfo).nullish(),
});
export type VolumeObj = z.infer<typeof VolumeObj>;

export const SdsObj = z.looseObject({
  id,
  name: z.string().nullable(),
  protectionDomainId: id,
  faultSetId: maybeString,
  ipList: z.array(z.looseObject({ ip: z.string(), role: maybeString })).nullish(),
  port: z.number().nullish(),
  sdsState: maybeString,
  membershipState: maybeString,
  mdmConnectionState: maybeString,
  softwareVersionInfo: maybeString,
  /** pf extension: extent copies the SDS holds (in-sync, being built, kept away) */
  numOfExtentCopies: z.number().nullish(),
});
export type SdsObj = z.infer<typeof SdsObj>;

export const DeviceObj = z.looseObject({
  id,
  name: maybeString,
  sdsId: id,
  storagePoolId: id,
  deviceCurrentPathName: maybeString,
  deviceOriginalPathName: maybeString,
  capacityLimitInKb: z.number().nullish(),
  maxCapacityInKb: z.number().nullish(),
  deviceState: maybeString,
  errorState: maybeString,
  /** pf: why a Failed device failed (its SDS's words) */
  errorMessage: maybeString,
  mediaType: maybeString,
});
export type DeviceObj = z.infer<typeof DeviceObj>;

export const SdcObj = z.looseObject({
  id,
  name: maybeString,
  sdcIp: maybeString,
  sdcIps: z.array(z.string()).nullish(),
  sdcGuid: maybeString,
  sdcApproved: z.boolean().nullish(),
  mdmConnectionState: maybeString,
  softwareVersionInfo: maybeString,
});
export type SdcObj = z.infer<typeof SdcObj>;

export const SystemObj = z.looseObject({
  id,
  name: maybeString,
  systemVersionName: maybeString,
  mdmMode: maybeString,
  mdmClusterState: maybeString,
});
export type SystemObj = z.infer<typeof SystemObj>;

const MdmNode = z.looseObject({
  id: maybeString,
  name: maybeString,
  ips: z.array(z.string()).nullish(),
  managementIPs: z.array(z.string()).nullish(),
  port: z.number().nullish(),
  versionInfo: maybeString,
  status: maybeString,
  role: maybeString,
});
export type MdmNode = z.infer<typeof MdmNode>;

export const MdmClusterObj = z.looseObject({
  clusterMode: maybeString,
  clusterState: maybeString,
  goodNodesNum: z.number().nullish(),
  goodReplicasNum: z.number().nullish(),
  virtualIps: z.array(z.string()).nullish(),
  master: MdmNode.nullish(),
  slaves: z.array(MdmNode).nullish(),
  tieBreakers: z.array(MdmNode).nullish(),
  standbyMDMs: z.array(MdmNode).nullish(),
  /** pf extension: the MDM fencing term */
  term: z.number().nullish(),
});
export type MdmClusterObj = z.infer<typeof MdmClusterObj>;

export const VTreeObj = z.looseObject({ id, name: maybeString, baseVolumeId: maybeString, storagePoolId: id });
export type VTreeObj = z.infer<typeof VTreeObj>;

/** A V-Tree's Statistics (counts, net capacity in KiB). */
export const VTreeStatisticsObj = z.looseObject({
  numOfVolumes: z.number().nullish(),
  numOfSnapshots: z.number().nullish(),
  baseNetCapacityInUseInKb: z.number().nullish(),
  snapNetCapacityInUseInKb: z.number().nullish(),
  netCapacityInUseInKb: z.number().nullish(),
});
/** changeMdmOwnership's answer (pf): who leads now, in which term */
export const OwnershipChange = z.looseObject({
  master: z.looseObject({ id: z.string(), name: z.string(), url: z.string() }),
  previousMaster: z.looseObject({ id: z.string(), name: z.string() }),
  previousTerm: z.number(),
  term: z.number(),
});
export type OwnershipChange = z.infer<typeof OwnershipChange>;

/** Capacity figures of a pool's Statistics relationship (KiB); all optional. */
export const PoolStatisticsObj = z.looseObject({
  maxCapacityInKb: z.number().nullish(),
  capacityInUseInKb: z.number().nullish(),
  spareCapacityInKb: z.number().nullish(),
  capacityAvailableForVolumeAllocationInKb: z.number().nullish(),
  numOfVolumes: z.number().nullish(),
  numOfSnapshots: z.number().nullish(),
  snapCapacityInUseInKb: z.number().nullish(),
  // recovery (pf extensions, as in queryRebuild)
  storagePoolState: maybeString,
  rebuildState: maybeString,
  rebuildStalled: z.boolean().nullish(),
  degradedCapacityInKb: z.number().nullish(),
  pendingRebuildCapacityInKb: z.number().nullish(),
  rebuildProgressPercent: z.number().nullish(),
  rebuildEtaSeconds: z.number().nullish(),
});
export type PoolStatisticsObj = z.infer<typeof PoolStatisticsObj>;

/** Schemas by REST type name, for list/get. */
export const OBJECT_SCHEMAS = {
  System: SystemObj,
  ProtectionDomain: ProtectionDomainObj,
  StoragePool: StoragePoolObj,
  FaultSet: FaultSetObj,
  Sds: SdsObj,
  Device: DeviceObj,
  Sdc: SdcObj,
  Volume: VolumeObj,
  VTree: VTreeObj,
} as const;
export type ObjectType = keyof typeof OBJECT_SCHEMAS;
export type ObjectOf<T extends ObjectType> = z.infer<(typeof OBJECT_SCHEMAS)[T]>;
