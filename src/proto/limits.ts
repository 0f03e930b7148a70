// Every named limit of pf in one place: buffers, queues, frame sizes, timeouts.
// A limit that grows with peer input lives here and has a test that reaches it.

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const Limits = {
  // NBD front end
  nbdMaxOptionBytes: 64 * KiB, // option data larger than this closes the connection
  nbdMaxNameBytes: 4096,
  nbdMaxRequestBytes: 32 * MiB, // READ/WRITE payload advertised and accepted
  nbdAbusiveRequestBytes: 64 * MiB, // WRITE larger than this: hard disconnect instead of EINVAL
  nbdMaxInFlightPerConn: 128, // stop reading a connection beyond this many requests
  nbdMaxBufferedBytesPerConn: 96 * MiB, // and beyond this many buffered bytes
  nbdMinBlockBytes: 512,
  nbdPreferredBlockBytes: 4096,
  nbdReplyStagingBytes: 256 * KiB, // per-connection buffer small replies are batched into
  nbdReplyCopyMaxBytes: 16 * KiB, // READ data up to this size is copied into the batch; larger is written as is
  nbdHandshakeTimeoutMs: 30_000, // a client that has not reached the transmission phase by then is dropped

  // data plane (SDC <-> SDS, SDS <-> SDS)
  dataMaxPayloadBytes: 32 * MiB, // a frame whose payload is larger closes the connection
  dataMaxInFlightPerConn: 1024,
  dataConnectTimeoutMs: 3000,
  dataRequestTimeoutMs: 30_000,
  dataConnsPerSds: 1, // pooled connections from one client to one SDS (1 batches best: +7 % 4k QD16 measured vs 2)
  dataHelloTimeoutMs: 10_000, // a data-plane connection that sends no HELLO within this is closed
  dataMaxConnsPerSds: 4096, // an SDS refuses data-plane connections beyond this many
  dataMaxInFlightBytesPerConn: 96 * MiB, // an SDS stops reading a connection whose requests/replies hold this many bytes
  sdcRetryWindowMs: 30_000, // an SDC retries a refused piece (stale map, SDS down) this long before EIO

  // SDS copies (rebuild, resync, move) driven by a primary
  maxRebuildReports: 4096, // copies reported in one SDS heartbeat (SdsHeartbeatRequest.rebuilds)
  rebuildCopiesPerTarget: 2, // chunk copies in flight from one SDS to one target SDS
  rebuildRetryMs: 1000, // a copy that failed (target refused or unreachable) starts over after this

  // placement / volumes
  defaultExtentBytes: 64 * MiB,
  maxExtentBytes: 1 * GiB, // extents are addressed with u32 offsets
  defaultAllocationGranularityBytes: 1 * GiB,
  maxVolumeBytes: 1024 * 1024 * GiB, // 1 PiB
  maxThinOvercommitRatio: 10, // thin extents assigned to a device: at most this times its capacity
  maxNameLength: 31, // PowerFlex object names
  thinChunkBytes: 1 * MiB, // SDS thin allocation unit (and the copy-on-write unit of snapshots)

  // snapshots (V-Trees) and write fences
  maxSnapshotsPerVTree: 126, // PowerFlex's limit; refused beyond with rc 182 (Cinder's SnapshotLimitReached)
  maxLayersPerVTree: 512, // 2 x members - 1 after merging (253 at 127 members), with room for a fence's new ones
  maxSnapshotDefsPerCall: 1024, // snapshotDefs of one snapshotVolumes call (one consistency group)
  fenceAckTimeoutMs: 1500, // the MDM aborts a snapshot whose fence some SDS did not acknowledge by then
  fenceHoldTimeoutMs: 3000, // an SDS asks the MDM about a fence it holds writes for this long (> fenceAckTimeoutMs)
  fenceCommitWaitMs: 2000,
  maxLayerUsageReports: 65_536, // layer chunk counts in one SDS heartbeat (SdsHeartbeatRequest.layerChunks) // the MDM waits this long for commit acks before answering (SDSs also learn from assignments)

  // per-mapping QoS (SDC)
  qosMinIops: 11, // setMappedSdcLimits: iopsLimit is 0 (unlimited) or at least this (PowerFlex/Ansible rule)
  qosBandwidthUnitKbps: 1024, // bandwidthLimitInKbps is 0 or a multiple of this
  qosBurstMs: 1000, // a bucket holds this much of its limit (a burst of one second)

  // control plane
  restMaxBodyBytes: 1 * MiB,
  tokenIdleTimeoutMs: 8 * 60 * 60 * 1000,
  maxTokens: 100_000,
  heartbeatIntervalMs: 1000,
  heartbeatTimeoutMs: 5000,
  sdsLeaseMs: 4000, // an SDS serves extents only while its lease holds; shorter than heartbeatTimeoutMs
  mapPollIntervalMs: 1000,

  // failure detection and recovery (MDM); the three timeouts are MdmOptions defaults
  leaseToTimeoutRatio: 0.8, // an SDS lease is this share of the MDM's heartbeat timeout (strictly less)
  rebuildGraceMs: 30_000, // a lost SDS that returns within this resyncs; later its copies are rebuilt elsewhere
  rebuildStallTimeoutMs: 30_000, // recovery work pending with no copy progress this long raises an alert
  recoveryTickMs: 250, // the MDM's failure detector and rebuild planner run this often
  maxConcurrentRebuildsPerSds: 2, // copies (rebuild, resync, move) in flight per pool = this x connected SDSs
  rebuildRateWindowMs: 10_000, // sliding window of the rebuild rate and ETA
  maxMoveCandidatesPerSds: 64, // extents of one SDS the planner looks at per tick for drain/rebalance moves
} as const;

export const Units = { KiB, MiB, GiB } as const;
