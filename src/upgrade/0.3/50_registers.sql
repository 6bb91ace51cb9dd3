-- 0.2 -> 0.3: the DPO's registers (issue 21).  The same text as src/sql/82_register.sql,
-- 83_dpia.sql, 84_breaches.sql, 86_requests.sql, 87_quality.sql and 88_report.sql, in that
-- order (they only add objects, add columns and redefine gdpr.processing_register and
-- gdpr.security_measures), then
-- the revoke of 99_privileges.sql on the one new table without grants (99_privileges.sql of
-- this upgrade revokes EXECUTE on every function).

-- ==== from src/sql/82_register.sql
-- The Art. 30 register, complete: who the controller and the DPO are, which
-- recipients are processors or sub-processors under which contract (Art. 28),
-- the categories of data subjects as the DBA names them, and the security
-- measures actually in force (read from the configuration, never declared).
-- Design notes: doc/registers.md.

-- One row: the controller (Art. 30(1)(a)) and his data protection officer.
CREATE TABLE gdpr.controller (
  singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  name               text NOT NULL CHECK (btrim(name) <> ''),
  address            text,
  contact            text,
  representative     text,
  dpo_name           text,
  dpo_contact        text,
  dpia_large_scale   bigint NOT NULL DEFAULT 100000 CHECK (dpia_large_scale > 0),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  updated_by         name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.controller IS 'the controller, its representative and its DPO (Art. 30(1)(a), Art. 37)';
SELECT pg_catalog.pg_extension_config_dump('gdpr.controller', '');

-- Art. 28: processors act on the controller's behalf under a contract (the
-- DPA); a sub-processor is engaged by a processor with the controller's
-- authorisation.  Third parties and joint controllers receive data on their own account.
CREATE FUNCTION gdpr.recipient_roles() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['processor', 'sub_processor', 'joint_controller', 'third_party'];

ALTER TABLE gdpr.recipients
  ADD COLUMN role text NOT NULL DEFAULT 'third_party' CHECK (role = ANY (gdpr.recipient_roles())),
  ADD COLUMN processor text,
  ADD COLUMN dpa_reference text,
  ADD COLUMN dpa_signed_on date,
  ADD CONSTRAINT recipients_dpa_check CHECK (role NOT IN ('processor', 'sub_processor') OR dpa_reference IS NOT NULL),
  ADD CONSTRAINT recipients_processor_check CHECK ((role = 'sub_processor') = (processor IS NOT NULL));
COMMENT ON COLUMN gdpr.recipients.processor IS 'for a sub-processor: the name of the processor that engaged it';

