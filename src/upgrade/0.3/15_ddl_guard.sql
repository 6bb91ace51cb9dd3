-- The access log cannot be switched off by DDL (issue 18.4): the extension
-- marks its own DDL on CRM tables (src/own_ddl.c), an event trigger refuses
-- anyone else's that drops, renames or disables its triggers, and records DDL
-- that can make code run on a registered table's rows.  ALTER TABLE of other
-- tables no longer writes to gdpr.column_snapshot (18.11).

-- The extension's own DDL on a CRM table (src/own_ddl.c): the guard of
-- 20_schema_sync.sql refuses anyone else's that touches these triggers.
CREATE OR REPLACE FUNCTION gdpr._own_ddl(open boolean) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_own_ddl';

CREATE OR REPLACE FUNCTION gdpr._own_ddl_active() RETURNS boolean
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_own_ddl_active';

CREATE OR REPLACE FUNCTION gdpr._set_ddl_start_state(state text) RETURNS void
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_set_ddl_start_state';

CREATE OR REPLACE FUNCTION gdpr._ddl_start_state() RETURNS text
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_ddl_start_state';

-- The names of the triggers the extension keeps on every registered table.
CREATE OR REPLACE FUNCTION gdpr._trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_restrict_update', 'gdpr_restrict_delete', 'gdpr_log_insert', 'gdpr_log_update',
               'gdpr_log_delete', 'gdpr_log_truncate']::name[];

CREATE OR REPLACE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
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
  PERFORM gdpr._own_ddl(false);
  -- The month partitions exist before anything is logged.
  IF to_regclass(format('gdpr.%I', gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC')))) IS NULL THEN
    PERFORM gdpr._log_maintain();
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND NOT g.tgisinternal AND g.tgname = ANY (gdpr._trigger_names()) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

-- Before ALTER or DROP: make sure every registered table has a snapshot (a
-- restored database starts without one), while the columns are still there.
-- Only when one is missing: an INSERT takes a lock on the snapshot at every
-- ALTER TABLE of any table, and nothing is to be done almost always.
CREATE OR REPLACE FUNCTION gdpr._on_ddl_start() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM gdpr.registered_tables r
              WHERE NOT EXISTS (SELECT FROM gdpr.column_snapshot s WHERE s.tbl = r.tbl)) THEN
    INSERT INTO gdpr.column_snapshot (tbl, attnum, attname)
      SELECT a.attrelid, a.attnum, a.attname
        FROM gdpr.registered_tables r JOIN pg_attribute a ON a.attrelid = r.tbl
       WHERE a.attnum > 0 AND NOT a.attisdropped
         AND NOT EXISTS (SELECT FROM gdpr.column_snapshot s WHERE s.tbl = r.tbl);
  END IF;
END
$$;

-- The registered tables (partitions included) whose triggers are all there
-- and enabled.
-- The registered tables and their partitions (pg_partition_tree lists
-- nothing for a table that is not partitioned).
CREATE OR REPLACE FUNCTION gdpr._registered_relations() RETURNS SETOF oid
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT r.tbl::oid FROM gdpr.registered_tables r
               UNION SELECT p.relid::oid FROM gdpr.registered_tables r CROSS JOIN LATERAL pg_partition_tree(r.tbl) p;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._whole_tables() RETURNS oid[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT t FROM gdpr._registered_relations() t
                WHERE (SELECT count(*) FROM pg_trigger g
                        WHERE g.tgrelid = t AND g.tgname = ANY (gdpr._trigger_names())
                          AND g.tgenabled IN ('O', 'A')) = cardinality(gdpr._trigger_names()));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._guard_ddl_start() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM gdpr.registered_tables) THEN
    PERFORM gdpr._set_ddl_start_state(gdpr._whole_tables()::text);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._guard_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  before oid[] := gdpr._ddl_start_state()::oid[];
  broken text;
  c record;
BEGIN
  PERFORM gdpr._set_ddl_start_state(NULL);
  IF before IS NOT NULL AND NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(t::regclass::text, ', ' ORDER BY t::regclass::text) INTO broken
      FROM unnest(before) t
     WHERE NOT t = ANY (gdpr._whole_tables())
       AND EXISTS (SELECT FROM pg_class x WHERE x.oid = t)
       AND t IN (SELECT gdpr._registered_relations());
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'the access log''s triggers on registered tables cannot be dropped, renamed or disabled'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('This statement would leave a trigger of %s missing or disabled.', broken),
              HINT = 'Unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
    END IF;
  END IF;
  -- Code that will run on the rows: an index on an expression or with a
  -- predicate, a trigger (not the extension's), a rule, a policy.  Only on a
  -- table whose triggers are all in place: a restore, which creates indexes
  -- and rules before the triggers, is not recorded as DDL.
  FOR c IN SELECT x.command_tag, coalesce(i.indrelid, g.tgrelid, p.polrelid, w.ev_class)::regclass AS tbl
             FROM pg_event_trigger_ddl_commands() x
             LEFT JOIN pg_index i ON x.classid = 'pg_class'::regclass AND i.indexrelid = x.objid
             LEFT JOIN pg_trigger g ON x.classid = 'pg_trigger'::regclass AND g.oid = x.objid
             LEFT JOIN pg_policy p ON x.classid = 'pg_policy'::regclass AND p.oid = x.objid
             LEFT JOIN pg_rewrite w ON x.classid = 'pg_rewrite'::regclass AND w.oid = x.objid
            WHERE (x.command_tag = 'CREATE INDEX' AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
               OR (x.command_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER') AND NOT g.tgname = ANY (gdpr._trigger_names()))
               OR x.command_tag IN ('CREATE RULE', 'CREATE POLICY', 'ALTER POLICY') LOOP
    CONTINUE WHEN gdpr._own_ddl_active() OR NOT c.tbl = ANY (gdpr._whole_tables());
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.tbl);
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text, format('%s by %s', c.command_tag, gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', c.command_tag));
  END LOOP;
END
$$;

CREATE EVENT TRIGGER crm_gdpr_guard_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER')
  EXECUTE FUNCTION gdpr._guard_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_guard_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'CREATE INDEX', 'CREATE RULE',
               'CREATE POLICY', 'ALTER POLICY')
  EXECUTE FUNCTION gdpr._guard_ddl_end();
