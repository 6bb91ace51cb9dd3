-- The registry follows the schema.  Tables are stored by OID, so renaming a
-- table needs nothing.  Columns are stored by name (names survive pg_dump,
-- attribute numbers do not), so a snapshot of each registered table's columns
-- lets the event triggers tell a rename from a drop.

CREATE TABLE gdpr.column_snapshot (
  tbl     regclass NOT NULL,
  attnum  smallint NOT NULL,
  attname name NOT NULL,
  PRIMARY KEY (tbl, attnum)
);
COMMENT ON TABLE gdpr.column_snapshot IS
  'internal: column names of registered tables as last seen; rebuilt after a restore';

CREATE FUNCTION gdpr._snapshot_columns(tbl regclass) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  DELETE FROM gdpr.column_snapshot s WHERE s.tbl = _snapshot_columns.tbl;
  INSERT INTO gdpr.column_snapshot (tbl, attnum, attname)
    SELECT a.attrelid, a.attnum, a.attname FROM pg_attribute a
     WHERE a.attrelid = _snapshot_columns.tbl AND a.attnum > 0 AND NOT a.attisdropped;
$$;

CREATE FUNCTION gdpr._note_change(event text, object text, detail text) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO gdpr.registry_changes (event, object, detail) VALUES (event, object, detail);
$$;

-- Rename every registry reference to column old of tbl.
CREATE FUNCTION gdpr._rename_column(tbl regclass, old name, new name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.subject_tables s SET id_column = new WHERE s.tbl = _rename_column.tbl AND s.id_column = old;
  UPDATE gdpr.registered_tables r SET subject_column = new
   WHERE r.tbl = _rename_column.tbl AND r.subject_column = old;
  UPDATE gdpr.registered_tables r SET parent_column = new
   WHERE r.parent_table = _rename_column.tbl AND r.parent_column = old;
  UPDATE gdpr.registered_tables r SET soft_delete_column = new
   WHERE r.tbl = _rename_column.tbl AND r.soft_delete_column = old;
  UPDATE gdpr.subject_links l SET link_column = new WHERE l.tbl = _rename_column.tbl AND l.link_column = old;
  UPDATE gdpr.subject_links l SET type_column = new WHERE l.tbl = _rename_column.tbl AND l.type_column = old;
  UPDATE gdpr.subject_links l SET parent_column = new
   WHERE l.parent_table = _rename_column.tbl AND l.parent_column = old;
  UPDATE gdpr.subject_links l SET extra_link_columns = array_replace(l.extra_link_columns, old, new)
   WHERE l.tbl = _rename_column.tbl AND old = ANY (l.extra_link_columns);
  UPDATE gdpr.subject_links l SET extra_parent_columns = array_replace(l.extra_parent_columns, old, new)
   WHERE l.parent_table = _rename_column.tbl AND old = ANY (l.extra_parent_columns);
  UPDATE gdpr.personal_columns c SET col = new WHERE c.tbl = _rename_column.tbl AND c.col = old;
  UPDATE gdpr.retention_policies p SET col = new WHERE p.tbl = _rename_column.tbl AND p.col = old;
  UPDATE gdpr.retention_policies p SET after_column = new
   WHERE p.after_table = _rename_column.tbl AND p.after_column = old;
  UPDATE gdpr.retention_policies p SET scope_column = new WHERE p.tbl = _rename_column.tbl AND p.scope_column = old;
  PERFORM gdpr._note_change('column renamed', format('%s.%I', tbl, old), format('now %I', new));
END
$$;

-- Forget column col of tbl: a registration that needs it goes with it.
CREATE FUNCTION gdpr._forget_column(tbl regclass, col name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  what text := format('%s.%I', tbl, col);
BEGIN
  FOR r IN SELECT x.tbl FROM gdpr.registered_tables x
            WHERE x.tbl = _forget_column.tbl AND x.subject_column = col
               OR x.parent_table = _forget_column.tbl AND x.parent_column = col AND x.tbl <> x.parent_table
  LOOP
    -- A child may already have gone with its parent in an earlier turn.
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = r.tbl);
    PERFORM gdpr._forget_table(r.tbl, r.tbl::text, format('its subject column %s was dropped', what));
  END LOOP;
  -- Another link through the column goes (the table stays registered by
  -- the others); so does a trash declared on it.
  DELETE FROM gdpr.subject_links l
   WHERE l.tbl = _forget_column.tbl AND (_forget_column.col IN (l.link_column, l.type_column)
                                         OR _forget_column.col = ANY (l.extra_link_columns))
      OR l.parent_table = _forget_column.tbl AND (l.parent_column = _forget_column.col
                                                  OR _forget_column.col = ANY (l.extra_parent_columns));
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'subject link removed');
    RAISE WARNING 'links to data subjects through % were removed', what
      USING HINT = 'Link the table again with gdpr.link_table() if its rows still belong to subjects.';
  END IF;
  UPDATE gdpr.registered_tables x SET soft_delete_column = NULL, soft_deleted_value = NULL
   WHERE x.tbl = _forget_column.tbl AND x.soft_delete_column = _forget_column.col;
  DELETE FROM gdpr.personal_columns c WHERE c.tbl = _forget_column.tbl AND c.col = _forget_column.col;
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'classification removed');
  END IF;
  DELETE FROM gdpr.retention_policies p
   WHERE p.tbl = _forget_column.tbl AND _forget_column.col IN (p.col, p.scope_column)
      OR p.after_table = _forget_column.tbl AND p.after_column = _forget_column.col;
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'retention policy removed');
    RAISE WARNING 'retention policies on or counted from % were removed', what
      USING HINT = 'Set a new policy with gdpr.set_retention() if the data must still expire.';
  END IF;