-- Labels of the categories of data subjects (Art. 30(1)(c)), per subject
-- table and, optionally, per profile (a value of its segment or status column).
CREATE TABLE gdpr.subject_categories (
  subject_table  regclass NOT NULL REFERENCES gdpr.subject_tables ON DELETE CASCADE,
  profile        text NOT NULL DEFAULT '',
  label          text NOT NULL CHECK (btrim(label) <> ''),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_table, profile)
);
COMMENT ON TABLE gdpr.subject_categories IS
  'categories of data subjects as the controller names them; profile '''' is the whole subject table';
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_categories', '');

CREATE FUNCTION gdpr.set_controller(name text, dpo_name text, dpo_contact text, address text DEFAULT NULL,
                                    contact text DEFAULT NULL, representative text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_blank(name, 'the controller needs a name');
  PERFORM gdpr._not_blank(dpo_name, 'the DPO needs a name',
                          'Art. 37: name the DPO, or the person in charge of data protection if none is designated.');
  PERFORM gdpr._not_blank(dpo_contact, 'the DPO needs a contact');
  IF NOT (gdpr.valid_email(dpo_contact) OR gdpr.valid_phone(dpo_contact, NULL)) THEN
    RAISE EXCEPTION 'the DPO''s contact "%" is neither an e-mail address nor a phone number', dpo_contact
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Art. 37(7): the contact details must let the authority and the data subjects reach the DPO.';
  END IF;
  INSERT INTO gdpr.controller AS c (name, address, contact, representative, dpo_name, dpo_contact)
    VALUES (btrim(name), address, contact, representative, btrim(dpo_name), btrim(dpo_contact))
    ON CONFLICT ON CONSTRAINT controller_pkey DO UPDATE
      SET name = excluded.name, address = excluded.address, contact = excluded.contact,
          representative = excluded.representative, dpo_name = excluded.dpo_name,
          dpo_contact = excluded.dpo_contact, updated_at = now(), updated_by = session_user;
END
$$;

-- Mark every recipient row of that name (one per purpose) as a processor or
-- sub-processor under its contract; returns the number of rows changed.
CREATE FUNCTION gdpr.set_processor(recipient text, role text, dpa_reference text,
                                   processor text DEFAULT NULL, dpa_signed_on date DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n int;
BEGIN
  PERFORM gdpr._not_blank(recipient, 'recipient must not be null or blank');
  PERFORM gdpr._one_of(role, gdpr.recipient_roles(), 'recipient role');
  IF role IN ('processor', 'sub_processor') THEN
    PERFORM gdpr._not_blank(dpa_reference, 'a processor needs the reference of its contract (DPA)',
                            'Art. 28(3): processing by a processor is governed by a contract.');
  END IF;
  IF role = 'sub_processor' THEN
    PERFORM gdpr._not_blank(processor, 'a sub-processor needs the processor that engaged it');
    IF NOT EXISTS (SELECT FROM gdpr.recipients x WHERE x.name = btrim(set_processor.processor) AND x.role = 'processor') THEN
      RAISE EXCEPTION 'recipient "%" is not a processor', processor
        USING ERRCODE = 'undefined_object', HINT = 'Declare it with gdpr.set_processor(name, ''processor'', dpa) first.';
    END IF;
  ELSIF processor IS NOT NULL THEN
    RAISE EXCEPTION 'only a sub-processor has a processor' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF dpa_signed_on > current_date THEN
    RAISE EXCEPTION 'dpa_signed_on is in the future' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE gdpr.recipients x
     SET role = set_processor.role, processor = btrim(set_processor.processor),
         dpa_reference = nullif(btrim(set_processor.dpa_reference), ''), dpa_signed_on = set_processor.dpa_signed_on,
         updated_at = now()
   WHERE x.name = btrim(recipient);
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 THEN
    RAISE EXCEPTION 'recipient "%" does not exist', recipient
      USING ERRCODE = 'undefined_object', HINT = 'Add it with gdpr.add_recipient() first.';
  END IF;
  RETURN n;
END
$$;

CREATE FUNCTION gdpr.set_subject_category(subject_table regclass, label text, profile text DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
BEGIN
  IF label IS NULL THEN
    DELETE FROM gdpr.subject_categories c WHERE c.subject_table = st AND c.profile = coalesce(set_subject_category.profile, '');
    RETURN;
  END IF;
  PERFORM gdpr._not_blank(label, 'a category of data subjects needs a label');
  INSERT INTO gdpr.subject_categories AS c (subject_table, profile, label)
    VALUES (st, coalesce(profile, ''), btrim(label))
    ON CONFLICT ON CONSTRAINT subject_categories_pkey DO UPDATE SET label = excluded.label, updated_at = now();
END
$$;

-- The path of the master key file, whose age tells when the key was last rotated.
CREATE FUNCTION gdpr._key_file_changed() RETURNS timestamptz
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (pg_stat_file(gdpr.setting('key_file'), true)).modification;
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$$;

-- bytea personal columns of the purpose whose stored values are crm_gdpr
-- ciphertexts (one value looked at per column, as the table's owner: what is
-- written, not declared; no value leaves the function).
CREATE FUNCTION gdpr._encrypted_columns(purpose text) RETURNS text[]
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  cols text[] := '{}';
BEGIN
  FOR c IN SELECT DISTINCT pc.tbl, pc.col FROM gdpr.personal_columns pc
             JOIN pg_attribute a ON a.attrelid = pc.tbl AND a.attname = pc.col AND a.atttypid = 'bytea'::regtype
            WHERE pc.purpose = _encrypted_columns.purpose ORDER BY 1, 2 LOOP
    IF (gdpr._owner_query(c.tbl, format(
          'SELECT to_jsonb(coalesce((SELECT substr(t.%I, 1, 2) = ''\x4744''::bytea FROM %s t WHERE t.%I IS NOT NULL LIMIT 1), false))',
          c.col, c.tbl, c.col)))::boolean THEN
      cols := cols || format('%s.%I', gdpr.qualified_name(c.tbl), c.col);
    END IF;
  END LOOP;
  RETURN cols;
END
$$;

-- The technical and organisational measures (Art. 30(1)(g), Art. 32) in
-- force for a purpose, each computed from what is really configured
-- (replaces the retention-only list of 30_registry_views.sql).
CREATE OR REPLACE FUNCTION gdpr.security_measures(purpose text) RETURNS text[]
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  m text[] := ARRAY['access to the registry restricted to role gdpr_admin; audit views to gdpr_auditor'];
  tbls regclass[];
  enc text[] := gdpr._encrypted_columns(purpose);
  logged int;
  key_at timestamptz := gdpr._key_file_changed();
BEGIN
  PERFORM gdpr._purpose(purpose);
  SELECT array_agg(DISTINCT pc.tbl) INTO tbls FROM gdpr.personal_columns pc WHERE pc.purpose = security_measures.purpose;
  IF cardinality(enc) > 0 THEN
    m := m || format('authenticated encryption (XChaCha20-Poly1305) of %s', array_to_string(enc, ', '));
  END IF;
  IF EXISTS (SELECT FROM gdpr.retention_policies rp WHERE rp.tbl = ANY (tbls) AND rp.action = 'pseudonymise') THEN
    m := m || (SELECT format('pseudonymisation (keyed BLAKE2b) of %s at the end of its retention period',
                             string_agg(format('%s.%I', gdpr.qualified_name(rp.tbl), rp.col), ', ' ORDER BY rp.col))
                 FROM gdpr.retention_policies rp WHERE rp.tbl = ANY (tbls) AND rp.action = 'pseudonymise');
  END IF;
  IF EXISTS (SELECT FROM gdpr.retention_policies rp WHERE rp.tbl = ANY (tbls) AND rp.action = 'generalise') THEN
    m := m || 'generalisation at the end of the retention period'::text;
  END IF;
  IF EXISTS (SELECT FROM gdpr.retention_policies rp WHERE rp.tbl = ANY (tbls) AND rp.action <> 'keep') THEN
    m := m || ('retention periods enforced by automatic purge'
               || CASE WHEN gdpr.setting('enable_worker') = 'on' THEN '' ELSE ' (worker off: run gdpr.purge() on a schedule)' END);
  END IF;
  SELECT count(DISTINCT t.tgrelid) INTO logged FROM pg_trigger t
   WHERE t.tgrelid = ANY (tbls) AND t.tgname = 'gdpr_log_update' AND t.tgenabled <> 'D';
  IF logged > 0 THEN
    m := m || format('tamper-evident access log of writes on %s of %s table(s)%s', logged, cardinality(tbls),
                     CASE WHEN gdpr.preloaded() AND gdpr.setting('log_reads') = 'on' THEN ' and of reads' ELSE '' END);
  END IF;
  IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = ANY (tbls) AND t.tgname = 'gdpr_log_update') THEN
    m := m || 'restriction of processing (Art. 18) enforced on writes'::text;
  END IF;
  IF EXISTS (SELECT FROM gdpr.purposes p WHERE p.code = security_measures.purpose AND p.legal_basis = 'consent') THEN
    m := m || 'append-only consent ledger with proof'::text;
  END IF;
  IF key_at IS NOT NULL THEN
    m := m || format('master key outside the database, file last changed %s days ago',
                     extract(day FROM now() - key_at)::int);
  END IF;
  IF current_setting('ssl') = 'on' THEN
    m := m || 'connections encrypted (ssl = on)'::text;
  END IF;
  RETURN m;
END
$$;

-- A purpose's categories of data subjects: the labels of the subject tables
-- its columns belong to (the table's name when it has no label).
CREATE FUNCTION gdpr.purpose_subject_categories(purpose text) RETURNS text[]
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(array_agg(DISTINCT coalesce(sc.label, gdpr.qualified_name(r.subject_table))
                            ORDER BY coalesce(sc.label, gdpr.qualified_name(r.subject_table))), '{}')
    FROM gdpr.personal_columns pc
    JOIN gdpr.registered_tables r ON r.tbl = pc.tbl
    LEFT JOIN gdpr.subject_categories sc ON sc.subject_table = r.subject_table
   WHERE pc.purpose = purpose_subject_categories.purpose
$$;

-- Recipients of a purpose with their role, contract and transfer safeguard.
CREATE FUNCTION gdpr.purpose_recipients(purpose text) RETURNS text[]
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(array_agg(concat_ws(', ', format('%s (%s)', x.name, x.country), replace(x.role, '_', '-'),
                                      CASE WHEN x.processor IS NOT NULL THEN 'engaged by ' || x.processor END,
                                      CASE WHEN x.dpa_reference IS NOT NULL
                                           THEN 'DPA ' || x.dpa_reference || coalesce(' of ' || x.dpa_signed_on, '') END,
                                      CASE WHEN x.outside_eea THEN 'transfer under ' || x.safeguard END)
                            ORDER BY x.name), '{}')
    FROM gdpr.recipients x WHERE x.purpose = purpose_recipients.purpose
$$;

GRANT EXECUTE ON FUNCTION gdpr.set_controller(text, text, text, text, text, text),
  gdpr.set_processor(text, text, text, text, date), gdpr.set_subject_category(regclass, text, text)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.recipient_roles(), gdpr.security_measures(text),
  gdpr.purpose_subject_categories(text), gdpr.purpose_recipients(text)
  TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.controller, gdpr.subject_categories TO gdpr_admin, gdpr_auditor;

-- ==== from src/sql/83_dpia.sql
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

-- ==== from src/sql/84_breaches.sql
-- The breach register (Art. 33, 34): what the notification to the authority
-- must say (Art. 33(3)), the people affected (found in the registry), the
-- risk and the outcome (notified, notified late with the reason, or not
-- notifiable with the reason), the 72-hour clock from awareness
-- (gdpr.breaches.detected_at), the list of people to inform when the risk is
-- high, and draft notifications in French and English.

CREATE FUNCTION gdpr.breach_natures() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['confidentiality', 'integrity', 'availability'];

CREATE FUNCTION gdpr.breach_risk_levels() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['unlikely', 'risk', 'high'];

CREATE FUNCTION gdpr.breach_outcomes() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['notified', 'notified late', 'not notifiable'];

ALTER TABLE gdpr.breaches
  ADD COLUMN occurred_at timestamptz,
  ADD COLUMN nature text[] CHECK (nature <@ gdpr.breach_natures()),
  ADD COLUMN data_categories text[] CHECK (data_categories <@ gdpr.data_categories()),
  ADD COLUMN subject_categories text[],
  ADD COLUMN approx_records bigint CHECK (approx_records >= 0),
  ADD COLUMN consequences text,
  ADD COLUMN measures_taken text,
  ADD COLUMN measures_proposed text,
  ADD COLUMN risk_level text CHECK (risk_level = ANY (gdpr.breach_risk_levels())),
  ADD COLUMN assessed_at timestamptz,
  ADD COLUMN outcome text CHECK (outcome = ANY (gdpr.breach_outcomes())),
  ADD COLUMN outcome_reason text,
  ADD COLUMN closed_at timestamptz,
  ADD COLUMN closed_by name,
  ADD COLUMN subjects_informed_at timestamptz,
  ADD CONSTRAINT breaches_outcome_reason_check
    CHECK (outcome IS NULL OR outcome = 'notified' OR btrim(outcome_reason) <> ''),
  ADD CONSTRAINT breaches_occurred_check CHECK (occurred_at <= detected_at);
COMMENT ON COLUMN gdpr.breaches.detected_at IS 'when the controller became aware of the breach: the 72-hour clock starts here';

-- The people a breach affects (Art. 34): linked by gdpr.link_breach_subjects.
CREATE TABLE gdpr.breach_affected (
  breach_id      bigint NOT NULL REFERENCES gdpr.breaches ON DELETE CASCADE,
  subject_table  regclass NOT NULL,
  subject_id     text NOT NULL,
  linked_at      timestamptz NOT NULL DEFAULT now(),
  informed_at    timestamptz,
  PRIMARY KEY (breach_id, subject_table, subject_id)
);
CREATE INDEX ON gdpr.breach_affected (subject_table, subject_id);
COMMENT ON TABLE gdpr.breach_affected IS 'data subjects affected by a breach (Art. 34); removed when a subject is erased';
SELECT pg_catalog.pg_extension_config_dump('gdpr.breach_affected', '');

-- The breach, locked; 42704 when it does not exist, 55000 when closed.
CREATE FUNCTION gdpr._open_breach(breach_id bigint) RETURNS gdpr.breaches
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breaches;
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  SELECT * INTO b FROM gdpr.breaches x WHERE x.id = breach_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  IF b.outcome IS NOT NULL THEN
    RAISE EXCEPTION 'breach % is closed', breach_id USING ERRCODE = 'object_not_in_prerequisite_state',
      DETAIL = format('Closed at %s: %s.', b.closed_at, b.outcome);
  END IF;
  RETURN b;
END
$$;

-- Check that every element of values is allowed (22023 naming the first that is not).
CREATE FUNCTION gdpr._all_of(vals text[], allowed text[], what text) RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v text;
BEGIN
  FOREACH v IN ARRAY coalesce(vals, '{}') LOOP
    PERFORM gdpr._one_of(v, allowed, what);
  END LOOP;
END
$$;

-- Art. 33(3): the nature of the breach, the categories and approximate
-- numbers of subjects and records, the likely consequences, the measures.
CREATE FUNCTION gdpr.assess_breach(breach_id bigint, risk_level text, nature text[], data_categories text[],
                                   consequences text, measures_taken text, approx_subjects bigint DEFAULT NULL,
                                   approx_records bigint DEFAULT NULL, measures_proposed text DEFAULT NULL,
                                   occurred_at timestamptz DEFAULT NULL, subject_categories text[] DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breaches := gdpr._open_breach(breach_id);
BEGIN
  PERFORM gdpr._one_of(risk_level, gdpr.breach_risk_levels(), 'risk level');
  IF cardinality(nature) IS NULL OR cardinality(nature) = 0 THEN
    RAISE EXCEPTION 'a breach needs its nature' USING ERRCODE = 'null_value_not_allowed',
      HINT = format('One or more of: %s.', array_to_string(gdpr.breach_natures(), ', '));
  END IF;
  PERFORM gdpr._all_of(nature, gdpr.breach_natures(), 'breach nature');
  PERFORM gdpr._all_of(data_categories, gdpr.data_categories(), 'category');
  PERFORM gdpr._not_blank(consequences, 'a breach needs its likely consequences', 'Art. 33(3)(c).');
  PERFORM gdpr._not_blank(measures_taken, 'a breach needs the measures taken', 'Art. 33(3)(d).');
  IF approx_subjects < 0 OR approx_records < 0 THEN
    RAISE EXCEPTION 'numbers of subjects and records cannot be negative' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF occurred_at > b.detected_at THEN
    RAISE EXCEPTION 'occurred_at is after the breach was detected' USING ERRCODE = 'invalid_parameter_value',
      DETAIL = format('Detected (became aware) at %s.', b.detected_at);
  END IF;
  UPDATE gdpr.breaches x
     SET risk_level = assess_breach.risk_level, nature = assess_breach.nature,
         data_categories = assess_breach.data_categories,
         subject_categories = coalesce(assess_breach.subject_categories, x.subject_categories),
         consequences = btrim(assess_breach.consequences), measures_taken = btrim(assess_breach.measures_taken),
         measures_proposed = assess_breach.measures_proposed,
         subjects = coalesce(approx_subjects, x.subjects,
                             (SELECT count(*) FROM gdpr.breach_affected a WHERE a.breach_id = x.id)),
         approx_records = coalesce(assess_breach.approx_records, x.approx_records),
         occurred_at = coalesce(assess_breach.occurred_at, x.occurred_at), assessed_at = now()
   WHERE x.id = breach_id;
END
$$;

-- Link the subjects whose rows of registered table tbl were affected: rows
-- where col holds a value (all rows when col is NULL), and time_column falls
-- in [from_at, to_at) when given.  Returns the number of subjects linked now.
CREATE FUNCTION gdpr.link_breach_subjects(breach_id bigint, tbl regclass, col name DEFAULT NULL,
                                          time_column name DEFAULT NULL, from_at timestamptz DEFAULT NULL,
                                          to_at timestamptz DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  cond text := 'true';
  n bigint;
BEGIN
  PERFORM gdpr._open_breach(breach_id);
  PERFORM gdpr._require_privilege(tbl, 'SELECT', 'gdpr.link_breach_subjects()');
  IF col IS NOT NULL THEN
    PERFORM gdpr._column(tbl, col);
    cond := format('%I IS NOT NULL', col);
  END IF;
  IF (from_at IS NOT NULL OR to_at IS NOT NULL) AND time_column IS NULL THEN
    RAISE EXCEPTION 'a time range needs time_column' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF time_column IS NOT NULL THEN
    IF (gdpr._column(tbl, time_column)).typ NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
      RAISE EXCEPTION 'column "%" of % is not a date or timestamp', time_column, tbl USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF from_at >= to_at THEN
      RAISE EXCEPTION 'from_at must be before to_at' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cond := cond || format(' AND %I >= coalesce(%L::timestamptz, ''-infinity'') AND %I < coalesce(%L::timestamptz, ''infinity'')',
                           time_column, from_at, time_column, to_at);
  END IF;
  -- The ids are read as the table's owner; the links are written here.
  INSERT INTO gdpr.breach_affected (breach_id, subject_table, subject_id)
    SELECT link_breach_subjects.breach_id, r.subject_table, x.id
      FROM jsonb_array_elements_text(gdpr._owner_query(tbl, format(
             'SELECT coalesce(jsonb_agg(DISTINCT s.id), ''[]'') FROM (%s) s(id) WHERE s.id IS NOT NULL',
             gdpr._subject_ids_sql(tbl, format('(SELECT * FROM %s WHERE %s)', tbl, cond))))) x(id)
    ON CONFLICT ON CONSTRAINT breach_affected_pkey DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- Link subjects by id (each must exist).
CREATE FUNCTION gdpr.link_breach_subject_ids(breach_id bigint, subject_ids text[], subject_table regclass DEFAULT NULL)
  RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  sid text;
  n bigint;
BEGIN
  PERFORM gdpr._open_breach(breach_id);
  PERFORM gdpr._not_null(subject_ids, 'subject_ids');
  FOREACH sid IN ARRAY subject_ids LOOP
    PERFORM gdpr._require_subject(st, sid);
  END LOOP;
  INSERT INTO gdpr.breach_affected (breach_id, subject_table, subject_id)
    SELECT link_breach_subject_ids.breach_id, st, u.id FROM unnest(subject_ids) u(id)
    ON CONFLICT ON CONSTRAINT breach_affected_pkey DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- Art. 34: the people to inform, with the contact data of their own row.
-- Logged as an export of that data (one row per subject table, naming them,
-- detail {"kind": "breach", "breach_id": ...}): it gives out personal data in
-- bulk, which the reads the extension makes as the table's owner do not log.
CREATE FUNCTION gdpr.breach_subjects(breach_id bigint)
  RETURNS TABLE (subject_table regclass, subject_id text, contact jsonb, linked_at timestamptz, informed_at timestamptz)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s record;
  contacts jsonb;
  ids text[];
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  IF NOT EXISTS (SELECT FROM gdpr.breaches x WHERE x.id = breach_id) THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  FOR s IN SELECT DISTINCT a.subject_table, st.id_column FROM gdpr.breach_affected a
             JOIN gdpr.subject_tables st ON st.tbl = a.subject_table WHERE a.breach_id = breach_subjects.breach_id LOOP
    PERFORM gdpr._require_privilege(s.subject_table, 'SELECT', 'gdpr.breach_subjects()');
    -- Their contact columns, read as the table's owner: {id: {column: value}}.
    ids := ARRAY(SELECT a.subject_id FROM gdpr.breach_affected a
                  WHERE a.breach_id = breach_subjects.breach_id AND a.subject_table = s.subject_table);
    contacts := gdpr._owner_query(s.subject_table, format(
      'SELECT coalesce(jsonb_object_agg(t.%I::text, jsonb_strip_nulls(jsonb_build_object(%s))), ''{}'')
         FROM %s t WHERE t.%I = ANY ($1::%s[])',
      s.id_column,
      coalesce((SELECT string_agg(DISTINCT format('%L, t.%I', pc.col, pc.col), ', ')
                  FROM gdpr.personal_columns pc WHERE pc.tbl = s.subject_table AND pc.category = 'contact'), ''),
      s.subject_table, s.id_column, gdpr._subject_key_type(s.subject_table)),
      ids::text);
    PERFORM gdpr._log_event('EXPORT', s.subject_table, ids, cardinality(ids),
                            jsonb_build_object('kind', 'breach', 'breach_id', breach_id));
    RETURN QUERY SELECT a.subject_table, a.subject_id, contacts -> a.subject_id, a.linked_at, a.informed_at
                   FROM gdpr.breach_affected a
                  WHERE a.breach_id = breach_subjects.breach_id AND a.subject_table = s.subject_table
                  ORDER BY a.subject_id;
  END LOOP;
END
$$;

CREATE FUNCTION gdpr.mark_breach_subjects_informed(breach_id bigint, informed_at timestamptz DEFAULT now())
  RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  PERFORM gdpr._not_null(informed_at, 'informed_at');
  PERFORM gdpr._not_future(informed_at, 'informed_at');
  IF NOT EXISTS (SELECT FROM gdpr.breaches x WHERE x.id = breach_id) THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  UPDATE gdpr.breach_affected a SET informed_at = mark_breach_subjects_informed.informed_at
   WHERE a.breach_id = mark_breach_subjects_informed.breach_id AND a.informed_at IS NULL;
  GET DIAGNOSTICS n = ROW_COUNT;
  UPDATE gdpr.breaches x SET subjects_informed_at = mark_breach_subjects_informed.informed_at WHERE x.id = breach_id;
  RETURN n;
END
$$;

-- Close a breach: 'notified' within 72 hours of awareness, 'notified late'
-- with the reason for the delay (Art. 33(1)), or 'not notifiable' when the
-- assessment found a risk unlikely, with the reason (kept for Art. 33(5)).
-- notified_at and reference record the notification when notify_breach did not.
CREATE FUNCTION gdpr.close_breach(breach_id bigint, outcome text, reason text DEFAULT NULL,
                                  notified_at timestamptz DEFAULT NULL, reference text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breaches := gdpr._open_breach(breach_id);
  late boolean;
BEGIN
  PERFORM gdpr._one_of(outcome, gdpr.breach_outcomes(), 'breach outcome');
  IF b.risk_level IS NULL THEN
    RAISE EXCEPTION 'breach % has not been assessed', breach_id USING ERRCODE = 'object_not_in_prerequisite_state',
      HINT = 'Record the Art. 33(3) content with gdpr.assess_breach() first.';
  END IF;
  IF outcome = 'not notifiable' THEN
    PERFORM gdpr._not_blank(reason, 'a breach that is not notified needs the reason',
                            'Art. 33(5): document why the breach is unlikely to result in a risk.');
    IF b.risk_level <> 'unlikely' OR b.notified_at IS NOT NULL OR notified_at IS NOT NULL THEN
      RAISE EXCEPTION 'breach % is not "not notifiable"', breach_id USING ERRCODE = 'invalid_parameter_value',
        DETAIL = format('Risk level %s%s.', b.risk_level, CASE WHEN b.notified_at IS NOT NULL THEN ', already notified' ELSE '' END),
        HINT = 'Art. 33(1): only a breach unlikely to result in a risk may go unnotified.';
    END IF;
  ELSE
    IF b.notified_at IS NULL THEN
      PERFORM gdpr.notify_breach(breach_id, notified_at, reference);
      b.notified_at := notified_at;
    END IF;
    late := b.notified_at > b.detected_at + interval '72 hours';
    IF outcome = 'notified' AND late THEN
      RAISE EXCEPTION 'breach % was notified more than 72 hours after awareness', breach_id
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Close it as ''notified late'' with the reasons for the delay (Art. 33(1)).';
    ELSIF outcome = 'notified late' AND NOT late THEN
      RAISE EXCEPTION 'breach % was notified within 72 hours', breach_id USING ERRCODE = 'invalid_parameter_value';
    ELSIF outcome = 'notified late' THEN
      PERFORM gdpr._not_blank(reason, 'a late notification needs the reasons for the delay', 'Art. 33(1).');
    END IF;
  END IF;
  UPDATE gdpr.breaches x SET outcome = close_breach.outcome, outcome_reason = nullif(btrim(reason), ''),
                             closed_at = now(), closed_by = session_user
   WHERE x.id = breach_id;
END
$$;

-- The register: Art. 33(3) content, the clock, the outcome, the Art. 34 list.
CREATE VIEW gdpr.breach_register AS
SELECT b.id, b.description, b.occurred_at, b.detected_at AS aware_at,
       b.detected_at + interval '72 hours' AS notify_by,
       b.nature, b.data_categories, b.subject_categories, b.subjects AS approx_subjects, b.approx_records,
       b.consequences, b.measures_taken, b.measures_proposed, b.risk_level,
       b.notified_at, b.reference, b.outcome, b.outcome_reason,
       CASE WHEN b.outcome IS NOT NULL THEN b.outcome
            WHEN b.notified_at IS NOT NULL THEN 'notified, to close'
            WHEN b.risk_level IS NULL AND now() <= b.detected_at + interval '72 hours' THEN 'to assess'
            WHEN now() > b.detected_at + interval '72 hours' THEN 'overdue'
            ELSE 'to notify' END AS state,
       CASE WHEN b.notified_at IS NULL AND b.outcome IS NULL
            THEN date_trunc('second', b.detected_at + interval '72 hours' - now()) END AS time_left,
       b.risk_level = 'high' AS inform_subjects,
       (SELECT count(*) FROM gdpr.breach_affected a WHERE a.breach_id = b.id) AS linked_subjects,
       (SELECT count(*) FROM gdpr.breach_affected a WHERE a.breach_id = b.id AND a.informed_at IS NOT NULL)
         AS informed_subjects,
       b.subjects_informed_at, b.closed_at
  FROM gdpr.breaches b;
COMMENT ON VIEW gdpr.breach_register IS
  'breaches with their Art. 33(3) content, 72-hour clock from awareness, outcome and Art. 34 follow-up';

-- The draft of the notification to the authority (Art. 33(3)) or of the
-- message to the people affected (Art. 34(2)), in French or English,
-- generated from the register's fields.
CREATE FUNCTION gdpr.breach_notification(breach_id bigint, lang text DEFAULT 'fr', audience text DEFAULT 'authority')
  RETURNS text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breach_register;
  c gdpr.controller;
  fr boolean;
  unknown text;
  t text;
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  PERFORM gdpr._one_of(lang, ARRAY['fr', 'en'], 'language');
  PERFORM gdpr._one_of(audience, ARRAY['authority', 'subjects'], 'audience');
  SELECT * INTO b FROM gdpr.breach_register x WHERE x.id = breach_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  IF b.risk_level IS NULL THEN
    RAISE EXCEPTION 'breach % has not been assessed', breach_id USING ERRCODE = 'object_not_in_prerequisite_state',
      HINT = 'Record the Art. 33(3) content with gdpr.assess_breach() first.';
  END IF;
  SELECT * INTO c FROM gdpr.controller;
  fr := lang = 'fr';
  unknown := CASE WHEN fr THEN '[à compléter]' ELSE '[to be completed]' END;
  IF audience = 'authority' THEN
    t := concat_ws(E'\n',
      CASE WHEN fr THEN 'Notification d''une violation de données à caractère personnel (article 33 du RGPD)'
           ELSE 'Notification of a personal data breach (GDPR Article 33)' END,
      '',
      CASE WHEN fr THEN 'Responsable du traitement : ' ELSE 'Controller: ' END || coalesce(c.name, unknown)
        || coalesce(', ' || c.address, ''),
      CASE WHEN fr THEN 'Délégué à la protection des données : ' ELSE 'Data protection officer: ' END
        || coalesce(c.dpo_name || ', ' || c.dpo_contact, unknown),
      CASE WHEN fr THEN 'Référence interne : violation n° ' ELSE 'Internal reference: breach no. ' END || b.id,
      '',
      CASE WHEN fr THEN '1. Nature de la violation : ' ELSE '1. Nature of the breach: ' END
        || gdpr._breach_terms(b.nature, fr) || '. ' || b.description,
      CASE WHEN fr THEN '   Survenue le : ' ELSE '   Occurred on: ' END || coalesce(to_char(b.occurred_at, 'YYYY-MM-DD HH24:MI TZ'), unknown)
        || CASE WHEN fr THEN ' ; connue le : ' ELSE '; became aware on: ' END || to_char(b.aware_at, 'YYYY-MM-DD HH24:MI TZ'),
      CASE WHEN fr THEN '   Catégories de données : ' ELSE '   Categories of data: ' END
        || coalesce(array_to_string(b.data_categories, ', '), unknown),
      CASE WHEN fr THEN '   Catégories de personnes : ' ELSE '   Categories of data subjects: ' END
        || coalesce(array_to_string(b.subject_categories, ', '), unknown),
      CASE WHEN fr THEN '   Nombre approximatif de personnes concernées : ' ELSE '   Approximate number of data subjects: ' END
        || coalesce(b.approx_subjects::text, unknown),
      CASE WHEN fr THEN '   Nombre approximatif d''enregistrements : ' ELSE '   Approximate number of records: ' END
        || coalesce(b.approx_records::text, unknown),
      CASE WHEN fr THEN '2. Contact : ' ELSE '2. Contact point: ' END || coalesce(c.dpo_name || ', ' || c.dpo_contact, unknown),
      CASE WHEN fr THEN '3. Conséquences probables : ' ELSE '3. Likely consequences: ' END || b.consequences,
      CASE WHEN fr THEN '4. Mesures prises : ' ELSE '4. Measures taken: ' END || b.measures_taken,
      CASE WHEN fr THEN '   Mesures proposées : ' ELSE '   Measures proposed: ' END || coalesce(b.measures_proposed, unknown),
      CASE WHEN fr THEN '   Niveau de risque : ' ELSE '   Risk level: ' END || gdpr._breach_terms(ARRAY[b.risk_level], fr),
      CASE WHEN b.aware_at + interval '72 hours' < coalesce(b.notified_at, now())
           THEN CASE WHEN fr THEN 'Motifs du retard (notification au-delà de 72 heures) : '
                     ELSE 'Reasons for the delay (notification after 72 hours): ' END
                || coalesce(b.outcome_reason, unknown) END);
  ELSE
    t := concat_ws(E'\n',
      CASE WHEN fr THEN 'Objet : violation de vos données personnelles' ELSE 'Subject: a breach of your personal data' END,
      '',
      CASE WHEN fr THEN 'Madame, Monsieur,' ELSE 'Dear Sir or Madam,' END,
      '',
      CASE WHEN fr THEN format('%s vous informe qu''une violation de données vous concernant a eu lieu (%s) : %s',
                               coalesce(c.name, unknown), gdpr._breach_terms(b.nature, fr), b.description)
           ELSE format('%s informs you that a breach affecting your data has occurred (%s): %s',
                       coalesce(c.name, unknown), gdpr._breach_terms(b.nature, fr), b.description) END,
      CASE WHEN fr THEN 'Données concernées : ' ELSE 'Data concerned: ' END || coalesce(array_to_string(b.data_categories, ', '), unknown),
      CASE WHEN fr THEN 'Conséquences probables : ' ELSE 'Likely consequences: ' END || b.consequences,
      CASE WHEN fr THEN 'Mesures prises : ' ELSE 'Measures taken: ' END || b.measures_taken
        || coalesce(' ' || b.measures_proposed, ''),
      CASE WHEN fr THEN 'Pour toute question, contactez notre délégué à la protection des données : '
           ELSE 'For any question, contact our data protection officer: ' END
        || coalesce(c.dpo_name || ', ' || c.dpo_contact, unknown));
  END IF;
  RETURN t;
END
$$;

-- The words of a breach's nature and risk level in the notification's language.
CREATE FUNCTION gdpr._breach_terms(terms text[], fr boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT string_agg(CASE WHEN NOT fr THEN replace(t, 'unlikely', 'risk unlikely')
                                 ELSE CASE t WHEN 'confidentiality' THEN 'atteinte à la confidentialité'
                                             WHEN 'integrity' THEN 'atteinte à l''intégrité'
                                             WHEN 'availability' THEN 'atteinte à la disponibilité'
                                             WHEN 'unlikely' THEN 'risque improbable' WHEN 'risk' THEN 'risque'
                                             WHEN 'high' THEN 'risque élevé' ELSE t END END, ', ')
            FROM unnest(terms) t);

GRANT EXECUTE ON FUNCTION
  gdpr.assess_breach(bigint, text, text[], text[], text, text, bigint, bigint, text, timestamptz, text[]),
  gdpr.link_breach_subjects(bigint, regclass, name, name, timestamptz, timestamptz),
  gdpr.link_breach_subject_ids(bigint, text[], regclass), gdpr.breach_subjects(bigint),
  gdpr.mark_breach_subjects_informed(bigint, timestamptz), gdpr.close_breach(bigint, text, text, timestamptz, text)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.breach_natures(), gdpr.breach_risk_levels(), gdpr.breach_outcomes(),
  gdpr.breach_notification(bigint, text, text) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.breach_register TO gdpr_admin, gdpr_auditor;

-- The 72-hour clock of Art. 33(1), now that a breach has an outcome: one
-- assessed "not notifiable" (with its reason) is closed, not overdue for
-- ever; one closed "notified late" says so.
CREATE OR REPLACE VIEW gdpr.breaches_due AS
SELECT b.id, b.description, b.detected_at, b.subjects,
       b.detected_at + interval '72 hours' AS notify_by,
       b.notified_at, b.reference,
       CASE WHEN b.outcome = 'not notifiable' THEN 'not notifiable'
            WHEN b.notified_at IS NOT NULL AND b.notified_at <= b.detected_at + interval '72 hours' THEN 'notified'
            WHEN b.notified_at IS NOT NULL THEN 'notified late'
            WHEN now() > b.detected_at + interval '72 hours' THEN 'overdue'
            ELSE 'open' END AS state,
       CASE WHEN b.notified_at IS NULL AND b.outcome IS DISTINCT FROM 'not notifiable'
            THEN date_trunc('second', b.detected_at + interval '72 hours' - now()) END AS time_left,
       (b.notified_at IS NULL AND b.outcome IS DISTINCT FROM 'not notifiable' AND now() > b.detected_at + interval '72 hours')
         OR coalesce(b.notified_at > b.detected_at + interval '72 hours', false) AS late
  FROM gdpr.breaches b;

-- ==== from src/sql/86_requests.sql
-- Requests, completed: the requester's identity is verified (method, by
-- whom, when) before an access, portability or erasure request may be
-- answered (Art. 12(6)); the requester's contact; the recipients who
-- actually received this person's data (Art. 19); reminders of what falls
-- due within 7 days, also as NOTIFY gdpr_requests for a mailer that LISTENs.

CREATE FUNCTION gdpr.verification_methods() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['authenticated_account', 'email_confirmation', 'identity_document', 'postal_letter',
               'in_person', 'phone_callback'];

ALTER TABLE gdpr.requests
  ADD COLUMN requester_contact text,
  ADD COLUMN verification_method text CHECK (verification_method = ANY (gdpr.verification_methods())),
  ADD COLUMN verified_at timestamptz,
  ADD COLUMN verified_by name,
  ADD COLUMN reminded_at timestamptz,
  ADD CONSTRAINT requests_verified_check CHECK ((verified_at IS NULL) = (verification_method IS NULL));
COMMENT ON COLUMN gdpr.requests.requester_contact IS
  'where to answer (e-mail or phone); cleared when the subject is erased';

CREATE FUNCTION gdpr.set_requester_contact(request_id bigint, contact text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._open_request(request_id);
  PERFORM gdpr._not_blank(contact, 'contact must not be null or blank');
  IF NOT (gdpr.valid_email(btrim(contact)) OR gdpr.valid_phone(btrim(contact), NULL)) THEN
    RAISE EXCEPTION 'contact "%" is neither an e-mail address nor a phone number', contact
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE gdpr.requests x SET requester_contact = btrim(contact) WHERE x.id = request_id;
END
$$;

CREATE FUNCTION gdpr.verify_identity(request_id bigint, method text, verified_at timestamptz DEFAULT now())
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests := gdpr._open_request(request_id);
BEGIN
  PERFORM gdpr._one_of(method, gdpr.verification_methods(), 'verification method');
  PERFORM gdpr._not_null(verified_at, 'verified_at');
  PERFORM gdpr._not_future(verified_at, 'verified_at');
  IF verified_at < r.received_at THEN
    RAISE EXCEPTION 'verified_at is before the request was received' USING ERRCODE = 'invalid_parameter_value',
      DETAIL = format('Received at %s.', r.received_at);
  END IF;
  UPDATE gdpr.requests x SET verification_method = method, verified_at = verify_identity.verified_at,
                             verified_by = gdpr._caller()
   WHERE x.id = request_id;
END
$$;

-- 55000 unless the request's requester was identified: an export or an
-- erasure never runs for someone who may not be the person.
CREATE FUNCTION gdpr._require_verified_request(request_id bigint) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM gdpr.requests x WHERE x.id = request_id AND x.verified_at IS NULL
                AND x.subject_found AND x.kind IN ('access', 'portability', 'erasure')) THEN
    RAISE EXCEPTION 'the identity of the requester of request % has not been verified', request_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'Art. 12(6): the data of a person is given or erased only once the requester is known to be him.',
            HINT = 'Record how it was checked with gdpr.verify_identity(request_id, method).';
  END IF;
END
$$;

-- Answering a request closes it: export_subject, erase_subject and
-- close_request all go through this UPDATE, so the check cannot be skipped.
CREATE FUNCTION gdpr._request_answered() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.outcome IN ('fulfilled', 'partially_fulfilled') THEN
    PERFORM gdpr._require_verified_request(NEW.id);
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER request_answered BEFORE UPDATE OF closed_at ON gdpr.requests
  FOR EACH ROW WHEN (OLD.closed_at IS NULL AND NEW.closed_at IS NOT NULL)
  EXECUTE FUNCTION gdpr._request_answered();

-- A request falling due within 7 days is announced once on channel
-- gdpr_requests (at commit), with no personal data in the payload.
CREATE FUNCTION gdpr._request_reminder() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.closed_at IS NOT NULL OR NEW.due_at > now() + interval '7 days' THEN
    NEW.reminded_at := NULL;
  ELSIF NEW.reminded_at IS NULL THEN
    PERFORM pg_notify('gdpr_requests', json_build_object('request_id', NEW.id, 'kind', NEW.kind, 'due_at', NEW.due_at,
                                                         'state', CASE WHEN NEW.due_at < now() THEN 'overdue'
                                                                       ELSE 'due soon' END)::text);
    NEW.reminded_at := now();
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER request_reminder BEFORE INSERT OR UPDATE OF due_at, closed_at, reminded_at ON gdpr.requests
  FOR EACH ROW EXECUTE FUNCTION gdpr._request_reminder();

-- Announce the open requests that came within 7 days of their deadline since
-- the last call (run it from cron or a scheduler); returns how many.
CREATE FUNCTION gdpr.notify_due_requests() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  -- The trigger sends the notification when reminded_at goes from NULL.
  UPDATE gdpr.requests x SET reminded_at = NULL
   WHERE x.closed_at IS NULL AND x.reminded_at IS NULL AND x.due_at <= now() + interval '7 days';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

CREATE VIEW gdpr.requests_due_soon AS
SELECT r.id, r.subject_table, r.subject_id, r.kind, r.received_at, r.due_at,
       CASE WHEN now() > r.due_at THEN 'overdue' ELSE 'due soon' END AS state,
       date_trunc('second', r.due_at - now()) AS time_left,
       r.verified_at IS NOT NULL AS identity_verified, r.verification_method,
       r.requester_contact IS NOT NULL AS has_contact, r.reminded_at
  FROM gdpr.requests r
 WHERE r.closed_at IS NULL AND r.due_at <= now() + interval '7 days';
COMMENT ON VIEW gdpr.requests_due_soon IS 'open requests due within 7 days or overdue, with the identity check';

-- Who received this person's data (Art. 15(1)(c), Art. 19): the recipients of
-- the purposes his rows actually serve (a classified column of the purpose
-- holds a value of his; for consent, only once he consented), and the
-- exports of his data recorded in the access log.
CREATE FUNCTION gdpr.subject_recipients(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS TABLE (recipient text, country text, role text, purpose text, source text, last_at timestamptz)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  key text := gdpr._subject_key_literal(st, subject_id);
  p record;
  served text[] := '{}';
  yes boolean;
BEGIN
  PERFORM gdpr._require_privilege(t.tbl, 'SELECT', 'gdpr.subject_recipients()') FROM gdpr._subject_tree(st) t;
  FOR p IN SELECT pc.purpose, pc.tbl, string_agg(format('%I IS NOT NULL', pc.col), ' OR ') AS cond
             FROM gdpr.personal_columns pc JOIN gdpr._subject_tree(st) t ON t.tbl = pc.tbl
            GROUP BY 1, 2 ORDER BY 1, 2 LOOP
    CONTINUE WHEN p.purpose = ANY (served);
    yes := gdpr._owner_query(p.tbl, format('SELECT to_jsonb(EXISTS (SELECT FROM %s WHERE (%s) AND (%s)))',
                                           p.tbl, gdpr._subject_rows_cond(p.tbl, key), p.cond))::boolean;
    IF yes AND ((SELECT x.legal_basis FROM gdpr.purposes x WHERE x.code = p.purpose) <> 'consent'
                OR EXISTS (SELECT FROM gdpr.consent_state s WHERE s.subject_table = st AND s.purpose = p.purpose
                              AND s.subject_id = subject_recipients.subject_id AND s.granted_at IS NOT NULL)) THEN
      served := served || p.purpose;
    END IF;
  END LOOP;
  RETURN QUERY
    SELECT x.name, x.country::text, x.role, x.purpose, 'registry'::text, NULL::timestamptz
      FROM gdpr.recipients x WHERE x.purpose = ANY (served)
    UNION ALL
    SELECT coalesce(l.application_name, l.role_name::text), NULL, 'export', l.purpose, 'access log', max(l.at)
      FROM gdpr.access_log l
     WHERE l.operation = 'EXPORT' AND l.tbl = st AND (l.subject_keys && gdpr._log_subject_keys(subject_recipients.subject_id)
                                                    OR l.subject_refs && gdpr._log_subject_refs(subject_recipients.subject_id))
     GROUP BY 1, 4
    ORDER BY 5 DESC, 1;
END
$$;

-- The recipients to tell of a request's rectification, erasure or restriction.
CREATE FUNCTION gdpr.request_recipients(request_id bigint)
  RETURNS TABLE (recipient text, country text, role text, purpose text, source text, last_at timestamptz)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests;
BEGIN
  PERFORM gdpr._not_null(request_id, 'request_id');
  SELECT * INTO r FROM gdpr.requests x WHERE x.id = request_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'request % does not exist', request_id USING ERRCODE = 'undefined_object';
  END IF;
  IF r.subject_found AND gdpr._subject_exists(r.subject_table, r.subject_id) THEN
    RETURN QUERY SELECT * FROM gdpr.subject_recipients(r.subject_id, r.subject_table);
  END IF;
END
$$;

-- After an erasure, nothing in these registers names the person any more:
-- his links to breaches go, and the contact of his requests is cleared.
CREATE FUNCTION gdpr._forget_erased() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM gdpr.breach_affected a
   WHERE a.subject_table = NEW.subject_table AND gdpr._subject_ref(a.subject_table, a.subject_id) = NEW.subject_ref;
  UPDATE gdpr.requests x SET requester_contact = NULL
   WHERE x.requester_contact IS NOT NULL
     AND (x.id = NEW.request_id
          OR x.subject_table = NEW.subject_table AND gdpr._subject_ref(x.subject_table, x.subject_id) = NEW.subject_ref);
  RETURN NULL;
END
$$;
CREATE TRIGGER forget_erased AFTER INSERT ON gdpr.erasures FOR EACH ROW EXECUTE FUNCTION gdpr._forget_erased();

GRANT EXECUTE ON FUNCTION gdpr.set_requester_contact(bigint, text), gdpr.verify_identity(bigint, text, timestamptz),
  gdpr.notify_due_requests(), gdpr.subject_recipients(text, regclass), gdpr.request_recipients(bigint)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.verification_methods() TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.requests_due_soon TO gdpr_admin, gdpr_auditor;

-- ==== from src/sql/87_quality.sql
-- Data quality (Art. 5(1)(d), accuracy): well-formed e-mail addresses, phone
-- numbers and postcodes for the person's country, duplicates by normalised
-- e-mail or phone, and records idle for longer than their purpose needs.
-- Counts for everyone who audits; sample values only for gdpr_admin.
-- Optional validation of classified contact columns: refuse or flag.

CREATE FUNCTION gdpr.valid_email(email text) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN length(email) <= 254 AND position('..' IN email) = 0
     AND email ~* '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,63}$';

-- A phone number: international (+ or 00, 8 to 15 digits; +33 followed by
-- nine digits) or national (France: 0 and nine digits; elsewhere 6 to 14).
CREATE FUNCTION gdpr.valid_phone(phone text, country text DEFAULT 'FR') RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN phone IS NULL THEN NULL
    ELSE (SELECT CASE WHEN d !~ '^\+?[0-9]+$' THEN false
                      WHEN d ~ '^(\+|00)33' THEN d ~ '^(\+|00)33[1-9][0-9]{8}$'
                      WHEN d ~ '^(\+|00)' THEN length(regexp_replace(d, '^(\+|00)', '')) BETWEEN 8 AND 15
                      WHEN upper(coalesce(country, 'FR')) = 'FR' THEN d ~ '^0[1-9][0-9]{8}$'
                      ELSE length(d) BETWEEN 6 AND 14 END
            FROM (SELECT regexp_replace(phone, '[[:space:].()/-]', '', 'g') AS d) x) END;

-- Postcode formats by country (the common European ones and the US); other
-- countries ("*"): 3 to 10 letters, digits, blanks or dashes.
CREATE FUNCTION gdpr.postcode_patterns() RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN '{"FR": "^(0[1-9]|[1-8][0-9]|9[0-8])[0-9]{3}$", "DE": "^[0-9]{5}$", "IT": "^[0-9]{5}$", "FI": "^[0-9]{5}$",
           "ES": "^(0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}$", "US": "^[0-9]{5}(-[0-9]{4})?$", "BE": "^[1-9][0-9]{3}$",
           "CH": "^[1-9][0-9]{3}$", "AT": "^[1-9][0-9]{3}$", "LU": "^(L-)?[0-9]{4}$", "DK": "^[0-9]{4}$",
           "NO": "^[0-9]{4}$", "NL": "^[1-9][0-9]{3} ?[A-Z]{2}$", "PT": "^[0-9]{4}-[0-9]{3}$", "PL": "^[0-9]{2}-[0-9]{3}$",
           "SE": "^[0-9]{3} ?[0-9]{2}$", "GB": "^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$",
           "*": "^[A-Za-z0-9 -]{3,10}$"}'::jsonb;

-- A postcode in its country's format.
CREATE FUNCTION gdpr.valid_postcode(postcode text, country text DEFAULT 'FR') RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN btrim(postcode) ~ coalesce(gdpr.postcode_patterns() ->> upper(coalesce(country, 'FR')),
                                    gdpr.postcode_patterns() ->> '*');

CREATE FUNCTION gdpr.validation_kinds() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['email', 'phone', 'postcode'];

-- Validations set on contact columns (gdpr.set_validation).
CREATE TABLE gdpr.validations (
  tbl             regclass NOT NULL REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  col             name NOT NULL,
  kind            text NOT NULL CHECK (kind = ANY (gdpr.validation_kinds())),
  mode            text NOT NULL CHECK (mode IN ('refuse', 'flag')),
  country_column  name,
  set_at          timestamptz NOT NULL DEFAULT now(),
  set_by          name NOT NULL DEFAULT session_user,
  PRIMARY KEY (tbl, col)
);
COMMENT ON TABLE gdpr.validations IS 'format checks on classified contact columns: refuse the write, or flag it';
SELECT pg_catalog.pg_extension_config_dump('gdpr.validations', '');

-- Whether value is well formed for its kind.
CREATE FUNCTION gdpr._contact_valid(kind text, value text, country text) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE kind WHEN 'email' THEN gdpr.valid_email(value) WHEN 'phone' THEN gdpr.valid_phone(value, country)
                   WHEN 'postcode' THEN gdpr.valid_postcode(value, country) END;

-- The kind of a contact column: set by gdpr.set_validation, else read from its name.
CREATE FUNCTION gdpr._contact_kind(tbl regclass, col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT v.kind FROM gdpr.validations v WHERE v.tbl = _contact_kind.tbl AND v.col = _contact_kind.col),
                  CASE WHEN col ~* '(^|_)e?-?mail' THEN 'email'
                       WHEN col ~* 'phone|mobile|(^|_)tel($|_)|fax' THEN 'phone'
                       WHEN col ~* 'post(al)?_?code|(^|_)zip' THEN 'postcode' END);

-- The country column of tbl used to read phones and postcodes: the one set,
-- else a column named country or country_code.
CREATE FUNCTION gdpr._country_column(tbl regclass, col name) RETURNS name
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT v.country_column FROM gdpr.validations v WHERE v.tbl = _country_column.tbl AND v.col = _country_column.col),
                  (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname IN ('country', 'country_code')
                      AND NOT a.attisdropped ORDER BY a.attname LIMIT 1));

-- Row trigger of gdpr.set_validation: arguments column, kind, mode, country column.
CREATE FUNCTION gdpr._validate_contact() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  row jsonb := gdpr._row_jsonb(NEW);
  value text := row ->> TG_ARGV[0];
  country text := CASE WHEN TG_ARGV[3] <> '' THEN row ->> TG_ARGV[3] END;
BEGIN
  IF value IS NOT NULL AND NOT gdpr._contact_valid(TG_ARGV[1], value, country) THEN
    IF TG_ARGV[2] = 'refuse' THEN
      RAISE EXCEPTION 'invalid % in column "%" of %', TG_ARGV[1], TG_ARGV[0], TG_RELID::regclass
        USING ERRCODE = 'check_violation', DETAIL = format('Got %L%s.', value, coalesce(' for country ' || country, '')),
              HINT = 'gdpr.set_validation() refuses malformed contact data in this column.';
    END IF;
    RAISE WARNING 'invalid % in column "%" of %', TG_ARGV[1], TG_ARGV[0], TG_RELID::regclass
      USING DETAIL = 'Written anyway (mode flag); gdpr.data_quality() counts it.';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION gdpr._validation_trigger(col name) RETURNS name
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN left('gdpr_validate_' || col, 63);

-- Check a classified contact column on every insert and update: 'refuse'
-- rejects a malformed value (23514), 'flag' writes it with a warning, 'off'
-- removes the check.
CREATE FUNCTION gdpr.set_validation(tbl regclass, col name, kind text, mode text DEFAULT 'refuse',
                                    country_column name DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ccol name;
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_validation()');
  PERFORM gdpr._column(tbl, col);
  PERFORM gdpr._one_of(mode, ARRAY['refuse', 'flag', 'off'], 'validation mode');
  IF mode = 'off' THEN
    DELETE FROM gdpr.validations v WHERE v.tbl = set_validation.tbl AND v.col = set_validation.col;
    RETURN;
  END IF;
  PERFORM gdpr._one_of(kind, gdpr.validation_kinds(), 'validation kind');
  IF NOT EXISTS (SELECT FROM gdpr.personal_columns pc WHERE pc.tbl = set_validation.tbl AND pc.col = set_validation.col
                    AND pc.category = 'contact') THEN
    RAISE EXCEPTION 'column "%" of % is not classified as contact data', col, tbl
      USING ERRCODE = 'undefined_object', HINT = 'Classify it with gdpr.classify(..., ''contact'', ...) first.';
  END IF;
  IF country_column IS NOT NULL THEN
    PERFORM gdpr._column(tbl, country_column);
  END IF;
  INSERT INTO gdpr.validations AS v (tbl, col, kind, mode, country_column)
    VALUES (tbl, col, kind, mode, country_column)
    ON CONFLICT ON CONSTRAINT validations_pkey DO UPDATE
      SET kind = excluded.kind, mode = excluded.mode, country_column = excluded.country_column,
          set_at = now(), set_by = session_user;
  ccol := gdpr._country_column(tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %I%s ON %s FOR EACH ROW
                    EXECUTE FUNCTION gdpr._validate_contact(%L, %L, %L, %L)',
                 gdpr._validation_trigger(col), col, coalesce(', ' || quote_ident(ccol), ''), tbl,
                 col, kind, mode, coalesce(ccol, ''));
END
$$;

-- A validation removed (by set_validation 'off' or with its table's
-- registration) takes its trigger with it.
CREATE FUNCTION gdpr._validation_removed() RETURNS trigger
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = OLD.tbl AND t.tgname = gdpr._validation_trigger(OLD.col)) THEN
    EXECUTE format('DROP TRIGGER %I ON %s', gdpr._validation_trigger(OLD.col), OLD.tbl);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER validation_removed AFTER DELETE ON gdpr.validations
  FOR EACH ROW EXECUTE FUNCTION gdpr._validation_removed();

-- Whether SQL expression v is well formed for its kind, as SQL that calls
-- nothing of schema gdpr (it runs as the table's owner): the e-mail pattern
-- and the postcode patterns are parameters $1 and $2; country is SQL too.
-- The same rules as gdpr.valid_email, valid_phone and valid_postcode.
CREATE FUNCTION gdpr._contact_valid_sql(kind text, v text, country text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE kind
    WHEN 'email' THEN format('(length(%1$s) <= 254 AND position(''..'' IN %1$s) = 0 AND %1$s ~* $1)', v)
    WHEN 'phone' THEN format($f$(SELECT CASE WHEN d !~ '^\+?[0-9]+$' THEN false
                                             WHEN d ~ '^(\+|00)33' THEN d ~ '^(\+|00)33[1-9][0-9]{8}$'
                                             WHEN d ~ '^(\+|00)' THEN length(regexp_replace(d, '^(\+|00)', '')) BETWEEN 8 AND 15
                                             WHEN upper(coalesce(%2$s, 'FR')) = 'FR' THEN d ~ '^0[1-9][0-9]{8}$'
                                             ELSE length(d) BETWEEN 6 AND 14 END
                                   FROM (SELECT regexp_replace(%1$s, '[[:space:].()/-]', '', 'g') AS d) x)$f$, v, country)
    WHEN 'postcode' THEN format($f$(btrim(%1$s) ~ coalesce($2::jsonb ->> upper(coalesce(%2$s, 'FR')), $2::jsonb ->> '*'))$f$,
                                v, country)
  END;

-- The e-mail pattern of gdpr.valid_email.
CREATE FUNCTION gdpr._email_pattern() RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,63}$';

-- One check over tbl, run as its owner: [rows at fault, rows checked, up to
-- three values at fault when samples].
CREATE FUNCTION gdpr._quality_check(tbl regclass, problem text, checked text, value text, samples boolean) RETURNS jsonb
  LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
  RETURN gdpr._owner_query(tbl, format(
    'SELECT jsonb_build_array(count(*) FILTER (WHERE %1$s), count(*) FILTER (WHERE %2$s), %3$s) FROM %4$s t',
    problem, checked,
    CASE WHEN samples THEN format('(array_agg(DISTINCT %s) FILTER (WHERE %s))[1:3]', value, problem) ELSE 'NULL' END, tbl),
    gdpr._email_pattern(), gdpr.postcode_patterns()::text);

-- The sample values of a check's result, or NULL without samples.
CREATE FUNCTION gdpr._quality_samples(res jsonb) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN jsonb_typeof(res -> 2) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(res -> 2)) END;

CREATE FUNCTION gdpr.data_quality(samples boolean DEFAULT false)
  RETURNS TABLE (tbl regclass, col name, check_name text, problem_rows bigint, checked_rows bigint, sample_values text[])
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  kind text;
  ccol name;
  v text;
  res jsonb;
BEGIN
  PERFORM gdpr._not_null(samples, 'samples');
  IF samples AND NOT pg_has_role(gdpr._caller(), 'gdpr_admin', 'MEMBER') THEN
    RAISE EXCEPTION 'only gdpr_admin may see sample values' USING ERRCODE = 'insufficient_privilege',
      HINT = 'Call gdpr.data_quality() without samples for the counts.';
  END IF;
  -- Format of each classified contact column whose kind is known.
  FOR c IN SELECT DISTINCT pc.tbl, pc.col FROM gdpr.personal_columns pc
            WHERE pc.category = 'contact' ORDER BY 1, 2 LOOP
    kind := gdpr._contact_kind(c.tbl, c.col);
    CONTINUE WHEN kind IS NULL;
    IF samples THEN
      PERFORM gdpr._require_privilege(c.tbl, 'SELECT', 'samples of gdpr.data_quality()');
    END IF;
    ccol := gdpr._country_column(c.tbl, c.col);
    v := format('t.%I::text', c.col);
    res := gdpr._quality_check(c.tbl, format('NOT %s', gdpr._contact_valid_sql(kind, v,
                                 CASE WHEN ccol IS NULL THEN 'NULL' ELSE format('t.%I::text', ccol) END)),
                               format('t.%I IS NOT NULL', c.col), v, samples);
    tbl := c.tbl; col := c.col; check_name := 'invalid ' || kind;
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
    -- Duplicates among the subjects themselves, by normalised e-mail or phone
    -- (compared as gdpr.is_suppressed compares them).
    CONTINUE WHEN kind = 'postcode' OR NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = c.tbl);
    res := gdpr._owner_query(c.tbl, format(
      $f$SELECT jsonb_build_array(coalesce(sum(n) FILTER (WHERE n > 1), 0), coalesce(sum(n), 0), %1$s)
           FROM (SELECT CASE WHEN %2$s LIKE '%%@%%' THEN lower(btrim(%2$s))
                             ELSE regexp_replace(regexp_replace(%2$s, '[^0-9]', '', 'g'), '^0', '33') END AS v,
                        count(*) AS n
                   FROM %3$s t WHERE t.%4$I IS NOT NULL GROUP BY 1) d$f$,
      CASE WHEN samples THEN '(array_agg(v ORDER BY v) FILTER (WHERE n > 1))[1:3]' ELSE 'NULL' END, v, c.tbl, c.col));
    check_name := 'duplicate ' || kind;
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
  END LOOP;
  -- Subjects idle for longer than the retention of their rows allows.
  -- (A policy with a row scope counts the rows of its scope only.)
  FOR c IN SELECT p.tbl, p.after_column, p.keep, s.id_column, gdpr._scope_cond(p, 't') AS scope,
                  gdpr._scope_text(p.scope_column, p.scope_values, p.scope_exclude) AS scope_text
             FROM gdpr.retention_policies p
             JOIN gdpr.subject_tables s ON s.tbl = p.tbl
            WHERE p.col IS NULL AND p.after_table = p.tbl ORDER BY 1, p.id LOOP
    IF samples THEN
      PERFORM gdpr._require_privilege(c.tbl, 'SELECT', 'samples of gdpr.data_quality()');
    END IF;
    res := gdpr._quality_check(c.tbl, concat_ws(' AND ', format('t.%I < now() - %L::interval', c.after_column, c.keep), c.scope),
                               coalesce(c.scope, 'true'), format('t.%I::text', c.id_column), samples);
    tbl := c.tbl; col := c.after_column;
    check_name := 'inactive beyond ' || c.keep::text || coalesce(' where ' || c.scope_text, '');
    problem_rows := res ->> 0; checked_rows := res ->> 1; sample_values := gdpr._quality_samples(res);
    RETURN NEXT;
  END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION gdpr.valid_email(text), gdpr.valid_phone(text, text), gdpr.valid_postcode(text, text),
  gdpr.validation_kinds(), gdpr.postcode_patterns() TO gdpr_admin, gdpr_auditor;
GRANT EXECUTE ON FUNCTION gdpr.set_validation(regclass, name, text, text, name) TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.data_quality(boolean) TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.validations TO gdpr_admin, gdpr_auditor;

-- ==== from src/sql/88_report.sql
-- The compliance report: one self-contained document an auditor can print,
-- sign and file (HTML with inline SVG charts and CSS, no script and no
-- external asset; or Markdown).  The content is gathered once as JSON
-- (gdpr._report_content), then rendered; the document is dated and ends
-- with the SHA-256 of everything before its digest marker, which
-- gdpr.verify_report() checks.

-- Text made safe for HTML and SVG.
CREATE FUNCTION gdpr._html(s text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                         '"', '&quot;'), '''', '&#39;');

