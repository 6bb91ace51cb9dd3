-- Issue 24.6: no open transaction of a CRM writer, no long read holds the
-- seals back: the flush puts a row whose time was sealed meanwhile into the
-- open block (its times in detail.late); only the extension's own events,
-- which write the log in the caller's transaction, are waited for.

-- A row that arrives after its time was sealed (a write committed by a
-- transaction that stayed open across seals, a read that ran longer than a
-- seal interval) goes into the open block: its at becomes the seal's end, and
-- detail.late keeps the times it had (issue 24.6), so that no open
-- transaction holds the seals back and nothing is lost or misdated.
CREATE FUNCTION gdpr._log_late_last_at(at timestamptz, last_at timestamptz, sealed timestamptz) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN at < sealed THEN nullif(greatest(last_at, sealed), sealed) ELSE last_at END;
CREATE FUNCTION gdpr._log_late_detail(detail jsonb, at timestamptz, last_at timestamptz, sealed timestamptz) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN CASE WHEN at < sealed
              THEN coalesce(detail, '{}') || jsonb_build_object('late', jsonb_strip_nulls(jsonb_build_object(
                     'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     'last_at', to_char(last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))))
              ELSE detail END;

-- Move the journal's writes into the log, then write the queued reads of
-- this database (folded in C: log_queue.c).  The seal lock keeps it from
-- running while a block is being sealed.
-- The log writer moves the journal once per crm_gdpr.log_flush_interval but
-- the queued reads as often as they come (a burst of reads wakes it many
-- times a second; the journal's heap is scanned only when it is due).

CREATE OR REPLACE FUNCTION gdpr._log_flush(journal boolean) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
  w bigint := 0;
  sealed timestamptz;
BEGIN
  PERFORM gdpr._lock_own_table('gdpr.access_log_seals', 60000);   -- the seal lock
  sealed := (SELECT max(x.upto_at) FROM gdpr.access_log_seals x);   -- no seal moves it before we commit
  PERFORM gdpr._log_journal_pending();
  PERFORM gdpr._log_mac_door(true);
  IF journal THEN
    -- Identical statements (same backend, roles, query, table, columns, purpose)
    -- are folded, up to 100 a row, with the union of their subjects (log_journal.c).
    INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                                 backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                                 row_count, times, query_id, purpose, detail)
      SELECT greatest(j.at, sealed), gdpr._log_late_last_at(j.at, j.last_at, sealed), j.role_name,
             j.session_user_name, j.application_name, j.client_addr::inet,
             j.backend_pid, j.operation, j.tbl::regclass, j.table_name, j.columns, j.subject_refs, j.subjects,
             j.row_count, j.times, j.query_id, j.purpose, gdpr._log_late_detail(NULL, j.at, j.last_at, sealed)
        FROM gdpr._log_journal_take() j;
    GET DIAGNOSTICS w = ROW_COUNT;
  END IF;
  INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                               backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                               row_count, times, query_id, purpose, detail)
    SELECT greatest(q.at, sealed), gdpr._log_late_last_at(q.at, q.last_at, sealed), q.role_name, q.session_user_name,
           q.application_name, q.client_addr, q.backend_pid,
           q.operation, nullif(q.tbl, 0)::regclass, q.table_name, q.columns,
           q.subject_refs, cardinality(q.subject_refs), q.row_count, q.times, q.query_id, q.purpose,
           gdpr._log_late_detail(q.detail, q.at, q.last_at, sealed)
      FROM gdpr._log_queue_take() q;     -- without the reads of a table dropped meanwhile
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM gdpr._log_mac_door(false);
  IF journal THEN
    PERFORM gdpr._log_note_losses();
  END IF;
  RETURN w + n;
END
$$;


-- The oldest time a row may still arrive with from a transaction that is
-- open (see seal_access_log); NULL when there is none.  Only transactions
-- that write the log itself count: the extension's events insert their row
-- at once, in the caller's transaction.  Writes to registered tables and
-- reads do not: they reach the log through _log_flush, which moves a row that
-- arrives after its time was sealed into the open block (issue 24.6).
CREATE OR REPLACE FUNCTION gdpr._log_open_writes_since() RETURNS timestamptz
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT min(CASE WHEN l.pid IS NULL THEN '-infinity' ELSE a.xact_start END)
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'relation' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
     AND l.relation IN (SELECT c.oid FROM pg_class c
                         WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p')
                           AND (c.oid = 'gdpr.access_log'::regclass
                                OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass)))
     AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
     AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
$$;
