// The MDM's internal cluster API, used by SDS and SDC processes (not by operators).
// Every request carries the cluster secret in the `x-pf-cluster-secret` header, over the same
// TLS port as the public REST API; every request about one node (heartbeat, assignments, maps)
// also carries that node's token from its join answer (`x-pf-node-token`), so one node cannot
// fetch another's keys or grants. Paths live under CLUSTER_API_PREFIX. These zod schemas are the
// single source of the request/response types on both sides.
//
// Invariants kept by the MDM and relied on by the data plane:
// - `replicas` of an extent never names one SDS twice; replicas[0] is the primary.
// - `mapVersion` grows whenever any volume map, mapping or SDS address changes; a heartbeat reply
//   tells a node the current one only when a change since the version it applies concerns it
//   (else its own version back), so a client that sees its own mapVersion keeps its cached maps.
// - `epoch` of an extent only grows.
// - `term` (fencing, mdm/ha/meta_store.ts) is in every MDM answer and only grows across MDM
//   restarts and takeovers; SDSs and SDCs refuse an answer of a lower term than they have seen
//   (src/proto/mdm_term.ts) and send their highest one in the x-pf-mdm-term header.
// - an assignment answer with `since` is a delta: merged into the answer the SDS holds for
//   mapVersion `since` (assignments_delta.ts mergeAssignments) it gives exactly the full answer
//   of its own mapVersion (test/mdm_assignments_delta.test.ts); `copyLog` ids change at every
//   MDM start and HA takeover, so a delta is only ever asked of the log that saw the changes.
// - `sds` (every SDS address) is omitted from an assignment or map answer only when the node
//   asked with `?addresses=<sdsTag>` and that tag is the list's current one; the node then keeps
//   the list it has. A node that sends no tag (older ones) always gets the list.

import { z } from "zod";
import { SdcIoReport, SdsIoReport } from "./io_report.ts";
import { Limits } from "./limits.ts";
import { NbdRevokedCert } from "./nbd_certs.ts";

export const CLUSTER_API_PREFIX = "/pf/v1";
export const CLUSTER_SECRET_HEADER = "x-pf-cluster-secret";
export const NODE_TOKEN_HEADER = "x-pf-node-token";

const id16 = z.string().regex(/^[0-9a-f]{16}$/, "expected a 16-hex-digit id");
const name = z.string().min(1).max(31).regex(/^[A-Za-z0-9_.:\-]+$/, "names use letters, digits, _ . : -");
const hostName = z.string().min(1).max(253);
const port = z.number().int().min(1).max(65535);
const bytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 hex digits");

/** A data-plane key of one key id (src/proto/dataplane_keys.ts), hex. */
export const KeyEntry = z.object({ kid: z.number().int().positive().max(0xffff_ffff), key: hex64 });
export type KeyEntry = z.infer<typeof KeyEntry>;
/** current and previous key id */
const keyList = z.array(KeyEntry).min(1).max(2);

/** the answering MDM's fencing term (0 from an MDM that predates terms) */
const term = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(0);

/** A node's data-plane TLS public key (SPKI PEM, made in its data dir): the MDM certifies it. */
const tlsPublicKey = z.string().min(1).max(4096).includes("BEGIN PUBLIC KEY").optional();

/**
 * Whether the MDM runs the data plane in TLS and, if so, the cluster's data-plane CA and this
 * node's certificate for the key it sent (src/proto/dataplane_tls.ts). Absent (an older MDM): off.
 */
export const DataPlaneTlsAnswer = z
  .object({
    required: z.boolean(),
    caPem: z.string().includes("BEGIN CERTIFICATE").optional(),
    certPem: z.string().includes("BEGIN CERTIFICATE").optional(),
  })
  .refine((t) => !t.required || (t.caPem !== undefined && t.certPem !== undefined), "TLS required but no CA or certificate given")
  .default({ required: false });
