-- crm_gdpr 0.1 as released (frozen: the base of the 0.1 -> 0.2 upgrade; never edit)
\echo Use "CREATE EXTENSION crm_gdpr" to load this file. \quit

-- ==== src/sql/00_schema.sql
-- Roles, module status and the validation helpers every other part uses.

-- Roles are cluster-wide: created when missing, never dropped by the extension
-- (another database of the cluster may use them).  gdpr_app is for the
-- applications that record consent and ask what they may do.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['gdpr_admin', 'gdpr_auditor', 'gdpr_app'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END
$$;

REVOKE ALL ON SCHEMA gdpr FROM PUBLIC;
GRANT USAGE ON SCHEMA gdpr TO gdpr_admin, gdpr_auditor, gdpr_app;

CREATE FUNCTION gdpr.preloaded() RETURNS boolean
  LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_preloaded';
COMMENT ON FUNCTION gdpr.preloaded() IS
  'true when crm_gdpr was loaded through shared_preload_libraries';

CREATE FUNCTION gdpr._require_preload(feature text) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_require_preload';

-- The vocabularies of the registry.  Functions rather than tables: they are
-- part of the extension's code, so pg_dump must not copy them as data.
CREATE FUNCTION gdpr.data_categories() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['identification', 'contact', 'behavioural', 'transactional',
               'financial', 'sensitive', 'free_text'];

CREATE FUNCTION gdpr.legal_bases() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['consent', 'contract', 'legal_obligation', 'vital_interest',
               'public_task', 'legitimate_interest'];

CREATE FUNCTION gdpr.retention_actions() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['delete', 'nullify', 'pseudonymise', 'generalise', 'keep'];

-- Raise 22004 when a required argument is NULL: PostgreSQL's own code for it.
CREATE FUNCTION gdpr._not_null(value anyelement, argname text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF value IS NULL THEN
    RAISE EXCEPTION '% must not be null', argname USING ERRCODE = 'null_value_not_allowed';
  END IF;
END
$$;

-- Raise 22004 with message (and hint) when a required text is NULL or blank.
CREATE FUNCTION gdpr._not_blank(value text, message text, hint text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coalesce(btrim(value), '') = '' THEN
    RAISE EXCEPTION '%', message USING ERRCODE = 'null_value_not_allowed', HINT = coalesce(hint, '');
  END IF;
END
$$;

-- Check that value is one of allowed (22023 with the list in the hint).
CREATE FUNCTION gdpr._one_of(value text, allowed text[], what text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(value, what);
  IF NOT value = ANY (allowed) THEN
    RAISE EXCEPTION 'unknown % "%"', what, value
      USING ERRCODE = 'invalid_parameter_value',
            HINT = format('Valid values: %s.', array_to_string(allowed, ', '));
  END IF;
  RETURN value;
END
$$;

-- A live column of tbl, with its type; 42703 otherwise.
CREATE FUNCTION gdpr._column(tbl regclass, col name, OUT attnum smallint, OUT typ regtype, OUT not_null boolean)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(col, 'column name');
  SELECT a.attnum, a.atttypid::regtype, a.attnotnull INTO attnum, typ, not_null
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'column "%" of table % does not exist', col, tbl
      USING ERRCODE = 'undefined_column';
  END IF;
END
$$;

-- Tables the registry accepts: ordinary or partitioned, outside the system
-- schemas and the extension's own schema, with a primary key.
CREATE FUNCTION gdpr._check_table(tbl regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c pg_class;
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  SELECT * INTO c FROM pg_class WHERE oid = tbl;
  IF c.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '% is not a table', tbl
      USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Only ordinary and partitioned tables can hold registered personal data.';
  END IF;
  IF c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                        'gdpr'::regnamespace)
     OR c.relpersistence = 't' THEN
    RAISE EXCEPTION 'table % cannot be registered', tbl
      USING ERRCODE = 'wrong_object_type',
            DETAIL = 'System tables, temporary tables and the extension''s own tables are not CRM data.';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = tbl AND contype = 'p') THEN
    RAISE EXCEPTION 'table % has no primary key', tbl
      USING ERRCODE = 'invalid_table_definition',
            HINT = 'Rows of personal data must be addressable: add a primary key, then register the table.';
  END IF;
END
$$;

-- Types whose values join with each other: the integer family, else equality.
CREATE FUNCTION gdpr._types_match(a regtype, b regtype) RETURNS boolean
  LANGUAGE sql IMMUTABLE
  RETURN a = b OR (a IN ('smallint', 'integer', 'bigint') AND b IN ('smallint', 'integer', 'bigint'));

-- ==== src/sql/10_registry.sql
-- The personal-data registry: which tables hold data subjects, which tables
-- refer to them, and which columns hold what, why and on which legal basis.
-- Tables are stored as regclass (a rename keeps working; pg_dump writes the
-- qualified name), columns by name (kept in step with renames by the event
-- triggers in 20_schema_sync.sql).

CREATE TABLE gdpr.subject_tables (
  tbl            regclass PRIMARY KEY,
  id_column      name NOT NULL,
  registered_at  timestamptz NOT NULL DEFAULT now(),
  registered_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.subject_tables IS 'tables whose rows are data subjects';

-- Every table holding personal data, subject tables included (their parent
-- is themselves), so that one table answers "where is this person's data".
CREATE TABLE gdpr.registered_tables (
  tbl            regclass PRIMARY KEY,
  subject_table  regclass NOT NULL REFERENCES gdpr.subject_tables ON DELETE CASCADE,
  subject_column name NOT NULL,
  parent_table   regclass NOT NULL,
  parent_column  name NOT NULL,
  registered_at  timestamptz NOT NULL DEFAULT now(),
  registered_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.registered_tables IS
  'tables holding personal data; subject_column refers to parent_table.parent_column, up to subject_table';
CREATE INDEX ON gdpr.registered_tables (parent_table);

CREATE TABLE gdpr.purposes (
  code         text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,62}$'),
  description  text NOT NULL CHECK (btrim(description) <> ''),
  legal_basis  text NOT NULL CHECK (legal_basis = ANY (gdpr.legal_bases())),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gdpr.purposes IS 'processing purposes (Art. 5(1)(b), Art. 30(1)(b))';

-- Every version of a purpose's information notice, with its digest: what a
-- person was shown when he consented or was informed.
CREATE TABLE gdpr.purpose_notices (
  purpose       text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  version       int NOT NULL CHECK (version > 0),
  notice        text NOT NULL,
  digest        bytea NOT NULL,
  published_at  timestamptz NOT NULL DEFAULT now(),
  published_by  name NOT NULL DEFAULT session_user,
  PRIMARY KEY (purpose, version)
);
COMMENT ON COLUMN gdpr.purpose_notices.digest IS 'SHA-256 of the notice text (UTF-8)';

CREATE TABLE gdpr.personal_columns (
  tbl            regclass NOT NULL REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  col            name NOT NULL,
  purpose        text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  category       text NOT NULL CHECK (category = ANY (gdpr.data_categories())),
  legal_basis    text NOT NULL CHECK (legal_basis = ANY (gdpr.legal_bases())),
  justification  text,
  classified_at  timestamptz NOT NULL DEFAULT now(),
  classified_by  name NOT NULL DEFAULT session_user,
  PRIMARY KEY (tbl, col, purpose)
);
COMMENT ON TABLE gdpr.personal_columns IS 'classification of personal-data columns, per purpose';
CREATE INDEX ON gdpr.personal_columns (purpose);

CREATE TABLE gdpr.retention_policies (
  id            serial PRIMARY KEY,
  tbl           regclass NOT NULL REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  col           name,
  keep          interval NOT NULL CHECK (keep > interval '0'),
  after_table   regclass NOT NULL,
  after_column  name NOT NULL,
  action        text NOT NULL CHECK (action = ANY (gdpr.retention_actions())),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  updated_by    name NOT NULL DEFAULT session_user,
  UNIQUE NULLS NOT DISTINCT (tbl, col)
);
COMMENT ON TABLE gdpr.retention_policies IS
  'how long data is kept: col NULL is the whole row; the period runs from after_table.after_column';

CREATE TABLE gdpr.recipients (
  id           serial PRIMARY KEY,
  name         text NOT NULL CHECK (btrim(name) <> ''),
  country      char(2) NOT NULL,
  purpose      text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  safeguard    text,
  outside_eea  boolean NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (name, purpose),
  CHECK (NOT outside_eea OR safeguard IS NOT NULL)
);
COMMENT ON TABLE gdpr.recipients IS 'recipients of personal data per purpose (Art. 30(1)(d), (e))';

-- What the schema did to the registry: drops and renames seen by the event
-- triggers, so that an auditor sees why a policy disappeared.
CREATE TABLE gdpr.registry_changes (
  id       bigserial PRIMARY KEY,
  at       timestamptz NOT NULL DEFAULT now(),
  by_role  name NOT NULL DEFAULT session_user,
  event    text NOT NULL,
  object   text NOT NULL,
  detail   text
);

SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_tables', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.registered_tables', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purposes', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purpose_notices', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.personal_columns', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.retention_policies', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.retention_policies_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.recipients', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.recipients_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.registry_changes', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.registry_changes_id_seq', '');

-- 42704 with a hint when tbl is not in the registry.
CREATE FUNCTION gdpr._registered(tbl regclass) RETURNS gdpr.registered_tables
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables;
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  SELECT * INTO r FROM gdpr.registered_tables t WHERE t.tbl = _registered.tbl;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table % is not registered', tbl
      USING ERRCODE = 'undefined_object',
            HINT = 'Register it first with gdpr.register_subject_table() or gdpr.register_table().';
  END IF;
  RETURN r;
END
$$;

-- The single-column key of tbl that children refer to: its one-column primary key.
CREATE FUNCTION gdpr._key_column(tbl regclass) RETURNS name
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT a.attname FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           WHERE c.conrelid = tbl AND c.contype = 'p' AND cardinality(c.conkey) = 1);

CREATE FUNCTION gdpr.register_subject_table(tbl regclass, id_column name) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  old_id name;
BEGIN
  PERFORM gdpr._check_table(tbl);
  PERFORM gdpr._column(tbl, id_column);
  IF NOT EXISTS (SELECT FROM pg_constraint c
                  WHERE c.conrelid = tbl AND c.contype IN ('p', 'u')
                    AND c.conkey = ARRAY[(gdpr._column(tbl, id_column)).attnum]) THEN
    RAISE EXCEPTION 'column "%" does not identify the rows of %', id_column, tbl
      USING ERRCODE = 'invalid_table_definition',
            DETAIL = 'A subject''s id must be the primary key or a single-column unique constraint.';
  END IF;
  IF EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = register_subject_table.tbl
               AND r.subject_table <> r.tbl) THEN
    RAISE EXCEPTION 'table % is already registered as referring to a subject table', tbl
      USING ERRCODE = 'duplicate_object',
            HINT = 'Unregister it with gdpr.unregister_table() first.';
  END IF;
  SELECT s.id_column INTO old_id FROM gdpr.subject_tables s WHERE s.tbl = register_subject_table.tbl;
  IF old_id IS NOT NULL AND old_id <> id_column
     AND EXISTS (SELECT FROM gdpr.registered_tables r
                  WHERE r.parent_table = register_subject_table.tbl AND r.tbl <> r.parent_table) THEN
    RAISE EXCEPTION 'cannot change the id column of % while tables refer to it', tbl
      USING ERRCODE = 'dependent_objects_still_exist',
            HINT = 'Unregister the tables registered under it first.';
  END IF;
  -- Registering again updates the id column: the call is idempotent.
  INSERT INTO gdpr.subject_tables AS s (tbl, id_column) VALUES (tbl, id_column)
    ON CONFLICT ON CONSTRAINT subject_tables_pkey DO UPDATE SET id_column = excluded.id_column;
  INSERT INTO gdpr.registered_tables AS r (tbl, subject_table, subject_column, parent_table, parent_column)
    VALUES (tbl, tbl, id_column, tbl, id_column)
    ON CONFLICT ON CONSTRAINT registered_tables_pkey DO UPDATE SET subject_column = excluded.subject_column,
                                    parent_column = excluded.parent_column;
  PERFORM gdpr._snapshot_columns(tbl);
  PERFORM gdpr._attach_triggers(tbl);
END
$$;

-- The single-column foreign keys of tbl that point at registered tables,
-- optionally only those on column col or towards table target.
CREATE FUNCTION gdpr._registered_fkeys(tbl regclass, col name, target regclass)
  RETURNS TABLE (fk_column name, parent_table regclass, parent_column name)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT a.attname, c.confrelid::regclass, pa.attname
    FROM pg_constraint c
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
    JOIN gdpr.registered_tables r ON r.tbl = c.confrelid
   WHERE c.conrelid = _registered_fkeys.tbl AND c.contype = 'f' AND cardinality(c.conkey) = 1
     AND c.confrelid <> _registered_fkeys.tbl
     AND (_registered_fkeys.col IS NULL OR a.attname = _registered_fkeys.col)
     AND (_registered_fkeys.target IS NULL OR c.confrelid = _registered_fkeys.target)
   ORDER BY 1, 2
$$;

CREATE FUNCTION gdpr.register_table(tbl regclass, subject_column name DEFAULT NULL,
                                    subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  fks record;
  n int;
  parent gdpr.registered_tables;
  p_table regclass;
  p_column name;
  s_column name := subject_column;
  col_type regtype;
  key_type regtype;
BEGIN
  PERFORM gdpr._check_table(tbl);
  IF EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = register_table.tbl) THEN
    RAISE EXCEPTION 'table % is registered as a subject table', tbl
      USING ERRCODE = 'duplicate_object',
            HINT = 'A subject table is already registered; gdpr.register_table() is for the tables that refer to subjects.';
  END IF;
  IF subject_table IS NOT NULL THEN
    parent := gdpr._registered(subject_table);
  END IF;
  IF s_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, s_column);
  END IF;

  n := 0;
  FOR fks IN SELECT * FROM gdpr._registered_fkeys(tbl, subject_column, subject_table) LOOP
    n := n + 1;
    s_column := fks.fk_column;
    p_table := fks.parent_table;
    p_column := fks.parent_column;
  END LOOP;
  IF n > 1 THEN
    RAISE EXCEPTION 'table % has several foreign keys to registered tables', tbl
      USING ERRCODE = 'ambiguous_parameter',
            DETAIL = (SELECT string_agg(format('%I -> %s.%I', f.fk_column, f.parent_table, f.parent_column), ', ')
                        FROM gdpr._registered_fkeys(tbl, subject_column, subject_table) f),
            HINT = 'Name the column that refers to the data subject in subject_column, or the table in subject_table.';
  ELSIF n = 0 AND subject_column IS NULL THEN
    RAISE EXCEPTION 'table % has no foreign key to a registered table', tbl
      USING ERRCODE = 'undefined_object',
            HINT = 'Name the column that refers to the data subject in subject_column, or register the referenced table first.';
  ELSIF n = 0 THEN
    -- A column without a foreign key: it refers to the given table, or to
    -- the only subject table when there is just one.
    s_column := subject_column;
    IF subject_table IS NULL THEN
      IF (SELECT count(*) FROM gdpr.subject_tables) <> 1 THEN
        RAISE EXCEPTION 'cannot tell which table column "%" of % refers to', subject_column, tbl
          USING ERRCODE = 'undefined_object',
                DETAIL = format('There is no foreign key on it and %s subject tables are registered.',
                                (SELECT count(*) FROM gdpr.subject_tables)),
                HINT = 'Pass subject_table.';
      END IF;
      parent := gdpr._registered((SELECT s.tbl FROM gdpr.subject_tables s));
    END IF;
    p_table := parent.tbl;
    p_column := gdpr._key_column(p_table);
    IF p_column IS NULL THEN
      RAISE EXCEPTION 'table % has no single-column primary key to refer to', p_table
        USING ERRCODE = 'invalid_table_definition';
    END IF;
    IF p_table = parent.subject_table THEN
      p_column := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = p_table);
    END IF;
  END IF;

  col_type := (gdpr._column(tbl, s_column)).typ;
  key_type := (gdpr._column(p_table, p_column)).typ;
  IF NOT gdpr._types_match(col_type, key_type) THEN
    RAISE EXCEPTION 'column "%" of % is of type %, but %.% is of type %',
                    s_column, tbl, col_type, p_table, p_column, key_type
      USING ERRCODE = 'datatype_mismatch';
  END IF;
  parent := gdpr._registered(p_table);
  IF EXISTS (WITH RECURSIVE up AS (
               SELECT r.tbl, r.parent_table FROM gdpr.registered_tables r WHERE r.tbl = p_table
               UNION
               SELECT r.tbl, r.parent_table FROM gdpr.registered_tables r JOIN up ON r.tbl = up.parent_table
              WHERE r.tbl <> r.parent_table)
             SELECT FROM up WHERE up.tbl = register_table.tbl) THEN
    RAISE EXCEPTION 'registering % under % would make a cycle', tbl, p_table
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  -- Registering again moves the table under its new parent: idempotent.
  INSERT INTO gdpr.registered_tables AS r (tbl, subject_table, subject_column, parent_table, parent_column)
    VALUES (tbl, parent.subject_table, s_column, p_table, p_column)
    ON CONFLICT ON CONSTRAINT registered_tables_pkey DO UPDATE
      SET subject_table = excluded.subject_table, subject_column = excluded.subject_column,
          parent_table = excluded.parent_table, parent_column = excluded.parent_column;
  -- Tables under this one follow it to its subject table.
  WITH RECURSIVE down AS (
    SELECT r.tbl FROM gdpr.registered_tables r WHERE r.parent_table = register_table.tbl AND r.tbl <> r.parent_table
    UNION
    SELECT r.tbl FROM gdpr.registered_tables r JOIN down ON r.parent_table = down.tbl)
  UPDATE gdpr.registered_tables r SET subject_table = parent.subject_table
    FROM down WHERE r.tbl = down.tbl;
  PERFORM gdpr._snapshot_columns(tbl);
  PERFORM gdpr._attach_triggers(tbl);
END
$$;

CREATE FUNCTION gdpr.unregister_table(tbl regclass) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  children text;
  n_cols int;
  n_pol int;
BEGIN
  PERFORM gdpr._registered(tbl);
  SELECT string_agg(r.tbl::text, ', ') INTO children
    FROM gdpr.registered_tables r WHERE r.parent_table = unregister_table.tbl AND r.tbl <> r.parent_table;
  IF children IS NOT NULL THEN
    RAISE EXCEPTION 'cannot unregister % because other registered tables refer to it', tbl
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = format('Registered under it: %s.', children),
            HINT = 'Unregister those tables first.';
  END IF;
  SELECT count(*) INTO n_cols FROM gdpr.personal_columns c WHERE c.tbl = unregister_table.tbl;
  SELECT count(*) INTO n_pol FROM gdpr.retention_policies p WHERE p.tbl = unregister_table.tbl;
  DELETE FROM gdpr.registered_tables r WHERE r.tbl = unregister_table.tbl;
  DELETE FROM gdpr.subject_tables s WHERE s.tbl = unregister_table.tbl;
  DELETE FROM gdpr.column_snapshot s WHERE s.tbl = unregister_table.tbl;
  PERFORM gdpr._detach_triggers(tbl);
  IF n_cols + n_pol > 0 THEN
    RAISE NOTICE 'table % unregistered with % column classification(s) and % retention policy(ies)',
                 tbl, n_cols, n_pol;
  END IF;
END
$$;

CREATE FUNCTION gdpr.classify(tbl regclass, col name, category text, purpose text,
                              legal_basis text, justification text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._column(tbl, col);
  PERFORM gdpr._one_of(category, gdpr.data_categories(), 'category');
  PERFORM gdpr._one_of(legal_basis, gdpr.legal_bases(), 'legal basis');
  PERFORM gdpr._purpose(purpose);
  IF category = 'sensitive' AND coalesce(btrim(justification), '') = '' THEN
    RAISE EXCEPTION 'a sensitive column needs a justification'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Special categories of data (Art. 9) may only be processed under one of its exceptions.',
            HINT = 'Say which Art. 9(2) condition applies in the justification argument.';
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

CREATE FUNCTION gdpr.set_retention(tbl regclass, col name, keep interval, after_column name,
                                   action text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg gdpr.registered_tables := gdpr._registered(tbl);
  anchor regclass;
  anchor_type regtype;
  target record;
BEGIN
  PERFORM gdpr._not_null(keep, 'keep');
  PERFORM gdpr._not_null(after_column, 'after_column');
  PERFORM gdpr._one_of(action, gdpr.retention_actions(), 'retention action');
  IF keep <= interval '0' THEN
    RAISE EXCEPTION 'retention period must be positive'
      USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', keep);
  END IF;
  -- The period runs from a column of the table itself, else of the subject
  -- table (the subject's last activity then governs all his rows).
  anchor := CASE WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = after_column
                                AND a.attnum > 0 AND NOT a.attisdropped)
                 THEN tbl ELSE reg.subject_table END;
  anchor_type := (gdpr._column(anchor, after_column)).typ;
  IF anchor_type NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
    RAISE EXCEPTION 'column "%" of % is of type %, not a date or timestamp', after_column, anchor, anchor_type
      USING ERRCODE = 'datatype_mismatch';
  END IF;

  IF col IS NULL THEN
    IF action NOT IN ('delete', 'keep') THEN
      RAISE EXCEPTION 'action "%" needs a column', action
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A policy on the whole row (col NULL) can only delete or keep.';
    END IF;
  ELSE
    target := gdpr._column(tbl, col);
    IF NOT EXISTS (SELECT FROM gdpr.personal_columns c WHERE c.tbl = set_retention.tbl AND c.col = set_retention.col) THEN
      RAISE EXCEPTION 'column "%" of % is not classified', col, tbl
        USING ERRCODE = 'undefined_object',
              HINT = 'Classify it with gdpr.classify() first: a retention period needs a purpose.';
    END IF;
    PERFORM gdpr._check_column_action(tbl, col, target.typ, target.not_null, action);
  END IF;

  INSERT INTO gdpr.retention_policies AS p (tbl, col, keep, after_table, after_column, action)
    VALUES (tbl, col, keep, anchor, after_column, action)
    ON CONFLICT ON CONSTRAINT retention_policies_tbl_col_key DO UPDATE
      SET keep = excluded.keep, after_table = excluded.after_table, after_column = excluded.after_column,
          action = excluded.action, updated_at = now(), updated_by = session_user;
END
$$;

-- Whether action can apply to one column of this type.
CREATE FUNCTION gdpr._check_column_action(tbl regclass, col name, typ regtype, not_null boolean, action text)
  RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg gdpr.registered_tables := gdpr._registered(tbl);
  is_key boolean;
BEGIN
  IF action = 'delete' THEN
    RAISE EXCEPTION 'action "delete" removes whole rows'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass col => NULL to delete rows, or use "nullify" to clear one column.';
  END IF;
  is_key := col = reg.subject_column
            OR EXISTS (SELECT FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid
                         AND a.attnum = ANY (c.conkey)
                        WHERE c.conrelid = tbl AND c.contype IN ('p', 'f') AND a.attname = col);
  IF action IN ('nullify', 'pseudonymise', 'generalise') AND is_key THEN
    RAISE EXCEPTION 'column "%" of % is a key: action "%" cannot apply to it', col, tbl, action
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Delete the rows instead (col NULL, action "delete").';
  END IF;
  IF action = 'nullify' AND not_null THEN
    RAISE EXCEPTION 'column "%" of % is NOT NULL and cannot be nullified', col, tbl
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use "pseudonymise" or "generalise", or delete the rows.';
  END IF;
  IF action = 'pseudonymise' AND typ NOT IN ('text', 'character varying', 'character') THEN
    RAISE EXCEPTION 'column "%" of % is of type %; only text columns can be pseudonymised', col, tbl, typ
      USING ERRCODE = 'datatype_mismatch';
  END IF;
  IF action = 'generalise' AND typ NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone',
                                          'text', 'character varying', 'character') THEN
    RAISE EXCEPTION 'column "%" of % is of type %; only dates, timestamps and postcodes can be generalised',
                    col, tbl, typ
      USING ERRCODE = 'datatype_mismatch';
  END IF;
  IF action = 'pseudonymise' AND to_regprocedure('gdpr.pseudonymise(text,text)') IS NULL
     OR action = 'generalise' AND to_regprocedure('gdpr.generalise(timestamp with time zone,text)') IS NULL THEN
    RAISE EXCEPTION 'retention action "%" is not available in this version', action
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Use "nullify" or "delete" for now.';
  END IF;
END
$$;

-- ==== src/sql/15_purposes.sql
-- Purposes with their versioned notices, and recipients with transfers.

-- ISO 3166-1 alpha-2 country codes.
CREATE FUNCTION gdpr.iso_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array(
    'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ '
    'BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM '
    'DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS '
    'GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN '
    'KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ '
    'MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM '
    'PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV '
    'SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI '
    'VN VU WF WS YE YT ZA ZM ZW', ' ');

-- The EU member states and the three other EEA states: no transfer safeguard needed.
CREATE FUNCTION gdpr.eea_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array(
    'AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK IS LI NO', ' ');

-- Countries with a general adequacy decision of the Commission (Art. 45).
-- The United States is left out on purpose: its decision (EU-US Data Privacy
-- Framework) covers certified organisations only, so it must be stated.
CREATE FUNCTION gdpr.adequate_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array('AD AR CA CH FO GB GG IL IM JE JP KR NZ UY', ' ');

CREATE FUNCTION gdpr.transfer_safeguards() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['adequacy_decision', 'scc', 'bcr', 'code_of_conduct', 'certification',
               'ad_hoc_clauses', 'art49_derogation'];

-- The purpose row, or 42704 with a hint.
CREATE FUNCTION gdpr._purpose(code text) RETURNS gdpr.purposes
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p gdpr.purposes;
BEGIN
  PERFORM gdpr._not_null(code, 'purpose');
  SELECT * INTO p FROM gdpr.purposes x WHERE x.code = _purpose.code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'purpose "%" does not exist', code
      USING ERRCODE = 'undefined_object',
            HINT = 'Define it first with gdpr.define_purpose().';
  END IF;
  RETURN p;
END
$$;

CREATE FUNCTION gdpr.define_purpose(code text, description text, legal_basis text,
                                    notice text DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  old gdpr.purposes;
  latest gdpr.purpose_notices;
  digest bytea;
BEGIN
  PERFORM gdpr._not_null(code, 'code');
  IF code !~ '^[a-z][a-z0-9_]{0,62}$' THEN
    RAISE EXCEPTION 'invalid purpose code "%"', code
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A purpose code is lower case letters, digits and underscores, starting with a letter (at most 63).';
  END IF;
  PERFORM gdpr._not_blank(description, 'a purpose needs a description');
  PERFORM gdpr._one_of(legal_basis, gdpr.legal_bases(), 'legal basis');
  IF notice IS NOT NULL AND btrim(notice) = '' THEN
    RAISE EXCEPTION 'an information notice must not be empty' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT * INTO old FROM gdpr.purposes p WHERE p.code = define_purpose.code FOR UPDATE;
  IF FOUND AND old.legal_basis <> legal_basis THEN
    -- Art. 5 and the EDPB: a purpose may not swap its legal basis afterwards.
    RAISE EXCEPTION 'purpose "%" is based on %, not %', code, old.legal_basis, legal_basis
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'The legal basis of a processing cannot be changed once it has been declared.',
            HINT = 'Define a new purpose for processing on another legal basis.';
  END IF;
  INSERT INTO gdpr.purposes AS p (code, description, legal_basis)
    VALUES (code, description, legal_basis)
    ON CONFLICT ON CONSTRAINT purposes_pkey DO UPDATE
      SET description = excluded.description, updated_at = now()
      WHERE p.description IS DISTINCT FROM excluded.description;

  SELECT * INTO latest FROM gdpr.purpose_notices n
   WHERE n.purpose = define_purpose.code ORDER BY n.version DESC LIMIT 1;
  IF notice IS NULL THEN
    RETURN coalesce(latest.version, 0);
  END IF;
  digest := sha256(convert_to(notice, 'UTF8'));
  IF latest.digest IS NOT DISTINCT FROM digest THEN
    RETURN latest.version;           -- the same text again is the same version
  END IF;
  INSERT INTO gdpr.purpose_notices (purpose, version, notice, digest)
    VALUES (code, coalesce(latest.version, 0) + 1, notice, digest);
  RETURN coalesce(latest.version, 0) + 1;
END
$$;

CREATE FUNCTION gdpr.add_recipient(name text, country text, purpose text,
                                   safeguard text DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cc text := upper(btrim(country));
  outside boolean;
  sg text := safeguard;
  rid int;
BEGIN
  PERFORM gdpr._not_blank(name, 'a recipient needs a name');
  PERFORM gdpr._not_null(country, 'country');
  IF NOT cc = ANY (gdpr.iso_countries()) THEN
    RAISE EXCEPTION 'unknown country code "%"', country
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an ISO 3166-1 alpha-2 code such as FR or US.';
  END IF;
  PERFORM gdpr._purpose(purpose);
  IF sg IS NOT NULL THEN
    PERFORM gdpr._one_of(sg, gdpr.transfer_safeguards(), 'transfer safeguard');
  END IF;
  outside := NOT cc = ANY (gdpr.eea_countries());
  IF outside AND sg IS NULL AND cc = ANY (gdpr.adequate_countries()) THEN
    sg := 'adequacy_decision';
  END IF;
  IF outside AND sg IS NULL THEN
    RAISE EXCEPTION 'recipient "%" in % is outside the EU/EEA and has no transfer safeguard', name, cc
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Chapter V of the GDPR allows a transfer only under an adequacy decision or appropriate safeguards.',
            HINT = format('Pass safeguard, one of: %s.', array_to_string(gdpr.transfer_safeguards(), ', '));
  END IF;
  INSERT INTO gdpr.recipients AS r (name, country, purpose, safeguard, outside_eea)
    VALUES (btrim(name), cc, purpose, sg, outside)
    ON CONFLICT ON CONSTRAINT recipients_name_purpose_key DO UPDATE
      SET country = excluded.country, safeguard = excluded.safeguard,
          outside_eea = excluded.outside_eea, updated_at = now()
    RETURNING r.id INTO rid;
  RETURN rid;
END
$$;

-- ==== src/sql/20_schema_sync.sql
-- The registry follows the schema.  Tables are stored by OID, so renaming a
-- table needs nothing.  Columns are stored by name (names survive pg_dump,
-- attribute numbers do not), so a snapshot of each registered table's columns
-- lets the event triggers tell a rename from a drop.

CREATE TABLE gdpr.column_snapshot (
  tbl     regclass NOT NULL,
  attnum  smallint NOT NULL,
  attname name NOT NULL,
  PRIMARY KEY (tbl, attnum)
);
COMMENT ON TABLE gdpr.column_snapshot IS
  'internal: column names of registered tables as last seen; rebuilt after a restore';

CREATE FUNCTION gdpr._snapshot_columns(tbl regclass) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  DELETE FROM gdpr.column_snapshot s WHERE s.tbl = _snapshot_columns.tbl;
  INSERT INTO gdpr.column_snapshot (tbl, attnum, attname)
    SELECT a.attrelid, a.attnum, a.attname FROM pg_attribute a
     WHERE a.attrelid = _snapshot_columns.tbl AND a.attnum > 0 AND NOT a.attisdropped;
$$;

CREATE FUNCTION gdpr._note_change(event text, object text, detail text) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  INSERT INTO gdpr.registry_changes (event, object, detail) VALUES (event, object, detail);
$$;

-- Rename every registry reference to column old of tbl.
CREATE FUNCTION gdpr._rename_column(tbl regclass, old name, new name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.subject_tables s SET id_column = new WHERE s.tbl = _rename_column.tbl AND s.id_column = old;
  UPDATE gdpr.registered_tables r SET subject_column = new
   WHERE r.tbl = _rename_column.tbl AND r.subject_column = old;
  UPDATE gdpr.registered_tables r SET parent_column = new
   WHERE r.parent_table = _rename_column.tbl AND r.parent_column = old;
  UPDATE gdpr.personal_columns c SET col = new WHERE c.tbl = _rename_column.tbl AND c.col = old;
  UPDATE gdpr.retention_policies p SET col = new WHERE p.tbl = _rename_column.tbl AND p.col = old;
  UPDATE gdpr.retention_policies p SET after_column = new
   WHERE p.after_table = _rename_column.tbl AND p.after_column = old;
  PERFORM gdpr._note_change('column renamed', format('%s.%I', tbl, old), format('now %I', new));
END
$$;

-- Forget column col of tbl: a registration that needs it goes with it.
CREATE FUNCTION gdpr._forget_column(tbl regclass, col name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  what text := format('%s.%I', tbl, col);
BEGIN
  FOR r IN SELECT x.tbl FROM gdpr.registered_tables x
            WHERE x.tbl = _forget_column.tbl AND x.subject_column = col
               OR x.parent_table = _forget_column.tbl AND x.parent_column = col AND x.tbl <> x.parent_table
  LOOP
    -- A child may already have gone with its parent in an earlier turn.
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = r.tbl);
    PERFORM gdpr._forget_table(r.tbl, r.tbl::text, format('its subject column %s was dropped', what));
  END LOOP;
  DELETE FROM gdpr.personal_columns c WHERE c.tbl = _forget_column.tbl AND c.col = _forget_column.col;
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'classification removed');
  END IF;
  DELETE FROM gdpr.retention_policies p
   WHERE p.tbl = _forget_column.tbl AND p.col = _forget_column.col
      OR p.after_table = _forget_column.tbl AND p.after_column = _forget_column.col;
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'retention policy removed');
    RAISE WARNING 'retention policies on or counted from % were removed', what
      USING HINT = 'Set a new policy with gdpr.set_retention() if the data must still expire.';
  END IF;
END
$$;

-- Forget a registered table and every table registered under it.  A child's
-- data does not stop being personal when its parent goes, so say so loudly.
-- label names the table (a dropped table's OID no longer prints as a name).
CREATE FUNCTION gdpr._forget_table(tbl regclass, label text, why text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT x.tbl FROM gdpr.registered_tables x
            WHERE x.parent_table = _forget_table.tbl AND x.tbl <> x.parent_table LOOP
    PERFORM gdpr._forget_table(r.tbl, r.tbl::text, format('the table it referred to (%s) went away', label));
    IF EXISTS (SELECT FROM pg_class c WHERE c.oid = r.tbl) THEN
      RAISE WARNING 'table % is no longer registered: the table it referred to (%) went away', r.tbl, label
        USING HINT = 'Register it again under another table if it still holds personal data.';
    END IF;
  END LOOP;
  PERFORM gdpr._detach_triggers(tbl);
  DELETE FROM gdpr.registered_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.subject_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.column_snapshot x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.retention_policies p WHERE p.after_table = _forget_table.tbl;
  PERFORM gdpr._note_change('table unregistered', label, why);
END
$$;

-- Before ALTER or DROP: make sure every registered table has a snapshot (a
-- restored database starts without one), while the columns are still there.
CREATE FUNCTION gdpr._on_ddl_start() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO gdpr.column_snapshot (tbl, attnum, attname)
    SELECT a.attrelid, a.attnum, a.attname
      FROM gdpr.registered_tables r JOIN pg_attribute a ON a.attrelid = r.tbl
     WHERE a.attnum > 0 AND NOT a.attisdropped
       AND NOT EXISTS (SELECT FROM gdpr.column_snapshot s WHERE s.tbl = r.tbl);
END
$$;

-- After ALTER TABLE on a registered table: apply renames, refresh the snapshot.
CREATE FUNCTION gdpr._on_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
  r record;
BEGIN
  FOR t IN SELECT DISTINCT c.objid::regclass FROM pg_event_trigger_ddl_commands() c
             JOIN gdpr.registered_tables x ON x.tbl = c.objid
            WHERE c.classid = 'pg_class'::regclass LOOP
    -- An empty snapshot (after a restore) has nothing to compare with.
    FOR r IN SELECT s.attname AS old, a.attname AS new
               FROM gdpr.column_snapshot s
               JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attnum = s.attnum AND NOT a.attisdropped
              WHERE s.tbl = t AND a.attname <> s.attname LOOP
      PERFORM gdpr._rename_column(t, r.old, r.new);
    END LOOP;
    PERFORM gdpr._snapshot_columns(t);
  END LOOP;
END
$$;

-- After DROP: forget dropped tables and columns.
CREATE FUNCTION gdpr._on_sql_drop() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT o.objid, o.objsubid, o.object_identity FROM pg_event_trigger_dropped_objects() o
            WHERE o.classid = 'pg_class'::regclass AND o.object_type IN ('table', 'table column')
              AND EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = o.objid)
            ORDER BY o.objsubid DESC LOOP
    IF d.objsubid = 0 THEN
      -- A dropped table may already be gone from the registry with its parent.
      IF EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = d.objid) THEN
        PERFORM gdpr._forget_table(d.objid::regclass, d.object_identity, 'table dropped');
      END IF;
    ELSE
      PERFORM gdpr._forget_column(d.objid::regclass,
                                  (SELECT s.attname FROM gdpr.column_snapshot s
                                    WHERE s.tbl = d.objid AND s.attnum = d.objsubid));
      PERFORM gdpr._snapshot_columns(d.objid::regclass);
    END IF;
  END LOOP;
END
$$;

CREATE EVENT TRIGGER crm_gdpr_ddl_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION gdpr._on_ddl_end();
CREATE EVENT TRIGGER crm_gdpr_ddl_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
  EXECUTE FUNCTION gdpr._on_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_sql_drop ON sql_drop
  EXECUTE FUNCTION gdpr._on_sql_drop();

-- ==== src/sql/25_triggers.sql
-- The triggers the extension keeps on every registered table, created when a
-- table is registered and removed when it is unregistered.  pg_dump keeps
-- them with the tables; registering again replaces them.

CREATE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Restriction of processing (Art. 18): see 70_rights.sql.
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_delete AFTER DELETE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
END
$$;

CREATE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
BEGIN
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND g.tgname IN ('gdpr_restrict_update', 'gdpr_restrict_delete') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
END
$$;

-- ==== src/sql/30_registry_views.sql
-- What auditors read about the registry.

-- A table's schema-qualified name whatever the reader's search_path, so that
-- the register reads the same for everyone.
CREATE FUNCTION gdpr._qualified(tbl regclass) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format('%I.%I', n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl);

CREATE VIEW gdpr.personal_data AS
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       pc.tbl,
       pc.col AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       pc.category,
       pc.purpose,
       pc.legal_basis,
       pc.justification,
       r.subject_table,
       (r.tbl = r.subject_table) AS is_subject_table,
       coalesce(pcol.keep, prow.keep) AS retention,
       coalesce(pcol.after_table, prow.after_table) AS retention_from_table,
       coalesce(pcol.after_column, prow.after_column) AS retention_from_column,
       coalesce(pcol.action, prow.action) AS retention_action,
       pc.classified_at,
       pc.classified_by
  FROM gdpr.personal_columns pc
  JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
  JOIN pg_class c ON c.oid = pc.tbl
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = pc.tbl AND a.attname = pc.col
  LEFT JOIN gdpr.retention_policies pcol ON pcol.tbl = pc.tbl AND pcol.col = pc.col
  LEFT JOIN gdpr.retention_policies prow ON prow.tbl = pc.tbl AND prow.col IS NULL;
COMMENT ON VIEW gdpr.personal_data IS
  'one row per classified column and purpose: what is kept, why, on which basis and for how long';

-- The technical measures (Art. 30(1)(g), Art. 32) that are in force for a
-- purpose, read from the configuration rather than declared.
CREATE FUNCTION gdpr._security_measures(purpose text) RETURNS text[]
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT array_remove(ARRAY[
    'access to the registry restricted to role gdpr_admin; audit views to gdpr_auditor',
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND (rp.col IS NULL OR pc.col = rp.col)
                       WHERE pc.purpose = _security_measures.purpose AND rp.action <> 'keep')
         THEN 'retention periods enforced by automatic purge' END,
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND pc.col = rp.col
                       WHERE pc.purpose = _security_measures.purpose AND rp.action = 'pseudonymise')
         THEN 'pseudonymisation at the end of the retention period' END,
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND pc.col = rp.col
                       WHERE pc.purpose = _security_measures.purpose AND rp.action = 'generalise')
         THEN 'generalisation at the end of the retention period' END
  ], NULL)
