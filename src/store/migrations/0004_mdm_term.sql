-- pf MDM schema: the fencing term of a single (sqlite-mode) MDM. One row, bumped on every MDM
-- start, so a restarted MDM speaks with a higher term than any answer its previous run sent and
-- SDSs/SDCs can refuse a late answer of the old run (mdm/ha/sqlite_meta_store.ts). Local to one
-- MDM: HA mode never replicates it (store/row_capture.ts LOCAL_ONLY_TABLES); there the term is
-- the etcd leader key's create revision plus the term_base of the cluster record.
CREATE TABLE mdm_term (
  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
  term INTEGER NOT NULL
);