END
$$;

-- Forget a registered table and every table registered under it.  A child's
-- data does not stop being personal when its parent goes, so say so loudly.
-- label names the table (a dropped table's OID no longer prints as a name).
CREATE FUNCTION gdpr._forget_table(tbl regclass, label text, why text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT x.tbl FROM gdpr.registered_tables x
            WHERE x.parent_table = _forget_table.tbl AND x.tbl <> x.parent_table LOOP
    PERFORM gdpr._forget_table(r.tbl, r.tbl::text, format('the table it referred to (%s) went away', label));
    IF EXISTS (SELECT FROM pg_class c WHERE c.oid = r.tbl) THEN
      RAISE WARNING 'table % is no longer registered: the table it referred to (%) went away', r.tbl, label
        USING HINT = 'Register it again under another table if it still holds personal data.';
    END IF;
  END LOOP;
  PERFORM gdpr._detach_triggers(tbl);
  DELETE FROM gdpr.subject_links l WHERE l.parent_table = _forget_table.tbl;
  DELETE FROM gdpr.registered_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.subject_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.column_snapshot x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.retention_policies p WHERE p.after_table = _forget_table.tbl;
  PERFORM gdpr._note_change('table unregistered', label, why);
END
$$;

-- Before ALTER or DROP: make sure every registered table has a snapshot (a
-- restored database starts without one), while the columns are still there.
-- Only when one is missing: an INSERT takes a lock on the snapshot at every
-- ALTER TABLE of any table, and nothing is to be done almost always.
CREATE FUNCTION gdpr._on_ddl_start() RETURNS event_trigger
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

-- After ALTER TABLE on a registered table: apply renames, refresh the snapshot.
CREATE FUNCTION gdpr._on_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
  r record;
BEGIN
  FOR t IN SELECT DISTINCT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
             JOIN gdpr.registered_tables x ON x.tbl = c.objid
            WHERE c.classid = 'pg_class'::regclass LOOP
    -- An empty snapshot (after a restore) has nothing to compare with.
    FOR r IN SELECT s.attname AS old, a.attname AS new
               FROM gdpr.column_snapshot s
               JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attnum = s.attnum AND NOT a.attisdropped
              WHERE s.tbl = t AND a.attname <> s.attname LOOP
      PERFORM gdpr._rename_column(t, r.old, r.new);
    END LOOP;
    PERFORM gdpr._snapshot_columns(t);
  END LOOP;
END
$$;

-- After DROP: forget dropped tables and columns.
CREATE FUNCTION gdpr._on_sql_drop() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d record;
  touched boolean := false;
BEGIN
  -- A dropped table's declaration goes with it (its OID could be reused).
  DELETE FROM gdpr.out_of_scope_tables x
   WHERE x.tbl IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() o
                    WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
  -- The dropped columns' names are read from the snapshot before any is
  -- forgotten: the snapshot taken after the first one of a statement that
  -- dropped several no longer has the others (ALTER TABLE ... DROP COLUMN a,
  -- DROP COLUMN b failed).
  FOR d IN SELECT o.objid, o.objsubid, o.object_identity, s.attname FROM pg_event_trigger_dropped_objects() o
             LEFT JOIN gdpr.column_snapshot s ON s.tbl = o.objid AND s.attnum = o.objsubid
            WHERE o.classid = 'pg_class'::regclass AND o.object_type IN ('table', 'table column')
              AND EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = o.objid)
            ORDER BY o.objsubid DESC LOOP
    IF d.objsubid = 0 THEN
      -- A dropped table may already be gone from the registry with its parent.
      IF EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = d.objid) THEN
        PERFORM gdpr._forget_table(d.objid::regclass, d.object_identity, 'table dropped');
      END IF;
    ELSE
      PERFORM gdpr._forget_column(d.objid::regclass, d.attname);
      PERFORM gdpr._snapshot_columns(d.objid::regclass);
    END IF;
    touched := true;
  END LOOP;
  -- A table's way to its subject may have changed with a link that went:
  -- so does its restriction policy's expression (25_triggers.sql).
  IF touched THEN
    PERFORM gdpr._refresh_restriction_policies();
  END IF;
