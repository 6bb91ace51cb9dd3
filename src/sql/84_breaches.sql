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