$$;


-- The record of processing activities (Art. 30(1)): one row per purpose.
CREATE VIEW gdpr.processing_register AS
SELECT p.code AS purpose,
       p.description,
       p.legal_basis,
       nv.version AS notice_version,
       encode(nv.digest, 'hex') AS notice_sha256,
       coalesce(d.subject_categories, '{}') AS subject_categories,
       coalesce(d.data_categories, '{}') AS data_categories,
       coalesce(d.columns, '{}') AS personal_data,
       coalesce(rc.recipients, '{}') AS recipients,
       coalesce(rc.transfers, '{}') AS transfers_outside_eea,
       coalesce(rt.retention, '{}') AS retention,
       gdpr._security_measures(p.code) AS security_measures,
       p.created_at,
       p.updated_at
  FROM gdpr.purposes p
  LEFT JOIN LATERAL (SELECT n.version, n.digest FROM gdpr.purpose_notices n
                      WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1) nv ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT gdpr._qualified(r.subject_table) ORDER BY gdpr._qualified(r.subject_table)) AS subject_categories,
           array_agg(DISTINCT pc.category ORDER BY pc.category) AS data_categories,
           array_agg(DISTINCT format('%s.%I', gdpr._qualified(pc.tbl), pc.col) ORDER BY format('%s.%I', gdpr._qualified(pc.tbl), pc.col)) AS columns
      FROM gdpr.personal_columns pc JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
     WHERE pc.purpose = p.code) d ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(format('%s (%s)', x.name, x.country) ORDER BY x.name) AS recipients,
           array_agg(format('%s (%s): %s', x.name, x.country, x.safeguard) ORDER BY x.name)
             FILTER (WHERE x.outside_eea) AS transfers
      FROM gdpr.recipients x WHERE x.purpose = p.code) rc ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT format('%s: %s after %s.%I, then %s',
                                     CASE WHEN rp.col IS NULL THEN gdpr._qualified(rp.tbl) || ' (rows)'
                                          ELSE format('%s.%I', gdpr._qualified(rp.tbl), rp.col) END,
                                     rp.keep, gdpr._qualified(rp.after_table), rp.after_column, rp.action)) AS retention
      FROM gdpr.retention_policies rp
     WHERE EXISTS (SELECT FROM gdpr.personal_columns pc
                    WHERE pc.purpose = p.code AND pc.tbl = rp.tbl AND (rp.col IS NULL OR pc.col = rp.col))) rt ON true;
