// NBD over TLS on the SDC: the mode (--nbd-tls=off|on|require), the X.509 material in an
// nbdkit-style directory, the check of a client certificate after the handshake, and the policy
// for a listen address that is not loopback.
//
// Where the material comes from (nbdTlsSource): a directory with the operator's files (ca-cert.pem
// and no cluster-issued.json) is used as below; otherwise pf sdc asks the MDM for a server
// certificate from the cluster NBD CA (nbd_cluster_cert.ts) and writes the same layout there.
//
// Directory layout (the names nbdkit --tls-certificates and libnbd use):
//   ca-cert.pem      the CA clients trust and client certificates are checked against (required)
//   ca-key.pem       optional: with it, the SDC issues its own server certificate on start
//   server-cert.pem  the SDC's certificate, signed by ca-cert.pem, naming the NBD host
//   server-key.pem   its key (mode 0600)
// loadNbdTls on an empty or missing directory makes a new CA and server certificate (a
// self-managed CA: in-process tests and bench/nbd_tls.ts; pf sdc uses the cluster's CA instead).
//
// Invariants:
// - the server certificate in use verifies against ca-cert.pem and its key matches it;
// - with verifyPeer, a client gets past STARTTLS only with a certificate that pf itself verified
//   against ca-cert.pem (signature, validity dates, clientAuth usage): Bun's own `authorized` is
//   required too but never trusted alone (oven-sh/bun#33754, #33924, #35240), and one the MDM
//   revoked (nbd_revocations.ts: by serial + issuer, or fingerprint) is refused with that reason;
// - TLS 1.0 and 1.1 are refused (NBD proto.md: TLS 1.2 at least).

