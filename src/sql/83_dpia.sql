-- Data protection impact assessments (Art. 35): which processings need one,
-- computed from the registry and the tables' sizes plus the criteria the
-- controller declares, and where each assessment stands.  The Art. 30 view,
-- redefined last, says which processings lack a required DPIA.

-- The nine criteria of the EDPB guidelines (WP248 rev.01): two or more make a
-- DPIA required.  Three are computed; the others are declared.
CREATE FUNCTION gdpr.dpia_criteria() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['evaluation_or_scoring', 'automated_decision', 'systematic_monitoring', 'sensitive_data',
               'large_scale', 'matching_datasets', 'vulnerable_subjects', 'innovative_technology',
               'prevents_rights'];

CREATE FUNCTION gdpr.dpia_statuses() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['not_required', 'planned', 'in_progress', 'done'];

CREATE TABLE gdpr.dpias (
  purpose        text PRIMARY KEY REFERENCES gdpr.purposes ON UPDATE CASCADE ON DELETE CASCADE,
  criteria       text[] NOT NULL DEFAULT '{}' CHECK (criteria <@ gdpr.dpia_criteria()),
  status         text NOT NULL CHECK (status = ANY (gdpr.dpia_statuses())),
  assessed_on    date,
  conclusion     text,
  residual_risk  text CHECK (residual_risk IN ('low', 'medium', 'high')),
  next_review    date,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  updated_by     name NOT NULL DEFAULT session_user,
  CHECK (status <> 'done' OR (assessed_on IS NOT NULL AND conclusion IS NOT NULL AND residual_risk IS NOT NULL))
);
COMMENT ON TABLE gdpr.dpias IS 'DPIAs (Art. 35): declared criteria, status, date, conclusion, residual risk';
SELECT pg_catalog.pg_extension_config_dump('gdpr.dpias', '');

