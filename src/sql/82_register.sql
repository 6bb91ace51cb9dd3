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
