-- Purposes, notices and the Art. 30 register per tenant (issue 19.4; src/sql/38_tenant_purposes.sql).
-- gdpr.processing_register's tenant column and gdpr.compliance_report(format, tenant) are in
-- 50_registers.sql (where they are defined); has_consent, _record_consent and classify in
-- 60_rules.sql, may_process and contactable in 90_merged.sql (their last definitions).

-- Purpose codes may be qualified with their tenant: 'tenant:code'.
ALTER TABLE gdpr.purposes DROP CONSTRAINT purposes_code_check,
  ADD CONSTRAINT purposes_code_check CHECK (code ~ '^([a-z][a-z0-9_]{0,62}:)?[a-z][a-z0-9_]{0,62}$');

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

-- Changed: a purpose code may name a tenant's purpose.
CREATE OR REPLACE FUNCTION gdpr.define_purpose(code text, description text, legal_basis text,
                                    notice text DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  old gdpr.purposes;
  latest gdpr.purpose_notices;
  digest bytea;
BEGIN
  PERFORM gdpr._not_null(code, 'code');
  IF code !~ '^([a-z][a-z0-9_]{0,62}:)?[a-z][a-z0-9_]{0,62}$' THEN
    RAISE EXCEPTION 'invalid purpose code "%"', code
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A purpose code is lower case letters, digits and underscores, starting with a letter (at most 63), '
                   'prefixed with ''tenant:'' for a purpose of one tenant.';
  END IF;
  -- A tenant's purpose (issue 19.4, 38_tenant_purposes.sql): 'tenant:code'.
  IF strpos(code, ':') > 0 AND NOT EXISTS (SELECT FROM gdpr.tenants t WHERE t.name = split_part(code, ':', 1)) THEN
    RAISE EXCEPTION 'tenant "%" does not exist', split_part(code, ':', 1)
      USING ERRCODE = 'undefined_object', HINT = 'Declare it first with gdpr.define_tenant().';
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
  INSERT INTO gdpr.purposes AS p (code, description, legal_basis, tenant)
    VALUES (code, description, legal_basis, nullif(split_part(code, ':', -2), ''))
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

CREATE OR REPLACE FUNCTION gdpr.confirm_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                     subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM gdpr.consent_state s
                  WHERE s.subject_table = gdpr._subject_table(confirm_consent.subject_table)
                    AND s.subject_id = confirm_consent.subject_id
                    AND s.purpose = (gdpr._subject_purpose(confirm_consent.purpose,
                                                           gdpr._subject_table(confirm_consent.subject_table))).code
                    AND s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL) THEN
    RAISE EXCEPTION 'subject "%" has no consent to confirm for purpose "%"', subject_id, purpose
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Double opt-in confirms a consent granted before: record the grant first.';
  END IF;
  RETURN gdpr._record_consent(subject_id, purpose, 'confirm', channel, proof, subject_table);
END
$$;

-- A template's classifications use each tenant's purpose of the same name.
CREATE OR REPLACE FUNCTION gdpr._apply_template_table(tpl regclass, t regclass, target name) RETURNS boolean
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables;
  c gdpr.personal_columns;
  p gdpr.retention_policies;
  rp gdpr.purposes;
  pname text;
BEGIN
  SELECT * INTO r FROM gdpr.registered_tables x WHERE x.tbl = tpl;
  IF NOT FOUND OR EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = t) THEN
    RETURN false;
  END IF;
  IF r.subject_table = r.tbl THEN
    PERFORM gdpr.register_subject_table(t, (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = tpl));
  ELSE
    PERFORM gdpr.register_table(t, r.subject_column, gdpr._in_schema(r.parent_table, target));
  END IF;
  FOR c IN SELECT * FROM gdpr.personal_columns x WHERE x.tbl = tpl ORDER BY x.col, x.purpose LOOP
    CONTINUE WHEN NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t AND a.attname = c.col AND NOT a.attisdropped);
    -- The purpose of that name for t's tenant: its own, else the global one
    -- (38_tenant_purposes.sql).  A purpose of the template's tenant that t's
    -- has not is left out, and shown as drift, rather than fail CREATE TABLE.
    pname := split_part(c.purpose, ':', -1);
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.purposes x WHERE x.code IN (pname, gdpr.tenant_of(t) || ':' || pname));
    rp := gdpr._subject_purpose(pname, t);
    PERFORM gdpr.classify(t, c.col, c.category, pname, CASE WHEN rp.code = c.purpose THEN c.legal_basis ELSE rp.legal_basis END,
                          c.justification);
  END LOOP;
  FOR p IN SELECT * FROM gdpr.retention_policies x WHERE x.tbl = tpl ORDER BY x.id LOOP
    PERFORM gdpr.set_retention(t, p.col, p.keep, p.after_column, p.action, p.scope_column, p.scope_values, p.scope_exclude);
  END LOOP;
  RETURN true;