END
$$;

-- The access log's triggers on registered tables (and their partitions and
-- children) stay in place and enabled: DDL by anyone but the extension
-- itself that leaves one dropped, renamed, disabled or replaced (DISABLE
-- TRIGGER, ENABLE REPLICA TRIGGER, ALTER TRIGGER ... RENAME, DROP TRIGGER,
-- CREATE OR REPLACE TRIGGER with another function) is refused and rolled
-- back.  The guard compares the tables whose triggers were all in place when
-- the DDL started with the same tables at its end (so a restore, which
-- creates triggers last, is never refused).  And DDL that makes code run on
-- a registered table's rows (an index on an expression, a trigger, a rule, a
-- policy) is recorded, naming the role.

-- The registered tables and their partitions and inheritance children, at
-- any depth: each carries the triggers (25_triggers.sql).
CREATE FUNCTION gdpr._registered_relations() RETURNS SETOF oid
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT r.tbl::oid FROM gdpr.registered_tables r
               UNION SELECT gdpr._descendants(r.tbl)::oid FROM gdpr.registered_tables r;
END
$$;

-- Whether the extension's triggers of a table are whole: the log's four, or
-- (names) the subject triggers, there, enabled, calling fn (round 24.5), and
-- tied to no extension (ALTER TRIGGER ... DEPENDS ON EXTENSION would let
-- that extension's DROP take them away: security review round 23.6).
CREATE FUNCTION gdpr._triggers_whole(t oid, names name[], fn regprocedure) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT count(*) FROM pg_trigger g
           WHERE g.tgrelid = t AND g.tgname = ANY (names) AND g.tgfoid = fn
             AND g.tgenabled IN ('O', 'A')
             AND NOT EXISTS (SELECT FROM pg_depend d
                              WHERE d.classid = 'pg_trigger'::regclass AND d.objid = g.oid AND d.deptype = 'x'))
         = cardinality(names);
END
$$;

