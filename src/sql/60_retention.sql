-- Retention: legal holds, the purge of what is past its period, and its
-- history.  The purge applies gdpr.retention_policies (10_registry.sql); the
-- background worker (src/purge_worker.c) runs it on its own, one batch per
-- transaction; gdpr.purge() runs it by hand, in the caller's transaction.

CREATE TABLE gdpr.holds (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_id     text NOT NULL,
  reason         text NOT NULL,
  until          timestamptz,
  placed_at      timestamptz NOT NULL DEFAULT now(),
  placed_by      name NOT NULL DEFAULT session_user,
  released_at    timestamptz,
  released_by    name
);
CREATE INDEX holds_active ON gdpr.holds (subject_table, subject_id) WHERE released_at IS NULL;
COMMENT ON TABLE gdpr.holds IS 'legal holds: a held subject''s rows are never purged nor erased';

CREATE TABLE gdpr.purge_runs (
  id            bigserial PRIMARY KEY,
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at   timestamptz,
  started_by    text NOT NULL,
  dry_run       boolean NOT NULL,
  status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed', 'interrupted'))
);
CREATE TABLE gdpr.purge_results (
  run_id     bigint NOT NULL REFERENCES gdpr.purge_runs ON DELETE CASCADE,
  policy_id  int NOT NULL,
  tbl        regclass NOT NULL,
  col        name,
  action     text NOT NULL,
  rows       bigint NOT NULL DEFAULT 0,
  cascaded   bigint NOT NULL DEFAULT 0,
  anonymised bigint NOT NULL DEFAULT 0,
  error      text,
  PRIMARY KEY (run_id, policy_id)
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.holds', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_runs', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_results', '');

CREATE FUNCTION gdpr.place_hold(subject_id text, reason text, until timestamptz DEFAULT NULL,
                                subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  hid bigint;
BEGIN
  PERFORM gdpr._not_blank(reason, 'a legal hold needs a reason', 'Say which litigation, audit or request it serves.');
  IF until <= now() THEN
    RAISE EXCEPTION 'a hold until % would already be over', until USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO gdpr.holds (subject_table, subject_id, reason, until) VALUES (st, subject_id, reason, until)
    RETURNING id INTO hid;
  RETURN hid;
END
$$;

CREATE FUNCTION gdpr.release_hold(hold_id bigint) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(hold_id, 'hold_id');
  UPDATE gdpr.holds h SET released_at = now(), released_by = session_user
   WHERE h.id = hold_id AND h.released_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % does not exist or was already released', hold_id USING ERRCODE = 'undefined_object';
  END IF;
END
$$;

-- The policy of tbl, col and a row scope (none: the whole-table policy);
-- 42704 when there is none.
CREATE FUNCTION gdpr._policy_of(tbl regclass, col name, scope_column name, scope_values text[], scope_exclude boolean)
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
CREATE FUNCTION gdpr.set_retention_fallback(tbl regclass, col name, fallback_column name,
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
CREATE FUNCTION gdpr.remove_retention(tbl regclass, col name, scope_column name DEFAULT NULL,
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
CREATE FUNCTION gdpr._scope_text(scope_column name, scope_values text[], scope_exclude boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN scope_column IS NULL THEN NULL
              WHEN scope_values IS NOT NULL
              THEN format('%I %sIN (%s)', scope_column, CASE WHEN scope_exclude THEN 'NOT ' ELSE '' END,
                          (SELECT string_agg(quote_literal(v), ', ') FROM unnest(scope_values) v))
              ELSE format('%I %s', scope_column, CASE WHEN scope_exclude THEN 'not set' ELSE 'set' END) END;

-- The condition selecting the rows of row alias (of pol.tbl) in the
-- policy's scope; NULL when it has none (all rows).  A boolean is "set"
-- when true; values are compared in their canonical text form (_check_scope).
CREATE FUNCTION gdpr._scope_cond(pol gdpr.retention_policies, alias text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN pol.scope_column IS NULL THEN NULL
              WHEN pol.scope_values IS NOT NULL
              THEN format(CASE WHEN pol.scope_exclude THEN 'NOT coalesce(%s.%I::text = ANY (%L::text[]), false)'
                               ELSE '%s.%I::text = ANY (%L::text[])' END, alias, pol.scope_column, pol.scope_values)
              WHEN (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = pol.tbl AND a.attname = pol.scope_column) = 'boolean'::regtype
              THEN format('%s.%I IS %sTRUE', alias, pol.scope_column, CASE WHEN pol.scope_exclude THEN 'NOT ' ELSE '' END)
              ELSE format('%s.%I IS %sNULL', alias, pol.scope_column, CASE WHEN pol.scope_exclude THEN '' ELSE 'NOT ' END) END;

-- The hold in force on a subject, if any.
CREATE FUNCTION gdpr._active_hold(st regclass, subject_id text) RETURNS gdpr.holds
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT h FROM gdpr.holds h
           WHERE h.subject_table = _active_hold.st AND h.subject_id = _active_hold.subject_id AND h.released_at IS NULL
             AND (h.until IS NULL OR h.until > now())
           ORDER BY h.id LIMIT 1);
END
$$;

-- An SQL expression giving the subject id (text) of row alias of tbl, for a
-- table whose rows have one subject each (_single_subject).
CREATE FUNCTION gdpr._subject_id_expr(tbl regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
  l gdpr.subject_links;
  p gdpr.registered_tables;
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN format('%s.%I::text', alias, id_col);
  END IF;
  -- Its one link (registered_tables keeps the first one a table had).
  SELECT * INTO l FROM gdpr.subject_links x WHERE x.tbl = _subject_id_expr.tbl ORDER BY x.id LIMIT 1;
  IF NOT FOUND THEN
    l.link_column := r.subject_column; l.parent_table := r.parent_table; l.parent_column := r.parent_column;
  END IF;
  IF l.parent_table = r.subject_table AND l.parent_column = id_col THEN
    RETURN format('%s.%I::text', alias, l.link_column);
  END IF;
  p := gdpr._registered(l.parent_table);
  RETURN format('(SELECT %s FROM %s p%s WHERE p%s.%I = %s.%I)',
                gdpr._subject_id_expr(p.tbl, 'p' || length(alias)), p.tbl, length(alias), length(alias),
                l.parent_column, alias, l.link_column);
END
$$;

-- Whether every row of tbl has at most one subject of its subject table: one
-- plain link per table up to it (no polymorphic pair, no composite key).  The
-- purge then finds a row's subject with _subject_id_expr, as fast as a join;
-- otherwise it follows every link (_row_subject_ids_sql).
CREATE FUNCTION gdpr._single_subject(tbl regclass) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  l gdpr.subject_links;
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN true;
  END IF;
  CASE (SELECT count(*) FROM gdpr.subject_links x WHERE x.tbl = _single_subject.tbl)
    WHEN 0 THEN RETURN true;     -- no link row: registered_tables' own (_subject_id_expr)
    WHEN 1 THEN NULL;
    ELSE RETURN false;
  END CASE;
  SELECT * INTO l FROM gdpr.subject_links x WHERE x.tbl = _single_subject.tbl;
  RETURN l.type_column IS NULL AND l.extra_link_columns IS NULL
         AND (SELECT x.subject_table FROM gdpr.registered_tables x WHERE x.tbl = l.parent_table) = r.subject_table
         AND gdpr._single_subject(l.parent_table);
END
$$;

-- A query listing the subject ids of subject table st that row alias of tbl
-- belongs to, through every link of tbl and of the tables above it
-- (polymorphic pairs and composite keys included); NULL when no link leads
-- to st.  Correlated to alias: the purge evaluates it per row.  The ids keep
-- the type of st's id column, so that looking the subjects up uses its key.
CREATE FUNCTION gdpr._row_subject_ids_sql(tbl regclass, st regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  p text := alias || 'p';       -- one alias per level
  l gdpr.subject_links;
  typ text;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('SELECT %s.%I', alias, id_col);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _row_subject_ids_sql.tbl ORDER BY x.id LOOP
    typ := CASE WHEN l.type_column IS NOT NULL THEN format(' AND %s.%I = %L', alias, l.type_column, l.type_value) ELSE '' END;
    IF l.parent_table = st AND l.parent_column = id_col AND l.extra_link_columns IS NULL THEN
      parts := parts || format('SELECT %1$s.%2$I WHERE %1$s.%2$I IS NOT NULL%3$s', alias, l.link_column, typ);
    ELSE
      up := gdpr._row_subject_ids_sql(l.parent_table, st, p);
      IF up IS NOT NULL THEN
        parts := parts || format('SELECT %1$sx.id FROM %2$s %1$s, LATERAL (%3$s) %1$sx(id) WHERE %4$s%5$s',
                                 p, l.parent_table, up, gdpr._link_join(l, p, alias), typ);
      END IF;
    END IF;
  END LOOP;
  RETURN CASE WHEN cardinality(parts) > 0 THEN array_to_string(parts, ' UNION ALL ') END;
END
$$;

-- The moment before which an anchor date is past a period of keep, as a
-- literal of the statement: now() - keep written into the condition was
-- computed again for every row a purge's scans look at (timestamptz_mi_interval,
-- 6 % of a purge's time in make bench-purge).  Written in ISO style, with
-- its offset, so that it reads back the same whatever the session's
-- DateStyle; the same value as now() - keep in the caller's transaction (its
-- TimeZone counts the months and years).
CREATE FUNCTION gdpr._due_before(keep interval) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO'
  RETURN format('%L::timestamptz', now() - keep);

-- The condition selecting the rows of policy pol that are past their period
-- (counted from after_column, else from the policy's fallback column).
CREATE FUNCTION gdpr._past_due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  alias text := CASE WHEN pol.after_table = pol.tbl THEN 't' ELSE 's' END;
  anchor text := CASE WHEN pol.fallback_column IS NULL THEN format('%s.%I', alias, pol.after_column)
                      ELSE format('coalesce(%s.%I, %s.%I)', alias, pol.after_column, alias, pol.fallback_column) END;
  due text;
BEGIN
  IF pol.after_table = pol.tbl THEN
    due := format('%s < %s', anchor, gdpr._due_before(pol.keep));
  ELSIF gdpr._single_subject(pol.tbl) THEN
    due := format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND %s < %s)',
                  pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                  gdpr._subject_id_expr(pol.tbl, 't'), anchor, gdpr._due_before(pol.keep));
  ELSE
    -- Every link: the row is due once the latest anchor among its subjects is.
    due := format('%s < %s', gdpr._latest_anchor_sql(pol, anchor), gdpr._due_before(pol.keep));
  END IF;
  RETURN concat_ws(' AND ', due, gdpr._scope_cond(pol, 't'));
END
$$;

-- For a row of a table with several links (or a polymorphic or composite
-- one): the latest anchor date among the subjects of pol.after_table it
-- belongs to, through every link (subjects without a date are left out;
-- NULL when it has none).  A note about a person and his company is kept
-- while either is.
CREATE FUNCTION gdpr._latest_anchor_sql(pol gdpr.retention_policies, anchor text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('(SELECT max(%s) FROM %s s WHERE s.%I IN (%s))', anchor, pol.after_table,
                (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                coalesce(gdpr._row_subject_ids_sql(pol.tbl, pol.after_table, 't'), 'SELECT NULL WHERE false'));

-- Rows whose period cannot even start: no anchor date (nor fallback).
CREATE FUNCTION gdpr._no_anchor_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN concat_ws(' AND ',
    CASE WHEN pol.after_table = pol.tbl
         THEN format('coalesce(t.%I, t.%I) IS NULL', pol.after_column, coalesce(pol.fallback_column, pol.after_column))
         WHEN gdpr._single_subject(pol.tbl)
         THEN format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND coalesce(s.%I, s.%I) IS NULL)',
                     pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                     gdpr._subject_id_expr(pol.tbl, 't'), pol.after_column,
                     coalesce(pol.fallback_column, pol.after_column))
         ELSE format('%s IS NULL', gdpr._latest_anchor_sql(pol, format('coalesce(s.%I, s.%I)', pol.after_column,
                                                                        coalesce(pol.fallback_column, pol.after_column)))) END,
    gdpr._scope_cond(pol, 't'));

-- For a policy deleting whole rows: the rows that no row of a table whose
-- foreign key has no cascade refers to (a contact whose invoices are kept
-- stays until they go; composite keys compared column by column); NULL when
-- no such table refers to pol.tbl.
CREATE FUNCTION gdpr._unreferenced_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
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
END
$$;

-- The rows policy pol may act on now: past due and, for a delete, not
-- referred to by kept rows.  Held and restricted subjects are left out by
-- the statement's parameter $1 (_excluded_cond).
CREATE FUNCTION gdpr._due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Issue 23.5: subjects without a legal basis are due too (50_consent.sql).
  RETURN concat_ws(' AND ', gdpr._no_basis_due(pol, gdpr._past_due_cond(pol)), gdpr._unreferenced_cond(pol));
END
$$;

-- Whether row t belongs to one of the subject ids of parameter $n (text[]).
-- With none (the usual case: no hold, no restriction) the statement, planned
-- with its parameters' values, does not even compute the row's subject key.
CREATE FUNCTION gdpr._excluded_cond(tbl regclass, n int) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('(cardinality($%2$s::text[]) > 0 AND %1$s)', CASE WHEN gdpr._single_subject(tbl)
    THEN format('coalesce(%s = ANY ($%s::text[]), false)', gdpr._subject_id_expr(tbl, 't'), n)
    -- Several links: one held or restricted subject of the row keeps it.
    ELSE coalesce(format('EXISTS (SELECT FROM (%s) x(id) WHERE x.id::text = ANY ($%s::text[]))',
                         gdpr._row_subject_ids_sql(tbl, (gdpr._registered(tbl)).subject_table, 't'), n), 'false') END, n);

-- The subjects of subject table st that no purge may touch: under a legal
-- hold in force, or restricted (Art. 18: his data is only stored).
-- (PL/pgSQL, as the other functions of a purge's every batch: an SQL
-- function with SET is parsed and planned again at each call.)
CREATE FUNCTION gdpr._held_ids(st regclass) RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT h.subject_id FROM gdpr.holds h
                WHERE h.subject_table = _held_ids.st AND h.released_at IS NULL AND (h.until IS NULL OR h.until > now()));
END
$$;
CREATE FUNCTION gdpr._restricted_ids(st regclass) RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT r.subject_id FROM gdpr.restrictions r WHERE r.subject_table = _restricted_ids.st AND r.lifted_at IS NULL);
END
$$;
CREATE FUNCTION gdpr._purge_excluded(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT (gdpr._held_ids(r.subject_table) || gdpr._restricted_ids(r.subject_table))::text
            FROM gdpr.registered_tables r WHERE r.tbl = _purge_excluded.tbl);
END
$$;

CREATE FUNCTION gdpr._is_date_column(tbl regclass, col name) RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)
            FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col);

-- The value of a column after a generalisation, as an SQL expression on
-- ref built from PostgreSQL's own functions only (the statement runs as the
-- table's owner and calls nothing of schema gdpr): gdpr.generalise(v,
-- 'year') for dates, gdpr.generalise_postcode(v) for the rest.  Idempotent
-- (a department stays a department), so that a row anonymised again for
-- another column keeps what it became.
CREATE FUNCTION gdpr._generalise_sql(tbl regclass, col name, ref text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN gdpr._is_date_column(tbl, col) THEN format('date_trunc(''year'', (%s)::timestamptz)', ref)
              ELSE format('(CASE WHEN btrim(%1$s::text) ~ ''^([0-9]{2}|2[AB]|9[78][0-9])$'' THEN btrim(%1$s::text)
                                 WHEN btrim(%1$s::text) !~ ''^[0-9]{5}$'' THEN NULL
                                 WHEN btrim(%1$s::text) LIKE ''97%%'' OR btrim(%1$s::text) LIKE ''98%%'' THEN left(btrim(%1$s::text), 3)
                                 WHEN btrim(%1$s::text) LIKE ''20%%'' THEN CASE WHEN btrim(%1$s::text) < ''20200'' THEN ''2A'' ELSE ''2B'' END
                                 ELSE left(btrim(%1$s::text), 2) END)', ref) END;

-- The rows a policy's action still has to change: each action is
-- idempotent, so a row already done no longer matches.
CREATE FUNCTION gdpr._todo_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE pol.action
    WHEN 'nullify' THEN format('t.%I IS NOT NULL', pol.col)
    WHEN 'pseudonymise' THEN format('t.%I IS NOT NULL AND t.%I::text !~ %L', pol.col, pol.col, '^[A-Za-z0-9_-]{22}$')
    WHEN 'generalise' THEN format('t.%I::text <> (%s)::text', pol.col,
                                  gdpr._generalise_sql(pol.tbl, pol.col, format('t.%I', pol.col)))
    ELSE 'true' END;

-- The rows that ON DELETE CASCADE takes with the rows of relation victims
-- (a column k holding tbl's referenced key): one level of children.
CREATE FUNCTION gdpr._cascade_count_sql(tbl regclass, victims text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT string_agg(format('(SELECT count(*) FROM %s x WHERE x.%I IN (SELECT k FROM %s))',
                                            c.conrelid::regclass,
                                            (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
                                            victims), ' + ')
                     FROM pg_constraint c
                    WHERE c.confrelid = tbl AND c.contype = 'f' AND c.confdeltype = 'c' AND cardinality(c.conkey) = 1
                      AND c.confkey[1] = (SELECT p.conkey[1] FROM pg_constraint p
                                           WHERE p.conrelid = tbl AND p.contype = 'p' AND cardinality(p.conkey) = 1)),
                  '0');

-- Rows deleted so far by this transaction in the tables that ON DELETE
-- CASCADE from tbl (one level, as _cascade_count_sql): around one statement,
-- what its cascade took.
CREATE FUNCTION gdpr._cascade_deleted(tbl regclass) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(c.conrelid)), 0)::bigint
            FROM pg_constraint c
           WHERE c.confrelid = _cascade_deleted.tbl AND c.contype = 'f' AND c.confdeltype = 'c'
             AND cardinality(c.conkey) = 1);
