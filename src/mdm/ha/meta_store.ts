// The MDM's metadata store as the rest of the MDM sees it: one interface, two engines.
// - SqliteMetaStore (sqlite_meta_store.ts, the default): the local sqlite database is the whole
//   truth; this MDM is always the active one; commit() has nothing to do (a sqlite transaction
//   that returned is durable); the term grows on every MDM start.
// - EtcdMetaStore (etcd_meta_store.ts, HA mode, loaded by dynamic import only): every MDM keeps
//   its own sqlite as the materialized state; the active one ships each local change to etcd as
//   one guarded transaction before anything that depends on it leaves the process; standbys
//   follow by watch.
// Services keep reading and writing sqlite through drizzle inside inTransaction; the HTTP edge
// and the recovery timer call commit() before an answer or order goes out (app.ts, main.ts).
//
// Invariants every engine keeps (the contract test suite, test/meta_store_contract.test.ts):
// - isLeader() is synchronous and false the moment this MDM may no longer act (self-fencing);
// - term() only grows over the life of the cluster, and two MDMs never act under one term;
// - commit() resolves only once every local change made before the call is durable in the shared
//   store; when it throws, this MDM is no longer the leader and its unshipped changes are undone
//   (the local state is reloaded from the shared store).

export type StoreKind = "sqlite" | "etcd";

export interface LeaderInfo {
  id: string;
  name: string;
  /** URL clients use for it (https://HOST:PORT) */
  url: string;
  term: number;
}

export interface MdmMemberView {
  id: string;
  name: string;
  url: string;
  role: "leader" | "standby";
  /** etcd revision its sqlite reflects */
  appliedRev: number;
  caughtUp: boolean;
}

export interface EtcdMemberView {
  name: string;
  clientUrls: string[];
  healthy: boolean;
  isLeader: boolean;
}

/** An MDM registered by --add_standby_mdm (the registry in etcd); running when a member matches it. */
export interface RegisteredMdmView {
  id: string;
  name: string;
  ips: string[];
  port: number | null;
  role: "Manager" | "TieBreaker";
  managementIps: string[];
  /** id of the running MDM at that address, or null (not started yet, or down) */
  runningAs: string | null;
}

export interface ClusterView {
  kind: StoreKind;
  term: number;
  leader: LeaderInfo | null;
  members: MdmMemberView[];
  etcd: EtcdMemberView[];
  registered: RegisteredMdmView[];
}

export interface StandbyMdmSpec {
  ips: string[];
  role: "Manager" | "TieBreaker";
  managementIps?: string[];
  name?: string;
  port?: number;
}

export type LeadershipListener = (leader: boolean) => void;

/** Counters of the shared store, for figures and the role endpoint. */
export interface StoreStats {
  /** commits shipped (etcd txns) and the row puts/deletes they carried */
  txns: number;
  ops: number;
  takeovers: number;
  stepDowns: number;
}

/** Which standby --switch_mdm_ownership hands over to (one of them). */
export interface MdmRef {
  id?: string;
  name?: string;
  /** host of its URL */
  ip?: string;
}

export interface HandOverResult {
  from: { id: string; name: string };
  /** the MDM that leads now (the target, unless it died meanwhile) */
  to: { id: string; name: string; url: string };
  oldTerm: number;
  term: number;
}

export interface MdmMetaStore {
  readonly kind: StoreKind;
  /** this MDM's id (stable across restarts: kept in its data dir in HA mode) */
  readonly mdmId: string;
  readonly stats: StoreStats;
  /** rows one local transaction may change and still ship as one commit (etcd's txn limits);
   *  bulk writers (a recovery step) split their work to stay under it */
  readonly maxRowsPerCommit: number;
  /** start acting (leader or standby) once the MDM's core is open; before it, nothing is shipped */
  start(): Promise<void>;
  /** term of this MDM's current leadership, or of the last one it knows of */
  term(): number;
  /** may this MDM act as the active MDM right now (deadline checked on every call) */
  isLeader(): boolean;
  leader(): LeaderInfo | null;
  /** etcd revision the local sqlite reflects (0 in sqlite mode: there is no shared log) */
  appliedRevision(): number;
  /** local changes not yet in the shared store */
  hasPending(): boolean;
  /** make every local change made so far durable in the shared store (see invariants) */
  commit(): Promise<void>;
  /** an SDS or SDC saw a higher term: another MDM leads now */
  sawHigherTerm(term: number, from: string): void;
  /** called (synchronously) on every change of isLeader() */
  onLeadershipChange(listener: LeadershipListener): void;
  view(): Promise<ClusterView>;
  /** --switch_mdm_ownership: wait until the standby has applied everything, resign, and resolve
   *  once an MDM of a higher term leads (this one answers as a standby from then on);
   *  beforeResign runs once the target caught up, while this MDM still leads; its writes are
   *  committed before it resigns */
  handOver(to: MdmRef, beforeResign?: (target: { id: string; name: string }) => Promise<void>): Promise<HandOverResult>;
  /** --add_standby_mdm: register an MDM the cluster expects (active MDM only); its id */
  addStandby(spec: StandbyMdmSpec): Promise<string>;
  /** --remove_standby_mdm: drop a registered MDM; a running standby with that id (or address)
   *  stops campaigning and refuses to start again until added anew; never the active MDM */
  removeStandby(id: string): Promise<void>;
  close(): Promise<void>;
}
