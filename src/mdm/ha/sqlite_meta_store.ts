// The default metadata store: one MDM, its sqlite database is the truth (meta_store.ts).
// The term is a counter in the local table mdm_term, bumped in its own transaction when the MDM
// opens the store, so a restarted MDM speaks with a term above every answer its previous run
// ever sent (SDSs and SDCs refuse the lower one). Loads no etcd code.

import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import consola from "consola";
import { PfError } from "../../proto/errors.ts";
import type { ClusterView, HandOverResult, LeaderInfo, LeadershipListener, MdmMetaStore } from "./meta_store.ts";

/** Bump and return the local term counter (1 on the first start). */
export function bumpLocalTerm(sqlite: Database): number {
  const row = sqlite
    .query<{ term: number }, []>("INSERT INTO mdm_term (id, term) VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET term = term + 1 RETURNING term")
    .get();
  return row?.term ?? 1;
}

/** The local term counter without changing it (0 before the first start). */
export function readLocalTerm(sqlite: Database): number {
  return sqlite.query<{ term: number }, []>("SELECT term FROM mdm_term WHERE id = 1").get()?.term ?? 0;
}

export class SqliteMetaStore implements MdmMetaStore {
  readonly kind = "sqlite" as const;
  readonly mdmId: string;
  readonly stats = { txns: 0, ops: 0, takeovers: 0, stepDowns: 0 };
  readonly maxRowsPerCommit = Number.POSITIVE_INFINITY; // nothing is shipped
  private currentTerm: number;
  private url = "";

  constructor(private readonly sqlite: Database) {
    this.currentTerm = bumpLocalTerm(sqlite);
    this.mdmId = randomBytes(8).toString("hex");
  }

  /** The URL this MDM serves (for the cluster view). */
  setUrl(url: string): void {
    this.url = url;
  }

  async start(): Promise<void> {}
  term(): number {
    return this.currentTerm;
  }
  isLeader(): boolean {
    return true;
  }
  leader(): LeaderInfo {
    return { id: this.mdmId, name: "mdm", url: this.url, term: this.currentTerm };
  }
  appliedRevision(): number {
    return 0;
  }
  hasPending(): boolean {
    return false;
  }
  async commit(): Promise<void> {
    // a sqlite transaction that returned is durable (WAL, synchronous=FULL): nothing to ship
  }
  /**
   * A single MDM has no rival: a higher term can only come from a run whose counter was lost
   * (the database restored from a backup). Jump above it, loudly, so the SDSs listen again.
   */
  sawHigherTerm(term: number, from: string): void {
    if (term < this.currentTerm) return;
    const next = term + 1;
    this.sqlite.run("UPDATE mdm_term SET term = ? WHERE id = 1", [next]);
    consola.error(`mdm: ${from} knows term ${term}, above this MDM's ${this.currentTerm} (database restored from a backup?); continuing with term ${next}`);
    this.currentTerm = next;
  }
  onLeadershipChange(_listener: LeadershipListener): void {
    // always the leader
  }
  async view(): Promise<ClusterView> {
    const leader = this.leader();
    return { kind: "sqlite", term: this.currentTerm, leader, members: [{ id: leader.id, name: leader.name, url: leader.url, role: "leader", appliedRev: 0, caughtUp: true }], etcd: [], registered: [] };
  }
  async handOver(): Promise<HandOverResult> {
    throw new PfError("INVALID_STATE", "this MDM runs alone (sqlite store): there is no standby MDM to hand ownership to; run MDMs on etcd for that (docs/design.md, \"MDM high availability\")");
  }
  async addStandby(): Promise<string> {
    throw new PfError("INVALID_STATE", "this MDM runs alone (sqlite store): standby MDMs need the metadata on etcd (pf mdm --etcd-endpoints, YAML mdm.etcd; docs/design.md \"MDM high availability\")");
  }
  async removeStandby(): Promise<void> {
    throw new PfError("INVALID_STATE", "this MDM runs alone (sqlite store): there is no standby MDM to remove");
  }
  async close(): Promise<void> {}
}
