-- Kept plans (src/owner_plans.c): the statements the export and the
-- erasure run on each table of a subject's tree, and the look-up of a
-- subject, take the subject's key as $1 instead of a literal in their text,
-- so that their plans are kept for the session (gdpr._owner_query_kept,
-- gdpr._owner_exec_kept): parsing and planning them again for every subject
-- cost as much as running them.

CREATE FUNCTION gdpr._owner_exec_kept(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS bigint
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_exec_kept';
CREATE FUNCTION gdpr._owner_query_kept(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS jsonb
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_query_kept';

-- Their subject's key argument is now his id, no longer a literal; the
-- anonymisation says whether to keep its plans.
DROP FUNCTION gdpr._export_rows(regclass, regclass, text, boolean);
DROP FUNCTION gdpr._erase_table(regclass, regclass, text);
DROP FUNCTION gdpr._suppress_contacts(regclass, text, bigint);
DROP FUNCTION gdpr._refuse_unregistered_referrers(regclass, text);
DROP FUNCTION gdpr._anonymise_rows(regclass, text, text[]);

CREATE FUNCTION gdpr._subject_key_param(subject_table regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN '$1::' || gdpr._subject_key_type(subject_table);
END
$$;

CREATE FUNCTION gdpr._export_rows(tbl regclass, st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[];
  bin_cols name[];
  rows jsonb;
  trashed text := gdpr._soft_deleted_cond(tbl, 't');
BEGIN
  -- The columns shown: all of them, or for portability (Art. 20) the keys
  -- and the columns classified under consent or contract.
  SELECT array_agg(a.attname ORDER BY a.attnum), coalesce(array_agg(a.attname) FILTER (WHERE a.atttypid = 'bytea'::regtype), '{}')
    INTO cols, bin_cols
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT portability
          OR EXISTS (SELECT FROM gdpr.personal_columns pc
                      WHERE pc.tbl = _export_rows.tbl AND pc.col = a.attname AND pc.legal_basis IN ('consent', 'contract'))
          OR EXISTS (SELECT FROM pg_constraint c
                      WHERE c.conrelid = _export_rows.tbl AND c.contype IN ('p', 'f') AND a.attnum = ANY (c.conkey)));
  -- Rows in the CRM's trash (gdpr.set_soft_delete) are marked "_deleted": true.
  -- c.*, the whole row: a bare c would be a column named c.
  rows := gdpr._owner_query_kept(tbl, format(
    'SELECT coalesce(jsonb_agg((SELECT to_jsonb(c.*) FROM (SELECT %s) c)%s ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
    (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
    CASE WHEN trashed IS NOT NULL
         THEN format(' || CASE WHEN %s THEN ''{"_deleted": true}''::jsonb ELSE ''{}''::jsonb END', trashed) ELSE '' END,
    tbl, gdpr._subject_rows_cond(tbl, st, gdpr._subject_key_param(st))), subject_id);
  IF cardinality(bin_cols) = 0 OR jsonb_array_length(rows) = 0 THEN
    RETURN rows;
  END IF;
  SELECT jsonb_agg(r || (SELECT jsonb_object_agg(b, gdpr._export_bytea(decode(substr(r ->> b, 3), 'hex'),
                                                                       gdpr.qualified_name(tbl) || '.' || b))
                           FROM unnest(bin_cols) b) ORDER BY i)
    INTO rows FROM jsonb_array_elements(rows) WITH ORDINALITY x(r, i);
  RETURN rows;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_data(st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
  data jsonb := '{}';
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  -- A partition registered beside its parent is read through the parent
  -- only; keys are "schema.table" as documented, never quoted identifiers.
  FOR t IN SELECT tree.tbl, format('%s.%s', n.nspname, c.relname) AS label
             FROM gdpr._subject_tree(st) tree
             JOIN pg_class c ON c.oid = tree.tbl JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT EXISTS (SELECT FROM pg_partition_ancestors(tree.tbl) up
                               JOIN gdpr.registered_tables r ON r.tbl = up.relid
                              WHERE up.relid <> tree.tbl) LOOP
    -- Read-only: a table the caller may not read stops the export before
    -- anything is returned (all or nothing).
    PERFORM gdpr._require_privilege(t.tbl, 'SELECT', 'gdpr.export_subject()');
    data := data || jsonb_build_object(t.label, gdpr._export_rows(t.tbl, st, subject_id, portability));
  END LOOP;
  RETURN data;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_exists(subject_table regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  PERFORM gdpr._require_privilege(subject_table, 'SELECT', 'looking up a data subject');
  -- The key as $1: the same text for every subject, its plan kept.
  RETURN gdpr._owner_query_kept(subject_table, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %I = $1::%s))', subject_table,
                                                      (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = subject_table),
                                                      gdpr._subject_key_type(subject_table)), subject_id)::boolean;
EXCEPTION
  WHEN invalid_text_representation OR numeric_value_out_of_range OR invalid_datetime_format THEN
    RAISE EXCEPTION 'invalid subject id "%" for %', subject_id, subject_table
      USING ERRCODE = 'invalid_text_representation',
            DETAIL = format('The id column of %s is of type %s.', subject_table, gdpr._subject_key_type(subject_table));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_trashed(st regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._soft_deleted_cond(st, 't');
BEGIN
  IF cond IS NULL THEN
    RETURN false;
  END IF;
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  RETURN gdpr._owner_query_kept(st, format('SELECT to_jsonb(EXISTS (SELECT FROM %s t WHERE t.%I = $1::%s AND %s))',
                                           st, (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st),
                                           gdpr._subject_key_type(st), cond), subject_id)::boolean;
END
$$;

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

CREATE OR REPLACE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION gdpr.find_duplicates(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS TABLE (duplicate_id text, matched text[])
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(find_duplicates.subject_table, find_duplicates.subject_id);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  cols name[] := gdpr._contact_columns(st);
  mine jsonb;
  found jsonb := '[]';            -- [id, column] pairs
  c name;
  v text;
  points text[];
  q record;
BEGIN
  IF cardinality(cols) = 0 THEN
    RETURN;
  END IF;
  PERFORM gdpr._require_privilege(st, 'SELECT', 'gdpr.find_duplicates()');
  -- A jsonb, json or array column as jsonb (each string in it is a contact point), any other as text.
  mine := gdpr._owner_query_kept(st, format('SELECT jsonb_build_object(%s) FROM %s WHERE %I = $1::%s',
                                       (SELECT string_agg(format(CASE WHEN gdpr._holds_many(st, x) THEN '%L, to_jsonb(%I)'
                                                                      ELSE '%L, %I::text' END, x, x), ', ') FROM unnest(cols) x),
                                       st, id_col, gdpr._subject_key_type(st)), find_duplicates.subject_id);
  FOREACH c IN ARRAY cols LOOP
    -- A plain column's value is its one contact point: no query for it.
    IF jsonb_typeof(mine -> c) IN ('array', 'object') THEN
      points := ARRAY(SELECT DISTINCT p FROM gdpr._contact_points(mine -> c) p);
    ELSE
      points := ARRAY[mine ->> c];
    END IF;
    FOREACH v IN ARRAY points LOOP
      CONTINUE WHEN gdpr._contact_kind(v) IS NULL;
      q := gdpr._duplicate_search(st, c, v);
      IF q.pred IS NULL THEN
        RAISE NOTICE 'duplicates: column "%" of % is not searched (a big table without an index on it)', c, st
          USING HINT = CASE WHEN gdpr._holds_many(st, c) THEN 'No index serves a search inside a jsonb or array column.'
                            ELSE format('CREATE INDEX ON %s (%s) lets it be searched.', st,
                                        CASE gdpr._contact_kind(v) WHEN 'email' THEN format('lower(%I)', c) ELSE quote_ident(c) END) END;
        EXIT;
      END IF;
      found := found || gdpr._owner_query(st, format(
                 'SELECT coalesce(jsonb_agg(jsonb_build_array(t.%1$I::text, %2$L)), ''[]'') FROM %3$s t
                   WHERE t.%1$I <> $1::%4$s AND %5$s',
                 id_col, c, st, gdpr._subject_key_type(st), q.pred), find_duplicates.subject_id, q.param);
    END LOOP;
  END LOOP;
  RETURN QUERY SELECT d ->> 0, array_agg(DISTINCT d ->> 1 ORDER BY d ->> 1)
                 FROM jsonb_array_elements(found) d GROUP BY d ->> 0 ORDER BY d ->> 0;
END
$$;
