-- The access log's integrity (issues 18.8, 18.9, 19.3, 24.3): only the log's
-- own writers give a row a MAC (the MAC door); what the retention removed is
-- recorded in MACed, chained records, which verify checks before it trusts
-- them.  The seal waits only for the transactions that can still add rows
-- to its range, and the seal, flush, maintenance and purge take locks on the
-- extension's own tables that no other role can take.  Reads the log lost
-- are recorded with their cause, MACed and chained.

ALTER TABLE gdpr.access_log_retention ADD COLUMN prev_hash bytea;
ALTER TABLE gdpr.access_log_retention ADD COLUMN hash bytea;
COMMENT ON TABLE gdpr.access_log_retention IS 'what the access log''s retention removed, and when (MACed, chained)';

CREATE TABLE gdpr.access_log_losses (
  id              bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  server_started  timestamptz NOT NULL,
  cause           text NOT NULL,
  lost            bigint NOT NULL,
  prev_hash       bytea,
  hash            bytea
);
COMMENT ON TABLE gdpr.access_log_losses IS 'reads the access log lost, with the cause, since install (MACed, chained)';
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_losses', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_losses_id_seq', '');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_losses
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_losses
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');
REVOKE ALL ON gdpr.access_log_losses FROM PUBLIC;
REVOKE ALL ON SEQUENCE gdpr.access_log_losses_id_seq FROM PUBLIC;
GRANT SELECT ON gdpr.access_log_losses TO gdpr_auditor, gdpr_admin;

CREATE OR REPLACE FUNCTION gdpr._chain_text(r gdpr.access_log_retention) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', r.id, extract(epoch FROM r.at), extract(epoch FROM r.dropped_before), r.what,
                              coalesce(r.row_count::text, '-'), coalesce(encode(r.prev_hash, 'hex'), '-')), 'UTF8');
CREATE OR REPLACE FUNCTION gdpr._chain_text(r gdpr.access_log_losses) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', r.id, extract(epoch FROM r.at), extract(epoch FROM r.server_started), r.cause,
                              r.lost, coalesce(encode(r.prev_hash, 'hex'), '-')), 'UTF8');
