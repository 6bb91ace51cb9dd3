-- Contact points inside jsonb and array columns (Atomic CRM's email_jsonb and
-- phone_jsonb, Twenty's additional e-mails): the suppression check on new
-- rows and gdpr.find_duplicates take each string in them, as the erasure
-- puts each on the list; they took the column's whole value.


CREATE FUNCTION gdpr._contact_points(value jsonb) RETURNS SETOF text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT x #>> '{}' FROM jsonb_path_query(value, 'strict $.**') x
   WHERE jsonb_typeof(x) = 'string' OR jsonb_typeof(x) = 'number' AND x = value
$$;

CREATE OR REPLACE FUNCTION gdpr._check_suppression(tbl regclass, new_row jsonb, old_row jsonb) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[] := gdpr._contact_columns(tbl);
  brought_cols name[] := '{}';  -- contact columns, and the new e-mail address or phone each brings
  brought text[] := '{}';
  mode text := gdpr._suppression_mode();
  c name;
  v text;
  points text[];
  s gdpr.suppressions;
BEGIN
  IF mode = 'off' THEN
    RETURN;
  END IF;
  FOREACH c IN ARRAY cols LOOP
    CONTINUE WHEN (new_row -> c) IS NOT DISTINCT FROM (old_row -> c) OR jsonb_typeof(new_row -> c) = 'null';
    -- A plain column's value is its one contact point: no query for it.
    IF jsonb_typeof(new_row -> c) IN ('array', 'object') THEN
      points := ARRAY(SELECT p FROM gdpr._contact_points(new_row -> c) p
                      EXCEPT SELECT p FROM gdpr._contact_points(old_row -> c) p);
    ELSE
      points := ARRAY[new_row ->> c];
    END IF;
    FOREACH v IN ARRAY points LOOP
      IF v LIKE '%@%' OR length(regexp_replace(v, '[^0-9]', '', 'g')) >= 6 THEN
        brought_cols := brought_cols || c;
        brought := brought || v;
      END IF;
    END LOOP;
  END LOOP;
  IF cardinality(brought) = 0 OR NOT gdpr._has_key() THEN
    RETURN;
  END IF;
  FOR i IN 1 .. cardinality(brought) LOOP
    c := brought_cols[i];
    SELECT * INTO s FROM gdpr.suppressions x WHERE x.ref = gdpr._contact_ref(brought[i]);
    CONTINUE WHEN NOT FOUND;
    IF mode = 'refuse' THEN
      RAISE EXCEPTION '%.% is on the suppression list', gdpr.qualified_name(tbl), c
        USING ERRCODE = 'check_violation',
              DETAIL = format('This %s belongs to a person who must not be contacted or recorded again (%s).',
                              CASE s.kind WHEN 'email' THEN 'e-mail address' ELSE 'phone number' END, s.reason),
              HINT = gdpr._suppression_reason(s);
    END IF;
    INSERT INTO gdpr.suppression_flags (subject_table, subject_id, col, ref)
      VALUES (tbl, new_row ->> (SELECT st.id_column FROM gdpr.subject_tables st WHERE st.tbl = _check_suppression.tbl), c, s.ref);
    RAISE WARNING '%.% is on the suppression list: the row is flagged', gdpr.qualified_name(tbl), c
      USING HINT = gdpr._suppression_reason(s);
  END LOOP;
END
$$;

CREATE FUNCTION gdpr._holds_many(tbl regclass, col name) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL: its plan is kept (a SQL function with SET is planned at every call).
  RETURN coalesce((SELECT ty.typcategory = 'A' OR ty.oid IN ('json'::regtype, 'jsonb'::regtype)
                     FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped), false);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._duplicate_search(st regclass, col name, v text, OUT pred text, OUT param text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  small boolean := pg_relation_size(st) < 4 * 1024 * 1024;
  attnum smallint := (gdpr._column(st, col)).attnum;
  many boolean := gdpr._holds_many(st, col);
  val text := CASE WHEN many THEN 'x.p' ELSE format('t.%I::text', col) END;
  digits text;
BEGIN
  IF gdpr._contact_kind(v) = 'email' THEN
    IF small OR NOT many AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st
                          AND pg_get_expr(i.indexprs, i.indrelid) ~ format('^lower\(\(?%s\M', quote_ident(col))) THEN
      pred := format('lower(%s) = $2', val);
      param := gdpr._normalise_contact(v);
    END IF;
  ELSIF gdpr._contact_kind(v) = 'phone' THEN
    IF small THEN
      param := gdpr._normalise_contact(v);
      -- A value matches when its digits are param, or 0 then what follows
      -- param's 33: either way they end with these.
      digits := CASE WHEN param LIKE '33%' THEN substr(param, 3) ELSE param END;
      pred := format('CASE WHEN %1$s LIKE %2$L THEN regexp_replace(regexp_replace(%1$s, ''[^0-9]'', '''', ''g''), ''^0'', ''33'') = $2 ELSE false END',
                     val, '%' || array_to_string(string_to_array(digits, NULL), '%') || '%');
    ELSIF NOT many AND EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st AND i.indkey[0] = attnum) THEN
      pred := format('t.%I::text = ANY ($2::text[])', col);
      param := gdpr._phone_variants(gdpr._normalise_contact(v), v)::text;
    END IF;
  END IF;
  -- In a jsonb or array column, any string in it (no index serves that).
  IF many AND pred IS NOT NULL THEN
    pred := format('EXISTS (SELECT FROM jsonb_path_query(to_jsonb(t.%I), ''strict $.**'') j, LATERAL (SELECT j #>> ''{}'') x(p)
                             WHERE jsonb_typeof(j) = ''string'' AND %s)', col, pred);
  END IF;
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
  mine := gdpr._owner_query(st, format('SELECT jsonb_build_object(%s) FROM %s WHERE %I = $1::%s',
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

REVOKE EXECUTE ON FUNCTION gdpr._contact_points(jsonb), gdpr._holds_many(regclass, name) FROM PUBLIC;
