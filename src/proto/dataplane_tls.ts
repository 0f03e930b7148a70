// Optional TLS on the data plane (cluster YAML `dataPlane: { tls: true }`, `pf mdm|sds|sdc
// --data-plane-tls`): the X.509 identity a node's certificate carries, the checks pf itself makes
// of a peer's certificate, and the Bun TLS options both ends use.
//
// Who signs: the MDM holds a data-plane CA (its own key, never sent anywhere). A node (SDS, SDC)
// makes an EC P-256 key in its data dir and sends only the public key with its join (HTTPS to the
// MDM, verified against the MDM CA, with the cluster secret); the MDM answers with a certificate
// naming the id it gave that node. The MDM issues its own client certificate (role mdm, the
// system id) at start. So no private key crosses the network and the operator copies no files.
//
// Identity: a certificate names exactly one node, as the DNS name `<role>-<id>.pf-dataplane` in
// subjectAltName (and CN "pf-dp <role> <id>"). A client sets that name of the SDS it means to
// reach as the TLS server name; the SDS compares the (role, id) its peer's certificate names with
// the (role, id) the HELLO then claims and proves.
//
// Invariants:
// - a peer certificate is accepted only if pf verified it: issued by and signed with the cluster's
//   data-plane CA, inside its validity dates, naming exactly one node identity, and that identity
//   is the expected one; Bun's `authorized` must be true as well but is never trusted alone
//   (oven-sh/bun#33754, #33924, #35240; NODE_TLS_REJECT_UNAUTHORIZED=0 is refused at start);
// - TLS 1.0/1.1 are disabled; TLS on means no plaintext connection is ever made or served;
// - over TLS the HELLO is bound to the session (helloBindingOf, dataplane_auth.ts "Channel binding").

import { constants, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { consola } from "consola";
import { NodeRole, TLS_EXPORTER_BYTES, TLS_EXPORTER_LABEL, roleName, tlsBinding, type ChannelBinding } from "./dataplane_auth.ts";
import { PfError } from "./errors.ts";
import { generateSignedCert, type SelfSignedCert } from "./tls_cert.ts";

/** Suffix of the DNS name in a node certificate (never a real DNS zone: RFC 6761-like). */
export const IDENTITY_SUFFIX = ".pf-dataplane";
/** Validity of a node certificate; it is issued again at every join (every process start). */
export const NODE_CERT_DAYS = 397;
const KEY_FILE = "dataplane-key.pem";

export interface NodeIdentity {
  role: NodeRole;
  nodeId: string;
}

/** What one node needs to speak TLS on the data plane. */
export interface DataPlaneTlsMaterial {
  /** the cluster's data-plane CA certificate (trust anchor for peers) */
  caPem: string;
  /** this node's certificate, issued by the CA, naming this node */
  certPem: string;
  keyPem: string;
  /** the identity certPem names */
  self: NodeIdentity;
}

const ROLE_BY_NAME: Record<string, NodeRole> = { sdc: NodeRole.SDC, sds: NodeRole.SDS, mdm: NodeRole.MDM };

export function identityName(id: NodeIdentity): string {
  return `${roleName(id.role)}-${id.nodeId}${IDENTITY_SUFFIX}`;
}

/** The node identities a certificate names (subjectAltName DNS entries under IDENTITY_SUFFIX). */
export function identitiesOf(cert: X509Certificate): NodeIdentity[] {
  const out: NodeIdentity[] = [];
  for (const entry of (cert.subjectAltName ?? "").split(/,\s*/)) {
    const m = /^DNS:(sdc|sds|mdm)-([0-9a-f]{16})\.pf-dataplane$/.exec(entry.trim());
    if (m) out.push({ role: ROLE_BY_NAME[m[1]!]!, nodeId: m[2]! });
  }
  return out;
}

/** TLS on the data plane relies on pf's own checks; an env that turns Bun's off must not be set. */
export function refuseInsecureTlsEnv(): void {
  if (process.env.NODE_TLS_REJECT_UNAUTHORIZED === "0") {
    throw new PfError("BAD_REQUEST", "NODE_TLS_REJECT_UNAUTHORIZED=0 is set: with data-plane TLS on, unset it (it disables the TLS library's peer checks, oven-sh/bun#35240)");
  }
}

/**
 * A node's data-plane TLS key, made once in its data dir (mode 0600; no data dir: a new one per
 * process, which is fine: the certificate is issued again at every join), and its public key PEM.
 */
export function loadOrMakeNodeKey(dataDir: string | undefined): { keyPem: string; publicKeyPem: string } {
  if (dataDir !== undefined) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = dataDir === undefined ? null : join(dataDir, KEY_FILE);
  let keyPem: string;
  if (file !== null && existsSync(file)) keyPem = readFileSync(file, "utf8");
  else {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    if (file !== null) writeFileSync(file, keyPem, { mode: 0o600 });
  }
  const publicKeyPem = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "pem" }).toString();
  return { keyPem, publicKeyPem };
}

