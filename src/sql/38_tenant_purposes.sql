-- Purposes, notices and the Art. 30 register per tenant (issue 19.4).  A
-- Twenty-like server keeps one schema per workspace in one database; each
-- workspace may declare its own purposes.  A tenant is a name and the
-- schemas it owns (a regular expression); a purpose of a tenant is stored
-- under the qualified code 'tenant:code', so that every table referring to
-- purposes, and every function taking a purpose code, works unchanged.  The
-- consent functions resolve an unqualified code through the subject's table:
-- the tenant's purpose of that name, else the global one (code unqualified,
-- tenant NULL).  A new notice of one tenant's purpose is a new version of
-- that purpose only: the other tenants' consents stay in force.
-- Design notes: doc/scale-out.md ("Tenants' purposes").

CREATE TABLE gdpr.tenants (
  name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  schema_pattern  text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  created_by      name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.tenants IS
  'tenants of one database: the schemas whose name matches schema_pattern (a regular expression) are theirs';
SELECT pg_catalog.pg_extension_config_dump('gdpr.tenants', '');

-- The tenant a purpose belongs to, the prefix of its qualified code; NULL:
-- global.  (Not a generated column: adding one would rewrite the table,
-- which functions taking its row type forbid on an update from 0.2.)
ALTER TABLE gdpr.purposes
  ADD COLUMN tenant text REFERENCES gdpr.tenants,
  ADD CONSTRAINT purposes_tenant_check CHECK (tenant IS NOT DISTINCT FROM nullif(split_part(code, ':', -2), ''));
COMMENT ON COLUMN gdpr.purposes.tenant IS
  'the tenant whose purpose this is (code ''tenant:code''); NULL: a global purpose, shared by every tenant';
CREATE INDEX ON gdpr.purposes (tenant);

CREATE FUNCTION gdpr.define_tenant(name text, schema_pattern text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pattern text := coalesce(schema_pattern, '^' || regexp_replace(name, '([^a-z0-9_])', '\\\1', 'g') || '$');
  clash text;
BEGIN
  PERFORM gdpr._not_null(name, 'name');
  IF name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
    RAISE EXCEPTION 'invalid tenant name "%"', name
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A tenant name is lower case letters, digits and underscores, starting with a letter (at most 63).';
  END IF;
  PERFORM gdpr._not_blank(pattern, 'a tenant needs a schema pattern', 'A regular expression, e.g. ''^workspace_1$''.');
  PERFORM regexp_like('', pattern);  -- 2201B for a bad regular expression
  -- One schema, one tenant: refuse a pattern that takes a schema of another.
  SELECT format('schema %s already belongs to tenant %s', n.nspname, t.name) INTO clash
    FROM pg_namespace n JOIN gdpr.tenants t ON n.nspname ~ t.schema_pattern
   WHERE n.nspname ~ pattern AND t.name <> define_tenant.name ORDER BY 1 LIMIT 1;
  IF clash IS NOT NULL THEN
    RAISE EXCEPTION 'the schemas of tenant "%" overlap another tenant''s', name
      USING ERRCODE = 'invalid_parameter_value', DETAIL = clash || '.',
            HINT = 'Anchor the pattern (^...$) so that it matches this tenant''s schemas only.';
  END IF;
  INSERT INTO gdpr.tenants AS t (name, schema_pattern) VALUES (name, pattern)
    ON CONFLICT ON CONSTRAINT tenants_pkey DO UPDATE SET schema_pattern = excluded.schema_pattern;
END
$$;
COMMENT ON FUNCTION gdpr.define_tenant(text, text) IS
  'declare a tenant and its schemas (schema_pattern, a regular expression; NULL: the schema named like the tenant)';

CREATE FUNCTION gdpr.drop_tenant(name text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM gdpr.purposes p WHERE p.tenant = drop_tenant.name) THEN
    RAISE EXCEPTION 'tenant "%" still has purposes', name
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = (SELECT string_agg(p.code, ', ' ORDER BY p.code) FROM gdpr.purposes p WHERE p.tenant = drop_tenant.name),
            HINT = 'A purpose stays as long as consents and classifications refer to it: keep the tenant.';
  END IF;
  DELETE FROM gdpr.tenants t WHERE t.name = drop_tenant.name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'tenant "%" does not exist', name USING ERRCODE = 'undefined_object';
  END IF;
END
$$;

-- The tenant whose schemas hold tbl; NULL: no tenant (global purposes only).
CREATE FUNCTION gdpr.tenant_of(tbl regclass) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT t.name FROM gdpr.tenants t, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = tbl AND n.nspname ~ t.schema_pattern ORDER BY t.name LIMIT 1);
COMMENT ON FUNCTION gdpr.tenant_of(regclass) IS 'the tenant whose schemas hold the table, NULL for none';

-- The purpose a code means for the subjects (or rows) of table st: a
-- qualified code is that purpose, which must be global or st's tenant's; an
-- unqualified one is st's tenant's purpose of that name, else the global one.
CREATE FUNCTION gdpr._subject_purpose(code text, st regclass) RETURNS gdpr.purposes
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t text := CASE WHEN st IS NOT NULL AND EXISTS (SELECT FROM gdpr.tenants) THEN gdpr.tenant_of(st) END;
  p gdpr.purposes;
BEGIN
  IF t IS NOT NULL AND strpos(code, ':') = 0 THEN
    SELECT * INTO p FROM gdpr.purposes x WHERE x.code = t || ':' || _subject_purpose.code;
    IF FOUND THEN
      RETURN p;
    END IF;
  END IF;
  p := gdpr._purpose(code);
  IF p.tenant IS DISTINCT FROM t AND p.tenant IS NOT NULL THEN
    RAISE EXCEPTION 'purpose "%" belongs to tenant %, table % to %', code, p.tenant, st, coalesce('tenant ' || t, 'no tenant')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use the purpose''s code without its tenant: it is resolved for the subject''s tenant.';
  END IF;
  RETURN p;
END
$$;

-- A tenant's report and register: its purposes and the global ones.
CREATE FUNCTION gdpr._in_tenant(purpose_tenant text, tenant text) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN tenant IS NULL OR purpose_tenant IS NULL OR purpose_tenant = tenant;

GRANT EXECUTE ON FUNCTION gdpr.define_tenant(text, text), gdpr.drop_tenant(text) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.tenant_of(regclass) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.tenants TO gdpr_admin, gdpr_auditor;