COMMENT ON VIEW gdpr.processing_register IS
  'record of processing activities (GDPR Art. 30(1)), one row per purpose';

-- ==== src/sql/40_crypto.sql
-- Pseudonymisation, encryption and per-subject keys (src/crypto.c, src/keys.c).
-- The master key is in the file named by crm_gdpr.key_file, never in a table.

CREATE FUNCTION gdpr.pseudonymise(value text, domain text DEFAULT 'default') RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_pseudonymise';
COMMENT ON FUNCTION gdpr.pseudonymise(text, text) IS
  'keyed BLAKE2b pseudonym (22 characters, base64url): deterministic per domain, one-way without the key';

CREATE FUNCTION gdpr.encrypt(value text, context text DEFAULT '') RETURNS bytea
  LANGUAGE c VOLATILE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_encrypt';
COMMENT ON FUNCTION gdpr.encrypt(text, text) IS
  'XChaCha20-Poly1305 under the current master key; context is authenticated (e.g. the column)';

CREATE FUNCTION gdpr._decrypt_raw(ciphertext bytea, context text, wrapped bytea, ad text) RETURNS text
  LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_decrypt_raw';
CREATE FUNCTION gdpr._new_wrapped_key(ad text) RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_new_wrapped_key';
CREATE FUNCTION gdpr._rewrap_key(wrapped bytea, ad text) RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_rewrap_key';
CREATE FUNCTION gdpr._encrypt_with_subject_key(value text, context text, key_id bigint, wrapped bytea, ad text)
  RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_encrypt_with_subject_key';
CREATE FUNCTION gdpr._ciphertext_subject_key(ciphertext bytea) RETURNS bigint
  LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_ciphertext_subject_key';
CREATE FUNCTION gdpr.ciphertext_key(ciphertext bytea) RETURNS text
  LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_ciphertext_key';
COMMENT ON FUNCTION gdpr.ciphertext_key(bytea) IS
  'fingerprint of the master key a ciphertext was made with (NULL for per-subject keys)';
CREATE FUNCTION gdpr._key_fingerprints() RETURNS text[]
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_key_fingerprints';

-- The loaded master keys, by fingerprint (never the keys themselves).
CREATE FUNCTION gdpr.key_status() RETURNS TABLE (fingerprint text, is_current boolean)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT f, o = 1 FROM unnest(gdpr._key_fingerprints()) WITH ORDINALITY u(f, o) ORDER BY o
$$;

-- Per-subject data keys, stored only wrapped by the master key.  The subject
-- is named by a keyed pseudonym, so that the table never re-identifies him.
CREATE TABLE gdpr.subject_keys (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  wrapped        bytea NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (subject_table, subject_ref)
);
-- Shredded keys leave a trace, so that decrypt can say why it fails.
CREATE TABLE gdpr.shredded_keys (
  key_id         bigint PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  shredded_at    timestamptz NOT NULL DEFAULT now(),
  shredded_by    name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_keys_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.shredded_keys', '');

CREATE FUNCTION gdpr._subject_key_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr.pseudonymise(subject_id, 'subject-key');  -- scoped by the subject_table column

CREATE FUNCTION gdpr.encrypt_for_subject(value text, subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS bytea
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  ref text := gdpr._subject_key_ref(st, subject_id);
  k gdpr.subject_keys;
BEGIN
  IF value IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO k FROM gdpr.subject_keys x WHERE x.subject_table = st AND x.subject_ref = ref;
  IF NOT FOUND THEN
    INSERT INTO gdpr.subject_keys AS x (subject_table, subject_ref, wrapped)
      VALUES (st, ref, gdpr._new_wrapped_key(ref))
      ON CONFLICT ON CONSTRAINT subject_keys_subject_table_subject_ref_key
      DO UPDATE SET subject_ref = excluded.subject_ref   -- a concurrent first use: take its key
      RETURNING * INTO k;
  END IF;
  RETURN gdpr._encrypt_with_subject_key(value, 'subject:' || ref, k.id, k.wrapped, ref);
END
$$;

CREATE FUNCTION gdpr.decrypt(ciphertext bytea, context text DEFAULT '') RETURNS text
  LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  kid bigint := gdpr._ciphertext_subject_key(ciphertext);
  k gdpr.subject_keys;
  s gdpr.shredded_keys;
BEGIN
  IF kid IS NULL THEN
    RETURN gdpr._decrypt_raw(ciphertext, context, NULL, NULL);
  END IF;
  SELECT * INTO k FROM gdpr.subject_keys x WHERE x.id = kid;
  IF NOT FOUND THEN
    SELECT * INTO s FROM gdpr.shredded_keys x WHERE x.key_id = kid;
    IF FOUND THEN
      RAISE EXCEPTION 'the data key of this subject was shredded'
        USING ERRCODE = 'GD001',
              DETAIL = format('Shredded at %s: the value can no longer be decrypted.', s.shredded_at);
    END IF;
    RAISE EXCEPTION 'the data key of this ciphertext does not exist' USING ERRCODE = 'undefined_object';
  END IF;
  RETURN gdpr._decrypt_raw(ciphertext, 'subject:' || k.subject_ref, k.wrapped, k.subject_ref);
END
$$;
COMMENT ON FUNCTION gdpr.decrypt(bytea, text) IS 'decrypt a value of gdpr.encrypt or gdpr.encrypt_for_subject';

CREATE FUNCTION gdpr.shred_subject(subject_id text, subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  ref text;
  k gdpr.subject_keys;
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  ref := gdpr._subject_key_ref(st, subject_id);
  DELETE FROM gdpr.subject_keys x WHERE x.subject_table = st AND x.subject_ref = ref RETURNING * INTO k;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" has no data key', subject_id
      USING ERRCODE = 'undefined_object',
            HINT = 'Only values written with gdpr.encrypt_for_subject() have a key to shred.';
  END IF;
  INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref) VALUES (k.id, st, ref);
END
$$;

-- Re-encrypt under the current key the values of one column made with an
-- older key, batch_size rows per call; returns the number of rows changed
-- (0: done).  Call it until it returns 0, each call in its own transaction.
CREATE FUNCTION gdpr.rotate_key(tbl regclass, col name, context text DEFAULT '', batch_size int DEFAULT 10000)
  RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype := (gdpr._column(tbl, col)).typ;
  n bigint;
BEGIN
  PERFORM gdpr._not_null(context, 'context');
  IF typ <> 'bytea'::regtype THEN
    RAISE EXCEPTION 'column "%" of % is of type %, not bytea', col, tbl, typ USING ERRCODE = 'datatype_mismatch';
  END IF;
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  EXECUTE format('UPDATE %s SET %I = gdpr.encrypt(gdpr._decrypt_raw(%I, $1, NULL, NULL), $1)
                   WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s
                                           WHERE gdpr.ciphertext_key(%I) <> (gdpr._key_fingerprints())[1]
                                           LIMIT $2))',
                 tbl, col, col, tbl, col)
    USING context, batch_size;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- Wrap the subject data keys made under an older master key again.
