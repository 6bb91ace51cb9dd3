-- Erasure (Art. 17): one transaction, all or nothing, per-field actions from
-- the registry, a certificate, a suppression list so that an erased person is
-- never re-imported or re-mailed, and a ledger of keyed pseudonyms that can be
-- replayed after a backup is restored.

-- The subject's reference in the ledger: a keyed pseudonym, so that the
-- ledger never re-identifies him without the key kept outside the database.
-- PL/pgSQL, not SQL: a SQL function with SET is planned again at every call
-- (31 µs instead of 1.7: the purge calls it for every subject that goes).
CREATE FUNCTION gdpr._subject_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._pseudonym(subject_id, 'erasure-ledger');  -- scoped by the subject_table column
END
$$;

-- How a contact value is compared on the suppression list: e-mail addresses
-- in lower case, phone numbers as their digits (a leading 0 read as +33).
CREATE FUNCTION gdpr._normalise_contact(value text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN value LIKE '%@%' THEN lower(btrim(value))
              ELSE regexp_replace(regexp_replace(value, '[^0-9]', '', 'g'), '^0', '33') END;

CREATE TABLE gdpr.erasures (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  request_id     bigint,
  erased_at      timestamptz NOT NULL DEFAULT now(),
  erased_by      name NOT NULL DEFAULT session_user,
  report         jsonb NOT NULL,
  report_sha256  bytea NOT NULL,
  UNIQUE (subject_table, subject_ref)
);
COMMENT ON TABLE gdpr.erasures IS
  'erasure certificates and ledger: keyed pseudonym of the subject, what was done, digest of the report';

CREATE TABLE gdpr.suppressions (
  ref         text PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
  erasure_id  bigint REFERENCES gdpr.erasures ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gdpr.suppressions IS 'keyed pseudonyms of the e-mail addresses and phones of erased subjects';

SELECT pg_catalog.pg_extension_config_dump('gdpr.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.erasures_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppressions', '');

-- Tables the DBA declared out of the erasure's scope: they refer to
-- subjects' rows with ON DELETE SET NULL / SET DEFAULT and columns that look
-- personal, but hold no personal data (gdpr.declare_out_of_scope).
CREATE TABLE gdpr.out_of_scope_tables (
  tbl          regclass PRIMARY KEY,
  reason       text NOT NULL CHECK (btrim(reason) <> ''),
  declared_at  timestamptz NOT NULL DEFAULT now(),
  declared_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.out_of_scope_tables IS
  'unregistered tables referring to subjects that the DBA declared to hold no personal data: they do not stop erasures';
SELECT pg_catalog.pg_extension_config_dump('gdpr.out_of_scope_tables', '');

-- Declare (reason given) or withdraw (reason NULL) that an unregistered table
-- referring to subjects' rows holds no personal data.  The table owner's
-- rights are needed: it is a statement about what the table holds.
CREATE FUNCTION gdpr.declare_out_of_scope(tbl regclass, reason text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.declare_out_of_scope()');
  IF reason IS NULL THEN
    DELETE FROM gdpr.out_of_scope_tables o WHERE o.tbl = declare_out_of_scope.tbl;
    RETURN;
  END IF;
  PERFORM gdpr._not_blank(reason, 'a declaration needs a reason');
  IF EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = declare_out_of_scope.tbl) THEN
    RAISE EXCEPTION 'table % is registered', tbl
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A registered table holds personal data: unregister it first if it does not.';
  END IF;
  INSERT INTO gdpr.out_of_scope_tables AS o (tbl, reason) VALUES (tbl, btrim(reason))
    ON CONFLICT ON CONSTRAINT out_of_scope_tables_pkey DO UPDATE
      SET reason = excluded.reason, declared_at = now(), declared_by = session_user;
  PERFORM gdpr._note_change('declared out of scope', gdpr.qualified_name(tbl), btrim(reason));
END
$$;

CREATE FUNCTION gdpr.is_suppressed(email text) RETURNS boolean
  LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.suppressions s
                  WHERE s.ref = gdpr._pseudonym(gdpr._normalise_contact(email), 'suppression'));

-- The value of col after action, as an SQL expression for UPDATE ... SET
-- made of PostgreSQL's own functions (the statement runs as the table's
-- owner); NULL for 'pseudonymise', which the extension computes itself.
CREATE FUNCTION gdpr._action_expr(tbl regclass, col name, action text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype := (gdpr._column(tbl, col)).typ;
BEGIN
  RETURN CASE
    -- A generated column can only be set to DEFAULT: it is recomputed.
    WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col AND a.attgenerated <> '')
      THEN 'DEFAULT'
    WHEN action = 'nullify' THEN 'NULL'
    WHEN action = 'generalise' THEN format('(%s)::%s', gdpr._generalise_sql(tbl, col, quote_ident(col)), typ)
  END;
END
$$;

-- For a kept row: what happens to each personal column.  A column's own
-- policy (nullify, pseudonymise, generalise) applies; other identifying
-- columns are pseudonymised when they hold text, else nullified when they can
-- be; keys and the rest stay (the legal obligation needs them).  Default
-- deny: a column nobody classified whose name looks personal (a "mobilePerso"
-- added last week, Odoo's sanitized copies) is cleared the same way.
CREATE FUNCTION gdpr._erasure_column_actions(tbl regclass) RETURNS TABLE (col name, action text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY
  SELECT DISTINCT ON (pc.col) pc.col,
           CASE WHEN p.action IN ('nullify', 'pseudonymise', 'generalise') THEN p.action
                WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN 'pseudonymise'
                WHEN NOT a.attnotnull THEN 'nullify' END
      FROM gdpr.personal_columns pc
      JOIN pg_attribute a ON a.attrelid = pc.tbl AND a.attname = pc.col
      LEFT JOIN gdpr.retention_policies p ON p.tbl = pc.tbl AND p.col = pc.col
     WHERE pc.tbl = _erasure_column_actions.tbl
       AND (p.action IN ('nullify', 'pseudonymise', 'generalise')
            OR pc.category IN ('identification', 'contact', 'free_text', 'sensitive', 'financial'))
       AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = pc.tbl AND c.contype IN ('p', 'f', 'u')
                        AND a.attnum = ANY (c.conkey))
       AND a.attgenerated = ''  -- a generated column follows the columns it is computed from
  UNION ALL
  -- The name's hint last, on the columns left (OFFSET 0 keeps the planner
  -- from testing it first on every column: 4,343 calls in 100 erasures).
  SELECT u.attname,
         CASE WHEN NOT u.attnotnull THEN 'nullify'
              WHEN u.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN 'pseudonymise' END
    FROM (SELECT a.attname, a.attnotnull, a.atttypid
            FROM pg_attribute a
           WHERE a.attrelid = _erasure_column_actions.tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             AND NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = _erasure_column_actions.tbl AND pc.col = a.attname)
             -- (a nullable column of a unique constraint can be cleared: NULLs are distinct)
             AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey)
                              AND (c.contype IN ('p', 'f') OR c.contype = 'u' AND a.attnotnull))
             AND NOT EXISTS (SELECT FROM gdpr.subject_links l WHERE l.tbl = _erasure_column_actions.tbl
                              AND (a.attname IN (l.link_column, l.type_column) OR a.attname = ANY (l.extra_link_columns)))
          OFFSET 0) u
   WHERE (gdpr.personal_name_hint(u.attname)).kind IS NOT NULL
   ORDER BY 1;
