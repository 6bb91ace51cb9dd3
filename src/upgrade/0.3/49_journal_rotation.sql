-- Issue 24.4: journals that a long snapshot cannot bloat.  The journal of
-- 0.2 (its rows and oid kept: a writing transaction that waits for this
-- update's lock goes on with it) becomes the first of two; the log writer
-- truncates one that grew while the writers use the other (log_journals.c).
-- gdpr.access_log_journal becomes a view of both; gdpr.access_log_status
-- counts them with gdpr.access_log_journals() (redefined in 90_merged.sql).
ALTER TABLE gdpr.access_log_journal RENAME TO access_log_journal_1;
COMMENT ON TABLE gdpr.access_log_journal_1 IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (one of two journals)';
-- No longer in a dump (doc/operations.md): leaving the extension takes a
-- table out of its configuration tables (extconfig); it comes back as a
-- plain member.
ALTER EXTENSION crm_gdpr DROP TABLE gdpr.access_log_journal_1;
ALTER EXTENSION crm_gdpr ADD TABLE gdpr.access_log_journal_1;
CREATE TABLE gdpr.access_log_journal_2 (LIKE gdpr.access_log_journal_1)
  WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
COMMENT ON TABLE gdpr.access_log_journal_2 IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (one of two journals)';
-- What waits in the journals, one row per record (a statement or a fold of
-- a transaction's identical ones): since 0.3 a journal row holds the records
-- a transaction wrote at once, packed (log_journal_pack.c), unpacked here.
-- A lock on the journals until the reading transaction ends: the log writer
-- cannot truncate them meanwhile.
CREATE FUNCTION gdpr._journal_records(records bytea, backend_pid int)
  RETURNS SETOF gdpr.access_log_journal_1
  LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'gdpr_journal_records';
COMMENT ON FUNCTION gdpr._journal_records(bytea, int) IS
  'the records packed in a row of the journal of writes, as rows of the journal (for gdpr.access_log_journal)';
CREATE VIEW gdpr.access_log_journal AS
  SELECT at, role_name, session_user_name, application_name, client_addr, backend_pid, operation, tbl,
         table_name, columns, subject_refs, subjects, row_count, query_id, purpose, last_at, times
    FROM (SELECT * FROM gdpr.access_log_journal_1 WHERE records IS NULL
          UNION ALL
          SELECT * FROM gdpr.access_log_journal_2 WHERE records IS NULL
          UNION ALL
          SELECT r.* FROM gdpr.access_log_journal_1 j, gdpr._journal_records(j.records, j.backend_pid) r
          UNION ALL
          SELECT r.* FROM gdpr.access_log_journal_2 j, gdpr._journal_records(j.records, j.backend_pid) r) journal;
COMMENT ON VIEW gdpr.access_log_journal IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (both journals)';
-- Nothing for PUBLIC, as src/sql/99_privileges.sql leaves every table of a fresh install.
REVOKE ALL ON gdpr.access_log_journal_2, gdpr.access_log_journal FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION gdpr._journal_records(bytea, int) FROM PUBLIC;
-- The rows waiting in the journals and the oldest one's time, for
-- gdpr.access_log_status: each journal's lock released once it is counted, so
-- that a monitoring session idle in a transaction does not keep the log writer
-- from truncating them (log_journals.c).
CREATE FUNCTION gdpr.access_log_journals(OUT journal_rows bigint, OUT journal_oldest timestamptz)
  LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'gdpr_log_journal_status';
COMMENT ON FUNCTION gdpr.access_log_journals() IS
  'the writes waiting in the journals to be moved into the log, and the oldest one''s time (no lock kept on the journals)';
REVOKE EXECUTE ON FUNCTION gdpr.access_log_journals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.access_log_journals() TO gdpr_auditor, gdpr_admin;
