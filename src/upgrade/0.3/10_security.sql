-- Security (issue 16): statements on CRM tables run as the table's owner in a
-- security-restricted context, every table a caller names is checked against
-- his own privileges, reserved pseudonym domains, no internal helper for the
-- auditor, nothing identifying left after an erasure.  The retention side
-- (restricted subjects left alone, the policy's author) is in 20_retention.sql.

-- Run one statement on CRM table tbl as its owner; $1, $2, ... are params
-- (text: the statement casts them).  Rows processed / the one jsonb value
-- of its one row.
CREATE OR REPLACE FUNCTION gdpr._owner_exec(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS bigint
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_exec';

CREATE OR REPLACE FUNCTION gdpr._owner_query(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS jsonb
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_query';

-- The extension's own pseudonyms (reserved domains included).
CREATE OR REPLACE FUNCTION gdpr._pseudonym(value text, domain text) RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_pseudonymise';

-- Whether role holds every privilege of the list on tbl, and USAGE on its schema.
CREATE OR REPLACE FUNCTION gdpr._holds_privileges(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- has_table_privilege(..., 'A, B') is true when ANY is held: each is asked.
  -- (PL/pgSQL: its plan is kept; a SQL function with SET is planned at every
  -- call, and export and erasure ask this for every table.)
  RETURN role IS NOT NULL
         AND has_schema_privilege(role, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl), 'USAGE')
         AND NOT EXISTS (SELECT FROM unnest(string_to_array(replace(privilege, ' ', ''), ',')) p
                          WHERE NOT has_table_privilege(role, tbl, p));
END
$$;

-- 42501 unless the caller holds privilege (a has_table_privilege list, e.g.
-- 'DELETE') on tbl and USAGE on its schema; action says what needed it.
CREATE OR REPLACE FUNCTION gdpr._require_privilege(tbl regclass, privilege text, action text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  ns oid := (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl);
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  IF ns IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  IF NOT coalesce(gdpr._holds_privileges(who, tbl, privilege), false) THEN
    RAISE EXCEPTION 'permission denied for table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s needs %s on %s (and USAGE on its schema); role "%s" does not hold it.',
                            action, privilege, tbl, who),
            HINT = 'The extension never acts on a table with rights its caller does not have: '
                   'ask the table''s owner for the privilege.';
  END IF;
END
$$;

-- 42501 unless the caller has the rights of tbl's owner (what ALTER TABLE
-- needs): registering a table decides what the extension will do to it.
CREATE OR REPLACE FUNCTION gdpr._require_table_owner(tbl regclass, action text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = tbl);
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  IF owner IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  PERFORM gdpr._require_privilege(tbl, 'SELECT', action);
  IF NOT pg_has_role(who, owner, 'USAGE') THEN
    RAISE EXCEPTION 'must be owner of table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s needs the rights of the table''s owner "%s"; role "%s" does not have them.',
                            action, pg_get_userbyid(owner), who),
            HINT = format('Run it as "%s", or GRANT "%s" TO "%s".', pg_get_userbyid(owner), pg_get_userbyid(owner), who);
  END IF;
END
$$;

-- The privileges a retention or erasure action needs on its table.
CREATE OR REPLACE FUNCTION gdpr._action_privileges(action text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE action WHEN 'delete' THEN 'SELECT, DELETE' WHEN 'keep' THEN 'SELECT' ELSE 'SELECT, UPDATE' END;

-- A table's schema-qualified name whatever the reader's search_path, so that
-- the register reads the same for everyone.
CREATE OR REPLACE FUNCTION gdpr.qualified_name(tbl regclass) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format('%I.%I', n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl);
COMMENT ON FUNCTION gdpr.qualified_name(regclass) IS 'schema-qualified name of a table, whatever the search_path';

-- The technical measures (Art. 30(1)(g), Art. 32) that are in force for a
-- purpose, read from the configuration rather than declared.
CREATE OR REPLACE FUNCTION gdpr.security_measures(purpose text) RETURNS text[]
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT array_remove(ARRAY[
    'access to the registry restricted to role gdpr_admin; audit views to gdpr_auditor',
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND (rp.col IS NULL OR pc.col = rp.col)
                       WHERE pc.purpose = security_measures.purpose AND rp.action <> 'keep')
         THEN 'retention periods enforced by automatic purge' END,
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND pc.col = rp.col
                       WHERE pc.purpose = security_measures.purpose AND rp.action = 'pseudonymise')
         THEN 'pseudonymisation at the end of the retention period' END,
    CASE WHEN EXISTS (SELECT FROM gdpr.retention_policies rp JOIN gdpr.personal_columns pc
                        ON pc.tbl = rp.tbl AND pc.col = rp.col
                       WHERE pc.purpose = security_measures.purpose AND rp.action = 'generalise')
         THEN 'generalisation at the end of the retention period' END
  ], NULL)