import { constants, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { consola } from "consola";
import { PfError } from "../proto/errors.ts";
import { NbdCertFiles } from "../proto/nbd_certs.ts";
import { certCoversHost, describeCert, generateSelfSignedCert, generateSignedCert } from "../proto/tls_cert.ts";
import { revokedReason, type NbdRevocations, type PeerCertId } from "./nbd_revocations.ts";

export const NbdTlsModes = ["off", "on", "require"] as const;
export type NbdTlsMode = (typeof NbdTlsModes)[number];

export const NbdTlsFiles = NbdCertFiles;

/**
 * Whose files a directory holds: "operator" when it holds one of ca-cert.pem, server-cert.pem,
 * server-key.pem and no cluster-issued.json (used as they are, loadNbdTls); "cluster" when it is
 * empty or holds what an earlier start got from the cluster NBD CA (issued again now).
 */
export function nbdTlsSource(dir: string): "operator" | "cluster" {
  const f = (name: string) => existsSync(join(dir, name));
  if (f(NbdCertFiles.clusterIssued)) return "cluster";
  return f(NbdCertFiles.caCert) || f(NbdCertFiles.serverCert) || f(NbdCertFiles.serverKey) ? "operator" : "cluster";
}

export interface NbdTlsMaterial {
  mode: Exclude<NbdTlsMode, "off">;
  dir: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  /** ask every client for a certificate and refuse those that do not verify against caPem */
  verifyPeer: boolean;
  /** client certificates the MDM revoked (with verifyPeer): refused, and their sessions closed */
  revocations?: NbdRevocations;
}

export function parseNbdTlsMode(text: string | undefined, what: string): NbdTlsMode | undefined {
  if (text === undefined) return undefined;
  if ((NbdTlsModes as readonly string[]).includes(text)) return text as NbdTlsMode;
  throw new PfError("BAD_REQUEST", `${what} ${text}: use off, on or require`);
}

function readPem(path: string): string {
  return readFileSync(path, "utf8");
}

/** Names a server certificate should carry for this NBD listen address. */
export function serverCertHosts(listenHost: string, extra: string[]): string[] {
  const h = listenHost.replace(/^\[|\]$/g, "");
  const hosts = [...extra, "127.0.0.1", "::1", "localhost", hostname()];
  if (h !== "" && h !== "0.0.0.0" && h !== "::") hosts.unshift(h);
  return [...new Set(hosts.filter((x) => x.length > 0))];
}

export function verifiesAgainst(certPem: string, caPem: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

export interface LoadNbdTlsOptions {
  mode: Exclude<NbdTlsMode, "off">;
  dir: string;
  listenHost: string;
  /** further names for a certificate the SDC issues (its --address) */
  certHosts?: string[];
  verifyPeer: boolean;
}

/** Read (or make) the TLS material; a clear PfError when the directory's files do not fit together. */
export function loadNbdTls(opts: LoadNbdTlsOptions): NbdTlsMaterial {
  const f = (name: string) => join(opts.dir, name);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const nothing = !existsSync(f(NbdTlsFiles.caCert)) && !existsSync(f(NbdTlsFiles.serverCert)) && !existsSync(f(NbdTlsFiles.serverKey));
  if (nothing) makeCa(opts.dir);
  if (!existsSync(f(NbdTlsFiles.caCert))) {
    throw new PfError("BAD_REQUEST", `NBD TLS: ${f(NbdTlsFiles.caCert)} is missing: put the CA certificate that signed ${NbdTlsFiles.serverCert} there (clients and client certificates are checked against it)`);
  }
  const caPem = readPem(f(NbdTlsFiles.caCert));
  const hosts = serverCertHosts(opts.listenHost, opts.certHosts ?? []);
  const haveServer = existsSync(f(NbdTlsFiles.serverCert)) && existsSync(f(NbdTlsFiles.serverKey));
  if (haveServer) {
    const certPem = readPem(f(NbdTlsFiles.serverCert));
    const keyPem = readPem(f(NbdTlsFiles.serverKey));
    try {
      describeCert(certPem, keyPem);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `NBD TLS: ${f(NbdTlsFiles.serverCert)} with ${f(NbdTlsFiles.serverKey)}: ${(e as Error).message}`);
    }
    if (!verifiesAgainst(certPem, caPem)) {
      throw new PfError("BAD_REQUEST", `NBD TLS: ${f(NbdTlsFiles.serverCert)} is not signed by ${f(NbdTlsFiles.caCert)}: clients would refuse it; replace one of them (or remove both server files and keep ${NbdTlsFiles.caKey} to have a new one issued)`);
    }
    const h = opts.listenHost.replace(/^\[|\]$/g, "");
    const named = h === "" || h === "0.0.0.0" || h === "::" || certCoversHost(certPem, h);
    const material: NbdTlsMaterial = { mode: opts.mode, dir: opts.dir, caPem, certPem, keyPem, verifyPeer: opts.verifyPeer };
    if (named) return material;
    if (!existsSync(f(NbdTlsFiles.caKey))) {
      consola.warn(`sdc: ${f(NbdTlsFiles.serverCert)} does not name ${h}: clients that check the host name will refuse it`);
      return material;
    }
    consola.warn(`sdc: ${f(NbdTlsFiles.serverCert)} does not name ${h}; issuing a new one from ${NbdTlsFiles.caKey}`);
  }
  if (!existsSync(f(NbdTlsFiles.caKey))) {
    throw new PfError("BAD_REQUEST", `NBD TLS: ${opts.dir} has ${NbdTlsFiles.caCert} but no ${NbdTlsFiles.serverCert}/${NbdTlsFiles.serverKey}: add them (signed by the CA), or add ${NbdTlsFiles.caKey} so that the SDC issues its own`);
  }
  const issued = generateSignedCert({ commonName: `pf-sdc ${hostname()}`, hosts, issuer: { certPem: caPem, keyPem: readPem(f(NbdTlsFiles.caKey)) }, validDays: 825 });
  writeFileSync(f(NbdTlsFiles.serverKey), issued.keyPem, { mode: 0o600 });
  writeFileSync(f(NbdTlsFiles.serverCert), issued.certPem, { mode: 0o644 });
  consola.info(`sdc: issued an NBD server certificate ${f(NbdTlsFiles.serverCert)} for ${hosts.join(", ")}`);
  return { mode: opts.mode, dir: opts.dir, caPem, certPem: issued.certPem, keyPem: issued.keyPem, verifyPeer: opts.verifyPeer };
}

function makeCa(dir: string): void {
  const ca = generateSelfSignedCert({ commonName: `pf-nbd-ca ${hostname()}`, hosts: [], validDays: 3650 });
  writeFileSync(join(dir, NbdTlsFiles.caKey), ca.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, NbdTlsFiles.caCert), ca.certPem, { mode: 0o644 });
  consola.info(`sdc: made an NBD CA in ${dir} (copy ${NbdTlsFiles.caCert} to each NBD client's tls-certificates directory)`);
}

