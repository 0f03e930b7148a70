// HA mode's metadata store (meta_store.ts): every MDM keeps its own sqlite; etcd decides who is
// active and holds the shared truth under /pf/<cluster>/ (etcd_keys.ts). Loaded only by dynamic
// import from mdm/main.ts, so the default sqlite mode never loads etcd code.
//
// Leader: won the campaign txn {CREATE(mdm/leader)==0 -> put under my lease}; term = termBase +
// the leader key's create_revision. Capture triggers record every local row change; commit()
// ships all pending rows as ONE txn guarded by LEASE(mdm/leader)==myLease, and only after it
// succeeded does the HTTP edge answer (write-ahead towards the outside world: no SDS, SDC or
// operator ever sees a change etcd does not hold). A failed or uncertain commit, a passed
// self-fencing deadline (lease_session.ts) or an SDS reporting a higher term make it a standby
// at once: triggers dropped, connection query_only, unshipped local changes undone by a reload.
// Standby: follower.ts replays meta/ from the watch; campaigns when the leader key is gone
// (watch DELETE, or a 500 ms poll), and only on a lease whose keepalives are on time (else on a
// fresh one: a term begun on a lease about to pass its fencing deadline ends at once, issue #12);
// after winning it waits until its watch has delivered the winning revision (everything the old
// leader committed) before it acts.
//
// etcd limits: a change of N rows is a txn of N puts; etcd must accept requiredTxnOps ops per
// txn (--max-txn-ops; probed at open, refused with the flag's name) and maxTxnBytes per request
// (--max-request-bytes); a larger change fails (TOO_BIG), is undone, and this MDM steps down.

import type { Database } from "bun:sqlite";
import { consola } from "consola";
import { PfError } from "../../proto/errors.ts";
import { EtcdClient, type EtcdSecurity, type TxnOp } from "../../store/etcd_client.ts";
import type { WatchedEvent } from "../../store/etcd_watch.ts";
import {
  disableCapture,
  dropPending,
  enableCapture,
  ensureHaTables,
  lastPendingSeq,
  pendingChanges,
  replicatedTables,
  writeAppliedRev,
  type RowChange,
  type TableInfo,
} from "../../store/row_capture.ts";
import { ClusterRecord, EtcdKeys, HandoverRecord, LeaderRecord, MemberRecord, parseRecord, RemovedRecord } from "./etcd_keys.ts";
import { bootstrapCluster, etcdViews, memberViews, probeTxnLimit, registerStandby, registryViews, unregisterStandby } from "./etcd_cluster_ops.ts";
import { Follower } from "./follower.ts";
import { DEFAULT_LEASE_TIMING, LeaseSession, type LeaseTiming } from "./lease_session.ts";
import type { ClusterView, HandOverResult, LeaderInfo, LeadershipListener, MdmMetaStore, MdmRef, StandbyMdmSpec } from "./meta_store.ts";
import { readLocalTerm } from "./sqlite_meta_store.ts";

export const ETCD_REQUIRED_TXN_OPS = 4096;
export const ETCD_MAX_TXN_BYTES = 1024 * 1024;
const CAMPAIGN_POLL_MS = 500;
const CATCH_UP_TIMEOUT_MS = 5000;
/** how long a stepped-down MDM keeps trying to revoke its old lease (lease_session.ts revoke) */
const REVOKE_RETRY_FOR_MS = 30_000;
/** member records (appliedRev) are rewritten at most this often, the last change always */
const MEMBER_UPDATE_MS = 500;
/** a standby whose member record reached the leader's revision of this long ago is caught up */
const CAUGHT_UP_SLACK_MS = 1500;
/** --switch_mdm_ownership: how long the target may take to apply the handover record */
const HANDOVER_CATCH_UP_MS = 10_000;
/** ... and how long the other standbys let it campaign alone once the leader key is gone */
const HANDOVER_DEFER_MS = 3000;
/** ... and how long the resigning MDM waits for a new leader before answering */
const HANDOVER_NEW_LEADER_MS = 10_000;

export interface EtcdMetaStoreOptions {
  sqlite: Database;
  endpoints: string[];
  /** TLS and auth for a secured etcd (mdm.etcd cacert/cert/key/user/password) */
  security?: EtcdSecurity;
  /** cluster name: keys live under /pf/<cluster>/ */
  cluster: string;
  mdmId: string;
  name: string;
  /** URL clients use for this MDM */
  url: string;
  schemaVersion: number;
  timing?: LeaseTiming;
  requiredTxnOps?: number;
  maxTxnBytes?: number;
}

