// The cluster NBD CA's certificates (docs/design.md "NBD over TLS"): what the MDM issues, the file
// layout NBD tools read, and the API shapes on both sides (REST for operators, the cluster API for
// SDCs). The NBD CA is not the data-plane CA: its certificates name hosts (what an NBD client
// dials), never node identities.
//
// Invariants:
// - a private key never crosses the network: the SDC and scli make their keys locally and send
//   the SPKI public key PEM; the MDM answers with a certificate and its CA certificate;
// - a server certificate names only host names and IP addresses that pass hostOk, at most
//   MAX_CERT_HOSTS of them; a client certificate names one client name (NAME_RE);
// - file names are the nbdkit/libnbd/qemu ones, so `tls-certificates=DIR`, qemu's
//   `tls-creds-x509,dir=DIR` and libnbd's $HOME/.pki/libnbd find them unchanged.

import { isIP } from "node:net";
import { z } from "zod";

/** Validity of an issued NBD certificate (server: re-issued at every SDC start; client: by scli). */
export const NBD_CERT_DAYS = 397;
/** Validity of the cluster NBD CA made on first use. */
export const NBD_CA_DAYS = 3650;
/** Names one server certificate may carry. */
export const MAX_CERT_HOSTS = 16;

/** The nbdkit/libnbd/qemu layout of a certificate directory. */
export const NbdCertFiles = {
  caCert: "ca-cert.pem",
  caKey: "ca-key.pem",
  serverCert: "server-cert.pem",
  serverKey: "server-key.pem",
  clientCert: "client-cert.pem",
  clientKey: "client-key.pem",
  /** written by the SDC beside files the cluster issued (absent: the operator's own files) */
  clusterIssued: "cluster-issued.json",
} as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
const DNS_RE = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

/** A name a server certificate may carry: an IP address or a DNS name (no wildcard). */
export function hostOk(h: string): boolean {
  return isIP(h) !== 0 || DNS_RE.test(h);
}

const publicKeyPem = z.string().min(1).max(4096).includes("BEGIN PUBLIC KEY", { message: "expected an SPKI public key PEM (-----BEGIN PUBLIC KEY-----)" });
const certPem = z.string().includes("BEGIN CERTIFICATE");

/** GET /api/pf/nbdCa (pf extension): the cluster NBD CA certificate (public). */
export const NbdCaAnswer = z.object({ caPem: certPem, subject: z.string(), validTo: z.string(), fingerprint256: z.string() });
export type NbdCaAnswer = z.infer<typeof NbdCaAnswer>;

/** POST /api/pf/nbdCa/issueClientCertificate: certify a client's public key (made by the client). */
export const IssueNbdClientCert = z.object({
  name: z.string().regex(NAME_RE, "a client name is 1-64 letters, digits, _ . @ - (starting with a letter or digit)"),
  publicKeyPem,
});
export type IssueNbdClientCert = z.infer<typeof IssueNbdClientCert>;

/** The answer of an issue: the certificate and the CA that verifies it. */
export const IssuedNbdCert = z.object({ caPem: certPem, certPem, serialNumber: z.string(), validTo: z.string() });
export type IssuedNbdCert = z.infer<typeof IssuedNbdCert>;

/** POST /pf/v1/sdc/{id}/nbdCertificate (cluster API): an SDC's NBD server certificate. */
export const SdcNbdCertRequest = z.object({
  publicKeyPem,
  hosts: z
    .array(z.string().min(1).max(253).refine(hostOk, "a host is an IP address or a DNS name"))
    .min(1)
    .max(MAX_CERT_HOSTS),
});
export type SdcNbdCertRequest = z.infer<typeof SdcNbdCertRequest>;

/** What the SDC writes beside cluster-issued files (so its next start knows they are not the operator's). */
export const ClusterIssuedNote = z.object({ systemId: z.string(), sdcId: z.string(), issuedAtMs: z.number(), hosts: z.array(z.string()) });
export type ClusterIssuedNote = z.infer<typeof ClusterIssuedNote>;

/** An issued NBD client certificate as the MDM records it (GET /api/pf/nbdCa/clientCertificates). */
export const NbdClientCertInfo = z.object({
  serialNumber: z.string(),
  name: z.string(),
  fingerprint256: z.string(),
  caFingerprint256: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
  issuedBy: z.string(),
  issuedAt: z.string(),
  /** "valid", "revoked" or "expired" at the time of the answer */
  state: z.enum(["valid", "revoked", "expired"]),
  revokedAt: z.string().nullable(),
  revokedBy: z.string().nullable(),
  revokeReason: z.string().nullable(),
});
export type NbdClientCertInfo = z.infer<typeof NbdClientCertInfo>;
export const NbdClientCertList = z.array(NbdClientCertInfo);

const SERIAL_RE = /^[0-9A-Fa-f]{1,64}$/;

/** POST /api/pf/nbdCa/revokeClientCertificate: by serial (one certificate) or name (every unexpired one of that name). */
export const RevokeNbdClientCert = z
  .object({
    serialNumber: z.string().regex(SERIAL_RE, "a serial number is hex digits (as --query_nbd_client_certificates shows it)").optional(),
    name: z.string().regex(NAME_RE, "a client name is 1-64 letters, digits, _ . @ - (starting with a letter or digit)").optional(),
    reason: z.string().max(256).optional(),
  })
  .strict()
  .refine((b) => (b.serialNumber === undefined) !== (b.name === undefined), { message: "give exactly one of serialNumber and name" });
export type RevokeNbdClientCert = z.infer<typeof RevokeNbdClientCert>;

/** The answer of a revocation: the certificates it names (newly revoked or already revoked before). */
export const RevokedNbdCerts = z.object({ revoked: NbdClientCertList, alreadyRevoked: NbdClientCertList });
export type RevokedNbdCerts = z.infer<typeof RevokedNbdCerts>;

/**
 * A revoked, unexpired client certificate as SDCs get it with their maps: refused by serial when
 * its issuer is the CA named, and by fingerprint whoever the issuer.
 */
export const NbdRevokedCert = z.object({
  serialNumber: z.string(),
  caFingerprint256: z.string(),
  fingerprint256: z.string(),
  name: z.string(),
  revokedAtMs: z.number().int().nonnegative(),
});
export type NbdRevokedCert = z.infer<typeof NbdRevokedCert>;