END
$$;

-- What one batch of a policy does, as one statement run as the table's
-- owner with $1 = the subjects left out (_purge_excluded): a plain DELETE or
-- UPDATE (counted by its row count, the cascade by the transaction's
-- statistics: a RETURNING list would materialise every row of the batch);
-- for dry runs and 'keep', a SELECT of jsonb [rows, cascaded]; for
-- 'pseudonymise', a SELECT of the batch's rows, locked, whose pseudonyms the
-- extension computes before it writes them (_purge_step).
CREATE FUNCTION gdpr._policy_sql(pol gdpr.retention_policies, batch_size int, dry_run boolean) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._due_cond(pol) || ' AND NOT ' || gdpr._excluded_cond(pol.tbl, 1) || ' AND ' || gdpr._todo_cond(pol);
  key name := coalesce(gdpr._key_column(pol.tbl), 'ctid');  -- no single-column key: nothing cascades by it
  typ text;
BEGIN
  IF pol.action = 'keep' OR (dry_run AND pol.action <> 'delete') THEN
    RETURN format('SELECT jsonb_build_array(count(*), 0) FROM %s t WHERE %s', pol.tbl, cond);
  END IF;
  IF dry_run THEN
    RETURN format('WITH v AS (SELECT t.%I AS k FROM %s t WHERE %s) SELECT jsonb_build_array((SELECT count(*) FROM v), %s)',
                  key, pol.tbl, cond, gdpr._cascade_count_sql(pol.tbl, 'v'));
  END IF;
  IF pol.action = 'delete' THEN
    RETURN format('DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))',
                  pol.tbl, pol.tbl, cond, batch_size);
  END IF;
  IF pol.action = 'pseudonymise' THEN
    RETURN format('SELECT jsonb_build_object(''c'', coalesce(jsonb_agg(x.ctid::text), ''[]''), ''v'', coalesce(jsonb_agg(x.v), ''[]''))
                     FROM (SELECT t.ctid, t.%I::text AS v FROM %s t WHERE %s LIMIT %s FOR UPDATE) x',
                  pol.col, pol.tbl, cond, batch_size);
  END IF;
  typ := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = pol.tbl AND a.attname = pol.col);
  RETURN format('UPDATE %s SET %I = %s WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))',
                pol.tbl, pol.col,
                CASE pol.action WHEN 'nullify' THEN 'NULL'
                                ELSE format('(%s)::%s', gdpr._generalise_sql(pol.tbl, pol.col, quote_ident(pol.col)), typ) END,
                pol.tbl, cond, batch_size);