CREATE FUNCTION gdpr.rotate_subject_keys(batch_size int DEFAULT 10000) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  UPDATE gdpr.subject_keys k SET wrapped = gdpr._rewrap_key(k.wrapped, k.subject_ref)
   WHERE k.id IN (SELECT x.id FROM gdpr.subject_keys x
                   WHERE encode(substr(x.wrapped, 1, 8), 'hex') <> (gdpr._key_fingerprints())[1]
                   LIMIT batch_size);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- ==== src/sql/41_masking.sql
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

-- ==== src/sql/45_subjects.sql
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
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format_type(a.atttypid, a.atttypmod)
            FROM gdpr.subject_tables s JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attname = s.id_column
           WHERE s.tbl = subject_table);

-- The subject's key value as text cast to the key's type, for dynamic SQL
-- that must use the key's index: format('... WHERE %I = %s', id_column, this).
CREATE FUNCTION gdpr._subject_key_literal(subject_table regclass, subject_id text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  RETURN format('%L::%s', subject_id, gdpr._subject_key_type(subject_table));
END
$$;

-- Whether the subject exists; 22P02 with a clear message when subject_id is
-- not a valid value of the key's type.
CREATE FUNCTION gdpr._subject_exists(subject_table regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  found boolean;
BEGIN
  EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %I = %s)', subject_table,
                 (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = subject_table),
                 gdpr._subject_key_literal(subject_table, subject_id))
    INTO found;
  RETURN found;
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

-- ==== src/sql/50_consent.sql
-- Consent and objection: an append-only ledger of events with their proof,
-- a current-state table maintained with it (what may_process and
-- contactable read), and the prospecting rules of the CNIL for e-mail.

ALTER TABLE gdpr.purposes
  ADD COLUMN consent_valid_for interval CHECK (consent_valid_for > interval '0'),
  ADD COLUMN requires_double_opt_in boolean NOT NULL DEFAULT false,
  ADD COLUMN renewal_required boolean NOT NULL DEFAULT false,
  ADD COLUMN electronic_marketing boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN gdpr.purposes.renewal_required IS
  'a consent given under an older notice no longer counts: the person must consent again';
COMMENT ON COLUMN gdpr.purposes.electronic_marketing IS
  'prospecting by e-mail or SMS: the B2B/B2C rules of doc/consent.md apply';

-- Which columns of a subject table say B2B or B2C, customer or prospect.
ALTER TABLE gdpr.subject_tables
  ADD COLUMN segment_column name,
  ADD COLUMN status_column name;

CREATE FUNCTION gdpr.consent_events() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['grant', 'withdraw', 'confirm', 'informed', 'object'];
CREATE FUNCTION gdpr.consent_channels() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['web', 'email', 'phone', 'paper', 'import', 'api'];

-- The proof a grant, a confirmation or an information must carry, per channel.
CREATE FUNCTION gdpr.proof_keys(channel text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE channel
    WHEN 'web' THEN ARRAY['ip', 'user_agent', 'form']
    WHEN 'email' THEN ARRAY['message_id']
    WHEN 'phone' THEN ARRAY['agent', 'recording']
    WHEN 'paper' THEN ARRAY['document']
    WHEN 'import' THEN ARRAY['source', 'partner']
    WHEN 'api' THEN ARRAY['client'] END;

CREATE TABLE gdpr.consent_ledger (
  id              bigserial PRIMARY KEY,
  subject_table   regclass NOT NULL,
  subject_id      text NOT NULL,
  purpose         text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  event           text NOT NULL CHECK (event = ANY (gdpr.consent_events())),
  channel         text NOT NULL CHECK (channel = ANY (gdpr.consent_channels())),
  at              timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  proof           jsonb NOT NULL CHECK (jsonb_typeof(proof) = 'object'),
  notice_version  int,
  notice_digest   bytea,
  recorded_by     name NOT NULL DEFAULT session_user
);
CREATE INDEX ON gdpr.consent_ledger (subject_table, subject_id);
COMMENT ON TABLE gdpr.consent_ledger IS 'every consent event with its proof; append-only';

CREATE FUNCTION gdpr._append_only() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_append_only';
CREATE FUNCTION gdpr._allow_ledger_erasure() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_allow_ledger_erasure';
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.consent_ledger
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.consent_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only();

-- The current state per subject and purpose, kept with each event, so that
-- may_process and contactable never read the history.
CREATE TABLE gdpr.consent_state (
  subject_table   regclass NOT NULL,
  subject_id      text NOT NULL,
  purpose         text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  granted_at      timestamptz,
  confirmed_at    timestamptz,
  withdrawn_at    timestamptz,
  informed_at     timestamptz,
  objected_at     timestamptz,
  notice_version  int,
  last_event      text NOT NULL,
  last_event_id   bigint NOT NULL,
  last_event_at   timestamptz NOT NULL,
  PRIMARY KEY (subject_table, purpose, subject_id)
);
COMMENT ON TABLE gdpr.consent_state IS 'current consent state per subject and purpose, maintained with the ledger';

SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_state', '');

CREATE FUNCTION gdpr.set_purpose_options(code text, consent_valid_for interval DEFAULT NULL,
                                         requires_double_opt_in boolean DEFAULT false,
                                         renewal_required boolean DEFAULT false,
                                         electronic_marketing boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p gdpr.purposes := gdpr._purpose(code);
BEGIN
  IF consent_valid_for <= interval '0' THEN
    RAISE EXCEPTION 'consent_valid_for must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p.legal_basis <> 'consent' AND (consent_valid_for IS NOT NULL OR requires_double_opt_in OR renewal_required) THEN
    RAISE EXCEPTION 'purpose "%" is not based on consent', code
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Consent options apply to purposes whose legal basis is consent.';
  END IF;
  UPDATE gdpr.purposes x
     SET consent_valid_for = set_purpose_options.consent_valid_for,
         requires_double_opt_in = coalesce(set_purpose_options.requires_double_opt_in, false),
         renewal_required = coalesce(set_purpose_options.renewal_required, false),
         electronic_marketing = coalesce(set_purpose_options.electronic_marketing, false),
         updated_at = now()
   WHERE x.code = set_purpose_options.code;
END
$$;

CREATE FUNCTION gdpr.set_subject_profile(tbl regclass, segment_column name, status_column name) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._subject_table(tbl);
  IF segment_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, segment_column);
  END IF;
  IF status_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, status_column);
  END IF;
  UPDATE gdpr.subject_tables s SET segment_column = set_subject_profile.segment_column,
                                   status_column = set_subject_profile.status_column
   WHERE s.tbl = set_subject_profile.tbl;
END
$$;

-- Check a proof document; the keys a channel requires when required is true.
CREATE FUNCTION gdpr._check_proof(channel text, proof jsonb, required boolean) RETURNS timestamptz
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  missing text[];
  at timestamptz;
BEGIN
  PERFORM gdpr._one_of(channel, gdpr.consent_channels(), 'channel');
  PERFORM gdpr._not_null(proof, 'proof');
  IF jsonb_typeof(proof) <> 'object' THEN
    RAISE EXCEPTION 'proof must be a JSON object, not %', jsonb_typeof(proof)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF required THEN
    SELECT array_agg(k) INTO missing FROM unnest(gdpr.proof_keys(channel)) k
     WHERE coalesce(btrim(proof ->> k), '') = '';
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'proof of a % event lacks %', channel, array_to_string(missing, ', ')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = format('Channel %s requires: %s.', channel, array_to_string(gdpr.proof_keys(channel), ', '));
    END IF;
  END IF;
  IF proof ? 'ip' THEN
    BEGIN
      PERFORM (proof ->> 'ip')::inet;
    EXCEPTION WHEN invalid_text_representation THEN
      RAISE EXCEPTION 'proof ip "%" is not an IP address', proof ->> 'ip' USING ERRCODE = 'invalid_parameter_value';
    END;
  END IF;
  -- The time of the event, when the proof states it (a form submitted
  -- earlier), else now; never in the future beyond clock skew.
  BEGIN
    at := coalesce((proof ->> 'at')::timestamptz, clock_timestamp());
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
    RAISE EXCEPTION 'proof at "%" is not a timestamp', proof ->> 'at' USING ERRCODE = 'invalid_parameter_value';
  END;
  PERFORM gdpr._not_future(at, 'the time in the proof');
  RETURN at;
END
$$;

-- Record one event and bring the current state up to it.  The state row is
-- locked by the upsert, so two events for the same subject and purpose are
-- applied in commit order: the state is that of the last one committed.
CREATE FUNCTION gdpr._record_consent(subject_id text, purpose text, event text, channel text, proof jsonb,
                                     subject_table regclass) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._purpose(purpose);
  needs_proof boolean := event IN ('grant', 'confirm', 'informed');
  at timestamptz := gdpr._check_proof(channel, proof, needs_proof);
  notice gdpr.purpose_notices;
  eid bigint;
BEGIN
  IF event IN ('grant', 'confirm') AND p.legal_basis NOT IN ('consent', 'legitimate_interest') THEN
    RAISE EXCEPTION 'purpose "%" is based on %, not on consent', p.code, p.legal_basis
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Consent is asked for purposes based on consent (or for e-mail prospecting of B2C prospects).';
  END IF;
  IF event = 'object' AND p.legal_basis NOT IN ('legitimate_interest', 'public_task') THEN
    RAISE EXCEPTION 'purpose "%" is based on %: there is no right to object to it', p.code, p.legal_basis
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Art. 21 applies to legitimate interest and public task; for consent, withdraw it (gdpr.withdraw_consent).';
  END IF;
  SELECT * INTO notice FROM gdpr.purpose_notices n WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1;
  IF needs_proof AND notice.version IS NULL THEN
    RAISE EXCEPTION 'purpose "%" has no information notice', p.code
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'A person must know what he consents to: give the purpose a notice with gdpr.define_purpose().';
  END IF;
  INSERT INTO gdpr.consent_ledger (subject_table, subject_id, purpose, event, channel, at, proof,
                                   notice_version, notice_digest)
    VALUES (st, subject_id, p.code, event, channel, at, proof, notice.version, notice.digest)
    RETURNING id INTO eid;
  INSERT INTO gdpr.consent_state AS s (subject_table, subject_id, purpose, granted_at, confirmed_at, withdrawn_at,
                                       informed_at, objected_at, notice_version, last_event, last_event_id, last_event_at)
    VALUES (st, subject_id, p.code,
            CASE WHEN event = 'grant' THEN at END, CASE WHEN event = 'confirm' THEN at END,
            CASE WHEN event = 'withdraw' THEN at END, CASE WHEN event IN ('informed', 'grant') THEN at END,
            CASE WHEN event = 'object' THEN at END,
            CASE WHEN event IN ('grant', 'confirm', 'informed') THEN notice.version END, event, eid, at)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE SET
      -- A new grant starts a new consent: its confirmation and withdrawal are those that follow it.
      granted_at = CASE WHEN event = 'grant' THEN at ELSE s.granted_at END,
      confirmed_at = CASE WHEN event = 'confirm' THEN at WHEN event = 'grant' THEN NULL ELSE s.confirmed_at END,
      withdrawn_at = CASE WHEN event = 'withdraw' THEN at WHEN event = 'grant' THEN NULL ELSE s.withdrawn_at END,
      informed_at = CASE WHEN event IN ('informed', 'grant') THEN at ELSE s.informed_at END,
      objected_at = CASE WHEN event = 'object' THEN at WHEN event = 'grant' THEN NULL ELSE s.objected_at END,
      notice_version = CASE WHEN event IN ('grant', 'confirm', 'informed') THEN notice.version ELSE s.notice_version END,
      last_event = event, last_event_id = eid, last_event_at = at;
  RETURN eid;
END
$$;

CREATE FUNCTION gdpr.grant_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                   subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'grant', channel, proof, subject_table);

CREATE FUNCTION gdpr.confirm_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                     subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM gdpr.consent_state s
                  WHERE s.subject_table = gdpr._subject_table(confirm_consent.subject_table)
                    AND s.subject_id = confirm_consent.subject_id AND s.purpose = confirm_consent.purpose
                    AND s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL) THEN
    RAISE EXCEPTION 'subject "%" has no consent to confirm for purpose "%"', subject_id, purpose
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Double opt-in confirms a consent granted before: record the grant first.';
  END IF;
  RETURN gdpr._record_consent(subject_id, purpose, 'confirm', channel, proof, subject_table);
END
$$;

-- Withdrawing must be as easy as granting (Art. 7(3)): any proof object is
-- accepted, and a withdrawal without a prior grant is recorded all the same.
CREATE FUNCTION gdpr.withdraw_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                      subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  had_consent boolean := gdpr.has_consent(subject_id, purpose, subject_table);
  eid bigint := gdpr._record_consent(subject_id, purpose, 'withdraw', channel, proof, subject_table);
BEGIN
  IF NOT had_consent THEN
    RAISE NOTICE 'subject "%" had no consent to withdraw for purpose "%"; the withdrawal is recorded', subject_id, purpose;
  END IF;
  RETURN eid;
END
$$;

CREATE FUNCTION gdpr.object(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                            subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'object', channel, proof, subject_table);

CREATE FUNCTION gdpr.record_information(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                        subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'informed', channel, proof, subject_table);

-- A state row's consent in force: granted, confirmed when required, not
-- withdrawn or objected to since, not expired, not stale when renewal is required.
CREATE FUNCTION gdpr._consent_valid(s gdpr.consent_state, p gdpr.purposes, current_notice int) RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL AND s.objected_at IS NULL
     AND (NOT p.requires_double_opt_in OR s.confirmed_at IS NOT NULL)
     AND (p.consent_valid_for IS NULL OR s.granted_at + p.consent_valid_for > now())
     AND (NOT p.renewal_required OR s.notice_version >= current_notice);

CREATE FUNCTION gdpr._current_notice(purpose text) RETURNS int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT max(n.version) FROM gdpr.purpose_notices n WHERE n.purpose = _current_notice.purpose);

