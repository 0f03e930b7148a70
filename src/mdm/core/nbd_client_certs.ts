// The record of NBD client certificates the cluster NBD CA issued, and their revocation
// (docs/design.md "NBD over TLS", revocation): table nbd_client_cert (migration 0009), written in
// the same transaction as the issue it records; revoking marks rows revoked and bumps the map
// version for every SDC, whose next maps carry the unexpired revoked certificates (nbdRevokedForSdcs).
//
// Invariants:
// - every client certificate issued by issueNbdClientCert has a row (one transaction);
// - a revoked row is never un-revoked; revoking again changes nothing and bumps nothing;
// - SDCs get at most Limits.nbdRevokedCertsMax entries: a revocation that would pass it is
//   refused (TOO_BIG) before anything is written, so the list an SDC holds is never cut short;
// - the table holds at most Limits.nbdClientCertRowsMax rows; rows expired more than
//   PRUNE_AFTER_EXPIRY_MS ago are pruned at each issue (an expired certificate needs no revocation).

import { X509Certificate } from "node:crypto";
import { consola } from "consola";
import { and, asc, desc, eq, gt, isNotNull, isNull, lt, sql } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { NbdClientCertInfo, NbdRevokedCert, RevokeNbdClientCert, RevokedNbdCerts } from "../../proto/nbd_certs.ts";
import { nbdClientCertTable, sdcTable } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "./context.ts";
import { bumpMapVersion } from "./system_state.ts";

const PRUNE_AFTER_EXPIRY_MS = 90 * 86_400_000;

type Row = typeof nbdClientCertTable.$inferSelect;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function info(r: Row, nowMs: number): NbdClientCertInfo {
  return {
    serialNumber: r.serial,
    name: r.name,
    fingerprint256: r.fingerprint256,
    caFingerprint256: r.caFingerprint256,
    notBefore: new Date(r.notBeforeMs).toISOString(),
    notAfter: new Date(r.notAfterMs).toISOString(),
    issuedBy: r.issuedBy,
    issuedAt: new Date(r.issuedAtMs).toISOString(),
    state: r.revokedAtMs !== null ? "revoked" : r.notAfterMs < nowMs ? "expired" : "valid",
    revokedAt: iso(r.revokedAtMs),
    revokedBy: r.revokedBy,
    revokeReason: r.revokeReason,
  };
}

/** Record a client certificate just issued (call inside the issuing transaction). */
export function recordNbdClientCert(ctx: MdmContext, o: { name: string; certPem: string; caPem: string; by: string }): void {
  const now = ctx.clock();
  const db = ctx.store.db;
  db.delete(nbdClientCertTable).where(lt(nbdClientCertTable.notAfterMs, now - PRUNE_AFTER_EXPIRY_MS)).run();
  const rows = db.select({ n: sql<number>`count(*)` }).from(nbdClientCertTable).get()?.n ?? 0;
  if (rows >= Limits.nbdClientCertRowsMax) {
    throw new PfError("TOO_BIG", `the MDM already records ${rows} NBD client certificates (at most ${Limits.nbdClientCertRowsMax}); certificates expired 90 days ago are pruned at each issue: wait for some to expire`);
  }
  const cert = new X509Certificate(o.certPem);
  const ca = new X509Certificate(o.caPem);
  db.insert(nbdClientCertTable)
    .values({
      serial: cert.serialNumber.toUpperCase(),
      name: o.name,
      fingerprint256: cert.fingerprint256,
      caFingerprint256: ca.fingerprint256,
      notBeforeMs: Date.parse(cert.validFrom),
      notAfterMs: Date.parse(cert.validTo),
      issuedBy: o.by,
      issuedAtMs: now,
    })
    .run();
}

/** Every recorded client certificate, newest first. */
export function listNbdClientCerts(ctx: MdmContext): NbdClientCertInfo[] {
  const now = ctx.clock();
  return ctx.store.db.select().from(nbdClientCertTable).orderBy(desc(nbdClientCertTable.issuedAtMs), asc(nbdClientCertTable.serial)).all().map((r) => info(r, now));
}