export type DataPlaneTlsAnswer = z.infer<typeof DataPlaneTlsAnswer>;

// ---- SDS ----

export const SdsJoinRequest = z.object({
  name,
  host: hostName, // address where SDCs and peer SDSs reach this SDS's data plane
  dataPort: port,
  protectionDomainName: name,
  storagePoolName: name,
  faultSetName: name.optional(),
  /** the host rebooted since this SDS last ran: writes acknowledged but not flushed before the
   *  reboot may be missing from its copies, so none of them may be resynced or stay in sync */
  hostRebooted: z.boolean().default(false),
  tlsPublicKey,
  devices: z
    .array(
      z.object({
        path: z.string().min(1).max(4096),
        capacityBytes: bytes,
        name: name.optional(),
        /** added through the MDM while the SDS ran (src/sds/live_devices.ts), not configured: a path the MDM no longer knows is not registered again */
        added: z.boolean().optional(),
      }),
    )
    .min(1)
    .max(Limits.maxDevicesPerSds),
});
export type SdsJoinRequest = z.infer<typeof SdsJoinRequest>;

export const SdsJoinResponse = z.object({
  term,
  sdsId: id16,
  systemId: id16,
  /** this SDS's token for the cluster API (header x-pf-node-token) */
  nodeToken: hex64,
  leaseMs: z.number().int().positive(),
  heartbeatMs: z.number().int().positive(),
  devices: z.array(z.object({ deviceId: id16, path: z.string() })),
  dataPlaneTls: DataPlaneTlsAnswer,
});
/** term is stamped by the MDM's HTTP edge (cluster_routes.ts), not by the services */
export type SdsJoinResponse = Omit<z.infer<typeof SdsJoinResponse>, "term">;

export const DeviceReport = z.object({
  deviceId: id16,
  state: z.enum(["Normal", "Failed"]),
  usedBytes: bytes,
  /** the device's size as the SDS opened it (a device added while the SDS runs gets its capacity from this) */
  capacityBytes: bytes.optional(),
  /** why it is Failed, in the SDS's words (it would not open, an IO or fdatasync error): shown to the operator (REST errorMessage, scli) */
  // cut, not refused: a longer one (a later SDS build) must not fail the whole beat
  error: z
    .string()
    .transform((s) => s.slice(0, Limits.deviceErrorChars))
    .optional(),
});
export type DeviceReport = z.infer<typeof DeviceReport>;

/** Progress of a copy this SDS drives as primary; `done` once every byte reached the target. */
export const RebuildReport = z.object({
  volumeId: id16,
  extentIndex: z.number().int().nonnegative(),
  epoch: z.number().int().positive(),
  targetSdsId: id16,
  copiedBytes: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative(),
  done: z.boolean(),
});
export type RebuildReport = z.infer<typeof RebuildReport>;

/** A write this SDS (as primary) forwarded to an in-sync copy was refused or lost: that copy
 *  may now differ on the range, so the MDM takes it out of the in-sync set (it is resynced). */
export const FailedForward = z.object({
  volumeId: id16,
  extentIndex: z.number().int().nonnegative(),
  epoch: z.number().int().positive(),
  peerSdsId: id16,
});
export type FailedForward = z.infer<typeof FailedForward>;

/** Chunks (Limits.thinChunkBytes) a layer of a snapshotted V-Tree owns on this SDS, all copies. */
export const LayerUsage = z.object({ layerId: id16, chunks: z.number().int().nonnegative() });
export type LayerUsage = z.infer<typeof LayerUsage>;

