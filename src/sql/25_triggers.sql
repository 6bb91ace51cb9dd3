-- The triggers the extension keeps on every registered table, created when a
-- table is registered and removed when it is unregistered.  pg_dump keeps
-- them with the tables; registering again replaces them.

-- The extension's own DDL on a CRM table (src/own_ddl.c): the guard of
-- 20_schema_sync.sql refuses anyone else's that touches these triggers.
CREATE FUNCTION gdpr._own_ddl(open boolean) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_own_ddl';
CREATE FUNCTION gdpr._own_ddl_active() RETURNS boolean
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_own_ddl_active';
CREATE FUNCTION gdpr._set_ddl_start_state(state text) RETURNS void
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_set_ddl_start_state';
CREATE FUNCTION gdpr._ddl_start_state() RETURNS text
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_ddl_start_state';

-- The names of the triggers the extension keeps on every registered table.
CREATE FUNCTION gdpr._trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_restrict_update', 'gdpr_restrict_delete', 'gdpr_log_insert', 'gdpr_log_update',
               'gdpr_log_delete', 'gdpr_log_truncate']::name[];

-- Those it keeps on registered subject tables only (76_departures.sql, issue 23).
CREATE FUNCTION gdpr._subject_trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_subject_departed', 'gdpr_suppression']::name[];

CREATE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  col text;
BEGIN
  PERFORM gdpr._own_ddl(true);
  -- Restriction of processing (Art. 18): see 70_rights.sql.
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_delete AFTER DELETE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  -- The access log (80_access_log.sql, log_write.c): one row per statement.
  -- The argument is the subject key column, found here once rather than per
  -- statement ('' when the subject is reached through other tables).
  col := gdpr._log_subject_column(tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS gdpr_old NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS gdpr_old
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  -- Subjects who leave (76_departures.sql) and contact points that come back (77_suppression.sql).
  PERFORM gdpr._attach_subject_triggers(tbl);
  PERFORM gdpr._own_ddl(false);
  -- The month partitions exist before anything is logged.
  IF to_regclass(format('gdpr.%I', gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC')))) IS NULL THEN
    PERFORM gdpr._log_maintain();
  END IF;
END
$$;

CREATE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND NOT g.tgisinternal AND g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;
