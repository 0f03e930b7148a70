-- 0007_users_audit: REST users get a PowerFlex id and the "must change password" flag; the
-- audit log (hash-chained records) and its head. Both are replicated in HA mode like every table
-- (row_capture.ts): a record is written in the same transaction as the change it describes, and the
-- leader gate commits them together. Lock-out counters stay in memory (core/login_guard.ts).

ALTER TABLE app_user ADD COLUMN id TEXT;
ALTER TABLE app_user ADD COLUMN password_change_required INTEGER NOT NULL DEFAULT 0;
UPDATE app_user SET id = lower(hex(randomblob(8))) WHERE id IS NULL;
CREATE UNIQUE INDEX app_user_id ON app_user(id);

CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY NOT NULL,
  ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  src TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  object_type TEXT NOT NULL,
  object_id TEXT NOT NULL,
  action TEXT NOT NULL,
  params TEXT NOT NULL,
  result TEXT NOT NULL,
  status INTEGER NOT NULL,
  detail TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log(ts_ms);

CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
  first_seq INTEGER NOT NULL,
  first_prev_hash TEXT NOT NULL,
  last_seq INTEGER NOT NULL,
  last_hash TEXT NOT NULL,
  pruned INTEGER NOT NULL
);
