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
  nbdRevokedCertsMax: 1024, // unexpired revoked NBD client certificates the MDM keeps and sends SDCs with their maps (~170 B each)
  nbdClientCertRowsMax: 10_000, // NBD client certificate rows kept (issuing beyond: TOO_BIG; the list answer stays under ~5 MB); rows expired 90+ days are pruned first

  // data plane (SDC <-> SDS, SDS <-> SDS)
  dataMaxPayloadBytes: 32 * MiB, // a frame whose payload is larger closes the connection
  dataMaxInFlightPerConn: 1024,
  dataConnectTimeoutMs: 3000,
  dataLocalSocketRetryMs: 10_000, // after a same-host Unix socket failed a client (dataplane_local.ts), its connects use TCP this long, then try the socket again
  dataRequestTimeoutMs: 30_000,
  dataConnsPerSds: 1, // pooled connections from one client to one SDS (1 batches best: +7 % 4k QD16 measured vs 2)
  dataHandshakeTimeoutMs: 5000, // a data-plane connection not authenticated within this is closed
  dataPreAuthMaxPayloadBytes: 256, // before authentication a frame may carry at most this (HELLO 44, AUTH 40)
  dataMaxPreAuthConns: 256, // an SDS refuses new connections while this many are not authenticated yet
  dataKeyActivationMs: 3000, // a new master key signs grants only once this old (every SDS has fetched it)
  dataMaxGrantsPerConn: 4096, // mapping grants one data-plane connection may hold (one per volume)
  grantTtlMs: 10 * 60 * 1000, // a mapping grant's lifetime; an SDC renews at half of it
  maxGrantFloors: 100_000, // revocation floors handed to SDSs (the newest; older ones outlived every grant)
  dataMaxConnsPerSds: 4096, // an SDS refuses data-plane connections beyond this many
  dataMaxInFlightBytesPerConn: 96 * MiB, // an SDS stops reading a connection whose requests/replies hold this many bytes
  sdcRetryWindowMs: 30_000, // an SDC retries a refused piece (stale map, SDS down) this long before EIO
  // a forwarded frame (REPL_*, REBUILD_WRITE) naming a newer epoch than this SDS holds, or an extent
  // not assigned here yet, holds its connection (sds/epoch_hold.ts) until the assignments catch up:
  sdsEpochHoldMs: 2000, // at most this long per frame (then it is handled, i.e. refused, as it stands)
  sdsEpochHoldMaxFrames: 256, // frames held per connection; at the cap the connection stops reading
  sdsEpochHoldMaxBytes: 16 * MiB, // payload bytes held per connection; at the cap likewise

  // SDS copies (rebuild, resync, move) driven by a primary
  maxRebuildReports: 4096, // copies reported in one SDS heartbeat (SdsHeartbeatRequest.rebuilds)
  rebuildCopiesPerTarget: 2, // chunk copies in flight from one SDS to one target SDS
  rebuildRetryMs: 1000, // a copy that failed (target refused or unreachable) starts over after this
  maxCopyBwKbps: 2 ** 31 - 1, // a copy bandwidth limit (KB/s per device) at most this (~2 TB/s): KB/s x 1024 stays a safe integer everywhere
  maxCopyIosPerDevice: 20, // numOfConcurrentIosPerDevice of an I/O priority policy: 1..this (PowerFlex's range)
  deviceErrorChars: 300, // why a device is Failed, in the SDS's words (heartbeat DeviceReport.error; longer ones are cut)
  maxDevicesPerSds: 64, // devices of one SDS: its join, its heartbeat reports and a heartbeat answer's openDevices carry at most this many (cluster_api.ts); the MDM registers no more
  favorAppIosMaxWaitMs: 50, // favorAppIos: a copy chunk waits at most this long for the device's app writes to drain (bounds the rebuild under constant app IO)
  dynamicBwMinShare: 8, // dynamicBwThrottling: the tuned copy rate never goes below 1/this of the pool's bandwidth limit (so a rebuild always ends)
  copyTuneIntervalMs: 250, // dynamicBwThrottling: the client-latency tuner judges a window of app writes this long (at the next copy IO after it)
  copyTuneMinOps: 16, // dynamicBwThrottling: fewer app writes than this in a window say nothing about their latency
  copyTuneLatencyRatio: 2, // dynamicBwThrottling: the tuner keeps the mean app write latency during a copy within this multiple of its quiet baseline
  copyTuneSteps: 4, // dynamicBwThrottling: a window with low app latency raises the copy rate by 1/this of the limit (16 took 3.5 s from the floor to the limit: most of a 0.5 GiB rebuild)
  copyTuneRestartMs: 5000, // dynamicBwThrottling: a device whose copies paused this long starts again from the floor rate

  // placement / volumes
  defaultExtentBytes: 64 * MiB,
  maxExtentBytes: 1 * GiB, // extents are addressed with u32 offsets
  defaultAllocationGranularityBytes: 1 * GiB,
  maxVolumeBytes: 1024 * 1024 * GiB, // 1 PiB
  maxThinOvercommitRatio: 10, // thin extents assigned to a device: at most this times its capacity
  maxNameLength: 31, // PowerFlex object names
  thinChunkBytes: 1 * MiB, // SDS thin allocation unit
  groupCommitMaxSyncs: 1, // fdatasyncs in flight per group commit target by default (group_commit.ts; the metadata WAL)
  deviceSyncsInFlight: 2, // fdatasyncs in flight per device, each on a descriptor of its own (block_device.ts)
  deviceSecondSyncMinBatch: 4, // a device's second sync starts only for at least this many waiters (group_commit.ts)
  deviceWriteSegmentBytes: 64 * KiB, // an SDS writes a device in pwrites of at most this (block_device.ts: page-cache folio size; 64 KiB: a 1 MiB write ~300 -> ~170 µs, a later 4 KiB overwrite as cheap as at 16 KiB)
  minDeviceBytes: 1 * MiB, // an SDS refuses a smaller device: it cannot hold the smallest extent (one thin chunk); pf up asks for one extent of the pool

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
  heartbeatMaxBodyBytes: 24 * MiB, // an SDC heartbeat lists IO counters of every mapped volume (~250 B each, up to 65,536)
  tokenIdleTimeoutMs: 30 * 60 * 1000, // a REST token unused this long is dead (security.md proposal (c))
  tokenAbsoluteTimeoutMs: 8 * 60 * 60 * 1000, // and any token this long after its login
  loginLockoutFailures: 10, // failed logins in a row that lock a user (as Ceph's dashboard)
  loginLockoutMs: 15 * 60 * 1000, // how long a locked user is refused, the right password too
  loginFailBurst: 20, // failed logins one source address may make at once...
  loginFailRefillMs: 1000, // ...and one more each this long; beyond, only a recently proven password passes
  loginMaxConcurrentHashes: 4, // argon2id checks (64 MiB each) running at once; more wait
  loginMaxWaiting: 256, // logins waiting for a hash slot; more are refused UNAVAILABLE
  loginGuardMaxEntries: 10_000, // users and source addresses the login guard remembers (oldest dropped)
  auditMaxRecords: 1_000_000, // audit records kept; the oldest are pruned beyond (the chain's anchor moves)
  auditMaxParamsBytes: 2048, // a record's params (secrets redacted) are cut to this
  auditQueryMaxRecords: 10_000, // records one audit query answers
  heartbeatMaxRefusalSamples: 8, // refusal lines one SDS heartbeat carries (counts are always whole)
  maxTokens: 100_000,
  heartbeatIntervalMs: 1000,
  heartbeatTimeoutMs: 5000,
  sdsLeaseMs: 4000, // an SDS serves extents only while its lease holds; shorter than heartbeatTimeoutMs
  mapPollIntervalMs: 1000,
  mapWatchMaxMs: 5000, // a mapWatch long poll is answered within this (below Bun.serve's 10 s idle timeout)
  mdmStartWaitMs: 60_000, // a starting SDS/SDC (and pf up) waits this long for an unreachable MDM (PF_MDM_WAIT_MS)

  // observability (metrics core, control HTTP port of SDS and SDC)
  metricsMaxSeriesPerFamily: 65_536, // a family refuses more labelled series (labels are bounded sets, never extents)
  sdcMaxMeteredVolumes: 65_536, // volumes an SDC keeps IO counters for in one process life (SdcIoReport.volumes max)
  controlMaxRequestBodyBytes: 64 * KiB, // the control port takes no bodies; Bun refuses larger ones outright
  eventLoopLagSampleMs: 500, // the event-loop lag timer fires this often
  eventLoopLagWindowSamples: 10, // pf_event_loop_lag_seconds is the worst lag of this many samples (5 s)
  controlPortOffset: 1000, // default control port = the role's own port (SDS data, SDC NBD) + this

  // failure detection and recovery (MDM); the three timeouts are MdmOptions defaults
  leaseToTimeoutRatio: 0.8, // an SDS lease is this share of the MDM's heartbeat timeout (strictly less)
  rebuildGraceMs: 30_000, // a lost SDS that returns within this resyncs; later its copies are rebuilt elsewhere
  rebuildStallTimeoutMs: 30_000, // recovery work pending with no copy progress this long raises an alert
  recoveryTickMs: 250, // the MDM's failure detector and rebuild planner run this often
  maxConcurrentRebuildsPerSds: 4, // copies (rebuild, resync, move) in flight per pool = this x connected SDSs (a source's queued copies keep its rate busy while a finished one is installed: rebuild_copy.ts)
  maxConcurrentUnthrottledRebuildsPerSds: 2, // the same in a pool without a rebuild rate limit (4 unthrottled copies a source took the disk from clients: p99 2-3.5 s in bench/rebuild.ts vs 40-60 ms with 2)
  rebuildRateWindowMs: 10_000, // sliding window of the rebuild rate and ETA
  maxMoveCandidatesPerSds: 64, // extents of one SDS the planner looks at per tick for drain/rebalance moves

  // observability (MDM): IO windows from heartbeats, history, alerts
  ioBwcWindowMs: 5000, // the PowerFlex Bwc window (numSeconds = 5) and /api/pf/live
  ioWindowSlots: 8, // report slots kept per reporter: >= 6.3 s at the minimum slot spacing
  ioWindowMinSlotMs: 900, // reports closer than this fold into the newest slot (SDS heartbeats at 250 ms while copying)
  ioSeriesAbsentReports: 30, // a volume missing from this many SDC reports in a row loses its window (not its totals)
  historySamples: 600, // /api/pf/history ring: one system-wide sample a second, 10 minutes
  historyIntervalMs: 1000,
  observeTickMs: 1000, // alerts are evaluated and a history sample taken this often
  maxClearedAlerts: 1000, // alert history kept in the database (oldest cleared ones go first)
  alertLastObservedFlushMs: 30_000, // lastObserved of an active alert reaches sqlite at most this often
  alertWebhookQueueMax: 256, // webhook events waiting to be sent; beyond this the oldest is dropped (counted)
  alertWebhookTimeoutMs: 5000, // one POST attempt
  alertWebhookMaxAttempts: 8, // attempts per event (backoff doubles from alertWebhookBackoffMs) before it is dropped
  alertWebhookBackoffMs: 500,
  alertWebhookMaxBackoffMs: 30_000,
  certExpiryWarnDays: 30, // the MDM's TLS certificate: an alert this many days before it expires
} as const;

export const Units = { KiB, MiB, GiB } as const;
