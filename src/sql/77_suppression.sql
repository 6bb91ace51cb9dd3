-- The suppression list enforced where data enters (issue 23.3): a row trigger
-- on every registered subject table checks the contact points (columns
-- classified "contact": e-mail addresses and phone numbers) an INSERT or an
-- UPDATE brings against gdpr.suppressions (75_erasure.sql), and refuses the
-- row, flags it, or lets it be, per crm_gdpr.suppression_mode.  Objectors
-- whose rows are deleted go on the list too; an erasure finds the subject's
-- duplicates by the same normalised contact points.

-- Why a contact point is on the list, and since when for an objector.
ALTER TABLE gdpr.suppressions
  ADD COLUMN reason text NOT NULL DEFAULT 'erasure' CHECK (reason IN ('erasure', 'objection')),
  ADD COLUMN objected_at timestamptz;
COMMENT ON COLUMN gdpr.suppressions.reason IS
  'erasure: the person was erased; objection: he objected (or unsubscribed) and his row was deleted';

-- Rows let in under crm_gdpr.suppression_mode = flag: what to review.
CREATE TABLE gdpr.suppression_flags (
  id             bigserial PRIMARY KEY,
  flagged_at     timestamptz NOT NULL DEFAULT now(),
  subject_table  regclass NOT NULL,
  subject_id     text,
  col            name NOT NULL,
  ref            text NOT NULL,              -- the suppression list's entry (a keyed pseudonym)
  flagged_by     name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.suppression_flags IS
  'rows written with a suppressed contact point under crm_gdpr.suppression_mode = flag';
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppression_flags', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppression_flags_id_seq', '');

-- refuse (the default), flag or off.
CREATE FUNCTION gdpr._suppression_mode() RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  mode text := coalesce(nullif(current_setting('crm_gdpr.suppression_mode', true), ''), 'refuse');
BEGIN
  RETURN gdpr._one_of(mode, ARRAY['refuse', 'flag', 'off'], 'crm_gdpr.suppression_mode');
END
$$;

