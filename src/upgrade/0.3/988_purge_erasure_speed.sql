-- The purge cheaper (make bench-purge: 1.38 x the same work by hand on a
-- paravirtualised two-core machine, goal 1.20): the anonymisation of the rows
-- kept rows refer to computes the pseudonyms of all the columns in one pass
-- over the rows (was a pass a column) and counts the rows it did (no count
-- beforehand); the "still identifies" test compares a value's length before
-- its regular expression; a table no kept table refers to is not looked at;
-- a batch short of the batch size is a policy's last (no batch more finding
-- nothing); the functions of every batch in PL/pgSQL (an SQL function with
-- SET is parsed and planned again at each call).
DROP FUNCTION gdpr._anonymise_rows(regclass, text, text[]);

-- Anonymise the rows t of tbl matching cond (with params $1...), as the
-- table's owner, in one UPDATE: the column actions for the report, and the
-- rows anonymised.  The rows are first selected and locked with the text of
-- the columns to pseudonymise, whose pseudonyms are computed here, outside
-- the owner's statement (the owner never holds the keyed function), and
-- passed back with the rows' ctids.  All the columns' pseudonyms are
-- computed in one pass over the rows: the aggregates of one scan see the
-- rows in the same order, so the arrays line up with the ctids (a pass per
-- column was half of a purge's anonymisation, make bench-purge).
CREATE FUNCTION gdpr._anonymise_rows(tbl regclass, cond text, params text[] DEFAULT '{}',
                                     OUT actions jsonb, OUT n bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  pcols name[];
  rows jsonb;
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
      n := gdpr._owner_exec(tbl, format('UPDATE %s t SET %s WHERE %s', tbl, sets, cond), VARIADIC params);
    END IF;
    RETURN;
  END IF;
  rows := gdpr._owner_query(tbl, format(
    'SELECT coalesce(jsonb_agg(x.r), ''[]'')
       FROM (SELECT jsonb_build_array(t.ctid::text, %s) AS r FROM %s t WHERE %s FOR UPDATE) x',
    (SELECT string_agg(format('t.%I::text', c), ', ' ORDER BY o) FROM unnest(pcols) WITH ORDINALITY u(c, o)),
    tbl, cond), VARIADIC params);
  n := jsonb_array_length(rows);
  IF n = 0 THEN
    RETURN;
  END IF;
  EXECUTE format('SELECT ARRAY[array_agg(x.r ->> 0)::text, %s] FROM jsonb_array_elements($1) x(r)',
                 (SELECT string_agg(format('array_agg(gdpr._pseudonym(x.r ->> %s, %L))::text', i, 'erasure'),
                                    ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i))
    INTO arrays USING rows;
  PERFORM gdpr._owner_exec(tbl, format(
    -- (the ctids also filter the table's scan: a hash join otherwise hashes every row's)
    'UPDATE %s t SET %s FROM unnest($%3$s::tid[], %s) v(gdpr_ctid, %s) WHERE t.ctid = v.gdpr_ctid AND t.ctid = ANY ($%3$s::tid[])',
    tbl,
    concat_ws(', ', sets, (SELECT string_agg(format('%I = v.gdpr_p%s::%s', pcols[i], i, (gdpr._column(tbl, pcols[i])).typ),
                                             ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i)),
    k + 1,
    (SELECT string_agg(format('$%s::text[]', k + 1 + i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i),
    (SELECT string_agg(format('gdpr_p%s', i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i)),
    VARIADIC params || arrays);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._identified_cond(tbl regclass) RETURNS text
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

CREATE OR REPLACE FUNCTION gdpr._purge_anonymise(run_id bigint, pol gdpr.retention_policies) RETURNS bigint
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

CREATE OR REPLACE FUNCTION gdpr._purge_batch(run_id bigint, policy_id int, batch_size int, dry_run boolean,
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

CREATE OR REPLACE FUNCTION gdpr._purge_policy(run_id bigint, policy_id int, batch_size int, dry_run boolean) RETURNS bigint
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

CREATE OR REPLACE FUNCTION gdpr._unreferenced_cond(pol gdpr.retention_policies) RETURNS text
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

CREATE OR REPLACE FUNCTION gdpr._due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Issue 23.5: subjects without a legal basis are due too (50_consent.sql).
  RETURN concat_ws(' AND ', gdpr._no_basis_due(pol, gdpr._past_due_cond(pol)), gdpr._unreferenced_cond(pol));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._held_ids(st regclass) RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT h.subject_id FROM gdpr.holds h
                WHERE h.subject_table = _held_ids.st AND h.released_at IS NULL AND (h.until IS NULL OR h.until > now()));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._restricted_ids(st regclass) RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT r.subject_id FROM gdpr.restrictions r WHERE r.subject_table = _restricted_ids.st AND r.lifted_at IS NULL);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_excluded(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT (gdpr._held_ids(r.subject_table) || gdpr._restricted_ids(r.subject_table))::text
            FROM gdpr.registered_tables r WHERE r.tbl = _purge_excluded.tbl);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._cascade_deleted(tbl regclass) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(c.conrelid)), 0)::bigint
            FROM pg_constraint c
           WHERE c.confrelid = _cascade_deleted.tbl AND c.contype = 'f' AND c.confdeltype = 'c'
             AND cardinality(c.conkey) = 1);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._erase_table(tbl regclass, st regclass, key_literal text) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._subject_rows_cond(tbl, st, key_literal);
  pinned text := gdpr._pinned_cond(tbl, st, key_literal);
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
    IF gdpr._owner_query(tbl, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %s))', tbl, cond))::boolean THEN
      actions := (gdpr._anonymise_rows(tbl, cond)).actions;
      n_unlinked := gdpr._owner_exec(tbl, format('UPDATE %s SET %s WHERE %s', tbl, unlink, cond));
    END IF;
  ELSIF NOT keep THEN
    n_deleted := gdpr._owner_exec(tbl, format('DELETE FROM %s WHERE (%s) AND NOT (%s)', tbl, cond, pinned));
  END IF;
  n_kept := gdpr._owner_query(tbl, format('SELECT to_jsonb(count(*)) FROM %s WHERE %s', tbl, cond))::bigint;
  IF n_kept > 0 THEN
    actions := (gdpr._anonymise_rows(tbl, cond)).actions;
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

-- The erasure (and the purge's anonymisation): the hint of a column's name
-- is asked last, of the columns nobody classified that no key or link holds
-- (was of every column first: 4,343 calls in 100 erasures, 1,387 after), and
-- answers by tests in PL/pgSQL instead of a query (31 -> 24 us a call).
CREATE OR REPLACE FUNCTION gdpr._erasure_column_actions(tbl regclass) RETURNS TABLE (col name, action text)
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

CREATE OR REPLACE FUNCTION gdpr.personal_name_hint(col name, OUT kind text, OUT category text)
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  w text := translate(lower(regexp_replace(col, '([a-z0-9])([A-Z])', '\1_\2', 'g')),
                      'àâäáãåçéèêëíìîïñóòôöõúùûüýÿ', 'aaaaaaceeeeiiiinooooouuuuyy');
BEGIN
  -- Flags and derived states are not the data itself (email_state, is_phone...).
  IF w ~ '^(is|has)_' OR w ~ '_(state|status|count|quality|type|mode|id|ids)$' THEN
    RETURN;
  END IF;
  w := '_' || regexp_replace(w, '[^a-z0-9]+', '_', 'g') || '_';
  -- The first that matches, in this order (tests in PL/pgSQL, no query: an
  -- erasure asks this of every column nobody classified).
  IF w ~ '_(iban|bic|swift|rib|acc_number|acc_holder|account_number|bank_account|card_number|cc_number)_' THEN
    kind := 'bank'; category := 'financial';
  ELSIF w ~ '_(ssn|nir|insee|social_security|securite_sociale|passport|passeport|national_id|id_card|carte_identite|driver_license|permis_conduire)_' THEN
    kind := 'national_id'; category := 'identification';
  ELSIF w ~ '_(health|sante|medical|medicale|diagnosis|diagnostic|allergy|allergie|religion|ethnicity|ethnie|disability|handicap)_' THEN
    kind := 'health'; category := 'sensitive';
  ELSIF w ~ '_(e_?mails?|courriels?|mails?)_' THEN
    kind := 'email'; category := 'contact';
  ELSIF w ~ '_(phones?|tel|telephones?|mobiles?|portables?|gsm|fax|cell|cellphone)_' THEN
    kind := 'phone'; category := 'contact';
  ELSIF w ~ '_(birth[a-z]*|dob|naissance|date_de_naissance)_' THEN
    kind := 'birth'; category := 'identification';
  ELSIF w ~ '_(ip|ipv4|ipv6|ip_address|ip_addr|remote_addr)_' THEN
    kind := 'ip'; category := 'identification';
  ELSIF w ~ '_(address|addresses|adresses?|street[0-9]?|rue|zip|zipcode|postcode|postal|code_postal|city|ville)_' THEN
    kind := 'address'; category := 'contact';
  ELSIF w ~ '_(latitude|longitude|geolocation|gps)_' THEN
    kind := 'location'; category := 'contact';
  ELSIF w ~ '_(names?|noms?|prenoms?|surname|firstname|lastname|fullname|displayname|nickname|maiden|sexe?|gender)_' THEN
    kind := 'name'; category := 'identification';
  ELSIF w ~ '_(notes?|comments?|commentaires?|remarks?|remarques?|body|memo)_' THEN
    kind := 'notes'; category := 'free_text';
  END IF;
END
$$;
