// The MDM's secrets on first start and after: the cluster secret (option, PF_CLUSTER_SECRET,
// DATA_DIR/cluster-secret, or generated and saved there mode 0600), the admin password (option,
// PF_ADMIN_PASSWORD, or generated, printed once and saved in DATA_DIR/admin-password mode 0600;
// only its hash goes to sqlite), and the TLS certificate (files given by options, or a
// self-signed one made in-process in DATA_DIR/tls on first start).

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import consola from "consola";
import { PfError } from "../proto/errors.ts";
import { certCoversHost, describeCert, generateSelfSignedCert, type SelfSignedCert } from "../proto/tls_cert.ts";

export const CLUSTER_SECRET_FILE = "cluster-secret";
export const ADMIN_PASSWORD_FILE = "admin-password";
export const TLS_DIR = "tls";
export const DATA_PLANE_CA_DIR = "dataplane-ca";
const MIN_SECRET_LENGTH = 8;

function readTrimmed(path: string): string {
  return readFileSync(path, "utf8").trim();
}

function writeSecret(path: string, value: string): void {
  writeFileSync(path, value + "\n", { mode: 0o600 });
}

export function resolveClusterSecret(dataDir: string, given: string | undefined): string {
  const fromEnv = process.env.PF_CLUSTER_SECRET;
  const file = join(dataDir, CLUSTER_SECRET_FILE);
  const secret = given ?? (fromEnv || undefined) ?? (existsSync(file) ? readTrimmed(file) : undefined);
  if (secret !== undefined) {
    if (secret.length < MIN_SECRET_LENGTH) throw new PfError("BAD_REQUEST", `the cluster secret must be at least ${MIN_SECRET_LENGTH} characters`);
    return secret;
  }
  const made = randomBytes(24).toString("hex");
  writeSecret(file, made);
  consola.info(`mdm: generated a cluster secret in ${file} (give it to SDS and SDC hosts)`);
  return made;
}

export type AdminPasswordPlan =
  | { kind: "set"; password: string; generated: boolean }
  | { kind: "keep"; knownPassword: string | null };

/** What to do with the admin password: set a given/generated one, or keep the stored hash. */
export function planAdminPassword(dataDir: string, given: string | undefined, userExists: boolean): AdminPasswordPlan {
  const fromEnv = process.env.PF_ADMIN_PASSWORD;
  const password = given ?? (fromEnv || undefined);
  if (password !== undefined) {
    if (password.length === 0) throw new PfError("BAD_REQUEST", "the admin password must not be empty");
    return { kind: "set", password, generated: false };
  }
  const file = join(dataDir, ADMIN_PASSWORD_FILE);
  if (userExists) return { kind: "keep", knownPassword: existsSync(file) ? readTrimmed(file) : null };
  const made = randomBytes(18).toString("base64url");
  writeSecret(file, made);
  consola.box(`pf MDM: generated admin password (saved in ${file}, mode 0600):\n\n  ${made}\n\nLog in as user "admin".`);
  return { kind: "set", password: made, generated: true };
}

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);

export function isWildcardHost(host: string): boolean {
  return WILDCARDS.has(host);
}

/** Names a self-signed certificate should carry for this listen address. */
export function certHostsFor(listenHost: string): string[] {
  const hosts = ["127.0.0.1", "::1", "localhost", hostname()];
  if (isWildcardHost(listenHost)) {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.address.includes("%")) hosts.push(a.address);
  } else {
    hosts.unshift(listenHost.replace(/^\[|\]$/g, ""));
  }
  return [...new Set(hosts)];
}

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  certFile: string;
}

export function resolveTls(dataDir: string, listenHost: string, files: { certFile?: string; keyFile?: string }): TlsMaterial {
  if (files.certFile !== undefined || files.keyFile !== undefined) {
    if (files.certFile === undefined || files.keyFile === undefined) {
      throw new PfError("BAD_REQUEST", "give both a TLS certificate file and its key file, or neither");
    }
    let certPem: string;
    let keyPem: string;
    try {
      certPem = readFileSync(files.certFile, "utf8");
      keyPem = readFileSync(files.keyFile, "utf8");
      describeCert(certPem, keyPem);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `cannot use TLS certificate ${files.certFile} with key ${files.keyFile}: ${(e as Error).message}`);
    }
    return { certPem, keyPem, certFile: files.certFile };
  }
  const dir = join(dataDir, TLS_DIR);
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) {
    const certPem = readFileSync(certFile, "utf8");
    const keyPem = readFileSync(keyFile, "utf8");
    describeCert(certPem, keyPem);
    if (isWildcardHost(listenHost) || certCoversHost(certPem, listenHost)) return { certPem, keyPem, certFile };
    consola.warn(`mdm: ${certFile} does not name ${listenHost}; making a new self-signed certificate (clients need the new one)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hosts = certHostsFor(listenHost);
  const made = generateSelfSignedCert({ commonName: `pf-mdm ${hostname()}`, hosts });
  writeFileSync(keyFile, made.keyPem, { mode: 0o600 });
  writeFileSync(certFile, made.certPem, { mode: 0o644 });
  consola.info(`mdm: made a self-signed TLS certificate ${certFile} for ${hosts.join(", ")}`);
  return { certPem: made.certPem, keyPem: made.keyPem, certFile };
}

/**
 * The data-plane CA of a single MDM (data-plane TLS on): DATA_DIR/dataplane-ca/ca-cert.pem and
 * ca-key.pem (0600), made on first start. Its key never leaves the MDM: nodes send public keys
 * and get certificates back (src/proto/dataplane_tls.ts). HA mode uses the cluster CA in etcd.
 */
export function resolveDataPlaneCa(dataDir: string): SelfSignedCert {
  const dir = join(dataDir, DATA_PLANE_CA_DIR);
  const certFile = join(dir, "ca-cert.pem");
  const keyFile = join(dir, "ca-key.pem");
  if (existsSync(certFile) && existsSync(keyFile)) {
    const ca = { certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
    try {
      describeCert(ca.certPem, ca.keyPem);
    } catch (e) {
      throw new PfError("BAD_REQUEST", `data-plane CA ${certFile} with ${keyFile}: ${(e as Error).message}; restore both files (nodes hold certificates signed by it) or remove both to make a new CA`);
    }
    return ca;
  }
  if (existsSync(certFile) || existsSync(keyFile)) throw new PfError("BAD_REQUEST", `data-plane CA: ${dir} holds only one of ca-cert.pem and ca-key.pem; restore the other or remove both`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = generateSelfSignedCert({ commonName: `pf-dataplane-ca ${hostname()}`, hosts: [] });
  writeFileSync(keyFile, ca.keyPem, { mode: 0o600 });
  writeFileSync(certFile, ca.certPem, { mode: 0o644 });
  consola.info(`mdm: made the data-plane CA ${certFile} (nodes get certificates signed by it when they join)`);
  return ca;
}
