-- Issue 20 (1, 2, 9): subject links as registry rows (several per table,
-- polymorphic, through a junction; a subject table may link to another),
-- foreign key actions honoured by erasure (SET NULL / SET DEFAULT children
-- unlinked and anonymised), every contact column of a subject's tree on the
-- suppression list, jsonb arrays included.  Final definitions of every
-- function changed here (they replace those of 10_security.sql and
-- 30_discovery_export.sql).

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
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_links', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_links_id_seq', '');
REVOKE ALL ON gdpr.subject_links FROM PUBLIC;
REVOKE ALL ON SEQUENCE gdpr.subject_links_id_seq FROM PUBLIC;
GRANT SELECT ON gdpr.subject_links TO gdpr_auditor, gdpr_admin;

-- Tables declared out of the erasure's scope (75_erasure.sql).
CREATE TABLE gdpr.out_of_scope_tables (
  tbl          regclass PRIMARY KEY,
  reason       text NOT NULL CHECK (btrim(reason) <> ''),
  declared_at  timestamptz NOT NULL DEFAULT now(),
  declared_by  name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.out_of_scope_tables IS
  'unregistered tables referring to subjects that the DBA declared to hold no personal data: they do not stop erasures';
SELECT pg_catalog.pg_extension_config_dump('gdpr.out_of_scope_tables', '');
REVOKE ALL ON gdpr.out_of_scope_tables FROM PUBLIC;
GRANT SELECT ON gdpr.out_of_scope_tables TO gdpr_auditor, gdpr_admin;

-- The CRM's trash (gdpr.set_soft_delete).
ALTER TABLE gdpr.registered_tables ADD COLUMN soft_delete_column name, ADD COLUMN soft_deleted_value boolean;
COMMENT ON COLUMN gdpr.registered_tables.soft_delete_column IS
  'the trash (gdpr.set_soft_delete): a row is deleted when this timestamp is set, or this boolean is soft_deleted_value';

-- Every table registered under another has that one link.
INSERT INTO gdpr.subject_links (tbl, link_column, parent_table, parent_column, linked_at, linked_by)
  SELECT r.tbl, r.subject_column, r.parent_table, r.parent_column, r.registered_at, r.registered_by
    FROM gdpr.registered_tables r WHERE r.tbl <> r.subject_table;

-- Signatures that changed: the subject table is passed down.
DROP FUNCTION gdpr._export_rows(regclass, text, boolean);
DROP FUNCTION gdpr._pinned_cond(regclass, text);
DROP FUNCTION gdpr._erase_table(regclass, text);

-- 22023 when linking tbl under parent would make a cycle (parent is tbl, or
-- reaches it through links).
CREATE OR REPLACE FUNCTION gdpr._refuse_cycle(tbl regclass, parent regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION gdpr.register_subject_table(tbl regclass, id_column name) RETURNS void
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

CREATE OR REPLACE FUNCTION gdpr.register_table(tbl regclass, subject_column name DEFAULT NULL,
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

-- The other columns of a composite link: as many on both sides, each
-- existing, of matching types (22023, 42703, 42804).
CREATE OR REPLACE FUNCTION gdpr._check_link_columns(tbl regclass, parent_table regclass, link_cols name[], parent_cols name[])
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
CREATE OR REPLACE FUNCTION gdpr.link_table(tbl regclass, link_column name, parent_table regclass,
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

-- Remove one link (the table stays registered while it has another).
CREATE OR REPLACE FUNCTION gdpr.unlink_table(tbl regclass, link_column name, parent_table regclass) RETURNS void
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

CREATE OR REPLACE FUNCTION gdpr.unregister_table(tbl regclass) RETURNS void
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

-- Rename every registry reference to column old of tbl.
CREATE OR REPLACE FUNCTION gdpr._rename_column(tbl regclass, old name, new name) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.subject_tables s SET id_column = new WHERE s.tbl = _rename_column.tbl AND s.id_column = old;
  UPDATE gdpr.registered_tables r SET subject_column = new
   WHERE r.tbl = _rename_column.tbl AND r.subject_column = old;
  UPDATE gdpr.registered_tables r SET parent_column = new
   WHERE r.parent_table = _rename_column.tbl AND r.parent_column = old;
  UPDATE gdpr.registered_tables r SET soft_delete_column = new
   WHERE r.tbl = _rename_column.tbl AND r.soft_delete_column = old;
  UPDATE gdpr.subject_links l SET link_column = new WHERE l.tbl = _rename_column.tbl AND l.link_column = old;
  UPDATE gdpr.subject_links l SET type_column = new WHERE l.tbl = _rename_column.tbl AND l.type_column = old;
  UPDATE gdpr.subject_links l SET parent_column = new
   WHERE l.parent_table = _rename_column.tbl AND l.parent_column = old;
  UPDATE gdpr.subject_links l SET extra_link_columns = array_replace(l.extra_link_columns, old, new)
   WHERE l.tbl = _rename_column.tbl AND old = ANY (l.extra_link_columns);
  UPDATE gdpr.subject_links l SET extra_parent_columns = array_replace(l.extra_parent_columns, old, new)
   WHERE l.parent_table = _rename_column.tbl AND old = ANY (l.extra_parent_columns);
  UPDATE gdpr.personal_columns c SET col = new WHERE c.tbl = _rename_column.tbl AND c.col = old;
  UPDATE gdpr.retention_policies p SET col = new WHERE p.tbl = _rename_column.tbl AND p.col = old;
  UPDATE gdpr.retention_policies p SET after_column = new
   WHERE p.after_table = _rename_column.tbl AND p.after_column = old;
  UPDATE gdpr.retention_policies p SET scope_column = new WHERE p.tbl = _rename_column.tbl AND p.scope_column = old;
  PERFORM gdpr._note_change('column renamed', format('%s.%I', tbl, old), format('now %I', new));
END
$$;

-- Forget column col of tbl: a registration that needs it goes with it.
CREATE OR REPLACE FUNCTION gdpr._forget_column(tbl regclass, col name) RETURNS void
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
  -- Another link through the column goes (the table stays registered by
  -- the others); so does a trash declared on it.
  DELETE FROM gdpr.subject_links l
   WHERE l.tbl = _forget_column.tbl AND (_forget_column.col IN (l.link_column, l.type_column)
                                         OR _forget_column.col = ANY (l.extra_link_columns))
      OR l.parent_table = _forget_column.tbl AND (l.parent_column = _forget_column.col
                                                  OR _forget_column.col = ANY (l.extra_parent_columns));
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'subject link removed');
    RAISE WARNING 'links to data subjects through % were removed', what
      USING HINT = 'Link the table again with gdpr.link_table() if its rows still belong to subjects.';
  END IF;
  UPDATE gdpr.registered_tables x SET soft_delete_column = NULL, soft_deleted_value = NULL
   WHERE x.tbl = _forget_column.tbl AND x.soft_delete_column = _forget_column.col;
  DELETE FROM gdpr.personal_columns c WHERE c.tbl = _forget_column.tbl AND c.col = _forget_column.col;
  IF FOUND THEN
    PERFORM gdpr._note_change('column dropped', what, 'classification removed');
  END IF;
  DELETE FROM gdpr.retention_policies p
   WHERE p.tbl = _forget_column.tbl AND _forget_column.col IN (p.col, p.scope_column)
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
CREATE OR REPLACE FUNCTION gdpr._forget_table(tbl regclass, label text, why text) RETURNS void
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
  DELETE FROM gdpr.subject_links l WHERE l.parent_table = _forget_table.tbl;
  DELETE FROM gdpr.registered_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.subject_tables x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.column_snapshot x WHERE x.tbl = _forget_table.tbl;
  DELETE FROM gdpr.retention_policies p WHERE p.after_table = _forget_table.tbl;
  PERFORM gdpr._note_change('table unregistered', label, why);
END
$$;

-- SQL that lists the subject ids (as text) of the rows in relation src, rows
-- of registered table tbl: every link up to tbl's subject table, joined
-- through the parents (src.link_column -> parent ... -> subject's id).
CREATE OR REPLACE FUNCTION gdpr._subject_ids_sql(tbl regclass, src text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN coalesce(gdpr._subject_ids_sql(tbl, (gdpr._registered(tbl)).subject_table, src),
                  'SELECT NULL::text WHERE false');
END
$$;

-- The same towards subject table st; NULL when tbl does not lead to it.
CREATE OR REPLACE FUNCTION gdpr._subject_ids_sql(tbl regclass, st regclass, src text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  l gdpr.subject_links;
  typ text;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('SELECT t.%I::text FROM %s t', id_col, src);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _subject_ids_sql.tbl ORDER BY x.id LOOP
    typ := CASE WHEN l.type_column IS NOT NULL THEN format(' AND t.%I = %L', l.type_column, l.type_value) ELSE '' END;
    IF l.parent_table = st AND l.parent_column = id_col AND l.extra_link_columns IS NULL THEN
      parts := parts || format('SELECT t.%I::text FROM %s t WHERE t.%I IS NOT NULL%s', l.link_column, src, l.link_column, typ);
    ELSE
      up := gdpr._subject_ids_sql(l.parent_table, st, format('(SELECT p.* FROM %s p WHERE (%s) IN (SELECT %s FROM %s t WHERE true%s))',
                                                           l.parent_table, gdpr._link_cols(l, 'p.', true),
                                                           gdpr._link_cols(l, 't.', false), src, typ));
      IF up IS NOT NULL THEN
        parts := parts || up;
      END IF;
    END IF;
  END LOOP;
  IF cardinality(parts) = 0 THEN
    RETURN NULL;
  ELSIF cardinality(parts) = 1 THEN
    RETURN 'SELECT DISTINCT * FROM (' || parts[1] || ') ids';
  END IF;
  RETURN array_to_string(parts, ' UNION ');
END
$$;

-- SQL condition selecting the rows of tbl that belong to one subject of tbl's
-- own subject table (see the three-argument form).
CREATE OR REPLACE FUNCTION gdpr._subject_rows_cond(tbl regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._subject_rows_cond(tbl, (gdpr._registered(tbl)).subject_table, key_literal);
END
$$;

-- SQL condition selecting the rows of tbl that belong to one subject of st,
-- by going down from the subject's key: each step uses the link column's
-- index.  Several links are OR-ed as a list of row ids (a plain OR of IN
-- subqueries would scan the table); 'false' when no link leads to st.
CREATE OR REPLACE FUNCTION gdpr._subject_rows_cond(tbl regclass, st regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('%I = %s', (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st), key_literal);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _subject_rows_cond.tbl ORDER BY x.id LOOP
    up := gdpr._subject_rows_cond(l.parent_table, st, key_literal);
    CONTINUE WHEN up = 'false';
    parts := parts || format('(%s) IN (SELECT %s FROM %s WHERE %s)%s', gdpr._link_cols(l, '', false),
                             gdpr._link_cols(l, '', true), l.parent_table, up,
                             CASE WHEN l.type_column IS NOT NULL THEN format(' AND %I = %L', l.type_column, l.type_value) ELSE '' END);
  END LOOP;
  IF cardinality(parts) = 0 THEN
    RETURN 'false';
  ELSIF cardinality(parts) = 1 THEN
    RETURN parts[1];
  END IF;
  RETURN format('ctid = ANY (ARRAY(%s))',
                (SELECT string_agg(format('SELECT ctid FROM %s WHERE %s', tbl, x), ' UNION ') FROM unnest(parts) x));
END
$$;

-- The registered tables of one subject table, parents before children: the
-- tables linked to it, to them, and so on (a table reached by several paths
-- comes once, at its deepest, so that an erasure does children first).
CREATE OR REPLACE FUNCTION gdpr._subject_tree(subject_table regclass)
  RETURNS TABLE (tbl regclass, depth int)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL, not SQL: its plan is kept for the session (a SQL function with
  -- SET is planned again at every call, and export and erasure call this).
  RETURN QUERY
    WITH RECURSIVE tree AS (
      SELECT r.tbl, 0 AS depth, ARRAY[r.tbl::oid] AS path
        FROM gdpr.registered_tables r WHERE r.tbl = _subject_tree.subject_table
      UNION ALL
      SELECT l.tbl, tree.depth + 1, tree.path || l.tbl::oid
        FROM gdpr.subject_links l JOIN tree ON l.parent_table = tree.tbl
       WHERE l.tbl::oid <> ALL (tree.path))
    SELECT tree.tbl, max(tree.depth)::int FROM tree GROUP BY tree.tbl ORDER BY 2, tree.tbl::text;
END
$$;

-- What Art. 15(1) says the person must be told, for the purposes for which
-- the tables of his subject table hold data.
CREATE OR REPLACE FUNCTION gdpr._subject_information(subject_table regclass, portability boolean) RETURNS jsonb
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
   WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr._subject_tree(_subject_information.subject_table) t
                                                      ON t.tbl = pc.tbl
                  WHERE pc.purpose = pr.purpose)
     AND (NOT portability OR pr.legal_basis IN ('consent', 'contract'))
$$;

-- The subject's rows of one registered table, as a JSON array of objects
-- (column name: value).  Read as the table's owner with to_jsonb (any width:
-- no function-argument limit); bytea values come out as hex and are decrypted
-- here, outside the owner's statement.
CREATE OR REPLACE FUNCTION gdpr._export_rows(tbl regclass, st regclass, key_literal text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[];
  bin_cols name[];
  rows jsonb;
  trashed text := gdpr._soft_deleted_cond(tbl, 't');
BEGIN
  -- The columns shown: all of them, or for portability (Art. 20) the keys
  -- and the columns classified under consent or contract.
  SELECT array_agg(a.attname ORDER BY a.attnum), coalesce(array_agg(a.attname) FILTER (WHERE a.atttypid = 'bytea'::regtype), '{}')
    INTO cols, bin_cols
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT portability
          OR EXISTS (SELECT FROM gdpr.personal_columns pc
                      WHERE pc.tbl = _export_rows.tbl AND pc.col = a.attname AND pc.legal_basis IN ('consent', 'contract'))
          OR EXISTS (SELECT FROM pg_constraint c
                      WHERE c.conrelid = _export_rows.tbl AND c.contype IN ('p', 'f') AND a.attnum = ANY (c.conkey)));
  -- Rows in the CRM's trash (gdpr.set_soft_delete) are marked "_deleted": true.
  rows := gdpr._owner_query(tbl, format(
    'SELECT coalesce(jsonb_agg((SELECT to_jsonb(c) FROM (SELECT %s) c)%s ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
    (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
    CASE WHEN trashed IS NOT NULL
         THEN format(' || CASE WHEN %s THEN ''{"_deleted": true}''::jsonb ELSE ''{}''::jsonb END', trashed) ELSE '' END,
    tbl, gdpr._subject_rows_cond(tbl, st, key_literal)));
  IF cardinality(bin_cols) = 0 OR jsonb_array_length(rows) = 0 THEN
    RETURN rows;
  END IF;
  SELECT jsonb_agg(r || (SELECT jsonb_object_agg(b, gdpr._export_bytea(decode(substr(r ->> b, 3), 'hex'),
                                                                       gdpr.qualified_name(tbl) || '.' || b))
                           FROM unnest(bin_cols) b) ORDER BY i)
    INTO rows FROM jsonb_array_elements(rows) WITH ORDINALITY x(r, i);
  RETURN rows;
END
$$;

-- Every row of every registered table that belongs to the subject.  Each
-- table is reached from the subject's key through indexed foreign keys, so
-- the cost follows the subject's rows, not the size of the tables.
CREATE OR REPLACE FUNCTION gdpr._subject_data(st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
  data jsonb := '{}';
  key text := gdpr._subject_key_literal(st, subject_id);
BEGIN
  -- A partition registered beside its parent is read through the parent
  -- only; keys are "schema.table" as documented, never quoted identifiers.
  FOR t IN SELECT tree.tbl, format('%s.%s', n.nspname, c.relname) AS label
             FROM gdpr._subject_tree(st) tree
             JOIN pg_class c ON c.oid = tree.tbl JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT EXISTS (SELECT FROM pg_partition_ancestors(tree.tbl) up
                               JOIN gdpr.registered_tables r ON r.tbl = up.relid
                              WHERE up.relid <> tree.tbl) LOOP
    -- Read-only: a table the caller may not read stops the export before
    -- anything is returned (all or nothing).
    PERFORM gdpr._require_privilege(t.tbl, 'SELECT', 'gdpr.export_subject()');
    data := data || jsonb_build_object(t.label, gdpr._export_rows(t.tbl, st, key, portability));
  END LOOP;
  RETURN data;
END
$$;

-- Condition on tbl's rows that other registered tables' remaining rows of
-- this subject still refer to (kept invoices pin their customer row).
CREATE OR REPLACE FUNCTION gdpr._pinned_cond(tbl regclass, st regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
  c text;
  parts text[] := '{}';
BEGIN
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.parent_table = _pinned_cond.tbl AND x.tbl <> st LOOP
    c := gdpr._subject_rows_cond(l.tbl, st, key_literal);
    CONTINUE WHEN c = 'false';
    parts := parts || format('(%s) IN (SELECT %s FROM %s WHERE %s)', gdpr._link_cols(l, '', true),
                             gdpr._link_cols(l, '', false), l.tbl, c);
  END LOOP;
  RETURN coalesce(nullif(array_to_string(parts, ' OR '), ''), 'false');
END
$$;

-- How the rows of tbl that refer to a subject of st are unlinked rather than
-- deleted, as their foreign keys say (ON DELETE SET NULL / SET DEFAULT): the
-- SET list clearing the link columns, or NULL when the rows are deleted (a
-- link without such a foreign key, or tbl is st).
CREATE OR REPLACE FUNCTION gdpr._unlink_sets(tbl regclass, st regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  all_unlink boolean;
BEGIN
  IF tbl = st OR NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = tbl AND c.contype = 'f'
                                AND c.confdeltype IN ('n', 'd')) THEN
    RETURN NULL;
  END IF;
  -- (A composite key's foreign key has the link's columns, in order: all are cleared.)
  SELECT string_agg(DISTINCT format('%I = %s', lc.col, CASE fk.confdeltype WHEN 'n' THEN 'NULL' ELSE 'DEFAULT' END), ', '),
         bool_and(coalesce(fk.confdeltype IN ('n', 'd'), false))
    INTO sets, all_unlink
    FROM gdpr.subject_links l
    CROSS JOIN LATERAL unnest(l.link_column || coalesce(l.extra_link_columns, '{}')) lc(col)
    LEFT JOIN LATERAL (SELECT c.confdeltype FROM pg_constraint c
                        WHERE c.conrelid = l.tbl AND c.contype = 'f' AND c.confrelid = l.parent_table
                          AND ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)
                              = l.link_column || coalesce(l.extra_link_columns, '{}') LIMIT 1) fk ON true
   WHERE l.tbl = _unlink_sets.tbl AND l.parent_table IN (SELECT t.tbl FROM gdpr._subject_tree(st) t);
  RETURN CASE WHEN all_unlink THEN sets END;
END
$$;

-- Erase one registered table's rows of a subject of st; one report entry.
-- Rows are deleted, or unlinked where their foreign key says SET NULL / SET
-- DEFAULT, or kept (legal retention, or referred to by kept rows); unlinked
-- and kept rows have their personal columns anonymised.
CREATE OR REPLACE FUNCTION gdpr._erase_table(tbl regclass, st regclass, key_literal text) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._subject_rows_cond(tbl, st, key_literal);
  pinned text := gdpr._pinned_cond(tbl, st, key_literal);
  keep boolean := EXISTS (SELECT FROM gdpr.retention_policies p
                           WHERE p.tbl = _erase_table.tbl AND p.col IS NULL AND p.action = 'keep');
  unlink text := CASE WHEN NOT keep THEN gdpr._unlink_sets(tbl, st) END;
  n_deleted bigint := 0;
  n_unlinked bigint := 0;
  n_kept bigint;
  actions jsonb := '{}';
BEGIN
  IF unlink IS NOT NULL THEN
    -- Anonymised while they are still his, then unlinked.
    IF gdpr._owner_query(tbl, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %s))', tbl, cond))::boolean THEN
      actions := gdpr._anonymise_rows(tbl, cond);
      n_unlinked := gdpr._owner_exec(tbl, format('UPDATE %s SET %s WHERE %s', tbl, unlink, cond));
    END IF;
  ELSIF NOT keep THEN
    n_deleted := gdpr._owner_exec(tbl, format('DELETE FROM %s WHERE (%s) AND NOT (%s)', tbl, cond, pinned));
  END IF;
  n_kept := gdpr._owner_query(tbl, format('SELECT to_jsonb(count(*)) FROM %s WHERE %s', tbl, cond))::bigint;
  IF n_kept > 0 THEN
    actions := gdpr._anonymise_rows(tbl, cond);
  END IF;
  RETURN jsonb_build_object('table', gdpr.qualified_name(tbl), 'deleted', n_deleted, 'kept', n_kept,
                            'kept_because', CASE WHEN n_kept = 0 THEN NULL WHEN keep THEN 'legal retention'
                                                 ELSE 'referred to by kept rows' END,
                            'columns', actions)
         || CASE WHEN n_unlinked > 0 THEN jsonb_build_object('unlinked', n_unlinked) ELSE '{}' END
         -- Default deny, said: the columns cleared that nobody classified.
         || coalesce((SELECT jsonb_build_object('unclassified_cleared', jsonb_agg(k ORDER BY k))
                        FROM jsonb_object_keys(actions) k
                       WHERE NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = _erase_table.tbl AND pc.col = k)
                      HAVING count(*) > 0), '{}');
END
$$;

-- The subject's e-mail addresses and phone numbers on the suppression list:
-- every value of every column classified "contact" in his rows of every
-- table of his tree, the strings inside jsonb or array columns included
-- (Twenty's "emailsAdditionalEmails"), when it looks like an e-mail or a
-- phone (an address or a city does not); on his own row, any value with an
-- @ or six digits, as before.
CREATE OR REPLACE FUNCTION gdpr._suppress_contacts(st regclass, key_literal text, erasure_id bigint) RETURNS int
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  vals jsonb;
  v text;
  kind text;
  n int := 0;
BEGIN
  FOR c IN SELECT DISTINCT pc.tbl, pc.col FROM gdpr.personal_columns pc
            WHERE pc.category = 'contact' AND pc.tbl IN (SELECT tree.tbl FROM gdpr._subject_tree(st) tree) LOOP
    vals := gdpr._owner_query(c.tbl, format('SELECT coalesce(jsonb_agg(to_jsonb(t.%I)), ''[]'') FROM %s t WHERE (%s) AND t.%I IS NOT NULL',
                                            c.col, c.tbl, gdpr._subject_rows_cond(c.tbl, st, key_literal), c.col));
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

-- 42501 unless the caller may do to every table of the subject's tree what
-- the erasure will: read it, delete its rows (unless the table is kept by a
-- 'keep' policy), update them (where kept rows have columns to anonymise).
CREATE OR REPLACE FUNCTION gdpr._require_erasure_privileges(st regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
BEGIN
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree LOOP
    PERFORM gdpr._require_privilege(t, concat_ws(', ', 'SELECT',
      CASE WHEN NOT EXISTS (SELECT FROM gdpr.retention_policies p WHERE p.tbl = t AND p.col IS NULL AND p.action = 'keep')
           THEN 'DELETE' END,
      CASE WHEN EXISTS (SELECT FROM gdpr._erasure_column_actions(t) x WHERE x.action IS NOT NULL)
             OR gdpr._unlink_sets(t, st) IS NOT NULL THEN 'UPDATE' END),
      'gdpr.erase_subject()');
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
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
  PERFORM gdpr._require_erasure_privileges(st);
  PERFORM gdpr._refuse_unregistered_referrers(st, key);
  PERFORM gdpr._owner_exec(st, format('SELECT 1 FROM %s WHERE %s FOR UPDATE', st, gdpr._subject_rows_cond(st, key)));
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
    tables := tables || gdpr._erase_table(t.tbl, st, key);
  END LOOP;

  rep := jsonb_build_object('status', 'erased', 'erasure_id', eid, 'subject_table', gdpr.qualified_name(st),
                               'request_id', request_id, 'erased_at', now(), 'tables', tables,
                               'consent_events_removed', n_consent, 'subject_key_shredded', shredded IS NOT NULL);
  UPDATE gdpr.erasures e SET report = rep, report_sha256 = sha256(convert_to(rep::text, 'UTF8'))
   WHERE e.id = eid;
  PERFORM gdpr._log_event('ERASE', st, ARRAY[subject_id], 1,
                          jsonb_build_object('erasure_id', eid, 'request_id', request_id));
  PERFORM gdpr._forget_subject(st, subject_id, ref);
  RETURN rep;
EXCEPTION
  WHEN foreign_key_violation THEN
    -- All or nothing: a table outside the registry still refers to him.
    RAISE EXCEPTION 'cannot erase subject "%": %', subject_id, SQLERRM
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Register the table that refers to him (gdpr.register_table) so that its rows are erased too.';
END
$$;

-- The column of tbl holding its subject's key, for the log triggers' argument:
-- '' when the subject is reached through other tables.
CREATE OR REPLACE FUNCTION gdpr._log_subject_column(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN id_col;
  ELSIF r.parent_table = r.subject_table AND r.parent_column = id_col
        AND NOT EXISTS (SELECT FROM gdpr.subject_links l WHERE l.tbl = _log_subject_column.tbl
                          AND (l.type_column IS NOT NULL OR l.link_column <> r.subject_column
                               OR l.parent_table <> r.parent_table)) THEN
    -- One plain link to the subject's id: the column holds his key.
    RETURN r.subject_column;
  END IF;
  RETURN '';
END
$$;

-- Declare (reason given) or withdraw (reason NULL) that an unregistered table
-- referring to subjects' rows holds no personal data.  The table owner's
-- rights are needed: it is a statement about what the table holds.
CREATE OR REPLACE FUNCTION gdpr.declare_out_of_scope(tbl regclass, reason text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.declare_out_of_scope()');
  IF reason IS NULL THEN
    DELETE FROM gdpr.out_of_scope_tables o WHERE o.tbl = declare_out_of_scope.tbl;
    RETURN;
  END IF;
  PERFORM gdpr._not_blank(reason, 'a declaration needs a reason');
  IF EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = declare_out_of_scope.tbl) THEN
    RAISE EXCEPTION 'table % is registered', tbl
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A registered table holds personal data: unregister it first if it does not.';
  END IF;
  INSERT INTO gdpr.out_of_scope_tables AS o (tbl, reason) VALUES (tbl, btrim(reason))
    ON CONFLICT ON CONSTRAINT out_of_scope_tables_pkey DO UPDATE
      SET reason = excluded.reason, declared_at = now(), declared_by = session_user;
  PERFORM gdpr._note_change('declared out of scope', gdpr.qualified_name(tbl), btrim(reason));
END
$$;

-- 55000 when a table outside the registry (and not declared out of scope)
-- refers to the subject's rows with ON DELETE SET NULL / SET DEFAULT and has
-- columns that look personal: PostgreSQL would only clear its link, and what
-- it says about him would stay.  (Other foreign keys either stop the erasure
-- themselves, NO ACTION / RESTRICT, or take the rows with his, CASCADE.)
CREATE OR REPLACE FUNCTION gdpr._refuse_unregistered_referrers(st regclass, key_literal text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  f record;
BEGIN
  FOR f IN SELECT c.conrelid::regclass AS child, a.attname AS fk_column, c.confrelid::regclass AS parent,
                  pa.attname AS parent_column,
                  (SELECT string_agg(quote_ident(x.attname), ', ' ORDER BY x.attnum) FROM pg_attribute x
                    WHERE x.attrelid = c.conrelid AND x.attnum > 0 AND NOT x.attisdropped
                      AND x.attnum <> ALL (c.conkey) AND (gdpr.personal_name_hint(x.attname)).kind IS NOT NULL) AS looks
             FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND c.confdeltype IN ('n', 'd') AND cardinality(c.conkey) = 1
              AND c.confrelid IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
              AND NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.conrelid)
              AND NOT EXISTS (SELECT FROM gdpr.out_of_scope_tables o WHERE o.tbl = c.conrelid) LOOP
    CONTINUE WHEN f.looks IS NULL;
    CONTINUE WHEN NOT gdpr._owner_query(f.child, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %I IN (SELECT %I FROM %s WHERE %s)))',
                                        f.child, f.fk_column, f.parent_column, f.parent,
                                        gdpr._subject_rows_cond(f.parent, st, key_literal)))::boolean;
    RAISE EXCEPTION 'table % refers to the subject''s rows of % and is not registered', f.child, f.parent
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Its foreign key on %I is ON DELETE SET NULL or SET DEFAULT: its rows would stay, with columns that look personal (%s).',
                            f.fk_column, f.looks),
            HINT = format('Register it (gdpr.register_table(%L, %L)) and classify its columns, or declare that it holds no personal data with gdpr.declare_out_of_scope(%L, reason).',
                          f.child::text, f.fk_column, f.child::text);
  END LOOP;
END
$$;

-- After DROP: forget dropped tables and columns.
CREATE OR REPLACE FUNCTION gdpr._on_sql_drop() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d record;
BEGIN
  -- A dropped table's declaration goes with it (its OID could be reused).
  DELETE FROM gdpr.out_of_scope_tables x
   WHERE x.tbl IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() o
                    WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
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

-- For a kept row: what happens to each personal column.  A column's own
-- policy (nullify, pseudonymise, generalise) applies; other identifying
-- columns are pseudonymised when they hold text, else nullified when they can
-- be; keys and the rest stay (the legal obligation needs them).  Default
-- deny: a column nobody classified whose name looks personal (a "mobilePerso"
-- added last week, Odoo's sanitized copies) is cleared the same way.
CREATE OR REPLACE FUNCTION gdpr._erasure_column_actions(tbl regclass) RETURNS TABLE (col name, action text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY
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
       AND a.attgenerated = ''  -- a generated column follows the columns it is computed from
  UNION ALL
  SELECT a.attname,
         CASE WHEN NOT a.attnotnull THEN 'nullify'
              WHEN a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN 'pseudonymise' END
    FROM pg_attribute a
   WHERE a.attrelid = _erasure_column_actions.tbl AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     AND NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = _erasure_column_actions.tbl AND pc.col = a.attname)
     -- (a nullable column of a unique constraint can be cleared: NULLs are distinct)
     AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey)
                      AND (c.contype IN ('p', 'f') OR c.contype = 'u' AND a.attnotnull))
     AND NOT EXISTS (SELECT FROM gdpr.subject_links l WHERE l.tbl = _erasure_column_actions.tbl
                      AND (a.attname IN (l.link_column, l.type_column) OR a.attname = ANY (l.extra_link_columns)))
     AND (gdpr.personal_name_hint(a.attname)).kind IS NOT NULL
   ORDER BY 1;
END
$$;

-- Declare the CRM's trash: a row of tbl is deleted (trashed, archived) when
-- col, a date or timestamp, is set (Twenty's "deletedAt"), or when col, a
-- boolean, is deleted_value (Odoo's active = false).  A trashed subject is
-- never contactable, and his trashed rows are marked in his export.  col
-- NULL removes the declaration.
CREATE OR REPLACE FUNCTION gdpr.set_soft_delete(tbl regclass, col name, deleted_value boolean DEFAULT false) RETURNS void
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
CREATE OR REPLACE FUNCTION gdpr._soft_deleted_cond(tbl regclass, alias text) RETURNS text
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
CREATE OR REPLACE FUNCTION gdpr._trashed_subjects(st regclass) RETURNS text[]
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
CREATE OR REPLACE FUNCTION gdpr._subject_trashed(st regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._soft_deleted_cond(st, 't');
BEGIN
  IF cond IS NULL THEN
    RETURN false;
  END IF;
  RETURN gdpr._owner_query(st, format('SELECT to_jsonb(EXISTS (SELECT FROM %s t WHERE t.%I = %s AND %s))',
                                      st, (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st),
                                      gdpr._subject_key_literal(st, subject_id), cond))::boolean;
END
$$;

-- The subject ids that may be processed for a purpose now: what a marketing
-- export must use.  Reads the current-state table through its primary key's
-- leading columns (subject_table, purpose), never the ledger.  Where the
-- answer needs the subject table (the B2C prospect rule, purposes without
-- consent), the caller needs SELECT on it and it is read as its owner, the
-- restricted subjects passed in as a parameter.
CREATE OR REPLACE FUNCTION gdpr.contactable(purpose text, subject_table regclass DEFAULT NULL) RETURNS SETOF text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  p gdpr.purposes := gdpr._purpose(purpose);
  sub gdpr.subject_tables;
  cur int := gdpr._current_notice(p.code);
  -- Restricted subjects, and those in the CRM's trash (gdpr.set_soft_delete):
  -- never contactable.
  restricted text[] := ARRAY(SELECT r.subject_id FROM gdpr.restrictions r
                              WHERE r.subject_table = st AND r.lifted_at IS NULL) || gdpr._trashed_subjects(st);
  ids text[];
BEGIN
  SELECT * INTO sub FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF p.legal_basis = 'consent' THEN
    RETURN QUERY
      SELECT s.subject_id FROM gdpr.consent_state s
       WHERE s.subject_table = st AND s.purpose = p.code
         AND s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL AND s.objected_at IS NULL
         AND (NOT p.requires_double_opt_in OR s.confirmed_at IS NOT NULL)
         AND (p.consent_valid_for IS NULL OR s.granted_at + p.consent_valid_for > now())
         AND (NOT p.renewal_required OR s.notice_version >= coalesce(cur, 0))
         AND NOT s.subject_id = ANY (restricted);
  ELSIF p.legal_basis = 'legitimate_interest' THEN
    IF NOT (p.electronic_marketing AND sub.segment_column IS NOT NULL) THEN
      RETURN QUERY
        SELECT s.subject_id FROM gdpr.consent_state s
         WHERE s.subject_table = st AND s.purpose = p.code
           AND s.objected_at IS NULL AND s.withdrawn_at IS NULL AND s.informed_at IS NOT NULL
           AND NOT s.subject_id = ANY (restricted);
      RETURN;
    END IF;
    -- Informed, not objecting: those who consented are contactable; the
    -- others unless they are B2C prospects (e-mail to them needs consent).
    RETURN QUERY
      SELECT s.subject_id FROM gdpr.consent_state s
       WHERE s.subject_table = st AND s.purpose = p.code
         AND s.objected_at IS NULL AND s.withdrawn_at IS NULL AND s.informed_at IS NOT NULL
         AND s.granted_at IS NOT NULL AND NOT s.subject_id = ANY (restricted);
    ids := ARRAY(SELECT s.subject_id FROM gdpr.consent_state s
                  WHERE s.subject_table = st AND s.purpose = p.code
                    AND s.objected_at IS NULL AND s.withdrawn_at IS NULL AND s.informed_at IS NOT NULL
                    AND s.granted_at IS NULL AND NOT s.subject_id = ANY (restricted));
    IF cardinality(ids) > 0 THEN
      PERFORM gdpr._require_privilege(st, 'SELECT', 'gdpr.contactable()');
      RETURN QUERY
        SELECT x FROM jsonb_array_elements_text(gdpr._owner_query(st, format(
          'SELECT coalesce(jsonb_agg(t.%1$I::text), ''[]'') FROM %2$s t
            WHERE t.%1$I = ANY ($1::%3$s[]) AND NOT ((%4$s) = ''b2c'' AND (%5$s) IS DISTINCT FROM ''customer'')',
          sub.id_column, st, gdpr._subject_key_type(st), (gdpr._profile_exprs(st, 't')).segment,
          coalesce((gdpr._profile_exprs(st, 't')).status, 'NULL')), ids::text)) x;
    END IF;
  ELSE
    PERFORM gdpr._require_privilege(st, 'SELECT', 'gdpr.contactable()');
    RETURN QUERY
      SELECT x FROM jsonb_array_elements_text(gdpr._owner_query(st, format(
        'SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t WHERE NOT t.%I::text = ANY ($1::text[])',
        sub.id_column, st, sub.id_column), restricted::text)) x;
  END IF;
END
$$;

-- What may be done with his data for a purpose now; see doc/consent.md.
CREATE OR REPLACE FUNCTION gdpr.may_process(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
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
  -- In the CRM's trash (gdpr.set_soft_delete): likewise.
  IF gdpr._subject_trashed(st, subject_id) THEN
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

-- Issue 20 (retpol): a status mapped from a column's values (a stage), or
-- read from a linked table (a deal's stage).
ALTER TABLE gdpr.subject_tables
  ADD COLUMN status_customer_values text[],
  ADD COLUMN status_table regclass;
COMMENT ON COLUMN gdpr.subject_tables.status_customer_values IS
  'the values of status_column that make a customer (a won stage); the others make a prospect';
COMMENT ON COLUMN gdpr.subject_tables.status_table IS
  'the table linked to the subject whose status_column says it (a deal''s stage): a customer once one of his rows does';
DROP FUNCTION gdpr.set_subject_profile(regclass, name, name);

-- The profile comes from columns the CRM has: the segment from a boolean
-- (true is B2B: Odoo's is_company), a reference (set is B2B: Twenty's
-- "companyId", Odoo's parent_id) or a text column holding 'b2b'/'b2c'; the
-- status from a boolean (true is a customer), a text column holding
-- 'customer'/'prospect', or any column mapped by customer_values: a subject
-- whose column holds one of them is a customer (a won stage: Odoo's
-- crm_lead.stage_id), any other a prospect.  With status_table, a table
-- linked to tbl, the column is that table's: a subject is a customer once
-- one of his rows there holds one of the values (Twenty's opportunity.stage
-- = 'CUSTOMER').  Anything else cannot say it (a "jobTitle"): 22023.
CREATE OR REPLACE FUNCTION gdpr.set_subject_profile(tbl regclass, segment_column name, status_column name,
                                         customer_values text[] DEFAULT NULL, status_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  vals text[];
BEGIN
  PERFORM gdpr._subject_table(tbl);
  PERFORM gdpr._column(tbl, segment_column) WHERE segment_column IS NOT NULL;
  IF (customer_values IS NOT NULL OR status_table IS NOT NULL) AND status_column IS NULL
     OR status_table IS NOT NULL AND customer_values IS NULL THEN
    RAISE EXCEPTION 'the status cannot be derived: % needs %', CASE WHEN status_column IS NULL THEN 'customer_values' ELSE 'status_table' END,
                    CASE WHEN status_column IS NULL THEN 'status_column' ELSE 'customer_values' END
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the column that says it and the values of it that make a customer (e.g. the won stages).';
  END IF;
  PERFORM gdpr._column(coalesce(status_table, tbl), status_column) WHERE status_column IS NOT NULL;
  -- The columns' values are read as the owner: a statement about his table.
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_subject_profile()');
  IF status_table IS NOT NULL THEN
    PERFORM gdpr._status_link(tbl, status_table);
  END IF;
  IF segment_column IS NOT NULL THEN
    PERFORM gdpr._check_profile_column(tbl, segment_column, ARRAY['b2b', 'b2c'], true);
  END IF;
  IF customer_values IS NOT NULL THEN
    -- Values of the column's type (an enum's labels, a stage's ids): 22023 else.
    vals := gdpr._check_scope(coalesce(status_table, tbl), status_column, customer_values, false);
  ELSIF status_column IS NOT NULL THEN
    PERFORM gdpr._check_profile_column(tbl, status_column, ARRAY['customer', 'prospect'], false);
  END IF;
  UPDATE gdpr.subject_tables s SET segment_column = set_subject_profile.segment_column,
                                   status_column = set_subject_profile.status_column,
                                   status_customer_values = vals,
                                   status_table = set_subject_profile.status_table
   WHERE s.tbl = set_subject_profile.tbl;
END
$$;

-- The link by which status_table's rows belong to the subjects of tbl
-- (directly: its column refers to tbl); 22023 when there is none, 42501 when
-- tbl's owner, who reads the profile, may not read status_table.
CREATE OR REPLACE FUNCTION gdpr._status_link(tbl regclass, status_table regclass) RETURNS gdpr.subject_links
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
BEGIN
  SELECT * INTO l FROM gdpr.subject_links x
   WHERE x.tbl = _status_link.status_table AND x.parent_table = _status_link.tbl ORDER BY x.id LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the status cannot be derived from %: it is not linked to %', status_table, tbl
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Register it under the subject table first (gdpr.register_table or gdpr.link_table).';
  END IF;
  IF NOT has_table_privilege((SELECT c.relowner FROM pg_class c WHERE c.oid = tbl), status_table, 'SELECT') THEN
    RAISE EXCEPTION 'the owner of % may not read %', tbl, status_table
      USING ERRCODE = 'insufficient_privilege', HINT = 'Grant him SELECT on it: the profile is read as him.';
  END IF;
  RETURN l;
END
$$;

-- 22023 unless col of tbl can say a profile: a boolean, a text column whose
-- values (read as the owner) are all among allowed, or, when a reference
-- may say it (the segment), a foreign key column.
CREATE OR REPLACE FUNCTION gdpr._check_profile_column(tbl regclass, col name, allowed text[], reference_ok boolean) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record := gdpr._column(tbl, col);
  n bigint;
BEGIN
  IF c.typ = 'boolean'::regtype THEN
    RETURN;
  END IF;
  IF reference_ok AND EXISTS (SELECT FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
                               WHERE k.conrelid = tbl AND k.contype = 'f' AND a.attname = col) THEN
    RETURN;
  END IF;
  IF c.typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
    n := gdpr._owner_query(tbl, format('SELECT to_jsonb(count(*)) FROM %s t WHERE t.%I IS NOT NULL AND NOT t.%I::text = ANY ($1::text[])',
                                       tbl, col, col), allowed::text)::bigint;
    IF n = 0 THEN
      RETURN;
    END IF;
  END IF;
  RAISE EXCEPTION 'column "%" of % cannot say %', col, tbl, array_to_string(allowed, ' or ')
    USING ERRCODE = 'invalid_parameter_value',
          DETAIL = CASE WHEN n > 0 THEN format('%s rows hold other values.', n)
                        ELSE format('It is of type %s.', c.typ) END,
          HINT = CASE WHEN reference_ok
                      THEN 'Name a boolean (true is B2B), a foreign key (set is B2B) or a text column holding ''b2b''/''b2c''.'
                      ELSE 'Name a boolean (true is a customer), a text column holding ''customer''/''prospect'', '
                           'or pass customer_values: the values that make a customer (the won stages).' END;
END
$$;

-- SQL expressions (text) of the segment and status of row alias of st, from
-- the columns set_subject_profile declared; NULL when not declared.
CREATE OR REPLACE FUNCTION gdpr._profile_exprs(st regclass, alias text, OUT segment text, OUT status text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s gdpr.subject_tables;
  l gdpr.subject_links;
BEGIN
  SELECT * INTO s FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF s.segment_column IS NOT NULL THEN
    segment := CASE (gdpr._column(st, s.segment_column)).typ
                 WHEN 'boolean'::regtype THEN format('CASE WHEN %1$s.%2$I THEN ''b2b'' WHEN NOT %1$s.%2$I THEN ''b2c'' END', alias, s.segment_column)
                 WHEN 'text'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 WHEN 'varchar'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 WHEN 'bpchar'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 ELSE format('CASE WHEN %s.%I IS NOT NULL THEN ''b2b'' ELSE ''b2c'' END', alias, s.segment_column) END;
  END IF;
  IF s.status_table IS NOT NULL THEN
    l := gdpr._status_link(st, s.status_table);
    status := format('CASE WHEN EXISTS (SELECT FROM %s x WHERE %s%s AND x.%I::text = ANY (%L::text[])) THEN ''customer'' ELSE ''prospect'' END',
                     s.status_table, gdpr._link_join(l, alias, 'x'),
                     CASE WHEN l.type_column IS NOT NULL THEN format(' AND x.%I = %L', l.type_column, l.type_value) ELSE '' END,
                     s.status_column, s.status_customer_values);
  ELSIF s.status_customer_values IS NOT NULL THEN
    status := format('CASE WHEN %s.%I::text = ANY (%L::text[]) THEN ''customer'' ELSE ''prospect'' END',
                     alias, s.status_column, s.status_customer_values);
  ELSIF s.status_column IS NOT NULL THEN
    status := CASE WHEN (gdpr._column(st, s.status_column)).typ = 'boolean'::regtype
                   THEN format('CASE WHEN %1$s.%2$I THEN ''customer'' WHEN NOT %1$s.%2$I THEN ''prospect'' END', alias, s.status_column)
                   ELSE format('%s.%I::text', alias, s.status_column) END;
  END IF;
END
$$;

-- The subject's segment and status ('b2b'/'b2c', 'customer'/'prospect')
-- from the columns set_subject_profile declared; NULL when not declared.
CREATE OR REPLACE FUNCTION gdpr._subject_profile(st regclass, subject_id text, OUT segment text, OUT status text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s gdpr.subject_tables;
BEGIN
  SELECT * INTO s FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF s.segment_column IS NULL AND s.status_column IS NULL THEN
    RETURN;
  END IF;
  SELECT x ->> 0, x ->> 1 INTO segment, status
    FROM gdpr._owner_query(st, format('SELECT jsonb_build_array(%s, %s) FROM %s t WHERE t.%I = %s',
                                      coalesce((gdpr._profile_exprs(st, 't')).segment, 'NULL'),
                                      coalesce((gdpr._profile_exprs(st, 't')).status, 'NULL'),
                                      st, s.id_column, gdpr._subject_key_literal(st, subject_id))) x;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.link_table(regclass, name, regclass, name, name, text, name[], name[]),
  gdpr.unlink_table(regclass, name, regclass), gdpr.declare_out_of_scope(regclass, text),
  gdpr.set_soft_delete(regclass, name, boolean) TO gdpr_admin;

-- Issue 20 (retpol): the purge's anchor and its held or restricted subjects
-- follow every link of a table (polymorphic pairs and composite keys
-- included), not only the first: here, after the links they read.

-- The join condition of link l between row alias of l.tbl and row p of
-- l.parent_table: every column pair of the link (several for a composite key).
CREATE OR REPLACE FUNCTION gdpr._link_join(l gdpr.subject_links, p text, alias text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('%s.%I = %s.%I', p, l.parent_column, alias, l.link_column)
         || coalesce((SELECT string_agg(format(' AND %s.%I = %s.%I', p, pc, alias, lc), '' ORDER BY i)
                        FROM unnest(l.extra_link_columns, l.extra_parent_columns) WITH ORDINALITY x(lc, pc, i)), '');


-- The columns of link l, on its table (parent false) or on its parent's,
-- each prefixed with prefix ('t.'), as an SQL list (a, b for a composite
-- key; compared with IN as a row: (a, b) IN (SELECT x, y ...)).
CREATE OR REPLACE FUNCTION gdpr._link_cols(l gdpr.subject_links, prefix text, parent boolean) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT string_agg(prefix || quote_ident(c), ', ' ORDER BY i)
            FROM unnest(CASE WHEN parent THEN l.parent_column || l.extra_parent_columns
                             ELSE l.link_column || l.extra_link_columns END) WITH ORDINALITY x(c, i));

-- An SQL expression giving the subject id (text) of row alias of tbl, for a
-- table whose rows have one subject each (_single_subject).
CREATE OR REPLACE FUNCTION gdpr._subject_id_expr(tbl regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
  l gdpr.subject_links;
  p gdpr.registered_tables;
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN format('%s.%I::text', alias, id_col);
  END IF;
  -- Its one link (registered_tables keeps the first one a table had).
  SELECT * INTO l FROM gdpr.subject_links x WHERE x.tbl = _subject_id_expr.tbl ORDER BY x.id LIMIT 1;
  IF NOT FOUND THEN
    l.link_column := r.subject_column; l.parent_table := r.parent_table; l.parent_column := r.parent_column;
  END IF;
  IF l.parent_table = r.subject_table AND l.parent_column = id_col THEN
    RETURN format('%s.%I::text', alias, l.link_column);
  END IF;
  p := gdpr._registered(l.parent_table);
  RETURN format('(SELECT %s FROM %s p%s WHERE p%s.%I = %s.%I)',
                gdpr._subject_id_expr(p.tbl, 'p' || length(alias)), p.tbl, length(alias), length(alias),
                l.parent_column, alias, l.link_column);
END
$$;


-- Whether every row of tbl has at most one subject of its subject table: one
-- plain link per table up to it (no polymorphic pair, no composite key).  The
-- purge then finds a row's subject with _subject_id_expr, as fast as a join;
-- otherwise it follows every link (_row_subject_ids_sql).
CREATE OR REPLACE FUNCTION gdpr._single_subject(tbl regclass) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  l gdpr.subject_links;
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN true;
  END IF;
  CASE (SELECT count(*) FROM gdpr.subject_links x WHERE x.tbl = _single_subject.tbl)
    WHEN 0 THEN RETURN true;     -- no link row: registered_tables' own (_subject_id_expr)
    WHEN 1 THEN NULL;
    ELSE RETURN false;
  END CASE;
  SELECT * INTO l FROM gdpr.subject_links x WHERE x.tbl = _single_subject.tbl;
  RETURN l.type_column IS NULL AND l.extra_link_columns IS NULL
         AND (SELECT x.subject_table FROM gdpr.registered_tables x WHERE x.tbl = l.parent_table) = r.subject_table
         AND gdpr._single_subject(l.parent_table);
END
$$;


-- A query listing the subject ids (text) of subject table st that row alias
-- of tbl belongs to, through every link of tbl and of the tables above it
-- (polymorphic pairs and composite keys included); NULL when no link leads
-- to st.  Correlated to alias: the purge evaluates it per row.
CREATE OR REPLACE FUNCTION gdpr._row_subject_ids_sql(tbl regclass, st regclass, alias text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  p text := alias || 'p';       -- one alias per level
  l gdpr.subject_links;
  typ text;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('SELECT %s.%I', alias, id_col);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _row_subject_ids_sql.tbl ORDER BY x.id LOOP
    typ := CASE WHEN l.type_column IS NOT NULL THEN format(' AND %s.%I = %L', alias, l.type_column, l.type_value) ELSE '' END;
    IF l.parent_table = st AND l.parent_column = id_col AND l.extra_link_columns IS NULL THEN
      parts := parts || format('SELECT %1$s.%2$I WHERE %1$s.%2$I IS NOT NULL%3$s', alias, l.link_column, typ);
    ELSE
      up := gdpr._row_subject_ids_sql(l.parent_table, st, p);
      IF up IS NOT NULL THEN
        parts := parts || format('SELECT %1$sx.id FROM %2$s %1$s, LATERAL (%3$s) %1$sx(id) WHERE %4$s%5$s',
                                 p, l.parent_table, up, gdpr._link_join(l, p, alias), typ);
      END IF;
    END IF;
  END LOOP;
  RETURN CASE WHEN cardinality(parts) > 0 THEN array_to_string(parts, ' UNION ALL ') END;
END
$$;


-- For a row of a table with several links (or a polymorphic or composite
-- one): the latest anchor date among the subjects of pol.after_table it
-- belongs to, through every link (subjects without a date are left out;
-- NULL when it has none).  A note about a person and his company is kept
-- while either is.
CREATE OR REPLACE FUNCTION gdpr._latest_anchor_sql(pol gdpr.retention_policies, anchor text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('(SELECT max(%s) FROM %s s WHERE s.%I IN (%s))', anchor, pol.after_table,
                (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                coalesce(gdpr._row_subject_ids_sql(pol.tbl, pol.after_table, 't'), 'SELECT NULL WHERE false'));


-- Rows whose period cannot even start: no anchor date (nor fallback).
CREATE OR REPLACE FUNCTION gdpr._no_anchor_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN concat_ws(' AND ',
    CASE WHEN pol.after_table = pol.tbl
         THEN format('coalesce(t.%I, t.%I) IS NULL', pol.after_column, coalesce(pol.fallback_column, pol.after_column))
         WHEN gdpr._single_subject(pol.tbl)
         THEN format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND coalesce(s.%I, s.%I) IS NULL)',
                     pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                     gdpr._subject_id_expr(pol.tbl, 't'), pol.after_column,
                     coalesce(pol.fallback_column, pol.after_column))
         ELSE format('%s IS NULL', gdpr._latest_anchor_sql(pol, format('coalesce(s.%I, s.%I)', pol.after_column,
                                                                        coalesce(pol.fallback_column, pol.after_column)))) END,
    gdpr._scope_cond(pol, 't'));


-- Whether row t belongs to one of the subject ids of parameter $n (text[]).
-- With none (the usual case: no hold, no restriction) the statement, planned
-- with its parameters' values, does not even compute the row's subject key.
CREATE OR REPLACE FUNCTION gdpr._excluded_cond(tbl regclass, n int) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN format('(cardinality($%2$s::text[]) > 0 AND %1$s)', CASE WHEN gdpr._single_subject(tbl)
    THEN format('coalesce(%s = ANY ($%s::text[]), false)', gdpr._subject_id_expr(tbl, 't'), n)
    -- Several links: one held or restricted subject of the row keeps it.
    ELSE coalesce(format('EXISTS (SELECT FROM (%s) x(id) WHERE x.id::text = ANY ($%s::text[]))',
                         gdpr._row_subject_ids_sql(tbl, (gdpr._registered(tbl)).subject_table, 't'), n), 'false') END, n);


REVOKE EXECUTE ON FUNCTION gdpr._link_join(gdpr.subject_links, text, text), gdpr._single_subject(regclass),
  gdpr._link_cols(gdpr.subject_links, text, boolean),
  gdpr._row_subject_ids_sql(regclass, regclass, text), gdpr._latest_anchor_sql(gdpr.retention_policies, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION gdpr.set_subject_profile(regclass, name, name, text[], regclass),
  gdpr._status_link(regclass, regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.set_subject_profile(regclass, name, name, text[], regclass) TO gdpr_admin;
