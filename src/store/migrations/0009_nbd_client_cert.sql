-- 0009_nbd_client_cert: every NBD client certificate the cluster NBD CA issued (mdm/core/
-- nbd_client_certs.ts), so that operators can list them and revoke one (a laptop lost, an
-- employee gone). Replicated like every table (row_capture.ts): a revocation made on one MDM
-- holds after an HA takeover. serial is the certificate's serial number as node:crypto prints
-- it (upper-case hex); ca_fingerprint256 names the issuing CA, so serial + issuer identify it.
-- A revoked row keeps when, by whom and why; rows expired long ago are pruned when one is issued.

CREATE TABLE nbd_client_cert (
  serial TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  fingerprint256 TEXT NOT NULL,
  ca_fingerprint256 TEXT NOT NULL,
  not_before_ms INTEGER NOT NULL,
  not_after_ms INTEGER NOT NULL,
  issued_by TEXT NOT NULL,
  issued_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER,
  revoked_by TEXT,
  revoke_reason TEXT
);
CREATE INDEX nbd_client_cert_name ON nbd_client_cert (name);
