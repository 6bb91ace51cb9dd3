-- Discovery: personal data nobody registered.  A column looks personal by
-- its name (English and French words) or by its values (e-mail addresses,
-- phone numbers, IBANs with a valid checksum, French NIRs with a valid key).
-- gdpr.discover() lists what it finds with the call that would register or
-- classify it; gdpr.unclassified_columns shows the auditor what registered
-- tables hold without a classification; an event trigger warns when a new
-- table or column of a schema holding registered tables looks personal.

-- What a column's name suggests: a kind (email, phone, name, ...) and the
-- category it belongs to, or NULLs.  camelCase is read as words
-- ("emailsPrimaryEmail" is emails_primary_email); accents are folded.
CREATE FUNCTION gdpr.personal_name_hint(col name, OUT kind text, OUT category text)
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

-- What a value looks like: 'iban' (ISO 13616 checksum), 'nir' (French social
-- security number with its key), 'email', 'phone', or NULL.
CREATE FUNCTION gdpr.looks_like(value text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s text := upper(regexp_replace(value, '[\s.-]', '', 'g'));
  digits text;
BEGIN
  IF s ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$' THEN
    -- Country and check digits to the end, letters as 10..35: mod 97 is 1.
    SELECT string_agg(CASE WHEN ch ~ '[A-Z]' THEN (ascii(ch) - 55)::text ELSE ch END, '' ORDER BY i)
      INTO digits
      FROM regexp_split_to_table(substr(s, 5) || substr(s, 1, 4), '') WITH ORDINALITY AS x(ch, i);
    IF digits::numeric % 97 = 1 THEN
      RETURN 'iban';
    END IF;
  END IF;
  IF s ~ '^[12][0-9]{4}(2A|2B|[0-9]{2})[0-9]{8}$' THEN
    -- Corsica's 2A and 2B count as 19 and 18; the key is 97 - (number mod 97).
    digits := replace(replace(substr(s, 1, 13), '2A', '19'), '2B', '18');
    IF 97 - digits::numeric % 97 = substr(s, 14)::numeric THEN
      RETURN 'nir';
    END IF;
  END IF;
  IF value ~* '[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}' THEN
    RETURN 'email';
  END IF;
  IF value ~ '^\s*(\+|00|0)[0-9][0-9 ().-]{7,19}$'
     AND length(regexp_replace(value, '[^0-9]', '', 'g')) BETWEEN 9 AND 15 THEN
    RETURN 'phone';
  END IF;
  RETURN NULL;
END
$$;

-- The columns of tbl that may hold data of their own: not keys, not
-- generated (they follow their sources), not dropped.
CREATE FUNCTION gdpr._plain_columns(tbl regclass)
  RETURNS TABLE (col name, attnum smallint, typ regtype, classified boolean)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT a.attname, a.attnum, a.atttypid::regtype,
         EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = _plain_columns.tbl AND pc.col = a.attname)
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = tbl AND c.contype IN ('p', 'f')
                      AND a.attnum = ANY (c.conkey))
     AND NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = _plain_columns.tbl
                      AND a.attname IN (r.subject_column, r.parent_column))
   ORDER BY a.attnum
$$;

-- Every column of a registered table that is neither classified nor a key:
-- the auditor's list of what the registry says nothing about.
CREATE VIEW gdpr.unclassified_columns AS
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       r.tbl,
       a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       h.kind AS looks_like,
       h.category AS suggested_category
  FROM gdpr.registered_tables r
  JOIN pg_class c ON c.oid = r.tbl
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = r.tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  LEFT JOIN LATERAL gdpr.personal_name_hint(a.attname) h ON true
 WHERE NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = r.tbl AND pc.col = a.attname)
   AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = r.tbl AND k.contype IN ('p', 'f')
                    AND a.attnum = ANY (k.conkey))
   AND a.attname NOT IN (r.subject_column, r.parent_column);
COMMENT ON VIEW gdpr.unclassified_columns IS
  'columns of registered tables that are neither classified nor keys, with what their name suggests';

