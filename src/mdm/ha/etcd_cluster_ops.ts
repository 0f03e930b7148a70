// One-off and read-only etcd operations of HA mode, kept out of the store's state machine
// (etcd_meta_store.ts): probing etcd's transaction limit, writing a new cluster's first state
// (bootstrap), and reading the cluster view (MDM member records, etcd members' health).
//
// Invariants: the bootstrap writes only under the leader guard (LEASE(mdm/leader) == lease) and
// the cluster record last (CREATE == 0): until it exists, no MDM follows a half-written state,
// and a bootstrapper that died half-way is followed by one that deletes its rows first.

import type { Database } from "bun:sqlite";
import { PfError } from "../../proto/errors.ts";
import { EtcdError, type Compare, type EtcdClient, type TxnOp } from "../../store/etcd_client.ts";
import { exportAll, type RowChange, type TableInfo } from "../../store/row_capture.ts";
import { MemberRecord, parseRecord, type ClusterRecord, type EtcdKeys } from "./etcd_keys.ts";
import type { EtcdMemberView, MdmMemberView } from "./meta_store.ts";

const BOOTSTRAP_CHUNK_OPS = 1000;

/** Refuse to run against an etcd whose --max-txn-ops is below what a metadata change needs. */
export async function probeTxnLimit(client: EtcdClient, keys: EtcdKeys, ops: number, maxTxnBytes: number): Promise<void> {
  const compare: Compare[] = Array.from({ length: ops }, () => ({ key: keys.probe, target: "VERSION", result: "EQUAL", value: 0 }));
  try {
    await client.txn({ compare, success: [] }, 5000);
  } catch (e) {
    if (e instanceof EtcdError && e.grpcCode !== null && /too many operations/i.test(e.message)) {
      throw new PfError("BAD_REQUEST", `etcd refuses transactions of ${ops} operations: start every etcd member with --max-txn-ops=${ops} (or more) and --max-request-bytes=${2 * maxTxnBytes}`);
    }
    throw e;
  }
}

export interface BootstrapInput {
  client: EtcdClient;
  keys: EtcdKeys;
  sqlite: Database;
  tables: readonly TableInfo[];
  leaseId: string;
  record: ClusterRecord;
  opsOf(rows: readonly RowChange[]): TxnOp[];
}

/** Export the local state as the cluster's first state, then the cluster record; its revision. */
export async function bootstrapCluster(b: BootstrapInput): Promise<{ revision: number; rows: number }> {
  const guard: Compare = { key: b.keys.leader, target: "LEASE", result: "EQUAL", value: b.leaseId };
  const lost = () => new PfError("NOT_LEADER", "lost leadership while bootstrapping the cluster in etcd");
  const clean = await b.client.txn({ compare: [guard], success: [{ delete: { key: b.keys.metaPrefix, prefix: true } }] });
  if (!clean.succeeded) throw lost();
  const rows = exportAll(b.sqlite, b.tables);
  const ops = b.opsOf(rows);
  for (let i = 0; i < ops.length; i += BOOTSTRAP_CHUNK_OPS) {
    if (!(await b.client.txn({ compare: [guard], success: ops.slice(i, i + BOOTSTRAP_CHUNK_OPS) })).succeeded) throw lost();
  }
  const r = await b.client.txn({
    compare: [guard, { key: b.keys.clusterRecord, target: "CREATE", result: "EQUAL", value: 0 }],
    success: [{ put: { key: b.keys.clusterRecord, value: JSON.stringify(b.record) } }],
  });
  if (!r.succeeded) throw lost();
  return { revision: r.revision, rows: rows.length };
}

/** MDM member records; a standby is caught up when its record reached leaderRev. */
export async function memberViews(client: EtcdClient, keys: EtcdKeys, leaderRev: (recs: MemberRecord[]) => number): Promise<MdmMemberView[]> {
  const r = await client.range(keys.membersPrefix, { prefix: true });
  const recs = r.kvs.map((kv) => parseRecord(MemberRecord, kv.key, kv.value));
  const rev = leaderRev(recs);
  return recs.map((m) => ({ id: m.id, name: m.name, url: m.url, role: m.role, appliedRev: m.appliedRev, caughtUp: m.role === "leader" || m.appliedRev >= rev }));
}

/** Every etcd member with its health (its own status answered within 500 ms). */
export async function etcdViews(client: EtcdClient): Promise<EtcdMemberView[]> {
  const list = await client.memberList();
  return Promise.all(
    list.members.map(async (m) => {
      const url = m.clientURLs[0];
      if (!url) return { name: m.name, clientUrls: [], healthy: false, isLeader: false };
      try {
        const st = await client.status(url, 500);
        return { name: m.name, clientUrls: m.clientURLs, healthy: true, isLeader: st.leader === m.ID };
      } catch {
        return { name: m.name, clientUrls: m.clientURLs, healthy: false, isLeader: false };
      }
    }),
  );
}