export const SdsHeartbeatRequest = z.object({
  devices: z.array(DeviceReport).max(Limits.maxDevicesPerSds),
  /** mapVersion of the assignments the SDS currently applies */
  appliedMapVersion: z.number().int().nonnegative(),
  /** copies in progress or just finished (bounded by Limits.maxRebuildReports) */
  rebuilds: z.array(RebuildReport).max(4096).default([]),
  failedForwards: z.array(FailedForward).max(4096).default([]),
  /** cumulative IO counters (src/proto/io_report.ts); absent from an SDS that predates them */
  io: SdsIoReport.optional(),
  /** chunks per layer of the V-Trees that have snapshots (snapshot capacity); bounded */
  layerChunks: z.array(LayerUsage).max(65_536).optional(),
  /** refused handshakes, grants and IO since the last heartbeat (counts by kind, a few lines); for the MDM's audit log */
  refusals: z
    .object({
      counts: z.record(z.string().max(32), z.number().int().nonnegative()).refine((r) => Object.keys(r).length <= 16, "at most 16 kinds"),
      samples: z.array(z.string().max(300)).max(16),
    })
    .optional(),
});
export type SdsHeartbeatRequest = z.infer<typeof SdsHeartbeatRequest>;

export const HeartbeatResponse = z.object({
  term,
  mapVersion: z.number().int().nonnegative(),
  leaseMs: z.number().int().positive(),
  /** SDS only: devices registered for it (REST, scli --add_sds_device) that it has not opened yet */
  openDevices: z.array(z.object({ deviceId: id16, path: z.string().min(1).max(4096) })).max(Limits.maxDevicesPerSds).optional(),
  /** SDS only: devices it reported that the MDM no longer has (removed): close and forget them */
  closeDevices: z.array(id16).max(Limits.maxDevicesPerSds).optional(),
});
/** term is stamped by the MDM's HTTP edge (cluster_routes.ts), not by the services */
export type HeartbeatResponse = Omit<z.infer<typeof HeartbeatResponse>, "term">;

export const SdsAddress = z.object({ sdsId: id16, host: hostName, port });
export type SdsAddress = z.infer<typeof SdsAddress>;
/** content tag of an SDS address list (the MDM's hash of it; equal tags, equal lists) */
export const SdsAddressTag = id16;
/**
 * The query of GET maps / assignments: the address tag the node holds, and urgent=1 when the
 * node holds IO until it has the answer (an SDS's epoch hold or fence in doubt): a busy MDM
 * serves such a fetch without a turn, at most once a second per node (fetch_shedding.ts).
 */
export const NodeMapsQuery = z.object({ addresses: SdsAddressTag.optional(), urgent: z.literal("1").optional() });
export type NodeMapsQuery = z.infer<typeof NodeMapsQuery>;
/**
 * The query of GET assignments: the address tag, and for a delta the mapVersion and copy-log id
 * of the assignments the SDS holds (both from its last answer). The MDM answers a delta only
 * when `log` is its current log and the log covers every change since `since`; else the full list.
 */
export const SdsAssignmentsQuery = NodeMapsQuery.extend({
  since: z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  log: id16.optional(),
});
export type SdsAssignmentsQuery = z.infer<typeof SdsAssignmentsQuery>;
/**
 * The query of GET maps (SDC): the address tag, and for a delta the mapVersion and `mapLog` of
 * the whole map the SDC holds (proto/maps_delta.ts). Without them (an older SDC) the whole map.
 */
export const SdcMapsQuery = NodeMapsQuery.extend({
  since: z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  log: id16.optional(),
});
export type SdcMapsQuery = z.infer<typeof SdcMapsQuery>;
/** An extent copy a delta takes away from the SDS (it frees the copy, as one a full answer omits). */
export const ExtentKey = z.object({ volumeId: id16, extentIndex: z.number().int().nonnegative() });
export type ExtentKey = z.infer<typeof ExtentKey>;

/**
 * What this SDS is for an extent:
 * - primary: serves SDC IO, forwards writes to the other in-sync replica and to the sync target;
 * - secondary: applies forwarded writes (REPL_*) from the primary;
 * - target: a copy being built (rebuild, resync, move): applies forwarded and REBUILD_WRITE
 *   frames from the primary, serves no reads;
 * - away: a copy kept while its SDS was away, during the grace period: keep the data, serve
 *   nothing, never free it; it may come back as a resync target.
 */