$$;
COMMENT ON FUNCTION gdpr.security_measures(text) IS 'the technical measures in force for a purpose (Art. 30(1)(g), Art. 32), read from the configuration';

-- A crm_gdpr.* setting, also in sessions that have not loaded the module yet.
CREATE OR REPLACE FUNCTION gdpr.setting(name text) RETURNS text
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_setting';
COMMENT ON FUNCTION gdpr.setting(text) IS 'the value of setting crm_gdpr.<name>, or its default where the module is not loaded';

CREATE OR REPLACE FUNCTION gdpr.pseudonymise(value text, domain text DEFAULT 'default') RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_pseudonymise_checked';

-- Raise 22004 when a required argument is NULL: PostgreSQL's own code for it.
CREATE OR REPLACE FUNCTION gdpr._not_null(value anyelement, argname text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF value IS NULL THEN
    RAISE EXCEPTION '% must not be null', argname USING ERRCODE = 'null_value_not_allowed';
  END IF;
END
$$;

-- Raise 22004 with message (and hint) when a required text is NULL or blank.
CREATE OR REPLACE FUNCTION gdpr._not_blank(value text, message text, hint text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coalesce(btrim(value), '') = '' THEN
    RAISE EXCEPTION '%', message USING ERRCODE = 'null_value_not_allowed', HINT = coalesce(hint, '');
  END IF;
END
$$;

-- Check that value is one of allowed (22023 with the list in the hint).
CREATE OR REPLACE FUNCTION gdpr._one_of(value text, allowed text[], what text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
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

-- Types whose values join with each other: the integer family, else equality.
CREATE OR REPLACE FUNCTION gdpr._types_match(a regtype, b regtype) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN a = b OR (a IN ('smallint', 'integer', 'bigint') AND b IN ('smallint', 'integer', 'bigint'));

-- How a contact value is compared on the suppression list: e-mail addresses
-- in lower case, phone numbers as their digits (a leading 0 read as +33).
CREATE OR REPLACE FUNCTION gdpr._normalise_contact(value text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN value LIKE '%@%' THEN lower(btrim(value))
              ELSE regexp_replace(regexp_replace(value, '[^0-9]', '', 'g'), '^0', '33') END;

-- Month partitions: this one and the next two; the log's retention.
CREATE OR REPLACE FUNCTION gdpr._log_month_name(m timestamp) RETURNS name
  LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN ('access_log_' || to_char(m, 'YYYY_MM'))::name;

-- The text a seal's MAC covers: every field, in a form independent of the
-- session's settings (time zone, date style).
CREATE OR REPLACE FUNCTION gdpr._seal_text(s gdpr.access_log_seals) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', s.seal_id, (extract(epoch FROM s.from_at) * 1000000)::bigint,
                              (extract(epoch FROM s.upto_at) * 1000000)::bigint, s.row_count, s.ids::text,
                              encode(s.rows_hash, 'hex'), coalesce(encode(s.prev_hash, 'hex'), '-')), 'UTF8');

-- Statements on CRM tables: as their owner.
-- Whether the subject exists; 22P02 with a clear message when subject_id is
-- not a valid value of the key's type.  Asking is reading the subject table:
-- the caller needs SELECT on it (else the answer is an oracle), and the look-up
-- runs as the table's owner.
CREATE OR REPLACE FUNCTION gdpr._subject_exists(subject_table regclass, subject_id text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  key text := gdpr._subject_key_literal(subject_table, subject_id);
BEGIN
  PERFORM gdpr._require_privilege(subject_table, 'SELECT', 'looking up a data subject');
  RETURN gdpr._owner_query(subject_table, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE %I = %s))', subject_table,
                                                 (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = subject_table),
                                                 key))::boolean;
