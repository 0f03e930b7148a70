// The cluster NBD CA (docs/design.md "NBD over TLS"): the CA that signs SDCs' NBD server
// certificates and operators' NBD client certificates. Separate from the data-plane CA (whose
// certificates name node identities): an NBD certificate names hosts or a client name.
//
// Kept like the data-plane master keys: two rows of sqlite table mdm_secret (the PEMs, hex), made
// on first use inside one transaction; in HA mode the rows reach every MDM through the metadata
// store's row capture (etcd), so a certificate issued by one MDM verifies after a takeover.
//
// Invariants: the CA key never leaves the MDM (no answer carries it); the CA is made once
// (INSERT OR IGNORE, then read back: two racing first uses end with one CA); every certificate
// issued here is signed by that CA, is no CA itself, and certifies a public key the requester made;
// every client certificate is recorded (nbd_client_certs.ts) in the transaction that issues it.

import { X509Certificate } from "node:crypto";
import { consola } from "consola";
import { inArray } from "drizzle-orm";
import { checkNodePublicKey } from "../../proto/dataplane_tls.ts";
import { assert, PfError } from "../../proto/errors.ts";
import { NBD_CA_DAYS, NBD_CERT_DAYS, type IssuedNbdCert, type NbdCaAnswer } from "../../proto/nbd_certs.ts";
import { generateSelfSignedCert, generateSignedCert, type SelfSignedCert } from "../../proto/tls_cert.ts";
import { mdmSecretTable } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "./context.ts";
import { recordNbdClientCert } from "./nbd_client_certs.ts";

const CERT_ROW = "nbd-ca-cert";
const KEY_ROW = "nbd-ca-key";

const hex = (s: string) => Buffer.from(s, "utf8").toString("hex");
const unhex = (h: string) => Buffer.from(h, "hex").toString("utf8");

function readCa(ctx: MdmContext): SelfSignedCert | null {
  const rows = ctx.store.db.select().from(mdmSecretTable).where(inArray(mdmSecretTable.name, [CERT_ROW, KEY_ROW])).all();
  const cert = rows.find((r) => r.name === CERT_ROW);
  const key = rows.find((r) => r.name === KEY_ROW);
  if (!cert && !key) return null;
  if (!cert || !key) throw new PfError("INTERNAL", `the cluster NBD CA is half stored (mdm_secret holds only ${cert ? CERT_ROW : KEY_ROW}); restore the MDM database from a backup`);
  return { certPem: unhex(cert.valueHex), keyPem: unhex(key.valueHex) };
}

/** The cluster NBD CA, made on first use. */
export function nbdCa(ctx: MdmContext): SelfSignedCert {
  const have = readCa(ctx);
  if (have) return have;
  return inTransaction(ctx, () => {
    const made = generateSelfSignedCert({ commonName: `pf-nbd-ca ${ctx.systemId}`, hosts: [], validDays: NBD_CA_DAYS, now: new Date(ctx.clock()) });
    const at = ctx.clock();
    for (const [name, value] of [
      [CERT_ROW, made.certPem],
      [KEY_ROW, made.keyPem],
    ] as const) {
      ctx.store.db.insert(mdmSecretTable).values({ name, valueHex: hex(value), createdAtMs: at }).onConflictDoNothing().run();
    }
    const ca = readCa(ctx);
    assert(ca !== null, "the NBD CA exists after it was made");
    if (ca.certPem === made.certPem) consola.info(`mdm: made the cluster NBD CA (${new X509Certificate(ca.certPem).fingerprint256.slice(0, 23)}…); SDCs with --nbd-tls get server certificates signed by it`);
    return ca;
  });
}

/** What GET /api/pf/nbdCa answers: the CA certificate only. */
export function nbdCaAnswer(ctx: MdmContext): NbdCaAnswer {
  const cert = new X509Certificate(nbdCa(ctx).certPem);
  return { caPem: cert.toString(), subject: cert.subject.replace(/\n/g, ", "), validTo: cert.validTo, fingerprint256: cert.fingerprint256 };
}

/**
 * A certificate of the cluster NBD CA for one use only: an SDC's server certificate cannot
 * authenticate a client to another SDC (verify-peer), so joining as an SDC or holding one SDC's
 * key does not open every SDC's exports; client certificates come only from the audited issue.
 */
function issue(ctx: MdmContext, commonName: string, hosts: string[], publicKeyPem: string, usage: "server" | "client"): IssuedNbdCert {
  checkNodePublicKey(publicKeyPem);
  const ca = nbdCa(ctx);
  const certPem = generateSignedCert({ commonName, hosts, issuer: ca, validDays: NBD_CERT_DAYS, now: new Date(ctx.clock()), publicKeyPem, usage }).certPem;
  const cert = new X509Certificate(certPem);
  return { caPem: ca.certPem, certPem, serialNumber: cert.serialNumber, validTo: cert.validTo };
}

/** An SDC's NBD server certificate for the hosts its NBD clients dial. */
export function issueNbdServerCert(ctx: MdmContext, sdcId: string, hosts: string[], publicKeyPem: string): IssuedNbdCert {
  const issued = issue(ctx, `pf-nbd sdc ${sdcId}`, hosts, publicKeyPem, "server");
  consola.info(`mdm: issued SDC ${sdcId} an NBD server certificate (serial ${issued.serialNumber}) for ${hosts.join(", ")}, valid until ${issued.validTo}`);
  return issued;
}

/** An NBD client certificate (scli --issue_nbd_client_certificate), CN "pf-nbd-client NAME". */
export function issueNbdClientCert(ctx: MdmContext, name: string, publicKeyPem: string, by: string): IssuedNbdCert {
  nbdCa(ctx); // made outside the recording transaction (nbdCa makes it in its own)
  const issued = inTransaction(ctx, () => {
    const made = issue(ctx, `pf-nbd-client ${name}`, [], publicKeyPem, "client");
    recordNbdClientCert(ctx, { name, certPem: made.certPem, caPem: made.caPem, by });
    return made;
  });
  consola.info(`mdm: ${by} issued the NBD client certificate ${name} (serial ${issued.serialNumber}), valid until ${issued.validTo}`);
  return issued;
}
