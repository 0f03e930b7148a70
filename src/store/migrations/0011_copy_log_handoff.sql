-- pf MDM schema, version 11: what an MDM that stops cleanly leaves of its copy log (the TEMP
-- log behind delta assignments, src/mdm/cluster/copy_log.ts) so that the next MDM life can still
-- answer an SDS's delta from that log: the log's id, the map version at the stop, the log's
-- trimmed floor and barrier, the newest V-Tree graph edit it holds, and per SDS the newest
-- version at which any of its copies changed (JSON object sds id -> version). At most one row;
-- the next start reads and deletes it, and uses it only if the stored map version is still
-- end_version (nothing changed in between).

CREATE TABLE copy_log_handoff (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  log_id TEXT NOT NULL,
  end_version INTEGER NOT NULL,
  floor INTEGER NOT NULL,
  barrier INTEGER NOT NULL,
  graph_max INTEGER NOT NULL,
  per_sds TEXT NOT NULL,
  saved_at_ms INTEGER NOT NULL
);
