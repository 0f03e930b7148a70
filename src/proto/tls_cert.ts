// Self-signed TLS certificates made in-process (no openssl binary: operators copy one file):
// an EC P-256 key from node:crypto and a minimal DER/X.509 v3 builder. The certificate names
// every address clients use in subjectAltName (DNS names and IPv4/IPv6 addresses), is its own
// CA (basicConstraints CA:TRUE) so clients trust it by pinning it as `ca`, and is signed with
// ecdsa-with-SHA256. DER lengths are encoded in definite form; INTEGERs are minimal and positive.

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import { isIP } from "node:net";

// ---- DER primitives ----

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);

function derInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let b = bytes.subarray(i);
  if ((b[0] ?? 0) & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

function derOid(oid: string): Buffer {
  const parts = oid.split(".").map(Number);
  const first = parts[0] ?? 0;
  const second = parts[1] ?? 0;
  const out: number[] = [first * 40 + second];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

const derUtf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));
const derBool = (b: boolean) => tlv(0x01, Buffer.from([b ? 0xff : 0]));
const derOctets = (b: Buffer) => tlv(0x04, b);
const derBitString = (b: Buffer) => tlv(0x03, Buffer.from([0]), b);

/** UTCTime for years 1950-2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function derTime(d: Date): Buffer {
  const p = (n: number) => String(n).padStart(2, "0");
  const tail = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  if (y < 2050) return tlv(0x17, Buffer.from(`${p(y % 100)}${tail}`, "ascii"));
  return tlv(0x18, Buffer.from(`${y}${tail}`, "ascii"));
}

function ipBytes(ip: string): Buffer {
  const kind = isIP(ip);
  if (kind === 4) return Buffer.from(ip.split(".").map(Number));
  if (kind !== 6) throw new Error(`not an IP address: ${ip}`);
  // expand "::" and an embedded IPv4 tail
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const b = v4[1].split(".").map(Number);
    text = text.slice(0, -v4[1].length) + `${(((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16)}:${(((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g || "0", 16), i * 2));
  return out;
}

// ---- certificate ----

const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  prime256v1: "1.2.840.10045.3.1.7",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  subjectKeyId: "2.5.29.14",
} as const;

export interface SelfSignedCert {
  certPem: string;
  keyPem: string;
}

export interface SelfSignedCertOptions {
  commonName: string;
  /** a subject of O=pf only, no CN (etcd's JSON gateway refuses a client certificate with a CN: CVE-2018-16886) */
  omitCommonName?: boolean;
  /** certify and sign with this key (PKCS#8 PEM) instead of a new one (a CA whose key is derived: secret_ca.ts) */
  privateKeyPem?: string;
  /** DNS names and IP addresses (v4 or v6) for subjectAltName; duplicates are dropped */
  hosts: string[];
  validDays?: number;
  /** extendedKeyUsage of a leaf: serverAuth and clientAuth (default), or only one of them */
  usage?: "both" | "server" | "client";
  now?: Date;
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(derOid(oid), derBool(true), derOctets(value)) : seq(derOid(oid), derOctets(value));
}

function subjectAltNames(hosts: string[]): Buffer {
  const names = [...new Set(hosts.map((h) => h.replace(/^\[|\]$/g, "")).filter((h) => h.length > 0))];
  const entries = names.map((h) => (isIP(h) ? tlv(0x87, ipBytes(h)) : tlv(0x82, Buffer.from(h, "ascii"))));
  return seq(...entries);
}

/** Make an EC P-256 key and a self-signed X.509 v3 certificate for it. */
export function generateSelfSignedCert(opts: SelfSignedCertOptions): SelfSignedCert {
  return makeCert(opts, null);
}

export interface SignedCertOptions extends SelfSignedCertOptions {
  /** the CA that signs (a certificate made by generateSelfSignedCert, which is its own CA) */
  issuer: SelfSignedCert;
  /** certify this public key (SPKI PEM) made elsewhere instead of a new key pair; keyPem is then "" */
  publicKeyPem?: string;
}

/**
 * Make an EC P-256 key and a server certificate for it signed by a CA (HA mode: every MDM of a
 * cluster has its own certificate, for its own address, and one CA file verifies them all).
 * The certificate is not a CA itself (basicConstraints CA:FALSE).
 */
export function generateSignedCert(opts: SignedCertOptions): SelfSignedCert {
  return makeCert(opts, opts.issuer, opts.publicKeyPem);
}