CREATE OR REPLACE FUNCTION gdpr._chain_check(tbl regclass) RETURNS TABLE (id bigint, state text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  prev bytea;
  mac bytea;
BEGIN
  FOR r IN EXECUTE format('SELECT x.id, x.hash, x.prev_hash, gdpr._chain_text(x) AS txt FROM %s x ORDER BY x.id', tbl) LOOP
    mac := gdpr._log_keyed_hash(r.txt, substr(r.hash, 1, 8));
    id := r.id;
    state := CASE WHEN r.hash IS NULL OR r.prev_hash IS DISTINCT FROM prev OR mac <> r.hash THEN 'forged'
                  WHEN mac IS NULL THEN 'unverified' ELSE 'ok' END;
    RETURN NEXT;
    EXIT WHEN state = 'forged';
    prev := r.hash;
  END LOOP;
END
$$;
CREATE OR REPLACE FUNCTION gdpr._chain_append(r anyelement) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  tbl regclass := pg_typeof(r)::text::regclass;
  prev bytea;
BEGIN
  EXECUTE format('SELECT x.hash FROM %s x ORDER BY x.id DESC LIMIT 1', tbl) INTO prev;
  r := jsonb_populate_record(r, jsonb_build_object('id', nextval(pg_get_serial_sequence(tbl::text, 'id')),
                                                   'at', clock_timestamp(), 'prev_hash', '\x' || encode(prev, 'hex')));
  r := jsonb_populate_record(r, jsonb_build_object('hash', '\x' || encode(gdpr._log_keyed_hash(gdpr._chain_text(r)), 'hex')));
  EXECUTE format('INSERT INTO %s SELECT ($1).*', tbl) USING r;
END
$$;
CREATE OR REPLACE FUNCTION gdpr._log_loss_record(cause text, lost bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp
  RETURN gdpr._chain_append(ROW(NULL, NULL, pg_postmaster_start_time(), cause, lost, NULL, NULL)::gdpr.access_log_losses);
CREATE OR REPLACE FUNCTION gdpr._log_retention_record(dropped_before timestamptz, what text, row_count bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp
  RETURN gdpr._chain_append(ROW(NULL, NULL, dropped_before, what, row_count, NULL, NULL)::gdpr.access_log_retention);
CREATE OR REPLACE FUNCTION gdpr._lock_own_table(tbl regclass, wait_ms int) RETURNS boolean
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = 0 AS $$
DECLARE
  holders text;
BEGIN
  PERFORM set_config('lock_timeout', greatest(wait_ms, 1)::text, true);
  BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE%s', tbl, CASE WHEN wait_ms = 0 THEN ' NOWAIT' END);
  EXCEPTION WHEN lock_not_available THEN
    IF wait_ms = 0 THEN
      RETURN false;
    END IF;
    SELECT string_agg(format('pid %s (role %s, application %L, %s since %s)', l.pid, a.usename,
                             a.application_name, a.state, a.state_change), '; ')
      INTO holders
      FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = tbl AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
       AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                      'AccessExclusiveLock');
    RAISE EXCEPTION 'could not lock % within % ms', tbl, wait_ms
      USING ERRCODE = 'lock_not_available',
            DETAIL = format('Held by %s.', coalesce(holders, 'a process that is gone')),
            HINT = 'End that session (pg_terminate_backend) if it is not the extension''s own.';
  END;
  RETURN true;
END
$$;
CREATE OR REPLACE FUNCTION gdpr._log_open_writes_since() RETURNS timestamptz
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH watched AS (
    SELECT t.tbl::oid AS rel FROM gdpr.registered_tables t
    UNION SELECT i.inhrelid FROM pg_inherits i JOIN gdpr.registered_tables t ON t.tbl = i.inhparent
    UNION SELECT c.oid FROM pg_class c
           WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relname LIKE 'access\_log%' AND c.relkind IN ('r', 'p')
  )
  SELECT min(CASE WHEN l.pid IS NULL THEN '-infinity'
                  WHEN l.mode IN ('AccessShareLock', 'RowShareLock') THEN
                       CASE WHEN a.state = 'active' THEN a.query_start END
                  ELSE a.xact_start END)
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'relation' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
     AND l.relation IN (SELECT w.rel FROM watched w) AND l.granted
     AND l.pid IS DISTINCT FROM pg_backend_pid()
     AND l.mode <> 'ShareUpdateExclusiveLock'      -- vacuum, analyze: they add no row
$$;
CREATE FUNCTION gdpr._log_mac_door(open boolean) RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_mac_door';
CREATE FUNCTION gdpr._log_lost_taken() RETURNS bigint
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_lost_taken';
CREATE OR REPLACE FUNCTION gdpr._log_note_losses(shutdown boolean DEFAULT false) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  q record;
  dropped bigint;
  failed bigint := gdpr._log_lost_taken();
  noted bigint := 0;
BEGIN
  SELECT * INTO q FROM gdpr.access_log_queue();
  dropped := coalesce((SELECT sum(d.dropped) FROM gdpr.access_log_queue_drops() d WHERE d.database = current_database()), 0)
             - coalesce((SELECT sum(x.lost) FROM gdpr.access_log_losses x
                                    WHERE x.server_started = pg_postmaster_start_time() AND x.cause = 'queue full'), 0);
  IF dropped > 0 THEN
    PERFORM gdpr._log_loss_record('queue full', dropped);
    noted := noted + dropped;
  END IF;
  IF failed > 0 THEN
    PERFORM gdpr._log_loss_record('flush failed', failed);
    noted := noted + failed;
  END IF;
  IF shutdown AND q.queued > 0 THEN
    PERFORM gdpr._log_loss_record('not written at shutdown', q.queued);
    noted := noted + q.queued;
  END IF;
  RETURN noted;
END
$$;
REVOKE EXECUTE ON FUNCTION gdpr._log_mac_door(boolean), gdpr._chain_text(gdpr.access_log_retention),
  gdpr._chain_text(gdpr.access_log_losses), gdpr._chain_check(regclass), gdpr._chain_append(anyelement), gdpr._log_loss_record(text, bigint),
  gdpr._log_retention_record(timestamptz, text, bigint), gdpr._lock_own_table(regclass, int),
  gdpr._log_open_writes_since(), gdpr._log_lost_taken(), gdpr._log_note_losses(boolean) FROM PUBLIC;

-- The records made before 0.3 are chained and MACed now, under the current
-- key (when none is loaded they stay without: verify reports them).
ALTER TABLE gdpr.access_log_retention DISABLE TRIGGER append_only;
DO $$
DECLARE
  r gdpr.access_log_retention;
  prev bytea;
BEGIN
  FOR r IN SELECT * FROM gdpr.access_log_retention x ORDER BY x.id LOOP
    r.prev_hash := prev;
    r.hash := gdpr._log_keyed_hash(gdpr._chain_text(r));
    UPDATE gdpr.access_log_retention x SET prev_hash = r.prev_hash, hash = r.hash WHERE x.id = r.id;
    prev := r.hash;
  END LOOP;
END
$$;
ALTER TABLE gdpr.access_log_retention ENABLE TRIGGER append_only;

CREATE OR REPLACE FUNCTION gdpr._log_event(operation text, tbl regclass, subject_ids text[], row_count bigint,
                                detail jsonb DEFAULT NULL, columns name[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
    PERFORM gdpr._log_enqueue(operation, tbl, subject_ids, row_count, detail::text);
    RETURN;
  END IF;
  PERFORM gdpr._log_mac_door(true);
  INSERT INTO gdpr.access_log (operation, tbl, table_name, columns, subject_refs, subjects, row_count, detail)
    VALUES (operation, tbl, gdpr.qualified_name(tbl), columns,
            (SELECT array_agg(gdpr._log_subject_ref(s)) FROM unnest(subject_ids) s),
            cardinality(subject_ids), row_count, detail);
  PERFORM gdpr._log_mac_door(false);
END
$$;
CREATE OR REPLACE FUNCTION gdpr._log_flush(journal boolean) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
  w bigint := 0;
BEGIN
  PERFORM gdpr._lock_own_table('gdpr.access_log_seals', 60000);   -- the seal lock
  PERFORM gdpr._log_journal_pending();
  PERFORM gdpr._log_mac_door(true);
  IF journal THEN
    -- Identical statements (same backend, roles, query, table, columns, purpose)
    -- are folded, up to 100 a row, with the union of their subjects (log_journal.c).
    INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                                 backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                                 row_count, times, query_id, purpose)
      SELECT j.at, j.last_at, j.role_name, j.session_user_name, j.application_name, j.client_addr::inet,
             j.backend_pid, j.operation, j.tbl::regclass, j.table_name, j.columns, j.subject_refs, j.subjects,
             j.row_count, j.times, j.query_id, j.purpose
        FROM gdpr._log_journal_take() j;
    GET DIAGNOSTICS w = ROW_COUNT;
  END IF;
  INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                               backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                               row_count, times, query_id, purpose, detail)
    SELECT q.at, q.last_at, q.role_name, q.session_user_name, q.application_name, q.client_addr, q.backend_pid,
           q.operation, nullif(q.tbl, 0)::regclass, q.table_name, q.columns,
           q.subject_refs, cardinality(q.subject_refs), q.row_count, q.times, q.query_id, q.purpose, q.detail
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

  -- Months that are over get their subject index.
  FOR p IN SELECT m.part FROM gdpr._log_months() m
            WHERE m.month_end <= now()
              AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                               WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subjects') LOOP
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
CREATE OR REPLACE FUNCTION gdpr.verify_access_log()
  RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, detail text)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  horizon timestamptz;
  c record;
  s gdpr.access_log_seals;
  prev gdpr.access_log_seals;
  d record;
  bad_id bigint;
  bad_why text;
  n bigint;
  id_missing bigint;
  id_added bigint;
  bad_mac bigint;
  seal_mac bytea;
  unverified_seals bigint := 0;
  unverified_rows bigint := 0;
  unverified_keys text[] := '{}';
  row_keys text[];
BEGIN
  -- What the retention removed: a chain of MACed records; only those that
  -- verify tell which rows verify no longer looks for.
  -- The same for the record of losses.
  FOR c IN SELECT 'retention' AS what, x.id, x.state, r.dropped_before, r.hash
             FROM gdpr._chain_check('gdpr.access_log_retention') x JOIN gdpr.access_log_retention r ON r.id = x.id
           UNION ALL
           SELECT 'loss', x.id, x.state, NULL, r.hash
             FROM gdpr._chain_check('gdpr.access_log_losses') x JOIN gdpr.access_log_losses r ON r.id = x.id LOOP
    IF c.state = 'forged' THEN
      RETURN QUERY SELECT false, 0::bigint, NULL::bigint,
        format('%s record %s was forged or altered: its MAC or its chain does not match', c.what, c.id);
      RETURN;
    ELSIF c.state = 'unverified' THEN
      unverified_seals := unverified_seals + 1;
      unverified_keys := unverified_keys || encode(substr(c.hash, 1, 8), 'hex');
    ELSE
      horizon := greatest(horizon, c.dropped_before);
    END IF;
  END LOOP;

  -- The chain.
  FOR s IN SELECT * FROM gdpr.access_log_seals x ORDER BY x.seal_id LOOP
    IF s.seal_id <> coalesce(prev.seal_id, 0) + 1 THEN
      bad_why := format('seal %s is missing', coalesce(prev.seal_id, 0) + 1);
    ELSIF s.prev_hash IS DISTINCT FROM prev.hash OR s.from_at IS DISTINCT FROM coalesce(prev.upto_at, s.from_at) THEN
      bad_why := format('seal %s does not follow seal %s', s.seal_id, prev.seal_id);
    ELSE
      -- NULL: made under a master key that is not loaded here, which says
      -- nothing of the seal (a key changed); it is counted, not reported.
      seal_mac := gdpr._log_keyed_hash(gdpr._seal_text(s), substr(s.hash, 1, 8));
      IF seal_mac IS NULL THEN
        unverified_seals := unverified_seals + 1;
        unverified_keys := unverified_keys || encode(substr(s.hash, 1, 8), 'hex');
      ELSIF seal_mac <> s.hash THEN
        bad_why := format('seal %s was altered (its MAC does not match)', s.seal_id);
      END IF;
    END IF;
    IF bad_why IS NOT NULL THEN
      RETURN QUERY SELECT false, 0::bigint, lower(s.ids), bad_why;
      RETURN;
    END IF;
    prev := s;
  END LOOP;

  -- Each block against its rows.
  FOR s IN SELECT * FROM gdpr.access_log_seals x
            WHERE horizon IS NULL OR x.upto_at > horizon ORDER BY x.seal_id LOOP
    SELECT * INTO d FROM gdpr._block_digest(s.from_at, s.upto_at);
    CONTINUE WHEN d.row_count = s.row_count AND d.ids = s.ids AND d.rows_hash = s.rows_hash;
    SELECT min(x.i) INTO id_missing
      FROM (SELECT generate_series(lower(r), upper(r) - 1) i FROM unnest(s.ids) r) x
     WHERE NOT EXISTS (SELECT FROM gdpr.access_log l WHERE l.id = x.i AND l.at >= s.from_at AND l.at < s.upto_at);
    SELECT min(l.id) INTO id_added FROM gdpr.access_log l
     WHERE l.at >= s.from_at AND l.at < s.upto_at AND NOT (l.id <@ s.ids);
    IF id_missing IS NOT NULL AND (id_added IS NULL OR id_missing < id_added) THEN
      bad_id := id_missing;
      bad_why := format('row %s is missing: seal %s holds it', id_missing, s.seal_id);
    ELSIF id_added IS NOT NULL THEN
      bad_id := id_added;
      bad_why := format('row %s was added after seal %s was made', id_added, s.seal_id);
    ELSE
      bad_id := lower(s.ids);
      bad_why := format('the rows of seal %s were altered', s.seal_id);
    END IF;
    EXIT;
  END LOOP;

  -- Each row's MAC (a block whose rows were altered in place ends up here).
  SELECT count(*), min(l.id) FILTER (WHERE l.mac IS NULL OR x.mac <> l.mac),
         count(*) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL),
         coalesce(array_agg(DISTINCT encode(substr(l.mac, 1, 8), 'hex')) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL), '{}')
    INTO n, bad_mac, unverified_rows, row_keys
    FROM gdpr.access_log l, LATERAL (SELECT gdpr._log_row_mac(l) AS mac) x;
  IF bad_mac IS NOT NULL AND (bad_id IS NULL OR bad_mac <= bad_id) THEN
    bad_id := bad_mac;
    bad_why := CASE WHEN (SELECT l.mac IS NULL FROM gdpr.access_log l WHERE l.id = bad_mac LIMIT 1)
                    THEN format('row %s has no MAC: it was not written by the log''s own writers (forged)', bad_id)
                    ELSE format('row %s was altered or forged: its MAC does not match', bad_id) END;
  END IF;
  IF bad_id IS NULL AND unverified_seals + unverified_rows > 0 THEN
    -- Nothing found altered, but not everything could be checked: not a clean bill, not an alarm.
    RETURN QUERY SELECT NULL::boolean, n, NULL::bigint,
      format('%s rows, %s seals: nothing altered among those checked; %s seals and %s rows were made under master keys that are not loaded (%s): name their files in crm_gdpr.retired_key_files to verify them',
             n, coalesce(prev.seal_id, 0), unverified_seals, unverified_rows,
             (SELECT string_agg(DISTINCT k, ', ') FROM unnest(unverified_keys || row_keys) k));
    RETURN;
  END IF;
  RETURN QUERY SELECT bad_id IS NULL, n, bad_id, coalesce(bad_why, format('%s rows, %s seals: intact', n,
                                                                     coalesce(prev.seal_id, 0)));
