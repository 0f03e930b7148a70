// The layout of one pf cluster's keys in etcd, under /pf/<cluster>/, and the zod schemas of the
// records stored there (every value read back from etcd is validated):
//   cluster             {systemId, schemaVersion, termBase, bootstrappedAtMs}: written once, last
//                       step of the bootstrap; its presence means meta/ is complete
//   identity            {clusterSecret, caCertPem, caKeyPem}: the secret and the CA every MDM's
//                       certificate is signed by (first MDM to start writes it, CREATE==0)
//   mdm/leader          {id, name, url} under the active MDM's lease; create_revision = term
//   mdm/members/<id>    {id, name, url, appliedRev, role} under each MDM's lease
//   mdm/handover        {to, fromTerm}: the active MDM of term fromTerm hands over to MDM `to`
//                       (--switch_mdm_ownership); other standbys let `to` campaign first
//   mdm/registry/<id>   {id, name, ips, port, role, managementIps, addedAtMs}: an MDM the operator
//                       registered (scli --add_standby_mdm); no lease: it outlives the process
//   mdm/removed/<id>    {id, name, removedAtMs}: a running MDM removed by --remove_standby_mdm;
//                       it never campaigns again and refuses to start until added again
//   meta/<table>/<pk>   one sqlite row as a JSON object (pk parts URI-encoded, joined by "/")
// Nothing else: no heartbeats, no IO statistics (etcd load grows with MDM events only).

import { z } from "zod";
import { assert } from "../../proto/errors.ts";
import type { RowChange } from "../../store/row_capture.ts";

export class EtcdKeys {
  readonly root: string;
  constructor(readonly cluster: string) {
    assert(/^[A-Za-z0-9_.:-]{1,63}$/.test(cluster), "cluster name is a plain word");
    this.root = `/pf/${cluster}/`;
  }
  get clusterRecord(): string {
    return `${this.root}cluster`;
  }
  get identity(): string {
    return `${this.root}identity`;
  }
  get leader(): string {
    return `${this.root}mdm/leader`;
  }
  get handover(): string {
    return `${this.root}mdm/handover`;
  }
  get membersPrefix(): string {
    return `${this.root}mdm/members/`;
  }
  member(id: string): string {
    return `${this.membersPrefix}${id}`;
  }
  get registryPrefix(): string {
    return `${this.root}mdm/registry/`;
  }
  registered(id: string): string {
    return `${this.registryPrefix}${id}`;
  }
  get removedPrefix(): string {
    return `${this.root}mdm/removed/`;
  }
  removed(id: string): string {
    return `${this.removedPrefix}${id}`;
  }
  get metaPrefix(): string {
    return `${this.root}meta/`;
  }
  /** any key a probe may compare against (never written) */
  get probe(): string {
    return `${this.root}probe`;
  }
  row(table: string, pk: readonly string[]): string {
    return `${this.metaPrefix}${table}/${pk.map((p) => encodeURIComponent(p)).join("/")}`;
  }
  /** table and pk of a meta key, or null for a key outside meta/ */
  parseRow(key: string): { table: string; pk: string[] } | null {
    if (!key.startsWith(this.metaPrefix)) return null;
    const parts = key.slice(this.metaPrefix.length).split("/");
    const table = parts.shift();
    assert(table !== undefined && table.length > 0 && parts.length > 0, `meta key ${key} names a table and a key`);
    return { table, pk: parts.map((p) => decodeURIComponent(p)) };
  }
}

export const ClusterRecord = z.object({
  systemId: z.string().min(1),
  schemaVersion: z.number().int().nonnegative(),
  termBase: z.number().int().nonnegative(),
  bootstrappedAtMs: z.number().int().nonnegative(),
});
export type ClusterRecord = z.infer<typeof ClusterRecord>;

export const IdentityRecord = z.object({
  clusterSecret: z.string().min(8),
  caCertPem: z.string().includes("BEGIN CERTIFICATE"),
  caKeyPem: z.string().includes("PRIVATE KEY"),
});
export type IdentityRecord = z.infer<typeof IdentityRecord>;

export const LeaderRecord = z.object({ id: z.string().min(1), name: z.string(), url: z.string() });
export type LeaderRecord = z.infer<typeof LeaderRecord>;

export const HandoverRecord = z.object({ to: z.string().min(1), fromTerm: z.number().int().nonnegative() });
export type HandoverRecord = z.infer<typeof HandoverRecord>;

export const MemberRecord = z.object({
  id: z.string().min(1),
  name: z.string(),
  url: z.string(),
  appliedRev: z.number().int().nonnegative(),
  role: z.enum(["leader", "standby"]),
});
export type MemberRecord = z.infer<typeof MemberRecord>;

export const RegistryRecord = z.object({
  id: z.string().min(1),
  name: z.string(),
  ips: z.array(z.string()).min(1),
  port: z.number().int().nullable(),
  role: z.enum(["Manager", "TieBreaker"]),
  managementIps: z.array(z.string()),
  addedAtMs: z.number().int().nonnegative(),
});
export type RegistryRecord = z.infer<typeof RegistryRecord>;

export const RemovedRecord = z.object({ id: z.string().min(1), name: z.string(), url: z.string(), removedAtMs: z.number().int().nonnegative() });
export type RemovedRecord = z.infer<typeof RemovedRecord>;

/** Parse a JSON record read from etcd; a broken one is a broken invariant of the cluster. */
export function parseRecord<S extends z.ZodType>(schema: S, key: string, text: string): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`invariant broken: etcd key ${key} holds no JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new Error(`invariant broken: etcd key ${key}: ${r.error.message.slice(0, 300)}`);
  return r.data;
}

const RowImage = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));

/** A meta/ key and its value (null: deleted) as a row change. */
export function rowChangeOf(keys: EtcdKeys, key: string, value: string | null): RowChange | null {
  const at = keys.parseRow(key);
  if (at === null) return null;
  return { table: at.table, pk: at.pk, row: value === null ? null : parseRecord(RowImage, key, value) };
}