CREATE FUNCTION gdpr.record_dpia(purpose text, status text, conclusion text DEFAULT NULL,
                                 residual_risk text DEFAULT NULL, assessed_on date DEFAULT NULL,
                                 criteria text[] DEFAULT NULL, next_review date DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c text;
BEGIN
  PERFORM gdpr._purpose(purpose);
  PERFORM gdpr._one_of(status, gdpr.dpia_statuses(), 'DPIA status');
  FOREACH c IN ARRAY coalesce(criteria, '{}') LOOP
    PERFORM gdpr._one_of(c, gdpr.dpia_criteria(), 'DPIA criterion');
  END LOOP;
  IF residual_risk IS NOT NULL THEN
    PERFORM gdpr._one_of(residual_risk, ARRAY['low', 'medium', 'high'], 'residual risk');
  END IF;
  IF status = 'done' THEN
    PERFORM gdpr._not_blank(conclusion, 'a DPIA that is done needs its conclusion');
    PERFORM gdpr._not_null(residual_risk, 'residual_risk');
  END IF;
  IF assessed_on > current_date THEN
    RAISE EXCEPTION 'assessed_on is in the future' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO gdpr.dpias AS d (purpose, criteria, status, assessed_on, conclusion, residual_risk, next_review)
    VALUES (purpose, coalesce(criteria, '{}'), status,
            CASE WHEN status = 'done' THEN coalesce(assessed_on, current_date) ELSE assessed_on END,
            conclusion, residual_risk, next_review)
    ON CONFLICT ON CONSTRAINT dpias_pkey DO UPDATE
      SET criteria = coalesce(record_dpia.criteria, d.criteria), status = excluded.status,
          assessed_on = excluded.assessed_on, conclusion = excluded.conclusion,
          residual_risk = excluded.residual_risk, next_review = excluded.next_review,
          updated_at = now(), updated_by = session_user;
  IF status = 'done' AND residual_risk = 'high' THEN
    RAISE WARNING 'the DPIA of "%" leaves a high residual risk', purpose
      USING HINT = 'Art. 36: consult the supervisory authority before the processing.';
  END IF;
END
$$;

-- How many data subjects make a processing "large scale" (default 100 000).
CREATE FUNCTION gdpr.set_dpia_threshold(subjects bigint) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(subjects, 'subjects');
  IF subjects < 1 THEN
    RAISE EXCEPTION 'the threshold must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE gdpr.controller c SET dpia_large_scale = subjects, updated_at = now(), updated_by = session_user;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no controller is set' USING ERRCODE = 'object_not_in_prerequisite_state',
      HINT = 'Call gdpr.set_controller() first.';
  END IF;
END
$$;

-- Per purpose: the criteria met (computed: sensitive data, large scale by the
-- subject tables' estimated row counts, systematic monitoring by behavioural
-- data; declared: the others), whether a DPIA is required, and its state.
CREATE VIEW gdpr.dpia_register AS
SELECT p.code AS purpose,
       x.criteria,
       s.estimated_subjects,
       cardinality(x.criteria) >= 2 AS required,
       coalesce(d.status, CASE WHEN cardinality(x.criteria) >= 2 THEN 'missing' ELSE 'not_required' END) AS status,
       d.assessed_on, d.conclusion, d.residual_risk, d.next_review,
       cardinality(x.criteria) >= 2 AND coalesce(d.status, '') <> 'done' AS lacking,
       d.next_review < current_date AS review_due
  FROM gdpr.purposes p
  LEFT JOIN gdpr.dpias d ON d.purpose = p.code
  LEFT JOIN LATERAL (
    SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS estimated_subjects
      FROM pg_class c
     WHERE c.oid IN (SELECT r.subject_table FROM gdpr.personal_columns pc
                       JOIN gdpr.registered_tables r ON r.tbl = pc.tbl WHERE pc.purpose = p.code)) s ON true
  CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(DISTINCT k ORDER BY k), '{}') AS criteria
      FROM (SELECT 'sensitive_data' AS k WHERE EXISTS (SELECT FROM gdpr.personal_columns pc
                                                        WHERE pc.purpose = p.code AND pc.category = 'sensitive')
            UNION ALL
            SELECT 'systematic_monitoring' WHERE EXISTS (SELECT FROM gdpr.personal_columns pc
                                                          WHERE pc.purpose = p.code AND pc.category = 'behavioural')
            UNION ALL
            SELECT 'large_scale'
             WHERE s.estimated_subjects >= coalesce((SELECT c.dpia_large_scale FROM gdpr.controller c), 100000)
            UNION ALL
            SELECT unnest(d.criteria)) k) x;
COMMENT ON VIEW gdpr.dpia_register IS
  'per purpose: DPIA criteria met (computed and declared), whether a DPIA is required (2 or more), its state';