/** A node's public key as sent with its join: a PfError (BAD_REQUEST) naming what is wrong. */
export function checkNodePublicKey(publicKeyPem: string): void {
  let key;
  try {
    key = createPublicKey(publicKeyPem);
  } catch (e) {
    throw new PfError("BAD_REQUEST", `data-plane TLS: the public key sent with the join is not a PEM public key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== "ec" && key.asymmetricKeyType !== "ed25519" && key.asymmetricKeyType !== "rsa") {
    throw new PfError("BAD_REQUEST", `data-plane TLS: a ${key.asymmetricKeyType} key cannot get a certificate (use EC P-256)`);
  }
}

/** The MDM side: sign a node certificate for a public key the node made. */
export function issueNodeCert(ca: SelfSignedCert, id: NodeIdentity, publicKeyPem: string, now: Date = new Date()): string {
  checkNodePublicKey(publicKeyPem);
  return generateSignedCert({ commonName: `pf-dp ${roleName(id.role)} ${id.nodeId}`, hosts: [identityName(id)], issuer: ca, validDays: NODE_CERT_DAYS, now, publicKeyPem }).certPem;
}

/** Check that an issued certificate fits the key and names this node before using it. */
export function materialFrom(caPem: string, certPem: string, keyPem: string, self: NodeIdentity): DataPlaneTlsMaterial {
  const cert = new X509Certificate(certPem);
  const pub = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
  if (!Buffer.from(pub).equals(Buffer.from(cert.publicKey.export({ type: "spki", format: "der" })))) {
    throw new PfError("INTERNAL", "data-plane TLS: the MDM's certificate is not for this node's key");
  }
  const why = verifyPeerCert(caPem, cert, self);
  if (why !== null) throw new PfError("INTERNAL", `data-plane TLS: the certificate the MDM issued is not usable: ${why}`);
  return { caPem, certPem, keyPem, self };
}

/**
 * null when `cert` is a valid data-plane certificate of the cluster naming `expect` (or, with
 * expect null, naming exactly one identity); else the reason it is refused.
 */
export function verifyPeerCert(caPem: string, cert: X509Certificate | undefined | null, expect: NodeIdentity | null, nowMs: number = Date.now()): string | null {
  if (cert === undefined || cert === null) return "no certificate";
  const ca = new X509Certificate(caPem);
  const subject = cert.subject.replace(/\n/g, ", ");
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return `certificate "${subject}" is not signed by this cluster's data-plane CA`;
  if (Date.parse(cert.validFrom) > nowMs || Date.parse(cert.validTo) < nowMs) return `certificate "${subject}" is valid ${cert.validFrom} .. ${cert.validTo}, not now`;
  if (cert.ca) return `certificate "${subject}" is a CA certificate, not a node's`;
  const ids = identitiesOf(cert);
  if (ids.length !== 1) return `certificate "${subject}" names ${ids.length} node identities (exactly one expected)`;
  const got = ids[0]!;
  if (expect !== null && (got.role !== expect.role || got.nodeId !== expect.nodeId)) {
    return `certificate names ${roleName(got.role)} ${got.nodeId}, not ${roleName(expect.role)} ${expect.nodeId}`;
  }
  return null;
}

/** Bun's view of a finished TLS handshake (a TLS socket). */
export interface TlsPeerView {
  readonly authorized: boolean;
  getPeerX509Certificate(): X509Certificate | undefined;
}

/** pf's check of a finished handshake: null = go on, else the reason; `identity` = whom the cert names. */
export function checkTlsPeer(m: DataPlaneTlsMaterial, peer: TlsPeerView, expect: NodeIdentity | null): { error: string | null; identity: NodeIdentity | null } {
  let cert: X509Certificate | undefined;
  try {
    cert = peer.getPeerX509Certificate();
  } catch {
    cert = undefined;
  }
  const error = verifyPeerCert(m.caPem, cert, expect);
  if (error !== null) return { error, identity: null };
  if (!peer.authorized) return { error: "the TLS library did not authorize the peer certificate", identity: null };
  return { error: null, identity: identitiesOf(cert!)[0]! };
}

/** A finished TLS socket's RFC 5705 exporter (Bun's Socket type declares it returning void). */
export interface TlsExporterView {
  exportKeyingMaterial(length: number, label: string, context: Buffer): unknown;
}

const EMPTY_CONTEXT = Buffer.alloc(0);

/**
 * The handshake's channel binding of a TLS connection (dataplane_auth.ts): the session's exporter
 * value for TLS_EXPORTER_LABEL, empty context. Both ends get the same bytes (checked in
 * test/dataplane_hello_binding.test.ts against each other and against OpenSSL, TLS 1.2 and 1.3).
 * A TLS library that cannot export is a broken invariant of a TLS node: the connection must not
 * fall back to the unbound transcript.
 */
export function helloBindingOf(sock: TlsExporterView): ChannelBinding {
  const v = sock.exportKeyingMaterial(TLS_EXPORTER_BYTES, TLS_EXPORTER_LABEL, EMPTY_CONTEXT);
  if (!(v instanceof Uint8Array) || v.byteLength !== TLS_EXPORTER_BYTES) {
    throw new PfError("INTERNAL", `data-plane TLS: the TLS library exported no keying material (got ${v instanceof Uint8Array ? `${v.byteLength} bytes` : typeof v}); the handshake cannot be bound to the TLS session`);
  }
  return tlsBinding(new Uint8Array(v));
}

const SECURE_OPTIONS = constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1;

/** Options of an SDS's server-side TLS session (upgradeTLS of an accepted socket). */
export function serverTlsOptions(m: DataPlaneTlsMaterial): { cert: string; key: string; ca: string; requestCert: true; rejectUnauthorized: false; secureOptions: number } {
  // rejectUnauthorized false: the handshake completes and pf decides (checkTlsPeer), so a refusal
  // is logged with its reason; nothing is read before that decision
  return { cert: m.certPem, key: m.keyPem, ca: m.caPem, requestCert: true, rejectUnauthorized: false, secureOptions: SECURE_OPTIONS };
}

/** Options of a client connection to the SDS `sdsId` (its identity name is the server name). */
export function clientTlsOptions(m: DataPlaneTlsMaterial, sdsId: string): { cert: string; key: string; ca: string; rejectUnauthorized: false; serverName: string; secureOptions: number } {
  return { cert: m.certPem, key: m.keyPem, ca: m.caPem, rejectUnauthorized: false, serverName: identityName({ role: NodeRole.SDS, nodeId: sdsId }), secureOptions: SECURE_OPTIONS };
}

/**
 * A node's TLS flag against the MDM's answer: the MDM decides; a node told something else on its
 * command line stops with this error instead of running a mixed cluster.
 */
export function agreeOnTls(who: string, flag: boolean | undefined, mdmRequires: boolean): boolean {
  if (flag !== undefined && flag !== mdmRequires) {
    throw new PfError(
      "INVALID_STATE",
      `${who}: data-plane TLS mismatch: this node was started with --data-plane-tls=${flag} but the MDM ${mdmRequires ? "requires TLS on every data-plane connection" : "runs the data plane without TLS"}; ` +
        `start every role with the same setting (cluster YAML dataPlane.tls, pf mdm --data-plane-tls)`,
    );
  }
  return mdmRequires;
}

/** The MDM's side: the CA it signs node certificates with, and its own client material. */
export interface DataPlaneAuthority {
  ca: SelfSignedCert;
  /** the MDM's client certificate (role mdm, the system id) for its own data-plane pool */
  self: DataPlaneTlsMaterial;
}

/** Make the MDM's authority from its CA (issuing its own client certificate in memory). */
export function authorityFrom(ca: SelfSignedCert, systemId: string): DataPlaneAuthority {
  const self: NodeIdentity = { role: NodeRole.MDM, nodeId: systemId };
  const made = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const keyPem = made.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicKeyPem = made.publicKey.export({ type: "spki", format: "pem" }).toString();
  return { ca, self: materialFrom(ca.certPem, issueNodeCert(ca, self, publicKeyPem), keyPem, self) };
}

/**
 * After a join: agree with the MDM on TLS (agreeOnTls) and, when on, the node's material from
 * the answer. null: the data plane runs without TLS.
 */
export function tlsAfterJoin(
  who: string,
  flag: boolean | undefined,
  answer: { required: boolean; caPem?: string; certPem?: string },
  key: { keyPem: string },
  self: NodeIdentity,
): DataPlaneTlsMaterial | null {
  if (!agreeOnTls(who, flag, answer.required)) return null;
  refuseInsecureTlsEnv();
  return materialFrom(answer.caPem!, answer.certPem!, key.keyPem, self);
}

const DRIFT_LOG_INTERVAL_MS = 60_000;

/**
 * A running node whose TLS setting no longer matches the MDM's (the MDM was restarted with the
 * other one): its connections to nodes that joined since fail, so say why, loudly, once a minute.
 */
export class TlsDrift {
  private lastLogMs = -Infinity;
  constructor(
    private readonly who: string,
    private readonly mine: boolean,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** Compare with what the MDM said now; true when they differ. */
  check(mdmSays: boolean): boolean {
    if (mdmSays === this.mine) return false;
    const now = this.nowMs();
    if (now - this.lastLogMs >= DRIFT_LOG_INTERVAL_MS) {
      this.lastLogMs = now;
      consola.error(
        `${this.who}: data-plane TLS mismatch (INVALID_STATE): this node runs the data plane ${this.mine ? "in TLS" : "without TLS"} but the MDM now says ${mdmSays ? "TLS is required" : "TLS is off"}; ` +
          `connections to nodes started since fail: restart this node (it follows the MDM at join)`,
      );
    }
    return true;
  }
}
