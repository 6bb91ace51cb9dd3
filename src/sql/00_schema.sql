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
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF value IS NULL THEN
    RAISE EXCEPTION '% must not be null', argname USING ERRCODE = 'null_value_not_allowed';
  END IF;
END
$$;

-- Raise 22004 with message (and hint) when a required text is NULL or blank.
CREATE FUNCTION gdpr._not_blank(value text, message text, hint text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coalesce(btrim(value), '') = '' THEN
    RAISE EXCEPTION '%', message USING ERRCODE = 'null_value_not_allowed', HINT = coalesce(hint, '');
  END IF;
END
$$;

-- Check that value is one of allowed (22023 with the list in the hint).
CREATE FUNCTION gdpr._one_of(value text, allowed text[], what text) RETURNS text
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
  -- Rules would run their queries with the extension's own statements
  -- (security review round 25.2); CREATE RULE is refused once registered.
  IF EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = tbl OR w.ev_class IN (SELECT gdpr._descendants(tbl))) THEN
    RAISE EXCEPTION 'table % has rules', tbl
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = (SELECT string_agg(format('%I ON %s', w.rulename, w.ev_class::regclass), ', ' ORDER BY w.rulename)
                        FROM pg_rewrite w WHERE w.ev_class = tbl OR w.ev_class IN (SELECT gdpr._descendants(tbl))),
            HINT = 'A rule would run its queries with the extension''s purge and erasure: replace it by a trigger, then register the table.';
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
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN a = b OR (a IN ('smallint', 'integer', 'bigint') AND b IN ('smallint', 'integer', 'bigint'));