function selectTargets(ctx: MdmContext, req: RevokeNbdClientCert, nowMs: number): Row[] {
  const t = nbdClientCertTable;
  if (req.serialNumber !== undefined) {
    const serial = req.serialNumber.toUpperCase();
    const row = ctx.store.db.select().from(t).where(eq(t.serial, serial)).get();
    if (row === undefined) throw new PfError("NOT_FOUND", `no NBD client certificate with serial ${serial} was issued by this cluster (scli --query_nbd_client_certificates lists them)`);
    return [row];
  }
  const name = req.name ?? "";
  const rows = ctx.store.db.select().from(t).where(and(eq(t.name, name), gt(t.notAfterMs, nowMs))).all();
  if (rows.length === 0) throw new PfError("NOT_FOUND", `no unexpired NBD client certificate named ${name} (scli --query_nbd_client_certificates lists them)`);
  return rows;
}

/**
 * Revoke one certificate (by serial) or every unexpired one of a name. SDCs refuse them from
 * their next map (the map watch brings it within about a round trip) and close their sessions.
 */
export function revokeNbdClientCert(ctx: MdmContext, req: RevokeNbdClientCert, by: string): RevokedNbdCerts {
  const now = ctx.clock();
  const t = nbdClientCertTable;
  return inTransaction(ctx, () => {
    const targets = selectTargets(ctx, req, now);
    const fresh = targets.filter((r) => r.revokedAtMs === null);
    const already = targets.filter((r) => r.revokedAtMs !== null);
    const sent = ctx.store.db.select({ n: sql<number>`count(*)` }).from(t).where(and(isNotNull(t.revokedAtMs), gt(t.notAfterMs, now))).get()?.n ?? 0;
    const adds = fresh.filter((r) => r.notAfterMs > now).length;
    if (sent + adds > Limits.nbdRevokedCertsMax) {
      throw new PfError("TOO_BIG", `${sent} unexpired NBD client certificates are revoked already; ${adds} more would pass the limit of ${Limits.nbdRevokedCertsMax} SDCs are sent (a new cluster NBD CA would be needed)`);
    }
    for (const r of fresh) {
      ctx.store.db
        .update(t)
        .set({ revokedAtMs: now, revokedBy: by, revokeReason: req.reason ?? null })
        .where(and(eq(t.serial, r.serial), isNull(t.revokedAtMs)))
        .run();
      consola.info(`mdm: ${by} revoked the NBD client certificate ${r.name} (serial ${r.serial}, valid until ${new Date(r.notAfterMs).toISOString()})${req.reason ? `: ${req.reason}` : ""}`);
    }
    if (fresh.length > 0) {
      // only SDCs serve NBD: their maps carry the list; SDSs need not refetch
      const sdcs = ctx.store.db.select({ id: sdcTable.id }).from(sdcTable).all().map((r) => r.id);
      bumpMapVersion(ctx, { sds: [], sdc: sdcs }, { urgent: true }); // sessions of it close within a round trip
    }
    const after = (r: Row) => ctx.store.db.select().from(t).where(eq(t.serial, r.serial)).get() ?? r;
    return { revoked: fresh.map((r) => info(after(r), now)), alreadyRevoked: already.map((r) => info(r, now)) };
  });
}

/** The revoked certificates SDCs refuse: unexpired ones only (bounded by Limits.nbdRevokedCertsMax). */
export function nbdRevokedForSdcs(ctx: MdmContext): NbdRevokedCert[] {
  const t = nbdClientCertTable;
  return ctx.store.db
    .select()
    .from(t)
    .where(and(isNotNull(t.revokedAtMs), gt(t.notAfterMs, ctx.clock())))
    .orderBy(asc(t.serial))
    .limit(Limits.nbdRevokedCertsMax)
    .all()
    .map((r) => ({ serialNumber: r.serial, caFingerprint256: r.caFingerprint256, fingerprint256: r.fingerprint256, name: r.name, revokedAtMs: r.revokedAtMs ?? 0 }));
}