END
$$;

-- Anonymise the rows t of tbl matching cond (with params $1...), as the
-- table's owner, in one UPDATE: the column actions for the report, and the
-- rows anonymised.  The rows are first selected and locked with the text of
-- the columns to pseudonymise, whose pseudonyms are computed here, outside
-- the owner's statement (the owner never holds the keyed function), and
-- passed back with the rows' ctids.  All the columns' pseudonyms are
-- computed in one pass over the rows: the aggregates of one scan see the
-- rows in the same order, so the arrays line up with the ctids (a pass per
-- column was half of a purge's anonymisation, make bench-purge).
CREATE FUNCTION gdpr._anonymise_rows(tbl regclass, cond text, params text[] DEFAULT '{}', keep_plans boolean DEFAULT false,
                                     OUT actions jsonb, OUT n bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  pcols name[];
  rows jsonb;
  sql text;
  arrays text[];
  k int := cardinality(params);
BEGIN
  n := 0;
  SELECT string_agg(format('%I = %s', x.col, gdpr._action_expr(tbl, x.col, x.action)), ', ')
           FILTER (WHERE x.action <> 'pseudonymise'),
         array_agg(x.col ORDER BY x.col) FILTER (WHERE x.action = 'pseudonymise'),
         coalesce(jsonb_object_agg(x.col, x.action), '{}')
    INTO sets, pcols, actions
    FROM gdpr._erasure_column_actions(tbl) x WHERE x.action IS NOT NULL;
  IF pcols IS NULL THEN
    IF sets IS NOT NULL THEN
      sql := format('UPDATE %s t SET %s WHERE %s', tbl, sets, cond);
      n := CASE WHEN keep_plans THEN gdpr._owner_exec_kept(tbl, sql, VARIADIC params)
                ELSE gdpr._owner_exec(tbl, sql, VARIADIC params) END;
    END IF;
    RETURN;
  END IF;
  sql := format(
    'SELECT coalesce(jsonb_agg(x.r), ''[]'')
       FROM (SELECT jsonb_build_array(t.ctid::text, %s) AS r FROM %s t WHERE %s FOR UPDATE) x',
    (SELECT string_agg(format('t.%I::text', c), ', ' ORDER BY o) FROM unnest(pcols) WITH ORDINALITY u(c, o)),
    tbl, cond);
  rows := CASE WHEN keep_plans THEN gdpr._owner_query_kept(tbl, sql, VARIADIC params)
               ELSE gdpr._owner_query(tbl, sql, VARIADIC params) END;
  n := jsonb_array_length(rows);
  IF n = 0 THEN
    RETURN;
  END IF;
  EXECUTE format('SELECT ARRAY[array_agg(x.r ->> 0)::text, %s] FROM jsonb_array_elements($1) x(r)',
                 (SELECT string_agg(format('array_agg(gdpr._pseudonym(x.r ->> %s, %L))::text', i, 'erasure'),
                                    ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i))
    INTO arrays USING rows;
  sql := format(
    -- (the ctids also filter the table's scan: a hash join otherwise hashes every row's)
    'UPDATE %s t SET %s FROM unnest($%3$s::tid[], %s) v(gdpr_ctid, %s) WHERE t.ctid = v.gdpr_ctid AND t.ctid = ANY ($%3$s::tid[])',
    tbl,
    concat_ws(', ', sets, (SELECT string_agg(format('%I = v.gdpr_p%s::%s', pcols[i], i, (gdpr._column(tbl, pcols[i])).typ),
                                             ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i)),
    k + 1,
    (SELECT string_agg(format('$%s::text[]', k + 1 + i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i),
    (SELECT string_agg(format('gdpr_p%s', i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i));
  PERFORM CASE WHEN keep_plans THEN gdpr._owner_exec_kept(tbl, sql, VARIADIC params || arrays)
               ELSE gdpr._owner_exec(tbl, sql, VARIADIC params || arrays) END;
END
$$;

-- Condition on tbl's rows that other registered tables' remaining rows of
-- this subject still refer to (kept invoices pin their customer row).
CREATE FUNCTION gdpr._pinned_cond(tbl regclass, st regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
  c text;
  parts text[] := '{}';
BEGIN
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.parent_table = _pinned_cond.tbl AND x.tbl <> st LOOP
    c := gdpr._subject_rows_cond(l.tbl, st, key_literal);
    CONTINUE WHEN c = 'false';
    parts := parts || format('(%s) IN (SELECT %s FROM %s WHERE %s)', gdpr._link_cols(l, '', true),
                             gdpr._link_cols(l, '', false), l.tbl, c);
  END LOOP;
  RETURN coalesce(nullif(array_to_string(parts, ' OR '), ''), 'false');
END
$$;

-- How the rows of tbl that refer to a subject of st are unlinked rather than
-- deleted, as their foreign keys say (ON DELETE SET NULL / SET DEFAULT): the
-- SET list clearing the link columns, or NULL when the rows are deleted (a
-- link without such a foreign key, or tbl is st).
CREATE FUNCTION gdpr._unlink_sets(tbl regclass, st regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  all_unlink boolean;
BEGIN
  IF tbl = st OR NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = tbl AND c.contype = 'f'
                                AND c.confdeltype IN ('n', 'd')) THEN
    RETURN NULL;
  END IF;
  -- (A composite key's foreign key has the link's columns, in order: all are cleared.)
  SELECT string_agg(DISTINCT format('%I = %s', lc.col, CASE fk.confdeltype WHEN 'n' THEN 'NULL' ELSE 'DEFAULT' END), ', '),
         bool_and(coalesce(fk.confdeltype IN ('n', 'd'), false))
    INTO sets, all_unlink
    FROM gdpr.subject_links l
    CROSS JOIN LATERAL unnest(l.link_column || coalesce(l.extra_link_columns, '{}')) lc(col)
    LEFT JOIN LATERAL (SELECT c.confdeltype FROM pg_constraint c
                        WHERE c.conrelid = l.tbl AND c.contype = 'f' AND c.confrelid = l.parent_table
                          AND ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)
                              = l.link_column || coalesce(l.extra_link_columns, '{}') LIMIT 1) fk ON true
   WHERE l.tbl = _unlink_sets.tbl AND l.parent_table IN (SELECT t.tbl FROM gdpr._subject_tree(st) t);
  RETURN CASE WHEN all_unlink THEN sets END;
END
$$;

-- Erase one registered table's rows of a subject of st; one report entry.
-- Rows are deleted, or unlinked where their foreign key says SET NULL / SET
-- DEFAULT, or kept (legal retention, or referred to by kept rows); unlinked
-- and kept rows have their personal columns anonymised.
CREATE FUNCTION gdpr._erase_table(tbl regclass, st regclass, subject_id text) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- The subject's key is the statements' $1: their text is the same for
  -- every subject, their plans kept (gdpr._owner_exec_kept).
  key text := gdpr._subject_key_param(st);
  cond text := gdpr._subject_rows_cond(tbl, st, key);
  pinned text := gdpr._pinned_cond(tbl, st, key);
  id text[] := ARRAY[subject_id];
  keep boolean := EXISTS (SELECT FROM gdpr.retention_policies p
                           WHERE p.tbl = _erase_table.tbl AND p.col IS NULL AND p.action = 'keep');
  unlink text := CASE WHEN NOT keep THEN gdpr._unlink_sets(tbl, st) END;
  n_deleted bigint := 0;
  n_unlinked bigint := 0;
  n_kept bigint;
  actions jsonb := '{}';
BEGIN
  IF unlink IS NOT NULL THEN
    -- Anonymised while they are still his, then unlinked.
    IF gdpr._owner_query_kept(tbl, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %s))', tbl, cond), VARIADIC id)::boolean THEN
      actions := (gdpr._anonymise_rows(tbl, cond, id, true)).actions;
      n_unlinked := gdpr._owner_exec_kept(tbl, format('UPDATE %s SET %s WHERE %s', tbl, unlink, cond), VARIADIC id);
    END IF;
  ELSIF NOT keep THEN
    n_deleted := gdpr._owner_exec_kept(tbl, format('DELETE FROM %s WHERE (%s) AND NOT (%s)', tbl, cond, pinned), VARIADIC id);
  END IF;
  n_kept := gdpr._owner_query_kept(tbl, format('SELECT to_jsonb(count(*)) FROM %s WHERE %s', tbl, cond), VARIADIC id)::bigint;
  IF n_kept > 0 THEN
    actions := (gdpr._anonymise_rows(tbl, cond, id, true)).actions;
  END IF;
  RETURN jsonb_build_object('table', gdpr.qualified_name(tbl), 'deleted', n_deleted, 'kept', n_kept,
                            'kept_because', CASE WHEN n_kept = 0 THEN NULL WHEN keep THEN 'legal retention'
                                                 ELSE 'referred to by kept rows' END,
                            'columns', actions)
         || CASE WHEN n_unlinked > 0 THEN jsonb_build_object('unlinked', n_unlinked) ELSE '{}' END
         -- Default deny, said: the columns cleared that nobody classified.
         || coalesce((SELECT jsonb_build_object('unclassified_cleared', jsonb_agg(k ORDER BY k))
                        FROM jsonb_object_keys(actions) k
                       WHERE NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = _erase_table.tbl AND pc.col = k)
                      HAVING count(*) > 0), '{}');
END
$$;

-- The subject's e-mail addresses and phone numbers on the suppression list:
-- every value of every column classified "contact" in his rows of every
-- table of his tree, the strings inside jsonb or array columns included
-- (Twenty's "emailsAdditionalEmails"), when it looks like an e-mail or a
-- phone (an address or a city does not); on his own row, any value with an
-- @ or six digits, as before.
CREATE FUNCTION gdpr._suppress_contacts(st regclass, subject_id text, erasure_id bigint) RETURNS int
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  vals jsonb;
  v text;
  kind text;
  n int := 0;
BEGIN
  -- One statement a table for all its contact columns (each a statement as
  -- the owner was a tenth of an erasure); nulls are no strings, skipped below.
  FOR c IN SELECT pc.tbl, array_agg(DISTINCT pc.col) AS cols FROM gdpr.personal_columns pc
            WHERE pc.category = 'contact' AND pc.tbl IN (SELECT tree.tbl FROM gdpr._subject_tree(st) tree)
            GROUP BY pc.tbl LOOP
    vals := gdpr._owner_query_kept(c.tbl, format('SELECT coalesce(jsonb_agg(jsonb_build_array(%s)), ''[]'') FROM %s t WHERE %s',
                                                 (SELECT string_agg(format('t.%I', x), ', ') FROM unnest(c.cols) x),
                                                 c.tbl, gdpr._subject_rows_cond(c.tbl, st, gdpr._subject_key_param(st))),
                                   subject_id);
    FOR v IN SELECT x #>> '{}' FROM jsonb_path_query(vals, 'strict $.**') x WHERE jsonb_typeof(x) = 'string' LOOP
      kind := gdpr.looks_like(v);
      IF kind IS NULL AND c.tbl = st AND (v LIKE '%@%' OR length(regexp_replace(v, '[^0-9]', '', 'g')) >= 6) THEN
        kind := CASE WHEN v LIKE '%@%' THEN 'email' ELSE 'phone' END;
      END IF;
      CONTINUE WHEN kind IS NULL OR kind NOT IN ('email', 'phone');
      INSERT INTO gdpr.suppressions (ref, kind, erasure_id)
        VALUES (gdpr._pseudonym(gdpr._normalise_contact(v), 'suppression'), kind, erasure_id)
        ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
      n := n + 1;
    END LOOP;
  END LOOP;
  RETURN n;
END
$$;

-- 55000 when a table outside the registry (and not declared out of scope)
-- refers to the subject's rows with ON DELETE SET NULL / SET DEFAULT and has
-- columns that look personal: PostgreSQL would only clear its link, and what
-- it says about him would stay.  (Other foreign keys either stop the erasure
-- themselves, NO ACTION / RESTRICT, or take the rows with his, CASCADE.)
CREATE FUNCTION gdpr._refuse_unregistered_referrers(st regclass, subject_id text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  f record;
BEGIN
  FOR f IN SELECT c.conrelid::regclass AS child, a.attname AS fk_column, c.confrelid::regclass AS parent,
                  pa.attname AS parent_column,
                  (SELECT string_agg(quote_ident(x.attname), ', ' ORDER BY x.attnum) FROM pg_attribute x
                    WHERE x.attrelid = c.conrelid AND x.attnum > 0 AND NOT x.attisdropped
                      AND x.attnum <> ALL (c.conkey) AND (gdpr.personal_name_hint(x.attname)).kind IS NOT NULL) AS looks
             FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND c.confdeltype IN ('n', 'd') AND cardinality(c.conkey) = 1
              AND c.confrelid IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
              AND NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.conrelid)
              AND NOT EXISTS (SELECT FROM gdpr.out_of_scope_tables o WHERE o.tbl = c.conrelid) LOOP
    CONTINUE WHEN f.looks IS NULL;
    CONTINUE WHEN NOT gdpr._owner_query_kept(f.child, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %I IN (SELECT %I FROM %s WHERE %s)))',
                                             f.child, f.fk_column, f.parent_column, f.parent,
                                             gdpr._subject_rows_cond(f.parent, st, gdpr._subject_key_param(st))),
                                             subject_id)::boolean;
    RAISE EXCEPTION 'table % refers to the subject''s rows of % and is not registered', f.child, f.parent
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Its foreign key on %I is ON DELETE SET NULL or SET DEFAULT: its rows would stay, with columns that look personal (%s).',
                            f.fk_column, f.looks),
            HINT = format('Register it (gdpr.register_table(%L, %L)) and classify its columns, or declare that it holds no personal data with gdpr.declare_out_of_scope(%L, reason).',
                          f.child::text, f.fk_column, f.child::text);
  END LOOP;
END
$$;

-- 42501 unless the caller may do to every table of the subject's tree what
-- the erasure will: read it, delete its rows (unless the table is kept by a
-- 'keep' policy), update them (where kept rows have columns to anonymise).
-- Whether it would update a table is asked only of a caller without UPDATE
-- on it: the answer looks at the name of every column of the table
-- (_erasure_column_actions), half of this check's time, and a caller who
-- holds UPDATE passes either way.
CREATE FUNCTION gdpr._require_erasure_privileges(st regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  t regclass;
BEGIN
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree LOOP
    PERFORM gdpr._require_privilege(t, concat_ws(', ', 'SELECT',
      CASE WHEN NOT EXISTS (SELECT FROM gdpr.retention_policies p WHERE p.tbl = t AND p.col IS NULL AND p.action = 'keep')
           THEN 'DELETE' END,
      CASE WHEN NOT coalesce(gdpr._holds_privileges(who, t, 'UPDATE'), false)
            AND (EXISTS (SELECT FROM gdpr._erasure_column_actions(t) x WHERE x.action IS NOT NULL)
                 OR gdpr._unlink_sets(t, st) IS NOT NULL) THEN 'UPDATE' END),
      'gdpr.erase_subject()');
  END LOOP;
END
$$;

-- After an erasure, no table of schema gdpr keeps his id or free text about
-- him: his requests name him by the ledger's pseudonym, and the reasons of
-- his holds and restrictions (free text, "Mr Martin, 12 rue de la Paix...")
-- are removed with his id.  The dates stay: they are the controller's proof.
CREATE FUNCTION gdpr._forget_subject(st regclass, subject_id text, ref text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.requests r SET subject_id = ref
   WHERE r.subject_table = st AND r.subject_id = _forget_subject.subject_id;
  UPDATE gdpr.holds h SET subject_id = ref, reason = '(removed with the erasure of the subject)'
   WHERE h.subject_table = st AND h.subject_id = _forget_subject.subject_id;
  -- Only when he has some: any statement on gdpr.restrictions, even one that
  -- changes nothing, makes every session look at them again and the
  -- policies check their state (70_rights.sql).
  IF EXISTS (SELECT FROM gdpr.restrictions r WHERE r.subject_table = st AND r.subject_id = _forget_subject.subject_id) THEN
    UPDATE gdpr.restrictions r SET subject_id = ref, reason = '(removed with the erasure of the subject)',
           lift_reason = CASE WHEN r.lift_reason IS NOT NULL THEN '(removed with the erasure of the subject)' END
     WHERE r.subject_table = st AND r.subject_id = _forget_subject.subject_id;
  END IF;
END
$$;

CREATE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
                                   subject_table regclass DEFAULT NULL,
                                   include_duplicates boolean DEFAULT false) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  ref text := gdpr._subject_ref(st, subject_id);
  done gdpr.erasures;
  t record;
  tables jsonb := '[]';
  rep jsonb;
  n_consent bigint;
  shredded bigint;
  eid bigint;
  dups jsonb;                   -- issue 23.3: his duplicates (77_suppression.sql)
BEGIN
  -- Lock his row: a concurrent insert of a child row waits for the erasure
  -- and then fails its foreign key check, so it cannot escape.
  -- Erased already (his row gone, or kept anonymised for invoices): say so.
  SELECT * INTO done FROM gdpr.erasures e WHERE e.subject_table = st AND e.subject_ref = ref;
  IF FOUND THEN
    RETURN jsonb_build_object('status', 'already erased', 'erasure_id', done.id, 'erased_at', done.erased_at);
  END IF;
  IF NOT gdpr._subject_exists(st, subject_id) THEN
    RAISE EXCEPTION 'subject "%" does not exist in %', subject_id, st USING ERRCODE = 'no_data_found';
  END IF;
  PERFORM gdpr._require_erasure_privileges(st);
  PERFORM gdpr._refuse_unregistered_referrers(st, subject_id);
  PERFORM gdpr._owner_exec_kept(st, format('SELECT 1 FROM %s WHERE %s FOR UPDATE', st,
                                           gdpr._subject_rows_cond(st, gdpr._subject_key_param(st))), subject_id);
  IF (gdpr._active_hold(st, subject_id)).id IS NOT NULL THEN
    RAISE EXCEPTION 'subject "%" is under a legal hold', subject_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Hold %s: %s', (gdpr._active_hold(st, subject_id)).id, (gdpr._active_hold(st, subject_id)).reason),
            HINT = 'Release the hold (gdpr.release_hold) when the obligation it serves has ended.';
  END IF;
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is restricted', subject_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = (SELECT format('Restricted since %s: %s', r.restricted_at, r.reason) FROM gdpr.restrictions r
                       WHERE r.subject_table = st AND r.subject_id = erase_subject.subject_id AND r.lifted_at IS NULL),
            HINT = 'Lift the restriction with gdpr.lift_restriction() once its reason is settled.';
  END IF;
  PERFORM gdpr._answer_request(request_id, st, subject_id, ARRAY['erasure']);
  dups := gdpr._duplicates_json(st, subject_id);    -- found while his contact points are there

  INSERT INTO gdpr.erasures (subject_table, subject_ref, request_id, report, report_sha256)
    VALUES (st, ref, request_id, '{}', '\x') RETURNING id INTO eid;
  PERFORM gdpr._suppress_contacts(st, subject_id, eid);
  -- His consent events go (the ledger opens for this transaction only); the
  -- suppression list now says what they said: never contact him again.
  -- Issue 23.2: reduced to a pseudonym and dates for consent_proof_keep (50_consent.sql).
  n_consent := gdpr._retire_consent(st, ARRAY[subject_id]);
  -- His own data key goes: what was encrypted for him is unreadable everywhere.
  DELETE FROM gdpr.subject_keys k WHERE k.subject_table = st AND k.subject_ref = gdpr._subject_key_ref(st, subject_id)
    RETURNING k.id INTO shredded;
  IF shredded IS NOT NULL THEN
    INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref)
      VALUES (shredded, st, gdpr._subject_key_ref(st, subject_id));
  END IF;
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree ORDER BY tree.depth DESC, tree.tbl::text LOOP
    tables := tables || gdpr._erase_table(t.tbl, st, subject_id);
  END LOOP;

  rep := jsonb_build_object('status', 'erased', 'erasure_id', eid, 'subject_table', gdpr.qualified_name(st),
                               'request_id', request_id, 'erased_at', now(), 'tables', tables,
                               'consent_events_removed', n_consent, 'subject_key_shredded', shredded IS NOT NULL)
         || gdpr._erase_duplicates(st, dups, include_duplicates);
  UPDATE gdpr.erasures e SET report = rep, report_sha256 = sha256(convert_to(rep::text, 'UTF8'))
   WHERE e.id = eid;
  PERFORM gdpr._log_event('ERASE', st, ARRAY[subject_id], 1,
                          jsonb_build_object('erasure_id', eid, 'request_id', request_id));
  PERFORM gdpr._forget_subject(st, subject_id, ref);
  RETURN rep;
EXCEPTION
  WHEN foreign_key_violation THEN
    -- All or nothing: a table outside the registry still refers to him.
    RAISE EXCEPTION 'cannot erase subject "%": %', subject_id, SQLERRM
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Register the table that refers to him (gdpr.register_table) so that its rows are erased too.';
END
$$;

-- The ledger as a document to keep outside the database (with the backups):
-- erasures and shredded keys, by keyed pseudonyms only, never an id in clear.
CREATE FUNCTION gdpr.export_erasure_ledger() RETURNS jsonb
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN (SELECT coalesce(jsonb_agg(x ORDER BY x ->> 'at'), '[]') FROM (
            SELECT jsonb_build_object('kind', 'erasure', 'subject_table', gdpr.qualified_name(e.subject_table),
                                      'subject_ref', e.subject_ref, 'at', e.erased_at,
                                      'report_sha256', encode(e.report_sha256, 'hex')) AS x
              FROM gdpr.erasures e
            UNION ALL
            SELECT jsonb_build_object('kind', 'shred', 'subject_table', gdpr.qualified_name(k.subject_table),
                                      'subject_ref', k.subject_ref, 'key_id', k.key_id, 'at', k.shredded_at)
              FROM gdpr.shredded_keys k) entries);

-- Merge a ledger exported from another copy of the database (the live one,
-- into a restored backup); returns the number of entries that were new.
CREATE FUNCTION gdpr.import_erasure_ledger(ledger jsonb) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
  m bigint;
BEGIN
  PERFORM gdpr._not_null(ledger, 'ledger');
  IF jsonb_typeof(ledger) <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(ledger) x
                                                WHERE NOT (x ?& ARRAY['kind', 'subject_table', 'subject_ref', 'at'])) THEN
    RAISE EXCEPTION 'not an erasure ledger' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Pass the output of gdpr.export_erasure_ledger().';
  END IF;
  INSERT INTO gdpr.erasures (subject_table, subject_ref, erased_at, report, report_sha256)
    SELECT (x ->> 'subject_table')::regclass, x ->> 'subject_ref', (x ->> 'at')::timestamptz,
           jsonb_build_object('status', 'imported from a ledger'), decode(x ->> 'report_sha256', 'hex')
      FROM jsonb_array_elements(ledger) x WHERE x ->> 'kind' = 'erasure'
    ON CONFLICT ON CONSTRAINT erasures_subject_table_subject_ref_key DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref, shredded_at)
    SELECT (x ->> 'key_id')::bigint, (x ->> 'subject_table')::regclass, x ->> 'subject_ref', (x ->> 'at')::timestamptz
      FROM jsonb_array_elements(ledger) x WHERE x ->> 'kind' = 'shred'
    ON CONFLICT ON CONSTRAINT shredded_keys_pkey DO NOTHING;
  GET DIAGNOSTICS m = ROW_COUNT;
  RETURN n + m;
