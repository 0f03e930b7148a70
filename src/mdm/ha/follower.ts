// A standby MDM's copy of the shared metadata: it replays etcd's meta/ keys into the local
// sqlite. catchUp/start watch /pf/<cluster>/ from appliedRev + 1 and apply each revision's row
// changes in one sqlite transaction together with the new appliedRev; a compacted watch (the
// revisions it needed are gone) reloads everything by a paged range at one revision (at most
// once per RELOAD_MIN_INTERVAL_MS) and watches on from there. Leader-key events are handed to
// onLeaderEvent (the campaign loop wakes on a DELETE).
//
// Invariants: local sqlite == etcd's meta/ at appliedRev (the persisted one may lag the
// in-memory one for revisions without meta changes, and replaying those is idempotent); writes
// happen only through withWrites (the connection is query_only otherwise, so a stray write on a
// standby fails loudly instead of diverging); seenRev only grows.

import type { Database } from "bun:sqlite";
import { consola } from "consola";
import { EtcdError, type EtcdClient } from "../../store/etcd_client.ts";
import { EtcdWatch, type WatchedEvent } from "../../store/etcd_watch.ts";
import { applyChanges, clearPending, readAppliedRev, replaceAll, writeAppliedRev, type RowChange, type TableInfo } from "../../store/row_capture.ts";
import { rowChangeOf, type EtcdKeys } from "./etcd_keys.ts";

const RELOAD_PAGE_KEYS = 2000;
const RELOAD_MIN_INTERVAL_MS = 1000;

export interface FollowerDeps {
  sqlite: Database;
  client: EtcdClient;
  keys: EtcdKeys;
  tables: readonly TableInfo[];
  /** the cluster's identity (its System id): a local database of another cluster is reloaded */
  clusterKey: string;
  onLeaderEvent(e: WatchedEvent): void;
  /** a handover record was written (after the revision is applied) */
  onHandoverEvent(e: WatchedEvent): void;
  /** an MDM was removed by --remove_standby_mdm (mdm/removed/<id> written) */
  onRemovedEvent(e: WatchedEvent): void;
  /** meta changes were applied (the member record's appliedRev may be rewritten) */
  onApplied(): void;
  /** query_only state to restore after a write (on for a standby) */
  queryOnlyAfterWrites(): boolean;
}

export class Follower {
  /** etcd revision the local sqlite reflects */
  appliedRev: number;
  /** highest revision the watch has delivered (or the reload read at) */
  seenRev = 0;
  reloads = 0;
  private watch: EtcdWatch | null = null;
  private active = false;
  private waiters: { rev: number; resolve: () => void }[] = [];
  private lastReloadMs = -Infinity;
  private reloading: Promise<void> | null = null;
  private readonly tableMap: Map<string, TableInfo>;

  constructor(private readonly d: FollowerDeps) {
    this.tableMap = new Map(d.tables.map((t) => [t.name, t]));
    const persisted = readAppliedRev(d.sqlite);
    this.appliedRev = persisted !== null && persisted.clusterKey === d.clusterKey ? persisted.appliedRev : 0;
  }

  /** Run fn with writes allowed (the connection stays query_only otherwise). */
  withWrites<T>(fn: () => T): T {
    this.d.sqlite.run("PRAGMA query_only = OFF");
    try {
      return this.d.sqlite.transaction(fn)();
    } finally {
      if (this.d.queryOnlyAfterWrites()) this.d.sqlite.run("PRAGMA query_only = ON");
    }
  }

  get watching(): boolean {
    return this.watch !== null;
  }

  /** Start following from appliedRev + 1 (a full reload first when nothing was ever applied). */
  async start(): Promise<void> {
    if (this.active) return;
    this.active = true;
    if (this.appliedRev === 0) await this.reload("first start");
    if (this.active && this.watch === null) this.startWatch();
  }

  /** Bring the local state up to revision `head` (a revision of a key under the cluster's
   *  prefix, so the watch delivers it), then stop watching. */
  async catchUp(head: number): Promise<void> {
    await this.start();
    if (!(await this.waitFor(head, 10_000))) {
      await this.stop();
      await this.reload("catch-up by watch too slow");
      return;
    }
    await this.stop();
  }

  async stop(): Promise<void> {
    this.active = false;
    const w = this.watch;
    this.watch = null;
    await w?.stop();
  }

