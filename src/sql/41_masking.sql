-- Masking and generalisation: for views, exports and retention.  All work on
-- characters, not bytes, so accents and multibyte names stay intact.

-- value with all but its first keep_start and last keep_end characters as '*';
-- a value too short to hide anything is hidden whole.
CREATE FUNCTION gdpr.mask(value text, keep_start int, keep_end int) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n int := length(value);
BEGIN
  IF keep_start < 0 OR keep_end < 0 THEN
    RAISE EXCEPTION 'keep_start and keep_end must not be negative' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF keep_start + keep_end >= n THEN
    RETURN repeat('*', n);
  END IF;
  RETURN left(value, keep_start) || repeat('*', n - keep_start - keep_end) || right(value, keep_end);
END
$$;

-- 'helene.martin@example.fr' -> 'h************@example.fr'
CREATE FUNCTION gdpr.mask_email(email text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN strpos(email, '@') > 1
              THEN gdpr.mask(split_part(email, '@', 1), 1, 0) || substr(email, strpos(email, '@'))
              ELSE gdpr.mask(email, 1, 0) END;

-- '+33 6 12 34 56 78' -> '+** * ** ** ** 78': every digit but the last two.
CREATE FUNCTION gdpr.mask_phone(phone text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  digits int := length(regexp_replace(phone, '[^0-9]', '', 'g'));
  out text := '';
  seen int := 0;
  ch text;
BEGIN
  FOREACH ch IN ARRAY regexp_split_to_array(phone, '') LOOP
    IF ch ~ '[0-9]' THEN
      seen := seen + 1;
      out := out || CASE WHEN seen > digits - 2 THEN ch ELSE '*' END;
    ELSE
      out := out || ch;
    END IF;
  END LOOP;
  RETURN out;
END
$$;

-- A timestamp rounded down to unit: year, quarter, month, week, day or hour.
CREATE FUNCTION gdpr.generalise(value timestamptz, unit text) RETURNS timestamptz
  LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._one_of(unit, ARRAY['year', 'quarter', 'month', 'week', 'day', 'hour'], 'generalisation unit');
  RETURN date_trunc(unit, value);
END
$$;

-- An age band of the given width on today's date: '30-39'.
CREATE FUNCTION gdpr.age_band(birth date, width int DEFAULT 10) RETURNS text
  LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  age int := extract(year FROM age(current_date, birth))::int;
BEGIN
  IF width < 1 THEN
    RAISE EXCEPTION 'width must be at least 1' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF birth > current_date THEN
    RAISE EXCEPTION 'birth date % is in the future', birth USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN format('%s-%s', age / width * width, age / width * width + width - 1);
END
$$;

-- A French postcode to its department: '75002' -> '75', Corsica '20000' ->
-- '2A', '20200' -> '2B', overseas '97411' -> '974'.  Not a French postcode: NULL.
CREATE FUNCTION gdpr.generalise_postcode(postcode text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE
    WHEN btrim(postcode) !~ '^[0-9]{5}$' THEN NULL
    WHEN btrim(postcode) LIKE '97%' OR btrim(postcode) LIKE '98%' THEN left(btrim(postcode), 3)
    WHEN btrim(postcode) LIKE '20%' THEN CASE WHEN btrim(postcode) < '20200' THEN '2A' ELSE '2B' END
    ELSE left(btrim(postcode), 2) END;
