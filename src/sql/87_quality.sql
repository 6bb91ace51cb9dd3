-- Data quality (Art. 5(1)(d), accuracy): well-formed e-mail addresses, phone
-- numbers and postcodes for the person's country, duplicates by normalised
-- e-mail or phone, and records idle for longer than their purpose needs.
-- Counts for everyone who audits; sample values only for gdpr_admin.
-- Optional validation of classified contact columns: refuse or flag.

CREATE FUNCTION gdpr.valid_email(email text) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN length(email) <= 254 AND position('..' IN email) = 0
     AND email ~* '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,63}$';

-- A phone number: international (+ or 00, 8 to 15 digits; +33 followed by
-- nine digits) or national (France: 0 and nine digits; elsewhere 6 to 14).
CREATE FUNCTION gdpr.valid_phone(phone text, country text DEFAULT 'FR') RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN phone IS NULL THEN NULL
    ELSE (SELECT CASE WHEN d !~ '^\+?[0-9]+$' THEN false
                      WHEN d ~ '^(\+|00)33' THEN d ~ '^(\+|00)33[1-9][0-9]{8}$'
                      WHEN d ~ '^(\+|00)' THEN length(regexp_replace(d, '^(\+|00)', '')) BETWEEN 8 AND 15
                      WHEN upper(coalesce(country, 'FR')) = 'FR' THEN d ~ '^0[1-9][0-9]{8}$'
                      ELSE length(d) BETWEEN 6 AND 14 END
            FROM (SELECT regexp_replace(phone, '[[:space:].()/-]', '', 'g') AS d) x) END;

-- Postcode formats by country (the common European ones and the US); other
-- countries ("*"): 3 to 10 letters, digits, blanks or dashes.
CREATE FUNCTION gdpr.postcode_patterns() RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN '{"FR": "^(0[1-9]|[1-8][0-9]|9[0-8])[0-9]{3}$", "DE": "^[0-9]{5}$", "IT": "^[0-9]{5}$", "FI": "^[0-9]{5}$",
           "ES": "^(0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}$", "US": "^[0-9]{5}(-[0-9]{4})?$", "BE": "^[1-9][0-9]{3}$",
           "CH": "^[1-9][0-9]{3}$", "AT": "^[1-9][0-9]{3}$", "LU": "^(L-)?[0-9]{4}$", "DK": "^[0-9]{4}$",
           "NO": "^[0-9]{4}$", "NL": "^[1-9][0-9]{3} ?[A-Z]{2}$", "PT": "^[0-9]{4}-[0-9]{3}$", "PL": "^[0-9]{2}-[0-9]{3}$",
           "SE": "^[0-9]{3} ?[0-9]{2}$", "GB": "^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$",
           "*": "^[A-Za-z0-9 -]{3,10}$"}'::jsonb;

-- A postcode in its country's format.
CREATE FUNCTION gdpr.valid_postcode(postcode text, country text DEFAULT 'FR') RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN btrim(postcode) ~ coalesce(gdpr.postcode_patterns() ->> upper(coalesce(country, 'FR')),
                                    gdpr.postcode_patterns() ->> '*');

CREATE FUNCTION gdpr.validation_kinds() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['email', 'phone', 'postcode'];

-- Validations set on contact columns (gdpr.set_validation).
CREATE TABLE gdpr.validations (
  tbl             regclass NOT NULL REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  col             name NOT NULL,
  kind            text NOT NULL CHECK (kind = ANY (gdpr.validation_kinds())),
  mode            text NOT NULL CHECK (mode IN ('refuse', 'flag')),
  country_column  name,
  set_at          timestamptz NOT NULL DEFAULT now(),
  set_by          name NOT NULL DEFAULT session_user,
  PRIMARY KEY (tbl, col)
);
COMMENT ON TABLE gdpr.validations IS 'format checks on classified contact columns: refuse the write, or flag it';
SELECT pg_catalog.pg_extension_config_dump('gdpr.validations', '');

