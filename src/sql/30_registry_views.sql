-- What auditors read about the registry.

-- A table's schema-qualified name whatever the reader's search_path, so that
-- the register reads the same for everyone.
CREATE FUNCTION gdpr.qualified_name(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT format('%I.%I', n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = qualified_name.tbl);
END
$$;
COMMENT ON FUNCTION gdpr.qualified_name(regclass) IS 'schema-qualified name of a table, whatever the search_path';

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
       pc.classified_by,
       (pc.justification IS NOT NULL) AS justified
  FROM gdpr.personal_columns pc
  JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
  JOIN pg_class c ON c.oid = pc.tbl
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = pc.tbl AND a.attname = pc.col
  -- The policies without a row scope (the others are in gdpr.retention_status).
  LEFT JOIN gdpr.retention_policies pcol ON pcol.tbl = pc.tbl AND pcol.col = pc.col AND pcol.scope_column IS NULL
  LEFT JOIN gdpr.retention_policies prow ON prow.tbl = pc.tbl AND prow.col IS NULL AND prow.scope_column IS NULL;
COMMENT ON VIEW gdpr.personal_data IS
  'one row per classified column and purpose: what is kept, why, on which basis and for how long';

-- The technical measures (Art. 30(1)(g), Art. 32) that are in force for a
-- purpose, read from the configuration rather than declared.
CREATE FUNCTION gdpr.security_measures(purpose text) RETURNS text[]
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