type State = "starting" | "standby" | "leader" | "closed";

function notLeader(leader: LeaderInfo | null, why: string): PfError {
  return new PfError("NOT_LEADER", leader ? `this MDM is a standby (${why}); the active MDM is ${leader.name} at ${leader.url}` : `this MDM is a standby (${why}); no active MDM right now`);
}

function hostOfUrl(url: string): string {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return url;
  }
}

export class EtcdMetaStore implements MdmMetaStore {
  readonly kind = "etcd" as const;
  readonly mdmId: string;
  readonly keys: EtcdKeys;
  readonly client: EtcdClient;
  private state: State = "starting";
  private session: LeaseSession | null = null;
  private myTerm = 0;
  private knownTerm = 0;
  private termBase = 0;
  private leaderNow: LeaderInfo | null = null;
  private follower: Follower | null = null;
  private readonly tables: TableInfo[];
  private readonly tableMap: Map<string, TableInfo>;
  private shippedSeq = 0;
  private inflight: Promise<void> | null = null;
  private listeners: LeadershipListener[] = [];
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private leaderEnded: (() => void) | null = null;
  private leaderDone: Promise<void> | null = null;
  private fenceTimer: ReturnType<typeof setInterval> | null = null;
  /** old leases whose revoke is being retried in the background (stepDown) */
  private readonly revoking = new Set<LeaseSession>();
  private lastMemberPutMs = -Infinity;
  /** revision of this MDM's last member-record write (0: none succeeded) */
  private lastMemberRev = 0;
  private memberTimer: ReturnType<typeof setTimeout> | null = null;
  /** (time, revision) of the leader's recent commits, for the caught-up test of the view */
  private commitHistory: { atMs: number; rev: number }[] = [];
  private bootstrapping = false;
  /** the handover record this standby defers to, and since when (local clock) */
  private handoverSeen: { key: string; atMs: number } | null = null;
  private clusterKey = "";
  /** the leader key (create revision/lease) last logged by the standby loop, so each is logged once */
  private leaderKeySeen = "";
  /** set once --remove_standby_mdm named this MDM: it never campaigns again in this run */
  private removedBy: string | null = null;
  /** stats for the cluster view and the figures: committed txns, ops, takeovers */
  readonly stats = { txns: 0, ops: 0, takeovers: 0, stepDowns: 0 };

  private constructor(private readonly o: EtcdMetaStoreOptions) {
    this.mdmId = o.mdmId;
    this.keys = new EtcdKeys(o.cluster);
    this.client = new EtcdClient({ endpoints: o.endpoints, security: o.security });
    ensureHaTables(o.sqlite);
    this.tables = replicatedTables(o.sqlite);
    this.tableMap = new Map(this.tables.map((t) => [t.name, t]));
  }

  /**
   * Half the txn's op limit, and 1 KiB of its byte limit per row: a row ships as the JSON of all
   * its columns (an extent row ~450-500 bytes), and a change writes a few rows besides the ones
   * counted (devices, the system row). 1,024 with etcd's defaults.
   */
  get maxRowsPerCommit(): number {
    const ops = this.o.requiredTxnOps ?? ETCD_REQUIRED_TXN_OPS;
    const bytes = this.o.maxTxnBytes ?? ETCD_MAX_TXN_BYTES;
    return Math.max(16, Math.floor(Math.min(ops / 2, bytes / 1024)));
  }

  private get timing(): LeaseTiming {
    return this.o.timing ?? DEFAULT_LEASE_TIMING;
  }

  /**
   * Connect, check etcd's limits and bring the local sqlite to the cluster's state. When the
   * cluster does not exist yet and this MDM wins the first campaign, it is the bootstrapper: its
   * local state (made by the caller next: System row, admin user) is exported by start().
   */
  static async open(o: EtcdMetaStoreOptions): Promise<EtcdMetaStore> {
    const s = new EtcdMetaStore(o);
    await probeTxnLimit(s.client, s.keys, o.requiredTxnOps ?? ETCD_REQUIRED_TXN_OPS, o.maxTxnBytes ?? ETCD_MAX_TXN_BYTES);
    const removed = await s.client.get(s.keys.removed(o.mdmId));
    if (removed) {
      const r = parseRecord(RemovedRecord, removed.key, removed.value);
      throw new PfError("INVALID_STATE", `this MDM (${o.name}, id ${o.mdmId}) was removed from cluster ${o.cluster} at ${new Date(r.removedAtMs).toISOString()} (scli --remove_standby_mdm); add it again first (scli --add_standby_mdm --new_mdm_ip ${hostOfUrl(o.url)}), then start it`);
    }
    await s.newSession();
    for (;;) {
      const rec = await s.readClusterRecord();
      if (rec) {
        s.adoptCluster(rec);
        s.makeFollower();
        const f = s.follower!;
        if (lastPendingSeq(o.sqlite) > 0 || f.appliedRev === 0 || s.lastMemberRev === 0) {
          await f.reload(f.appliedRev === 0 ? "first start in this cluster" : "changes of an earlier run etcd may not hold");
        } else {
          // our own member key (just written) is under the watched prefix: once the watch has
          // delivered it, everything before it is applied
          await f.catchUp(s.lastMemberRev);
        }
        // writes the caller makes while opening are noticed, and undone by start() on a standby
        enableCapture(o.sqlite, s.tables);
        return s;
      }
      if (await s.campaign()) {
        s.bootstrapping = true;
        return s;
      }
      await Bun.sleep(CAMPAIGN_POLL_MS); // someone else bootstraps; wait for its cluster record
    }
  }