CREATE FUNCTION gdpr.has_consent(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._purpose(purpose);
  s gdpr.consent_state;
BEGIN
  SELECT * INTO s FROM gdpr.consent_state x
   WHERE x.subject_table = st AND x.purpose = p.code AND x.subject_id = has_consent.subject_id;
  RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
END
$$;

-- The subject's segment and status ('b2b'/'b2c', 'customer'/'prospect')
-- from the columns set_subject_profile declared; NULL when not declared.
CREATE FUNCTION gdpr._subject_profile(st regclass, subject_id text, OUT segment text, OUT status text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s gdpr.subject_tables;
BEGIN
  SELECT * INTO s FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF s.segment_column IS NULL AND s.status_column IS NULL THEN
    RETURN;
  END IF;
  EXECUTE format('SELECT %s::text, %s::text FROM %s WHERE %I = %s',
                 coalesce(quote_ident(s.segment_column), 'NULL'), coalesce(quote_ident(s.status_column), 'NULL'),
                 st, s.id_column, gdpr._subject_key_literal(st, subject_id))
    INTO segment, status;
END
$$;

-- What may be done with his data for a purpose now; see doc/consent.md.
CREATE FUNCTION gdpr.may_process(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._purpose(purpose);
  s gdpr.consent_state;
  prof record;
BEGIN
  -- Restricted (Art. 18): only what a legal obligation requires.
  IF gdpr.is_restricted(subject_id, st) THEN
    RETURN p.legal_basis = 'legal_obligation';
  END IF;
  SELECT * INTO s FROM gdpr.consent_state x
   WHERE x.subject_table = st AND x.purpose = p.code AND x.subject_id = may_process.subject_id;
  IF p.legal_basis = 'consent' THEN
    RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
  ELSIF p.legal_basis = 'legitimate_interest' THEN
    IF FOUND AND (s.objected_at IS NOT NULL OR s.withdrawn_at IS NOT NULL) THEN
      RETURN false;              -- objection (Art. 21); an unsubscription counts as one
    END IF;
    IF p.electronic_marketing THEN
      prof := gdpr._subject_profile(st, subject_id);
      IF prof.segment = 'b2c' AND prof.status IS DISTINCT FROM 'customer' THEN
        -- A B2C prospect receives e-mail marketing only with his consent.
        RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
      END IF;
    END IF;
    RETURN FOUND AND s.informed_at IS NOT NULL;
  END IF;
  RETURN true;                   -- contract, legal obligation, vital interest, public task
END
$$;

-- The subject ids that may be processed for a purpose now: what a marketing
-- export must use.  Reads the current-state table through its primary key's
-- leading columns (subject_table, purpose), never the ledger.
CREATE FUNCTION gdpr.contactable(purpose text, subject_table regclass DEFAULT NULL) RETURNS SETOF text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  p gdpr.purposes := gdpr._purpose(purpose);
  sub gdpr.subject_tables;
  cur int := gdpr._current_notice(p.code);
  restricted text := format('NOT EXISTS (SELECT FROM gdpr.restrictions r WHERE r.subject_table = %L::regclass
                               AND r.subject_id = s.subject_id AND r.lifted_at IS NULL)', st);
BEGIN
  SELECT * INTO sub FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF p.legal_basis = 'consent' THEN
    RETURN QUERY EXECUTE format(
      'SELECT s.subject_id FROM gdpr.consent_state s
        WHERE s.subject_table = %L::regclass AND s.purpose = %L
          AND s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL AND s.objected_at IS NULL
          AND (%L OR s.confirmed_at IS NOT NULL)
          AND (%L::interval IS NULL OR s.granted_at + %L::interval > now())
          AND (%L OR s.notice_version >= %s) AND %s',
      st, p.code, NOT p.requires_double_opt_in, p.consent_valid_for, p.consent_valid_for,
      NOT p.renewal_required, coalesce(cur, 0), restricted);
  ELSIF p.legal_basis = 'legitimate_interest' THEN
    RETURN QUERY EXECUTE format(
      'SELECT s.subject_id FROM gdpr.consent_state s %s
        WHERE s.subject_table = %L::regclass AND s.purpose = %L
          AND s.objected_at IS NULL AND s.withdrawn_at IS NULL AND s.informed_at IS NOT NULL
          AND (%s OR s.granted_at IS NOT NULL) AND %s',
      CASE WHEN p.electronic_marketing AND sub.segment_column IS NOT NULL
           THEN format('JOIN %s t ON t.%I = s.subject_id::%s', st, sub.id_column, gdpr._subject_key_type(st)) END,
      st, p.code,
      CASE WHEN p.electronic_marketing AND sub.segment_column IS NOT NULL
           THEN format('NOT (t.%I::text = %L AND t.%s IS DISTINCT FROM %L)', sub.segment_column, 'b2c',
                       coalesce(quote_ident(sub.status_column) || '::text', 'NULL'), 'customer')
           ELSE 'true' END,
      restricted);
  ELSE
    RETURN QUERY EXECUTE format('SELECT s.%I::text FROM %s s WHERE %s', sub.id_column, st,
                                replace(restricted, 's.subject_id', format('s.%I::text', sub.id_column)));
  END IF;
END
$$;

-- All proof of one subject, ready to hand to an authority.
CREATE FUNCTION gdpr.consent_proof(subject_id text, subject_table regclass DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
BEGIN
  RETURN jsonb_build_object(
    'subject', jsonb_build_object('table', st::text, 'id', subject_id),
    'generated_at', now(),
    'events', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'id', l.id, 'purpose', l.purpose, 'event', l.event, 'channel', l.channel, 'at', l.at,
                 'recorded_at', l.recorded_at, 'recorded_by', l.recorded_by, 'proof', l.proof,
                 'notice_version', l.notice_version, 'notice_sha256', encode(l.notice_digest, 'hex'),
                 'notice', n.notice) ORDER BY l.id), '[]')
                 FROM gdpr.consent_ledger l
                 LEFT JOIN gdpr.purpose_notices n ON n.purpose = l.purpose AND n.version = l.notice_version
                WHERE l.subject_table = st AND l.subject_id = consent_proof.subject_id));
END
$$;

CREATE VIEW gdpr.consent_log AS
SELECT l.id, l.subject_table, l.subject_id, l.purpose, l.event, l.channel, l.at, l.proof, l.notice_version,
       encode(l.notice_digest, 'hex') AS notice_sha256, l.recorded_by, l.recorded_at
  FROM gdpr.consent_ledger l;
COMMENT ON VIEW gdpr.consent_log IS 'every consent event, with its proof and the notice version shown';

CREATE VIEW gdpr.consent_status AS
SELECT s.subject_table, s.subject_id, s.purpose, p.legal_basis,
       CASE WHEN s.objected_at IS NOT NULL THEN 'objected'
            WHEN s.withdrawn_at IS NOT NULL THEN 'withdrawn'
            WHEN s.granted_at IS NOT NULL AND p.requires_double_opt_in AND s.confirmed_at IS NULL THEN 'unconfirmed'
            WHEN s.granted_at IS NOT NULL AND p.consent_valid_for IS NOT NULL
                 AND s.granted_at + p.consent_valid_for <= now() THEN 'expired'
            WHEN s.granted_at IS NOT NULL THEN 'granted'
            WHEN s.informed_at IS NOT NULL THEN 'informed'
            ELSE s.last_event END AS state,
       s.granted_at, s.confirmed_at, s.withdrawn_at, s.objected_at, s.informed_at,
       s.granted_at + p.consent_valid_for AS expires_at,
       s.notice_version, n.version AS current_notice_version,
       (s.notice_version < n.version) AS stale,
       s.last_event, s.last_event_at
  FROM gdpr.consent_state s
  JOIN gdpr.purposes p ON p.code = s.purpose
  LEFT JOIN LATERAL (SELECT max(x.version) AS version FROM gdpr.purpose_notices x WHERE x.purpose = s.purpose) n ON true;
COMMENT ON VIEW gdpr.consent_status IS
  'current consent state per subject and purpose, with stale (older notice) and expires_at';

GRANT EXECUTE ON FUNCTION
  gdpr.grant_consent(text, text, text, jsonb, regclass), gdpr.confirm_consent(text, text, text, jsonb, regclass),
  gdpr.withdraw_consent(text, text, text, jsonb, regclass), gdpr.object(text, text, text, jsonb, regclass),
  gdpr.record_information(text, text, text, jsonb, regclass), gdpr.has_consent(text, text, regclass),
  gdpr.may_process(text, text, regclass), gdpr.contactable(text, regclass),
  gdpr.consent_events(), gdpr.consent_channels(), gdpr.proof_keys(text)
  TO gdpr_app, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.consent_proof(text, regclass), gdpr.set_purpose_options(text, interval, boolean, boolean, boolean),
  gdpr.set_subject_profile(regclass, name, name)
  TO gdpr_admin;
GRANT SELECT ON gdpr.consent_log, gdpr.consent_status TO gdpr_auditor, gdpr_admin;

-- ==== src/sql/60_retention.sql
-- Retention: legal holds, the purge of what is past its period, and its
-- history.  The purge applies gdpr.retention_policies (10_registry.sql); the
-- background worker (src/worker.c) runs it on its own, one batch per
-- transaction; gdpr.purge() runs it by hand, in the caller's transaction.

CREATE TABLE gdpr.holds (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_id     text NOT NULL,
  reason         text NOT NULL,
  until          timestamptz,
  placed_at      timestamptz NOT NULL DEFAULT now(),
  placed_by      name NOT NULL DEFAULT session_user,
  released_at    timestamptz,
  released_by    name
);
CREATE INDEX holds_active ON gdpr.holds (subject_table, subject_id) WHERE released_at IS NULL;
COMMENT ON TABLE gdpr.holds IS 'legal holds: a held subject''s rows are never purged nor erased';

CREATE TABLE gdpr.purge_runs (
  id            bigserial PRIMARY KEY,
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at   timestamptz,
  started_by    text NOT NULL,
  dry_run       boolean NOT NULL,
  status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed', 'interrupted'))
);
CREATE TABLE gdpr.purge_results (
  run_id     bigint NOT NULL REFERENCES gdpr.purge_runs ON DELETE CASCADE,
  policy_id  int NOT NULL,
  tbl        regclass NOT NULL,
  col        name,
  action     text NOT NULL,
  rows       bigint NOT NULL DEFAULT 0,
  cascaded   bigint NOT NULL DEFAULT 0,
  error      text,
  PRIMARY KEY (run_id, policy_id)
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.holds', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_runs', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.purge_results', '');

CREATE FUNCTION gdpr.place_hold(subject_id text, reason text, until timestamptz DEFAULT NULL,
                                subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  hid bigint;
BEGIN
  PERFORM gdpr._not_blank(reason, 'a legal hold needs a reason', 'Say which litigation, audit or request it serves.');
  IF until <= now() THEN
    RAISE EXCEPTION 'a hold until % would already be over', until USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO gdpr.holds (subject_table, subject_id, reason, until) VALUES (st, subject_id, reason, until)
    RETURNING id INTO hid;
  RETURN hid;
END
$$;

CREATE FUNCTION gdpr.release_hold(hold_id bigint) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(hold_id, 'hold_id');
  UPDATE gdpr.holds h SET released_at = now(), released_by = session_user
   WHERE h.id = hold_id AND h.released_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'hold % does not exist or was already released', hold_id USING ERRCODE = 'undefined_object';
  END IF;
END
$$;

-- The hold in force on a subject, if any.
CREATE FUNCTION gdpr._active_hold(st regclass, subject_id text) RETURNS gdpr.holds
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT h FROM gdpr.holds h
           WHERE h.subject_table = st AND h.subject_id = _active_hold.subject_id AND h.released_at IS NULL
             AND (h.until IS NULL OR h.until > now())
           ORDER BY h.id LIMIT 1);

-- An SQL expression giving the subject id (text) of row alias of tbl.
CREATE FUNCTION gdpr._subject_id_expr(tbl regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
  p gdpr.registered_tables;
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN format('%s.%I::text', alias, id_col);
  END IF;
  IF r.parent_table = r.subject_table AND r.parent_column = id_col THEN
    RETURN format('%s.%I::text', alias, r.subject_column);
  END IF;
  p := gdpr._registered(r.parent_table);
  RETURN format('(SELECT %s FROM %s p%s WHERE p%s.%I = %s.%I)',
                gdpr._subject_id_expr(p.tbl, 'p' || length(alias)), p.tbl, length(alias), length(alias),
                r.parent_column, alias, r.subject_column);
END
$$;

-- The condition selecting the rows of policy pol that are past their period,
-- not held, and not referred to by rows that a foreign key without cascade
-- protects (a contact whose invoices are kept stays until they go).
CREATE FUNCTION gdpr._due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(pol.tbl);
  due text;
  held text;
  blocked text;
BEGIN
  IF pol.after_table = pol.tbl THEN
    due := format('t.%I < now() - %L::interval', pol.after_column, pol.keep);
  ELSE
    due := format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND s.%I < now() - %L::interval)',
                  pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                  gdpr._subject_id_expr(pol.tbl, 't'), pol.after_column, pol.keep);
  END IF;
  -- The holds in force are read once per statement (an InitPlan), so that
  -- the check costs a comparison per row, not a probe.
  held := format('NOT coalesce(%s = ANY (ARRAY(SELECT h.subject_id FROM gdpr.holds h
                   WHERE h.subject_table = %L::regclass AND h.released_at IS NULL
                     AND (h.until IS NULL OR h.until > now()))), false)',
                 gdpr._subject_id_expr(pol.tbl, 't'), r.subject_table);
  IF pol.col IS NULL AND pol.action = 'delete' THEN
    SELECT string_agg(format('NOT EXISTS (SELECT FROM %s c WHERE c.%I = t.%I)', c.conrelid::regclass,
                             (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
                             (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attnum = c.confkey[1])),
                      ' AND ')
      INTO blocked
      FROM pg_constraint c
     WHERE c.confrelid = pol.tbl AND c.contype = 'f' AND c.confdeltype IN ('a', 'r') AND cardinality(c.conkey) = 1;
  END IF;
  RETURN concat_ws(' AND ', due, held, blocked);
END
$$;

CREATE FUNCTION gdpr._is_date_column(tbl regclass, col name) RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)
            FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col);

-- The rows a policy's action still has to change: each action is
-- idempotent, so a row already done no longer matches.
CREATE FUNCTION gdpr._todo_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE pol.action
    WHEN 'nullify' THEN format('t.%I IS NOT NULL', pol.col)
    WHEN 'pseudonymise' THEN format('t.%I IS NOT NULL AND t.%I::text !~ %L', pol.col, pol.col, '^[A-Za-z0-9_-]{22}$')
    WHEN 'generalise' THEN CASE WHEN gdpr._is_date_column(pol.tbl, pol.col)
                                THEN format('t.%I <> gdpr.generalise(t.%I::timestamptz, %L)', pol.col, pol.col, 'year')
                                ELSE format('t.%I::text <> gdpr.generalise_postcode(t.%I::text)', pol.col, pol.col) END
    ELSE 'true' END;

