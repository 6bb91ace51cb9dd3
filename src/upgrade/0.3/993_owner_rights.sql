-- Round 17 of the hostile review (test/shell/security_round17.sh):
-- - a retention scope's or a customer profile's values were converted to
--   their column's type as the extension's owner: a domain's CHECK or a cast
--   of the owner's type ran with its rights (_check_scope: now as the table's
--   owner);
-- - a caller whom row-level security filters was shown every row, read as
--   the table's owner (export, breaches, duplicates): refused now
--   (_rls_filters, in _holds_privileges and _require_privilege; round 18:
--   whatever row_security says, a permissive USING (true) policy needed for
--   each command, memberships counted as the server does, without NOINHERIT);
-- - ALTER TABLE ... DROP COLUMN a, DROP COLUMN b on a registered table failed
--   (_on_sql_drop).


CREATE OR REPLACE FUNCTION gdpr._check_scope(tbl regclass, scope_column name, scope_values text[], scope_exclude boolean)
  RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ text;
  v text;
  vals text[] := '{}';
BEGIN
  IF scope_column IS NULL THEN
    IF scope_values IS NOT NULL OR coalesce(scope_exclude, false) THEN
      RAISE EXCEPTION 'a row scope needs its column'
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass scope_column with scope_values or scope_exclude.';
    END IF;
    RETURN NULL;
  END IF;
  typ := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = tbl AND a.attnum = (gdpr._column(tbl, scope_column)).attnum);
  IF scope_values IS NULL THEN
    RETURN NULL;                 -- a boolean that is true, any other column that is set
  END IF;
  IF cardinality(scope_values) = 0 OR array_position(scope_values, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'the values of column "%" must be listed, without NULL', scope_column
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave scope_values NULL for the rows where the column is set (true, for a boolean).';
  END IF;
  FOREACH v IN ARRAY scope_values LOOP
    BEGIN
      v := gdpr._owner_query(tbl, format('SELECT to_jsonb(($1::text)::%s::text)', typ), v) #>> '{}';
    EXCEPTION WHEN data_exception THEN
      RAISE EXCEPTION 'value % is not a value of column "%" of % (type %)', quote_literal(v), scope_column, tbl, typ
        USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    vals := vals || v;
  END LOOP;
  RETURN ARRAY(SELECT DISTINCT x FROM unnest(vals) x ORDER BY 1);
END
$$;

CREATE FUNCTION gdpr._rls_filters(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- The commands whose policies apply: SELECT's always (a DELETE or an
  -- UPDATE reads its rows), UPDATE's and DELETE's for those privileges.
  cmds "char"[] := ARRAY['r']::"char"[]
                   || CASE WHEN privilege ~* 'UPDATE' THEN ARRAY['w']::"char"[] ELSE '{}' END
                   || CASE WHEN privilege ~* 'DELETE' THEN ARRAY['d']::"char"[] ELSE '{}' END;
BEGIN
  -- Whatever row_security says: set to off, it does not show a role the
  -- rows, the server refuses his reads instead.
  IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_roles r ON r.rolname = role
                  WHERE c.oid = tbl AND c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
                    AND (c.relforcerowsecurity OR NOT pg_has_role(role, c.relowner, 'USAGE'))) THEN
    RETURN false;
  END IF;
  -- The policies that apply to him: to the roles whose privileges he has
  -- (USAGE: as the server decides, NOINHERIT memberships do not count), for
  -- those commands; a restrictive one of the table's own filters, and so
  -- does a command without a permissive one that lets every row through.
  RETURN (WITH pol AS (SELECT p.polpermissive, p.polcmd, pg_get_expr(p.polqual, p.polrelid) = 'true' AS all_rows
                         FROM pg_policy p
                        WHERE p.polrelid = tbl AND p.polname <> 'gdpr_restriction'
                          AND (p.polcmd = '*' OR p.polcmd = ANY (cmds))
                          AND (0::oid = ANY (p.polroles)
                               OR EXISTS (SELECT FROM unnest(p.polroles) x WHERE x <> 0 AND pg_has_role(role, x, 'USAGE'))))
          SELECT EXISTS (SELECT FROM pol WHERE NOT pol.polpermissive)
              OR EXISTS (SELECT FROM unnest(cmds) cmd
                          WHERE NOT EXISTS (SELECT FROM pol WHERE pol.polpermissive AND pol.all_rows
                                               AND (pol.polcmd = '*' OR pol.polcmd = cmd))));
END
$$;

CREATE FUNCTION gdpr._holds_table_privileges(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- has_table_privilege(..., 'A, B') is true when ANY is held: each is asked.
  -- (PL/pgSQL: its plan is kept; a SQL function with SET is planned at every
  -- call, and export and erasure ask this for every table.)
  RETURN role IS NOT NULL
         AND has_schema_privilege(role, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl), 'USAGE')
         AND NOT EXISTS (SELECT FROM unnest(string_to_array(replace(privilege, ' ', ''), ',')) p
                          WHERE NOT has_table_privilege(role, tbl, p));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._holds_privileges(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._holds_table_privileges(role, tbl, privilege) AND NOT gdpr._rls_filters(role, tbl, privilege);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._require_privilege(tbl regclass, privilege text, action text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  ns oid := (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl);
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  IF ns IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  IF NOT coalesce(gdpr._holds_table_privileges(who, tbl, privilege), false) THEN
    RAISE EXCEPTION 'permission denied for table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s needs %s on %s (and USAGE on its schema); role "%s" does not hold it.',
                            action, privilege, tbl, who),
            HINT = 'The extension never acts on a table with rights its caller does not have: '
                   'ask the table''s owner for the privilege.';
  END IF;
  IF who IS NOT NULL AND gdpr._rls_filters(who, tbl, privilege) THEN
    RAISE EXCEPTION 'permission denied for table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s reads the rows of %s as its owner; row-level security filters them for role "%s".',
                            action, tbl, who),
            HINT = 'The extension never shows a role rows it cannot read itself: ask the table''s owner for a policy '
                   'that lets every row through (USING (true)), or act as a role that BYPASSRLS.';
  END IF;
END
$$;

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

REVOKE EXECUTE ON FUNCTION gdpr._rls_filters(name, regclass, text), gdpr._holds_table_privileges(name, regclass, text) FROM PUBLIC;
