-- Restriction stops reads (issue 23.4, Art. 18): a RESTRICTIVE row-level
-- security policy gdpr_restriction on every registered table, answered by
-- src/restriction_reads.c; the violations in gdpr.restriction_violations;
-- a table's owner may switch it off for his table (gdpr.set_restriction_reads).
-- The DDL guard keeps the policy, row-level security and the subject tables'
-- departure and suppression triggers in place.  Tables registered before get
-- the policy at the end of this part.

-- The policy's expression on a table: with its subject key column col when
-- its rows hold their subject's key ('' when they are reached through other
-- tables), so that no query is needed to tell a restricted subject's row.
CREATE FUNCTION gdpr._restriction_qual(col text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN 'gdpr.restriction_visible(tableoid, ctid' || CASE WHEN col <> '' THEN ', ' || quote_ident(col) ELSE '' END || ')';

CREATE FUNCTION gdpr._attach_restriction_policy(tbl regclass, col text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  qual text := gdpr._restriction_qual(col);
  current_qual text := (SELECT pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p
                         WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction');
BEGIN
  -- A table whose owner switched the filter off (gdpr.set_restriction_reads).
  IF EXISTS (SELECT FROM gdpr.restriction_read_optouts o
              WHERE o.tbl = _attach_restriction_policy.tbl OR _attach_restriction_policy.tbl IN (SELECT gdpr._descendants(o.tbl))) THEN
    PERFORM gdpr._detach_restriction_policy(tbl);
    RETURN;
  ELSIF current_qual = qual THEN
    RETURN;
  ELSIF current_qual IS NOT NULL THEN
    -- The table's way to its subject changed (gdpr.link_table).
    EXECUTE format('ALTER POLICY gdpr_restriction ON %s USING (%s)', tbl, qual);
    RETURN;
  END IF;
  IF NOT (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = tbl) THEN
    EXECUTE format('CREATE POLICY gdpr_restriction_open ON %s USING (true) WITH CHECK (true)', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  END IF;
  EXECUTE format('CREATE POLICY gdpr_restriction ON %s AS RESTRICTIVE FOR SELECT USING (%s)', tbl, qual);
END
$$;

-- Every registered table's policy (its partitions' and children's too) with
-- the expression its links call for now: after a link went with a column.
CREATE FUNCTION gdpr._refresh_restriction_policies() RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  was_open boolean := gdpr._own_ddl_active();
  x record;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR x IN SELECT y.t, gdpr._log_subject_column(y.reg) AS col
             FROM (SELECT r.tbl AS t, r.tbl AS reg FROM gdpr.registered_tables r
                   UNION SELECT gdpr._descendants(r.tbl), r.tbl FROM gdpr.registered_tables r) y LOOP
    PERFORM gdpr._attach_restriction_policy(x.t, x.col);
  END LOOP;
  IF NOT was_open THEN
    PERFORM gdpr._own_ddl(false);
  END IF;
END
$$;

-- Undone when the table is unregistered: row-level security goes off again
-- only if the extension switched it on and no other policy remains.
CREATE FUNCTION gdpr._detach_restriction_policy(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol name;
  opened boolean := EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction_open');
BEGIN
  FOR pol IN SELECT p.polname FROM pg_policy p
              WHERE p.polrelid = tbl AND p.polname IN ('gdpr_restriction', 'gdpr_restriction_open') LOOP
    EXECUTE format('DROP POLICY %I ON %s', pol, tbl);
  END LOOP;
  IF opened AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl) THEN
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
  END IF;
END
$$;

-- Whether tbl's restriction policy is in place, switched on and unchanged
-- (tbl: a registered table or a partition of one).
CREATE FUNCTION gdpr._restriction_policy_whole(tbl oid) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg regclass := coalesce((SELECT r.tbl FROM gdpr.registered_tables r WHERE r.tbl = _restriction_policy_whole.tbl),
                           (SELECT r.tbl FROM gdpr.registered_tables r
                             WHERE r.tbl IN (SELECT a.relid FROM pg_partition_ancestors(_restriction_policy_whole.tbl) a)
                             LIMIT 1));
BEGIN
  RETURN reg IS NULL OR EXISTS (SELECT FROM gdpr.restriction_read_optouts o WHERE o.tbl = reg)
      OR (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = tbl)
         AND EXISTS (SELECT FROM pg_policy p
                      WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction' AND NOT p.polpermissive
                        AND p.polcmd = 'r' AND p.polroles = '{0}'
                        AND pg_get_expr(p.polqual, p.polrelid) = gdpr._restriction_qual(gdpr._log_subject_column(reg)));
END
$$;


-- Restriction stops reads (src/restriction_reads.c): the expression of the
-- gdpr_restriction policy on every registered table (25_triggers.sql), with
-- the row's subject key when the table holds it.  Every role reading the
-- table executes it, as any policy's function.
CREATE FUNCTION gdpr.restriction_visible(tableoid oid, row_id tid) RETURNS boolean
  LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'gdpr_restriction_visible';
CREATE FUNCTION gdpr.restriction_visible(tableoid oid, row_id tid, subject_key anyelement) RETURNS boolean
  LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'gdpr_restriction_visible';

-- The tables whose owner switched the restriction's read filter off: they
-- carry no gdpr_restriction policy (25_triggers.sql).
CREATE TABLE gdpr.restriction_read_optouts (
  tbl     regclass PRIMARY KEY REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  set_at  timestamptz NOT NULL DEFAULT now(),
  set_by  name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.restriction_read_optouts', '');
COMMENT ON TABLE gdpr.restriction_read_optouts IS
  'registered tables whose restricted subjects'' rows are not hidden from readers (gdpr.set_restriction_reads)';

-- Switch the read filter of one registered table (its partitions and
-- children with it): 'filter' (the default) or 'off'.  The table's owner's
-- rights are needed, as to register it; recorded in registry_changes.
CREATE FUNCTION gdpr.set_restriction_reads(tbl regclass, mode text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_restriction_reads()');
  PERFORM gdpr._one_of(mode, ARRAY['filter', 'off'], 'restriction reads mode');
  IF mode = 'off' THEN
    INSERT INTO gdpr.restriction_read_optouts (tbl) VALUES (tbl) ON CONFLICT DO NOTHING;
  ELSE
    DELETE FROM gdpr.restriction_read_optouts o WHERE o.tbl = set_restriction_reads.tbl;
  END IF;
  PERFORM gdpr._refresh_restriction_policies();
  PERFORM gdpr._note_change('restriction reads', tbl::text, format('%s by %s', mode, gdpr._caller()));
END
$$;

-- SQL listing (tableoid, ctid, subject id) of the rows of registered table
-- tbl (its partitions and children included) that belong to a restricted
-- subject, one branch per restricted subject of its subject table; NULL when
-- none is restricted.  Run as the table's owner.
CREATE FUNCTION gdpr._restricted_rows_sql(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := (SELECT r.subject_table FROM gdpr.registered_tables r WHERE r.tbl = _restricted_rows_sql.tbl);
BEGIN
  RETURN (SELECT string_agg(format('SELECT t.tableoid, t.ctid, %L::text FROM %s t WHERE %s', x.subject_id, tbl,
                                   gdpr._subject_rows_cond(tbl, st, quote_literal(x.subject_id))), ' UNION ALL '
                            ORDER BY x.subject_id)
            FROM gdpr.restrictions x WHERE x.subject_table = st AND x.lifted_at IS NULL);
END
$$;


-- After DROP: a link gone changes the restriction policy of its table.
CREATE OR REPLACE FUNCTION gdpr._on_sql_drop() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d record;
  touched boolean := false;
BEGIN
  -- A dropped table's declaration goes with it (its OID could be reused).
  DELETE FROM gdpr.out_of_scope_tables x
   WHERE x.tbl IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() o
                    WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
  FOR d IN SELECT o.objid, o.objsubid, o.object_identity FROM pg_event_trigger_dropped_objects() o
            WHERE o.classid = 'pg_class'::regclass AND o.object_type IN ('table', 'table column')
              AND EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = o.objid)
            ORDER BY o.objsubid DESC LOOP
    IF d.objsubid = 0 THEN
      -- A dropped table may already be gone from the registry with its parent.
      IF EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = d.objid) THEN
        PERFORM gdpr._forget_table(d.objid::regclass, d.object_identity, 'table dropped');
      END IF;
    ELSE
      PERFORM gdpr._forget_column(d.objid::regclass,
                                  (SELECT s.attname FROM gdpr.column_snapshot s
                                    WHERE s.tbl = d.objid AND s.attnum = d.objsubid));
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

CREATE OR REPLACE FUNCTION gdpr._whole_tables() RETURNS oid[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- The log's and the restriction's triggers (calling the extension's
  -- function: the others read the subject column in the INSERT trigger's
  -- argument), the restriction's policy (25_triggers.sql), and on subject
  -- tables the departure and suppression triggers (76_departures.sql).
  RETURN ARRAY(SELECT t FROM gdpr._registered_relations() t
                WHERE (SELECT count(*) FROM pg_trigger g
                        WHERE g.tgrelid = t AND g.tgname = ANY (gdpr._trigger_names())
                          AND g.tgfoid = to_regprocedure('gdpr._log_write()')
                          AND g.tgenabled IN ('O', 'A')) = cardinality(gdpr._trigger_names())
                  AND gdpr._restriction_policy_whole(t)
                  AND (NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = t)
                       OR (SELECT count(*) FROM pg_trigger g
                            WHERE g.tgrelid = t AND g.tgname = ANY (gdpr._subject_trigger_names())
                              AND g.tgenabled IN ('O', 'A')) = cardinality(gdpr._subject_trigger_names())));
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
      RAISE EXCEPTION 'the extension''s triggers and row-level security policy on registered tables cannot be dropped, renamed, changed or disabled'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('This statement would leave a trigger or the gdpr_restriction policy of %s missing, changed or disabled.', broken),
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


-- The guard also watches ALTER POLICY and DROP POLICY.
DROP EVENT TRIGGER crm_gdpr_guard_start;
DROP EVENT TRIGGER crm_gdpr_guard_end;
CREATE EVENT TRIGGER crm_gdpr_guard_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'ALTER POLICY', 'DROP POLICY')
  EXECUTE FUNCTION gdpr._guard_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_guard_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'CREATE INDEX', 'CREATE RULE',
               'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY')
  EXECUTE FUNCTION gdpr._guard_ddl_end();


-- Reads of restricted subjects' rows (Art. 18): what the gdpr_restriction
-- policy hid (filtered) or refused (in an UPDATE or DELETE), per scan, with
-- the rows and the subjects' references (src/restriction_reads.c).
CREATE VIEW gdpr.restriction_violations AS
  SELECT l.id, l.at, l.role_name, l.session_user_name, l.application_name, l.client_addr, l.tbl, l.table_name,
         l.row_count AS rows_hidden, l.subject_refs, l.purpose,
         CASE WHEN l.detail ? 'refused' THEN 'refused' ELSE 'filtered' END AS outcome
    FROM gdpr.access_log l
   WHERE l.operation = 'RESTRICTED';
COMMENT ON VIEW gdpr.restriction_violations IS
  'reads of restricted subjects'' rows by roles not in gdpr_admin: hidden (filtered) or refused, with who tried';


GRANT SELECT ON gdpr.restriction_violations, gdpr.restriction_read_optouts TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.set_restriction_reads(regclass, text) TO gdpr_admin;
-- (PUBLIC's EXECUTE is revoked from the others, and granted on gdpr.restriction_visible, in 99_privileges.sql.)

-- The tables registered before, their partitions and children.
SELECT gdpr._refresh_restriction_policies();