-- The registered tables (partitions and children included) whose triggers
-- are all there and enabled.
CREATE FUNCTION gdpr._whole_tables() RETURNS oid[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- The log's and the restriction's triggers (calling the extension's
  -- function: the others read the subject column in the INSERT trigger's
  -- argument), the restriction's policy (25_triggers.sql), and on subject
  -- tables the departure and suppression triggers (76_departures.sql).
  RETURN ARRAY(SELECT t FROM gdpr._registered_relations() t
                WHERE gdpr._triggers_whole(t, gdpr._trigger_names(), to_regprocedure('gdpr._log_write()'))
                  AND gdpr._restriction_policy_whole(t)
                  AND (NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = t)
                       OR gdpr._triggers_whole(t, gdpr._subject_trigger_names(),
                                               to_regprocedure('gdpr._subjects_departed()'))));
END
$$;

CREATE FUNCTION gdpr._guard_ddl_start() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM gdpr.registered_tables) THEN
    PERFORM gdpr._set_ddl_start_state(gdpr._whole_tables()::text);
  END IF;
END
$$;

CREATE FUNCTION gdpr._guard_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  before oid[] := gdpr._ddl_start_state()::oid[];
  broken text;
  c record;
BEGIN
  PERFORM gdpr._set_ddl_start_state(NULL);
  IF before IS NOT NULL AND NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(b.t::regclass::text, ', ' ORDER BY b.t::regclass::text) INTO broken
      FROM (SELECT t FROM unnest(before) t
             WHERE NOT t = ANY (gdpr._whole_tables())
               AND EXISTS (SELECT FROM pg_class x WHERE x.oid = t)
               AND t IN (SELECT gdpr._registered_relations())
            -- Any ALTER POLICY of the extension's policies, even one that
            -- leaves the expression as it was (USING (true) while dormant):
            -- only the extension changes them, with the restrictions' state.
            UNION SELECT p.polrelid FROM pg_event_trigger_ddl_commands() x
                    JOIN pg_policy p ON x.classid = 'pg_policy'::regclass AND p.oid = x.objid
                   WHERE x.command_tag = 'ALTER POLICY' AND p.polname IN ('gdpr_restriction', 'gdpr_restriction_open')
                     AND p.polrelid IN (SELECT gdpr._registered_relations())) b;
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'the extension''s triggers and row-level security policy on registered tables cannot be dropped, renamed, changed or disabled'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('This statement would leave a trigger or the gdpr_restriction policy of %s missing, changed or disabled.', broken),
              HINT = 'Unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
    END IF;
  END IF;
  -- A rule on a registered table would run its queries with every statement
  -- on it, the extension's purge and erasure included, at their level and
  -- with their exemptions (a DO ALSO copy of the table unlogged, a DO
  -- INSTEAD NOTHING erasure that erases nothing: security review round
  -- 25.2).  Only on a table whose triggers are all in place, as below: a
  -- restore creates rules before triggers.
  IF NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(DISTINCT w.ev_class::regclass::text, ', ') INTO broken
      FROM pg_event_trigger_ddl_commands() x
      JOIN pg_rewrite w ON x.classid = 'pg_rewrite'::regclass AND w.oid = x.objid
     WHERE x.command_tag = 'CREATE RULE' AND w.ev_class = ANY (gdpr._whole_tables());
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'rules cannot be created on registered tables'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s holds registered personal data: a rule would run its queries with every statement on it, the extension''s purge and erasure included.', broken),
              HINT = 'Use a trigger, or unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
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
               OR (x.command_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER') AND NOT g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()))
               OR x.command_tag = 'CREATE RULE'
               OR (x.command_tag IN ('CREATE POLICY', 'ALTER POLICY') AND p.polname NOT IN ('gdpr_restriction', 'gdpr_restriction_open')) LOOP
    CONTINUE WHEN gdpr._own_ddl_active() OR NOT c.tbl = ANY (gdpr._whole_tables());
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.tbl);
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text, format('%s by %s', c.command_tag, gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', c.command_tag));
  END LOOP;
END
$$;

-- DROP EXTENSION too: an extension's drop takes with it what depends on it.
CREATE EVENT TRIGGER crm_gdpr_guard_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'ALTER POLICY', 'DROP POLICY',
               'DROP EXTENSION')
  EXECUTE FUNCTION gdpr._guard_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_guard_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'CREATE INDEX', 'CREATE RULE',
               'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY', 'DROP EXTENSION')
  EXECUTE FUNCTION gdpr._guard_ddl_end();