-- A value of a report table as text: arrays joined, NULL as a dash.
CREATE FUNCTION gdpr._report_cell(v jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE jsonb_typeof(v) WHEN 'null' THEN '—' WHEN 'string' THEN v #>> '{}'
              WHEN 'array' THEN coalesce(nullif((SELECT string_agg(coalesce(e #>> '{}', '—'), '; ')
                                                   FROM jsonb_array_elements(v) e), ''), '—')
              ELSE coalesce(v #>> '{}', '—') END;

-- A horizontal bar chart, stacked when there are several series:
-- chart = {"title", "labels": [...], "series": [{"name", "values": [...]}]}.
CREATE FUNCTION gdpr._svg_bars(chart jsonb) RETURNS text
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  colours text[] := ARRAY['#2e7d32', '#f9a825', '#c62828', '#1565c0', '#6a1b9a', '#00838f', '#8d6e63'];
  labels text[] := ARRAY(SELECT jsonb_array_elements_text(chart -> 'labels'));
  n_series int := jsonb_array_length(chart -> 'series');
  total numeric;
  peak numeric := 0;
  x numeric;
  w numeric;
  v numeric;
  row_h int := 24;
  left_w int := 230;
  bar_w int := 380;
  legend_h int := CASE WHEN n_series > 1 THEN 22 ELSE 0 END;
  h int;
  svg text;
  i int;
  s int;
BEGIN
  FOR i IN 1 .. coalesce(cardinality(labels), 0) LOOP
    SELECT sum((e -> 'values' ->> (i - 1))::numeric) INTO total FROM jsonb_array_elements(chart -> 'series') e;
    peak := greatest(peak, coalesce(total, 0));
  END LOOP;
  h := 30 + legend_h + row_h * greatest(coalesce(cardinality(labels), 0), 1);
  svg := format('<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="680" height="%s" viewBox="0 0 680 %s" role="img" aria-label="%s">',
                h, h, gdpr._html(chart ->> 'title'))
      || format('<text x="0" y="16" class="ct">%s</text>', gdpr._html(chart ->> 'title'));
  FOR s IN 1 .. n_series LOOP
    CONTINUE WHEN n_series = 1;
    svg := svg || format('<rect x="%s" y="26" width="12" height="12" fill="%s"/><text x="%s" y="36" class="cl">%s</text>',
                         (s - 1) * 150, coalesce(chart -> 'series' -> (s - 1) ->> 'colour', colours[1 + (s - 1) % 7]), (s - 1) * 150 + 16,
                         gdpr._html(chart -> 'series' -> (s - 1) ->> 'name'));
  END LOOP;
  IF coalesce(cardinality(labels), 0) = 0 THEN
    RETURN svg || format('<text x="0" y="%s" class="cl">nothing to show</text></svg>', 44 + legend_h);
  END IF;
  FOR i IN 1 .. cardinality(labels) LOOP
    svg := svg || format('<text x="0" y="%s" class="cl">%s</text>', 30 + legend_h + (i - 1) * row_h + 15,
                         gdpr._html(left(labels[i], 34)));
    x := left_w;
    total := 0;
    FOR s IN 1 .. n_series LOOP
      v := coalesce((chart -> 'series' -> (s - 1) -> 'values' ->> (i - 1))::numeric, 0);
      total := total + v;
      CONTINUE WHEN v = 0;
      w := round(bar_w * v / nullif(peak, 0), 1);
      svg := svg || format('<rect x="%s" y="%s" width="%s" height="16" fill="%s"><title>%s: %s</title></rect>',
                           x, 30 + legend_h + (i - 1) * row_h + 3, greatest(w, 1),
                           coalesce(chart -> 'series' -> (s - 1) ->> 'colour', colours[1 + (s - 1) % 7]),
                           gdpr._html(chart -> 'series' -> (s - 1) ->> 'name'), v);
      x := x + greatest(w, 1);
    END LOOP;
    svg := svg || format('<text x="%s" y="%s" class="cl">%s</text>', x + 6, 30 + legend_h + (i - 1) * row_h + 15, total);
  END LOOP;
  RETURN svg || '</svg>';
END
$$;

-- A report table: {"columns": [...], "rows": [[...], ...]} from a query's
-- rows as JSON arrays.
CREATE FUNCTION gdpr._report_table(columns text[], rows jsonb) RETURNS jsonb
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN jsonb_build_object('columns', to_jsonb(columns), 'rows', coalesce(rows, '[]'));

-- Everything the report says, gathered once.
CREATE FUNCTION gdpr._report_content(tenant text DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c gdpr.controller;
  v record;
  sections jsonb := '[]';
  summary jsonb := '[]';
  n bigint;
  m bigint;
BEGIN
  SELECT * INTO c FROM gdpr.controller;

  -- Art. 30: one card per purpose.
  sections := sections || jsonb_build_object('id', 'register', 'title', 'Record of processing activities (Art. 30)',
    'intro', format('Controller: %s. Representative: %s. Data protection officer: %s.',
                    coalesce(c.name || coalesce(', ' || c.address, '') || coalesce(', ' || c.contact, ''), 'not set'),
                    coalesce(c.representative, 'none'), coalesce(c.dpo_name || ', ' || c.dpo_contact, 'not set')),
    'cards', (SELECT jsonb_agg(jsonb_build_object('title', p.purpose || ' — ' || p.description,
                'table', gdpr._report_table(ARRAY['Entry', 'Content'], jsonb_build_array(
                  jsonb_build_array('Legal basis', p.legal_basis),
                  jsonb_build_array('Information notice', 'version ' || p.notice_version || ', SHA-256 ' || left(p.notice_sha256, 16) || '…'),
                  jsonb_build_array('Categories of data subjects', p.subject_categories),
                  jsonb_build_array('Categories of personal data', p.data_categories),
                  jsonb_build_array('Personal data', p.personal_data),
                  jsonb_build_array('Recipients', p.recipients_detail),
                  jsonb_build_array('Transfers outside the EEA', p.transfers_outside_eea),
                  jsonb_build_array('Retention', p.retention),
                  jsonb_build_array('Security measures', p.security_measures),
                  jsonb_build_array('DPIA', CASE WHEN p.dpia_required THEN 'required: ' ELSE '' END || p.dpia_status)))) ORDER BY p.purpose)
                FROM gdpr.processing_register p WHERE gdpr._in_tenant(p.tenant, _report_content.tenant)));
  SELECT count(*) INTO n FROM gdpr.processing_register p
   WHERE cardinality(p.personal_data) = 0 AND gdpr._in_tenant(p.tenant, _report_content.tenant);
  summary := summary || jsonb_build_array(jsonb_build_array('Purposes in the register',
               (SELECT count(*) FROM gdpr.purposes x WHERE gdpr._in_tenant(x.tenant, _report_content.tenant)), CASE WHEN c.name IS NULL THEN 'controller not set' WHEN n > 0
               THEN n || ' without classified data' ELSE 'ok' END));

  sections := sections || jsonb_build_object('id', 'processors', 'title', 'Recipients, processors and transfers (Art. 28, 30(1)(d)(e), 44-49)',
    'table', gdpr._report_table(ARRAY['Recipient', 'Country', 'Role', 'Engaged by', 'Contract (DPA)', 'Purposes', 'Transfer safeguard'],
      (SELECT jsonb_agg(jsonb_build_array(x.name, x.country, x.role, x.processor,
                                          concat_ws(' of ', x.dpa_reference, x.dpa_signed_on), x.purposes,
                                          CASE WHEN x.outside_eea THEN x.safeguard ELSE 'inside the EEA' END) ORDER BY x.name)
         FROM (SELECT r.name, r.country, r.role, r.processor, r.dpa_reference, r.dpa_signed_on, r.safeguard,
                      r.outside_eea, array_agg(r.purpose ORDER BY r.purpose) AS purposes
                 FROM gdpr.recipients r JOIN gdpr.purposes rp ON rp.code = r.purpose
                WHERE gdpr._in_tenant(rp.tenant, _report_content.tenant) GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) x)));
  SELECT count(*) INTO n FROM gdpr.recipients r WHERE r.role = 'third_party' AND r.dpa_reference IS NULL;
  summary := summary || jsonb_build_array(jsonb_build_array('Recipients', (SELECT count(DISTINCT r.name) FROM gdpr.recipients r),
               CASE WHEN n > 0 THEN n || ' without a contract on file' ELSE 'ok' END));

  -- Consent coverage.
  SELECT jsonb_agg(jsonb_build_array(p.code, p.legal_basis, coalesce(s.granted, 0), coalesce(s.unconfirmed, 0),
                                     coalesce(s.expired, 0), coalesce(s.withdrawn, 0), coalesce(s.objected, 0),
                                     coalesce(s.informed, 0), coalesce(s.stale, 0)) ORDER BY p.code) AS rows,
         jsonb_build_object('title', 'Consent and objection per purpose (subjects)',
           'labels', jsonb_agg(p.code ORDER BY p.code),
           'series', jsonb_build_array(
             jsonb_build_object('name', 'granted', 'values', jsonb_agg(coalesce(s.granted, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'unconfirmed', 'values', jsonb_agg(coalesce(s.unconfirmed, 0) + coalesce(s.expired, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'withdrawn', 'values', jsonb_agg(coalesce(s.withdrawn, 0) + coalesce(s.objected, 0) ORDER BY p.code)),
             jsonb_build_object('name', 'informed', 'values', jsonb_agg(coalesce(s.informed, 0) ORDER BY p.code)))) AS chart
    INTO v
    FROM gdpr.purposes p
    LEFT JOIN (SELECT x.purpose, count(*) FILTER (WHERE x.state = 'granted') AS granted,
                      count(*) FILTER (WHERE x.state = 'unconfirmed') AS unconfirmed,
                      count(*) FILTER (WHERE x.state = 'expired') AS expired,
                      count(*) FILTER (WHERE x.state = 'withdrawn') AS withdrawn,
                      count(*) FILTER (WHERE x.state = 'objected') AS objected,
                      count(*) FILTER (WHERE x.state = 'informed') AS informed,
                      count(*) FILTER (WHERE x.stale) AS stale
                 FROM gdpr.consent_status x GROUP BY 1) s ON s.purpose = p.code
   WHERE gdpr._in_tenant(p.tenant, _report_content.tenant);
  sections := sections || jsonb_build_object('id', 'consent', 'title', 'Consent coverage per purpose (Art. 6, 7, 21)',
    'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Purpose', 'Legal basis', 'Granted', 'Unconfirmed', 'Expired', 'Withdrawn', 'Objected',
                                      'Informed', 'On an older notice'], v.rows));

  -- Retention.
  SELECT jsonb_agg(jsonb_build_array(CASE WHEN r.col IS NULL THEN gdpr.qualified_name(r.tbl) || ' (rows)'
                                          ELSE gdpr.qualified_name(r.tbl) || '.' || r.col END
                                     -- a policy with a row scope (issue 20.6) says which rows
                                     || coalesce(' where ' || gdpr._scope_text(r.scope_column, r.scope_values, r.scope_exclude), ''),
                                     r.keep::text, r.action, r.rows_due, r.oldest_due, r.last_purged_at) ORDER BY r.policy_id) AS rows,
         jsonb_build_object('title', 'Rows past their retention period, per policy',
           'labels', jsonb_agg(CASE WHEN r.col IS NULL THEN gdpr.qualified_name(r.tbl) ELSE gdpr.qualified_name(r.tbl) || '.' || r.col END
                               || coalesce(' where ' || gdpr._scope_text(r.scope_column, r.scope_values, r.scope_exclude), '')
                               ORDER BY r.policy_id),
           'series', jsonb_build_array(jsonb_build_object('name', 'past due',
                                                          'values', jsonb_agg(r.rows_due ORDER BY r.policy_id)))) AS chart,
         coalesce(sum(r.rows_due), 0) AS due
    INTO v FROM gdpr.retention_status r;
  sections := sections || jsonb_build_object('id', 'retention', 'title', 'Retention (Art. 5(1)(e))', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Data', 'Kept for', 'Then', 'Rows past due', 'Oldest due since', 'Last purged'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Rows past their retention period', v.due,
               CASE WHEN v.due > 0 THEN 'the purge has work to do' ELSE 'ok' END));

  -- Requests.
  SELECT jsonb_agg(jsonb_build_array(k.kind, x.open, x.due_soon, x.overdue, x.on_time, x.late, x.unverified) ORDER BY k.o) AS rows,
         jsonb_build_object('title', 'Requests of data subjects per kind',
           'labels', jsonb_agg(k.kind ORDER BY k.o),
           'series', jsonb_build_array(
             jsonb_build_object('name', 'answered on time', 'values', jsonb_agg(x.on_time ORDER BY k.o)),
             jsonb_build_object('name', 'open', 'colour', '#1565c0', 'values', jsonb_agg(x.open - x.due_soon - x.overdue ORDER BY k.o)),
             jsonb_build_object('name', 'due soon', 'colour', '#f9a825', 'values', jsonb_agg(x.due_soon ORDER BY k.o)),
             jsonb_build_object('name', 'overdue or late', 'colour', '#c62828', 'values', jsonb_agg(x.overdue + x.late ORDER BY k.o)))) AS chart,
         sum(x.overdue) AS overdue
    INTO v
    FROM unnest(gdpr.request_kinds()) WITH ORDINALITY k(kind, o)
    CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE r.closed_at IS NULL) AS open,
             count(*) FILTER (WHERE r.closed_at IS NULL AND now() BETWEEN r.due_at - interval '7 days' AND r.due_at) AS due_soon,
             count(*) FILTER (WHERE r.closed_at IS NULL AND now() > r.due_at) AS overdue,
             count(*) FILTER (WHERE r.closed_at IS NOT NULL AND r.closed_at <= r.due_at) AS on_time,
             count(*) FILTER (WHERE r.closed_at > r.due_at) AS late,
             count(*) FILTER (WHERE r.closed_at IS NULL AND r.verified_at IS NULL) AS unverified
        FROM gdpr.requests r WHERE r.kind = k.kind) x;
  sections := sections || jsonb_build_object('id', 'requests', 'title', 'Requests of data subjects (Art. 12-22)', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Kind', 'Open', 'Due within 7 days', 'Overdue', 'Answered on time', 'Answered late',
                                      'Open, identity not verified'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Requests overdue', v.overdue,
               CASE WHEN v.overdue > 0 THEN 'answer them now' ELSE 'ok' END));

  -- Breaches.
  sections := sections || jsonb_build_object('id', 'breaches', 'title', 'Personal data breaches (Art. 33, 34)',
    'table', gdpr._report_table(ARRAY['No.', 'Became aware', 'Nature', 'Risk', 'Subjects (approx.)', 'Records (approx.)',
                                      'State', 'Notified', 'Reason', 'People informed (Art. 34)'],
      (SELECT jsonb_agg(jsonb_build_array(b.id, to_char(b.aware_at, 'YYYY-MM-DD HH24:MI'), b.nature, b.risk_level,
                                          b.approx_subjects, b.approx_records, b.state,
                                          concat_ws(', ', to_char(b.notified_at, 'YYYY-MM-DD HH24:MI'), b.reference),
                                          b.outcome_reason,
                                          CASE WHEN b.inform_subjects THEN b.informed_subjects || ' of ' || b.linked_subjects
                                               ELSE 'not required' END) ORDER BY b.id)
         FROM gdpr.breach_register b)));
  SELECT count(*) INTO n FROM gdpr.breach_register b WHERE b.state = 'overdue';
  summary := summary || jsonb_build_array(jsonb_build_array('Breaches', (SELECT count(*) FROM gdpr.breaches),
               CASE WHEN n > 0 THEN n || ' past 72 hours without notification or outcome' ELSE 'ok' END));

  -- DPIA.
  sections := sections || jsonb_build_object('id', 'dpia', 'title', 'Data protection impact assessments (Art. 35)',
    'table', gdpr._report_table(ARRAY['Purpose', 'Criteria met', 'Subjects (estimate)', 'Required', 'Status', 'Assessed on',
                                      'Residual risk', 'Conclusion'],
      (SELECT jsonb_agg(jsonb_build_array(d.purpose, d.criteria, d.estimated_subjects, CASE WHEN d.required THEN 'yes' ELSE 'no' END,
                                          d.status, d.assessed_on, d.residual_risk, d.conclusion) ORDER BY d.purpose)
         FROM gdpr.dpia_register d JOIN gdpr.purposes dp ON dp.code = d.purpose
        WHERE gdpr._in_tenant(dp.tenant, _report_content.tenant))));
  SELECT count(*) INTO n FROM gdpr.dpia_register d JOIN gdpr.purposes dp ON dp.code = d.purpose
   WHERE d.lacking AND gdpr._in_tenant(dp.tenant, _report_content.tenant);
  summary := summary || jsonb_build_array(jsonb_build_array('Processings lacking a required DPIA', n,
               CASE WHEN n > 0 THEN 'carry them out' ELSE 'ok' END));

  -- The access log.
  SELECT * INTO v FROM gdpr.verify_access_log(record_checkpoint => false);   -- a STABLE report writes nothing
  SELECT count(*) INTO n FROM gdpr.mass_read_alarms;
  SELECT count(*) INTO m FROM gdpr.access_violations a WHERE a.at > now() - interval '30 days';
  sections := sections || jsonb_build_object('id', 'access-log', 'title', 'Access log integrity (Art. 5(1)(f), 32)',
    'table', gdpr._report_table(ARRAY['Check', 'Result'], jsonb_build_array(
      jsonb_build_array('Rows and seals verified', CASE WHEN v.ok THEN 'intact' ELSE 'ALTERED' END || ': ' || v.detail),
      jsonb_build_array('Rows checked', v.checked),
      jsonb_build_array('Mass-read alarms now', n),
      jsonb_build_array('Read-queue alarms now (reads dropped or made to wait)', (SELECT count(*) FROM gdpr.log_queue_alarms)),
      jsonb_build_array('Refused accesses in the last 30 days', m),
      jsonb_build_array('Last seal', (SELECT concat_ws(', up to ', s.last_seal::text, s.sealed_upto::text) FROM gdpr.access_log_status s)),
      jsonb_build_array('Rows waiting for a seal', (SELECT s.unsealed_rows FROM gdpr.access_log_status s)))));
  summary := summary || jsonb_build_array(jsonb_build_array('Access log', v.checked,
               CASE WHEN NOT v.ok THEN 'ALTERED: ' || v.detail WHEN n + m > 0 THEN n || ' alarm(s), ' || m || ' refusal(s)'
                    ELSE 'intact' END));

  -- Data quality.
  SELECT jsonb_agg(jsonb_build_array(gdpr.qualified_name(q.tbl) || '.' || q.col, q.check_name, q.problem_rows, q.checked_rows)
                   ORDER BY q.tbl::text, q.col, q.check_name) AS rows,
         jsonb_build_object('title', 'Rows with a data quality problem, per check',
           'labels', jsonb_agg(q.col || ': ' || q.check_name ORDER BY q.tbl::text, q.col, q.check_name),
           'series', jsonb_build_array(jsonb_build_object('name', 'rows',
                       'values', jsonb_agg(q.problem_rows ORDER BY q.tbl::text, q.col, q.check_name)))) AS chart,
         coalesce(sum(q.problem_rows), 0) AS problems
    INTO v FROM gdpr.data_quality(false) q;
  sections := sections || jsonb_build_object('id', 'quality', 'title', 'Data quality (Art. 5(1)(d))', 'chart', v.chart,
    'table', gdpr._report_table(ARRAY['Column', 'Check', 'Rows at fault', 'Rows checked'], v.rows));
  summary := summary || jsonb_build_array(jsonb_build_array('Data quality problems (rows)', v.problems,
               CASE WHEN v.problems > 0 THEN 'correct or erase them' ELSE 'ok' END));

  RETURN jsonb_build_object(
    'title', 'GDPR compliance report' || coalesce(' — tenant ' || _report_content.tenant, ''),
    'controller', c.name, 'dpo', c.dpo_name || ', ' || c.dpo_contact,
    'database', current_database(),
    'generated_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
    'generated_by', gdpr._caller(),
    'version', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'crm_gdpr'),
    'summary', gdpr._report_table(ARRAY['Area', 'Count', 'Status'], summary),
    'sections', sections);
END
$$;

-- One table as HTML or Markdown.
CREATE FUNCTION gdpr._render_table(t jsonb, markdown boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN jsonb_array_length(t -> 'rows') = 0 THEN CASE WHEN markdown THEN E'_None._\n' ELSE '<p class="none">None.</p>' END
    WHEN markdown THEN
      '| ' || (SELECT string_agg(replace(c, '|', '\|'), ' | ') FROM jsonb_array_elements_text(t -> 'columns') c) || E' |\n|'
      || (SELECT string_agg('---|', '') FROM jsonb_array_elements(t -> 'columns')) || E'\n'
      || (SELECT string_agg('| ' || (SELECT string_agg(replace(replace(gdpr._report_cell(v), '|', '\|'), E'\n', ' '), ' | ' ORDER BY o)
                                       FROM jsonb_array_elements(r) WITH ORDINALITY x(v, o)) || E' |\n', '' ORDER BY ro)
            FROM jsonb_array_elements(t -> 'rows') WITH ORDINALITY y(r, ro))
    ELSE
      '<table><thead><tr>' || (SELECT string_agg('<th>' || gdpr._html(c) || '</th>', '') FROM jsonb_array_elements_text(t -> 'columns') c)
      || '</tr></thead><tbody>'
      || (SELECT string_agg('<tr>' || (SELECT string_agg(CASE WHEN v #>> '{}' IN ('ok', 'intact') THEN '<td class="ok">'
                                                              WHEN o = 3 AND t -> 'columns' ->> 2 = 'Status' THEN '<td class="warn">'
                                                              ELSE '<td>' END
                                                         || CASE WHEN jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
                                                                 THEN (SELECT string_agg(gdpr._html(e #>> '{}'), '<br>')
                                                                         FROM jsonb_array_elements(v) e)
                                                                 ELSE gdpr._html(gdpr._report_cell(v)) END || '</td>', '' ORDER BY o)
                                       FROM jsonb_array_elements(r) WITH ORDINALITY x(v, o)) || '</tr>', '' ORDER BY ro)
            FROM jsonb_array_elements(t -> 'rows') WITH ORDINALITY y(r, ro))
      || '</tbody></table>' END;

CREATE FUNCTION gdpr._render_html(doc jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN concat(
    E'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>', gdpr._html(doc ->> 'title'), ' — ',
    gdpr._html(doc ->> 'database'), ' — ', gdpr._html(doc ->> 'generated_at'), '</title>',
    '<style>body{font:13px/1.4 "DejaVu Sans",Arial,sans-serif;color:#222;margin:24px auto;max-width:1100px}',
    'h1{font-size:22px;margin:0}h2{font-size:16px;border-bottom:2px solid #1565c0;padding-bottom:3px;margin-top:28px}',
    'table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}',
    'th{background:#e3eaf5}tr:nth-child(even) td{background:#f7f7f7}.meta{color:#555}.none{color:#777;font-style:italic}',
    'td.ok{color:#2e7d32;font-weight:bold}td.warn{color:#b26a00;font-weight:bold}h3{font-size:14px;margin:16px 0 4px}',
    '.chart{display:block;margin:8px 0}.ct{font-weight:bold;font-size:13px}.cl{font-size:12px}',
    'footer{margin-top:32px;border-top:1px solid #999;color:#555;font-size:11px}',
    '@media print{section{break-inside:avoid}}</style></head><body>', E'\n',
    '<header><h1>', gdpr._html(doc ->> 'title'), '</h1><p class="meta">Controller: ', gdpr._html(coalesce(doc ->> 'controller', 'not set')),
    ' · DPO: ', gdpr._html(coalesce(doc ->> 'dpo', 'not set')), ' · Database: ', gdpr._html(doc ->> 'database'),
    ' · crm_gdpr ', gdpr._html(doc ->> 'version'), '<br>Generated on <time>', gdpr._html(doc ->> 'generated_at'),
    '</time> by ', gdpr._html(doc ->> 'generated_by'), '</p></header>', E'\n',
    '<section id="summary"><h2>Summary</h2>', gdpr._render_table(doc -> 'summary', false), E'</section>\n',
    (SELECT string_agg(format(E'<section id="%s"><h2>%s</h2>%s%s%s%s</section>\n', s ->> 'id', gdpr._html(s ->> 'title'),
                              coalesce('<p>' || gdpr._html(s ->> 'intro') || '</p>', ''),
                              CASE WHEN s ? 'chart' AND jsonb_typeof(s -> 'chart') = 'object' THEN gdpr._svg_bars(s -> 'chart') ELSE '' END,
                              CASE WHEN s ? 'table' THEN gdpr._render_table(s -> 'table', false) ELSE '' END,
                              (SELECT string_agg('<h3>' || gdpr._html(k ->> 'title') || '</h3>' || gdpr._render_table(k -> 'table', false), '' ORDER BY ko)
                                 FROM jsonb_array_elements(coalesce(s -> 'cards', '[]')) WITH ORDINALITY z(k, ko))), '' ORDER BY o)
       FROM jsonb_array_elements(doc -> 'sections') WITH ORDINALITY x(s, o)),
    '<footer><p>Signature of the data protection officer: ____________________ Date: __________</p>', E'\n');

CREATE FUNCTION gdpr._render_markdown(doc jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN concat(
    '# ', doc ->> 'title', E'\n\n',
    'Controller: ', coalesce(doc ->> 'controller', 'not set'), ' · DPO: ', coalesce(doc ->> 'dpo', 'not set'),
    ' · Database: ', doc ->> 'database', ' · crm_gdpr ', doc ->> 'version', E'  \n',
    'Generated on ', doc ->> 'generated_at', ' by ', doc ->> 'generated_by', E'\n\n',
    E'## Summary\n\n', gdpr._render_table(doc -> 'summary', true), E'\n',
    (SELECT string_agg(format(E'## %s\n\n%s%s%s\n', s ->> 'title', coalesce((s ->> 'intro') || E'\n\n', ''),
                              CASE WHEN s ? 'table' THEN gdpr._render_table(s -> 'table', true) ELSE '' END,
                              (SELECT string_agg(E'### ' || (k ->> 'title') || E'\n\n' || gdpr._render_table(k -> 'table', true) || E'\n', '' ORDER BY ko)
                                 FROM jsonb_array_elements(coalesce(s -> 'cards', '[]')) WITH ORDINALITY z(k, ko))), '' ORDER BY o)
       FROM jsonb_array_elements(doc -> 'sections') WITH ORDINALITY x(s, o)),
    E'Signature of the data protection officer: ____________________ Date: __________\n\n');

-- The report: format 'html' (default) or 'markdown'.  The last lines give the
-- SHA-256 of everything before the line <!-- sha256 -->.
CREATE FUNCTION gdpr.compliance_report(format text DEFAULT 'html', tenant text DEFAULT NULL) RETURNS text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  body text;
  digest text;
BEGIN
  PERFORM gdpr._one_of(format, ARRAY['html', 'markdown'], 'report format');
  -- A tenant's report (issue 19.4): its purposes and the global ones.
  IF tenant IS NOT NULL AND NOT EXISTS (SELECT FROM gdpr.tenants t WHERE t.name = compliance_report.tenant) THEN
    RAISE EXCEPTION 'tenant "%" does not exist', tenant USING ERRCODE = 'undefined_object';
  END IF;
  body := CASE format WHEN 'html' THEN gdpr._render_html(gdpr._report_content(tenant))
                      ELSE gdpr._render_markdown(gdpr._report_content(tenant)) END;
  digest := encode(sha256(convert_to(body, 'UTF8')), 'hex');
  RETURN body || E'<!-- sha256 -->\n' || CASE format
    WHEN 'html' THEN '<p id="digest">SHA-256 of this document before its digest line: <code>' || digest
                     || E'</code></p></footer></body></html>\n'
    ELSE 'SHA-256 of this document before its digest line: `' || digest || E'`\n' END;
END
$$;

-- Whether a report is unchanged since it was produced: its digest line
-- matches the SHA-256 of what precedes it.
CREATE FUNCTION gdpr.verify_report(report text) RETURNS boolean
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN position(E'<!-- sha256 -->\n' IN report) > 0
     AND substring(report FROM position(E'<!-- sha256 -->\n' IN report)) ~
         ('[`>]' || encode(sha256(convert_to(left(report, position(E'<!-- sha256 -->\n' IN report) - 1), 'UTF8')), 'hex') || '[`<]');

GRANT EXECUTE ON FUNCTION gdpr.compliance_report(text, text), gdpr.verify_report(text) TO gdpr_admin, gdpr_auditor;

REVOKE ALL ON gdpr.breach_affected FROM PUBLIC;
