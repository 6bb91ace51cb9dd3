-- Settings (src/sql/05_settings.sql, issue 17.3): the extension's SQL reads
-- every crm_gdpr.* setting through gdpr.setting() (10_security.sql makes it);
-- defaults live in C only.  After 20_retention.sql, which these bodies follow.
CREATE OR REPLACE FUNCTION gdpr._purge_batch_size() RETURNS int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr.setting('purge_batch_size')::int;

ALTER TABLE gdpr.access_log ALTER COLUMN purpose SET DEFAULT nullif(gdpr.setting('purpose'), '');

CREATE OR REPLACE FUNCTION gdpr._purge_step(pol gdpr.retention_policies, sql text, OUT n bigint, OUT cascaded bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  excluded text := gdpr._purge_excluded(pol.tbl);
  res jsonb;
BEGIN
  PERFORM set_config('lock_timeout', gdpr.setting('purge_lock_timeout'), true);
  cascaded := 0;
  IF sql ~ '^DELETE ' THEN
    cascaded := gdpr._cascade_deleted(pol.tbl);
    n := gdpr._owner_exec(pol.tbl, sql, excluded);
    cascaded := gdpr._cascade_deleted(pol.tbl) - cascaded;
  ELSIF sql ~ '^UPDATE ' THEN
    n := gdpr._owner_exec(pol.tbl, sql, excluded);
  ELSE
    res := gdpr._owner_query(pol.tbl, sql, excluded);
    IF jsonb_typeof(res) = 'object' THEN
      n := gdpr._write_pseudonyms(pol.tbl, pol.col, res, 'retention');
    ELSE
      n := (res ->> 0)::bigint;
      cascaded := (res ->> 1)::bigint;
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_finish(run_id bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  UPDATE gdpr.purge_runs x SET finished_at = clock_timestamp(),
         status = CASE WHEN EXISTS (SELECT FROM gdpr.purge_results r WHERE r.run_id = x.id AND r.error IS NOT NULL)
                       THEN 'failed' ELSE 'done' END
   WHERE x.id = _purge_finish.run_id;
  -- The history has a retention of its own.
  DELETE FROM gdpr.purge_runs x
   WHERE x.started_at < now() - gdpr.setting('purge_history_keep')::interval;
$$;