END
$$;

-- Erase again every subject of the ledger who is present (after a restore):
-- each subject table is scanned once, its ids pseudonymised and matched.
CREATE FUNCTION gdpr.replay_erasures() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s record;
  sid text;
  n bigint := 0;
BEGIN
  -- Keys shredded since the backup was taken are shredded again.
  DELETE FROM gdpr.subject_keys k WHERE k.id IN (SELECT x.key_id FROM gdpr.shredded_keys x);
  GET DIAGNOSTICS n = ROW_COUNT;
  FOR s IN SELECT st.tbl, st.id_column FROM gdpr.subject_tables st
            WHERE EXISTS (SELECT FROM gdpr.erasures e WHERE e.subject_table = st.tbl) LOOP
    -- Every id of the table, read as its owner, pseudonymised here.
    FOR sid IN SELECT x.id FROM jsonb_array_elements_text(gdpr._owner_query(s.tbl,
                 format('SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t', s.id_column, s.tbl))) x(id)
                WHERE gdpr._subject_ref(s.tbl, x.id) IN (SELECT e.subject_ref FROM gdpr.erasures e
                                                          WHERE e.subject_table = s.tbl) LOOP
      -- The ledger entry already exists: erase without a new certificate row.
      DELETE FROM gdpr.erasures e WHERE e.subject_table = s.tbl AND e.subject_ref = gdpr._subject_ref(s.tbl, sid);
      PERFORM gdpr.erase_subject(sid, NULL, s.tbl);
      n := n + 1;
    END LOOP;
  END LOOP;
  RETURN n;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.erase_subject(text, bigint, regclass, boolean), gdpr.replay_erasures(),
  gdpr.export_erasure_ledger(), gdpr.import_erasure_ledger(jsonb) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.is_suppressed(text), gdpr.declare_out_of_scope(regclass, text) TO gdpr_admin;
GRANT SELECT ON gdpr.out_of_scope_tables TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.erasures, gdpr.suppressions TO gdpr_auditor, gdpr_admin;
