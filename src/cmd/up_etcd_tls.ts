// mdm.etcd.tls auto: pf up secures its embedded etcd members by itself, with no file for the
// operator to copy. Every etcd and MDM host knows cluster.secret (the file gives it), so each one
// derives the same etcd CA key from it (secret_ca.ts, label ETCD_CA_LABEL) and, at every start,
// writes under DATA_DIR/etcd-tls (0700; keys 0600):
//   ca.pem                          its CA certificate for the derived key (the key is never written)
//   member.pem, member-key.pem      this host's member certificate (serverAuth + clientAuth): its
//                                   address from the file, which clients and peers check, and this
//                                   machine's interface addresses, because etcd checks that a peer's
//                                   client certificate names the source address of its connection
//                                   (the route picks it: 127.0.0.1 for 127.0.0.x, or another NIC)
//   mdm-client.pem, -key.pem        the MDM's etcd client certificate (subject without CN: etcd's
//                                   JSON gateway refuses one with a CN, CVE-2018-16886; and no
//                                   subjectAltName, so etcd's source-address check passes from any)
// The member then runs with https client and peer URLs, --client-cert-auth and
// --peer-client-cert-auth against ca.pem (up_etcd.ts), and the MDM gets --etcd-cacert/-cert/-key.
// A certificate made on one host verifies against the ca.pem made on any other (same subject and
// key). Files are rewritten atomically (temp file + rename) so a reader never sees half a key.

import { chmodSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { secretCa } from "../proto/secret_ca.ts";
import { generateSignedCert, type SelfSignedCert } from "../proto/tls_cert.ts";
import type { EtcdAutoTlsPlan } from "./host_plan.ts";
import { errnoFailure } from "./cli_failure.ts";

/** Domain separation of the derivation: bump the version to change every cluster's etcd CA. */
export const ETCD_CA_LABEL = "pf etcd ca v1";
/** The one subject every host's etcd CA certificate carries (leaves chain by it). */
export const ETCD_CA_COMMON_NAME = "pf etcd CA (derived from the cluster secret)";

export interface EtcdAutoTlsFiles {
  ca: SelfSignedCert;
  member: SelfSignedCert | null;
  mdmClient: SelfSignedCert | null;
}

/** The certificates of this host (pure: no file written). */
export function makeEtcdAutoTls(secret: string, plan: EtcdAutoTlsPlan, opts: { hostName: string; localAddresses: string[]; now?: Date }): EtcdAutoTlsFiles {
  const at = opts.now ? { now: opts.now } : {};
  const ca = secretCa({ secret, label: ETCD_CA_LABEL, commonName: ETCD_CA_COMMON_NAME, ...at });
  const member = plan.member === null ? null : generateSignedCert({ commonName: `etcd ${opts.hostName}`, hosts: [plan.member.address, ...opts.localAddresses], issuer: ca, ...at });
  const mdmClient = plan.mdmClient === null ? null : generateSignedCert({ commonName: "", omitCommonName: true, hosts: [], issuer: ca, ...at });
  return { ca, member, mdmClient };
}

function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode); // writeFileSync's mode is masked by the umask and ignored for an existing file
  renameSync(tmp, file);
}

/** Derive and write this host's etcd TLS files (plan.etcdAutoTls); returns what was made. */
export function writeEtcdAutoTls(secret: string, plan: EtcdAutoTlsPlan, hostName: string): EtcdAutoTlsFiles {
  const local = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address.replace(/%.*$/, "")));
  const made = makeEtcdAutoTls(secret, plan, { hostName, localAddresses: local });
  try {
    mkdirSync(plan.dir, { recursive: true, mode: 0o700 });
    chmodSync(plan.dir, 0o700);
    writeAtomic(plan.caFile, made.ca.certPem, 0o644);
    if (plan.member && made.member) {
      writeAtomic(plan.member.keyFile, made.member.keyPem, 0o600);
      writeAtomic(plan.member.certFile, made.member.certPem, 0o644);
    }
    if (plan.mdmClient && made.mdmClient) {
      writeAtomic(plan.mdmClient.keyFile, made.mdmClient.keyPem, 0o600);
      writeAtomic(plan.mdmClient.certFile, made.mdmClient.certPem, 0o644);
    }
  } catch (e) {
    throw errnoFailure(e, `write the etcd TLS files in ${plan.dir}`, "give another --data-dir DIR");
  }
  return made;
}

/** One line for logs and the summary: etcd is secured, and where the files are. */
export function describeEtcdAutoTls(plan: EtcdAutoTlsPlan): string {
  const parts = [`CA ${plan.caFile}`];
  if (plan.member) parts.push(`member ${plan.member.certFile}`);
  if (plan.mdmClient) parts.push(`client ${plan.mdmClient.certFile} + ${plan.mdmClient.keyFile}`);
  return `etcd secured: https with client and peer certificate auth, CA derived from cluster.secret (mdm.etcd.tls: auto); ${parts.join(", ")}`;
}