  /** Finish opening: bootstrap the cluster (when this MDM won the first campaign) or follow. */
  async start(): Promise<void> {
    if (this.bootstrapping) {
      await this.bootstrap();
      this.bootstrapping = false;
      this.becomeLeader();
    } else {
      disableCapture(this.o.sqlite, this.tables);
      this.state = "standby";
      if (lastPendingSeq(this.o.sqlite) > 0) await this.follower!.reload("undo local writes made while opening");
      this.setQueryOnly(true);
    }
    this.fenceTimer = setInterval(() => void this.isLeader(), 100);
    this.loop = this.run();
  }

  // ---- MdmMetaStore ----

  term(): number {
    return this.state === "leader" ? this.myTerm : this.knownTerm;
  }

  isLeader(): boolean {
    if (this.state !== "leader") return false;
    const s = this.session;
    if (s === null || !s.alive()) {
      this.stepDown(s?.lost ?? "no lease");
      return false;
    }
    return true;
  }

  leader(): LeaderInfo | null {
    return this.leaderNow;
  }

  appliedRevision(): number {
    return this.appliedRev;
  }

  hasPending(): boolean {
    return lastPendingSeq(this.o.sqlite) > this.shippedSeq;
  }

  async commit(): Promise<void> {
    const want = lastPendingSeq(this.o.sqlite);
    while (this.shippedSeq < want) {
      if (!this.isLeader()) throw notLeader(this.leaderNow, "its change was not committed");
      this.inflight ??= this.shipBatch().finally(() => {
        this.inflight = null;
      });
      await this.inflight;
    }
  }

  sawHigherTerm(term: number, from: string): void {
    if (term > this.knownTerm) this.knownTerm = term;
    if (this.state === "leader" && term > this.myTerm) this.stepDown(`${from} has seen term ${term}, above this MDM's ${this.myTerm}`);
  }

  onLeadershipChange(listener: LeadershipListener): void {
    this.listeners.push(listener);
  }

  async view(): Promise<ClusterView> {
    const [members, etcd] = await Promise.all([memberViews(this.client, this.keys, (recs) => this.leaderRevForView(recs)), etcdViews(this.client)]);
    const registered = await registryViews(this.client, this.keys, members);
    return { kind: "etcd", term: this.term(), leader: this.leaderNow, members, etcd, registered };
  }

  async addStandby(spec: StandbyMdmSpec): Promise<string> {
    if (!this.isLeader()) throw notLeader(this.leaderNow, "only the active MDM registers MDMs");
    const id = await registerStandby(this.client, this.keys, this.leaderGuard(), spec, Date.now());
    consola.info(`mdm: registered standby MDM ${spec.name ?? spec.ips[0]} at ${spec.ips.join(", ")}${spec.port ? `:${spec.port}` : ""} (id ${id}, ${spec.role})`);
    return id;
  }

  async removeStandby(id: string): Promise<void> {
    if (!this.isLeader()) throw notLeader(this.leaderNow, "only the active MDM removes MDMs");
    await unregisterStandby(this.client, this.keys, this.leaderGuard(), id, this.mdmId, Date.now());
    consola.info(`mdm: removed standby MDM ${id}`);
  }

  private leaderGuard(): { key: string; target: "LEASE"; result: "EQUAL"; value: string } {
    return { key: this.keys.leader, target: "LEASE", result: "EQUAL", value: this.session!.id };
  }