-- The kind of contact point a value is ('email', 'phone'), NULL for any
-- other value (an address, a city): the rule _suppress_contacts applies.
CREATE FUNCTION gdpr._contact_kind(value text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN value LIKE '%@%' THEN 'email'
              WHEN length(regexp_replace(value, '[^0-9]', '', 'g')) >= 6 THEN 'phone' END;

-- The suppression list's reference of a contact point.
CREATE FUNCTION gdpr._contact_ref(value text) RETURNS text
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
  RETURN gdpr._pseudonym(gdpr._normalise_contact(value), 'suppression');

-- The contact columns of a subject table.
CREATE FUNCTION gdpr._contact_columns(st regclass) RETURNS name[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT DISTINCT pc.col FROM gdpr.personal_columns pc
                WHERE pc.tbl = _contact_columns.st AND pc.category = 'contact' ORDER BY pc.col);
END
$$;

-- Why a suppressed contact point must stay out, for the error's hint.
CREATE FUNCTION gdpr._suppression_reason(s gdpr.suppressions) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN s.reason = 'objection'
              THEN format('The person objected on %s and his data was deleted on %s: do not import him again.',
                          s.objected_at::date, s.created_at::date)
              ELSE (SELECT format('The person was erased on %s under request %s: do not import him again.',
                                  coalesce(e.erased_at, s.created_at)::date, coalesce(e.request_id::text, '(none recorded)'))
                      FROM (SELECT) one LEFT JOIN gdpr.erasures e ON e.id = s.erasure_id) END;

-- The check is made by the access log's INSERT and UPDATE statement triggers
-- on registered subject tables (src/log_write.c, src/suppression_gate.c):
-- while the list is empty (cached per backend, invalidated by the trigger
-- below) a statement costs no query; otherwise one query per statement hands
-- each new row (and an UPDATE's old one) to gdpr._check_suppression().
CREATE FUNCTION gdpr._suppressions_changed() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_suppressions_changed';
CREATE TRIGGER suppressions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.suppressions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._suppressions_changed();

-- The contact points a column's value holds: the value itself, or, in a
-- jsonb or array column, every string in it (Atomic CRM's email_jsonb,
-- '[{"email": ..., "type": "Work"}, ...]'; Twenty's additional e-mails), as
-- the erasure puts them on the list (_suppress_contacts).
CREATE FUNCTION gdpr._contact_points(value jsonb) RETURNS SETOF text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT x #>> '{}' FROM jsonb_path_query(value, 'strict $.**') x
   WHERE jsonb_typeof(x) = 'string' OR jsonb_typeof(x) = 'number' AND x = value
$$;

-- One row written to subject table tbl (old_row: before an UPDATE, else
-- NULL).  A row that brings no new e-mail address or phone number costs
-- expressions only, no query; one that does costs a probe of the list.  In
-- a jsonb or array column, each string is a contact point of its own, and
-- only those the old row did not have are new.  Refuses the statement
-- (crm_gdpr.suppression_mode = refuse), or flags the row (flag).
CREATE FUNCTION gdpr._check_suppression(tbl regclass, new_row jsonb, old_row jsonb) RETURNS void
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

-- The statement _subjects_departed (76_departures.sql) runs over the deleted
-- rows (its transition table gdpr_gone, which only the trigger's own
-- statements see): the contact points of those who objected to a purpose,
-- or unsubscribed from a legitimate-interest one, go on the list.
CREATE FUNCTION gdpr._suppress_objectors_sql(st regclass, id_col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format(
      'INSERT INTO gdpr.suppressions (ref, kind, reason, objected_at)
         SELECT gdpr._contact_ref(v.x), gdpr._contact_kind(v.x), %1$L, max(o.at)
           FROM gdpr_gone g
           CROSS JOIN LATERAL (VALUES %2$s) v (x)
           JOIN LATERAL (SELECT coalesce(s.objected_at, s.withdrawn_at) AS at
                           FROM gdpr.consent_state s JOIN gdpr.purposes p ON p.code = s.purpose
                          WHERE s.subject_table = %3$L::regclass AND s.subject_id = gdpr._text(g.%4$I)
                            AND (s.objected_at IS NOT NULL
                                 OR p.legal_basis = %5$L AND s.withdrawn_at IS NOT NULL)) o ON true
          WHERE gdpr._contact_kind(v.x) IS NOT NULL
          GROUP BY 1, 2
       ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING',
      'objection', string_agg(format('(gdpr._text(g.%I))', c), ', '), st, id_col, 'legitimate_interest')
            FROM unnest(gdpr._contact_columns(st)) c
          HAVING count(*) > 0);

-- The usual ways of writing a phone number whose normalised form is norm
-- (digits, French 0 read as 33), to find it through a plain index.
CREATE FUNCTION gdpr._phone_variants(norm text, raw text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN ARRAY(SELECT DISTINCT v FROM unnest(ARRAY[
    raw, norm, '+' || norm,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN '0' || substr(norm, 3) END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN '+33 ' || regexp_replace(substr(norm, 3), '^(.)(..)(..)(..)(..)$', '\1 \2 \3 \4 \5') END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN regexp_replace('0' || substr(norm, 3), '^(..)(..)(..)(..)(..)$', '\1 \2 \3 \4 \5') END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN regexp_replace('0' || substr(norm, 3), '^(..)(..)(..)(..)(..)$', '\1.\2.\3.\4.\5') END]) v
    WHERE v IS NOT NULL);

-- Whether a column holds several values: jsonb, json or an array, whose
-- contact points are the strings in it (_contact_points).
CREATE FUNCTION gdpr._holds_many(tbl regclass, col name) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL: its plan is kept (a SQL function with SET is planned at every call).
  RETURN coalesce((SELECT ty.typcategory = 'A' OR ty.oid IN ('json'::regtype, 'jsonb'::regtype)
                     FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
                    WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped), false);
END
$$;

-- How find_duplicates searches one contact column of st for value v: an SQL
-- predicate on alias t with $2 as the parameter, and that parameter; NULL
-- when the search would read a big table without an index.  E-mail: lower
-- case (served by an index on lower(col)); phone: its digits in a table
-- under 4 MB, else the usual ways of writing it through an index on col.
-- A scan runs within an erasure (< 10 ms): 4 MB is some 20,000 contacts, read
-- in a few milliseconds.  Each phone is first matched by LIKE against the
-- number's digits in order with anything between them ('%6%1%2%...'), which
-- every way of writing the number passes: the regular expressions that
-- normalise it (2 µs a row, 20 ms for 10,000 contacts) run on those only.
CREATE FUNCTION gdpr._duplicate_search(st regclass, col name, v text, OUT pred text, OUT param text)
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

-- The other subjects of the table sharing a normalised contact point with
-- this one (gdpr._duplicate_search says how each column is searched; a
-- column that would need a scan of a big table is skipped, with a notice).
-- The caller needs SELECT on the table; the statements run as its owner,
-- with the normalisation written out (they call nothing of schema gdpr).
CREATE FUNCTION gdpr.find_duplicates(subject_id text, subject_table regclass DEFAULT NULL)
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

-- For an erasure's report: the duplicates found before his row went (by
-- keyed pseudonym, never an id in clear), each erased too when asked.  A
-- duplicate that cannot be erased (held, restricted) is reported, not fatal.
CREATE FUNCTION gdpr._erase_duplicates(st regclass, dups jsonb, include_duplicates boolean) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d jsonb;
  rep jsonb;
  out jsonb := '[]';
BEGIN
  FOR d IN SELECT * FROM jsonb_array_elements(coalesce(dups, '[]')) LOOP
    rep := NULL;
    IF include_duplicates THEN
      BEGIN
        rep := gdpr.erase_subject(d ->> 'subject_id', NULL, st);
      EXCEPTION WHEN OTHERS THEN
        rep := jsonb_build_object('status', 'not erased', 'error', SQLSTATE || ': ' || SQLERRM);
      END;
    ELSE
      RAISE NOTICE 'subject "%" shares his % and is not erased', d ->> 'subject_id', d ->> 'matched'
        USING HINT = 'Erase the duplicates with gdpr.erase_subject(..., include_duplicates => true) when the request covers them.';
    END IF;
    out := out || jsonb_build_object('subject_ref', gdpr._subject_ref(st, d ->> 'subject_id'), 'matched', d -> 'matched',
                                     'status', coalesce(rep ->> 'status', 'found'), 'erasure_id', rep -> 'erasure_id',
                                     'error', rep -> 'error');
  END LOOP;
  RETURN jsonb_build_object('duplicates', out);
END
$$;

-- The duplicates of a subject, as the erasure needs them (before it starts).
CREATE FUNCTION gdpr._duplicates_json(st regclass, subject_id text) RETURNS jsonb
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('subject_id', d.duplicate_id, 'matched', to_jsonb(d.matched))), '[]')
            FROM gdpr.find_duplicates(subject_id, st) d);

GRANT EXECUTE ON FUNCTION gdpr.find_duplicates(text, regclass) TO gdpr_admin;
GRANT SELECT ON gdpr.suppression_flags TO gdpr_auditor, gdpr_admin;