  /** Resolve once the watch has delivered revision rev (or later). */
  waitFor(rev: number, timeoutMs: number): Promise<boolean> {
    if (this.seenRev >= rev) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== entry);
        resolve(false);
      }, timeoutMs);
      const entry = {
        rev,
        resolve: () => {
          clearTimeout(t);
          resolve(true);
        },
      };
      this.waiters.push(entry);
    });
  }

  /** Replace the local state by etcd's meta/ at one revision (also clears pending changes). */
  reload(why: string, rateLimited = false): Promise<void> {
    this.reloading ??= this.doReload(why, rateLimited).finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  private async doReload(why: string, rateLimited: boolean): Promise<void> {
    // reloads forced by compaction are spaced out (an etcd in trouble is not hammered by them)
    const waitMs = this.lastReloadMs + RELOAD_MIN_INTERVAL_MS - performance.now();
    if (rateLimited && waitMs > 0) await Bun.sleep(waitMs);
    this.lastReloadMs = performance.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const { rows, revision } = await this.rangeAll();
        this.withWrites(() => {
          replaceAll(this.d.sqlite, this.d.tables, rows);
          clearPending(this.d.sqlite);
          writeAppliedRev(this.d.sqlite, revision, this.d.clusterKey);
        });
        this.appliedRev = revision;
        this.advance(revision);
        this.reloads++;
        consola.info(`mdm: reloaded ${rows.length} metadata rows from etcd at revision ${revision} (${why})`);
        return;
      } catch (e) {
        if (!(e instanceof EtcdError) || attempt >= 20) throw e;
        await Bun.sleep(250);
      }
    }
  }

  /** Every meta/ key at one revision, paged. */
  private async rangeAll(): Promise<{ rows: RowChange[]; revision: number }> {
    const prefix = this.d.keys.metaPrefix;
    const first = await this.d.client.range(prefix, { prefix: true, limit: RELOAD_PAGE_KEYS });
    const revision = first.revision;
    const kvs = [...first.kvs];
    let more = first.more;
    while (more) {
      const from = kvs[kvs.length - 1]!.key + "\0";
      const page = await this.d.client.range(prefix, { prefix: true, limit: RELOAD_PAGE_KEYS, revision, fromKey: from });
      kvs.push(...page.kvs);
      more = page.more;
    }
    const rows: RowChange[] = [];
    for (const kv of kvs) {
      const r = rowChangeOf(this.d.keys, kv.key, kv.value);
      if (r) rows.push(r);
    }
    return { rows, revision };
  }

  private startWatch(): void {
    this.watch = new EtcdWatch(
      this.d.client,
      { prefix: this.d.keys.root, startRevision: this.appliedRev + 1 },
      {
        onEvents: (events, rev) => this.onEvents(events, rev),
        onProgress: (rev) => this.advance(rev),
        onCompacted: (compactRev) => void this.onCompacted(compactRev),
      },
    );
  }

  private onEvents(events: WatchedEvent[], rev: number): void {
    const changes: RowChange[] = [];
    const handovers: WatchedEvent[] = [];
    for (const e of events) {
      const c = rowChangeOf(this.d.keys, e.key, e.type === "DELETE" ? null : e.value);
      if (c) changes.push(c);
      else if (e.key === this.d.keys.leader) this.d.onLeaderEvent(e);
      else if (e.key === this.d.keys.handover && e.type !== "DELETE") handovers.push(e);
      else if (e.key.startsWith(this.d.keys.removedPrefix) && e.type !== "DELETE") this.d.onRemovedEvent(e);
    }
    if (changes.length > 0) {
      try {
        this.withWrites(() => {
          applyChanges(this.d.sqlite, this.tableMap, changes);
          writeAppliedRev(this.d.sqlite, rev, this.d.clusterKey);
        });
      } catch (e) {
        // never skip a revision: start over from a full range instead
        consola.error(`mdm: replaying etcd revision ${rev} failed (${(e as Error).message}); reloading the metadata`);
        void this.restartFromReload("a replay failed");
        return;
      }
    }
    this.appliedRev = rev;
    this.advance(rev);
    if (changes.length > 0) this.d.onApplied();
    for (const e of handovers) this.d.onHandoverEvent(e);
  }

  private async onCompacted(compactRev: number): Promise<void> {
    consola.warn(`mdm: etcd compacted past revision ${this.appliedRev + 1} (now ${compactRev}); reloading the metadata`);
    await this.restartFromReload("watch behind compaction");
  }

  /** Drop the watch, reload everything (rate-limited), watch on from the reload's revision. */
  private async restartFromReload(why: string): Promise<void> {
    const w = this.watch;
    this.watch = null;
    await w?.stop();
    for (;;) {
      try {
        await this.reload(why, true);
        break;
      } catch (e) {
        consola.error(`mdm: reload (${why}) failed: ${(e as Error).message}; retrying`);
        if (!this.active) return;
      }
    }
    if (this.active && this.watch === null) this.startWatch();
  }

  private advance(rev: number): void {
    if (rev > this.seenRev) this.seenRev = rev;
    const ready = this.waiters.filter((w) => w.rev <= this.seenRev);
    this.waiters = this.waiters.filter((w) => w.rev > this.seenRev);
    for (const w of ready) w.resolve();
  }
}