-- The rows that ON DELETE CASCADE takes with the rows of relation victims
-- (a column k holding tbl's referenced key): one level of children.
CREATE FUNCTION gdpr._cascade_count_sql(tbl regclass, victims text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT string_agg(format('(SELECT count(*) FROM %s x WHERE x.%I IN (SELECT k FROM %s))',
                                            c.conrelid::regclass,
                                            (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
                                            victims), ' + ')
                     FROM pg_constraint c
                    WHERE c.confrelid = tbl AND c.contype = 'f' AND c.confdeltype = 'c' AND cardinality(c.conkey) = 1
                      AND c.confkey[1] = (SELECT p.conkey[1] FROM pg_constraint p
                                           WHERE p.conrelid = tbl AND p.contype = 'p' AND cardinality(p.conkey) = 1)),
                  '0');

-- What one batch of a policy does, as SQL returning (rows, cascaded).
CREATE FUNCTION gdpr._policy_sql(pol gdpr.retention_policies, batch_size int, dry_run boolean) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._due_cond(pol) || ' AND ' || gdpr._todo_cond(pol);
  key name := coalesce(gdpr._key_column(pol.tbl), 'ctid');  -- no single-column key: nothing cascades by it
  typ text;
  expr text;
BEGIN
  IF pol.action = 'keep' OR (dry_run AND pol.action <> 'delete') THEN
    RETURN format('SELECT count(*), 0::bigint FROM %s t WHERE %s', pol.tbl, cond);
  END IF;
  IF dry_run THEN
    RETURN format('WITH v AS (SELECT t.%I AS k FROM %s t WHERE %s) SELECT (SELECT count(*) FROM v), %s',
                  key, pol.tbl, cond, gdpr._cascade_count_sql(pol.tbl, 'v'));
  END IF;
  IF pol.action = 'delete' THEN
    -- The cascade is counted in the same snapshot as the delete, before it.
    RETURN format('WITH v AS (SELECT t.ctid AS c, t.%I AS k FROM %s t WHERE %s LIMIT %s),
                        d AS (DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT c FROM v)) RETURNING 1)
                   SELECT (SELECT count(*) FROM d), %s',
                  key, pol.tbl, cond, batch_size, pol.tbl, gdpr._cascade_count_sql(pol.tbl, 'v'));
  END IF;
  typ := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = pol.tbl AND a.attname = pol.col);
  expr := CASE pol.action
    WHEN 'nullify' THEN 'NULL'
    WHEN 'pseudonymise' THEN format('gdpr.pseudonymise(%I::text, %L)::%s', pol.col, 'retention', typ)
    WHEN 'generalise' THEN CASE WHEN gdpr._is_date_column(pol.tbl, pol.col)
                                THEN format('gdpr.generalise(%I::timestamptz, %L)::%s', pol.col, 'year', typ)
                                ELSE format('gdpr.generalise_postcode(%I::text)::%s', pol.col, typ) END END;
  RETURN format('WITH u AS (UPDATE %s SET %I = %s WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))
                 RETURNING 1) SELECT count(*), 0::bigint FROM u', pol.tbl, pol.col, expr, pol.tbl, cond, batch_size);
END
$$;

CREATE FUNCTION gdpr._purge_batch_size() RETURNS int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce(nullif(current_setting('crm_gdpr.purge_batch_size', true), '')::int, 10000);

-- Start a run: NULL when another purge holds the purge lock (it is running).
CREATE FUNCTION gdpr._purge_begin(started_by text, dry_run boolean) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rid bigint;
BEGIN
  IF NOT dry_run AND NOT pg_try_advisory_xact_lock(hashtext('crm_gdpr purge')) THEN
    RETURN NULL;
  END IF;
  INSERT INTO gdpr.purge_runs (started_by, dry_run) VALUES (started_by, dry_run) RETURNING id INTO rid;
  INSERT INTO gdpr.purge_results (run_id, policy_id, tbl, col, action)
    SELECT rid, p.id, p.tbl, p.col, p.action FROM gdpr.retention_policies p;
  RETURN rid;
END
$$;

-- The policies of a run, children before parents.
CREATE FUNCTION gdpr._purge_order(run_id bigint) RETURNS SETOF int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT r.policy_id FROM gdpr.purge_results r
    LEFT JOIN LATERAL (SELECT max(t.depth) AS depth FROM gdpr.registered_tables x, gdpr._subject_tree(x.subject_table) t
                        WHERE x.tbl = r.tbl AND t.tbl = r.tbl) d ON true
   WHERE r.run_id = _purge_order.run_id
   ORDER BY d.depth DESC NULLS LAST, (r.col IS NULL), r.policy_id
$$;

