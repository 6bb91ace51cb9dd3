-- Issue 24.7: bytes per logged read.  New rows name their subjects by keys
-- (subject_keys bigint[]: 64-bit keyed hashes, 8 bytes a subject instead of
-- the 28 of a 22-character reference, log_refs.c); rows of 0.2 keep
-- subject_refs and their MAC's form (log_mac.c), so that they keep
-- verifying.  Everything that looks a person up reads both
-- (gdpr.subject_recipients: in 50_registers.sql, which holds 86_requests.sql word for word).
ALTER TABLE gdpr.access_log ADD COLUMN subject_keys bigint[];
ALTER TABLE gdpr.access_log ALTER COLUMN subject_keys SET STORAGE MAIN;
ALTER TABLE gdpr.access_log ALTER COLUMN subject_keys SET STATISTICS 0;

CREATE OR REPLACE FUNCTION gdpr._log_partition_sql(part name, lo timestamptz, hi timestamptz) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT format('CREATE TABLE gdpr.%I PARTITION OF gdpr.access_log %s WITH (toast_tuple_target = %s); '
                'ALTER TABLE gdpr.%I ALTER COLUMN subject_refs SET STATISTICS 0, '
                'ALTER COLUMN subject_keys SET STATISTICS 0', part,
                CASE WHEN lo IS NULL THEN 'DEFAULT' ELSE format('FOR VALUES FROM (%L) TO (%L)', lo, hi) END,
                current_setting('block_size')::int - 32, part)
$$;

CREATE OR REPLACE FUNCTION gdpr._log_index_month(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (subject_keys) WHERE subject_keys IS NOT NULL',
                 n || '_subject_keys', part);
  -- A month indexed by 0.2 has its index on subject_refs already (of every row).
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (subject_refs) WHERE subject_refs IS NOT NULL',
                 n || '_subjects', part);
END
$$;

-- A subject's key under the current key; his keys under every loaded key (log_refs.c).

CREATE FUNCTION gdpr._log_subject_key(subject_id text) RETURNS bigint
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_key';

CREATE FUNCTION gdpr._log_subject_keys(subject_id text) RETURNS bigint[]
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_keys';

REVOKE EXECUTE ON FUNCTION gdpr._log_subject_key(text), gdpr._log_subject_keys(text) FROM PUBLIC;
-- The take functions return the keys (their result type changes: dropped and
-- created; the library serves the declarations of 0.2 too, until the update).
DROP FUNCTION gdpr._log_queue_take();
DROP FUNCTION gdpr._log_journal_take();

CREATE FUNCTION gdpr._log_queue_take() RETURNS TABLE (
    at timestamptz, role_name name, session_user_name name, application_name text, client_addr inet,
    backend_pid int, operation text, tbl oid, columns name[], subject_keys bigint[], row_count bigint,
    query_id bigint, purpose text, detail jsonb, last_at timestamptz, times int, table_name text)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_take';

-- The journals' rows, truncated or deleted, and folded (log_journal.c), oldest first.

CREATE FUNCTION gdpr._log_journal_take() RETURNS TABLE (
    at timestamptz, last_at timestamptz, role_name text, session_user_name text, application_name text,
    client_addr text, backend_pid int, operation text, tbl oid, table_name text, columns name[],
    subject_keys bigint[], subjects bigint, row_count bigint, query_id bigint, purpose text, times int)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_journal_take';

REVOKE EXECUTE ON FUNCTION gdpr._log_queue_take(), gdpr._log_journal_take() FROM PUBLIC;

CREATE OR REPLACE FUNCTION gdpr._log_event(operation text, tbl regclass, subject_ids text[], row_count bigint,
                                detail jsonb DEFAULT NULL, columns name[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
    PERFORM gdpr._log_enqueue(operation, tbl, subject_ids, row_count, detail::text);
    RETURN;
  END IF;
  PERFORM gdpr._log_mac_door(true);
  INSERT INTO gdpr.access_log (operation, tbl, table_name, columns, subject_keys, subjects, row_count, detail)
    VALUES (operation, tbl, gdpr.qualified_name(tbl), columns,
            (SELECT array_agg(DISTINCT gdpr._log_subject_key(s) ORDER BY gdpr._log_subject_key(s)) FROM unnest(subject_ids) s),
            cardinality(subject_ids), row_count, detail);
  PERFORM gdpr._log_mac_door(false);
END
$$;

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
                                 backend_pid, operation, tbl, table_name, columns, subject_keys, subjects,
                                 row_count, times, query_id, purpose, detail)
      SELECT greatest(j.at, sealed), gdpr._log_late_last_at(j.at, j.last_at, sealed), j.role_name,
             j.session_user_name, j.application_name, j.client_addr::inet,
             j.backend_pid, j.operation, j.tbl::regclass, j.table_name, j.columns, j.subject_keys, j.subjects,
             j.row_count, j.times, j.query_id, j.purpose, gdpr._log_late_detail(NULL, j.at, j.last_at, sealed)
        FROM gdpr._log_journal_take() j;
    GET DIAGNOSTICS w = ROW_COUNT;
  END IF;
  INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                               backend_pid, operation, tbl, table_name, columns, subject_keys, subjects,
                               row_count, times, query_id, purpose, detail)
    SELECT greatest(q.at, sealed), gdpr._log_late_last_at(q.at, q.last_at, sealed), q.role_name, q.session_user_name,
           q.application_name, q.client_addr, q.backend_pid,
           q.operation, nullif(q.tbl, 0)::regclass, q.table_name, q.columns,
           q.subject_keys, cardinality(q.subject_keys), q.row_count, q.times, q.query_id, q.purpose,
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

