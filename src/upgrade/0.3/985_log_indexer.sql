-- The months' subject indexes are built by a worker of the log writer's,
-- not by the log writer's maintenance (log_indexer.c): _log_maintain loses
-- its loop over the months that are over.
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

-- The months over for a day that lack their subject indexes.  The log
-- writer's maintenance asks, and starts a worker of its own to build them
-- (log_indexer.c): a month's GIN index takes minutes to hours, during which
-- the log writer, had it built it, wrote nothing and the queue of reads
-- filled.  A day after the month: CREATE INDEX keeps rows out of the
-- partition while it runs, and a month's last rows (a read at 23:59:59
-- written a second later, a long transaction's statements) arrive after
-- its end.
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