END
$$;

CREATE OR REPLACE VIEW gdpr.schema_template_drift AS
SELECT tp.pattern, tp.template_schema, n.nspname AS schema_name, d.object, d.drift
  FROM gdpr.schema_templates tp
  JOIN pg_namespace n ON n.nspname ~ tp.pattern AND n.nspname <> tp.template_schema
  CROSS JOIN LATERAL (
    SELECT format('%I.%I', n.nspname, c.relname) AS object,
           CASE WHEN m.t IS NULL THEN 'table missing' ELSE 'table not registered' END AS drift
      FROM gdpr.registered_tables r JOIN pg_class c ON c.oid = r.tbl
      CROSS JOIN LATERAL (SELECT to_regclass(format('%I.%I', n.nspname, c.relname)) AS t) m
     WHERE c.relnamespace = tp.template_schema::regnamespace
       AND NOT EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = m.t)
    UNION ALL
    SELECT format('%I.%I.%I', n.nspname, c.relname, pc.col), 'column not classified'
      FROM gdpr.personal_columns pc JOIN pg_class c ON c.oid = pc.tbl
      CROSS JOIN LATERAL (SELECT to_regclass(format('%I.%I', n.nspname, c.relname)) AS t) m
     WHERE c.relnamespace = tp.template_schema::regnamespace
       AND EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = m.t)
       AND NOT EXISTS (SELECT FROM gdpr.personal_columns y WHERE y.tbl = m.t AND y.col = pc.col
                          AND split_part(y.purpose, ':', -1) = split_part(pc.purpose, ':', -1))
    UNION ALL
    SELECT format('%I.%I', n.nspname, c.relname) || coalesce('.' || quote_ident(p.col), ''), 'retention policy missing'
      FROM gdpr.retention_policies p JOIN pg_class c ON c.oid = p.tbl
      CROSS JOIN LATERAL (SELECT to_regclass(format('%I.%I', n.nspname, c.relname)) AS t) m
     WHERE c.relnamespace = tp.template_schema::regnamespace
       AND EXISTS (SELECT FROM gdpr.registered_tables x WHERE x.tbl = m.t)
       AND NOT EXISTS (SELECT FROM gdpr.retention_policies y WHERE y.tbl = m.t AND y.col IS NOT DISTINCT FROM p.col
                          AND y.scope_column IS NOT DISTINCT FROM p.scope_column
                          AND y.scope_values IS NOT DISTINCT FROM p.scope_values AND y.scope_exclude = p.scope_exclude)) d;

REVOKE EXECUTE ON FUNCTION gdpr.define_tenant(text, text), gdpr.drop_tenant(text), gdpr.tenant_of(regclass),
  gdpr._subject_purpose(text, regclass), gdpr._in_tenant(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.define_tenant(text, text), gdpr.drop_tenant(text) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.tenant_of(regclass) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.tenants TO gdpr_admin, gdpr_auditor;

-- ==== The read queue's alarm (issue 19.2; src/sql/81_log_queue_drops.sql, src/log_queue_share.c).
-- The alarm on the queue (issue 19.2): like gdpr.mass_read_alarms, one row
-- per (database, role) whose reads were dropped, or had to wait for the log
-- writer (crm_gdpr.log_queue_full = wait), within the last
-- crm_gdpr.mass_read_window; the server log has a WARNING for each, at most
-- once a minute.  Counts run from the server's start.
CREATE FUNCTION gdpr.access_log_queue_pressure() RETURNS TABLE (
    database text, role text, dropped bigint, waited bigint, last_dropped_at timestamptz, last_waited_at timestamptz)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_pressure';
COMMENT ON FUNCTION gdpr.access_log_queue_pressure() IS
  'reads dropped and reads that waited for room in the read queue since the server started, by database and role';
CREATE VIEW gdpr.log_queue_alarms AS
  SELECT p.database, p.role, p.dropped, p.waited, p.last_dropped_at, p.last_waited_at,
         CASE WHEN p.dropped > 0 THEN 'reads dropped' ELSE 'reads waited for the log writer' END AS alarm,
         gdpr.setting('mass_read_window')::interval AS window_length
    FROM gdpr.access_log_queue_pressure() p
   WHERE greatest(p.last_dropped_at, p.last_waited_at) >= now() - gdpr.setting('mass_read_window')::interval;
COMMENT ON VIEW gdpr.log_queue_alarms IS
  'per database and role: reads the read queue dropped or made wait (since the server started), listed while the last is within crm_gdpr.mass_read_window';
REVOKE EXECUTE ON FUNCTION gdpr.access_log_queue_pressure() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.access_log_queue_pressure() TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.log_queue_alarms TO gdpr_auditor, gdpr_admin;
