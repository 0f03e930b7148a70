// Opening HA mode (imported dynamically by mdm/main.ts, never in sqlite mode): the cluster's
// identity in etcd and this MDM's TLS certificate.
// - identity (/pf/<cluster>/identity): the cluster secret and a CA, written once by the first MDM
//   that starts (txn CREATE==0; later MDMs read the winner's). A secret given to a later MDM must
//   equal the stored one: two secrets in one cluster would split SDSs between MDMs.
// - TLS: each MDM gets its own certificate for its own address, signed by the cluster CA, made
//   at every start (DATA_DIR/tls/{cert,key}.pem) with the CA certificate beside it (ca.pem): one
//   CA file verifies every MDM of the cluster, so clients can follow a takeover.
// The etcd access itself is trusted: whoever can read etcd has the cluster's keys (run etcd on a
// private network, with client TLS and auth: EtcdSecurity; docs/design.md "MDM high availability").

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { PfError } from "../../proto/errors.ts";
import { generateSelfSignedCert, generateSignedCert } from "../../proto/tls_cert.ts";
import { EtcdClient, type EtcdSecurity } from "../../store/etcd_client.ts";
import { EtcdKeys, IdentityRecord, parseRecord } from "./etcd_keys.ts";

export { EtcdMetaStore, type EtcdMetaStoreOptions } from "./etcd_meta_store.ts";

export interface HaIdentity {
  clusterSecret: string;
  caCertPem: string;
  caKeyPem: string;
}

/** Read the cluster's identity from etcd, or write it when this MDM is the first. */
export async function resolveHaIdentity(endpoints: string[], cluster: string, givenSecret: string | undefined, security?: EtcdSecurity): Promise<HaIdentity> {
  const client = new EtcdClient({ endpoints, security });
  const keys = new EtcdKeys(cluster);
  for (let attempt = 0; ; attempt++) {
    try {
      return await readOrCreate(client, keys, givenSecret);
    } catch (e) {
      if (!(e instanceof PfError) || e.code !== "UNAVAILABLE" || attempt >= 60) throw e;
      if (attempt === 0) consola.info(`mdm: etcd (${endpoints.join(", ")}) not reachable yet; retrying`);
      await Bun.sleep(500);
    }
  }
}

async function readOrCreate(client: EtcdClient, keys: EtcdKeys, givenSecret: string | undefined): Promise<HaIdentity> {
  const existing = await client.get(keys.identity);
  if (existing) return checked(parseRecord(IdentityRecord, keys.identity, existing.value), givenSecret);
  const ca = generateSelfSignedCert({ commonName: `pf-mdm-ca ${keys.cluster}`, hosts: [] });
  const rec: IdentityRecord = { clusterSecret: givenSecret ?? randomBytes(24).toString("hex"), caCertPem: ca.certPem, caKeyPem: ca.keyPem };
  const r = await client.txn({
    compare: [{ key: keys.identity, target: "CREATE", result: "EQUAL", value: 0 }],
    success: [{ put: { key: keys.identity, value: JSON.stringify(rec) } }],
    failure: [{ range: { key: keys.identity } }],
  });
  if (r.succeeded) {
    consola.info(`mdm: created the identity of cluster ${keys.cluster} in etcd (cluster secret and MDM CA)`);
    return { clusterSecret: rec.clusterSecret, caCertPem: rec.caCertPem, caKeyPem: rec.caKeyPem };
  }
  const kv = r.ranges[0]?.[0];
  if (!kv) throw new PfError("INTERNAL", "etcd: identity record neither created nor found");
  return checked(parseRecord(IdentityRecord, keys.identity, kv.value), givenSecret);
}

function checked(rec: IdentityRecord, givenSecret: string | undefined): HaIdentity {
  if (givenSecret !== undefined && givenSecret !== rec.clusterSecret) {
    throw new PfError("BAD_REQUEST", "the cluster secret given to this MDM differs from the one the cluster keeps in etcd; give every MDM the same secret (or none)");
  }
  return { clusterSecret: rec.clusterSecret, caCertPem: rec.caCertPem, caKeyPem: rec.caKeyPem };
}

export interface HaTls {
  certPem: string;
  keyPem: string;
  certFile: string;
  /** the CA file clients verify every MDM of the cluster with */
  caFile: string;
}

/** This MDM's certificate for its hosts, signed by the cluster CA (made anew at every start). */
export function issueMdmCert(dataDir: string, hosts: string[], name: string, id: HaIdentity): HaTls {
  const dir = join(dataDir, "tls");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made = generateSignedCert({ commonName: `pf-mdm ${name}`, hosts, issuer: { certPem: id.caCertPem, keyPem: id.caKeyPem } });
  const certFile = join(dir, "cert.pem");
  const caFile = join(dir, "ca.pem");
  writeFileSync(join(dir, "key.pem"), made.keyPem, { mode: 0o600 });
  writeFileSync(certFile, made.certPem, { mode: 0o644 });
  writeFileSync(caFile, id.caCertPem, { mode: 0o644 });
  return { certPem: made.certPem, keyPem: made.keyPem, certFile, caFile };
}

/** This MDM's id, kept in its data dir so a restart is the same member. */
export function mdmIdOf(dataDir: string): string {
  const file = join(dataDir, "mdm-id");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const id = randomBytes(8).toString("hex");
  writeFileSync(file, id + "\n", { mode: 0o600 });
  return id;
}