export const ExtentRole = z.enum(["primary", "secondary", "target", "away"]);
export type ExtentRole = z.infer<typeof ExtentRole>;

/** A copy being built: only the primary's assignment carries it. */
export const SyncTarget = z.object({
  sdsId: id16,
  /** full: copy every allocated chunk; resync: only chunks written since the split (falls
   *  back to full when the primary has no record of them, e.g. after its own restart) */
  mode: z.enum(["full", "resync"]),
});
export type SyncTarget = z.infer<typeof SyncTarget>;

/** One extent copy an SDS must hold. */
export const ExtentAssignment = z.object({
  volumeId: id16,
  extentIndex: z.number().int().nonnegative(),
  epoch: z.number().int().positive(),
  /** in-sync SDS ids holding this extent, primary first (the target is not among them) */
  replicas: z.array(id16).min(1).max(3),
  /** device of this SDS that holds the copy */
  deviceId: id16,
  thick: z.boolean(),
  role: ExtentRole.default("primary"),
  syncTarget: SyncTarget.nullable().default(null),
});
export type ExtentAssignment = z.infer<typeof ExtentAssignment>;

/**
 * I/O priority policy of a pool's copies (rebuild and resync: `rebuild`; moves of drain and
 * rebalance: `rebalance`), the PowerFlex rebuildIoPriorityPolicy / rebalanceIoPriorityPolicy
 * (semantics in src/sds/copy_throttle.ts and docs/design.md "Copy I/O priority"):
 * - unlimited: no cap on copy IOs in flight per device nor on their bandwidth;
 * - limitNumOfConcurrentIos: at most `concurrentIosPerDevice` copy IOs in flight per device,
 *   and `bwLimitBytesPerSec` per device when not 0;
 * - favorAppIos: as limitNumOfConcurrentIos, and a copy IO starts only while the device has no
 *   application write in flight (waiting at most Limits.favorAppIosMaxWaitMs for one chunk);
 * - dynamicBwThrottling: the bandwidth cap (required, > 0) halves at each copy IO that finds
 *   application IO present on the device (down to 1/8) and doubles back while the device is quiet.
 */
export const IoPriorityPolicy = z.enum(["unlimited", "limitNumOfConcurrentIos", "favorAppIos", "dynamicBwThrottling"], {
  message: "the I/O priority policy is unlimited, limitNumOfConcurrentIos, favorAppIos or dynamicBwThrottling",
});
export type IoPriorityPolicy = z.infer<typeof IoPriorityPolicy>;

export const CopyIoPolicy = z.object({
  policy: IoPriorityPolicy,
  concurrentIosPerDevice: z.number().int().min(1).max(Limits.maxCopyIosPerDevice),
  /** 0 = no bandwidth cap (refused for dynamicBwThrottling by the MDM) */
  bwLimitBytesPerSec: z.number().int().nonnegative(),
});
export type CopyIoPolicy = z.infer<typeof CopyIoPolicy>;

/** The copy policies of the pool a device of this SDS belongs to. */
export const DeviceCopyPolicy = z.object({ deviceId: id16, rebuild: CopyIoPolicy, rebalance: CopyIoPolicy });
export type DeviceCopyPolicy = z.infer<typeof DeviceCopyPolicy>;

/** Grants of (volume, SDC) issued at a map version below floorVersion are revoked. */
export const GrantFloor = z.object({ volumeId: id16, sdcId: id16, floorVersion: z.number().int().nonnegative() });
export type GrantFloor = z.infer<typeof GrantFloor>;

