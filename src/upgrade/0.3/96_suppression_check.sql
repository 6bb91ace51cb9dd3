-- The suppression list is checked by the access log's INSERT and UPDATE
-- statement triggers (log_write.c, suppression_gate.c), one query per
-- statement while the list is not empty, none while it is: the row trigger
-- gdpr_suppression that 60_rules.sql put on subject tables goes, with its
-- function (90_merged.sql no longer makes it).  It
-- cost each UPDATE of a subject table a second fetch of the old row and each
-- statement a trigger more (make bench-log).  Runs after 90_merged.sql.

CREATE OR REPLACE FUNCTION gdpr._subject_trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_subject_departed']::name[];

CREATE FUNCTION gdpr._check_suppression(tbl regclass, new_row jsonb, old_row jsonb) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[] := gdpr._contact_columns(tbl);
  brought text[] := '{}';       -- contact columns whose new value is an e-mail address or a phone
  mode text := gdpr._suppression_mode();
  c name;
  v text;
  s gdpr.suppressions;
BEGIN
  IF mode = 'off' THEN
    RETURN;
  END IF;
  FOREACH c IN ARRAY cols LOOP
    v := new_row ->> c;
    IF v IS DISTINCT FROM old_row ->> c AND (v LIKE '%@%' OR length(regexp_replace(v, '[^0-9]', '', 'g')) >= 6) THEN
      brought := brought || c::text;
    END IF;
  END LOOP;
  IF cardinality(brought) = 0 OR NOT gdpr._has_key() THEN
    RETURN;
  END IF;
  FOREACH c IN ARRAY brought LOOP
    v := new_row ->> c;
    SELECT * INTO s FROM gdpr.suppressions x WHERE x.ref = gdpr._contact_ref(v);
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

REVOKE ALL ON FUNCTION gdpr._check_suppression(regclass, jsonb, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION gdpr.classify(tbl regclass, col name, category text, purpose text,
                              legal_basis text, justification text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  justification := nullif(btrim(justification), '');
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.classify()');
  PERFORM gdpr._column(tbl, col);
  PERFORM gdpr._one_of(category, gdpr.data_categories(), 'category');
  PERFORM gdpr._one_of(legal_basis, gdpr.legal_bases(), 'legal basis');
  purpose := (gdpr._subject_purpose(purpose, tbl)).code;   -- the tenant's purpose of that name, else the global one
  IF category = 'sensitive' AND coalesce(btrim(justification), '') = '' THEN
    RAISE EXCEPTION 'a sensitive column needs a justification'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Special categories of data (Art. 9) may only be processed under one of its exceptions.',
            HINT = 'Say which Art. 9(2) condition applies in the justification argument.';
  ELSIF justification IS NULL THEN
    RAISE NOTICE 'column "%" of % is classified without a justification: the register shows it as not justified', col, tbl
      USING HINT = format('Say why purpose %s needs this column (data minimisation, Art. 5(1)(c)) in the justification argument.', purpose);
  END IF;
  -- One column has one category, whatever the purposes it serves.
  UPDATE gdpr.personal_columns c SET category = classify.category
   WHERE c.tbl = classify.tbl AND c.col = classify.col AND c.category <> classify.category;
  INSERT INTO gdpr.personal_columns AS c (tbl, col, purpose, category, legal_basis, justification)
    VALUES (tbl, col, purpose, category, legal_basis, justification)
    ON CONFLICT ON CONSTRAINT personal_columns_pkey DO UPDATE
      SET category = excluded.category, legal_basis = excluded.legal_basis,
          justification = excluded.justification, classified_at = now(), classified_by = session_user;
END
$$;

DO $$
DECLARE
  t record;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t IN SELECT g.tgrelid::regclass AS rel FROM pg_trigger g
            WHERE g.tgname = 'gdpr_suppression' AND NOT g.tgisinternal
              AND g.tgfoid IN (SELECT p.oid FROM pg_proc p
                                WHERE p.pronamespace = 'gdpr'::regnamespace
                                  AND p.proname = '_enforce_suppression') LOOP
    EXECUTE format('DROP TRIGGER gdpr_suppression ON %s', t.rel);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

-- The row trigger's function of 60_rules.sql.
DROP FUNCTION gdpr._enforce_suppression();