  /**
   * --switch_mdm_ownership. Order (so that two MDMs never act at once and the target misses
   * nothing): 1. commit every local change; 2. write the handover record {to, fromTerm} guarded by
   * this MDM's leadership (revision H); 3. wait until the target's member record says it applied
   * H (it rewrites its record when it sees the record naming it): it has every change of this
   * term; 4. step down (stop acting at once) and revoke the lease, which deletes the leader key;
   * 5. the target campaigns on the DELETE; the other standbys (and this MDM) leave it
   * HANDOVER_DEFER_MS to do so before campaigning themselves; 6. resolve once a higher term leads.
   */
  async handOver(ref: MdmRef, beforeResign?: (target: { id: string; name: string }) => Promise<void>): Promise<HandOverResult> {
    if (!this.isLeader()) throw notLeader(this.leaderNow, "only the active MDM hands over ownership");
    const want = (m: MemberRecord) =>
      (ref.id !== undefined && m.id === ref.id.replace(/^0x/i, "")) || (ref.name !== undefined && m.name === ref.name) || (ref.ip !== undefined && hostOfUrl(m.url) === ref.ip);
    const recs = (await this.client.range(this.keys.membersPrefix, { prefix: true })).kvs.map((kv) => parseRecord(MemberRecord, kv.key, kv.value));
    const what = ref.id !== undefined ? `id ${ref.id}` : ref.name !== undefined ? `name ${ref.name}` : `ip ${ref.ip}`;
    const target = recs.find((m) => want(m));
    if (!target) throw new PfError("NOT_FOUND", `no MDM with ${what} in this cluster (MDMs: ${recs.map((m) => `${m.name} ${m.id} ${hostOfUrl(m.url)}`).join(", ")})`);
    if (target.id === this.mdmId) throw new PfError("INVALID_STATE", `MDM ${target.name} is already the active MDM (term ${this.myTerm})`);
    await this.commit();
    const session = this.session!;
    const oldTerm = this.myTerm;
    const guard = { key: this.keys.leader, target: "LEASE" as const, result: "EQUAL" as const, value: session.id };
    const rec: HandoverRecord = { to: target.id, fromTerm: oldTerm };
    const w = await this.client.txn({ compare: [guard], success: [{ put: { key: this.keys.handover, value: JSON.stringify(rec) } }] });
    if (!w.succeeded) {
      this.stepDown("the handover record found another MDM's lease on the leader key");
      throw notLeader(this.leaderNow, "lost leadership before handing over");
    }
    const deadline = performance.now() + HANDOVER_CATCH_UP_MS;
    for (;;) {
      if (!this.isLeader()) throw notLeader(this.leaderNow, "lost leadership while the standby caught up");
      const kv = await this.client.get(this.keys.member(target.id));
      const m = kv ? parseRecord(MemberRecord, kv.key, kv.value) : null;
      if (m === null) throw new PfError("INVALID_STATE", `MDM ${target.name} left the cluster; ownership not switched`);
      if (m.appliedRev >= w.revision) break;
      if (performance.now() > deadline) {
        await this.client.txn({ compare: [guard], success: [{ delete: { key: this.keys.handover } }] }).catch(() => {});
        throw new PfError("INVALID_STATE", `MDM ${target.name} did not catch up (applied revision ${m.appliedRev} of ${w.revision}) within ${HANDOVER_CATCH_UP_MS / 1000} s; ownership not switched`);
      }
      await Bun.sleep(50);
    }
    if (beforeResign) {
      await beforeResign({ id: target.id, name: target.name });
      await this.commit();
    }
    consola.info(`mdm: ${this.o.name} hands ownership over to ${target.name} (caught up to revision ${w.revision})`);
    this.stepDown(`ownership handed over to ${target.name}`);
    const until = performance.now() + HANDOVER_NEW_LEADER_MS;
    for (;;) {
      const kv = await this.client.get(this.keys.leader).catch(() => null);
      if (kv) {
        const l = parseRecord(LeaderRecord, kv.key, kv.value);
        const term = this.termBase + kv.createRevision;
        if (term > oldTerm) return { from: { id: this.mdmId, name: this.o.name }, to: { id: l.id, name: l.name, url: l.url }, oldTerm, term };
      }
      if (performance.now() > until) throw new PfError("UNAVAILABLE", `resigned term ${oldTerm}, but no MDM leads ${HANDOVER_NEW_LEADER_MS / 1000} s later`);
      await Bun.sleep(50);
    }
  }

