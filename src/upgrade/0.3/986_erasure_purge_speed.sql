-- An erasure at some 9 ms, whatever the CRM's size (make bench-rights):
-- the search of his duplicates by phone in a table without an index reads
-- the table under 4 MB only (was 16 MB), each phone first matched by LIKE on
-- the number's digits; his contact points read by one statement a table;
-- gdpr.restrictions touched only when he has some.  The purge: a departed
-- subject's reference by a function planned once, not at every call.
CREATE OR REPLACE FUNCTION gdpr._subject_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._pseudonym(subject_id, 'erasure-ledger');  -- scoped by the subject_table column
END
$$;

CREATE OR REPLACE FUNCTION gdpr._duplicate_search(st regclass, col name, v text, OUT pred text, OUT param text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  small boolean := pg_relation_size(st) < 4 * 1024 * 1024;
  attnum smallint := (gdpr._column(st, col)).attnum;
  digits text;
BEGIN
  IF gdpr._contact_kind(v) = 'email' THEN
    IF small OR EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st
                          AND pg_get_expr(i.indexprs, i.indrelid) ~ format('^lower\(\(?%s\M', quote_ident(col))) THEN
      pred := format('lower(t.%I::text) = $2', col);
      param := gdpr._normalise_contact(v);
    END IF;
  ELSIF gdpr._contact_kind(v) = 'phone' THEN
    IF small THEN
      param := gdpr._normalise_contact(v);
      -- A value matches when its digits are param, or 0 then what follows
      -- param's 33: either way they end with these.
      digits := CASE WHEN param LIKE '33%' THEN substr(param, 3) ELSE param END;
      pred := format('CASE WHEN t.%1$I::text LIKE %2$L THEN regexp_replace(regexp_replace(t.%1$I::text, ''[^0-9]'', '''', ''g''), ''^0'', ''33'') = $2 ELSE false END',
                     col, '%' || array_to_string(string_to_array(digits, NULL), '%') || '%');
    ELSIF EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st AND i.indkey[0] = attnum) THEN
      pred := format('t.%I::text = ANY ($2::text[])', col);
      param := gdpr._phone_variants(gdpr._normalise_contact(v), v)::text;
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._suppress_contacts(st regclass, key_literal text, erasure_id bigint) RETURNS int
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
    vals := gdpr._owner_query(c.tbl, format('SELECT coalesce(jsonb_agg(jsonb_build_array(%s)), ''[]'') FROM %s t WHERE %s',
                                            (SELECT string_agg(format('t.%I', x), ', ') FROM unnest(c.cols) x),
                                            c.tbl, gdpr._subject_rows_cond(c.tbl, st, key_literal)));
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

CREATE OR REPLACE FUNCTION gdpr._forget_subject(st regclass, subject_id text, ref text) RETURNS void
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
