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
import { randomBytes } from "node:crypto";
import { MemberRecord, parseRecord, RegistryRecord, RemovedRecord, type ClusterRecord, type EtcdKeys } from "./etcd_keys.ts";
import type { EtcdMemberView, MdmMemberView, RegisteredMdmView, StandbyMdmSpec } from "./meta_store.ts";

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

// ---- the MDM registry (--add_standby_mdm / --remove_standby_mdm) ----

function hostPortOf(url: string): { host: string; port: number | null } {
  try {
    const u = new URL(url);
    return { host: u.hostname.replace(/^\[|\]$/g, ""), port: u.port === "" ? null : Number(u.port) };
  } catch {
    return { host: url, port: null };
  }
}

/** Does a running MDM (its URL) sit at a registered address (any of its IPs, its port if given)? */
export function registryMatches(rec: { ips: string[]; port: number | null }, url: string): boolean {
  const at = hostPortOf(url);
  return rec.ips.includes(at.host) && (rec.port === null || rec.port === at.port);
}

async function registryRecords(client: EtcdClient, keys: EtcdKeys): Promise<RegistryRecord[]> {
  const r = await client.range(keys.registryPrefix, { prefix: true });
  return r.kvs.map((kv) => parseRecord(RegistryRecord, kv.key, kv.value));
}

/** The registry as the cluster view shows it: each entry with the running MDM at its address. */
export async function registryViews(client: EtcdClient, keys: EtcdKeys, members: readonly MdmMemberView[]): Promise<RegisteredMdmView[]> {
  return (await registryRecords(client, keys)).map((r) => ({
    id: r.id,
    name: r.name,
    ips: r.ips,
    port: r.port,
    role: r.role,
    managementIps: r.managementIps,
    runningAs: members.find((m) => registryMatches(r, m.url))?.id ?? null,
  }));
}

/** Register an MDM (guarded by the caller's leadership); its new id. Clears a removal of an MDM at that address. */
export async function registerStandby(client: EtcdClient, keys: EtcdKeys, guard: Compare, spec: StandbyMdmSpec, nowMs: number): Promise<string> {
  const existing = await registryRecords(client, keys);
  const port = spec.port ?? null;
  const name = spec.name ?? `mdm-${spec.ips[0]}`;
  const sameName = existing.find((r) => r.name === name);
  if (sameName) throw new PfError("ALREADY_EXISTS", `an MDM named ${name} is registered already (id ${sameName.id}); give another --new_mdm_name`);
  const sameAddr = existing.find((r) => r.ips.some((ip) => spec.ips.includes(ip)) && (r.port === null || port === null || r.port === port));
  if (sameAddr) throw new PfError("ALREADY_EXISTS", `MDM ${sameAddr.name} (id ${sameAddr.id}) is registered at ${sameAddr.ips.join(", ")}${sameAddr.port ? `:${sameAddr.port}` : ""} already`);
  const rec: RegistryRecord = { id: randomBytes(8).toString("hex"), name, ips: spec.ips, port, role: spec.role, managementIps: spec.managementIps ?? spec.ips, addedAtMs: nowMs };
  const removed = (await client.range(keys.removedPrefix, { prefix: true })).kvs.map((kv) => parseRecord(RemovedRecord, kv.key, kv.value));
  const cleared = removed.filter((x) => registryMatches(rec, x.url));
  const r = await client.txn({
    compare: [guard, { key: keys.registered(rec.id), target: "CREATE", result: "EQUAL", value: 0 }],
    success: [{ put: { key: keys.registered(rec.id), value: JSON.stringify(rec) } }, ...cleared.map((x) => ({ delete: { key: keys.removed(x.id) } }))],
  });
  if (!r.succeeded) throw new PfError("NOT_LEADER", "this MDM lost the leadership while registering the standby MDM; nothing was registered");
  return rec.id;
}

/**
 * Remove a registered MDM, or a running standby, by id. The active MDM is refused (hand over
 * first). A running standby gets a removal record: it stops campaigning at once and refuses to
 * start again until an MDM at its address is added anew.
 */
export async function unregisterStandby(client: EtcdClient, keys: EtcdKeys, guard: Compare, rawId: string, leaderId: string, nowMs: number): Promise<void> {
  const id = rawId.replace(/^0x/i, "").toLowerCase();
  const registry = await registryRecords(client, keys);
  const members = (await client.range(keys.membersPrefix, { prefix: true })).kvs.map((kv) => parseRecord(MemberRecord, kv.key, kv.value));
  const entry = registry.find((r) => r.id === id) ?? null;
  const member = members.find((m) => m.id === id) ?? (entry ? (members.find((m) => registryMatches(entry, m.url)) ?? null) : null);
  if (entry === null && member === null) {
    throw new PfError("NOT_FOUND", `no MDM with id ${rawId} in this cluster (registered: ${registry.map((r) => `${r.name} ${r.id}`).join(", ") || "none"}; running: ${members.map((m) => `${m.name} ${m.id}`).join(", ")})`);
  }
  if (member !== null && member.id === leaderId) {
    throw new PfError("INVALID_STATE", `MDM ${member.name} (id ${member.id}) is the active MDM: hand ownership to a standby first (scli --switch_mdm_ownership), then remove it`);
  }
  const ops: TxnOp[] = [];
  if (entry) ops.push({ delete: { key: keys.registered(entry.id) } });
  if (member) {
    const rec: RemovedRecord = { id: member.id, name: member.name, url: member.url, removedAtMs: nowMs };
    ops.push({ put: { key: keys.removed(member.id), value: JSON.stringify(rec) } });
  }
  const r = await client.txn({ compare: [guard], success: ops });
  if (!r.succeeded) throw new PfError("NOT_LEADER", "this MDM lost the leadership while removing the standby MDM; nothing was removed");
}