-- One batch of one policy in a subtransaction: a broken policy is recorded
-- as failed and the others run.  Returns rows done, 0 when the policy is
-- finished, -1 when it failed.
CREATE FUNCTION gdpr._purge_batch(run_id bigint, policy_id int, batch_size int, dry_run boolean,
                                   prepared text DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  n bigint;
  n_cascaded bigint;
BEGIN
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.id = _purge_batch.policy_id;
  IF NOT FOUND THEN
    RETURN 0;                    -- the policy was removed meanwhile
  END IF;
  BEGIN
    PERFORM set_config('lock_timeout', coalesce(nullif(current_setting('crm_gdpr.purge_lock_timeout', true), ''), '1s'), true);
    EXECUTE coalesce(prepared, gdpr._policy_sql(pol, batch_size, dry_run)) INTO n, n_cascaded;
  EXCEPTION WHEN OTHERS THEN
    UPDATE gdpr.purge_results r SET error = SQLSTATE || ': ' || SQLERRM
     WHERE r.run_id = _purge_batch.run_id AND r.policy_id = _purge_batch.policy_id;
    RETURN -1;
  END;
  UPDATE gdpr.purge_results r SET rows = r.rows + n, cascaded = r.cascaded + n_cascaded
   WHERE r.run_id = _purge_batch.run_id AND r.policy_id = _purge_batch.policy_id;
  RETURN CASE WHEN dry_run OR pol.action = 'keep' THEN 0 ELSE n END;
END
$$;

CREATE FUNCTION gdpr._purge_finish(run_id bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  UPDATE gdpr.purge_runs x SET finished_at = clock_timestamp(),
         status = CASE WHEN EXISTS (SELECT FROM gdpr.purge_results r WHERE r.run_id = x.id AND r.error IS NOT NULL)
                       THEN 'failed' ELSE 'done' END
   WHERE x.id = _purge_finish.run_id;
  -- The history has a retention of its own.
  DELETE FROM gdpr.purge_runs x
   WHERE x.started_at < now() - coalesce(nullif(current_setting('crm_gdpr.purge_history_keep', true), ''), '2 years')::interval;
$$;

-- Runs left 'running' by a crash: the worker marks them at start.
CREATE FUNCTION gdpr._purge_mark_interrupted() RETURNS bigint
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  WITH u AS (UPDATE gdpr.purge_runs x SET status = 'interrupted', finished_at = clock_timestamp()
              WHERE x.status = 'running' RETURNING 1)
  SELECT count(*) FROM u;
$$;

CREATE FUNCTION gdpr.purge(dry_run boolean DEFAULT false)
  RETURNS TABLE (tbl regclass, col name, action text, rows bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rid bigint;
  pid int;
  n bigint;
  sql text;
BEGIN
  PERFORM gdpr._not_null(dry_run, 'dry_run');
  rid := gdpr._purge_begin('manual: ' || session_user, dry_run);
  IF rid IS NULL THEN
    RAISE NOTICE 'another purge is running; this one does nothing';
    RETURN;
  END IF;
  FOR pid IN SELECT * FROM gdpr._purge_order(rid) LOOP
    -- The statement of a policy is built once for all its batches.
    sql := (SELECT gdpr._policy_sql(p, gdpr._purge_batch_size(), dry_run) FROM gdpr.retention_policies p WHERE p.id = pid);
    LOOP
      n := gdpr._purge_batch(rid, pid, gdpr._purge_batch_size(), dry_run, sql);
      EXIT WHEN n <= 0;
    END LOOP;
  END LOOP;
  PERFORM gdpr._purge_finish(rid);
  RETURN QUERY SELECT r.tbl, r.col, r.action, r.rows FROM gdpr.purge_results r
                WHERE r.run_id = rid ORDER BY r.policy_id;
END
$$;

CREATE VIEW gdpr.purge_history AS
SELECT x.id AS run_id, x.started_at, x.finished_at, x.started_by, x.dry_run, x.status,
       r.policy_id, r.tbl, r.col, r.action, r.rows, r.cascaded, r.error
  FROM gdpr.purge_runs x JOIN gdpr.purge_results r ON r.run_id = x.id;
COMMENT ON VIEW gdpr.purge_history IS 'every purge run, per policy: rows acted on, errors; no personal data';

-- Per policy: rows past due now, and since when (counts only: the auditor
-- who reads the view needs no privilege on the CRM's tables).
CREATE FUNCTION gdpr._retention_due(pol gdpr.retention_policies, OUT rows_due bigint, OUT oldest_due timestamptz)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('SELECT count(*), min(%s) FROM %s t WHERE %s AND %s',
                 CASE WHEN pol.after_table = pol.tbl THEN format('t.%I + %L::interval', pol.after_column, pol.keep)
                      ELSE 'NULL::timestamptz' END,
                 pol.tbl, gdpr._due_cond(pol), gdpr._todo_cond(pol))
    INTO rows_due, oldest_due;
END
$$;

CREATE VIEW gdpr.retention_status AS
SELECT p.id AS policy_id, p.tbl, p.col, p.action, p.keep, p.after_table, p.after_column,
       d.rows_due, d.oldest_due,
       (SELECT max(x.finished_at) FROM gdpr.purge_runs x JOIN gdpr.purge_results r ON r.run_id = x.id
         WHERE r.policy_id = p.id AND NOT x.dry_run AND r.error IS NULL) AS last_purged_at
  FROM gdpr.retention_policies p, LATERAL gdpr._retention_due(p) d;
COMMENT ON VIEW gdpr.retention_status IS 'per policy: rows past due now (held rows excluded) and the oldest due date';

CREATE VIEW gdpr.holds_in_force AS
SELECT h.id, h.subject_table, h.subject_id, h.reason, h.until, h.placed_at, h.placed_by
  FROM gdpr.holds h WHERE h.released_at IS NULL AND (h.until IS NULL OR h.until > now());

GRANT EXECUTE ON FUNCTION gdpr.place_hold(text, text, timestamptz, regclass), gdpr.release_hold(bigint),
  gdpr.purge(boolean) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr._retention_due(gdpr.retention_policies) TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.purge_history, gdpr.retention_status, gdpr.holds_in_force, gdpr.holds TO gdpr_auditor, gdpr_admin;

-- ==== src/sql/70_rights.sql
-- Data subject rights (Art. 12-22): the requests register with its clocks,
-- restriction of processing (Art. 18), the subject export (Art. 15, 20), and
-- the breach register (Art. 33).

-- SQL that lists the subject ids (as text) of the rows in relation src, rows
-- of registered table tbl: joins up through the parents to the subject table.
CREATE FUNCTION gdpr._subject_ids_sql(tbl regclass, src text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
  joins text := '';
  alias text := 't0';
  depth int := 0;
BEGIN
  -- Walk up until the current table refers to the subject's own id column.
  WHILE NOT (r.tbl = r.subject_table OR (r.parent_table = r.subject_table AND r.parent_column = id_col)) LOOP
    depth := depth + 1;
    joins := joins || format(' JOIN %s t%s ON t%s.%I = %s.%I', r.parent_table, depth, depth,
                             r.parent_column, alias, r.subject_column);
    alias := 't' || depth;
    r := gdpr._registered(r.parent_table);
  END LOOP;
  RETURN format('SELECT DISTINCT %s.%I::text FROM %s t0%s', alias,
                CASE WHEN r.tbl = r.subject_table THEN id_col ELSE r.subject_column END, src, joins);
END
$$;

-- SQL condition selecting the rows of tbl that belong to one subject, by
-- going down from the subject's key: each step uses the foreign key's index.
CREATE FUNCTION gdpr._subject_rows_cond(tbl regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN format('%I = %s', (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.tbl), key_literal);
  END IF;
  RETURN format('%I IN (SELECT %I FROM %s WHERE %s)', r.subject_column, r.parent_column, r.parent_table,
                gdpr._subject_rows_cond(r.parent_table, key_literal));
END
$$;

-- The registered tables of one subject table, parents before children.
CREATE FUNCTION gdpr._subject_tree(subject_table regclass)
  RETURNS TABLE (tbl regclass, depth int)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE tree AS (
    SELECT r.tbl, 0 AS depth FROM gdpr.registered_tables r WHERE r.tbl = _subject_tree.subject_table
    UNION ALL
    SELECT r.tbl, tree.depth + 1 FROM gdpr.registered_tables r JOIN tree ON r.parent_table = tree.tbl
     WHERE r.tbl <> r.parent_table)
  SELECT tree.tbl, tree.depth FROM tree ORDER BY tree.depth, tree.tbl::text
$$;

---------------------------------------------------------------- requests

CREATE FUNCTION gdpr.request_kinds() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['access', 'rectification', 'erasure', 'restriction', 'portability', 'objection'];

CREATE FUNCTION gdpr.request_outcomes() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['fulfilled', 'partially_fulfilled', 'refused', 'withdrawn'];

CREATE TABLE gdpr.requests (
  id                bigserial PRIMARY KEY,
  subject_table     regclass NOT NULL,
  subject_id        text NOT NULL,
  kind              text NOT NULL CHECK (kind = ANY (gdpr.request_kinds())),
  received_at       timestamptz NOT NULL,
  due_at            timestamptz NOT NULL,
  extended_months   int NOT NULL DEFAULT 0 CHECK (extended_months BETWEEN 0 AND 2),
  extension_reason  text,
  subject_found     boolean NOT NULL,
  opened_by         name NOT NULL DEFAULT session_user,
  closed_at         timestamptz,
  outcome           text CHECK (outcome = ANY (gdpr.request_outcomes())),
  closed_by         name,
  CHECK ((closed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX ON gdpr.requests (subject_table, subject_id);
CREATE INDEX ON gdpr.requests (due_at) WHERE closed_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('gdpr.requests', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.requests_id_seq', '');
COMMENT ON TABLE gdpr.requests IS 'requests of data subjects (Art. 15-22) and their one-month clock (Art. 12(3))';

-- Reject a time in the future beyond a little clock skew between servers.
CREATE FUNCTION gdpr._not_future(at timestamptz, what text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF at > now() + interval '5 minutes' THEN
    RAISE EXCEPTION '% is in the future', what
      USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s; now is %s.', at, now());
  END IF;
END
$$;

CREATE FUNCTION gdpr.open_request(subject_id text, kind text, received_at timestamptz DEFAULT now(),
                                  subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  rid bigint;
BEGIN
  PERFORM gdpr._one_of(kind, gdpr.request_kinds(), 'request kind');
  PERFORM gdpr._not_null(received_at, 'received_at');
  PERFORM gdpr._not_future(received_at, 'received_at');
  -- A person the CRM does not know may still ask (the answer is then "we hold
  -- nothing"): the request is recorded with subject_found = false.
  INSERT INTO gdpr.requests (subject_table, subject_id, kind, received_at, due_at, subject_found)
    VALUES (st, subject_id, kind, received_at, received_at + interval '1 month',
            gdpr._subject_exists(st, subject_id))
    RETURNING id INTO rid;
  RETURN rid;
END
$$;

-- The open request, locked; 42704 / 55000 otherwise.
CREATE FUNCTION gdpr._open_request(request_id bigint) RETURNS gdpr.requests
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests;
BEGIN
  PERFORM gdpr._not_null(request_id, 'request_id');
  SELECT * INTO r FROM gdpr.requests x WHERE x.id = request_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'request % does not exist', request_id USING ERRCODE = 'undefined_object';
  END IF;
  IF r.closed_at IS NOT NULL THEN
    RAISE EXCEPTION 'request % is already closed', request_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Closed at %s with outcome %s.', r.closed_at, r.outcome);
  END IF;
  RETURN r;
END
$$;

CREATE FUNCTION gdpr.extend_request(request_id bigint, months int, reason text) RETURNS timestamptz
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests := gdpr._open_request(request_id);
BEGIN
  PERFORM gdpr._not_null(months, 'months');
  PERFORM gdpr._not_blank(reason, 'an extension needs a reason',
                          'Art. 12(3): the person must be told why, within the first month.');
  IF months < 1 OR r.extended_months + months > 2 THEN
    RAISE EXCEPTION 'a request can be extended by two months at most'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Already extended by %s month(s); asked for %s more.', r.extended_months, months);
  END IF;
  IF now() > r.received_at + interval '1 month' THEN
    RAISE EXCEPTION 'request % can no longer be extended', request_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'Art. 12(3): the extension must be decided within one month of receipt.';
  END IF;
  UPDATE gdpr.requests x
     SET extended_months = x.extended_months + months,
         due_at = x.received_at + make_interval(months => 1 + x.extended_months + months),
         extension_reason = concat_ws('; ', x.extension_reason, reason)
   WHERE x.id = request_id
  RETURNING x.due_at INTO r.due_at;
  RETURN r.due_at;
END
$$;

CREATE FUNCTION gdpr.close_request(request_id bigint, outcome text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._open_request(request_id);
  PERFORM gdpr._one_of(outcome, gdpr.request_outcomes(), 'request outcome');
  UPDATE gdpr.requests x SET closed_at = now(), outcome = close_request.outcome, closed_by = session_user
   WHERE x.id = request_id;
END
$$;

-- Close the request an export or erasure answers, after checking it is his.
CREATE FUNCTION gdpr._answer_request(request_id bigint, st regclass, subject_id text, kinds text[]) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests;
BEGIN
  IF request_id IS NULL THEN
    RETURN;
  END IF;
  r := gdpr._open_request(request_id);
  IF r.subject_table <> st OR r.subject_id <> subject_id THEN
    RAISE EXCEPTION 'request % is not a request of subject "%"', request_id, subject_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT r.kind = ANY (kinds) THEN
    RAISE EXCEPTION 'request % is a request of kind %', request_id, r.kind
      USING ERRCODE = 'invalid_parameter_value',
            HINT = format('This function answers requests of kind %s.', array_to_string(kinds, ' or '));
  END IF;
  UPDATE gdpr.requests x SET closed_at = now(), outcome = 'fulfilled', closed_by = session_user
   WHERE x.id = request_id;
END
$$;

-- Recipients to tell of a rectification, erasure or restriction (Art. 19):
-- those of the purposes for which the subject's tables hold data.
CREATE FUNCTION gdpr._recipients_of(subject_table regclass) RETURNS text[]
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(array_agg(DISTINCT format('%s (%s)', x.name, x.country)), '{}')
    FROM gdpr.recipients x
   WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
                  WHERE pc.purpose = x.purpose AND r.subject_table = _recipients_of.subject_table)
$$;

CREATE VIEW gdpr.requests_due AS
SELECT r.id, r.subject_table, r.subject_id, r.kind, r.received_at, r.due_at, r.extended_months,
       r.extension_reason, r.subject_found,
       CASE WHEN now() > r.due_at THEN 'overdue'
            WHEN now() > r.due_at - interval '7 days' THEN 'due soon'
            ELSE 'open' END AS state,
       date_trunc('second', r.due_at - now()) AS time_left,
       CASE WHEN r.kind IN ('rectification', 'erasure', 'restriction')
            THEN gdpr._recipients_of(r.subject_table) ELSE '{}' END AS recipients_to_notify
  FROM gdpr.requests r
 WHERE r.closed_at IS NULL;
COMMENT ON VIEW gdpr.requests_due IS 'open requests with their deadline: open, due soon (7 days), overdue';

---------------------------------------------------------------- restriction

CREATE TABLE gdpr.restrictions (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_id     text NOT NULL,
  reason         text NOT NULL,
  restricted_at  timestamptz NOT NULL DEFAULT now(),
  restricted_by  name NOT NULL DEFAULT session_user,
  lifted_at      timestamptz,
  lifted_by      name,
  lift_reason    text
);
CREATE UNIQUE INDEX restrictions_active ON gdpr.restrictions (subject_table, subject_id) WHERE lifted_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('gdpr.restrictions', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.restrictions_id_seq', '');
COMMENT ON TABLE gdpr.restrictions IS 'restrictions of processing (Art. 18), current and lifted';

CREATE FUNCTION gdpr.is_restricted(subject_id text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.restrictions r
                  WHERE r.subject_table = gdpr._subject_table(is_restricted.subject_table)
                    AND r.subject_id = is_restricted.subject_id AND r.lifted_at IS NULL);

CREATE FUNCTION gdpr.restrict_subject(subject_id text, reason text, subject_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
BEGIN
  PERFORM gdpr._not_blank(reason, 'a restriction needs a reason',
    'Art. 18(1): accuracy contested, unlawful processing, needed for a legal claim, or objection pending.');
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is already restricted', subject_id USING ERRCODE = 'duplicate_object';
  END IF;
  INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES (st, subject_id, reason);
END
$$;

CREATE FUNCTION gdpr.lift_restriction(subject_id text, reason text DEFAULT NULL,
                                      subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  UPDATE gdpr.restrictions r SET lifted_at = now(), lifted_by = session_user, lift_reason = lift_restriction.reason
   WHERE r.subject_table = st AND r.subject_id = lift_restriction.subject_id AND r.lifted_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" is not restricted', subject_id USING ERRCODE = 'undefined_object';
  END IF;
END
$$;

-- The subject table whose restrictions apply to tbl, when any is active.
CREATE FUNCTION gdpr._restriction_active(tbl regclass) RETURNS regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT r.subject_table FROM gdpr.registered_tables r
   WHERE r.tbl = _restriction_active.tbl
     AND EXISTS (SELECT FROM gdpr.restrictions x WHERE x.subject_table = r.subject_table AND x.lifted_at IS NULL)
$$;

-- The first of ids that is restricted, or NULL.
CREATE FUNCTION gdpr._first_restricted(subject_table regclass, ids text[]) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT min(x.subject_id) FROM gdpr.restrictions x
   WHERE x.subject_table = _first_restricted.subject_table AND x.subject_id = ANY (ids) AND x.lifted_at IS NULL
$$;

-- Statement trigger on registered tables (src/restriction.c): while a subject
-- is restricted, his rows may be changed or deleted only by gdpr_admin.
CREATE FUNCTION gdpr._enforce_restriction() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_enforce_restriction';

---------------------------------------------------------------- export

-- What Art. 15(1) says the person must be told, for the purposes for which
-- the tables of his subject table hold data.
CREATE FUNCTION gdpr._subject_information(subject_table regclass, portability boolean) RETURNS jsonb
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'purpose', pr.purpose,
           'description', pr.description,
           'legal_basis', pr.legal_basis,
           'notice_version', pr.notice_version,
           'data_categories', to_jsonb(pr.data_categories),
           'personal_data', to_jsonb(pr.personal_data),
           'recipients', to_jsonb(pr.recipients),
           'transfers_outside_eea', to_jsonb(pr.transfers_outside_eea),
           'retention', to_jsonb(pr.retention)) ORDER BY pr.purpose), '[]')
    FROM gdpr.processing_register pr
   WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
                  WHERE pc.purpose = pr.purpose AND r.subject_table = _subject_information.subject_table)
     AND (NOT portability OR pr.legal_basis IN ('consent', 'contract'))
$$;

-- The columns of tbl an export shows: all of them, or for portability
-- (Art. 20) the keys and the columns classified under consent or contract.
CREATE FUNCTION gdpr._export_columns(tbl regclass, portability boolean) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT string_agg(CASE WHEN a.atttypid = 'bytea'::regtype
                         THEN format('%L, gdpr._export_bytea(t.%I, %L)', a.attname, a.attname,
                                     gdpr._qualified(tbl) || '.' || a.attname)
                         ELSE format('%L, t.%I', a.attname, a.attname) END, ', ' ORDER BY a.attnum)
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT portability
          OR EXISTS (SELECT FROM gdpr.personal_columns pc
                      WHERE pc.tbl = _export_columns.tbl AND pc.col = a.attname
                        AND pc.legal_basis IN ('consent', 'contract'))
          OR EXISTS (SELECT FROM pg_constraint c
                      WHERE c.conrelid = _export_columns.tbl AND c.contype IN ('p', 'f')
                        AND a.attnum = ANY (c.conkey)))
$$;

-- A bytea value in an export: decrypted when it is a crm_gdpr ciphertext of
-- the subject's own key, or of the master key with the column's name as
-- context (the documented convention); otherwise as it is, in hex.
CREATE FUNCTION gdpr._export_bytea(value bytea, context text) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF value IS NULL THEN
    RETURN 'null';
  END IF;
  IF substr(value, 1, 2) = '\x4744'::bytea THEN
    BEGIN
      RETURN to_jsonb(gdpr.decrypt(value, CASE WHEN gdpr._ciphertext_subject_key(value) IS NULL THEN context ELSE '' END));
    EXCEPTION WHEN OTHERS THEN
      RETURN jsonb_build_object('encrypted', true, 'readable', false, 'reason', SQLERRM);
    END;
  END IF;
  RETURN to_jsonb(encode(value, 'hex'));
END
$$;

-- Every row of every registered table that belongs to the subject.  Each
-- table is reached from the subject's key through indexed foreign keys, so
-- the cost follows the subject's rows, not the size of the tables.
CREATE FUNCTION gdpr._subject_data(st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
  rows jsonb;
  data jsonb := '{}';
  key text := gdpr._subject_key_literal(st, subject_id);
BEGIN
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree LOOP
    EXECUTE format('SELECT coalesce(jsonb_agg(jsonb_build_object(%s) ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
                   gdpr._export_columns(t.tbl, portability), t.tbl, gdpr._subject_rows_cond(t.tbl, key))
      INTO rows;
    data := data || jsonb_build_object(t.tbl::text, rows);
  END LOOP;
  RETURN data;
END
$$;

-- Where his data came from (Art. 15(1)(g)): the channels of his consent
-- events, with the source and partner of imports.
CREATE FUNCTION gdpr._subject_sources(st regclass, subject_id text) RETURNS jsonb
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'channel', x.channel, 'source', x.source, 'partner', x.partner, 'first_at', x.first_at))
           ORDER BY x.first_at), '[]')
    FROM (SELECT l.channel, l.proof ->> 'source' AS source, l.proof ->> 'partner' AS partner, min(l.at) AS first_at
            FROM gdpr.consent_ledger l
           WHERE l.subject_table = st AND l.subject_id = _subject_sources.subject_id
           GROUP BY 1, 2, 3) x
$$;

CREATE FUNCTION gdpr.export_subject(subject_id text, subject_table regclass DEFAULT NULL,
                                    portability boolean DEFAULT false, request_id bigint DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  doc jsonb;
  erased gdpr.erasures;
BEGIN
  PERFORM gdpr._not_null(portability, 'portability');
  IF NOT gdpr._subject_exists(st, subject_id) THEN
    -- An erased person gets the one thing still held about him: that he was
    -- erased and is on the suppression list (under a pseudonym).
    SELECT * INTO erased FROM gdpr.erasures e WHERE e.subject_table = st AND e.subject_ref = gdpr._subject_ref(st, subject_id);
    IF NOT FOUND THEN
      RAISE EXCEPTION 'subject "%" does not exist in %', subject_id, st USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM gdpr._answer_request(request_id, st, subject_id, ARRAY['access', 'portability']);
    RETURN jsonb_build_object('format', 'crm_gdpr.subject_export', 'format_version', 1, 'generated_at', now(),
                              'kind', 'erased', 'subject', jsonb_build_object('table', st::text, 'id', subject_id),
                              'erasure', jsonb_build_object('erased_at', erased.erased_at, 'certificate', erased.id,
                                                            'suppressed', true));
  END IF;
  doc := jsonb_build_object(
    'format', 'crm_gdpr.subject_export',
    'format_version', 1,
    'generated_at', now(),
    'kind', CASE WHEN portability THEN 'portability' ELSE 'access' END,
    'controller_database', current_database(),
    'subject', jsonb_build_object('table', st::text, 'id', subject_id),
    'data', gdpr._subject_data(st, subject_id, portability),
    'processing', gdpr._subject_information(st, portability),
    'restricted', gdpr.is_restricted(subject_id, st),
    'consent', (gdpr.consent_proof(subject_id, st) -> 'events'),
    'sources', gdpr._subject_sources(st, subject_id),
    'requests', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'kind', r.kind,
                          'received_at', r.received_at, 'due_at', r.due_at, 'closed_at', r.closed_at,
                          'outcome', r.outcome) ORDER BY r.id), '[]')
                   FROM gdpr.requests r WHERE r.subject_table = st AND r.subject_id = export_subject.subject_id));
  PERFORM gdpr._answer_request(request_id, st, subject_id,
                               CASE WHEN portability THEN ARRAY['portability'] ELSE ARRAY['access', 'portability'] END);
  RETURN doc;
END
$$;

---------------------------------------------------------------- breaches

CREATE TABLE gdpr.breaches (
  id           bigserial PRIMARY KEY,
  description  text NOT NULL CHECK (btrim(description) <> ''),
  detected_at  timestamptz NOT NULL,
  subjects     bigint CHECK (subjects >= 0),
  reported_at  timestamptz NOT NULL DEFAULT now(),
  reported_by  name NOT NULL DEFAULT session_user,
  notified_at  timestamptz,
  reference    text,
  notified_by  name,
  CHECK ((notified_at IS NULL) = (reference IS NULL)),
  CHECK (notified_at IS NULL OR notified_at >= detected_at)
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.breaches', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.breaches_id_seq', '');
COMMENT ON TABLE gdpr.breaches IS 'personal data breaches and their notification to the authority (Art. 33)';

CREATE FUNCTION gdpr.report_breach(description text, detected_at timestamptz DEFAULT now(),
                                   subjects bigint DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  bid bigint;
BEGIN
  PERFORM gdpr._not_blank(description, 'a breach needs a description');
  PERFORM gdpr._not_null(detected_at, 'detected_at');
  PERFORM gdpr._not_future(detected_at, 'detected_at');
  IF subjects < 0 THEN
    RAISE EXCEPTION 'the number of subjects cannot be negative' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO gdpr.breaches (description, detected_at, subjects) VALUES (description, detected_at, subjects)
    RETURNING id INTO bid;
  RETURN bid;
END
$$;

CREATE FUNCTION gdpr.notify_breach(breach_id bigint, notified_at timestamptz, reference text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breaches;
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  PERFORM gdpr._not_null(notified_at, 'notified_at');
  PERFORM gdpr._not_blank(reference, 'a notification needs the authority''s reference');
  SELECT * INTO b FROM gdpr.breaches x WHERE x.id = breach_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  IF b.notified_at IS NOT NULL THEN
    RAISE EXCEPTION 'breach % was already notified', breach_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Notified at %s, reference %s.', b.notified_at, b.reference);
  END IF;
  PERFORM gdpr._not_future(notified_at, 'notified_at');
  IF notified_at < b.detected_at THEN
    RAISE EXCEPTION 'notified_at is before the breach was detected' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE gdpr.breaches x SET notified_at = notify_breach.notified_at, reference = btrim(notify_breach.reference),
                             notified_by = session_user
   WHERE x.id = breach_id;
END
$$;

CREATE VIEW gdpr.breaches_due AS
SELECT b.id, b.description, b.detected_at, b.subjects,
       b.detected_at + interval '72 hours' AS notify_by,
       b.notified_at, b.reference,
       CASE WHEN b.notified_at IS NOT NULL AND b.notified_at <= b.detected_at + interval '72 hours' THEN 'notified'
            WHEN b.notified_at IS NOT NULL THEN 'notified late'
            WHEN now() > b.detected_at + interval '72 hours' THEN 'overdue'
            ELSE 'open' END AS state,
       CASE WHEN b.notified_at IS NULL THEN date_trunc('second', b.detected_at + interval '72 hours' - now()) END
         AS time_left,
       (b.notified_at IS NULL AND now() > b.detected_at + interval '72 hours')
         OR b.notified_at > b.detected_at + interval '72 hours' AS late
  FROM gdpr.breaches b;
COMMENT ON VIEW gdpr.breaches_due IS 'breaches and their 72-hour notification clock (Art. 33(1))';

-- ==== src/sql/75_erasure.sql
-- Erasure (Art. 17): one transaction, all or nothing, per-field actions from
-- the registry, a certificate, a suppression list so that an erased person is
-- never re-imported or re-mailed, and a ledger of keyed pseudonyms that can be
-- replayed after a backup is restored.

-- The subject's reference in the ledger: a keyed pseudonym, so that the
-- ledger never re-identifies him without the key kept outside the database.
CREATE FUNCTION gdpr._subject_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr.pseudonymise(subject_id, 'erasure-ledger');  -- scoped by the subject_table column

-- How a contact value is compared on the suppression list: e-mail addresses
-- in lower case, phone numbers as their digits (a leading 0 read as +33).
CREATE FUNCTION gdpr._normalise_contact(value text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN value LIKE '%@%' THEN lower(btrim(value))
              ELSE regexp_replace(regexp_replace(value, '[^0-9]', '', 'g'), '^0', '33') END;

CREATE TABLE gdpr.erasures (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  request_id     bigint,
  erased_at      timestamptz NOT NULL DEFAULT now(),
  erased_by      name NOT NULL DEFAULT session_user,
  report         jsonb NOT NULL,
  report_sha256  bytea NOT NULL,
  UNIQUE (subject_table, subject_ref)
);
COMMENT ON TABLE gdpr.erasures IS
  'erasure certificates and ledger: keyed pseudonym of the subject, what was done, digest of the report';

CREATE TABLE gdpr.suppressions (
  ref         text PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
  erasure_id  bigint REFERENCES gdpr.erasures ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gdpr.suppressions IS 'keyed pseudonyms of the e-mail addresses and phones of erased subjects';

SELECT pg_catalog.pg_extension_config_dump('gdpr.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.erasures_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppressions', '');

CREATE FUNCTION gdpr.is_suppressed(email text) RETURNS boolean
  LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.suppressions s
                  WHERE s.ref = gdpr.pseudonymise(gdpr._normalise_contact(email), 'suppression'));

-- The value of col after action, as an SQL expression for UPDATE ... SET.
CREATE FUNCTION gdpr._action_expr(tbl regclass, col name, action text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype := (gdpr._column(tbl, col)).typ;
BEGIN
  RETURN CASE
    WHEN action = 'nullify' THEN 'NULL'
    WHEN action = 'pseudonymise' THEN format('gdpr.pseudonymise(%I::text, %L)::%s', col, 'erasure', typ)
    WHEN action = 'generalise' AND typ IN ('date', 'timestamp without time zone', 'timestamp with time zone')
      THEN format('gdpr.generalise(%I::timestamptz, %L)::%s', col, 'year', typ)
    WHEN action = 'generalise' THEN format('gdpr.generalise_postcode(%I::text)::%s', col, typ)
  END;
END
$$;

-- For a kept row: what happens to each personal column.  A column's own
-- policy (nullify, pseudonymise, generalise) applies; other identifying
-- columns are pseudonymised when they hold text, else nullified when they can
-- be; keys and the rest stay (the legal obligation needs them).
CREATE FUNCTION gdpr._erasure_column_actions(tbl regclass) RETURNS TABLE (col name, action text)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
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
   ORDER BY pc.col
$$;

-- Anonymise the rows of tbl matching cond; the column actions for the report.
CREATE FUNCTION gdpr._anonymise_rows(tbl regclass, cond text) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  actions jsonb;
BEGIN
  SELECT string_agg(format('%I = %s', x.col, gdpr._action_expr(tbl, x.col, x.action)), ', '),
         coalesce(jsonb_object_agg(x.col, x.action), '{}')
    INTO sets, actions
    FROM gdpr._erasure_column_actions(tbl) x WHERE x.action IS NOT NULL;
  IF sets IS NOT NULL THEN
    EXECUTE format('UPDATE %s SET %s WHERE %s', tbl, sets, cond);
  END IF;
  RETURN actions;
END
$$;

-- Condition on tbl's rows that other registered tables' remaining rows of
-- this subject still refer to (kept invoices pin their customer row).
CREATE FUNCTION gdpr._pinned_cond(tbl regclass, key_literal text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(string_agg(format('%I IN (SELECT %I FROM %s WHERE %s)', c.parent_column, c.subject_column,
                                    c.tbl, gdpr._subject_rows_cond(c.tbl, key_literal)), ' OR '), 'false')
    FROM gdpr.registered_tables c
   WHERE c.parent_table = _pinned_cond.tbl AND c.tbl <> c.parent_table
$$;

-- Erase one registered table's rows of the subject; one report entry.
CREATE FUNCTION gdpr._erase_table(tbl regclass, key_literal text) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._subject_rows_cond(tbl, key_literal);
  pinned text := gdpr._pinned_cond(tbl, key_literal);
  keep boolean := EXISTS (SELECT FROM gdpr.retention_policies p
                           WHERE p.tbl = _erase_table.tbl AND p.col IS NULL AND p.action = 'keep');
  n_deleted bigint := 0;
  n_kept bigint;
  actions jsonb := '{}';
BEGIN
  IF NOT keep THEN
    EXECUTE format('DELETE FROM %s WHERE (%s) AND NOT (%s)', tbl, cond, pinned);
    GET DIAGNOSTICS n_deleted = ROW_COUNT;
  END IF;
  EXECUTE format('SELECT count(*) FROM %s WHERE %s', tbl, cond) INTO n_kept;
  IF n_kept > 0 THEN
    actions := gdpr._anonymise_rows(tbl, cond);
  END IF;
  RETURN jsonb_build_object('table', gdpr._qualified(tbl), 'deleted', n_deleted, 'kept', n_kept,
                            'kept_because', CASE WHEN n_kept = 0 THEN NULL WHEN keep THEN 'legal retention'
                                                 ELSE 'referred to by kept rows' END,
                            'columns', actions);
END
$$;

-- The subject's contact values (classified "contact" columns of his row) on
-- the suppression list.
CREATE FUNCTION gdpr._suppress_contacts(st regclass, key_literal text, erasure_id bigint) RETURNS int
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c name;
  v text;
  n int := 0;
BEGIN
  FOR c IN SELECT DISTINCT pc.col FROM gdpr.personal_columns pc WHERE pc.tbl = st AND pc.category = 'contact' LOOP
    EXECUTE format('SELECT %I::text FROM %s WHERE %s', c, st, gdpr._subject_rows_cond(st, key_literal)) INTO v;
    CONTINUE WHEN v IS NULL OR (v NOT LIKE '%@%' AND length(regexp_replace(v, '[^0-9]', '', 'g')) < 6);
    INSERT INTO gdpr.suppressions (ref, kind, erasure_id)
      VALUES (gdpr.pseudonymise(gdpr._normalise_contact(v), 'suppression'),
              CASE WHEN v LIKE '%@%' THEN 'email' ELSE 'phone' END, erasure_id)
      ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

CREATE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
                                   subject_table regclass DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  key text := gdpr._subject_key_literal(st, subject_id);
  ref text := gdpr._subject_ref(st, subject_id);
  done gdpr.erasures;
  t record;
  tables jsonb := '[]';
  rep jsonb;
  n_consent bigint;
  shredded bigint;
  eid bigint;
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
  EXECUTE format('SELECT 1 FROM %s WHERE %s FOR UPDATE', st, gdpr._subject_rows_cond(st, key));
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

  INSERT INTO gdpr.erasures (subject_table, subject_ref, request_id, report, report_sha256)
    VALUES (st, ref, request_id, '{}', '\x') RETURNING id INTO eid;
  PERFORM gdpr._suppress_contacts(st, key, eid);
  -- His consent events go (the ledger opens for this transaction only); the
  -- suppression list now says what they said: never contact him again.
  PERFORM gdpr._allow_ledger_erasure();
  DELETE FROM gdpr.consent_ledger l WHERE l.subject_table = st AND l.subject_id = erase_subject.subject_id;
  GET DIAGNOSTICS n_consent = ROW_COUNT;
  DELETE FROM gdpr.consent_state s WHERE s.subject_table = st AND s.subject_id = erase_subject.subject_id;
  -- His own data key goes: what was encrypted for him is unreadable everywhere.
  DELETE FROM gdpr.subject_keys k WHERE k.subject_table = st AND k.subject_ref = gdpr._subject_key_ref(st, subject_id)
    RETURNING k.id INTO shredded;
  IF shredded IS NOT NULL THEN
    INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref)
      VALUES (shredded, st, gdpr._subject_key_ref(st, subject_id));
  END IF;
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree ORDER BY tree.depth DESC, tree.tbl::text LOOP
    tables := tables || gdpr._erase_table(t.tbl, key);
  END LOOP;

  rep := jsonb_build_object('status', 'erased', 'erasure_id', eid, 'subject_table', gdpr._qualified(st),
                               'request_id', request_id, 'erased_at', now(), 'tables', tables,
                               'consent_events_removed', n_consent, 'subject_key_shredded', shredded IS NOT NULL);
  UPDATE gdpr.erasures e SET report = rep, report_sha256 = sha256(convert_to(rep::text, 'UTF8'))
   WHERE e.id = eid;
  RETURN rep;
EXCEPTION
  WHEN foreign_key_violation THEN
    -- All or nothing: a table outside the registry still refers to him.
    RAISE EXCEPTION 'cannot erase subject "%": %', subject_id, SQLERRM
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Register the table that refers to him (gdpr.register_table) so that its rows are erased too.';
END
$$;

-- The ledger as a document to keep outside the database (with the backups):
-- erasures and shredded keys, by keyed pseudonyms only, never an id in clear.
CREATE FUNCTION gdpr.export_erasure_ledger() RETURNS jsonb
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN (SELECT coalesce(jsonb_agg(x ORDER BY x ->> 'at'), '[]') FROM (
            SELECT jsonb_build_object('kind', 'erasure', 'subject_table', gdpr._qualified(e.subject_table),
                                      'subject_ref', e.subject_ref, 'at', e.erased_at,
                                      'report_sha256', encode(e.report_sha256, 'hex')) AS x
              FROM gdpr.erasures e
            UNION ALL
            SELECT jsonb_build_object('kind', 'shred', 'subject_table', gdpr._qualified(k.subject_table),
                                      'subject_ref', k.subject_ref, 'key_id', k.key_id, 'at', k.shredded_at)
              FROM gdpr.shredded_keys k) entries);

-- Merge a ledger exported from another copy of the database (the live one,
-- into a restored backup); returns the number of entries that were new.
CREATE FUNCTION gdpr.import_erasure_ledger(ledger jsonb) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
  m bigint;
BEGIN
  PERFORM gdpr._not_null(ledger, 'ledger');
  IF jsonb_typeof(ledger) <> 'array' OR EXISTS (SELECT FROM jsonb_array_elements(ledger) x
                                                WHERE NOT (x ?& ARRAY['kind', 'subject_table', 'subject_ref', 'at'])) THEN
    RAISE EXCEPTION 'not an erasure ledger' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Pass the output of gdpr.export_erasure_ledger().';
  END IF;
  INSERT INTO gdpr.erasures (subject_table, subject_ref, erased_at, report, report_sha256)
    SELECT (x ->> 'subject_table')::regclass, x ->> 'subject_ref', (x ->> 'at')::timestamptz,
           jsonb_build_object('status', 'imported from a ledger'), decode(x ->> 'report_sha256', 'hex')
      FROM jsonb_array_elements(ledger) x WHERE x ->> 'kind' = 'erasure'
    ON CONFLICT ON CONSTRAINT erasures_subject_table_subject_ref_key DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref, shredded_at)
    SELECT (x ->> 'key_id')::bigint, (x ->> 'subject_table')::regclass, x ->> 'subject_ref', (x ->> 'at')::timestamptz
      FROM jsonb_array_elements(ledger) x WHERE x ->> 'kind' = 'shred'
    ON CONFLICT ON CONSTRAINT shredded_keys_pkey DO NOTHING;
  GET DIAGNOSTICS m = ROW_COUNT;
  RETURN n + m;
END
$$;

-- Erase again every subject of the ledger who is present (after a restore):
-- each subject table is scanned once, its ids pseudonymised and matched.
CREATE FUNCTION gdpr.replay_erasures() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s record;
  sid text;
  n bigint := 0;
BEGIN
  -- Keys shredded since the backup was taken are shredded again.
  DELETE FROM gdpr.subject_keys k WHERE k.id IN (SELECT x.key_id FROM gdpr.shredded_keys x);
  GET DIAGNOSTICS n = ROW_COUNT;
  FOR s IN SELECT st.tbl, st.id_column FROM gdpr.subject_tables st
            WHERE EXISTS (SELECT FROM gdpr.erasures e WHERE e.subject_table = st.tbl) LOOP
    FOR sid IN EXECUTE format('SELECT t.%I::text FROM %s t WHERE gdpr._subject_ref(%L, t.%I::text) IN
                                (SELECT e.subject_ref FROM gdpr.erasures e WHERE e.subject_table = %L::regclass)',
                             s.id_column, s.tbl, s.tbl, s.id_column, s.tbl) LOOP
      -- The ledger entry already exists: erase without a new certificate row.
      DELETE FROM gdpr.erasures e WHERE e.subject_table = s.tbl AND e.subject_ref = gdpr._subject_ref(s.tbl, sid);
      PERFORM gdpr.erase_subject(sid, NULL, s.tbl);
      n := n + 1;
    END LOOP;
  END LOOP;
  RETURN n;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.erase_subject(text, bigint, regclass), gdpr.replay_erasures(),
  gdpr.export_erasure_ledger(), gdpr.import_erasure_ledger(jsonb) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.is_suppressed(text) TO gdpr_admin;
GRANT SELECT ON gdpr.erasures, gdpr.suppressions TO gdpr_auditor, gdpr_admin;

-- ==== src/sql/99_privileges.sql
-- Privileges last, so that they cover every object of every part.
-- PUBLIC gets nothing: functions are executable by PUBLIC by default.
REVOKE ALL ON ALL TABLES IN SCHEMA gdpr FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gdpr FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA gdpr FROM PUBLIC;

-- The administrator's interface.
GRANT EXECUTE ON FUNCTION
  gdpr.register_subject_table(regclass, name),
  gdpr.register_table(regclass, name, regclass),
  gdpr.unregister_table(regclass),
  gdpr.classify(regclass, name, text, text, text, text),
  gdpr.set_retention(regclass, name, interval, name, text),
  gdpr.define_purpose(text, text, text, text),
  gdpr.add_recipient(text, text, text, text)
  TO gdpr_admin;

-- What both roles may call: status, vocabularies, and what the views call
-- (a function in a view runs with the privileges of the reader).
GRANT EXECUTE ON FUNCTION
  gdpr.preloaded(), gdpr._security_measures(text), gdpr._qualified(regclass), gdpr.data_categories(), gdpr.legal_bases(), gdpr.retention_actions(),
  gdpr.iso_countries(), gdpr.eea_countries(), gdpr.adequate_countries(), gdpr.transfer_safeguards()
  TO gdpr_admin, gdpr_auditor;

-- Auditors read; they never write.
GRANT SELECT ON gdpr.personal_data, gdpr.processing_register, gdpr.registry_changes, gdpr.personal_columns,
                gdpr.subject_tables, gdpr.registered_tables, gdpr.purposes, gdpr.purpose_notices,
                gdpr.recipients, gdpr.retention_policies
  TO gdpr_auditor, gdpr_admin;

-- Data subject rights: requests, restriction, export, breaches.
GRANT EXECUTE ON FUNCTION
  gdpr.open_request(text, text, timestamptz, regclass),
  gdpr.extend_request(bigint, int, text),
  gdpr.close_request(bigint, text),
  gdpr.restrict_subject(text, text, regclass),
  gdpr.lift_restriction(text, text, regclass),
  gdpr.is_restricted(text, regclass),
  gdpr.export_subject(text, regclass, boolean, bigint),
  gdpr.report_breach(text, timestamptz, bigint),
  gdpr.notify_breach(bigint, timestamptz, text)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.request_kinds(), gdpr.request_outcomes(), gdpr._recipients_of(regclass)
  TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.requests_due, gdpr.breaches_due, gdpr.requests, gdpr.breaches, gdpr.restrictions
  TO gdpr_auditor, gdpr_admin;

-- Crypto and masking.  Pseudonymising and masking are for everyone who may
-- process personal data; decrypting and managing keys is for gdpr_admin.
GRANT EXECUTE ON FUNCTION
  gdpr.pseudonymise(text, text), gdpr.encrypt(text, text), gdpr.mask(text, int, int), gdpr.mask_email(text),
  gdpr.mask_phone(text), gdpr.generalise(timestamptz, text), gdpr.age_band(date, int),
  gdpr.generalise_postcode(text), gdpr.ciphertext_key(bytea)
  TO gdpr_admin, gdpr_auditor;
GRANT EXECUTE ON FUNCTION
  gdpr.decrypt(bytea, text), gdpr.encrypt_for_subject(text, text, regclass),
  gdpr.shred_subject(text, regclass), gdpr.rotate_key(regclass, name, text, int),
  gdpr.rotate_subject_keys(int), gdpr.key_status()
  TO gdpr_admin;
