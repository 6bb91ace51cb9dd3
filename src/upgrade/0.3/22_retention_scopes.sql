-- Issue 20.6 (rest): several retention policies per table, each with its own
-- anchor and an optional row scope on a column's values (prospects 3 years
-- after the last contact, customers 5 years after the last order, the trash
-- 30 days after "deletedAt"): a row is due under the earliest policy that
-- matches.  The policies of 0.2 become the whole-table (unscoped) policies
-- and work as before.  (What follows every link of a table for a policy's
-- anchor is in 35_links.sql, after the links it reads.)

-- No column added with a default: functions of the table's row type forbid it.
ALTER TABLE gdpr.retention_policies
  ADD COLUMN scope_column  name,
  ADD COLUMN scope_values  text[],
  ADD COLUMN scope_exclude boolean;
UPDATE gdpr.retention_policies SET scope_exclude = false;
ALTER TABLE gdpr.retention_policies
  ALTER COLUMN scope_exclude SET DEFAULT false,
  ALTER COLUMN scope_exclude SET NOT NULL,
  DROP CONSTRAINT retention_policies_tbl_col_key,
  ADD CONSTRAINT retention_policies_key UNIQUE NULLS NOT DISTINCT (tbl, col, scope_column, scope_values, scope_exclude),
  ADD CONSTRAINT retention_policies_scope CHECK (scope_column IS NOT NULL OR (scope_values IS NULL AND NOT scope_exclude));

COMMENT ON COLUMN gdpr.retention_policies.scope_column IS
  'the rows the policy applies to (NULL: all): those whose scope_column is one of scope_values, or, without values, '
  'is true (a boolean) or set (any other type); scope_exclude: the other rows';
COMMENT ON TABLE gdpr.retention_policies IS
  'how long data is kept: col NULL is the whole row; the period runs from after_table.after_column; '
  'several policies per table and column, one per row scope: a row is due under the earliest that matches';


DROP FUNCTION gdpr.set_retention(regclass, name, interval, name, text);