/** What an SDS needs to check the data plane without asking the MDM. */
export const SdsDataPlaneKeys = z.object({
  /** member keys: verify any node's handshake, derive this SDS's own node key */
  memberKeys: keyList,
  /** grant keys: verify mapping grants (src/proto/grant.ts) */
  grantKeys: keyList,
  /** revocations still younger than a grant's lifetime (unmap, switch to ReadOnly) */
  grantFloors: z.array(GrantFloor).max(100_000),
});
export type SdsDataPlaneKeys = z.infer<typeof SdsDataPlaneKeys>;
/**
 * The layer graph of a V-Tree that has (or had) snapshots; a V-Tree without one has a single
 * open layer whose id is its owner id (the base volume's id, which also keys its extents).
 * - layers: every layer, parent first or not; `frozen` layers are never written again;
 * - members: each volume of the V-Tree and its open (never frozen) layer;
 * - merges: layers folded into a child since some holder last applied the graph, oldest first:
 *   the child's chunks shadow the parent's (freed), the rest are relabelled to the child. A
 *   merge is idempotent; chunks of a layer that is neither in `layers` nor a merge source are
 *   freed;
 * - version only grows; an SDS never applies an older one.
 */
export const VTreeGraph = z.object({
  ownerId: id16,
  version: z.number().int().positive(),
  layers: z.array(z.object({ layerId: id16, parentLayerId: id16.nullable(), frozen: z.boolean() })).min(1).max(512),
  members: z.array(z.object({ volumeId: id16, layerId: id16 })).max(256),
  merges: z.array(z.object({ fromLayerId: id16, intoLayerId: id16 })).max(65_536),
});
export type VTreeGraph = z.infer<typeof VTreeGraph>;

export const SdsAssignmentsResponse = z.object({
  term,
  mapVersion: z.number().int().nonnegative(),
  dataPlane: SdsDataPlaneKeys,
  /** the MDM runs the data plane in TLS (a node started otherwise logs the drift: dataplane_tls.ts) */
  dataPlaneTls: z.boolean().default(false),
  /** the lowest rebuild bandwidth of this SDS's pools (bytes/s, 0 = unlimited): what an SDS from
   *  before copyPolicies applies over all its copies. An SDS with copyPolicies support that gets none
   *  (an older MDM) applies this figure per device and per class (rebuild, move), so an SDS upgraded
   *  before its MDM copies at up to 2 x devices times the old limit until the MDM is upgraded too. */
  rebuildRateBytesPerSec: z.number().int().nonnegative().default(0),
  /** copy I/O priority per device of this SDS (absent from an older MDM: rebuildRateBytesPerSec per device, no concurrency cap) */
  copyPolicies: z.array(DeviceCopyPolicy).max(Limits.maxDevicesPerSds).default([]),
  extentSizeBytesByVolume: z.record(id16, z.number().int().positive()),
  /** volumes of writeThrough pools among the extents listed: every write durable on every copy before its reply */
  writeThroughVolumes: z.array(id16).default([]),
  extents: z.array(ExtentAssignment),
  /** every SDS address; absent when the SDS asked with the current sdsTag (it keeps its list) */
  sds: z.array(SdsAddress).optional(),
  /** tag of the current address list (absent from an MDM that predates it) */
  sdsTag: SdsAddressTag.optional(),
  /** graphs of the V-Trees (by owner id) this SDS holds extents of and that have snapshots */
  vtrees: z.array(VTreeGraph).default([]),
  /** write fences the MDM is running now (an SDS whose fence timed out aborts one not listed) */
  liveFences: z.array(z.string().regex(/^[0-9a-f]{16}$/)).max(1024).default([]),
  /** id of the MDM's copy-change log this answer is current with: send it back as `log` (absent: an MDM without deltas) */
  copyLog: id16.optional(),
  /**
   * Present: this answer is a delta since that mapVersion (src/proto/assignments_delta.ts):
   * `extents` lists only the copies that changed (whole rows), `removed` the copies taken away;
   * extentSizeBytesByVolume, writeThroughVolumes and vtrees speak for the volumes of `extents`
   * only; dataPlane, rebuild rate, liveFences and the address part are whole as always.
   * Absent: the full list (an extent not listed may be freed).
   */
  since: z.number().int().nonnegative().optional(),
  removed: z.array(ExtentKey).optional(),
});
/** term is stamped by the MDM's HTTP edge (cluster_routes.ts), not by the services */
export type SdsAssignmentsResponse = Omit<z.infer<typeof SdsAssignmentsResponse>, "term">;

