-- The log's slow work on whole months (a month's subject index, the
-- removal of months past retention) is done by a worker the log writer
-- starts (log_months.c), not by the log writer's maintenance: _log_maintain
-- loses its loops over the months that are over and past retention.
CREATE OR REPLACE FUNCTION gdpr._log_maintain() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  lo timestamptz;
  hi timestamptz;
  part name;
  cutoff timestamptz;
  n bigint;
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

  cutoff := gdpr._log_retention_cutoff();
  -- Whole months past it are dropped by the log maintenance worker (_log_drop_months).
  DELETE FROM gdpr.access_log_default d WHERE d.at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM gdpr._log_retention_record(cutoff, 'rows of the default partition deleted', n);
  END IF;
  PERFORM gdpr._allow_log_maintenance(false);   -- the door closes with the maintenance
  RETURN n;
END
$$;

-- The log's slow work on whole months is done by a worker the log writer
-- starts for it, the log maintenance worker (log_months.c), never by the
-- log writer: building a month's GIN index takes minutes to hours, counting
-- and dropping a month past retention reads the month (gigabytes on a busy
-- CRM) and waits for anyone reading the log; meanwhile the log writer,
-- had it done that, wrote nothing and the queue of reads filled.  The log
-- writer's maintenance only asks whether a month waits (these two queries).
--
-- The months over for a day that lack their subject indexes.  A day after
-- the month: CREATE INDEX keeps rows out of the partition while it runs,
-- and a month's last rows (a read at 23:59:59 written a second later, a
-- long transaction's statements) arrive after its end.
CREATE FUNCTION gdpr._log_months_to_index() RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT m.part FROM gdpr._log_months() m
   WHERE m.month_end <= now() - interval '1 day'
     AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                      WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subject_keys')
   ORDER BY m.month_end;
END;

-- Build them (a month of 0.2 its index on the keys, once), one month after
-- the other; a month another session is indexing is left to it (its lock,
-- which inserts into that month wait for as they would for the index).
-- Returns how many months it indexed.
CREATE FUNCTION gdpr._log_index_months() RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
  n integer := 0;
BEGIN
  FOR part IN SELECT gdpr._log_months_to_index() LOOP
    BEGIN
      EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE NOWAIT', part);
      PERFORM gdpr._log_index_month(part);
      n := n + 1;
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
  END LOOP;
  RETURN n;
END
$$;

-- Where the log's retention (crm_gdpr.access_log_keep) starts, at a month's
-- start: rows before it go.  Without a key a removal cannot be recorded
-- tamper-evidently: then nothing goes.
CREATE FUNCTION gdpr._log_retention_cutoff() RETURNS timestamptz
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN gdpr._log_keyed_hash('\x') IS NULL THEN '-infinity'::timestamptz
              ELSE date_trunc('month', (now() - gdpr.setting('access_log_keep')::interval) AT TIME ZONE 'UTC')
                   AT TIME ZONE 'UTC' END;

-- The months wholly before it.
CREATE FUNCTION gdpr._log_months_to_drop() RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT m.part FROM gdpr._log_months() m WHERE m.month_end <= gdpr._log_retention_cutoff() ORDER BY m.month_end;
END;

-- Drop them, each recorded in gdpr.access_log_retention with its rows.  The
-- rows are counted first, without the retention lock (nothing is added to a
-- month that old); a DROP waits 2 s at most for those reading the log (it
-- locks the whole log, and the log writer's inserts would queue behind it):
-- a month not dropped then is dropped at the next maintenance.  Returns the
-- rows removed.
CREATE FUNCTION gdpr._log_drop_months() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
  cutoff timestamptz := gdpr._log_retention_cutoff();
  parts regclass[] := ARRAY(SELECT gdpr._log_months_to_drop());
  counts bigint[] := '{}';
  n bigint;
  name name;
  removed bigint := 0;
BEGIN
  IF cardinality(parts) = 0 THEN
    RETURN 0;
  END IF;
  FOR i IN 1..cardinality(parts) LOOP
    EXECUTE format('SELECT count(*) FROM %s', parts[i]) INTO n;
    counts := counts || n;
  END LOOP;
  PERFORM gdpr._lock_own_table('gdpr.access_log_retention', 60000);
  PERFORM gdpr._allow_log_maintenance(true);
  FOR i IN 1..cardinality(parts) LOOP
    name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[i]);
    BEGIN
      EXECUTE format('DROP TABLE %s', parts[i]);
      PERFORM gdpr._log_retention_record(cutoff, 'partition ' || name || ' dropped', counts[i]);
      removed := removed + counts[i];
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
  END LOOP;
  PERFORM gdpr._allow_log_maintenance(false);
  RETURN removed;
END
$$;