-- Whether value is well formed for its kind.
CREATE FUNCTION gdpr._contact_valid(kind text, value text, country text) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE kind WHEN 'email' THEN gdpr.valid_email(value) WHEN 'phone' THEN gdpr.valid_phone(value, country)
                   WHEN 'postcode' THEN gdpr.valid_postcode(value, country) END;

-- The kind of a contact column: set by gdpr.set_validation, else read from its name.
CREATE FUNCTION gdpr._contact_kind(tbl regclass, col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT v.kind FROM gdpr.validations v WHERE v.tbl = _contact_kind.tbl AND v.col = _contact_kind.col),
                  CASE WHEN col ~* '(^|_)e?-?mail' THEN 'email'
                       WHEN col ~* 'phone|mobile|(^|_)tel($|_)|fax' THEN 'phone'
                       WHEN col ~* 'post(al)?_?code|(^|_)zip' THEN 'postcode' END);

-- The country column of tbl used to read phones and postcodes: the one set,
-- else a column named country or country_code.
CREATE FUNCTION gdpr._country_column(tbl regclass, col name) RETURNS name
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT v.country_column FROM gdpr.validations v WHERE v.tbl = _country_column.tbl AND v.col = _country_column.col),
                  (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname IN ('country', 'country_code')
                      AND NOT a.attisdropped ORDER BY a.attname LIMIT 1));

-- Row trigger of gdpr.set_validation: arguments column, kind, mode, country column.
CREATE FUNCTION gdpr._validate_contact() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  row jsonb := gdpr._row_jsonb(NEW);
  value text := row ->> TG_ARGV[0];
  country text := CASE WHEN TG_ARGV[3] <> '' THEN row ->> TG_ARGV[3] END;
BEGIN
  IF value IS NOT NULL AND NOT gdpr._contact_valid(TG_ARGV[1], value, country) THEN
    IF TG_ARGV[2] = 'refuse' THEN
      RAISE EXCEPTION 'invalid % in column "%" of %', TG_ARGV[1], TG_ARGV[0], TG_RELID::regclass
        USING ERRCODE = 'check_violation', DETAIL = format('Got %L%s.', value, coalesce(' for country ' || country, '')),
              HINT = 'gdpr.set_validation() refuses malformed contact data in this column.';
    END IF;
    RAISE WARNING 'invalid % in column "%" of %', TG_ARGV[1], TG_ARGV[0], TG_RELID::regclass
      USING DETAIL = 'Written anyway (mode flag); gdpr.data_quality() counts it.';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION gdpr._validation_trigger(col name) RETURNS name
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN left('gdpr_validate_' || col, 63);

-- Check a classified contact column on every insert and update: 'refuse'
-- rejects a malformed value (23514), 'flag' writes it with a warning, 'off'
-- removes the check.
CREATE FUNCTION gdpr.set_validation(tbl regclass, col name, kind text, mode text DEFAULT 'refuse',
                                    country_column name DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ccol name;
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_validation()');
  PERFORM gdpr._column(tbl, col);
  PERFORM gdpr._one_of(mode, ARRAY['refuse', 'flag', 'off'], 'validation mode');
  IF mode = 'off' THEN
    DELETE FROM gdpr.validations v WHERE v.tbl = set_validation.tbl AND v.col = set_validation.col;
    RETURN;
  END IF;
  PERFORM gdpr._one_of(kind, gdpr.validation_kinds(), 'validation kind');
  IF NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = set_validation.tbl AND pc.col = set_validation.col
                    AND pc.category = 'contact') THEN
    RAISE EXCEPTION 'column "%" of % is not classified as contact data', col, tbl
      USING ERRCODE = 'undefined_object', HINT = 'Classify it with gdpr.classify(..., ''contact'', ...) first.';
  END IF;
  IF country_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, country_column);
  END IF;
  INSERT INTO gdpr.validations AS v (tbl, col, kind, mode, country_column)
    VALUES (tbl, col, kind, mode, country_column)
    ON CONFLICT ON CONSTRAINT validations_pkey DO UPDATE
      SET kind = excluded.kind, mode = excluded.mode, country_column = excluded.country_column,
          set_at = now(), set_by = session_user;
  ccol := gdpr._country_column(tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %I%s ON %s FOR EACH ROW
                    EXECUTE FUNCTION gdpr._validate_contact(%L, %L, %L, %L)',
                 gdpr._validation_trigger(col), col, coalesce(', ' || quote_ident(ccol), ''), tbl,
                 col, kind, mode, coalesce(ccol, ''));