CREATE EVENT TRIGGER crm_gdpr_ddl_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION gdpr._on_ddl_end();
CREATE EVENT TRIGGER crm_gdpr_ddl_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
  EXECUTE FUNCTION gdpr._on_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_sql_drop ON sql_drop
  EXECUTE FUNCTION gdpr._on_sql_drop();

-- ALTER TABLE on a registered table (or one of its partitions) that makes
-- code run on its rows — a column's new type with a USING expression, a
-- default, a column added with a default or a generation expression, a CHECK
-- constraint, a generated column's new expression — is recorded like an
-- expression index (issue 18.4): a function in it reads the rows.  The
-- subcommands are read from the collected command (ddl_subcommands.c).  Only
-- tables with all their log triggers: a restore is not DDL to record.
CREATE FUNCTION gdpr._alter_table_code(cmd pg_ddl_command) RETURNS text[]
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_alter_table_code';

-- The role running the DDL (NULL without the module preloaded): these event
-- triggers are SECURITY DEFINER, and gdpr._caller() is the session's role.
CREATE FUNCTION gdpr._ddl_runner() RETURNS name
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_ddl_runner';

CREATE FUNCTION gdpr._record_alter_code() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
BEGIN
  IF gdpr._own_ddl_active() THEN
    RETURN;
  END IF;
  FOR c IN SELECT x.objid::regclass AS tbl, gdpr._alter_table_code(x.command) AS what
             FROM pg_event_trigger_ddl_commands() x
            WHERE x.command_tag = 'ALTER TABLE' AND x.classid = 'pg_class'::regclass AND x.objsubid = 0 LOOP
    CONTINUE WHEN coalesce(cardinality(c.what), 0) = 0 OR NOT c.tbl = ANY (gdpr._whole_tables());
    -- A new type or generation expression rewrites every row: while a
    -- subject is restricted (Art. 18: his rows may only be stored), only a
    -- gdpr_admin may (security review round 25.4): the role running it, not
    -- the one whose erasure fired the owner's trigger that runs it (26.3).
    IF c.what && ARRAY['ALTER COLUMN TYPE', 'ALTER COLUMN SET EXPRESSION']
       AND gdpr._restriction_active((SELECT r.tbl FROM gdpr.registered_tables r
                                      WHERE r.tbl = c.tbl OR r.tbl IN (SELECT gdpr._ancestors(c.tbl)) LIMIT 1)) IS NOT NULL
       AND NOT (SELECT a.rolsuper FROM pg_roles a WHERE a.rolname = coalesce(gdpr._ddl_runner(), gdpr._caller()))
       AND NOT pg_has_role(coalesce(gdpr._ddl_runner(), gdpr._caller()), 'gdpr_admin', 'USAGE') THEN
      RAISE EXCEPTION 'ALTER TABLE % would rewrite the rows of a restricted subject', c.tbl
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s changes every row of %s, and a subject of its subject table is restricted (Art. 18): his rows may only be stored.',
                              array_to_string(c.what, ', '), c.tbl),
              HINT = 'Ask a gdpr_admin, or wait until the restriction is lifted.';
    END IF;
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text,
                              format('ALTER TABLE (%s) by %s', array_to_string(c.what, ', '), gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', 'ALTER TABLE', 'subcommands', to_jsonb(c.what)));
  END LOOP;
END
$$;
CREATE EVENT TRIGGER crm_gdpr_alter_code ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION gdpr._record_alter_code();