  async close(): Promise<void> {
    const wasLeader = this.state === "leader";
    this.state = "closed";
    if (this.fenceTimer) clearInterval(this.fenceTimer);
    if (this.memberTimer) clearTimeout(this.memberTimer);
    if (wasLeader) disableCapture(this.o.sqlite, this.tables);
    this.wake?.();
    this.leaderEnded?.();
    await this.inflight?.catch(() => {});
    await this.follower?.stop();
    await this.session?.revoke();
    for (const s of this.revoking) s.abandon(); // not past close: those leases expire by themselves
    await this.loop;
  }

  /** Revision the local sqlite reflects. */
  get appliedRev(): number {
    return this.follower?.appliedRev ?? 0;
  }

  // ---- leader ----

  private async shipBatch(): Promise<void> {
    const { changes, upToSeq } = pendingChanges(this.o.sqlite, this.tableMap, this.shippedSeq);
    if (changes.length === 0) {
      this.shippedSeq = upToSeq;
      return;
    }
    const ops = this.opsOf(changes);
    const bytes = ops.reduce((n, op) => n + ("put" in op ? op.put.key.length + op.put.value.length : 0), 0);
    const maxOps = this.o.requiredTxnOps ?? ETCD_REQUIRED_TXN_OPS;
    const maxBytes = this.o.maxTxnBytes ?? ETCD_MAX_TXN_BYTES;
    if (ops.length > maxOps || bytes > maxBytes) {
      this.stepDown(`a metadata change of ${ops.length} rows / ${bytes} bytes is over etcd's txn limit (${maxOps} ops, ${maxBytes} bytes)`);
      throw new PfError("TOO_BIG", `metadata change of ${ops.length} rows (${bytes} bytes) is over the etcd transaction limit of ${maxOps} rows / ${maxBytes} bytes; nothing was changed`);
    }
    const session = this.session!;
    let ok: boolean;
    let revision: number;
    try {
      const r = await this.client.txn({ compare: [{ key: this.keys.leader, target: "LEASE", result: "EQUAL", value: session.id }], success: ops }, this.timing.ttlS * 1000);
      ok = r.succeeded;
      revision = r.revision;
    } catch (e) {
      this.stepDown(`etcd did not confirm a metadata commit (${(e as Error).message})`);
      throw new PfError("UNAVAILABLE", `metadata change not confirmed by etcd: ${(e as Error).message}`);
    }
    if (!ok) {
      this.stepDown("the guarded commit found another MDM's lease on the leader key");
      throw notLeader(this.leaderNow, "lost leadership during a commit");
    }
    this.follower!.withWrites(() => {
      dropPending(this.o.sqlite, upToSeq);
      writeAppliedRev(this.o.sqlite, revision, this.clusterKey);
    });
    this.follower!.appliedRev = revision;
    this.shippedSeq = upToSeq;
    this.stats.txns++;
    this.stats.ops += ops.length;
    const nowMs = performance.now();
    this.commitHistory.push({ atMs: nowMs, rev: revision });
    while (this.commitHistory.length > 1 && this.commitHistory[1]!.atMs < nowMs - CAUGHT_UP_SLACK_MS) this.commitHistory.shift();
    void this.putMember();
  }

  private opsOf(changes: readonly RowChange[]): TxnOp[] {
    return changes.map((c) => {
      const key = this.keys.row(c.table, c.pk);
      return c.row === null ? { delete: { key } } : { put: { key, value: JSON.stringify(c.row) } };
    });
  }

  private becomeLeader(): void {
    if (this.state === "closed") return;
    this.setQueryOnly(false);
    enableCapture(this.o.sqlite, this.tables);
    this.shippedSeq = lastPendingSeq(this.o.sqlite);
    this.state = "leader";
    this.knownTerm = Math.max(this.knownTerm, this.myTerm);
    this.leaderNow = { id: this.mdmId, name: this.o.name, url: this.o.url, term: this.myTerm };
    this.stats.takeovers++;
    this.leaderDone = new Promise<void>((resolve) => {
      this.leaderEnded = resolve;
    });
    consola.info(`mdm: ${this.o.name} is the active MDM, term ${this.myTerm} (etcd revision ${this.appliedRev})`);
    void this.putMember(true);
    for (const l of this.listeners) l(true);
  }

  /** Stop acting now (synchronous part); the run loop undoes unshipped changes and follows. */
  private stepDown(why: string): void {
    if (this.state !== "leader") return;
    this.state = "standby";
    this.stats.stepDowns++;
    disableCapture(this.o.sqlite, this.tables);
    this.setQueryOnly(true);
    if (this.leaderNow?.id === this.mdmId) this.leaderNow = null;
    consola.warn(`mdm: ${this.o.name} steps down from term ${this.myTerm}: ${why}`);
    for (const l of this.listeners) l(false);
    this.leaderEnded?.();
  }