// ---- SDC ----

export const SdcJoinRequest = z.object({
  guid: z.string().min(1).max(64),
  name: name.optional(),
  host: hostName,
  tlsPublicKey,
});
export type SdcJoinRequest = z.infer<typeof SdcJoinRequest>;

export const SdcJoinResponse = z.object({
  term,
  sdcId: id16,
  systemId: id16,
  /** this SDC's token for the cluster API (header x-pf-node-token) */
  nodeToken: hex64,
  /** this SDC's own data-plane node keys (never another node's) */
  nodeKeys: keyList,
  heartbeatMs: z.number().int().positive(),
  dataPlaneTls: DataPlaneTlsAnswer,
});
/** term is stamped by the MDM's HTTP edge (cluster_routes.ts), not by the services */
export type SdcJoinResponse = Omit<z.infer<typeof SdcJoinResponse>, "term">;

export const SdcHeartbeatRequest = z.object({
  appliedMapVersion: z.number().int().nonnegative(),
  /** cumulative IO counters (src/proto/io_report.ts); absent from an SDC that predates them */
  io: SdcIoReport.optional(),
});
export type SdcHeartbeatRequest = z.infer<typeof SdcHeartbeatRequest>;

export const VolumeMap = z.object({
  volumeId: id16,
  name,
  sizeBytes: bytes,
  accessMode: z.enum(["ReadWrite", "ReadOnly"]),
  extentSizeBytes: z.number().int().positive(),
  /** one entry per extent, index = position; replicas primary first */
  extents: z.array(z.object({ epoch: z.number().int().positive(), replicas: z.array(id16).min(1).max(3) })),
  /** the mapping grant the SDC presents to SDSs (src/proto/grant.ts); absent: no IO allowed */
  grant: z.object({ body: z.string().regex(/^[0-9a-f]{112}$/), secret: hex64 }).optional(),
  /** per-mapping QoS (setMappedSdcLimits): 0 = unlimited */
  limitIops: z.number().int().nonnegative().default(0),
  limitBwKbps: z.number().int().nonnegative().default(0),
});
export type VolumeMap = z.infer<typeof VolumeMap>;

export const SdcMapsResponse = z.object({
  term,
  mapVersion: z.number().int().nonnegative(),
  /** this SDC's node keys (they change when the MDM rotates its master key) */
  nodeKeys: keyList,
  /** the MDM runs the data plane in TLS (a node started otherwise logs the drift: dataplane_tls.ts) */
  dataPlaneTls: z.boolean().default(false),
  volumes: z.array(VolumeMap),
  /** every SDS address; absent when the SDC asked with the current sdsTag (it keeps its list) */
  sds: z.array(SdsAddress).optional(),
  /** tag of the current address list (absent from an MDM that predates it) */
  sdsTag: SdsAddressTag.optional(),
  /** revoked NBD client certificates not yet expired: the SDC refuses them and closes their
   *  sessions (absent from an MDM that predates them: the SDC keeps the list it has) */
  nbdRevoked: z.array(NbdRevokedCert).max(Limits.nbdRevokedCertsMax).optional(),
  /** id of the MDM's change log this map is current with: send it back as `log` with `since` (absent: an MDM without map deltas) */
  mapLog: id16.optional(),
  /**
   * Present: this answer is a delta since that mapVersion (src/proto/maps_delta.ts): `volumes`
   * holds the whole entry of every mapped volume whose entry changed since, `volumeIds` every
   * volume mapped now (ascending, as a whole map lists them); a held entry of a listed volume
   * stands, one not listed goes. Keys, TLS, revocations and the address part are whole as always.
   * Absent: the whole map.
   */
  since: z.number().int().nonnegative().optional(),
  volumeIds: z.array(id16).optional(),
});
/** term is stamped by the MDM's HTTP edge (cluster_routes.ts), not by the services */
export type SdcMapsResponse = Omit<z.infer<typeof SdcMapsResponse>, "term">;

