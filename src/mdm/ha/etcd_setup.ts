// Opening HA mode (imported dynamically by mdm/main.ts, never in sqlite mode): the cluster's
// identity in etcd and this MDM's TLS certificate.
// - identity (/pf/<cluster>/identity): the cluster secret and a CA, written once by the first MDM
//   that starts (txn CREATE==0; later MDMs read the winner's). A secret given to a later MDM must
//   equal the stored one: two secrets in one cluster would split SDSs between MDMs.
// - TLS: each MDM gets its own certificate for its own address, signed by the cluster CA, made
//   at every start (DATA_DIR/tls/{cert,key}.pem) with the CA certificate beside it (ca.pem): one
//   CA file verifies every MDM of the cluster, so clients can follow a takeover.
// - a single MDM moving to etcd (restarted with --etcd-endpoints on its sqlite data dir) creates
//   the identity from what it has (sqliteIdentityOf): its cluster secret file, and its
//   self-signed certificate (its own CA) as the cluster CA, which it keeps serving. SDSs, SDCs
//   and scli that trust that one file keep working, and trust every later MDM of the cluster.
// The etcd access itself is trusted: whoever can read etcd has the cluster's keys (run etcd on a
// private network, with client TLS and auth: EtcdSecurity; docs/design.md "MDM high availability").

import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { PfError } from "../../proto/errors.ts";
import { certCoversHost, describeCert, generateSelfSignedCert, generateSignedCert } from "../../proto/tls_cert.ts";
import { CLUSTER_SECRET_FILE, TLS_DIR, isWildcardHost } from "../secrets.ts";
import { EtcdClient, type EtcdSecurity } from "../../store/etcd_client.ts";
import { EtcdKeys, IdentityRecord, parseRecord } from "./etcd_keys.ts";

export { EtcdMetaStore, type EtcdMetaStoreOptions } from "./etcd_meta_store.ts";

export interface HaIdentity {
  clusterSecret: string;
  caCertPem: string;
  caKeyPem: string;
}

/** Read the cluster's identity from etcd, or write it when this MDM is the first. */
export async function resolveHaIdentity(endpoints: string[], cluster: string, givenSecret: string | undefined, security?: EtcdSecurity, adopt: SqliteIdentity = {}): Promise<HaIdentity> {
  const client = new EtcdClient({ endpoints, security });
  const keys = new EtcdKeys(cluster);
  for (let attempt = 0; ; attempt++) {
    try {
      return await readOrCreate(client, keys, givenSecret, adopt);
    } catch (e) {
      if (!(e instanceof PfError) || e.code !== "UNAVAILABLE" || attempt >= 60) throw e;
      if (attempt === 0) consola.info(`mdm: etcd (${endpoints.join(", ")}) not reachable yet; retrying`);
      await Bun.sleep(500);
    }
  }
}

/** A single MDM's own identity, kept when it creates an HA cluster (both parts optional). */
export interface SqliteIdentity {
  clusterSecret?: string;
  ca?: { certPem: string; keyPem: string };
}

/**
 * What the data dir of a single (sqlite-mode) MDM holds that an HA cluster made from it keeps:
 * its cluster secret file, and its self-signed TLS certificate when that one is a CA (pf's
 * own are: tls_cert.ts) with a matching key. A certificate of the operator's (--tls-cert) or one
 * that HA mode issued (not self-signed) is left alone.
 */
export function sqliteIdentityOf(dataDir: string): SqliteIdentity {
  const out: SqliteIdentity = {};
  const secretFile = join(dataDir, CLUSTER_SECRET_FILE);
  if (existsSync(secretFile)) out.clusterSecret = readFileSync(secretFile, "utf8").trim();
  const certFile = join(dataDir, TLS_DIR, "cert.pem");
  const keyFile = join(dataDir, TLS_DIR, "key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) {
    const certPem = readFileSync(certFile, "utf8");
    const keyPem = readFileSync(keyFile, "utf8");
    try {
      describeCert(certPem, keyPem);
      const cert = new X509Certificate(certPem);
      if (cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey)) out.ca = { certPem, keyPem };
    } catch {
      // not usable as a CA: the cluster gets a new one
    }
  }
  return out;
}

async function readOrCreate(client: EtcdClient, keys: EtcdKeys, givenSecret: string | undefined, adopt: SqliteIdentity): Promise<HaIdentity> {
  const existing = await client.get(keys.identity);
  if (existing) return checked(parseRecord(IdentityRecord, keys.identity, existing.value), givenSecret);
  const ca = adopt.ca ?? generateSelfSignedCert({ commonName: `pf-mdm-ca ${keys.cluster}`, hosts: [] });
  const rec: IdentityRecord = { clusterSecret: givenSecret ?? adopt.clusterSecret ?? randomBytes(24).toString("hex"), caCertPem: ca.certPem, caKeyPem: ca.keyPem };
  const r = await client.txn({
    compare: [{ key: keys.identity, target: "CREATE", result: "EQUAL", value: 0 }],
    success: [{ put: { key: keys.identity, value: JSON.stringify(rec) } }],
    failure: [{ range: { key: keys.identity } }],
  });
  if (r.succeeded) {
    const kept = [givenSecret === undefined && adopt.clusterSecret !== undefined ? "this MDM's cluster secret" : null, adopt.ca ? "its TLS certificate as the MDM CA (clients that trust it trust every MDM of the cluster)" : null].filter((x) => x !== null);
    consola.info(`mdm: created the identity of cluster ${keys.cluster} in etcd (cluster secret and MDM CA)${kept.length > 0 ? `, keeping ${kept.join(" and ")}` : ""}`);
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

/**
 * This MDM's certificate for its hosts, signed by the cluster CA (made anew at every start);
 * the MDM whose own certificate became the cluster CA (sqliteIdentityOf) keeps serving it.
 */
export function issueMdmCert(dataDir: string, hosts: string[], name: string, id: HaIdentity): HaTls {
  const dir = join(dataDir, TLS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const own = sqliteIdentityOf(dataDir).ca;
  if (own && own.certPem === id.caCertPem && hosts.every((h) => isWildcardHost(h) || certCoversHost(own.certPem, h))) {
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, id.caCertPem, { mode: 0o644 });
    return { certPem: own.certPem, keyPem: own.keyPem, certFile: join(dir, "cert.pem"), caFile };
  }
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