CREATE OR REPLACE FUNCTION gdpr._log_maintain() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  lo timestamptz;
  hi timestamptz;
  part name;
  cutoff timestamptz;
  n bigint;
  removed bigint := 0;
  p record;
BEGIN
  PERFORM gdpr._lock_own_table('gdpr.access_log_retention', 60000);
  PERFORM gdpr._allow_log_maintenance(true);
  FOR i IN 0..2 LOOP
    part := gdpr._log_month_name(this_month + make_interval(months => i));
    lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
    hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
    CONTINUE WHEN to_regclass(format('gdpr.%I', part)) IS NOT NULL;
    -- Rows that went to the default partition stay there: the month starts after them.
    lo := greatest(lo, (SELECT max(d.at) + interval '1 microsecond' FROM gdpr.access_log_default d
                         WHERE d.at >= lo AND d.at < hi));
    BEGIN
      EXECUTE gdpr._log_partition_sql(part, lo, hi);
      EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only(%L)', part, 'access log');
      PERFORM gdpr._log_index_partition(format('gdpr.%I', part)::regclass);
    EXCEPTION WHEN duplicate_table THEN
      NULL;   -- made meanwhile by the log writer or a registration
    END;
  END LOOP;

  -- Months that are over get their subject indexes (a month of 0.2 its index on the keys, once).
  FOR p IN SELECT m.part FROM gdpr._log_months() m
            WHERE m.month_end <= now()
              AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                               WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subject_keys') LOOP
    PERFORM gdpr._log_index_month(p.part);
  END LOOP;

  cutoff := date_trunc('month', (now() - gdpr.setting('access_log_keep')::interval) AT TIME ZONE 'UTC')
            AT TIME ZONE 'UTC';
  IF gdpr._log_keyed_hash('\x') IS NULL THEN
    cutoff := '-infinity';   -- without a key a removal cannot be recorded tamper-evidently: keep all
  END IF;
  FOR p IN SELECT m.part, m.relname FROM gdpr._log_months() m WHERE m.month_end <= cutoff LOOP
    EXECUTE format('SELECT count(*) FROM %s', p.part) INTO n;
    EXECUTE format('DROP TABLE %s', p.part);
    PERFORM gdpr._log_retention_record(cutoff, 'partition ' || p.relname || ' dropped', n);
    removed := removed + n;
  END LOOP;
  DELETE FROM gdpr.access_log_default d WHERE d.at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM gdpr._log_retention_record(cutoff, 'rows of the default partition deleted', n);
  END IF;
  PERFORM gdpr._allow_log_maintenance(false);   -- the door closes with the maintenance
  RETURN removed + n;
END
$$;

-- access_history gains the keys (its result type changes: dropped and created).
DROP FUNCTION gdpr.access_history(text, regclass);

CREATE FUNCTION gdpr.access_history(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS TABLE (id bigint, at timestamptz, last_at timestamptz, role_name name, session_user_name name,
                 application_name text, client_addr inet, backend_pid int, operation text, tbl regclass,
                 table_name text, columns name[], subject_refs text[], subjects bigint, row_count bigint,
                 times int, query_id bigint, purpose text, detail jsonb, mac bytea, subject_keys bigint[],
                 may_include_you boolean)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  refs text[];
  keys bigint[];
BEGIN
  PERFORM gdpr._not_blank(access_history.subject_id, 'subject_id must not be null or blank');
  refs := gdpr._log_subject_refs(access_history.subject_id);   -- under every key loaded: rows of 0.2
  keys := gdpr._log_subject_keys(access_history.subject_id);   -- and of 0.3
  RETURN QUERY
    SELECT h.* FROM (
      SELECT l.*, false FROM gdpr.access_log l
       WHERE (l.subject_keys && keys OR l.subject_refs && refs) AND l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
      UNION ALL
      (SELECT l.*, true FROM gdpr.access_log l
        WHERE l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
          AND l.operation IN ('SELECT', 'COPY', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'PURGE')
          AND (l.subjects IS NULL OR l.detail ? 'subjects_truncated') AND coalesce(l.row_count, 1) > 0
          AND NOT coalesce(l.subject_keys && keys OR l.subject_refs && refs, false)
        ORDER BY l.at DESC, l.id DESC LIMIT 1000)) h
     ORDER BY h.at, h.id;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.access_history(text, regclass) TO gdpr_auditor, gdpr_admin;

CREATE OR REPLACE VIEW gdpr.restriction_violations AS
  SELECT l.id, l.at, l.role_name, l.session_user_name, l.application_name, l.client_addr, l.tbl, l.table_name,
         l.row_count AS rows_hidden, l.subject_refs, l.purpose,
         CASE WHEN l.detail ? 'refused' THEN 'refused' ELSE 'filtered' END AS outcome, l.subject_keys
    FROM gdpr.access_log l
   WHERE l.operation = 'RESTRICTED';
