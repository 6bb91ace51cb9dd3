-- Tenants in one database (issue 19.4): CRMs such as Twenty keep one schema
-- per customer workspace, created at run time.  A schema template says "every
-- schema whose name matches this pattern is registered like that one": its
-- registrations, classifications and retention policies are applied to every
-- matching schema present, and to every table created later in one (event
-- trigger), and the drift of a matching schema from its template is shown.

CREATE TABLE gdpr.schema_templates (
  pattern          text PRIMARY KEY,
  template_schema  name NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by       name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.schema_templates IS
  'schemas whose name matches pattern (a regular expression) are registered like template_schema';
SELECT pg_catalog.pg_extension_config_dump('gdpr.schema_templates', '');

-- The same table of another schema.
CREATE FUNCTION gdpr._in_schema(tbl regclass, schema_name name) RETURNS regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN to_regclass(format('%I.%I', schema_name, (SELECT c.relname FROM pg_class c WHERE c.oid = tbl)));

-- Register table t of schema target like its namesake tpl of the template:
-- the registration (under the namesakes of its subject or parent table), the
-- classification of its columns, its retention policies.  False when t is
-- not in the template or is registered already.
CREATE FUNCTION gdpr._apply_template_table(tpl regclass, t regclass, target name) RETURNS boolean
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

-- Apply a template to one schema: its tables in the template's order
-- (subject tables, then each table after the one it refers to).
CREATE FUNCTION gdpr._apply_template(template_schema name, target name) RETURNS int
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  tpl record;
  t regclass;
  n int := 0;
BEGIN
  FOR tpl IN
    WITH RECURSIVE tree AS (
      SELECT r.tbl, 0 AS depth FROM gdpr.registered_tables r
       WHERE r.tbl = r.subject_table AND (SELECT c.relnamespace FROM pg_class c WHERE c.oid = r.tbl) = template_schema::regnamespace
      UNION ALL
      SELECT r.tbl, tree.depth + 1 FROM gdpr.registered_tables r JOIN tree ON r.parent_table = tree.tbl
       WHERE r.tbl <> r.parent_table)
    SELECT tree.tbl, max(tree.depth) AS depth FROM tree GROUP BY tree.tbl ORDER BY 2, 1::text
  LOOP
    t := gdpr._in_schema(tpl.tbl, target);
    CONTINUE WHEN t IS NULL;
    IF gdpr._apply_template_table(tpl.tbl, t, target) THEN
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END
$$;

CREATE FUNCTION gdpr.register_schema_template(pattern text, template_schema name) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s name;
  n int := 0;
BEGIN
  PERFORM gdpr._not_blank(pattern, 'a schema template needs a pattern', 'A regular expression, e.g. ''^workspace_''.');
  PERFORM gdpr._not_null(template_schema, 'template_schema');
  PERFORM regexp_like('', pattern);  -- 2201B for a bad regular expression
  IF to_regnamespace(quote_ident(template_schema)) IS NULL THEN
    RAISE EXCEPTION 'schema "%" does not exist', template_schema USING ERRCODE = 'invalid_schema_name';
  END IF;
  IF NOT EXISTS (SELECT FROM gdpr.registered_tables r JOIN pg_class c ON c.oid = r.tbl
                  WHERE c.relnamespace = template_schema::regnamespace) THEN
    RAISE EXCEPTION 'schema "%" has no registered table', template_schema
      USING ERRCODE = 'undefined_object', HINT = 'Register the template schema''s tables first, as for any schema.';
  END IF;
  INSERT INTO gdpr.schema_templates AS x (pattern, template_schema) VALUES (pattern, template_schema)
    ON CONFLICT ON CONSTRAINT schema_templates_pkey DO UPDATE SET template_schema = excluded.template_schema;
  FOR s IN SELECT n.nspname FROM pg_namespace n
            WHERE n.nspname ~ pattern AND n.nspname <> template_schema ORDER BY 1 LOOP
    n := n + gdpr._apply_template(template_schema, s);
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION gdpr.register_schema_template(text, name) IS
  'register every schema matching pattern, now and later, like template_schema; returns the tables registered now';

CREATE FUNCTION gdpr.unregister_schema_template(pattern text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM gdpr.schema_templates x WHERE x.pattern = unregister_schema_template.pattern;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no schema template for pattern %', pattern USING ERRCODE = 'undefined_object';
  END IF;
END
$$;

-- A table created later in a schema a template covers is registered like
-- its namesake, as soon as it exists (by its creator, who owns it).
CREATE FUNCTION gdpr._on_tenant_table() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
BEGIN
  IF NOT EXISTS (SELECT FROM gdpr.schema_templates) THEN
    RETURN;
  END IF;
  FOR c IN SELECT x.objid::regclass AS t, n.nspname AS schema_name, tp.template_schema
             FROM pg_event_trigger_ddl_commands() x
             JOIN pg_class k ON k.oid = x.objid AND x.classid = 'pg_class'::regclass AND k.relkind IN ('r', 'p')
             JOIN pg_namespace n ON n.oid = k.relnamespace
             JOIN gdpr.schema_templates tp ON n.nspname ~ tp.pattern AND n.nspname <> tp.template_schema
            WHERE x.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') LOOP
    PERFORM gdpr._apply_template_table(gdpr._in_schema(c.t, c.template_schema), c.t, c.schema_name)
      WHERE gdpr._in_schema(c.t, c.template_schema) IS NOT NULL;
  END LOOP;
END
$$;
CREATE EVENT TRIGGER crm_gdpr_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
  EXECUTE FUNCTION gdpr._on_tenant_table();

-- Where a schema a template covers differs from it: a table of the template
-- missing or not registered, a classified column missing or not classified,
-- a retention policy missing.
CREATE VIEW gdpr.schema_template_drift AS
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
COMMENT ON VIEW gdpr.schema_template_drift IS
  'schemas covered by a template that differ from it: tables missing or not registered, classifications, policies';

GRANT EXECUTE ON FUNCTION gdpr.register_schema_template(text, name), gdpr.unregister_schema_template(text) TO gdpr_admin;
GRANT SELECT ON gdpr.schema_templates, gdpr.schema_template_drift TO gdpr_admin, gdpr_auditor;