  // ---- the run loop (standby: follow and campaign) ----

  /** The state, read through a call so that TypeScript does not narrow it across awaits. */
  private get closed(): boolean {
    return this.state === "closed";
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        if (this.state === "leader") {
          await this.leaderDone;
          this.leaderEnded = null;
          if (this.closed) return;
          await this.afterStepDown();
          continue;
        }
        await this.standbyStep();
      } catch (e) {
        if (this.closed) return;
        consola.warn(`mdm: HA loop: ${(e as Error).message}`);
        await Bun.sleep(CAMPAIGN_POLL_MS);
      }
    }
  }

  private async afterStepDown(): Promise<void> {
    await this.inflight?.catch(() => {});
    const old = this.session;
    this.session = null;
    consola.debug(`mdm: ${this.o.name} after stepping down from term ${this.myTerm}: revoking lease ${old?.id ?? "(none)"}`);
    // a revoke etcd did not take (no leader, no quorum) is retried in the background: the first one
    // etcd takes deletes the leader key at once, instead of when the refreshed lease runs out
    // (TTL + the election timeout after an etcd election)
    if (old && !(await old.revoke())) {
      this.revoking.add(old);
      void old.revoke(REVOKE_RETRY_FOR_MS).finally(() => this.revoking.delete(old));
    }
    if (lastPendingSeq(this.o.sqlite) > 0) {
      await this.follower!.reload("undo changes etcd did not take");
      this.shippedSeq = 0;
    }
    await this.follower!.start();
  }

  private async standbyStep(): Promise<void> {
    if (this.session === null || this.session.lost !== null) await this.newSession();
    if (!this.follower!.watching) await this.follower!.start();
    const kv = await this.client.get(this.keys.leader);
    if (kv) {
      this.noteLeader(kv.value, kv.createRevision);
      const seen = `${kv.createRevision}/${kv.lease ?? "-"}`;
      if (seen !== this.leaderKeySeen) {
        this.leaderKeySeen = seen;
        consola.debug(`mdm: ${this.o.name} (lease ${this.session?.id}) sees the leader key of ${this.leaderNow?.name} (term ${this.leaderNow?.term}, create revision ${kv.createRevision}, lease ${kv.lease ?? "none"}${kv.lease === this.session?.id ? ", ours" : ""})`);
      }
      await this.sleepUntilWoken(CAMPAIGN_POLL_MS);
      return;
    }
    this.leaderNow = null;
    if (this.removedBy !== null || (await this.client.get(this.keys.removed(this.mdmId)))) {
      this.noteRemoved();
      await this.sleepUntilWoken(CAMPAIGN_POLL_MS);
      return;
    }
    if (await this.deferToHandover()) return;
    if (!this.session!.fitToLead()) await this.replaceSession();
    if (!(await this.campaign())) return;
    const caughtUp = await this.follower!.waitFor(this.myTerm - this.termBase, CATCH_UP_TIMEOUT_MS);
    if (this.state === "closed") return;
    if (!caughtUp || this.session === null || !this.session.alive()) {
      const why = !caughtUp ? `the watch did not deliver revision ${this.myTerm - this.termBase} within ${CATCH_UP_TIMEOUT_MS} ms (seen ${this.follower!.seenRev})` : this.session === null ? "no lease" : `lease ${this.session.id} lost: ${this.session.lost ?? "?"}`;
      consola.warn(`mdm: won term ${this.myTerm} but could not catch up to it (${why}); resigning (and watching anew)`);
      await this.session?.revoke();
      this.session = null;
      await this.follower!.stop(); // a stream that went silent is replaced by a new one
      return;
    }
    consola.debug(`mdm: ${this.o.name} caught up to term ${this.myTerm} (revision ${this.follower!.seenRev}), lease ${this.session.id} has ${Math.round(this.session.remainingMs)} ms before its fencing deadline`);
    await this.follower!.stop();
    this.becomeLeader();
  }

  /** The leader key is gone: true (after a short sleep) while a handover to another MDM is due. */
  private async deferToHandover(): Promise<boolean> {
    const kv = await this.client.get(this.keys.handover);
    if (!kv) return false;
    const h = parseRecord(HandoverRecord, kv.key, kv.value);
    // a record of an older term is stale: its target led, or never did and someone else did
    if (h.to === this.mdmId || h.fromTerm < this.knownTerm) return false;
    const key = `${h.to}@${h.fromTerm}`;
    if (this.handoverSeen?.key !== key) this.handoverSeen = { key, atMs: performance.now() };
    if (performance.now() - this.handoverSeen.atMs >= HANDOVER_DEFER_MS) return false;
    await this.sleepUntilWoken(100);
    return true;
  }

  /** --remove_standby_mdm named this MDM: never campaign again in this run; drop the member record. */
  private onRemovedEvent(e: WatchedEvent): void {
    const r = parseRecord(RemovedRecord, e.key, e.value);
    if (r.id !== this.mdmId) return;
    // a watch catching up replays old revisions: act on the record only while it still exists
    void this.client
      .get(this.keys.removed(this.mdmId))
      .then((kv) => {
        if (kv) this.noteRemoved();
      })
      .catch((err: unknown) => consola.warn(`mdm: could not check the removal record of ${this.o.name}: ${(err as Error).message}`));
  }

  private noteRemoved(): void {
    if (this.removedBy !== null) return;
    this.removedBy = "removeStandbyMdm";
    consola.error(`mdm: ${this.o.name} (id ${this.mdmId}) was removed from cluster ${this.keys.cluster} (scli --remove_standby_mdm): it no longer campaigns; stop it, or add it again (scli --add_standby_mdm --new_mdm_ip ${hostOfUrl(this.o.url)}) and restart it`);
    void this.client.deleteRange(this.keys.member(this.mdmId)).catch(() => {});
  }

  private onHandoverEvent(e: WatchedEvent): void {
    const h = parseRecord(HandoverRecord, e.key, e.value);
    // tell the resigning MDM at once that this standby has applied everything up to the record
    if (h.to === this.mdmId) void this.putMember(true);
  }

  private sleepUntilWoken(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private onLeaderEvent(e: WatchedEvent): void {
    if (e.type === "DELETE") {
      consola.debug(`mdm: ${this.o.name} saw the leader key deleted at revision ${e.modRevision}`);
      this.leaderNow = null;
      this.wake?.();
    } else {
      this.noteLeader(e.value, e.createRevision);
    }
  }

  private noteLeader(value: string, createRevision: number): void {
    const rec = parseRecord(LeaderRecord, this.keys.leader, value);
    const term = this.termBase + createRevision;
    if (term > this.knownTerm) this.knownTerm = term;
    this.leaderNow = { id: rec.id, name: rec.name, url: rec.url, term };
  }

  /** One campaign txn; true when this MDM now holds the leader key (term set). */
  private async campaign(): Promise<boolean> {
    const session = this.session!;
    const rec: LeaderRecord = { id: this.mdmId, name: this.o.name, url: this.o.url };
    const t0 = performance.now();
    const r = await this.client.txn({
      compare: [{ key: this.keys.leader, target: "CREATE", result: "EQUAL", value: 0 }],
      success: [{ put: { key: this.keys.leader, value: JSON.stringify(rec), lease: session.id } }],
      failure: [{ range: { key: this.keys.leader } }],
    });
    const took = `${Math.round(performance.now() - t0)} ms`;
    if (r.succeeded) {
      this.myTerm = this.termBase + r.revision;
      consola.debug(`mdm: ${this.o.name} won the campaign with lease ${session.id}: term ${this.myTerm} (revision ${r.revision}, ${took}, ${Math.round(session.remainingMs)} ms before the fencing deadline)`);
      return true;
    }
    const kv = r.ranges[0]?.[0];
    if (kv && kv.lease === session.id) {
      // our own earlier attempt went through (its answer was lost)
      this.myTerm = this.termBase + kv.createRevision;
      consola.debug(`mdm: ${this.o.name} finds its own earlier campaign won with lease ${session.id}: term ${this.myTerm} (${took})`);
      return true;
    }
    consola.debug(`mdm: ${this.o.name} lost the campaign with lease ${session.id} (${took}): the leader key is held by lease ${kv?.lease ?? "?"} since revision ${kv?.createRevision ?? "?"}`);
    if (kv) this.noteLeader(kv.value, kv.createRevision);
    return false;
  }

  // ---- sessions, members, bootstrap ----

  private async newSession(): Promise<void> {
    this.session = await LeaseSession.open(this.client, this.timing, (why) => {
      if (this.state === "leader") this.stepDown(why);
      else this.wake?.();
    });
    this.lastMemberPutMs = -Infinity;
    await this.putMember(true);
  }

  /**
   * A standby about to campaign on a session whose keepalives are late: take a fresh lease first
   * (granted after the trouble, it has its full budget), then revoke the old one. If etcd grants
   * none, this throws and the old session stays until it ends by itself.
   */
  private async replaceSession(): Promise<void> {
    const old = this.session!;
    const why = old.lost !== null ? `it ended (${old.lost})` : `its keepalives are late (${Math.round(old.remainingMs)} ms before its fencing deadline, a term needs ${old.minLeadBudgetMs})`;
    consola.info(`mdm: ${this.o.name} does not campaign on lease ${old.id}: ${why}; taking a fresh lease`);
    await this.newSession();
    old.stop();
    void old.revoke();
  }

  private async putMember(force = false): Promise<void> {
    const s = this.session;
    if (s === null || s.lost !== null || this.removedBy !== null) return;
    const now = performance.now();
    if (!force && now - this.lastMemberPutMs < MEMBER_UPDATE_MS) {
      // trailing write: the record catches up with the last change within MEMBER_UPDATE_MS
      this.memberTimer ??= setTimeout(() => {
        this.memberTimer = null;
        void this.putMember();
      }, MEMBER_UPDATE_MS);
      return;
    }
    this.lastMemberPutMs = now;
    const rec: MemberRecord = { id: this.mdmId, name: this.o.name, url: this.o.url, appliedRev: this.appliedRev, role: this.state === "leader" ? "leader" : "standby" };
    try {
      this.lastMemberRev = await this.client.put(this.keys.member(this.mdmId), JSON.stringify(rec), s.id);
    } catch (e) {
      consola.debug(`mdm: member record not written: ${(e as Error).message}`);
    }
  }

  private async readClusterRecord(): Promise<ClusterRecord | null> {
    const kv = await this.client.get(this.keys.clusterRecord);
    return kv ? parseRecord(ClusterRecord, kv.key, kv.value) : null;
  }

  private adoptCluster(rec: ClusterRecord): void {
    if (rec.schemaVersion !== this.o.schemaVersion) {
      throw new PfError("INVALID_STATE", `the cluster in etcd (${this.keys.root}) has schema version ${rec.schemaVersion}, this pf binary ${this.o.schemaVersion}: run the same pf version on every MDM`);
    }
    this.termBase = rec.termBase;
    this.clusterKey = rec.systemId;
  }

  private makeFollower(): void {
    this.follower = new Follower({
      sqlite: this.o.sqlite,
      client: this.client,
      keys: this.keys,
      tables: this.tables,
      clusterKey: this.clusterKey,
      onLeaderEvent: (e) => this.onLeaderEvent(e),
      onHandoverEvent: (e) => this.onHandoverEvent(e),
      onRemovedEvent: (e) => this.onRemovedEvent(e),
      onApplied: () => void this.putMember(),
      queryOnlyAfterWrites: () => this.state === "standby" || this.state === "closed",
    });
  }

  /** Export the local state as the cluster's first state (etcd_cluster_ops.ts). */
  private async bootstrap(): Promise<void> {
    const system = this.o.sqlite.query<{ id: string }, []>("SELECT id FROM system").get();
    if (!system) throw new PfError("INTERNAL", "bootstrap needs the System row");
    const rec: ClusterRecord = { systemId: system.id, schemaVersion: this.o.schemaVersion, termBase: readLocalTerm(this.o.sqlite), bootstrappedAtMs: Date.now() };
    // the term base moves every term above any term this MDM handed out in sqlite mode
    this.termBase = rec.termBase;
    this.myTerm += rec.termBase;
    this.clusterKey = rec.systemId;
    const done = await bootstrapCluster({ client: this.client, keys: this.keys, sqlite: this.o.sqlite, tables: this.tables, leaseId: this.session!.id, record: rec, opsOf: (rows) => this.opsOf(rows) });
    this.makeFollower();
    this.follower!.withWrites(() => writeAppliedRev(this.o.sqlite, done.revision, this.clusterKey));
    this.follower!.appliedRev = done.revision;
    consola.info(`mdm: bootstrapped cluster ${this.o.cluster} in etcd: ${done.rows} rows, system ${rec.systemId}`);
  }

  private setQueryOnly(on: boolean): void {
    this.o.sqlite.run(`PRAGMA query_only = ${on ? "ON" : "OFF"}`);
  }

  // ---- cluster view ----

  /** The leader's revision as of CAUGHT_UP_SLACK_MS ago (member records lag by design). */
  private leaderRevForView(recs: MemberRecord[]): number {
    if (this.state !== "leader") return recs.find((m) => m.role === "leader")?.appliedRev ?? 0;
    const cutoff = performance.now() - CAUGHT_UP_SLACK_MS;
    const old = this.commitHistory.filter((h) => h.atMs <= cutoff);
    return old[old.length - 1]?.rev ?? this.commitHistory[0]?.rev ?? this.appliedRev;
  }
}