/**
 * The mapWatch long poll (SDS and SDC): answered as soon as a change that takes access away
 * concerns the node and its `after` version (health.ts: urgent), else after waitMs with the
 * version a heartbeat would tell (mapVersion == after: nothing new). The node then fetches its assignments or maps as after a heartbeat.
 */
export const MapWatchQuery = z.object({
  after: z.coerce.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  waitMs: z.coerce.number().int().nonnegative().max(Limits.mapWatchMaxMs),
});
export type MapWatchQuery = z.infer<typeof MapWatchQuery>;
export const MapWatchResponse = z.object({ term, mapVersion: z.number().int().nonnegative() });
export type MapWatchResponse = Omit<z.infer<typeof MapWatchResponse>, "term">;

/**
 * An MDM that is behind refuses assignment and map fetches (never heartbeats) with HTTP 429,
 * code INVALID_STATE and a message starting with this, ending "retry after <n> ms"
 * (src/mdm/cluster/fetch_shedding.ts); the node retries the fetch after that time.
 */
export const MDM_BUSY_PREFIX = "MDM busy";
/** The retry time of an MDM-busy refusal, or null when the error is something else. */
export function busyRetryMs(e: unknown): number | null {
  if (!(e instanceof Error) || (e as { code?: string }).code !== "INVALID_STATE" || !e.message.startsWith(MDM_BUSY_PREFIX)) return null;
  const m = /retry after (\d+) ms$/.exec(e.message);
  return m ? Math.min(Number(m[1]), 10_000) : null;
}

function withQuery(path: string, parts: (string | null)[]): string {
  const q = parts.filter((p) => p !== null);
  return q.length === 0 ? path : `${path}?${q.join("&")}`;
}

/** Paths, relative to CLUSTER_API_PREFIX. */
export const ClusterPaths = {
  sdsJoin: "/sds/join",
  sdsHeartbeat: (sdsId: string) => `/sds/${sdsId}/heartbeat`,
  /** addresses: the tag of the SDS address list held (the answer then omits an unchanged list) */
  sdsAssignments: (sdsId: string, addresses?: string | null, delta?: { since: number; log: string } | null, urgent = false) =>
    withQuery(`/sds/${sdsId}/assignments`, [addresses ? `addresses=${addresses}` : null, delta ? `since=${delta.since}&log=${delta.log}` : null, urgent ? "urgent=1" : null]),
  mapWatch: (kind: "sds" | "sdc", nodeId: string, q: MapWatchQuery) => `/${kind}/${nodeId}/mapWatch?after=${q.after}&waitMs=${q.waitMs}`,
  sdcJoin: "/sdc/join",
  sdcHeartbeat: (sdcId: string) => `/sdc/${sdcId}/heartbeat`,
  /** delta: the mapVersion and mapLog of the whole map held (the answer may then be a delta) */
  sdcMaps: (sdcId: string, addresses?: string | null, delta?: { since: number; log: string } | null) =>
    withQuery(`/sdc/${sdcId}/maps`, [addresses ? `addresses=${addresses}` : null, delta ? `since=${delta.since}&log=${delta.log}` : null]),
  /** the SDC's NBD server certificate from the cluster NBD CA (src/proto/nbd_certs.ts) */
  sdcNbdCertificate: (sdcId: string) => `/sdc/${sdcId}/nbdCertificate`,
} as const;