END
$$;

-- Write pseudonyms (domain) of the values of rows (jsonb {c: ctids, v:
-- values as text}) into column col of tbl, as the table's owner: the rows
-- updated.  The pseudonyms are computed here, outside the owner's statement.
CREATE FUNCTION gdpr._write_pseudonyms(tbl regclass, col name, rows jsonb, domain text) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ctids text;
  vals text;
BEGIN
  IF jsonb_array_length(rows -> 'c') = 0 THEN
    RETURN 0;
  END IF;
  SELECT array_agg(c ORDER BY i)::text INTO ctids FROM jsonb_array_elements_text(rows -> 'c') WITH ORDINALITY x(c, i);
  SELECT array_agg(gdpr._pseudonym(v, domain) ORDER BY i)::text INTO vals
    FROM jsonb_array_elements_text(rows -> 'v') WITH ORDINALITY x(v, i);
  RETURN gdpr._owner_exec(tbl, format('UPDATE %1$s t SET %2$I = v.p::%3$s FROM unnest($1::tid[], $2::text[]) v(c, p) WHERE t.ctid = v.c',
                                      tbl, col, (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                                  WHERE a.attrelid = tbl AND a.attname = col)),
                          ctids, vals);
END
$$;

CREATE FUNCTION gdpr._purge_batch_size() RETURNS int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr.setting('purge_batch_size')::int;