function makeCert(opts: SelfSignedCertOptions, issuer: SelfSignedCert | null, publicKeyPem?: string): SelfSignedCert {
  const given = opts.privateKeyPem === undefined ? null : createPrivateKey(opts.privateKeyPem);
  const made = publicKeyPem === undefined && given === null ? generateKeyPairSync("ec", { namedCurve: "prime256v1" }) : null;
  const privateKey = given ?? made?.privateKey ?? null;
  const publicKey = given !== null ? createPublicKey(given) : (made?.publicKey ?? createPublicKey(publicKeyPem!));
  const spki = publicKey.export({ type: "spki", format: "der" });
  const now = opts.now ?? new Date();
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000); // tolerate clock skew between hosts
  const notAfter = new Date(now.getTime() + (opts.validDays ?? 3650) * 24 * 60 * 60 * 1000);
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const name = seq(
    set(seq(derOid(OID.organization), derUtf8("pf"))),
    ...(opts.omitCommonName === true ? [] : [set(seq(derOid(OID.commonName), derUtf8(opts.commonName.slice(0, 64))))]),
  );
  const issuerName = issuer === null ? name : subjectOf(pemToDer(issuer.certPem));
  const signKey = issuer === null ? privateKey! : createPrivateKey(issuer.keyPem);
  const sigAlg = seq(derOid(OID.ecdsaWithSha256));
  const keyId = new Bun.CryptoHasher("sha1").update(spki).digest();
  const isCa = issuer === null;
  const extensions = seq(
    extension(OID.basicConstraints, true, isCa ? seq(derBool(true)) : seq()),
    // digitalSignature (bit 0) | keyCertSign (bit 5): "03 02 02 84" = 2 unused bits, 1000 0100;
    // a leaf: digitalSignature only, "03 02 07 80"
    extension(OID.keyUsage, true, isCa ? tlv(0x03, Buffer.from([0x02, 0x84])) : tlv(0x03, Buffer.from([0x07, 0x80]))),
    extension(OID.extKeyUsage, false, seq(...(opts.usage === "client" ? [] : [derOid(OID.serverAuth)]), ...(opts.usage === "server" ? [] : [derOid(OID.clientAuth)]))),
    extension(OID.subjectKeyId, false, derOctets(Buffer.from(keyId))),
    // RFC 5280: subjectAltName holds at least one name; a certificate naming none has no SAN
    ...(opts.hosts.some((h) => h.length > 0) ? [extension(OID.subjectAltName, false, subjectAltNames(opts.hosts))] : []),
  );
  const tbs = seq(
    tlv(0xa0, derInteger(Buffer.from([2]))), // version v3
    derInteger(serial),
    sigAlg,
    issuerName,
    seq(derTime(notBefore), derTime(notAfter)),
    name,
    spki,
    tlv(0xa3, extensions),
  );
  const signature = sign("sha256", tbs, { key: signKey, dsaEncoding: "der" });
  const der = seq(tbs, sigAlg, derBitString(signature));
  const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END CERTIFICATE-----\n`;
  const keyPem = privateKey === null ? "" : privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  return { certPem, keyPem };
}

function pemToDer(pem: string): Buffer {
  const b64 = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  return Buffer.from(b64, "base64");
}

/** One DER element at offset: its whole bytes and where its content starts and ends. */
function derElement(buf: Buffer, offset: number): { start: number; contentStart: number; end: number } {
  const first = buf[offset + 1];
  if (first === undefined) throw new Error("truncated DER");
  let len = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[offset + 2 + i] ?? 0);
    contentStart = offset + 2 + n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new Error("truncated DER");
  return { start: offset, contentStart, end };
}

/** The subject Name (whole DER) of a certificate: 6th field of tbsCertificate (version first). */
function subjectOf(der: Buffer): Buffer {
  const cert = derElement(der, 0);
  const tbs = derElement(der, cert.contentStart);
  let at = tbs.contentStart;
  let field = derElement(der, at);
  if (der[at] !== 0xa0) throw new Error("certificate without a version field");
  for (let i = 0; i < 5; i++) {
    at = field.end;
    field = derElement(der, at);
  }
  return Buffer.from(der.subarray(field.start, field.end));
}

/** Check that a certificate and key belong together and the certificate parses; returns its SAN text. */
export function describeCert(certPem: string, keyPem: string): { subjectAltName: string; validTo: string } {
  const cert = new X509Certificate(certPem);
  const pub = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
  const certPub = cert.publicKey.export({ type: "spki", format: "der" });
  if (!Buffer.from(pub).equals(Buffer.from(certPub))) throw new Error("TLS key does not match the certificate");
  return { subjectAltName: cert.subjectAltName ?? "", validTo: cert.validTo };
}

/** True when the certificate's subjectAltName names this host (DNS name or IP). */
export function certCoversHost(certPem: string, host: string): boolean {
  const cert = new X509Certificate(certPem);
  const h = host.replace(/^\[|\]$/g, "");
  if (isIP(h)) return cert.checkIP(h) !== undefined;
  return cert.checkHost(h) !== undefined;
}