END
$$;
CREATE OR REPLACE FUNCTION gdpr.seal_access_log() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  prev gdpr.access_log_seals;
  s gdpr.access_log_seals;
  horizon timestamptz;
  sealed bigint := 0;
BEGIN
  IF gdpr._log_keyed_hash('\x') IS NULL THEN
    RAISE EXCEPTION 'the access log cannot be sealed without a key'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set crm_gdpr.key_file (see doc/crypto.md).';
  END IF;
  PERFORM gdpr.flush_access_log();     -- takes the seal lock: queued reads are in before the horizon
  horizon := least(clock_timestamp() - interval '1 second', gdpr._log_open_writes_since());
  LOOP
    SELECT * INTO prev FROM gdpr.access_log_seals x ORDER BY x.seal_id DESC LIMIT 1;
    s.from_at := coalesce(prev.upto_at, (SELECT min(l.at) FROM gdpr.access_log l));
    EXIT WHEN s.from_at IS NULL OR s.from_at >= horizon;
    s.upto_at := least(horizon, (date_trunc('month', s.from_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
    s.seal_id := coalesce(prev.seal_id, 0) + 1;
    SELECT d.row_count, d.ids, d.rows_hash INTO s.row_count, s.ids, s.rows_hash
      FROM gdpr._block_digest(s.from_at, s.upto_at) d;
    s.prev_hash := prev.hash;
    s.sealed_at := clock_timestamp();
    s.hash := gdpr._log_keyed_hash(gdpr._seal_text(s));
    INSERT INTO gdpr.access_log_seals VALUES (s.*);
    sealed := sealed + s.row_count;
  END LOOP;
  RETURN sealed;
END
$$;
CREATE OR REPLACE FUNCTION gdpr._purge_begin(started_by text, dry_run boolean) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rid bigint;
BEGIN
  IF NOT dry_run AND NOT gdpr._lock_own_table('gdpr.purge_runs', 0) THEN   -- no role can block it (19.3)
    RETURN NULL;
  END IF;
  INSERT INTO gdpr.purge_runs (started_by, dry_run) VALUES (started_by, dry_run) RETURNING id INTO rid;
  INSERT INTO gdpr.purge_results (run_id, policy_id, tbl, col, action)
    SELECT rid, p.id, p.tbl, p.col, p.action FROM gdpr.retention_policies p;
  RETURN rid;
END
$$;
CREATE OR REPLACE VIEW gdpr.access_log_status AS
  SELECT q.capacity, q.queued, q.enqueued, q.written, q.dropped, q.logged_to_server_log,
         (SELECT max(s.seal_id) FROM gdpr.access_log_seals s) AS last_seal,
         (SELECT max(s.upto_at) FROM gdpr.access_log_seals s) AS sealed_upto,
         (SELECT count(*) FROM gdpr.access_log l
           WHERE l.at >= coalesce((SELECT max(s.upto_at) FROM gdpr.access_log_seals s), '-infinity')) AS unsealed_rows,
         (SELECT count(*) FROM gdpr.access_log_journal j) AS journal_rows,
         (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass) AS partitions,
         (SELECT coalesce(sum(x.lost), 0) FROM gdpr.access_log_losses x)::bigint AS lost_since_install,
         (SELECT coalesce(jsonb_object_agg(y.cause, y.lost), '{}') FROM
            (SELECT x.cause, sum(x.lost) AS lost FROM gdpr.access_log_losses x GROUP BY x.cause) y) AS losses_by_cause
    FROM gdpr.access_log_queue() q;
COMMENT ON VIEW gdpr.access_log_status IS 'the read queue, the last seal, rows waiting for a seal, writes waiting in the journal, partitions, reads lost since install by cause';