/** The options Bun's upgradeTLS gets for a server-side session. */
export function serverTlsOptions(m: NbdTlsMaterial): { cert: string; key: string; ca: string; requestCert: boolean; rejectUnauthorized: boolean; secureOptions: number } {
  return {
    cert: m.certPem,
    key: m.keyPem,
    ca: m.caPem,
    requestCert: m.verifyPeer,
    // the handshake completes and pf decides (checkPeer): a refusal is then logged with its reason
    rejectUnauthorized: false,
    secureOptions: constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1,
  };
}

/** What a finished TLS handshake looks like to checkPeer (a Bun TLS socket in production). */
export interface TlsPeerView {
  authorized: boolean;
  getPeerX509Certificate(): X509Certificate | undefined;
}

const CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2";

function certIdOf(cert: X509Certificate, ca: X509Certificate): PeerCertId {
  return { serialNumber: cert.serialNumber.toUpperCase(), fingerprint256: cert.fingerprint256, caFingerprint256: ca.fingerprint256, subject: cert.subject.replace(/\n/g, ", ") };
}

/** The identity of a peer certificate checkPeer accepted (the NBD server keeps it per session). */
export function peerCertId(m: NbdTlsMaterial, peer: TlsPeerView): PeerCertId | null {
  let cert: X509Certificate | undefined;
  try {
    cert = peer.getPeerX509Certificate();
  } catch {
    cert = undefined;
  }
  if (cert === undefined || cert === null) return null;
  return certIdOf(cert, new X509Certificate(m.caPem));
}

const ownFingerprints = new WeakMap<NbdTlsMaterial, string>();
function ownFingerprint(m: NbdTlsMaterial): string {
  let f = ownFingerprints.get(m);
  if (f === undefined) {
    f = new X509Certificate(m.certPem).fingerprint256;
    ownFingerprints.set(m, f);
  }
  return f;
}

/** null when the peer may go on, else why it is refused. */
export function checkPeer(m: NbdTlsMaterial, peer: TlsPeerView, nowMs: number = Date.now()): string | null {
  if (!m.verifyPeer) return null;
  let cert: X509Certificate | undefined;
  try {
    cert = peer.getPeerX509Certificate();
  } catch {
    cert = undefined;
  }
  if (cert === undefined || cert === null) return "no client certificate (this SDC requires one signed by its NBD CA)";
  const ca = new X509Certificate(m.caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return `client certificate "${cert.subject.replace(/\n/g, ", ")}" is not signed by the NBD CA`;
  const id = certIdOf(cert, ca);
  const revoked = m.revocations?.find(id);
  if (revoked !== undefined) return revokedReason(id, revoked);
  if (Date.parse(cert.validFrom) > nowMs || Date.parse(cert.validTo) < nowMs) return `client certificate valid ${cert.validFrom} .. ${cert.validTo}, not now`;
  // this SDC's own server certificate: a local probe (pf up, pf doctor) holding its key file
  if (cert.fingerprint256 === ownFingerprint(m)) return null;
  if (cert.keyUsage !== undefined && cert.keyUsage.length > 0 && !cert.keyUsage.includes(CLIENT_AUTH_OID)) return "client certificate is not for clientAuth (an SDC's server certificate is not a client certificate)";
  if (!peer.authorized) return "the TLS library did not authorize the client certificate";
  return null;
}

function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1") return true;
  return isIP(h) === 4 && h.startsWith("127.");
}

/**
 * The NBD server listens beyond loopback without TLS: say so loudly, unless the operator chose
 * --nbd-tls=off explicitly (then they said so). Never a refusal: plaintext NBD on a private
 * network (and the multi-host tests' network namespaces) stays possible.
 */
export function warnPlaintextExposure(listenHost: string, mode: NbdTlsMode, explicit: boolean): string | null {
  if (mode !== "off" || explicit || isLoopbackHost(listenHost)) return null;
  const msg =
    `sdc: NBD listens on ${listenHost} without TLS: anyone who can reach it can read and write every volume mapped to this SDC. ` +
    `Use --nbd-tls=require (YAML sdc.nbdTls: require) for clients on other hosts, or say --nbd-tls=off to keep plaintext.`;
  consola.warn(msg);
  return msg;
}
