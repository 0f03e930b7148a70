// NBD TLS material for clients (pf extensions, docs/design.md "NBD over TLS"):
// --query_nbd_ca [--out FILE]: the cluster NBD CA certificate (what NBD clients trust);
// --issue_nbd_client_certificate --name NAME --out_dir DIR: makes an EC P-256 key HERE (it is
// never sent), asks the MDM to sign its public key, and writes DIR/ca-cert.pem,
// DIR/client-cert.pem and DIR/client-key.pem (0600): the layout of nbdinfo/libnbd
// tls-certificates=DIR, $HOME/.pki/libnbd and qemu's tls-creds-x509,dir=DIR,endpoint=client.
// An existing client-key.pem is never overwritten (another client may be using it).
// --query_nbd_client_certificates: every client certificate issued, with its state;
// --revoke_nbd_client_certificate (--serial S | --name N) [--reason TEXT]: SDCs refuse it from
// their next map and close its open NBD sessions.

import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { IssuedNbdCert, NbdCaAnswer, NbdCertFiles, NbdClientCertList, RevokedNbdCerts, type NbdClientCertInfo } from "../../proto/nbd_certs.ts";
import type { CommandContext, Output } from "./command_context.ts";
import { ScliError } from "./scli_errors.ts";

export async function queryNbdCa(ctx: CommandContext): Promise<Output> {
  const ca = await ctx.client().request("GET", "/api/pf/nbdCa", undefined, NbdCaAnswer);
  const out = ctx.args.str("out");
  const head = [`Cluster NBD CA: ${ca.subject}`, `\tValid until: ${ca.validTo}`, `\tSHA-256 fingerprint: ${ca.fingerprint256}`];
  if (out === undefined) return { text: [...head, "", ...ca.caPem.trimEnd().split("\n")], json: ca };
  writeFileSync(out, ca.caPem, { mode: 0o644 });
  return { text: [...head, `Wrote the CA certificate to ${resolve(out)} (NBD clients trust it: tls-certificates dir ca-cert.pem)`], json: { ...ca, file: resolve(out) } };
}

export async function issueNbdClientCertificate(ctx: CommandContext): Promise<Output> {
  const name = ctx.args.need("name");
  const dir = resolve(ctx.args.need("out_dir"));
  const f = (file: string) => join(dir, file);
  if (existsSync(f(NbdCertFiles.clientKey))) {
    throw new ScliError("ALREADY_EXISTS", `${f(NbdCertFiles.clientKey)} exists: remove it (and ${NbdCertFiles.clientCert}) or choose another --out_dir`);
  }
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const issued = await ctx.client().request("POST", "/api/pf/nbdCa/issueClientCertificate", { name, publicKeyPem }, IssuedNbdCert);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(f(NbdCertFiles.clientKey), privateKey.export({ type: "pkcs8", format: "pem" }).toString(), { mode: 0o600 });
  writeFileSync(f(NbdCertFiles.clientCert), issued.certPem, { mode: 0o644 });
  writeFileSync(f(NbdCertFiles.caCert), issued.caPem, { mode: 0o644 });
  return {
    text: [
      `Issued NBD client certificate ${name} (serial ${issued.serialNumber}, valid until ${issued.validTo})`,
      `\tWrote ${NbdCertFiles.caCert}, ${NbdCertFiles.clientCert}, ${NbdCertFiles.clientKey} (the key was made here and never sent) to ${dir}`,
      `\tnbdinfo 'nbds://HOST:PORT/VOLUME?tls-certificates=${dir}'; qemu: --object tls-creds-x509,id=tls0,dir=${dir},endpoint=client`,
    ],
    json: { name, dir, serialNumber: issued.serialNumber, validTo: issued.validTo },
  };
}

function certLines(c: NbdClientCertInfo): string[] {
  const lines = [`NBD client certificate ${c.name}: serial ${c.serialNumber}, ${c.state}`, `\tValid ${c.notBefore} .. ${c.notAfter}; issued ${c.issuedAt} by ${c.issuedBy}`, `\tSHA-256 fingerprint: ${c.fingerprint256}`];
  if (c.revokedAt !== null) lines.push(`\tRevoked ${c.revokedAt} by ${c.revokedBy ?? "?"}${c.revokeReason ? `: ${c.revokeReason}` : ""}`);
  return lines;
}

export async function queryNbdClientCertificates(ctx: CommandContext): Promise<Output> {
  const certs = await ctx.client().request("GET", "/api/pf/nbdCa/clientCertificates", undefined, NbdClientCertList);
  const counts = (s: NbdClientCertInfo["state"]) => certs.filter((c) => c.state === s).length;
  const head = `${certs.length} NBD client certificate(s): ${counts("valid")} valid, ${counts("revoked")} revoked, ${counts("expired")} expired`;
  return { text: [head, ...certs.flatMap(certLines)], json: certs };
}

export async function revokeNbdClientCertificate(ctx: CommandContext): Promise<Output> {
  const serialNumber = ctx.args.str("serial");
  const name = ctx.args.str("name");
  const reason = ctx.args.str("reason");
  const body = { ...(serialNumber === undefined ? {} : { serialNumber }), ...(name === undefined ? {} : { name }), ...(reason === undefined ? {} : { reason }) };
  const r = await ctx.client().request("POST", "/api/pf/nbdCa/revokeClientCertificate", body, RevokedNbdCerts);
  const text = [
    ...r.revoked.map((c) => `Revoked NBD client certificate ${c.name} (serial ${c.serialNumber}): SDCs refuse it from their next map and close its open sessions`),
    ...r.alreadyRevoked.map((c) => `NBD client certificate ${c.name} (serial ${c.serialNumber}) was already revoked at ${c.revokedAt ?? "?"}`),
  ];
  return { text, json: r };
}