-- A policy applies to the rows of its scope (all rows without one): a
-- table may have one policy per scope (and per column), and a row is due
-- under the earliest that matches it.  Setting the policy of a scope again
-- replaces it; without scope arguments that is the whole-table policy.
CREATE OR REPLACE FUNCTION gdpr.set_retention(tbl regclass, col name, keep interval, after_column name,
                                   action text, scope_column name DEFAULT NULL, scope_values text[] DEFAULT NULL,
                                   scope_exclude boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg gdpr.registered_tables := gdpr._registered(tbl);
  anchor regclass;
  anchor_type regtype;
  target record;
  vals text[];
BEGIN
  PERFORM gdpr._not_null(keep, 'keep');
  PERFORM gdpr._not_null(after_column, 'after_column');
  PERFORM gdpr._one_of(action, gdpr.retention_actions(), 'retention action');
  IF keep <= interval '0' THEN
    RAISE EXCEPTION 'retention period must be positive'
      USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', keep);
  END IF;
  -- The period runs from a column of the table itself, else of the subject
  -- table (the subject's last activity then governs all his rows).
  anchor := CASE WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = after_column
                                AND a.attnum > 0 AND NOT a.attisdropped)
                 THEN tbl ELSE reg.subject_table END;
  anchor_type := (gdpr._column(anchor, after_column)).typ;
  IF anchor_type NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
    RAISE EXCEPTION 'column "%" of % is of type %, not a date or timestamp', after_column, anchor, anchor_type
      USING ERRCODE = 'datatype_mismatch';
  END IF;
  vals := gdpr._check_scope(tbl, scope_column, scope_values, scope_exclude);

  IF col IS NULL THEN
    IF action NOT IN ('delete', 'keep') THEN
      RAISE EXCEPTION 'action "%" needs a column', action
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A policy on the whole row (col NULL) can only delete or keep.';
    END IF;
  ELSE
    target := gdpr._column(tbl, col);
    IF NOT EXISTS (SELECT FROM gdpr.personal_columns c WHERE c.tbl = set_retention.tbl AND c.col = set_retention.col) THEN
      RAISE EXCEPTION 'column "%" of % is not classified', col, tbl
        USING ERRCODE = 'undefined_object',
              HINT = 'Classify it with gdpr.classify() first: a retention period needs a purpose.';
    END IF;
    PERFORM gdpr._check_column_action(tbl, col, target.typ, target.not_null, action);
  END IF;

  -- Whoever sets a policy must hold what carrying it out needs: the worker
  -- acts on the table only while the role that set it still does.
  PERFORM gdpr._require_privilege(tbl, gdpr._action_privileges(action), 'gdpr.set_retention()');
  INSERT INTO gdpr.retention_policies AS p (tbl, col, keep, after_table, after_column, action, set_by,
                                            scope_column, scope_values, scope_exclude)
    VALUES (tbl, col, keep, anchor, after_column, action, gdpr._caller()::regrole,
            scope_column, vals, coalesce(scope_exclude, false))
    ON CONFLICT ON CONSTRAINT retention_policies_key DO UPDATE
      SET keep = excluded.keep, after_table = excluded.after_table, after_column = excluded.after_column,
          action = excluded.action, updated_at = now(), updated_by = session_user, set_by = excluded.set_by;
END
$$;


-- Check a policy's row scope (see gdpr.set_retention), or the values of a
-- column that make a customer (gdpr.set_subject_profile): the column exists;
-- its values, if any, are values of its type (an enum's labels, numbers),
-- returned in their canonical text form, sorted, so that the scope is the
-- same whatever order or spelling ('01' for 1) they were given in.  No SQL
-- text is taken: the values are only ever quoted as literals.
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
      EXECUTE format('SELECT (%L::%s)::text', v, typ) INTO v;
    EXCEPTION WHEN data_exception THEN
      RAISE EXCEPTION 'value % is not a value of column "%" of % (type %)', quote_literal(v), scope_column, tbl, typ
        USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    vals := vals || v;
  END LOOP;
  RETURN ARRAY(SELECT DISTINCT x FROM unnest(vals) x ORDER BY 1);
END
$$;


DROP FUNCTION gdpr.set_retention_fallback(regclass, name, name);

-- The policy of tbl, col and a row scope (none: the whole-table policy);
-- 42704 when there is none.
CREATE OR REPLACE FUNCTION gdpr._policy_of(tbl regclass, col name, scope_column name, scope_values text[], scope_exclude boolean)
  RETURNS gdpr.retention_policies
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  vals text[];
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  vals := gdpr._check_scope(tbl, scope_column, scope_values, scope_exclude);
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.tbl = _policy_of.tbl
     AND p.col IS NOT DISTINCT FROM _policy_of.col AND p.scope_column IS NOT DISTINCT FROM _policy_of.scope_column
     AND p.scope_values IS NOT DISTINCT FROM vals AND p.scope_exclude = coalesce(_policy_of.scope_exclude, false);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no retention policy on %', CASE WHEN col IS NULL THEN tbl::text || ' (rows)' ELSE tbl::text || '.' || col END
                    || coalesce(' for the rows where ' || gdpr._scope_text(scope_column, vals, scope_exclude), '')
      USING ERRCODE = 'undefined_object', HINT = 'Set one first with gdpr.set_retention().';
  END IF;
  RETURN pol;
END
$$;

-- A second anchor for a policy: rows whose after_column is NULL (a contact
-- never contacted) count their period from fallback_column (his creation
-- date) instead of never being due.  NULL removes it.  The policy is the one
-- of tbl, col and the row scope given (none: the whole-table policy).
CREATE OR REPLACE FUNCTION gdpr.set_retention_fallback(tbl regclass, col name, fallback_column name,
                                            scope_column name DEFAULT NULL, scope_values text[] DEFAULT NULL,
                                            scope_exclude boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies := gdpr._policy_of(tbl, col, scope_column, scope_values, scope_exclude);
  typ regtype;
BEGIN
  PERFORM gdpr._require_privilege(tbl, gdpr._action_privileges(pol.action), 'gdpr.set_retention_fallback()');
  IF fallback_column IS NOT NULL THEN
    typ := (gdpr._column(pol.after_table, fallback_column)).typ;
    IF typ NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
      RAISE EXCEPTION 'column "%" of % is of type %, not a date or timestamp', fallback_column, pol.after_table, typ
        USING ERRCODE = 'datatype_mismatch';
    END IF;
  END IF;
  UPDATE gdpr.retention_policies p SET fallback_column = set_retention_fallback.fallback_column,
         updated_at = now(), updated_by = session_user
   WHERE p.id = pol.id;
END
$$;

-- Remove one policy (of tbl, col and a row scope; none: the whole-table
-- policy), e.g. the whole-table one once scoped policies replace it.  Its
-- history stays in gdpr.purge_history.
CREATE OR REPLACE FUNCTION gdpr.remove_retention(tbl regclass, col name, scope_column name DEFAULT NULL,
                                      scope_values text[] DEFAULT NULL, scope_exclude boolean DEFAULT false)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies := gdpr._policy_of(tbl, col, scope_column, scope_values, scope_exclude);
BEGIN
  PERFORM gdpr._require_privilege(tbl, gdpr._action_privileges(pol.action), 'gdpr.remove_retention()');
  DELETE FROM gdpr.retention_policies p WHERE p.id = pol.id;
END
$$;

-- A row scope as people read it: "customer_rank" IN ('0'), "deletedAt" set.
CREATE OR REPLACE FUNCTION gdpr._scope_text(scope_column name, scope_values text[], scope_exclude boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN scope_column IS NULL THEN NULL
              WHEN scope_values IS NOT NULL
              THEN format('%I %sIN (%s)', scope_column, CASE WHEN scope_exclude THEN 'NOT ' ELSE '' END,
                          (SELECT string_agg(quote_literal(v), ', ') FROM unnest(scope_values) v))
              ELSE format('%I %s', scope_column, CASE WHEN scope_exclude THEN 'not set' ELSE 'set' END) END;


-- The condition selecting the rows of row alias (of pol.tbl) in the
-- policy's scope; NULL when it has none (all rows).  A boolean is "set"
-- when true; values are compared in their canonical text form (_check_scope).
CREATE OR REPLACE FUNCTION gdpr._scope_cond(pol gdpr.retention_policies, alias text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN pol.scope_column IS NULL THEN NULL
              WHEN pol.scope_values IS NOT NULL
              THEN format(CASE WHEN pol.scope_exclude THEN 'NOT coalesce(%s.%I::text = ANY (%L::text[]), false)'
                               ELSE '%s.%I::text = ANY (%L::text[])' END, alias, pol.scope_column, pol.scope_values)
              WHEN (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = pol.tbl AND a.attname = pol.scope_column) = 'boolean'::regtype
              THEN format('%s.%I IS %sTRUE', alias, pol.scope_column, CASE WHEN pol.scope_exclude THEN 'NOT ' ELSE '' END)
              ELSE format('%s.%I IS %sNULL', alias, pol.scope_column, CASE WHEN pol.scope_exclude THEN '' ELSE 'NOT ' END) END;


-- The condition selecting the rows of policy pol that are past their period
-- (counted from after_column, else from the policy's fallback column).
CREATE OR REPLACE FUNCTION gdpr._past_due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  alias text := CASE WHEN pol.after_table = pol.tbl THEN 't' ELSE 's' END;
  anchor text := CASE WHEN pol.fallback_column IS NULL THEN format('%s.%I', alias, pol.after_column)
                      ELSE format('coalesce(%s.%I, %s.%I)', alias, pol.after_column, alias, pol.fallback_column) END;
  due text;
BEGIN
  IF pol.after_table = pol.tbl THEN
    due := format('%s < now() - %L::interval', anchor, pol.keep);
  ELSIF gdpr._single_subject(pol.tbl) THEN
    due := format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND %s < now() - %L::interval)',
                  pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                  gdpr._subject_id_expr(pol.tbl, 't'), anchor, pol.keep);
  ELSE
    -- Every link: the row is due once the latest anchor among its subjects is.
    due := format('%s < now() - %L::interval', gdpr._latest_anchor_sql(pol, anchor), pol.keep);
  END IF;
  RETURN concat_ws(' AND ', due, gdpr._scope_cond(pol, 't'));
END
$$;


-- For a policy deleting whole rows: the rows that no row of a table whose
-- foreign key has no cascade refers to (a contact whose invoices are kept
-- stays until they go; composite keys compared column by column); NULL when
-- no such table refers to pol.tbl.
CREATE OR REPLACE FUNCTION gdpr._unreferenced_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN pol.col IS NULL AND pol.action = 'delete' THEN
    (SELECT string_agg(format('NOT EXISTS (SELECT FROM %s c WHERE %s)', c.conrelid::regclass,
                              (SELECT string_agg(format('c.%I = t.%I', ca.attname, pa.attname), ' AND ' ORDER BY k.i)
                                 FROM unnest(c.conkey, c.confkey) WITH ORDINALITY k(ck, pk, i)
                                 JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.ck
                                 JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.pk)),
                       ' AND ')
       FROM pg_constraint c
      WHERE c.confrelid = pol.tbl AND c.contype = 'f' AND c.confdeltype IN ('a', 'r'))
  END;

CREATE OR REPLACE VIEW gdpr.retention_status AS
SELECT p.id AS policy_id, p.tbl, p.col, p.action, p.keep, p.after_table, p.after_column,
       d.rows_due, d.oldest_due,
       (SELECT max(x.finished_at) FROM gdpr.purge_runs x JOIN gdpr.purge_results r ON r.run_id = x.id
         WHERE r.policy_id = p.id AND NOT x.dry_run AND r.error IS NULL) AS last_purged_at,
       d.rows_held, d.rows_restricted, d.rows_referenced, d.rows_no_anchor,
       p.scope_column, p.scope_values, p.scope_exclude
  FROM gdpr.retention_policies p JOIN gdpr.retention_counts() d ON d.policy_id = p.id;
COMMENT ON VIEW gdpr.retention_status IS
  'per policy (one per table, column and row scope): rows past due now and the oldest due date; rows past due but kept '
  '(subject held, restricted, or referred to by kept rows and not yet anonymised); rows with no anchor date';


REVOKE EXECUTE ON FUNCTION gdpr.set_retention(regclass, name, interval, name, text, name, text[], boolean),
  gdpr.set_retention_fallback(regclass, name, name, name, text[], boolean), gdpr._check_scope(regclass, name, text[], boolean),
  gdpr._scope_text(name, text[], boolean), gdpr._scope_cond(gdpr.retention_policies, text),
  gdpr._policy_of(regclass, name, name, text[], boolean), gdpr.remove_retention(regclass, name, name, text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.set_retention(regclass, name, interval, name, text, name, text[], boolean),
  gdpr.set_retention_fallback(regclass, name, name, name, text[], boolean),
  gdpr.remove_retention(regclass, name, name, text[], boolean) TO gdpr_admin;
