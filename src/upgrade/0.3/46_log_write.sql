-- Issue 24 items 1, 5 and 8: the write path of the access log.
-- A transaction folds its identical write statements into one journal row
-- (last_at, times) and stores its subjects' ids as they are: the log writer
-- computes the keyed pseudonyms when it moves them, so that no write needs
-- the key; while the key cannot be read the writer waits (key_problem).
ALTER TABLE gdpr.access_log_journal ADD COLUMN last_at timestamptz, ADD COLUMN times int,
  ADD COLUMN records bytea;

-- gdpr.access_log_key_problem(): why the log writer cannot use the master key now (NULL: it can, or none is
-- configured): it then waits, and the CRM's writes go on (log_key_wait.c).
CREATE FUNCTION gdpr.access_log_key_problem() RETURNS text
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_log_key_problem';
COMMENT ON FUNCTION gdpr.access_log_key_problem() IS
  'why the log writer cannot use the master key now, or NULL: while it cannot, writes wait in the journal and reads in the queue';
REVOKE EXECUTE ON FUNCTION gdpr.access_log_key_problem() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.access_log_key_problem() TO gdpr_auditor, gdpr_admin;
-- gdpr.access_log_status gains journal_oldest and key_problem: in 90_merged.sql (47 redefines the view too).