-- The value kind most of a column's sampled values have (at least half of
-- them), or NULL.  At most 100 values are read, as the table's owner (the
-- caller's right to read them is checked by discover()); they are judged
-- here, outside the owner's statement.
CREATE FUNCTION gdpr._sampled_kind(tbl regclass, col name) RETURNS text
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sample jsonb := gdpr._owner_query(tbl, format(
    'SELECT coalesce(jsonb_agg(s.v), ''[]'') FROM (SELECT t.%I::text AS v FROM %s t WHERE t.%I IS NOT NULL LIMIT 100) s',
    col, tbl, col));
BEGIN
  RETURN (SELECT x.k FROM (SELECT gdpr.looks_like(v) AS k FROM jsonb_array_elements_text(sample) v) x
           WHERE x.k IS NOT NULL GROUP BY x.k HAVING 2 * count(*) >= jsonb_array_length(sample)
           ORDER BY count(*) DESC, x.k LIMIT 1);
END
$$;

-- The purpose and legal basis a suggested classify() call proposes: the most
-- used in the table's schema, else placeholders the DBA must replace.
CREATE FUNCTION gdpr._usual_purpose(tbl regclass, OUT purpose text, OUT legal_basis text)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(x.purpose, '<purpose>'), coalesce(x.legal_basis, '<legal basis>')
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
      SELECT pc.purpose, pc.legal_basis FROM gdpr.personal_columns pc JOIN pg_class c ON c.oid = pc.tbl
       WHERE c.relnamespace = (SELECT k.relnamespace FROM pg_class k WHERE k.oid = _usual_purpose.tbl)
       GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1) x ON true
$$;

-- Tables discovery looks at: ordinary and partitioned tables (not
-- partitions: their parent speaks for them) in the schemas matching pattern
-- (LIKE), outside the system schemas and the extension's own.
CREATE FUNCTION gdpr._discoverable_tables(schema_pattern text) RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'gdpr') AND n.nspname !~ '^pg_(toast|temp)'
     AND (schema_pattern IS NULL OR n.nspname LIKE schema_pattern)
     AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
   ORDER BY n.nspname, c.relname
$$;

-- The registration a table that looks personal needs: under the registered
-- table it has a foreign key to, else as a subject table of its own.
CREATE FUNCTION gdpr._suggest_registration(tbl regclass) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN EXISTS (SELECT FROM gdpr._registered_fkeys(tbl, NULL, NULL))
              THEN format('SELECT gdpr.register_table(%L);', gdpr.qualified_name(tbl))
              ELSE format('SELECT gdpr.register_subject_table(%L, %L);', gdpr.qualified_name(tbl),
                          coalesce(gdpr._key_column(tbl), '<id column>')) END;

CREATE FUNCTION gdpr.discover(schema_pattern text DEFAULT NULL)
  RETURNS TABLE (schema_name name, table_name name, column_name name, tbl regclass, registered boolean,
                 looks_like text, category text, found_by text, suggestion text)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
  c record;
  by_value text;
  usual record;
  cols text[];
  readable boolean;
