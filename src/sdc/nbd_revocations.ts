// The NBD client certificates this SDC refuses (docs/design.md "NBD over TLS", revocation): the
// list of revoked, unexpired certificates the MDM sends with every map (SdcMapsResponse.nbdRevoked),
// replaced whole at each map. checkPeer (nbd_tls.ts) asks it at every TLS handshake; the NBD server
// (nbd_server.ts) listens for additions and closes the open sessions of a newly revoked certificate.
//
// Invariants: a certificate matches by serial number when its issuer is the CA the entry names
// (serial + issuer), or by its SHA-256 fingerprint whoever signed it; the list holds at most what
// the map's schema lets through (Limits.nbdRevokedCertsMax); listeners hear only of entries that
// were not in the list before, so a map refresh with an unchanged list closes nothing.

import type { NbdRevokedCert } from "../proto/nbd_certs.ts";

/** What identifies a client certificate presented in a TLS handshake. */
export interface PeerCertId {
  serialNumber: string;
  fingerprint256: string;
  /** fingerprint of the CA that signed it (the SDC's ca-cert.pem: checkPeer verified that) */
  caFingerprint256: string;
  subject: string;
}

const serialKey = (caFingerprint256: string, serial: string) => `${caFingerprint256}|${serial.toUpperCase()}`;

export class NbdRevocations {
  private bySerial = new Map<string, NbdRevokedCert>();
  private byFingerprint = new Map<string, NbdRevokedCert>();
  private readonly listeners = new Set<(added: readonly NbdRevokedCert[]) => void>();

  get size(): number {
    return this.byFingerprint.size;
  }

  /** Replace the list with the one of a new map; tell the listeners what it adds. */
  update(list: readonly NbdRevokedCert[]): void {
    const bySerial = new Map<string, NbdRevokedCert>();
    const byFingerprint = new Map<string, NbdRevokedCert>();
    const added: NbdRevokedCert[] = [];
    for (const e of list) {
      bySerial.set(serialKey(e.caFingerprint256, e.serialNumber), e);
      byFingerprint.set(e.fingerprint256, e);
      if (!this.byFingerprint.has(e.fingerprint256)) added.push(e);
    }
    this.bySerial = bySerial;
    this.byFingerprint = byFingerprint;
    if (added.length === 0) return;
    for (const f of this.listeners) f(added);
  }

  /** The revocation that names this certificate, if any. */
  find(id: PeerCertId): NbdRevokedCert | undefined {
    return this.bySerial.get(serialKey(id.caFingerprint256, id.serialNumber)) ?? this.byFingerprint.get(id.fingerprint256);
  }

  /** Hear of newly revoked certificates; returns the unsubscribe. */
  onRevoked(f: (added: readonly NbdRevokedCert[]) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
}

/** Why a revoked certificate is refused, for the log (names "revoked"). */
export function revokedReason(id: PeerCertId, e: NbdRevokedCert): string {
  return `client certificate "${id.subject}" (serial ${id.serialNumber}) was revoked at ${new Date(e.revokedAtMs).toISOString()} (NBD client certificate ${e.name})`;
}