EXCEPTION
  WHEN invalid_text_representation OR numeric_value_out_of_range OR invalid_datetime_format THEN
    RAISE EXCEPTION 'invalid subject id "%" for %', subject_id, subject_table
      USING ERRCODE = 'invalid_text_representation',
            DETAIL = format('The id column of %s is of type %s.', subject_table, gdpr._subject_key_type(subject_table));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_key_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr._pseudonym(subject_id, 'subject-key');  -- scoped by the subject_table column

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
    FROM gdpr._owner_query(st, format('SELECT jsonb_build_array(%s::text, %s::text) FROM %s WHERE %I = %s',
                                      coalesce(quote_ident(s.segment_column), 'NULL'),
                                      coalesce(quote_ident(s.status_column), 'NULL'),
                                      st, s.id_column, gdpr._subject_key_literal(st, subject_id))) x;
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
  restricted text[] := ARRAY(SELECT r.subject_id FROM gdpr.restrictions r
                              WHERE r.subject_table = st AND r.lifted_at IS NULL);
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
            WHERE t.%1$I = ANY ($1::%3$s[]) AND NOT (t.%4$I::text = ''b2c'' AND %5$s IS DISTINCT FROM ''customer'')',
          sub.id_column, st, gdpr._subject_key_type(st), sub.segment_column,
          coalesce('t.' || quote_ident(sub.status_column) || '::text', 'NULL')), ids::text)) x;
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