BEGIN
  FOR t IN SELECT * FROM gdpr._discoverable_tables(schema_pattern) LOOP
    -- Values are sampled only in the tables the caller may read himself.
    readable := gdpr._holds_privileges(gdpr._caller(), t, 'SELECT');
    schema_name := (SELECT n.nspname FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = t);
    table_name := (SELECT k.relname FROM pg_class k WHERE k.oid = t);
    tbl := t;
    registered := EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = t);
    usual := gdpr._usual_purpose(t);
    cols := '{}';
    FOR c IN SELECT p.col, p.attnum, p.typ, h.kind, h.category
               FROM gdpr._plain_columns(t) p LEFT JOIN LATERAL gdpr.personal_name_hint(p.col) h ON true
              WHERE NOT p.classified LOOP
      by_value := NULL;
      IF readable AND c.typ IN ('text', 'character varying', 'character', 'json', 'jsonb') THEN
        by_value := gdpr._sampled_kind(t, c.col);
      END IF;
      CONTINUE WHEN c.kind IS NULL AND by_value IS NULL;
      column_name := c.col;
      looks_like := coalesce(c.kind, by_value);
      category := coalesce(c.category, CASE WHEN by_value IN ('iban') THEN 'financial'
                                            WHEN by_value IN ('nir') THEN 'identification' ELSE 'contact' END);
      found_by := concat_ws(' and ', CASE WHEN c.kind IS NOT NULL THEN 'name' END,
                            CASE WHEN by_value IS NOT NULL THEN 'values (' || by_value || ')' END);
      suggestion := format('SELECT gdpr.classify(%L, %L, %L, %L, %L%s);', gdpr.qualified_name(t), c.col, category,
                           usual.purpose, usual.legal_basis,
                           CASE WHEN category = 'sensitive' THEN ', ''<Art. 9(2) condition>''' ELSE '' END);
      cols := cols || c.col::text;
      RETURN NEXT;
    END LOOP;
    IF NOT registered AND cardinality(cols) > 0 THEN
      column_name := NULL; looks_like := NULL; category := NULL;
      found_by := 'columns ' || array_to_string(cols, ', ');
      suggestion := gdpr._suggest_registration(t);
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;

-- After CREATE TABLE or ALTER TABLE in a schema that holds registered tables:
-- a notice and a registry_changes row for each unclassified column whose name
-- looks personal, once per column: in a registered table only the columns the
-- snapshot does not know yet (added; this trigger fires before _on_ddl_end
-- refreshes it), in another table all of them.  Anything else returns at once.
CREATE FUNCTION gdpr._on_ddl_discover() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
  found text;
BEGIN
  IF NOT EXISTS (SELECT FROM gdpr.registered_tables) THEN
    RETURN;
  END IF;
  FOR t IN SELECT DISTINCT d.objid::regclass FROM pg_event_trigger_ddl_commands() d
             JOIN pg_class k ON k.oid = d.objid
            WHERE d.classid = 'pg_class'::regclass AND k.relkind IN ('r', 'p') AND NOT k.relispartition
              AND k.relpersistence <> 't'
              AND EXISTS (SELECT FROM gdpr.registered_tables r JOIN pg_class rc ON rc.oid = r.tbl
                           WHERE rc.relnamespace = k.relnamespace) LOOP
    WITH fresh AS (
      SELECT p.col, h.kind, h.category, gdpr.qualified_name(t) || '.' || quote_ident(p.col) AS object
        FROM gdpr._plain_columns(t) p CROSS JOIN LATERAL gdpr.personal_name_hint(p.col) h
       WHERE NOT p.classified AND h.kind IS NOT NULL
         AND NOT EXISTS (SELECT FROM gdpr.column_snapshot s WHERE s.tbl = t AND s.attnum = p.attnum)),
    noted AS (
      INSERT INTO gdpr.registry_changes (event, object, detail)
      SELECT 'personal-looking column', f.object,
             format('%s; its name suggests %s (%s)',
                    CASE WHEN EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = t)
                         THEN 'not classified' ELSE 'table not registered' END, f.category, f.kind)
        FROM fresh f
       WHERE NOT EXISTS (SELECT FROM gdpr.registry_changes x
                          WHERE x.event = 'personal-looking column' AND x.object = f.object)
      RETURNING object)
    SELECT string_agg(substr(n.object, length(gdpr.qualified_name(t)) + 2), ', ') INTO found FROM noted n;
    IF found IS NOT NULL THEN
      RAISE NOTICE 'table % has columns that look personal and are not classified: %', t, found
        USING HINT = 'See SELECT * FROM gdpr.discover(); register the table and classify its columns.';
    END IF;
  END LOOP;
END
$$;

CREATE EVENT TRIGGER crm_gdpr_ddl_discover ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION gdpr._on_ddl_discover();

GRANT EXECUTE ON FUNCTION gdpr.discover(text) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.personal_name_hint(name), gdpr.looks_like(text) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.unclassified_columns TO gdpr_auditor, gdpr_admin;