END
$$;

-- A validation removed (by set_validation 'off' or with its table's
-- registration) takes its trigger with it.
CREATE FUNCTION gdpr._validation_removed() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = OLD.tbl AND t.tgname = gdpr._validation_trigger(OLD.col)) THEN
    EXECUTE format('DROP TRIGGER %I ON %s', gdpr._validation_trigger(OLD.col), OLD.tbl);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER validation_removed AFTER DELETE ON gdpr.validations
  FOR EACH ROW EXECUTE FUNCTION gdpr._validation_removed();

-- Whether SQL expression v is well formed for its kind, as SQL that calls
-- nothing of schema gdpr (it runs as the table's owner): the e-mail pattern
-- and the postcode patterns are parameters $1 and $2; country is SQL too.
-- The same rules as gdpr.valid_email, valid_phone and valid_postcode.
CREATE FUNCTION gdpr._contact_valid_sql(kind text, v text, country text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE kind
    WHEN 'email' THEN format('(length(%1$s) <= 254 AND position(''..'' IN %1$s) = 0 AND %1$s ~* $1)', v)
    WHEN 'phone' THEN format($f$(SELECT CASE WHEN d !~ '^\+?[0-9]+$' THEN false
                                             WHEN d ~ '^(\+|00)33' THEN d ~ '^(\+|00)33[1-9][0-9]{8}$'
                                             WHEN d ~ '^(\+|00)' THEN length(regexp_replace(d, '^(\+|00)', '')) BETWEEN 8 AND 15
                                             WHEN upper(coalesce(%2$s, 'FR')) = 'FR' THEN d ~ '^0[1-9][0-9]{8}$'
                                             ELSE length(d) BETWEEN 6 AND 14 END
                                   FROM (SELECT regexp_replace(%1$s, '[[:space:].()/-]', '', 'g') AS d) x)$f$, v, country)
    WHEN 'postcode' THEN format($f$(btrim(%1$s) ~ coalesce($2::jsonb ->> upper(coalesce(%2$s, 'FR')), $2::jsonb ->> '*'))$f$,
                                v, country)
  END;

-- The e-mail pattern of gdpr.valid_email.
CREATE FUNCTION gdpr._email_pattern() RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,63}$';

-- One check over tbl, run as its owner: [rows at fault, rows checked, up to
-- three values at fault when samples].
CREATE FUNCTION gdpr._quality_check(tbl regclass, problem text, checked text, value text, samples boolean) RETURNS jsonb
  LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
  RETURN gdpr._owner_query(tbl, format(
    'SELECT jsonb_build_array(count(*) FILTER (WHERE %1$s), count(*) FILTER (WHERE %2$s), %3$s) FROM %4$s t',
    problem, checked,
    CASE WHEN samples THEN format('(array_agg(DISTINCT %s) FILTER (WHERE %s))[1:3]', value, problem) ELSE 'NULL' END, tbl),
    gdpr._email_pattern(), gdpr.postcode_patterns()::text);

-- The sample values of a check's result, or NULL without samples.
CREATE FUNCTION gdpr._quality_samples(res jsonb) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN jsonb_typeof(res -> 2) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(res -> 2)) END;

CREATE FUNCTION gdpr.data_quality(samples boolean DEFAULT false)
  RETURNS TABLE (tbl regclass, col name, check_name text, problem_rows bigint, checked_rows bigint, sample_values text[])
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  kind text;
  ccol name;
  v text;
  res jsonb;