-- Re-encrypt under the current key the values of one column made with an
-- older key, batch_size rows per call; returns the number of rows changed
-- (0: done).  Call it until it returns 0, each call in its own transaction.
-- The caller needs SELECT and UPDATE on the table; the rows are read and
-- written as the table's owner, the decryption done outside that statement.
CREATE OR REPLACE FUNCTION gdpr.rotate_key(tbl regclass, col name, context text DEFAULT '', batch_size int DEFAULT 10000)
  RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype;
  rows jsonb;
  fresh text[];
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  PERFORM gdpr._require_privilege(tbl, 'SELECT, UPDATE', 'gdpr.rotate_key()');
  typ := (gdpr._column(tbl, col)).typ;
  PERFORM gdpr._not_null(context, 'context');
  IF typ <> 'bytea'::regtype THEN
    RAISE EXCEPTION 'column "%" of % is of type %, not bytea', col, tbl, typ USING ERRCODE = 'datatype_mismatch';
  END IF;
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Ciphertexts of the master key ('GD', version, 'M', fingerprint) under
  -- another key than the current one, locked until the update below.
  rows := gdpr._owner_query(tbl, format(
    'SELECT jsonb_build_object(''c'', coalesce(jsonb_agg(x.ctid::text), ''[]''), ''v'', coalesce(jsonb_agg(encode(x.v, ''hex'')), ''[]''))
       FROM (SELECT t.ctid, t.%1$I AS v FROM %2$s t
              WHERE substr(t.%1$I, 1, 2) = ''\x4744''::bytea AND substr(t.%1$I, 4, 1) = ''\x4d''::bytea
                AND substr(t.%1$I, 5, 8) <> decode($1, ''hex'')
              LIMIT %3$s FOR UPDATE) x', col, tbl, batch_size),
    (gdpr._key_fingerprints())[1]);
  IF jsonb_array_length(rows -> 'c') = 0 THEN
    RETURN 0;
  END IF;
  SELECT array_agg(encode(gdpr.encrypt(gdpr._decrypt_raw(decode(v, 'hex'), context, NULL, NULL), context), 'hex') ORDER BY i)
    INTO fresh FROM jsonb_array_elements_text(rows -> 'v') WITH ORDINALITY AS x(v, i);
  RETURN gdpr._owner_exec(tbl, format(
    'UPDATE %s t SET %I = decode(v.n, ''hex'') FROM unnest($1::tid[], $2::text[]) v(c, n) WHERE t.ctid = v.c',
    tbl, col), (SELECT array_agg(c ORDER BY i) FROM jsonb_array_elements_text(rows -> 'c') WITH ORDINALITY AS x(c, i))::text,
    fresh::text);
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

CREATE OR REPLACE FUNCTION gdpr.unregister_table(tbl regclass) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  children text;
  n_cols int;
  n_pol int;
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.unregister_table()');
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

CREATE OR REPLACE FUNCTION gdpr.classify(tbl regclass, col name, category text, purpose text,
                              legal_basis text, justification text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.classify()');
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

-- Export: read as the owner, any width, the caller's SELECT on every table.
DROP FUNCTION gdpr._export_columns(regclass, boolean);
-- The registered tables of one subject table, parents before children.
CREATE OR REPLACE FUNCTION gdpr._subject_tree(subject_table regclass)
  RETURNS TABLE (tbl regclass, depth int)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL, not SQL: its plan is kept for the session (a SQL function with
  -- SET is planned again at every call, and export and erasure call this).
  RETURN QUERY
    WITH RECURSIVE tree AS (
      SELECT r.tbl, 0 AS depth FROM gdpr.registered_tables r WHERE r.tbl = _subject_tree.subject_table
      UNION ALL
      SELECT r.tbl, tree.depth + 1 FROM gdpr.registered_tables r JOIN tree ON r.parent_table = tree.tbl
       WHERE r.tbl <> r.parent_table)
    SELECT tree.tbl, tree.depth FROM tree ORDER BY tree.depth, tree.tbl::text;
END
$$;

-- The subject's rows of one registered table, as a JSON array of objects
-- (column name: value).  Read as the table's owner with to_jsonb (any width:
-- no function-argument limit); bytea values come out as hex and are decrypted
-- here, outside the owner's statement.
CREATE OR REPLACE FUNCTION gdpr._export_rows(tbl regclass, key_literal text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[];
  bin_cols name[];
  rows jsonb;
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
  rows := gdpr._owner_query(tbl, format(
    'SELECT coalesce(jsonb_agg((SELECT to_jsonb(c) FROM (SELECT %s) c) ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
    (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c), tbl, gdpr._subject_rows_cond(tbl, key_literal)));
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
                              WHERE up.relid <> tree.tbl AND r.subject_table = st) LOOP
    -- Read-only: a table the caller may not read stops the export before
    -- anything is returned (all or nothing).
    PERFORM gdpr._require_privilege(t.tbl, 'SELECT', 'gdpr.export_subject()');
    data := data || jsonb_build_object(t.label, gdpr._export_rows(t.tbl, key, portability));
  END LOOP;
  RETURN data;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.export_subject(subject_id text, subject_table regclass DEFAULT NULL,
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
  PERFORM gdpr._log_event('EXPORT', st, ARRAY[subject_id], 1,
                          jsonb_build_object('kind', doc ->> 'kind', 'request_id', request_id));
  RETURN doc;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.restrict_subject(subject_id text, reason text, subject_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  rid bigint;
BEGIN
  -- Restricting decides who may change his rows: it needs UPDATE on them.
  PERFORM gdpr._require_privilege(st, 'UPDATE', 'gdpr.restrict_subject()');
  PERFORM gdpr._not_blank(reason, 'a restriction needs a reason',
    'Art. 18(1): accuracy contested, unlawful processing, needed for a legal claim, or objection pending.');
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is already restricted', subject_id USING ERRCODE = 'duplicate_object';
  END IF;
  INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES (st, subject_id, reason)
    RETURNING id INTO rid;
  -- The append-only log names the restriction, never its free-text reason
  -- (which goes with the subject if he is erased).
  PERFORM gdpr._log_event('RESTRICT', st, ARRAY[subject_id], 1, jsonb_build_object('restriction_id', rid));
END
$$;

CREATE OR REPLACE FUNCTION gdpr.lift_restriction(subject_id text, reason text DEFAULT NULL,
                                      subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  rid bigint;
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  PERFORM gdpr._require_privilege(st, 'UPDATE', 'gdpr.lift_restriction()');
  UPDATE gdpr.restrictions r SET lifted_at = now(), lifted_by = session_user, lift_reason = lift_restriction.reason
   WHERE r.subject_table = st AND r.subject_id = lift_restriction.subject_id AND r.lifted_at IS NULL
  RETURNING r.id INTO rid;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" is not restricted', subject_id USING ERRCODE = 'undefined_object';
  END IF;
  PERFORM gdpr._log_event('LIFT RESTRICTION', st, ARRAY[subject_id], 1, jsonb_build_object('restriction_id', rid));
END
$$;

-- Erasure: as the owner; nothing identifying left in schema gdpr.
DROP FUNCTION gdpr._anonymise_rows(regclass, text);
-- The subject's reference in the ledger: a keyed pseudonym, so that the
-- ledger never re-identifies him without the key kept outside the database.
CREATE OR REPLACE FUNCTION gdpr._subject_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr._pseudonym(subject_id, 'erasure-ledger');  -- scoped by the subject_table column

CREATE OR REPLACE FUNCTION gdpr.is_suppressed(email text) RETURNS boolean
  LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.suppressions s
                  WHERE s.ref = gdpr._pseudonym(gdpr._normalise_contact(email), 'suppression'));

-- The value of col after action, as an SQL expression for UPDATE ... SET
-- made of PostgreSQL's own functions (the statement runs as the table's
-- owner); NULL for 'pseudonymise', which the extension computes itself.
CREATE OR REPLACE FUNCTION gdpr._action_expr(tbl regclass, col name, action text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype := (gdpr._column(tbl, col)).typ;
BEGIN
  RETURN CASE
    -- A generated column can only be set to DEFAULT: it is recomputed.
    WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col AND a.attgenerated <> '')
      THEN 'DEFAULT'
    WHEN action = 'nullify' THEN 'NULL'
    WHEN action = 'generalise' THEN format('(%s)::%s', gdpr._generalise_sql(tbl, col, quote_ident(col)), typ)
  END;
END
$$;

-- For a kept row: what happens to each personal column.  A column's own
-- policy (nullify, pseudonymise, generalise) applies; other identifying
-- columns are pseudonymised when they hold text, else nullified when they can
-- be; keys and the rest stay (the legal obligation needs them).
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
     ORDER BY pc.col;
END
$$;

-- Anonymise the rows t of tbl matching cond (with params $1...), as the
-- table's owner, in one UPDATE; the column actions for the report.  The
-- rows are first selected and locked with the text of the columns to
-- pseudonymise, whose pseudonyms are computed here, outside the owner's
-- statement, and passed back with the rows' ctids.
CREATE OR REPLACE FUNCTION gdpr._anonymise_rows(tbl regclass, cond text, params text[] DEFAULT '{}') RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sets text;
  pcols name[];
  actions jsonb;
  rows jsonb;
  args text[] := params;
  n int := cardinality(params);
BEGIN
  SELECT string_agg(format('%I = %s', x.col, gdpr._action_expr(tbl, x.col, x.action)), ', ')
           FILTER (WHERE x.action <> 'pseudonymise'),
         array_agg(x.col ORDER BY x.col) FILTER (WHERE x.action = 'pseudonymise'),
         coalesce(jsonb_object_agg(x.col, x.action), '{}')
    INTO sets, pcols, actions
    FROM gdpr._erasure_column_actions(tbl) x WHERE x.action IS NOT NULL;
  IF pcols IS NULL THEN
    IF sets IS NOT NULL THEN
      PERFORM gdpr._owner_exec(tbl, format('UPDATE %s t SET %s WHERE %s', tbl, sets, cond), VARIADIC params);
    END IF;
    RETURN actions;
  END IF;
  rows := gdpr._owner_query(tbl, format(
    'SELECT jsonb_build_object(''c'', coalesce(jsonb_agg(x.gdpr_ctid::text), ''[]''),
                               ''v'', coalesce(jsonb_agg(jsonb_build_array(%s)), ''[]''))
       FROM (SELECT t.ctid AS gdpr_ctid, %s FROM %s t WHERE %s FOR UPDATE) x',
    (SELECT string_agg(format('x.gdpr_v%s', i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i),
    (SELECT string_agg(format('t.%I::text AS gdpr_v%s', pcols[i], i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i),
    tbl, cond), VARIADIC params);
  IF jsonb_array_length(rows -> 'c') = 0 THEN
    RETURN actions;
  END IF;
  args := args || (SELECT array_agg(c ORDER BY o) FROM jsonb_array_elements_text(rows -> 'c') WITH ORDINALITY x(c, o))::text;
  FOR i IN 1 .. cardinality(pcols) LOOP
    args := args || (SELECT array_agg(gdpr._pseudonym(r ->> (i - 1), 'erasure') ORDER BY o)
                       FROM jsonb_array_elements(rows -> 'v') WITH ORDINALITY x(r, o))::text;
  END LOOP;
  PERFORM gdpr._owner_exec(tbl, format(
    'UPDATE %s t SET %s FROM unnest($%s::tid[], %s) v(gdpr_ctid, %s) WHERE t.ctid = v.gdpr_ctid',
    tbl,
    concat_ws(', ', sets, (SELECT string_agg(format('%I = v.gdpr_p%s::%s', pcols[i], i, (gdpr._column(tbl, pcols[i])).typ),
                                             ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i)),
    n + 1,
    (SELECT string_agg(format('$%s::text[]', n + 1 + i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i),
    (SELECT string_agg(format('gdpr_p%s', i), ', ' ORDER BY i) FROM generate_subscripts(pcols, 1) i)),
    VARIADIC args);
  RETURN actions;
END
$$;

-- Erase one registered table's rows of the subject; one report entry.
CREATE OR REPLACE FUNCTION gdpr._erase_table(tbl regclass, key_literal text) RETURNS jsonb
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
    n_deleted := gdpr._owner_exec(tbl, format('DELETE FROM %s WHERE (%s) AND NOT (%s)', tbl, cond, pinned));
  END IF;
  n_kept := gdpr._owner_query(tbl, format('SELECT to_jsonb(count(*)) FROM %s WHERE %s', tbl, cond))::bigint;
  IF n_kept > 0 THEN
    actions := gdpr._anonymise_rows(tbl, cond);
  END IF;
  RETURN jsonb_build_object('table', gdpr.qualified_name(tbl), 'deleted', n_deleted, 'kept', n_kept,
                            'kept_because', CASE WHEN n_kept = 0 THEN NULL WHEN keep THEN 'legal retention'
                                                 ELSE 'referred to by kept rows' END,
                            'columns', actions);
END
$$;

-- The subject's contact values (classified "contact" columns of his row) on
-- the suppression list.
CREATE OR REPLACE FUNCTION gdpr._suppress_contacts(st regclass, key_literal text, erasure_id bigint) RETURNS int
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c name;
  v text;
  n int := 0;
BEGIN
  FOR c IN SELECT DISTINCT pc.col FROM gdpr.personal_columns pc WHERE pc.tbl = st AND pc.category = 'contact' LOOP
    v := gdpr._owner_query(st, format('SELECT to_jsonb(%I::text) FROM %s WHERE %s', c, st,
                                      gdpr._subject_rows_cond(st, key_literal))) #>> '{}';
    CONTINUE WHEN v IS NULL OR (v NOT LIKE '%@%' AND length(regexp_replace(v, '[^0-9]', '', 'g')) < 6);
    INSERT INTO gdpr.suppressions (ref, kind, erasure_id)
      VALUES (gdpr._pseudonym(gdpr._normalise_contact(v), 'suppression'),
              CASE WHEN v LIKE '%@%' THEN 'email' ELSE 'phone' END, erasure_id)
      ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
    n := n + 1;
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
      CASE WHEN EXISTS (SELECT FROM gdpr._erasure_column_actions(t) x WHERE x.action IS NOT NULL) THEN 'UPDATE' END),
      'gdpr.erase_subject()');
  END LOOP;
END
$$;

-- After an erasure, no table of schema gdpr keeps his id or free text about
-- him: his requests name him by the ledger's pseudonym, and the reasons of
-- his holds and restrictions (free text, "Mr Martin, 12 rue de la Paix...")
-- are removed with his id.  The dates stay: they are the controller's proof.
CREATE OR REPLACE FUNCTION gdpr._forget_subject(st regclass, subject_id text, ref text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.requests r SET subject_id = ref
   WHERE r.subject_table = st AND r.subject_id = _forget_subject.subject_id;
  UPDATE gdpr.holds h SET subject_id = ref, reason = '(removed with the erasure of the subject)'
   WHERE h.subject_table = st AND h.subject_id = _forget_subject.subject_id;
  UPDATE gdpr.restrictions r SET subject_id = ref, reason = '(removed with the erasure of the subject)',
         lift_reason = CASE WHEN r.lift_reason IS NOT NULL THEN '(removed with the erasure of the subject)' END
   WHERE r.subject_table = st AND r.subject_id = _forget_subject.subject_id;
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
    tables := tables || gdpr._erase_table(t.tbl, key);
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

-- The ledger as a document to keep outside the database (with the backups):
-- erasures and shredded keys, by keyed pseudonyms only, never an id in clear.
CREATE OR REPLACE FUNCTION gdpr.export_erasure_ledger() RETURNS jsonb
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN (SELECT coalesce(jsonb_agg(x ORDER BY x ->> 'at'), '[]') FROM (
            SELECT jsonb_build_object('kind', 'erasure', 'subject_table', gdpr.qualified_name(e.subject_table),
                                      'subject_ref', e.subject_ref, 'at', e.erased_at,
                                      'report_sha256', encode(e.report_sha256, 'hex')) AS x
              FROM gdpr.erasures e
            UNION ALL
            SELECT jsonb_build_object('kind', 'shred', 'subject_table', gdpr.qualified_name(k.subject_table),
                                      'subject_ref', k.subject_ref, 'key_id', k.key_id, 'at', k.shredded_at)
              FROM gdpr.shredded_keys k) entries);

-- Erase again every subject of the ledger who is present (after a restore):
-- each subject table is scanned once, its ids pseudonymised and matched.
CREATE OR REPLACE FUNCTION gdpr.replay_erasures() RETURNS bigint
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
    -- Every id of the table, read as its owner, pseudonymised here.
    FOR sid IN SELECT x.id FROM jsonb_array_elements_text(gdpr._owner_query(s.tbl,
                 format('SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t', s.id_column, s.tbl))) x(id)
                WHERE gdpr._subject_ref(s.tbl, x.id) IN (SELECT e.subject_ref FROM gdpr.erasures e
                                                          WHERE e.subject_table = s.tbl) LOOP
      -- The ledger entry already exists: erase without a new certificate row.
      DELETE FROM gdpr.erasures e WHERE e.subject_table = s.tbl AND e.subject_ref = gdpr._subject_ref(s.tbl, sid);
      PERFORM gdpr.erase_subject(sid, NULL, s.tbl);
      n := n + 1;
    END LOOP;
  END LOOP;
  RETURN n;
END
$$;

-- Log one event of the extension's own functions (EXPORT, ERASE, PURGE,
-- CONSENT, ...).  The role is the caller of the SECURITY DEFINER function,
-- not its owner.  Where nothing can be written (an export on a standby or
-- in a read-only transaction) the event is queued like a read.
CREATE OR REPLACE FUNCTION gdpr._log_event(operation text, tbl regclass, subject_ids text[], row_count bigint,
                                detail jsonb DEFAULT NULL, columns name[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
    PERFORM gdpr._log_enqueue(operation, tbl, subject_ids, row_count, detail::text);
    RETURN;
  END IF;
  INSERT INTO gdpr.access_log (operation, tbl, table_name, columns, subject_refs, subjects, row_count, detail)
    VALUES (operation, tbl, gdpr.qualified_name(tbl), columns,
            (SELECT array_agg(gdpr._log_subject_ref(s)) FROM unnest(subject_ids) s),
            cardinality(subject_ids), row_count, detail);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._log_maintain() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  lo timestamptz;
  hi timestamptz;
  part name;
  cutoff timestamptz;
  n bigint;
  removed bigint := 0;
  p record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('crm_gdpr.access_log_maintain'));
  PERFORM gdpr._allow_log_maintenance(true);
  FOR i IN 0..2 LOOP
    part := gdpr._log_month_name(this_month + make_interval(months => i));
    lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
    hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
    CONTINUE WHEN to_regclass(format('gdpr.%I', part)) IS NOT NULL;
    -- Rows that went to the default partition stay there: the month starts after them.
    lo := greatest(lo, (SELECT max(d.at) + interval '1 microsecond' FROM gdpr.access_log_default d
                         WHERE d.at >= lo AND d.at < hi));
    BEGIN
      EXECUTE gdpr._log_partition_sql(part, lo, hi);
      EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only(%L)', part, 'access log');
      PERFORM gdpr._log_index_partition(format('gdpr.%I', part)::regclass);
    EXCEPTION WHEN duplicate_table THEN
      NULL;   -- made meanwhile by the log writer or a registration
    END;
  END LOOP;

  -- Months that are over get their subject index.
  FOR p IN SELECT m.part FROM gdpr._log_months() m
            WHERE m.month_end <= now()
              AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                               WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subjects') LOOP
    PERFORM gdpr._log_index_month(p.part);
  END LOOP;

  cutoff := date_trunc('month', (now() - gdpr.setting('access_log_keep')::interval) AT TIME ZONE 'UTC')
            AT TIME ZONE 'UTC';
  FOR p IN SELECT m.part, m.relname FROM gdpr._log_months() m WHERE m.month_end <= cutoff LOOP
    EXECUTE format('SELECT count(*) FROM %s', p.part) INTO n;
    EXECUTE format('DROP TABLE %s', p.part);
    INSERT INTO gdpr.access_log_retention (dropped_before, what, row_count)
      VALUES (cutoff, 'partition ' || p.relname || ' dropped', n);
    removed := removed + n;
  END LOOP;
  DELETE FROM gdpr.access_log_default d WHERE d.at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    INSERT INTO gdpr.access_log_retention (dropped_before, what, row_count)
      VALUES (cutoff, 'rows of the default partition deleted', n);
  END IF;
  PERFORM gdpr._allow_log_maintenance(false);   -- the door closes with the maintenance
  RETURN removed + n;
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
  ELSIF r.parent_table = r.subject_table AND r.parent_column = id_col THEN
    RETURN r.subject_column;
  END IF;
  RETURN '';
END
$$;

-- Views that called internal helpers now call public functions (or none).
-- The record of processing activities (Art. 30(1)): one row per purpose.
CREATE OR REPLACE VIEW gdpr.processing_register AS
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
       gdpr.security_measures(p.code) AS security_measures,
       p.created_at,
       p.updated_at
  FROM gdpr.purposes p
  LEFT JOIN LATERAL (SELECT n.version, n.digest FROM gdpr.purpose_notices n
                      WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1) nv ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT gdpr.qualified_name(r.subject_table) ORDER BY gdpr.qualified_name(r.subject_table)) AS subject_categories,
           array_agg(DISTINCT pc.category ORDER BY pc.category) AS data_categories,
           array_agg(DISTINCT format('%s.%I', gdpr.qualified_name(pc.tbl), pc.col) ORDER BY format('%s.%I', gdpr.qualified_name(pc.tbl), pc.col)) AS columns
      FROM gdpr.personal_columns pc JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
     WHERE pc.purpose = p.code) d ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(format('%s (%s)', x.name, x.country) ORDER BY x.name) AS recipients,
           array_agg(format('%s (%s): %s', x.name, x.country, x.safeguard) ORDER BY x.name)
             FILTER (WHERE x.outside_eea) AS transfers
      FROM gdpr.recipients x WHERE x.purpose = p.code) rc ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT format('%s: %s after %s.%I, then %s',
                                     CASE WHEN rp.col IS NULL THEN gdpr.qualified_name(rp.tbl) || ' (rows)'
                                          ELSE format('%s.%I', gdpr.qualified_name(rp.tbl), rp.col) END,
                                     rp.keep, gdpr.qualified_name(rp.after_table), rp.after_column, rp.action)) AS retention
      FROM gdpr.retention_policies rp
     WHERE EXISTS (SELECT FROM gdpr.personal_columns pc
                    WHERE pc.purpose = p.code AND pc.tbl = rp.tbl AND (rp.col IS NULL OR pc.col = rp.col))) rt ON true;
COMMENT ON VIEW gdpr.processing_register IS
  'record of processing activities (GDPR Art. 30(1)), one row per purpose';

CREATE OR REPLACE VIEW gdpr.requests_due AS
SELECT r.id, r.subject_table, r.subject_id, r.kind, r.received_at, r.due_at, r.extended_months,
       r.extension_reason, r.subject_found,
       CASE WHEN now() > r.due_at THEN 'overdue'
            WHEN now() > r.due_at - interval '7 days' THEN 'due soon'
            ELSE 'open' END AS state,
       date_trunc('second', r.due_at - now()) AS time_left,
       -- Recipients to tell of a rectification, erasure or restriction (Art.
       -- 19): those of the purposes for which the subject's tables hold data.
       CASE WHEN r.kind IN ('rectification', 'erasure', 'restriction')
            THEN (SELECT coalesce(array_agg(DISTINCT format('%s (%s)', x.name, x.country)), '{}')
                    FROM gdpr.recipients x
                   WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr.registered_tables t ON t.tbl = pc.tbl
                                  WHERE pc.purpose = x.purpose AND t.subject_table = r.subject_table))
            ELSE '{}' END AS recipients_to_notify
  FROM gdpr.requests r
 WHERE r.closed_at IS NULL;
COMMENT ON VIEW gdpr.requests_due IS 'open requests with their deadline: open, due soon (7 days), overdue';

-- Mass reads: roles that read more than crm_gdpr.mass_read_rows rows of
-- personal data within the last crm_gdpr.mass_read_window.
CREATE OR REPLACE VIEW gdpr.mass_read_alarms AS
  SELECT l.role_name, sum(l.row_count)::bigint AS rows_read, sum(l.times)::bigint AS reads,
         min(l.at) AS first_at, max(coalesce(l.last_at, l.at)) AS last_at,
         array_agg(DISTINCT l.table_name ORDER BY l.table_name) AS tables,
         array_agg(DISTINCT l.application_name ORDER BY l.application_name) AS applications,
         gdpr.setting('mass_read_rows')::bigint AS threshold,
         gdpr.setting('mass_read_window')::interval AS window_length
    FROM gdpr.access_log l
   WHERE l.operation IN ('SELECT', 'COPY', 'EXPORT')
     AND l.at >= now() - gdpr.setting('mass_read_window')::interval
   GROUP BY l.role_name
  HAVING sum(l.row_count) > gdpr.setting('mass_read_rows')::bigint;
COMMENT ON VIEW gdpr.mass_read_alarms IS
  'roles that read more than crm_gdpr.mass_read_rows rows of personal data in the last crm_gdpr.mass_read_window';


-- Internal helpers the auditor could call with crafted input, gone (the
-- view retention_status, which used _retention_due, is redefined in
-- 20_retention.sql before _retention_due goes there).
DROP FUNCTION gdpr._recipients_of(regclass);
DROP FUNCTION gdpr._security_measures(text);
DROP FUNCTION gdpr._setting(text);

GRANT EXECUTE ON FUNCTION gdpr.security_measures(text), gdpr.qualified_name(regclass), gdpr.setting(text)
  TO gdpr_admin, gdpr_auditor;
