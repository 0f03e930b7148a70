// A certificate authority whose key is derived from a shared secret, so that every host that
// knows the secret makes the same CA key by itself, with no file to copy between hosts (pf up's
// embedded etcd: every etcd and MDM host of a cluster file shares cluster.secret).
//
// Derivation: seed = scrypt(secret, salt "pf secret CA" || label, N 2^15, r 8, p 1, 32 bytes),
// then scalar = HMAC-SHA256(seed, counter byte), counter 0, 1, … until the scalar is a valid
// P-256 private key (1 <= d < n; a retry happens with probability ~2^-32). The CA's public key is
// shown to anyone who opens a TLS connection to a member, so a guess of the secret can be tested
// offline against it: scrypt makes each guess cost ~0.1 s and 32 MiB instead of one HMAC.
// The label separates uses (and versions) of one secret. Each host then issues its own
// self-signed CA certificate for that key with one fixed subject: the certificates differ
// (serial, validity, signature) but name the same subject and hold the same public key, so a leaf
// signed on one host chains to the CA certificate made on any other (issuer name = subject,
// signature checked with the shared public key).
//
// Invariant: the same (secret, label) gives the same key on every host and every start; a
// different secret or label gives an unrelated key. Whoever knows the secret can mint
// certificates of this CA: it protects against those who do not (the network), not against
// holders of the cluster secret.

import { createECDH, createHmac, createPrivateKey, scryptSync, type KeyObject } from "node:crypto";
import { generateSelfSignedCert, type SelfSignedCert } from "./tls_cert.ts";

/** The order n of the P-256 group: a private scalar is in [1, n-1]. */
const P256_ORDER = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/** scrypt cost of the seed: ~0.1 s and 32 MiB per derivation (once per pf up start) */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
/** attempts before giving up (each fails with probability ~2^-32) */
const MAX_DERIVE_ATTEMPTS = 16;

/** The P-256 private key derived from (secret, label). */
export function deriveCaKey(secret: string, label: string): KeyObject {
  if (secret.length === 0) throw new Error("deriveCaKey: empty secret");
  const seed = scryptSync(secret, `pf secret CA\n${label}`, 32, SCRYPT);
  for (let counter = 0; counter < MAX_DERIVE_ATTEMPTS; counter++) {
    const d = createHmac("sha256", seed).update(Buffer.from([counter])).digest();
    const v = BigInt(`0x${d.toString("hex")}`);
    if (v === 0n || v >= P256_ORDER) continue;
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(d);
    const pub = ecdh.getPublicKey(); // 0x04 || x (32) || y (32)
    return createPrivateKey({
      key: { kty: "EC", crv: "P-256", d: d.toString("base64url"), x: pub.subarray(1, 33).toString("base64url"), y: pub.subarray(33, 65).toString("base64url") },
      format: "jwk",
    });
  }
  throw new Error(`deriveCaKey: no valid P-256 scalar in ${MAX_DERIVE_ATTEMPTS} attempts`);
}

export interface SecretCaOptions {
  secret: string;
  /** separates uses of one secret, e.g. "pf etcd ca v1" */
  label: string;
  /** the CA certificate's subject CN: the same on every host (chains are built by subject) */
  commonName: string;
  now?: Date;
}

/** This host's CA certificate for the derived key (and the key, PKCS#8 PEM, to sign leaves with). */
export function secretCa(opts: SecretCaOptions): SelfSignedCert {
  const keyPem = deriveCaKey(opts.secret, opts.label).export({ type: "pkcs8", format: "pem" }).toString();
  return generateSelfSignedCert({ commonName: opts.commonName, hosts: [], privateKeyPem: keyPem, ...(opts.now ? { now: opts.now } : {}) });
}