BEGIN
  PERFORM gdpr._not_null(samples, 'samples');
  IF samples AND NOT pg_has_role(gdpr._caller(), 'gdpr_admin', 'MEMBER') THEN
    RAISE EXCEPTION 'only gdpr_admin may see sample values' USING ERRCODE = 'insufficient_privilege',
      HINT = 'Call gdpr.data_quality() without samples for the counts.';
  END IF;
  -- Format of each classified contact column whose kind is known.
  FOR c IN SELECT DISTINCT pc.tbl, pc.col FROM gdpr.personal_columns pc
            WHERE pc.category = 'contact' ORDER BY 1, 2 LOOP
    kind := gdpr._contact_kind(c.tbl, c.col);
    CONTINUE WHEN kind IS NULL;
    IF samples THEN
      PERFORM gdpr._require_privilege(c.tbl, 'SELECT', 'samples of gdpr.data_quality()');
    END IF;
    ccol := gdpr._country_column(c.tbl, c.col);
    v := format('t.%I::text', c.col);
    res := gdpr._quality_check(c.tbl, format('NOT %s', gdpr._contact_valid_sql(kind, v,
                                 CASE WHEN ccol IS NULL THEN 'NULL' ELSE format('t.%I::text', ccol) END)),
                               format('t.%I IS NOT NULL', c.col), v, samples);
    tbl := c.tbl; col := c.col; check_name := 'invalid ' || kind;
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
    -- Duplicates among the subjects themselves, by normalised e-mail or phone
    -- (compared as gdpr.is_suppressed compares them).
    CONTINUE WHEN kind = 'postcode' OR NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = c.tbl);
    res := gdpr._owner_query(c.tbl, format(
      $f$SELECT jsonb_build_array(coalesce(sum(n) FILTER (WHERE n > 1), 0), coalesce(sum(n), 0), %1$s)
           FROM (SELECT CASE WHEN %2$s LIKE '%%@%%' THEN lower(btrim(%2$s))
                             ELSE regexp_replace(regexp_replace(%2$s, '[^0-9]', '', 'g'), '^0', '33') END AS v,
                        count(*) AS n
                   FROM %3$s t WHERE t.%4$I IS NOT NULL GROUP BY 1) d$f$,
      CASE WHEN samples THEN '(array_agg(v ORDER BY v) FILTER (WHERE n > 1))[1:3]' ELSE 'NULL' END, v, c.tbl, c.col));
    check_name := 'duplicate ' || kind;
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
  END LOOP;
  -- Subjects idle for longer than the retention of their rows allows.
  -- (A policy with a row scope counts the rows of its scope only.)
  FOR c IN SELECT p.tbl, p.after_column, p.keep, s.id_column, gdpr._scope_cond(p, 't') AS scope,
                  gdpr._scope_text(p.scope_column, p.scope_values, p.scope_exclude) AS scope_text
             FROM gdpr.retention_policies p
             JOIN gdpr.subject_tables s ON s.tbl = p.tbl
            WHERE p.col IS NULL AND p.after_table = p.tbl ORDER BY 1, p.id LOOP
    IF samples THEN
      PERFORM gdpr._require_privilege(c.tbl, 'SELECT', 'samples of gdpr.data_quality()');
    END IF;
    res := gdpr._quality_check(c.tbl, concat_ws(' AND ', format('t.%I < now() - %L::interval', c.after_column, c.keep), c.scope),
                               coalesce(c.scope, 'true'), format('t.%I::text', c.id_column), samples);
    tbl := c.tbl; col := c.after_column;
    check_name := 'inactive beyond ' || c.keep::text || coalesce(' where ' || c.scope_text, '');
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
  END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.valid_email(text), gdpr.valid_phone(text, text), gdpr.valid_postcode(text, text),
  gdpr.validation_kinds(), gdpr.postcode_patterns() TO gdpr_admin, gdpr_auditor;
GRANT EXECUTE ON FUNCTION gdpr.set_validation(regclass, name, text, text, name) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.data_quality(boolean) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.validations TO gdpr_admin, gdpr_auditor;