-- Start a run: NULL when another purge holds the purge lock (it is running).
CREATE FUNCTION gdpr._purge_begin(started_by text, dry_run boolean) RETURNS bigint
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

-- The policies of a run, children before parents.
CREATE FUNCTION gdpr._purge_order(run_id bigint) RETURNS SETOF int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT r.policy_id FROM gdpr.purge_results r
    LEFT JOIN LATERAL (SELECT max(t.depth) AS depth FROM gdpr.registered_tables x, gdpr._subject_tree(x.subject_table) t
                        WHERE x.tbl = r.tbl AND t.tbl = r.tbl) d ON true
   WHERE r.run_id = _purge_order.run_id
   ORDER BY d.depth DESC NULLS LAST, (r.col IS NULL), r.policy_id
$$;

-- One batch of a policy (the statement of _policy_sql), under
-- crm_gdpr.purge_lock_timeout, as the table's owner: the rows it did and
-- those ON DELETE CASCADE took with them.
CREATE FUNCTION gdpr._purge_step(pol gdpr.retention_policies, sql text, OUT n bigint, OUT cascaded bigint)
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

-- NULL when role may carry out pol, else why not (recorded as the policy's
-- error).  A manual purge asks this of its caller, the worker of the role
-- that set the policy.
CREATE FUNCTION gdpr._policy_refusal(pol gdpr.retention_policies, role name, whose text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN coalesce(gdpr._holds_privileges(role, pol.tbl, gdpr._action_privileges(pol.action)), false) THEN NULL
              ELSE format('42501: %s "%s" lacks %s on %s: the policy is not carried out', whose,
                          coalesce(role, '(unknown)'), gdpr._action_privileges(pol.action), pol.tbl) END;

-- Whether a kept row of tbl still identifies its subject: one of the
-- columns an erasure would anonymise (_erasure_column_actions) is not yet;
-- NULL when tbl has no such column.
CREATE FUNCTION gdpr._identified_cond(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT '(' || string_agg(CASE x.action
                    WHEN 'nullify' THEN format('t.%I IS NOT NULL', x.col)
                    -- (the length first: a regular expression a row and column was
                    -- most of the purge's search for the rows to anonymise)
                    WHEN 'pseudonymise' THEN format('(t.%I IS NOT NULL AND (octet_length(t.%I::text) <> 22 OR t.%I::text !~ %L))',
                                                    x.col, x.col, x.col, '^[A-Za-z0-9_-]{22}$')
                    ELSE format('t.%I::text <> (%s)::text', x.col, gdpr._generalise_sql(tbl, x.col, format('t.%I', x.col)))
                  END, ' OR ') || ')'
            FROM gdpr._erasure_column_actions(tbl) x WHERE x.action IS NOT NULL);
END
$$;

-- A row past its period that cannot be deleted because kept rows refer to
-- it (a customer whose invoices are kept ten years) must still lose its
-- identity: its identifying columns are anonymised as an erasure would
-- (pseudonymised, nullified or generalised), and it is counted as "kept,
-- anonymised".  Returns the rows anonymised (0: none left).
CREATE FUNCTION gdpr._purge_anonymise(run_id bigint, pol gdpr.retention_policies) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  unreferenced text := gdpr._unreferenced_cond(pol);
  identified text;
  cond text;
  excluded text[];
  n bigint;
BEGIN
  IF unreferenced IS NULL THEN
    RETURN 0;             -- no kept table refers to it (its identity was not even looked up)
  END IF;
  identified := gdpr._identified_cond(pol.tbl);
  IF identified IS NULL THEN
    RETURN 0;
  END IF;
  cond := format('%s AND NOT %s AND NOT (%s) AND %s', gdpr._past_due_cond(pol), gdpr._excluded_cond(pol.tbl, 1),
                 unreferenced, identified);
  excluded := ARRAY[gdpr._purge_excluded(pol.tbl)];
  -- Issue 23.2: their consent proofs go as they lose their identity (76_departures.sql).
  PERFORM gdpr._retire_consent_of_rows(pol.tbl, cond, excluded);
  n := (gdpr._anonymise_rows(pol.tbl, cond, excluded)).n;
  IF n = 0 THEN
    RETURN 0;
  END IF;
  UPDATE gdpr.purge_results r SET anonymised = r.anonymised + n
   WHERE r.run_id = _purge_anonymise.run_id AND r.policy_id = pol.id;
  PERFORM gdpr._log_event('PURGE', pol.tbl, NULL, n,
                          jsonb_build_object('run_id', run_id, 'policy_id', pol.id, 'action', 'anonymise',
                                             'kept_because', 'referred to by kept rows'));
  RETURN n;
END
$$;

-- What a policy did in a run: added to its results, and one PURGE row in
-- the access log (no personal data: the table, the action, the counts).
CREATE FUNCTION gdpr._purge_record(run_id bigint, pol gdpr.retention_policies, n bigint, cascaded bigint,
                                    batches int, dry_run boolean) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.purge_results r SET rows = r.rows + n, cascaded = r.cascaded + _purge_record.cascaded
   WHERE r.run_id = _purge_record.run_id AND r.policy_id = pol.id;
  IF n > 0 AND NOT dry_run AND pol.action <> 'keep' THEN
    PERFORM gdpr._log_event('PURGE', pol.tbl, NULL, n,
                            jsonb_build_object('run_id', run_id, 'policy_id', pol.id, 'action', pol.action,
                                               'column', pol.col, 'cascaded', cascaded, 'batches', batches),
                            CASE WHEN pol.col IS NOT NULL THEN ARRAY[pol.col] END);
  END IF;
END
$$;

-- The purge worker's statement for a policy, NULL when it cannot be built
-- (the batch then fails and records why).
CREATE FUNCTION gdpr._purge_statement(pol gdpr.retention_policies, batch_size int) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._policy_sql(pol, batch_size, false);
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$$;

-- One batch of one policy in a transaction of its own (the purge worker
-- commits each): in a subtransaction, so that a broken policy is recorded as
-- failed and the others run.  prepared: the policy's statement, built once
-- for all its batches.  Returns rows done, 0 when the policy is finished, -1
-- when it failed.  A batch short of batch_size rows is the last: its search
-- found every row due (a batch more, finding none, was some 13 ms a policy
-- of a purge of 20,000 contacts; a row that falls due meanwhile goes at the
-- next run).
CREATE FUNCTION gdpr._purge_batch(run_id bigint, policy_id int, batch_size int, dry_run boolean,
                                   prepared text DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  r record;
  refusal text;
BEGIN
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.id = _purge_batch.policy_id;
  IF NOT FOUND THEN
    RETURN 0;                    -- the policy was removed meanwhile
  END IF;
  refusal := gdpr._policy_refusal(pol, pol.set_by::name, 'the role that set it,');
  IF refusal IS NOT NULL THEN
    UPDATE gdpr.purge_results x SET error = refusal
     WHERE x.run_id = _purge_batch.run_id AND x.policy_id = _purge_batch.policy_id;
    RETURN -1;
  END IF;
  BEGIN
    r := gdpr._purge_step(pol, coalesce(prepared, gdpr._policy_sql(pol, batch_size, dry_run)));
  EXCEPTION WHEN OTHERS THEN
    UPDATE gdpr.purge_results x SET error = SQLSTATE || ': ' || SQLERRM
     WHERE x.run_id = _purge_batch.run_id AND x.policy_id = _purge_batch.policy_id;
    RETURN -1;
  END;
  PERFORM gdpr._purge_record(run_id, pol, r.n, r.cascaded, 1, dry_run);
  IF r.n < batch_size AND NOT dry_run AND pol.action = 'delete' THEN
    -- Deleting is done: what kept rows still refer to loses its identity
    -- (all of them at once: the policy is then finished).
    BEGIN
      PERFORM gdpr._purge_anonymise(run_id, pol);
      RETURN 0;
    EXCEPTION WHEN OTHERS THEN
      UPDATE gdpr.purge_results x SET error = SQLSTATE || ': ' || SQLERRM
       WHERE x.run_id = _purge_batch.run_id AND x.policy_id = _purge_batch.policy_id;
      RETURN -1;
    END;
  END IF;
  RETURN CASE WHEN dry_run OR pol.action = 'keep' OR r.n < batch_size THEN 0 ELSE r.n END;
END
$$;

-- All the batches of one policy in the caller's transaction (gdpr.purge()),
-- in one subtransaction: a broken policy is rolled back and recorded as
-- failed, and the others run.  One subtransaction per batch would pass the 64
-- that PostgreSQL tracks per session in shared memory: every snapshot of
-- every session would then look up pg_subtrans for the purge's rows, and the
-- CRM's own transactions slowed down with the purge (doc/benchmarks.md).
-- Returns rows done, -1 when the policy failed.
CREATE FUNCTION gdpr._purge_policy(run_id bigint, policy_id int, batch_size int, dry_run boolean) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  sql text;
  r record;
  n bigint := 0;
  cascaded bigint := 0;
  batches int := 0;
  refusal text;
BEGIN
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.id = _purge_policy.policy_id;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  refusal := gdpr._policy_refusal(pol, gdpr._caller(), 'the caller');
  IF refusal IS NOT NULL THEN
    UPDATE gdpr.purge_results x SET error = refusal
     WHERE x.run_id = _purge_policy.run_id AND x.policy_id = _purge_policy.policy_id;
    RAISE WARNING 'retention policy % on % is not carried out', pol.id, pol.tbl
      USING DETAIL = refusal, HINT = 'Ask the table''s owner for the privilege, or let a role that holds it purge.';
    RETURN -1;
  END IF;
  BEGIN
    sql := gdpr._policy_sql(pol, batch_size, dry_run);
    LOOP
      r := gdpr._purge_step(pol, sql);
      n := n + r.n;
      cascaded := cascaded + r.cascaded;
      batches := batches + 1;
      EXIT WHEN r.n < batch_size OR dry_run OR pol.action = 'keep';   -- a short batch is the last
    END LOOP;
    IF NOT dry_run AND pol.action = 'delete' THEN
      PERFORM gdpr._purge_anonymise(run_id, pol);
    END IF;
  EXCEPTION WHEN OTHERS THEN
    UPDATE gdpr.purge_results x SET error = SQLSTATE || ': ' || SQLERRM
     WHERE x.run_id = _purge_policy.run_id AND x.policy_id = _purge_policy.policy_id;
    RETURN -1;
  END;
  PERFORM gdpr._purge_record(run_id, pol, n, cascaded, batches, dry_run);
  RETURN n;
END
$$;

CREATE FUNCTION gdpr._purge_finish(run_id bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  UPDATE gdpr.purge_runs x SET finished_at = clock_timestamp(),
         status = CASE WHEN EXISTS (SELECT FROM gdpr.purge_results r WHERE r.run_id = x.id AND r.error IS NOT NULL)
                       THEN 'failed' ELSE 'done' END
   WHERE x.id = _purge_finish.run_id;
  -- The history has a retention of its own.
  DELETE FROM gdpr.purge_runs x
   WHERE x.started_at < now() - gdpr.setting('purge_history_keep')::interval;
  -- Issue 23.2: reduced consent proofs past their time (50_consent.sql).
  SELECT gdpr._expire_consent_proofs();
$$;

-- Runs left 'running' by a crash: the worker marks them at start.
CREATE FUNCTION gdpr._purge_mark_interrupted() RETURNS bigint
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  WITH u AS (UPDATE gdpr.purge_runs x SET status = 'interrupted', finished_at = clock_timestamp()
              WHERE x.status = 'running' RETURNING 1)
  SELECT count(*) FROM u;
$$;

CREATE FUNCTION gdpr.purge(dry_run boolean DEFAULT false)
  RETURNS TABLE (tbl regclass, col name, action text, rows bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rid bigint;
  pid int;
BEGIN
  PERFORM gdpr._not_null(dry_run, 'dry_run');
  rid := gdpr._purge_begin('manual: ' || session_user, dry_run);
  IF rid IS NULL THEN
    RAISE NOTICE 'another purge is running; this one does nothing';
    RETURN;
  END IF;
  FOR pid IN SELECT * FROM gdpr._purge_order(rid) LOOP
    PERFORM gdpr._purge_policy(rid, pid, gdpr._purge_batch_size(), dry_run);
  END LOOP;
  PERFORM gdpr._purge_finish(rid);
  RETURN QUERY SELECT r.tbl, r.col, r.action, r.rows FROM gdpr.purge_results r
                WHERE r.run_id = rid ORDER BY r.policy_id;
END
$$;

CREATE VIEW gdpr.purge_history AS
SELECT x.id AS run_id, x.started_at, x.finished_at, x.started_by, x.dry_run, x.status,
       r.policy_id, r.tbl, r.col, r.action, r.rows, r.cascaded, r.error, r.anonymised
  FROM gdpr.purge_runs x JOIN gdpr.purge_results r ON r.run_id = x.id;
COMMENT ON VIEW gdpr.purge_history IS 'every purge run, per policy: rows acted on, errors; no personal data';

-- Per policy: rows past due now and since when, and the rows past due that
-- are kept because their subject is held or restricted (counts only: the
-- auditor who reads the view needs no privilege on the CRM's tables; each
-- count runs as the table's owner).  Takes no argument, so that it answers
-- for the registry's policies only.
CREATE FUNCTION gdpr.retention_counts()
  RETURNS TABLE (policy_id int, rows_due bigint, oldest_due timestamptz, rows_held bigint, rows_restricted bigint,
                 rows_referenced bigint, rows_no_anchor bigint)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  st regclass;
  res jsonb;
  held text;
  restricted text;
  referenced text;
BEGIN
  FOR pol IN SELECT * FROM gdpr.retention_policies p ORDER BY p.id LOOP
    st := (SELECT r.subject_table FROM gdpr.registered_tables r WHERE r.tbl = pol.tbl);
    held := gdpr._excluded_cond(pol.tbl, 1);
    restricted := gdpr._excluded_cond(pol.tbl, 2);
    -- Past due, referred to by kept rows, and still identifying.
    referenced := CASE WHEN gdpr._unreferenced_cond(pol) IS NOT NULL AND gdpr._identified_cond(pol.tbl) IS NOT NULL
                       THEN format('NOT (%s) AND %s', gdpr._unreferenced_cond(pol), gdpr._identified_cond(pol.tbl))
                       ELSE 'false' END;
    res := gdpr._owner_query(pol.tbl, format(
      'SELECT jsonb_build_array(count(*) FILTER (WHERE %5$s AND NOT %1$s AND NOT %2$s AND %7$s),
                                min(%3$s) FILTER (WHERE %5$s AND NOT %1$s AND NOT %2$s AND %7$s),
                                count(*) FILTER (WHERE %5$s AND %7$s AND %1$s),
                                count(*) FILTER (WHERE %5$s AND %7$s AND %2$s AND NOT %1$s),
                                count(*) FILTER (WHERE %6$s AND NOT %1$s AND NOT %2$s AND %8$s),
                                count(*) FILTER (WHERE %9$s))
         FROM %4$s t',
      held, restricted,
      CASE WHEN pol.after_table = pol.tbl
           THEN format('coalesce(t.%I, t.%I) + %L::interval', pol.after_column,
                       coalesce(pol.fallback_column, pol.after_column), pol.keep)
           ELSE 'NULL::timestamptz' END,
      pol.tbl, gdpr._due_cond(pol), gdpr._past_due_cond(pol), gdpr._todo_cond(pol), referenced,
      gdpr._no_anchor_cond(pol)),
      gdpr._held_ids(st)::text, gdpr._restricted_ids(st)::text);
    policy_id := pol.id;
    rows_due := (res ->> 0)::bigint;
    oldest_due := (res ->> 1)::timestamptz;
    rows_held := (res ->> 2)::bigint;
    rows_restricted := (res ->> 3)::bigint;
    rows_referenced := (res ->> 4)::bigint;
    rows_no_anchor := (res ->> 5)::bigint;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION gdpr.retention_counts() IS
  'per retention policy: rows past due, the oldest due date, and the rows past due kept (held, restricted, '
  'referred to by kept rows and still identifying) or never due (no anchor date)';

CREATE VIEW gdpr.retention_status AS
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

CREATE VIEW gdpr.holds_in_force AS
SELECT h.id, h.subject_table, h.subject_id, h.reason, h.until, h.placed_at, h.placed_by
  FROM gdpr.holds h WHERE h.released_at IS NULL AND (h.until IS NULL OR h.until > now());

GRANT EXECUTE ON FUNCTION gdpr.place_hold(text, text, timestamptz, regclass), gdpr.release_hold(bigint),
  gdpr.set_retention_fallback(regclass, name, name, name, text[], boolean),
  gdpr.remove_retention(regclass, name, name, text[], boolean),
  gdpr.purge(boolean) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.retention_counts() TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.purge_history, gdpr.retention_status, gdpr.holds_in_force, gdpr.holds TO gdpr_auditor, gdpr_admin;
