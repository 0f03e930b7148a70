// The SDC's NBD server certificate from the cluster NBD CA (docs/design.md "NBD over TLS"): after
// its join, an SDC with --nbd-tls on|require and no operator files in its nbd-tls directory sends
// the public key of its NBD server key and the names its clients dial to the MDM (cluster API,
// node token) and writes the answer in the nbdkit/libnbd layout: ca-cert.pem (the cluster NBD CA),
// server-cert.pem, server-key.pem (0600) and cluster-issued.json (so the next start knows these
// files are the cluster's, not the operator's, and issues them again).
//
// Invariants: the private key is made here and never sent; the certificate in use verifies
// against the CA in the answer and is for this key (else the SDC does not start); an SDC not yet
// approved (restricted SDC mode) waits for its approval, asking again every APPROVAL_RETRY_MS,
// and serves no NBD meanwhile (it has no volumes anyway); an MDM that is unreachable or has no
// leader for a while is waited for like the join (joinWithRetry), not a reason to stop.

import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { ClusterPaths } from "../proto/cluster_api.ts";
import { PfError } from "../proto/errors.ts";
import { clusterRequest, joinWithRetry, type MdmEndpoint } from "../proto/mdm_http.ts";
import { hostOk, IssuedNbdCert, MAX_CERT_HOSTS, NbdCertFiles, type ClusterIssuedNote } from "../proto/nbd_certs.ts";
import { describeCert } from "../proto/tls_cert.ts";
import { serverCertHosts, verifiesAgainst, type NbdTlsMaterial, type NbdTlsMode } from "./nbd_tls.ts";

const APPROVAL_RETRY_MS = 2000;

export interface ClusterNbdTlsOptions {
  mode: Exclude<NbdTlsMode, "off">;
  dir: string;
  verifyPeer: boolean;
  /** the NBD listen host and this SDC's --address */
  listenHost: string;
  address: string;
  mdm: MdmEndpoint;
  sdcId: string;
  systemId: string;
  clock?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** The NBD server key: kept from an earlier cluster-issued start, else made now (EC P-256). */
function serverKey(dir: string): { keyPem: string; publicKeyPem: string } {
  const file = join(dir, NbdCertFiles.serverKey);
  let keyPem: string;
  if (existsSync(file) && existsSync(join(dir, NbdCertFiles.clusterIssued))) keyPem = readFileSync(file, "utf8");
  else keyPem = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicKeyPem = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "pem" }).toString();
  return { keyPem, publicKeyPem };
}

/** The names to certify: the listen host, --address, loopback and this host's name (those a CA accepts). */
export function nbdCertHosts(listenHost: string, address: string): string[] {
  return serverCertHosts(listenHost, [address]).filter(hostOk).slice(0, MAX_CERT_HOSTS);
}

async function askMdm(opts: ClusterNbdTlsOptions, hosts: string[], publicKeyPem: string): Promise<IssuedNbdCert> {
  const sleep = opts.sleep ?? ((ms: number) => Bun.sleep(ms));
  for (let waited = false; ; waited = true) {
    try {
      // an MDM cluster between two leaders (NOT_LEADER from every member) or an MDM that is
      // restarting is waited for, as the join before it is: the SDC does not give up its start
      const body = { publicKeyPem, hosts };
      return await joinWithRetry(`sdc ${opts.sdcId}`, opts.mdm, () => clusterRequest(opts.mdm, { method: "POST", path: ClusterPaths.sdcNbdCertificate(opts.sdcId), body, schema: IssuedNbdCert }));
    } catch (e) {
      if (e instanceof PfError && e.code === "NOT_FOUND" && e.message.includes("cluster API path")) {
        throw new PfError("INVALID_STATE", `NBD TLS: the MDM (${opts.mdm.url}) issues no NBD certificates (an older pf): upgrade it, or put your own ca-cert.pem and ca-key.pem in ${opts.dir}`);
      }
      if (!(e instanceof PfError) || e.code !== "INVALID_STATE" || !e.message.includes("NOT_APPROVED")) throw e;
      if (!waited) consola.warn(`sdc ${opts.sdcId}: no NBD certificate yet: ${e.message}; NBD starts once it is approved`);
      await sleep(APPROVAL_RETRY_MS);
    }
  }
}

/** Get (again) the NBD server certificate from the cluster NBD CA and write the directory. */
export async function clusterNbdTls(opts: ClusterNbdTlsOptions): Promise<NbdTlsMaterial> {
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const key = serverKey(opts.dir);
  const hosts = nbdCertHosts(opts.listenHost, opts.address);
  const issued = await askMdm(opts, hosts, key.publicKeyPem);
  try {
    describeCert(issued.certPem, key.keyPem);
  } catch (e) {
    throw new PfError("INTERNAL", `NBD TLS: the certificate the MDM issued is not for this SDC's key: ${(e as Error).message}`);
  }
  if (!verifiesAgainst(issued.certPem, issued.caPem)) throw new PfError("INTERNAL", "NBD TLS: the certificate the MDM issued does not verify against the NBD CA it sent");
  const f = (name: string) => join(opts.dir, name);
  writeFileSync(f(NbdCertFiles.serverKey), key.keyPem, { mode: 0o600 });
  writeFileSync(f(NbdCertFiles.serverCert), issued.certPem, { mode: 0o644 });
  writeFileSync(f(NbdCertFiles.caCert), issued.caPem, { mode: 0o644 });
  const note: ClusterIssuedNote = { systemId: opts.systemId, sdcId: opts.sdcId, issuedAtMs: (opts.clock ?? Date.now)(), hosts };
  writeFileSync(f(NbdCertFiles.clusterIssued), JSON.stringify(note, null, 2) + "\n", { mode: 0o644 });
  consola.info(`sdc ${opts.sdcId}: NBD server certificate from the cluster NBD CA for ${hosts.join(", ")} (serial ${issued.serialNumber}, valid until ${issued.validTo}) in ${opts.dir}`);
  return { mode: opts.mode, dir: opts.dir, caPem: issued.caPem, certPem: issued.certPem, keyPem: key.keyPem, verifyPeer: opts.verifyPeer };
}
