-- Data subjects: (subject_table, subject_id) resolved once, for every feature.

-- The subject table to use: the given one, which must be registered as a
-- subject table, or the only one registered when NULL.
CREATE FUNCTION gdpr._subject_table(subject_table regclass) RETURNS regclass
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n int;
  only_one regclass;
BEGIN
  IF subject_table IS NOT NULL THEN
    IF NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = _subject_table.subject_table) THEN
      RAISE EXCEPTION 'table % is not a registered subject table', subject_table
        USING ERRCODE = 'undefined_object',
              HINT = 'Register it with gdpr.register_subject_table().';
    END IF;
    RETURN subject_table;
  END IF;
  SELECT count(*), min(s.tbl::oid)::regclass INTO n, only_one FROM gdpr.subject_tables s;
  IF n = 0 THEN
    RAISE EXCEPTION 'no subject table is registered'
      USING ERRCODE = 'undefined_object',
            HINT = 'Register one with gdpr.register_subject_table().';
  ELSIF n > 1 THEN
    RAISE EXCEPTION 'several subject tables are registered'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = (SELECT string_agg(s.tbl::text, ', ' ORDER BY s.tbl::text) FROM gdpr.subject_tables s),
            HINT = 'Pass subject_table.';
  END IF;
  RETURN only_one;
END
$$;

-- The type of the subject table's id column, as SQL text.
CREATE FUNCTION gdpr._subject_key_type(subject_table regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT format_type(a.atttypid, a.atttypmod)
            FROM gdpr.subject_tables s JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attname = s.id_column
           WHERE s.tbl = _subject_key_type.subject_table);
END
$$;

-- The subject's key value as text cast to the key's type, for dynamic SQL
-- that must use the key's index: format('... WHERE %I = %s', id_column, this).
CREATE FUNCTION gdpr._subject_key_literal(subject_table regclass, subject_id text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  RETURN format('%L::%s', subject_id, gdpr._subject_key_type(subject_table));
END
$$;

-- The same as the statement's parameter $1 cast to the key's type, for a
-- statement whose text must not change with the subject (its plan kept:
-- gdpr._owner_query_kept); the subject's id is passed as $1.
CREATE FUNCTION gdpr._subject_key_param(subject_table regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN '$1::' || gdpr._subject_key_type(subject_table);
END
$$;

-- Whether the subject exists; 22P02 with a clear message when subject_id is
-- not a valid value of the key's type.  Asking is reading the subject table:
-- the caller needs SELECT on it (else the answer is an oracle), and the look-up
-- runs as the table's owner.
CREATE FUNCTION gdpr._subject_exists(subject_table regclass, subject_id text) RETURNS boolean
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

-- The resolved subject table of an existing subject; P0002 when he is unknown.
CREATE FUNCTION gdpr._require_subject(subject_table regclass, subject_id text) RETURNS regclass
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
BEGIN
  IF NOT gdpr._subject_exists(st, subject_id) THEN
    RAISE EXCEPTION 'subject "%" does not exist in %', subject_id, st
      USING ERRCODE = 'no_data_found';
  END IF;
  RETURN st;
END
$$;
