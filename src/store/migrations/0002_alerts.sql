-- pf MDM schema, version 2: the alerts the MDM raises and clears by itself (src/mdm/observe/
-- alerts.ts), kept with their history, and per-pool capacity alert thresholds (PowerFlex
-- setCapacityAlertThresholds; 80 % high, 90 % critical by default).
-- Invariants kept by the MDM: at most one active alert (cleared_ms NULL) per alert_key (alert
-- type + affected object); a cleared alert never becomes active again (a new raise is a new
-- row); at most Limits.maxClearedAlerts cleared rows are kept (the oldest go first);
-- high <= critical thresholds, both within 1..100.

CREATE TABLE alert (
  id TEXT PRIMARY KEY NOT NULL,       -- a UUID: the PowerFlex Alert id, name and uuid
  alert_key TEXT NOT NULL,            -- '<alertType>/<affected object id>'
  alert_type TEXT NOT NULL,
  severity TEXT NOT NULL,             -- ALERT_LOW | ALERT_MEDIUM | ALERT_HIGH | ALERT_CRITICAL
  object_type TEXT NOT NULL,          -- System | StoragePool | Sds | Sdc | Device
  object_id TEXT NOT NULL,
  alert_values TEXT NOT NULL,         -- JSON object of strings
  start_ms INTEGER NOT NULL,
  last_observed_ms INTEGER NOT NULL,
  cleared_ms INTEGER                  -- NULL while active
);
CREATE UNIQUE INDEX alert_active_key ON alert(alert_key) WHERE cleared_ms IS NULL;
CREATE INDEX alert_cleared ON alert(cleared_ms) WHERE cleared_ms IS NOT NULL;

ALTER TABLE storage_pool ADD COLUMN capacity_alert_high_pct INTEGER NOT NULL DEFAULT 80;
ALTER TABLE storage_pool ADD COLUMN capacity_alert_critical_pct INTEGER NOT NULL DEFAULT 90;
