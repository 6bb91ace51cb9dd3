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
  registered_by  name NOT NULL DEFAULT session_user,
  soft_delete_column  name,
  soft_deleted_value  boolean
);
COMMENT ON COLUMN gdpr.registered_tables.soft_delete_column IS
  'the trash (gdpr.set_soft_delete): a row is deleted when this timestamp is set, or this boolean is soft_deleted_value';
COMMENT ON TABLE gdpr.registered_tables IS
  'tables holding personal data; subject_column refers to parent_table.parent_column, up to subject_table';
CREATE INDEX ON gdpr.registered_tables (parent_table);

-- How a registered table's rows belong to data subjects: one row per link.
-- A row of tbl is the subject's when tbl.link_column equals parent_column of
-- one of the subject's rows of parent_table (and, for a polymorphic link,
-- tbl.type_column = type_value).  A foreign key (orders -> contacts), a
-- polymorphic reference (Odoo's res_model/res_id), a table with several
-- (Twenty's "noteTarget": personId, companyId) and content reached through a
-- junction (note.id = "noteTarget"."noteId", parent "noteTarget") are all
-- links.  registered_tables keeps the first link of each table.
CREATE TABLE gdpr.subject_links (
  id             serial PRIMARY KEY,
  tbl            regclass NOT NULL REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  link_column    name NOT NULL,
  parent_table   regclass NOT NULL,
  parent_column  name NOT NULL,
  type_column    name,
  type_value     text,
  linked_at      timestamptz NOT NULL DEFAULT now(),
  linked_by      name NOT NULL DEFAULT session_user,
  extra_link_columns    name[],
  extra_parent_columns  name[],
  CHECK ((type_column IS NULL) = (type_value IS NULL)),
  CHECK (cardinality(extra_link_columns) IS NOT DISTINCT FROM cardinality(extra_parent_columns)
         AND cardinality(extra_link_columns) <> 0),
  CONSTRAINT subject_links_key UNIQUE NULLS NOT DISTINCT (tbl, link_column, parent_table, parent_column, type_column, type_value)
);
COMMENT ON TABLE gdpr.subject_links IS
  'rows of tbl belong to the subjects of the parent_table rows whose parent_column = tbl.link_column (and tbl.type_column = type_value)';
COMMENT ON COLUMN gdpr.subject_links.extra_link_columns IS
  'a composite link: the other columns of tbl, equal in order to extra_parent_columns of parent_table';
CREATE INDEX ON gdpr.subject_links (parent_table);

CREATE TABLE gdpr.purposes (
  code         text PRIMARY KEY CHECK (code ~ '^([a-z][a-z0-9_]{0,62}:)?[a-z][a-z0-9_]{0,62}$'),
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
  set_by        regrole,
  fallback_column name,
  scope_column  name,
  scope_values  text[],
  scope_exclude boolean NOT NULL DEFAULT false,
  CONSTRAINT retention_policies_key UNIQUE NULLS NOT DISTINCT (tbl, col, scope_column, scope_values, scope_exclude),
  CONSTRAINT retention_policies_scope CHECK (scope_column IS NOT NULL OR (scope_values IS NULL AND NOT scope_exclude))
);
COMMENT ON COLUMN gdpr.retention_policies.fallback_column IS
  'the date the period runs from where after_column is NULL (gdpr.set_retention_fallback)';
COMMENT ON COLUMN gdpr.retention_policies.set_by IS
  'the role that set the policy: the purge worker carries it out only while this role holds the privileges it needs';
COMMENT ON COLUMN gdpr.retention_policies.scope_column IS
  'the rows the policy applies to (NULL: all): those whose scope_column is one of scope_values, or, without values, '
  'is true (a boolean) or set (any other type); scope_exclude: the other rows';
COMMENT ON TABLE gdpr.retention_policies IS
  'how long data is kept: col NULL is the whole row; the period runs from after_table.after_column; '
  'several policies per table and column, one per row scope: a row is due under the earliest that matches';

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
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_links', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_links_id_seq', '');
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

-- The join condition of link l between row alias of l.tbl and row p of
-- l.parent_table: every column pair of the link (several for a composite key).
CREATE FUNCTION gdpr._link_join(l gdpr.subject_links, p text, alias text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('%s.%I = %s.%I', p, l.parent_column, alias, l.link_column)
         || coalesce((SELECT string_agg(format(' AND %s.%I = %s.%I', p, pc, alias, lc), '' ORDER BY i)
                        FROM unnest(l.extra_link_columns, l.extra_parent_columns) WITH ORDINALITY x(lc, pc, i)), '');

-- The columns of link l, on its table (parent false) or on its parent's,
-- each prefixed with prefix ('t.'), as an SQL list (a, b for a composite
-- key; compared with IN as a row: (a, b) IN (SELECT x, y ...)).
CREATE FUNCTION gdpr._link_cols(l gdpr.subject_links, prefix text, parent boolean) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT string_agg(_link_cols.prefix || quote_ident(x.c), ', ' ORDER BY x.i)
            FROM unnest(CASE WHEN _link_cols.parent THEN _link_cols.l.parent_column || _link_cols.l.extra_parent_columns
                             ELSE _link_cols.l.link_column || _link_cols.l.extra_link_columns END) WITH ORDINALITY x(c, i));
END
$$;

CREATE FUNCTION gdpr.register_subject_table(tbl regclass, id_column name) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  old_id name;
BEGIN
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.register_subject_table()');
  PERFORM gdpr._check_table(tbl);
  PERFORM gdpr._column(tbl, id_column);
  IF NOT EXISTS (SELECT FROM pg_constraint c
                  WHERE c.conrelid = tbl AND c.contype IN ('p', 'u')
                    AND c.conkey = ARRAY[(gdpr._column(tbl, id_column)).attnum]) THEN
    RAISE EXCEPTION 'column "%" does not identify the rows of %', id_column, tbl
      USING ERRCODE = 'invalid_table_definition',
            DETAIL = 'A subject''s id must be the primary key or a single-column unique constraint.';
  END IF;
  -- A table registered under another may be a subject table too (a lead is
  -- a person; a lead with a partner is also his): its links stay.
  SELECT s.id_column INTO old_id FROM gdpr.subject_tables s WHERE s.tbl = register_subject_table.tbl;
  IF old_id IS NOT NULL AND old_id <> id_column
     AND EXISTS (SELECT FROM gdpr.subject_links l WHERE l.parent_table = register_subject_table.tbl) THEN
    RAISE EXCEPTION 'cannot change the id column of % while tables refer to it', tbl
      USING ERRCODE = 'dependent_objects_still_exist',
            HINT = 'Unregister the tables registered under it first.';
  END IF;
  -- Registering again updates the id column: the call is idempotent.
  INSERT INTO gdpr.subject_tables AS s (tbl, id_column) VALUES (tbl, id_column)
    ON CONFLICT ON CONSTRAINT subject_tables_pkey DO UPDATE SET id_column = excluded.id_column;
  INSERT INTO gdpr.registered_tables AS r (tbl, subject_table, subject_column, parent_table, parent_column)
    VALUES (tbl, tbl, id_column, tbl, id_column)
    ON CONFLICT ON CONSTRAINT registered_tables_pkey DO UPDATE
      SET subject_table = excluded.subject_table, subject_column = excluded.subject_column,
          parent_table = excluded.parent_table, parent_column = excluded.parent_column;
  -- The links of its children keep naming the key they referred to.
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
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.register_table()');
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
  PERFORM gdpr._refuse_cycle(tbl, p_table);

  -- Registering again moves the table under its new parent: idempotent.
  INSERT INTO gdpr.registered_tables AS r (tbl, subject_table, subject_column, parent_table, parent_column)
    VALUES (tbl, parent.subject_table, s_column, p_table, p_column)
    ON CONFLICT ON CONSTRAINT registered_tables_pkey DO UPDATE
      SET subject_table = excluded.subject_table, subject_column = excluded.subject_column,
          parent_table = excluded.parent_table, parent_column = excluded.parent_column;
  -- ... and replaces its links by this one (gdpr.link_table() adds others).
  DELETE FROM gdpr.subject_links l WHERE l.tbl = register_table.tbl;
  INSERT INTO gdpr.subject_links (tbl, link_column, parent_table, parent_column)
    VALUES (tbl, s_column, p_table, p_column);
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

-- 22023 when linking tbl under parent would make a cycle (parent is tbl, or
-- reaches it through links).
CREATE FUNCTION gdpr._refuse_cycle(tbl regclass, parent regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF tbl = parent OR EXISTS (WITH RECURSIVE up(t) AS (
               SELECT parent
               UNION
               SELECT l.parent_table FROM gdpr.subject_links l JOIN up ON l.tbl = up.t)
             SELECT FROM up WHERE up.t = tbl) THEN
    RAISE EXCEPTION 'registering % under % would make a cycle', tbl, parent
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END
$$;

-- The other columns of a composite link: as many on both sides, each
-- existing, of matching types (22023, 42703, 42804).
CREATE FUNCTION gdpr._check_link_columns(tbl regclass, parent_table regclass, link_cols name[], parent_cols name[])
  RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  i int;
  a regtype;
  b regtype;
BEGIN
  IF link_cols IS NULL AND parent_cols IS NULL THEN
    RETURN;
  END IF;
  IF cardinality(link_cols) IS DISTINCT FROM cardinality(parent_cols) OR cardinality(link_cols) = 0 THEN
    RAISE EXCEPTION 'extra_link_columns and extra_parent_columns must name as many columns'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A composite key pairs each column of the table with one of its parent''s, in order.';
  END IF;
  FOR i IN 1 .. cardinality(link_cols) LOOP
    a := (gdpr._column(tbl, link_cols[i])).typ;
    b := (gdpr._column(parent_table, parent_cols[i])).typ;
    IF NOT gdpr._types_match(a, b) THEN
      RAISE EXCEPTION 'column "%" of % is of type %, but %.% is of type %', link_cols[i], tbl, a, parent_table, parent_cols[i], b
        USING ERRCODE = 'datatype_mismatch';
    END IF;
  END LOOP;
END
$$;

-- Another way tbl's rows belong to data subjects: rows of tbl whose
-- link_column equals parent_column of a subject's parent_table rows, and,
-- for a polymorphic reference, whose type_column holds type_value.  For
-- content reached through a junction, the junction is the parent (note.id =
-- "noteTarget"."noteId").  tbl is registered if it was not; a table may have
-- several links, to several subject tables, and be a subject table itself.
-- A composite key links by several columns: extra_link_columns equal, in
-- order, extra_parent_columns (both found from the foreign key whose first
-- column is link_column when neither they nor parent_column are given).
CREATE FUNCTION gdpr.link_table(tbl regclass, link_column name, parent_table regclass,
                                parent_column name DEFAULT NULL, type_column name DEFAULT NULL,
                                type_value text DEFAULT NULL, extra_link_columns name[] DEFAULT NULL,
                                extra_parent_columns name[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  parent gdpr.registered_tables;
  p_column name := parent_column;
  col_type regtype;
  key_type regtype;
  fk record;
BEGIN
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.link_table()');
  PERFORM gdpr._check_table(tbl);
  PERFORM gdpr._not_null(link_column, 'link_column');
  parent := gdpr._registered(parent_table);
  PERFORM gdpr._column(tbl, link_column);
  IF (type_column IS NULL) <> (type_value IS NULL) THEN
    RAISE EXCEPTION 'type_column and type_value go together'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A polymorphic reference names the column holding the kind of row and the kind meant, e.g. res_model = ''res.partner''.';
  END IF;
  IF type_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, type_column);
  END IF;
  -- A composite foreign key whose first column is link_column gives the others.
  IF p_column IS NULL AND extra_link_columns IS NULL AND extra_parent_columns IS NULL
     AND NOT EXISTS (SELECT FROM gdpr._registered_fkeys(tbl, link_column, parent_table)) THEN
    SELECT (SELECT array_agg(a.attname ORDER BY i) FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n WHERE i > 1) AS l,
           (SELECT array_agg(a.attname ORDER BY i) FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
              JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n) AS p
      INTO fk
      FROM pg_constraint c JOIN pg_attribute a1 ON a1.attrelid = c.conrelid AND a1.attnum = c.conkey[1]
     WHERE c.conrelid = tbl AND c.confrelid = parent_table AND c.contype = 'f' AND cardinality(c.conkey) > 1
       AND a1.attname = link_column
     ORDER BY c.conname LIMIT 1;
    IF FOUND THEN
      p_column := fk.p[1];
      extra_link_columns := fk.l;
      extra_parent_columns := fk.p[2:];
    END IF;
  END IF;
  PERFORM gdpr._check_link_columns(tbl, parent_table, extra_link_columns, extra_parent_columns);
  -- The column referred to: the one its foreign key names, else the
  -- subject's id (a subject table), else the parent's primary key.
  p_column := coalesce(p_column,
                       (SELECT f.parent_column FROM gdpr._registered_fkeys(tbl, link_column, parent_table) f LIMIT 1),
                       (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = parent_table),
                       gdpr._key_column(parent_table));
  IF p_column IS NULL THEN
    RAISE EXCEPTION 'table % has no single-column primary key to refer to', parent_table
      USING ERRCODE = 'invalid_table_definition', HINT = 'Pass parent_column.';
  END IF;
  col_type := (gdpr._column(tbl, link_column)).typ;
  key_type := (gdpr._column(parent_table, p_column)).typ;
  IF NOT gdpr._types_match(col_type, key_type) THEN
    RAISE EXCEPTION 'column "%" of % is of type %, but %.% is of type %',
                    link_column, tbl, col_type, parent_table, p_column, key_type
      USING ERRCODE = 'datatype_mismatch';
  END IF;
  PERFORM gdpr._refuse_cycle(tbl, parent_table);
  IF NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = link_table.tbl) THEN
    INSERT INTO gdpr.registered_tables (tbl, subject_table, subject_column, parent_table, parent_column)
      VALUES (tbl, parent.subject_table, link_column, parent_table, p_column);
    PERFORM gdpr._snapshot_columns(tbl);
  END IF;
  INSERT INTO gdpr.subject_links AS l (tbl, link_column, parent_table, parent_column, type_column, type_value,
                                       extra_link_columns, extra_parent_columns)
    VALUES (tbl, link_column, parent_table, p_column, type_column, type_value, extra_link_columns, extra_parent_columns)
    ON CONFLICT ON CONSTRAINT subject_links_key DO NOTHING;
  -- The log triggers' argument depends on the links: set them again.
  PERFORM gdpr._attach_triggers(tbl);
END
$$;

-- Declare the CRM's trash: a row of tbl is deleted (trashed, archived) when
-- col, a date or timestamp, is set (Twenty's "deletedAt"), or when col, a
-- boolean, is deleted_value (Odoo's active = false).  A trashed subject is
-- never contactable, and his trashed rows are marked in his export.  col
-- NULL removes the declaration.
CREATE FUNCTION gdpr.set_soft_delete(tbl regclass, col name, deleted_value boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype;
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_soft_delete()');
  IF col IS NOT NULL THEN
    typ := (gdpr._column(tbl, col)).typ;
    IF typ NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone', 'boolean') THEN
      RAISE EXCEPTION 'column "%" of % is of type %, not a date, timestamp or boolean', col, tbl, typ
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'A row is in the trash when a date column is set, or when a boolean column has a given value.';
    END IF;
    PERFORM gdpr._not_null(deleted_value, 'deleted_value');
  END IF;
  UPDATE gdpr.registered_tables r
     SET soft_delete_column = col,
         soft_deleted_value = CASE WHEN typ = 'boolean'::regtype THEN deleted_value END
   WHERE r.tbl = set_soft_delete.tbl;
END
$$;

-- SQL condition true for the trashed rows of tbl (alias.column), or NULL
-- when tbl has no trash.
CREATE FUNCTION gdpr._soft_deleted_cond(tbl regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
BEGIN
  RETURN CASE WHEN r.soft_delete_column IS NULL THEN NULL
              WHEN r.soft_deleted_value IS NULL THEN format('%s.%I IS NOT NULL', alias, r.soft_delete_column)
              ELSE format('%s.%I IS %s', alias, r.soft_delete_column, CASE WHEN r.soft_deleted_value THEN 'TRUE' ELSE 'FALSE' END) END;
END
$$;

-- The ids (text) of the trashed subjects of subject table st, read as its
-- owner (the caller needs SELECT on it); empty when st has no trash.
CREATE FUNCTION gdpr._trashed_subjects(st regclass) RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._soft_deleted_cond(st, 't');
BEGIN
  IF cond IS NULL THEN
    RETURN '{}';
  END IF;
  PERFORM gdpr._require_privilege(st, 'SELECT', 'reading the trash of a subject table');
  RETURN ARRAY(SELECT jsonb_array_elements_text(gdpr._owner_query(st, format(
    'SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t WHERE %s',
    (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st), st, cond))));
END
$$;

-- Whether one subject's row is in the trash.
CREATE FUNCTION gdpr._subject_trashed(st regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._soft_deleted_cond(st, 't');
BEGIN
  IF cond IS NULL THEN
    RETURN false;
  END IF;
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  RETURN gdpr._owner_query_kept(st, format('SELECT to_jsonb(EXISTS (SELECT FROM %s t WHERE t.%I = $1::%s AND %s))',
                                           st, (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st),
                                           gdpr._subject_key_type(st), cond), subject_id)::boolean;
END
$$;

-- Remove one link (the table stays registered while it has another).
CREATE FUNCTION gdpr.unlink_table(tbl regclass, link_column name, parent_table regclass) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.unlink_table()');
  IF (SELECT count(*) FROM gdpr.subject_links l WHERE l.tbl = unlink_table.tbl) <= 1
     AND NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = unlink_table.tbl) THEN
    RAISE EXCEPTION 'table % has no other link to a subject', tbl
      USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Use gdpr.unregister_table().';
  END IF;
  DELETE FROM gdpr.subject_links l
   WHERE l.tbl = unlink_table.tbl AND l.link_column = unlink_table.link_column
     AND l.parent_table = unlink_table.parent_table;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'table % has no link through "%" to %', tbl, link_column, parent_table
      USING ERRCODE = 'undefined_object';
  END IF;
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
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.unregister_table()');
  SELECT string_agg(DISTINCT l.tbl::text, ', ') INTO children
    FROM gdpr.subject_links l WHERE l.parent_table = unregister_table.tbl AND l.tbl <> unregister_table.tbl;
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

-- A column classified without a justification (none, or blank) is stored
-- with none and shown as not justified (gdpr.personal_data.justified,
-- processing_register.unjustified_data); a sensitive one is refused.
CREATE FUNCTION gdpr.classify(tbl regclass, col name, category text, purpose text,
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

-- A policy applies to the rows of its scope (all rows without one): a
-- table may have one policy per scope (and per column), and a row is due
-- under the earliest that matches it.  Setting the policy of a scope again
-- replaces it; without scope arguments that is the whole-table policy.
CREATE FUNCTION gdpr.set_retention(tbl regclass, col name, keep interval, after_column name,
                                   action text, scope_column name DEFAULT NULL, scope_values text[] DEFAULT NULL,
                                   scope_exclude boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg gdpr.registered_tables := gdpr._registered(tbl);
  anchor regclass;
  anchor_type regtype;
  target record;
  vals text[];
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
  vals := gdpr._check_scope(tbl, scope_column, scope_values, scope_exclude);

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

  -- Whoever sets a policy must hold what carrying it out needs: the worker
  -- acts on the table only while the role that set it still does.
  PERFORM gdpr._require_privilege(tbl, gdpr._action_privileges(action), 'gdpr.set_retention()');
  INSERT INTO gdpr.retention_policies AS p (tbl, col, keep, after_table, after_column, action, set_by,
                                            scope_column, scope_values, scope_exclude)
    VALUES (tbl, col, keep, anchor, after_column, action, gdpr._caller()::regrole,
            scope_column, vals, coalesce(scope_exclude, false))
    ON CONFLICT ON CONSTRAINT retention_policies_key DO UPDATE
      SET keep = excluded.keep, after_table = excluded.after_table, after_column = excluded.after_column,
          action = excluded.action, updated_at = now(), updated_by = session_user, set_by = excluded.set_by;
END
$$;

-- Check a policy's row scope (see gdpr.set_retention), or the values of a
-- column that make a customer (gdpr.set_subject_profile): the column exists;
-- its values, if any, are values of its type (an enum's labels, numbers),
-- returned in their canonical text form, sorted, so that the scope is the
-- same whatever order or spelling ('01' for 1) they were given in.  No SQL
-- text is taken: the values are only ever parameters.  Converted as the
-- table's owner: a domain's CHECK and a cast of the column's type are his
-- code, which would run with the extension owner's rights here.
CREATE FUNCTION gdpr._check_scope(tbl regclass, scope_column name, scope_values text[], scope_exclude boolean)
  RETURNS text[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ text;
  v text;
  vals text[] := '{}';
BEGIN
  IF scope_column IS NULL THEN
    IF scope_values IS NOT NULL OR coalesce(scope_exclude, false) THEN
      RAISE EXCEPTION 'a row scope needs its column'
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass scope_column with scope_values or scope_exclude.';
    END IF;
    RETURN NULL;
  END IF;
  typ := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = tbl AND a.attnum = (gdpr._column(tbl, scope_column)).attnum);
  IF scope_values IS NULL THEN
    RETURN NULL;                 -- a boolean that is true, any other column that is set
  END IF;
  IF cardinality(scope_values) = 0 OR array_position(scope_values, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'the values of column "%" must be listed, without NULL', scope_column
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave scope_values NULL for the rows where the column is set (true, for a boolean).';
  END IF;
  FOREACH v IN ARRAY scope_values LOOP
    BEGIN
      v := gdpr._owner_query(tbl, format('SELECT to_jsonb(($1::text)::%s::text)', typ), v) #>> '{}';
    EXCEPTION WHEN data_exception THEN
      RAISE EXCEPTION 'value % is not a value of column "%" of % (type %)', quote_literal(v), scope_column, tbl, typ
        USING ERRCODE = 'invalid_parameter_value', DETAIL = SQLERRM;
    END;
    vals := vals || v;
  END LOOP;
  RETURN ARRAY(SELECT DISTINCT x FROM unnest(vals) x ORDER BY 1);
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

GRANT SELECT ON gdpr.subject_links TO gdpr_auditor, gdpr_admin;