-- The record of processing activities (Art. 30(1)), complete: the columns of
-- 0.2 with subject categories as labels and the measures really in force,
-- then the controller, the DPO, the processors and the DPIA.
CREATE OR REPLACE VIEW gdpr.processing_register AS
SELECT p.code AS purpose,
       p.description,
       p.legal_basis,
       nv.version AS notice_version,
       encode(nv.digest, 'hex') AS notice_sha256,
       gdpr.purpose_subject_categories(p.code) AS subject_categories,
       coalesce(d.data_categories, '{}') AS data_categories,
       coalesce(d.columns, '{}') AS personal_data,
       coalesce(rc.recipients, '{}') AS recipients,
       coalesce(rc.transfers, '{}') AS transfers_outside_eea,
       coalesce(rt.retention, '{}') AS retention,
       gdpr.security_measures(p.code) AS security_measures,
       p.created_at,
       p.updated_at,
       ctl.name AS controller,
       concat_ws(', ', ctl.dpo_name, ctl.dpo_contact) AS dpo,
       gdpr.purpose_recipients(p.code) AS recipients_detail,
       coalesce(rc.processors, '{}') AS processors,
       -- In the select list, not joined: a reader who does not ask for them
       -- (gdpr.export_subject's Art. 15 information) does not compute the
       -- DPIA register.
       (SELECT dp.required FROM gdpr.dpia_register dp WHERE dp.purpose = p.code) AS dpia_required,
       (SELECT dp.status FROM gdpr.dpia_register dp WHERE dp.purpose = p.code) AS dpia_status,
       coalesce(d.unjustified, '{}') AS unjustified_data,    -- issue 23.7: classified without a justification
       p.tenant                                              -- issue 19.4: NULL for a global purpose
  FROM gdpr.purposes p
  LEFT JOIN gdpr.controller ctl ON true
  LEFT JOIN LATERAL (SELECT n.version, n.digest FROM gdpr.purpose_notices n
                      WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1) nv ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT pc.category ORDER BY pc.category) AS data_categories,
           array_agg(DISTINCT format('%I.%I.%I', n.nspname, c.relname, pc.col)) AS columns,
           array_agg(DISTINCT format('%I.%I.%I', n.nspname, c.relname, pc.col))
             FILTER (WHERE pc.justification IS NULL) AS unjustified
      FROM gdpr.personal_columns pc JOIN pg_class c ON c.oid = pc.tbl JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE pc.purpose = p.code) d ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(format('%s (%s)', x.name, x.country) ORDER BY x.name) AS recipients,
           array_agg(format('%s (%s): %s', x.name, x.country, x.safeguard) ORDER BY x.name)
             FILTER (WHERE x.outside_eea) AS transfers,
           array_agg(x.name ORDER BY x.name) FILTER (WHERE x.role IN ('processor', 'sub_processor')) AS processors
      FROM gdpr.recipients x WHERE x.purpose = p.code) rc ON true
  LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT format('%s: %s after %s.%I, then %s',
                                     CASE WHEN rp.col IS NULL THEN format('%I.%I', n.nspname, c.relname)
                                          ELSE format('%I.%I.%I', n.nspname, c.relname, rp.col) END
                                     -- A row scope (issue 20.6), spelt here as gdpr._scope_text
                                     -- does: the auditor who reads the view may not call helpers.
                                     || CASE WHEN rp.scope_column IS NOT NULL
                                             THEN format(' (rows where %I %s)', rp.scope_column,
                                                         CASE WHEN rp.scope_values IS NULL
                                                              THEN CASE WHEN rp.scope_exclude THEN 'not set' ELSE 'set' END
                                                              ELSE format('%sIN (%s)', CASE WHEN rp.scope_exclude THEN 'NOT ' ELSE '' END,
                                                                          array_to_string(ARRAY(SELECT quote_literal(v) FROM unnest(rp.scope_values) v), ', ')) END)
                                             WHEN rp.col IS NULL THEN ' (rows)' ELSE '' END,
                                     rp.keep, format('%I.%I', an.nspname, ac.relname), rp.after_column, rp.action)) AS retention
      FROM gdpr.retention_policies rp
      JOIN pg_class c ON c.oid = rp.tbl JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class ac ON ac.oid = rp.after_table JOIN pg_namespace an ON an.oid = ac.relnamespace
     WHERE EXISTS (SELECT FROM gdpr.personal_columns pc
                    WHERE pc.purpose = p.code AND pc.tbl = rp.tbl AND (rp.col IS NULL OR pc.col = rp.col))) rt ON true;
COMMENT ON VIEW gdpr.processing_register IS
  'record of processing activities (GDPR Art. 30(1)), one row per purpose, with controller, DPO, processors and DPIA';

GRANT EXECUTE ON FUNCTION gdpr.record_dpia(text, text, text, text, date, text[], date), gdpr.set_dpia_threshold(bigint)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.dpia_criteria(), gdpr.dpia_statuses() TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.dpias, gdpr.dpia_register TO gdpr_admin, gdpr_auditor;
