-- Consent and objection: an append-only ledger of events with their proof,
-- a current-state table maintained with it (what may_process and
-- contactable read), and the prospecting rules of the CNIL for e-mail.

ALTER TABLE gdpr.purposes
  ADD COLUMN consent_valid_for interval CHECK (consent_valid_for > interval '0'),
  ADD COLUMN requires_double_opt_in boolean NOT NULL DEFAULT false,
  ADD COLUMN renewal_required boolean NOT NULL DEFAULT false,
  ADD COLUMN electronic_marketing boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN gdpr.purposes.renewal_required IS
  'a consent given under an older notice no longer counts: the person must consent again';
COMMENT ON COLUMN gdpr.purposes.electronic_marketing IS
  'prospecting by e-mail or SMS: the B2B/B2C rules of doc/consent.md apply';

-- Which columns of a subject table say B2B or B2C, customer or prospect.
ALTER TABLE gdpr.subject_tables
  ADD COLUMN segment_column name,
  ADD COLUMN status_column name,
  ADD COLUMN status_customer_values text[],
  ADD COLUMN status_table regclass;
COMMENT ON COLUMN gdpr.subject_tables.status_customer_values IS
  'the values of status_column that make a customer (a won stage); the others make a prospect';
COMMENT ON COLUMN gdpr.subject_tables.status_table IS
  'the table linked to the subject whose status_column says it (a deal''s stage): a customer once one of his rows does';

CREATE FUNCTION gdpr.consent_events() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['grant', 'withdraw', 'confirm', 'informed', 'object'];
CREATE FUNCTION gdpr.consent_channels() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['web', 'email', 'phone', 'paper', 'import', 'api'];

-- The proof a grant, a confirmation or an information must carry, per channel.
CREATE FUNCTION gdpr.proof_keys(channel text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE channel
    WHEN 'web' THEN ARRAY['ip', 'user_agent', 'form', 'notice_version']
    WHEN 'email' THEN ARRAY['message_id']
    WHEN 'phone' THEN ARRAY['agent', 'recording']
    WHEN 'paper' THEN ARRAY['document']
    WHEN 'import' THEN ARRAY['source', 'partner']
    WHEN 'api' THEN ARRAY['client'] END;

CREATE TABLE gdpr.consent_ledger (
  id              bigserial PRIMARY KEY,
  subject_table   regclass NOT NULL,
  subject_id      text NOT NULL,
  purpose         text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  event           text NOT NULL CHECK (event = ANY (gdpr.consent_events())),
  channel         text NOT NULL CHECK (channel = ANY (gdpr.consent_channels())),
  at              timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  proof           jsonb NOT NULL CHECK (jsonb_typeof(proof) = 'object'),
  notice_version  int,
  notice_digest   bytea,
  recorded_by     name NOT NULL DEFAULT session_user
);
CREATE INDEX ON gdpr.consent_ledger (subject_table, subject_id);
COMMENT ON TABLE gdpr.consent_ledger IS 'every consent event with its proof; append-only';

CREATE FUNCTION gdpr._append_only() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_append_only';
CREATE FUNCTION gdpr._allow_ledger_erasure() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_allow_ledger_erasure';
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.consent_ledger
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.consent_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only();

-- The current state per subject and purpose, kept with each event, so that
-- may_process and contactable never read the history.
CREATE TABLE gdpr.consent_state (
  subject_table   regclass NOT NULL,
  subject_id      text NOT NULL,
  purpose         text NOT NULL REFERENCES gdpr.purposes ON UPDATE CASCADE,
  granted_at      timestamptz,
  confirmed_at    timestamptz,
  withdrawn_at    timestamptz,
  informed_at     timestamptz,
  objected_at     timestamptz,
  notice_version  int,
  last_event      text NOT NULL,
  last_event_id   bigint NOT NULL,
  last_event_at   timestamptz NOT NULL,
  PRIMARY KEY (subject_table, purpose, subject_id)
);
-- A subject's rows, whatever the purpose: erasure, and a subject's departure (76_departures.sql).
CREATE INDEX consent_state_subject ON gdpr.consent_state (subject_table, subject_id);
COMMENT ON TABLE gdpr.consent_state IS 'current consent state per subject and purpose, maintained with the ledger';

SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_ledger', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_state', '');

-- What is kept of the consent events of a person who left (erased, or his
-- row deleted): a keyed pseudonym and the dates that show the processing
-- was lawful (Art. 7(1): the controller must be able to demonstrate
-- consent), for crm_gdpr.consent_proof_keep after the consent ended (5
-- years by default: the limitation period of civil claims in France, art.
-- 2224 of the civil code); never the proof document (IP address, user
-- agent, recordings) nor the id in clear.
CREATE TABLE gdpr.consent_proof_archive (
  id              bigint PRIMARY KEY,        -- the event's id in the ledger
  subject_table   regclass NOT NULL,
  subject_ref     text NOT NULL,             -- gdpr._subject_ref: the erasure ledger's pseudonym
  purpose         text NOT NULL,
  event           text NOT NULL,
  channel         text NOT NULL,
  at              timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL,
  notice_version  int,
  notice_digest   bytea,
  ended_at        timestamptz NOT NULL,      -- when the consent for this purpose ended
  keep_until      timestamptz NOT NULL,
  archived_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON gdpr.consent_proof_archive (subject_table, subject_ref);
CREATE INDEX ON gdpr.consent_proof_archive (keep_until);
COMMENT ON TABLE gdpr.consent_proof_archive IS
  'consent events of subjects who left, reduced to a keyed pseudonym and dates, until keep_until';
SELECT pg_catalog.pg_extension_config_dump('gdpr.consent_proof_archive', '');

CREATE FUNCTION gdpr.set_purpose_options(code text, consent_valid_for interval DEFAULT NULL,
                                         requires_double_opt_in boolean DEFAULT false,
                                         renewal_required boolean DEFAULT false,
                                         electronic_marketing boolean DEFAULT false) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p gdpr.purposes := gdpr._purpose(code);
BEGIN
  IF consent_valid_for <= interval '0' THEN
    RAISE EXCEPTION 'consent_valid_for must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p.legal_basis <> 'consent' AND (consent_valid_for IS NOT NULL OR requires_double_opt_in OR renewal_required) THEN
    RAISE EXCEPTION 'purpose "%" is not based on consent', code
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Consent options apply to purposes whose legal basis is consent.';
  END IF;
  UPDATE gdpr.purposes x
     SET consent_valid_for = set_purpose_options.consent_valid_for,
         requires_double_opt_in = coalesce(set_purpose_options.requires_double_opt_in, false),
         renewal_required = coalesce(set_purpose_options.renewal_required, false),
         electronic_marketing = coalesce(set_purpose_options.electronic_marketing, false),
         updated_at = now()
   WHERE x.code = set_purpose_options.code;
END
$$;

-- The profile comes from columns the CRM has: the segment from a boolean
-- (true is B2B: Odoo's is_company), a reference (set is B2B: Twenty's
-- "companyId", Odoo's parent_id) or a text column holding 'b2b'/'b2c'; the
-- status from a boolean (true is a customer), a text column holding
-- 'customer'/'prospect', or any column mapped by customer_values: a subject
-- whose column holds one of them is a customer (a won stage: Odoo's
-- crm_lead.stage_id), any other a prospect.  With status_table, a table
-- linked to tbl, the column is that table's: a subject is a customer once
-- one of his rows there holds one of the values (Twenty's opportunity.stage
-- = 'CUSTOMER').  Anything else cannot say it (a "jobTitle"): 22023.
CREATE FUNCTION gdpr.set_subject_profile(tbl regclass, segment_column name, status_column name,
                                         customer_values text[] DEFAULT NULL, status_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  vals text[];
BEGIN
  PERFORM gdpr._subject_table(tbl);
  PERFORM gdpr._column(tbl, segment_column) WHERE segment_column IS NOT NULL;
  IF (customer_values IS NOT NULL OR status_table IS NOT NULL) AND status_column IS NULL
     OR status_table IS NOT NULL AND customer_values IS NULL THEN
    RAISE EXCEPTION 'the status cannot be derived: % needs %', CASE WHEN status_column IS NULL THEN 'customer_values' ELSE 'status_table' END,
                    CASE WHEN status_column IS NULL THEN 'status_column' ELSE 'customer_values' END
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Name the column that says it and the values of it that make a customer (e.g. the won stages).';
  END IF;
  PERFORM gdpr._column(coalesce(status_table, tbl), status_column) WHERE status_column IS NOT NULL;
  -- The columns' values are read as the owner: a statement about his table.
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_subject_profile()');
  IF status_table IS NOT NULL THEN
    PERFORM gdpr._status_link(tbl, status_table);
  END IF;
  IF segment_column IS NOT NULL THEN
    PERFORM gdpr._check_profile_column(tbl, segment_column, ARRAY['b2b', 'b2c'], true);
  END IF;
  IF customer_values IS NOT NULL THEN
    -- Values of the column's type (an enum's labels, a stage's ids): 22023 else.
    vals := gdpr._check_scope(coalesce(status_table, tbl), status_column, customer_values, false);
  ELSIF status_column IS NOT NULL THEN
    PERFORM gdpr._check_profile_column(tbl, status_column, ARRAY['customer', 'prospect'], false);
  END IF;
  UPDATE gdpr.subject_tables s SET segment_column = set_subject_profile.segment_column,
                                   status_column = set_subject_profile.status_column,
                                   status_customer_values = vals,
                                   status_table = set_subject_profile.status_table
   WHERE s.tbl = set_subject_profile.tbl;
END
$$;

-- The link by which status_table's rows belong to the subjects of tbl
-- (directly: its column refers to tbl); 22023 when there is none, 42501 when
-- tbl's owner, who reads the profile, may not read status_table.
CREATE FUNCTION gdpr._status_link(tbl regclass, status_table regclass) RETURNS gdpr.subject_links
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
BEGIN
  SELECT * INTO l FROM gdpr.subject_links x
   WHERE x.tbl = _status_link.status_table AND x.parent_table = _status_link.tbl ORDER BY x.id LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the status cannot be derived from %: it is not linked to %', status_table, tbl
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Register it under the subject table first (gdpr.register_table or gdpr.link_table).';
  END IF;
  IF NOT has_table_privilege((SELECT c.relowner FROM pg_class c WHERE c.oid = tbl), status_table, 'SELECT') THEN
    RAISE EXCEPTION 'the owner of % may not read %', tbl, status_table
      USING ERRCODE = 'insufficient_privilege', HINT = 'Grant him SELECT on it: the profile is read as him.';
  END IF;
  RETURN l;
END
$$;

-- 22023 unless col of tbl can say a profile: a boolean, a text column whose
-- values (read as the owner) are all among allowed, or, when a reference
-- may say it (the segment), a foreign key column.
CREATE FUNCTION gdpr._check_profile_column(tbl regclass, col name, allowed text[], reference_ok boolean) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record := gdpr._column(tbl, col);
  n bigint;
BEGIN
  IF c.typ = 'boolean'::regtype THEN
    RETURN;
  END IF;
  IF reference_ok AND EXISTS (SELECT FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
                               WHERE k.conrelid = tbl AND k.contype = 'f' AND a.attname = col) THEN
    RETURN;
  END IF;
  IF c.typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
    n := gdpr._owner_query(tbl, format('SELECT to_jsonb(count(*)) FROM %s t WHERE t.%I IS NOT NULL AND NOT t.%I::text = ANY ($1::text[])',
                                       tbl, col, col), allowed::text)::bigint;
    IF n = 0 THEN
      RETURN;
    END IF;
  END IF;
  RAISE EXCEPTION 'column "%" of % cannot say %', col, tbl, array_to_string(allowed, ' or ')
    USING ERRCODE = 'invalid_parameter_value',
          DETAIL = CASE WHEN n > 0 THEN format('%s rows hold other values.', n)
                        ELSE format('It is of type %s.', c.typ) END,
          HINT = CASE WHEN reference_ok
                      THEN 'Name a boolean (true is B2B), a foreign key (set is B2B) or a text column holding ''b2b''/''b2c''.'
                      ELSE 'Name a boolean (true is a customer), a text column holding ''customer''/''prospect'', '
                           'or pass customer_values: the values that make a customer (the won stages).' END;
END
$$;

-- SQL expressions (text) of the segment and status of row alias of st, from
-- the columns set_subject_profile declared; NULL when not declared.
CREATE FUNCTION gdpr._profile_exprs(st regclass, alias text, OUT segment text, OUT status text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s gdpr.subject_tables;
  l gdpr.subject_links;
BEGIN
  SELECT * INTO s FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF s.segment_column IS NOT NULL THEN
    segment := CASE (gdpr._column(st, s.segment_column)).typ
                 WHEN 'boolean'::regtype THEN format('CASE WHEN %1$s.%2$I THEN ''b2b'' WHEN NOT %1$s.%2$I THEN ''b2c'' END', alias, s.segment_column)
                 WHEN 'text'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 WHEN 'varchar'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 WHEN 'bpchar'::regtype THEN format('%s.%I::text', alias, s.segment_column)
                 ELSE format('CASE WHEN %s.%I IS NOT NULL THEN ''b2b'' ELSE ''b2c'' END', alias, s.segment_column) END;
  END IF;
  IF s.status_table IS NOT NULL THEN
    l := gdpr._status_link(st, s.status_table);
    status := format('CASE WHEN EXISTS (SELECT FROM %s x WHERE %s%s AND x.%I::text = ANY (%L::text[])) THEN ''customer'' ELSE ''prospect'' END',
                     s.status_table, gdpr._link_join(l, alias, 'x'),
                     CASE WHEN l.type_column IS NOT NULL THEN format(' AND x.%I = %L', l.type_column, l.type_value) ELSE '' END,
                     s.status_column, s.status_customer_values);
  ELSIF s.status_customer_values IS NOT NULL THEN
    status := format('CASE WHEN %s.%I::text = ANY (%L::text[]) THEN ''customer'' ELSE ''prospect'' END',
                     alias, s.status_column, s.status_customer_values);
  ELSIF s.status_column IS NOT NULL THEN
    status := CASE WHEN (gdpr._column(st, s.status_column)).typ = 'boolean'::regtype
                   THEN format('CASE WHEN %1$s.%2$I THEN ''customer'' WHEN NOT %1$s.%2$I THEN ''prospect'' END', alias, s.status_column)
                   ELSE format('%s.%I::text', alias, s.status_column) END;
  END IF;
END
$$;

-- Check a proof document; the keys a channel requires when required is true.
CREATE FUNCTION gdpr._check_proof(channel text, proof jsonb, required boolean) RETURNS timestamptz
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  missing text[];
  at timestamptz;
BEGIN
  PERFORM gdpr._one_of(channel, gdpr.consent_channels(), 'channel');
  PERFORM gdpr._not_null(proof, 'proof');
  IF jsonb_typeof(proof) <> 'object' THEN
    RAISE EXCEPTION 'proof must be a JSON object, not %', jsonb_typeof(proof)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF required THEN
    SELECT array_agg(k) INTO missing FROM unnest(gdpr.proof_keys(channel)) k
     WHERE coalesce(btrim(proof ->> k), '') = '';
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'proof of a % event lacks %', channel, array_to_string(missing, ', ')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = format('Channel %s requires: %s.', channel, array_to_string(gdpr.proof_keys(channel), ', '));
    END IF;
  END IF;
  IF proof ? 'ip' THEN
    BEGIN
      PERFORM (proof ->> 'ip')::inet;
    EXCEPTION WHEN invalid_text_representation THEN
      RAISE EXCEPTION 'proof ip "%" is not an IP address', proof ->> 'ip' USING ERRCODE = 'invalid_parameter_value';
    END;
  END IF;
  -- The time of the event, when the proof states it (a form submitted
  -- earlier), else now; never in the future beyond clock skew.
  BEGIN
    at := coalesce((proof ->> 'at')::timestamptz, clock_timestamp());
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
    RAISE EXCEPTION 'proof at "%" is not a timestamp', proof ->> 'at' USING ERRCODE = 'invalid_parameter_value';
  END;
  PERFORM gdpr._not_future(at, 'the time in the proof');
  RETURN at;
END
$$;

-- The notice the person was shown: the version his proof names (a web form
-- must name it), else the purpose's latest.  22023 for a version the
-- purpose never had; 55000 when a grant, confirmation or information has no
-- notice at all.
CREATE FUNCTION gdpr._notice_shown(p gdpr.purposes, proof jsonb, needs_notice boolean) RETURNS gdpr.purpose_notices
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  notice gdpr.purpose_notices;
BEGIN
  IF proof ? 'notice_version' THEN
    IF jsonb_typeof(proof -> 'notice_version') <> 'number' OR (proof ->> 'notice_version') !~ '^[0-9]{1,9}$' THEN
      RAISE EXCEPTION 'proof notice_version "%" is not a version number', proof ->> 'notice_version'
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Pass the version that define_purpose() returned for the notice the form showed, as a JSON number.';
    END IF;
    SELECT * INTO notice FROM gdpr.purpose_notices n
     WHERE n.purpose = p.code AND n.version = (proof ->> 'notice_version')::int;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'purpose "%" has no notice version %', p.code, proof ->> 'notice_version'
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = format('Its versions are 1 to %s.', coalesce(gdpr._current_notice(p.code), 0)),
              HINT = 'The proof must name the notice version the person was shown.';
    END IF;
    RETURN notice;
  END IF;
  SELECT * INTO notice FROM gdpr.purpose_notices n WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1;
  IF needs_notice AND notice.version IS NULL THEN
    RAISE EXCEPTION 'purpose "%" has no information notice', p.code
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'A person must know what he consents to: give the purpose a notice with gdpr.define_purpose().';
  END IF;
  RETURN notice;
END
$$;

-- A pre-ticked box is not consent (CNIL, EDPB 05/2020, CJEU Planet49):
-- a grant or confirmation whose proof says so is refused.
CREATE FUNCTION gdpr._refuse_prechecked(event text, proof jsonb) RETURNS void
  LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF event IN ('grant', 'confirm') AND proof ? 'prechecked' AND proof -> 'prechecked' <> 'false'::jsonb THEN
    RAISE EXCEPTION 'a pre-ticked box is not consent'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('The proof says "prechecked": %s.', proof -> 'prechecked'),
            HINT = 'Consent must be an active choice: show the box unticked and record the grant only when the person ticks it.';
  END IF;
END
$$;

-- Record one event and bring the current state up to it.  The state row is
-- locked by the upsert, so two events for the same subject and purpose are
-- applied in commit order: the state is that of the last one committed.
CREATE FUNCTION gdpr._record_consent(subject_id text, purpose text, event text, channel text, proof jsonb,
                                     subject_table regclass) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._subject_purpose(purpose, st);
  needs_proof boolean := event IN ('grant', 'confirm', 'informed');
  at timestamptz := gdpr._check_proof(channel, proof, needs_proof);
  notice gdpr.purpose_notices;
  eid bigint;
BEGIN
  PERFORM gdpr._refuse_prechecked(event, proof);
  IF event IN ('grant', 'confirm') AND p.legal_basis NOT IN ('consent', 'legitimate_interest') THEN
    RAISE EXCEPTION 'purpose "%" is based on %, not on consent', p.code, p.legal_basis
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Consent is asked for purposes based on consent (or for e-mail prospecting of B2C prospects).';
  END IF;
  IF event = 'object' AND p.legal_basis NOT IN ('legitimate_interest', 'public_task') THEN
    RAISE EXCEPTION 'purpose "%" is based on %: there is no right to object to it', p.code, p.legal_basis
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Art. 21 applies to legitimate interest and public task; for consent, withdraw it (gdpr.withdraw_consent).';
  END IF;
  notice := gdpr._notice_shown(p, proof, needs_proof);
  INSERT INTO gdpr.consent_ledger (subject_table, subject_id, purpose, event, channel, at, proof,
                                   notice_version, notice_digest)
    VALUES (st, subject_id, p.code, event, channel, at, proof, notice.version, notice.digest)
    RETURNING id INTO eid;
  INSERT INTO gdpr.consent_state AS s (subject_table, subject_id, purpose, granted_at, confirmed_at, withdrawn_at,
                                       informed_at, objected_at, notice_version, last_event, last_event_id, last_event_at)
    VALUES (st, subject_id, p.code,
            CASE WHEN event = 'grant' THEN at END, CASE WHEN event = 'confirm' THEN at END,
            CASE WHEN event = 'withdraw' THEN at END, CASE WHEN event IN ('informed', 'grant') THEN at END,
            CASE WHEN event = 'object' THEN at END,
            CASE WHEN event IN ('grant', 'confirm', 'informed') THEN notice.version END, event, eid, at)
    ON CONFLICT ON CONSTRAINT consent_state_pkey DO UPDATE SET
      -- A new grant starts a new consent: its confirmation and withdrawal are those that follow it.
      granted_at = CASE WHEN event = 'grant' THEN at ELSE s.granted_at END,
      confirmed_at = CASE WHEN event = 'confirm' THEN at WHEN event = 'grant' THEN NULL ELSE s.confirmed_at END,
      withdrawn_at = CASE WHEN event = 'withdraw' THEN at WHEN event = 'grant' THEN NULL ELSE s.withdrawn_at END,
      informed_at = CASE WHEN event IN ('informed', 'grant') THEN at ELSE s.informed_at END,
      objected_at = CASE WHEN event = 'object' THEN at WHEN event = 'grant' THEN NULL ELSE s.objected_at END,
      notice_version = CASE WHEN event IN ('grant', 'confirm', 'informed') THEN notice.version ELSE s.notice_version END,
      last_event = event, last_event_id = eid, last_event_at = at;
  PERFORM gdpr._log_event('CONSENT', st, ARRAY[subject_id], 1,
                          jsonb_build_object('purpose', p.code, 'event', event, 'channel', channel, 'ledger_id', eid));
  RETURN eid;
END
$$;

CREATE FUNCTION gdpr.grant_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                   subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'grant', channel, proof, subject_table);

CREATE FUNCTION gdpr.confirm_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
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

-- Withdrawing must be as easy as granting (Art. 7(3)): any proof object is
-- accepted, and a withdrawal without a prior grant is recorded all the same.
CREATE FUNCTION gdpr.withdraw_consent(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                      subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  had_consent boolean := gdpr.has_consent(subject_id, purpose, subject_table);
  eid bigint := gdpr._record_consent(subject_id, purpose, 'withdraw', channel, proof, subject_table);
BEGIN
  IF NOT had_consent THEN
    RAISE NOTICE 'subject "%" had no consent to withdraw for purpose "%"; the withdrawal is recorded', subject_id, purpose;
  END IF;
  RETURN eid;
END
$$;

CREATE FUNCTION gdpr.object(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                            subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'object', channel, proof, subject_table);

CREATE FUNCTION gdpr.record_information(subject_id text, purpose text, channel text, proof jsonb DEFAULT '{}',
                                        subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._record_consent(subject_id, purpose, 'informed', channel, proof, subject_table);

-- A state row's consent in force: granted, confirmed when required, not
-- withdrawn or objected to since, not expired, not stale when renewal is required.
CREATE FUNCTION gdpr._consent_valid(s gdpr.consent_state, p gdpr.purposes, current_notice int) RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN s.granted_at IS NOT NULL AND s.withdrawn_at IS NULL AND s.objected_at IS NULL
     AND (NOT p.requires_double_opt_in OR s.confirmed_at IS NOT NULL)
     AND (p.consent_valid_for IS NULL OR s.granted_at + p.consent_valid_for > now())
     AND (NOT p.renewal_required OR s.notice_version >= current_notice);

CREATE FUNCTION gdpr._current_notice(purpose text) RETURNS int
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT max(n.version) FROM gdpr.purpose_notices n WHERE n.purpose = _current_notice.purpose);

CREATE FUNCTION gdpr.has_consent(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._present_subject(subject_table, subject_id);   -- NULL: erased or deleted
  p gdpr.purposes := gdpr._subject_purpose(purpose, coalesce(st, subject_table));
  s gdpr.consent_state;
BEGIN
  IF st IS NULL THEN
    RETURN false;
  END IF;
  SELECT * INTO s FROM gdpr.consent_state x
   WHERE x.subject_table = st AND x.purpose = p.code AND x.subject_id = has_consent.subject_id;
  RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
END
$$;

-- The subject's segment and status ('b2b'/'b2c', 'customer'/'prospect')
-- from the columns set_subject_profile declared; NULL when not declared.
CREATE FUNCTION gdpr._subject_profile(st regclass, subject_id text, OUT segment text, OUT status text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  s gdpr.subject_tables;
BEGIN
  SELECT * INTO s FROM gdpr.subject_tables x WHERE x.tbl = st;
  IF s.segment_column IS NULL AND s.status_column IS NULL THEN
    RETURN;
  END IF;
  SELECT x ->> 0, x ->> 1 INTO segment, status
    FROM gdpr._owner_query(st, format('SELECT jsonb_build_array(%s, %s) FROM %s t WHERE t.%I = %s',
                                      coalesce((gdpr._profile_exprs(st, 't')).segment, 'NULL'),
                                      coalesce((gdpr._profile_exprs(st, 't')).status, 'NULL'),
                                      st, s.id_column, gdpr._subject_key_literal(st, subject_id))) x;
END
$$;

-- What may be done with his data for a purpose now; see doc/consent.md.
CREATE FUNCTION gdpr.may_process(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._present_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._subject_purpose(purpose, coalesce(st, subject_table));
  s gdpr.consent_state;
  prof record;
BEGIN
  IF st IS NULL THEN
    RETURN false;                -- erased or deleted: nothing may be done with him any more
  END IF;
  -- Restricted (Art. 18): only what a legal obligation requires.
  IF gdpr.is_restricted(subject_id, st) THEN
    RETURN p.legal_basis = 'legal_obligation';
  END IF;
  -- In the CRM's trash (gdpr.set_soft_delete): likewise.
  IF gdpr._subject_trashed(st, subject_id) THEN
    RETURN p.legal_basis = 'legal_obligation';
  END IF;
  SELECT * INTO s FROM gdpr.consent_state x
   WHERE x.subject_table = st AND x.purpose = p.code AND x.subject_id = may_process.subject_id;
  IF p.legal_basis = 'consent' THEN
    RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
  ELSIF p.legal_basis = 'legitimate_interest' THEN
    IF FOUND AND (s.objected_at IS NOT NULL OR s.withdrawn_at IS NOT NULL) THEN
      RETURN false;              -- objection (Art. 21); an unsubscription counts as one
    END IF;
    IF p.electronic_marketing THEN
      prof := gdpr._subject_profile(st, subject_id);
      IF prof.segment = 'b2c' AND prof.status IS DISTINCT FROM 'customer' THEN
        -- A B2C prospect receives e-mail marketing only with his consent.
        RETURN FOUND AND gdpr._consent_valid(s, p, gdpr._current_notice(p.code));
      END IF;
    END IF;
    RETURN FOUND AND s.informed_at IS NOT NULL;
  END IF;
  RETURN true;                   -- contract, legal obligation, vital interest, public task
END
$$;

-- The subject ids that may be processed for a purpose now: what a marketing
-- export must use.  Reads the current-state table through its primary key's
-- leading columns (subject_table, purpose), never the ledger.  Where the
-- answer needs the subject table (the B2C prospect rule, purposes without
-- consent), the caller needs SELECT on it and it is read as its owner, the
-- restricted subjects passed in as a parameter.
CREATE FUNCTION gdpr.contactable(purpose text, subject_table regclass DEFAULT NULL) RETURNS SETOF text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  p gdpr.purposes := gdpr._subject_purpose(purpose, st);
  sub gdpr.subject_tables;
  cur int := gdpr._current_notice(p.code);
  -- Restricted subjects, and those in the CRM's trash (gdpr.set_soft_delete):
  -- never contactable.
  restricted text[] := ARRAY(SELECT r.subject_id FROM gdpr.restrictions r
                              WHERE r.subject_table = st AND r.lifted_at IS NULL) || gdpr._trashed_subjects(st);
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
            WHERE t.%1$I = ANY ($1::%3$s[]) AND NOT ((%4$s) = ''b2c'' AND (%5$s) IS DISTINCT FROM ''customer'')',
          sub.id_column, st, gdpr._subject_key_type(st), (gdpr._profile_exprs(st, 't')).segment,
          coalesce((gdpr._profile_exprs(st, 't')).status, 'NULL')), ids::text)) x;
    END IF;
  ELSE
    PERFORM gdpr._require_privilege(st, 'SELECT', 'gdpr.contactable()');
    -- Never an erased subject whose row is kept anonymised for his invoices
    -- (ids pseudonymised only when some subject of the table was erased;
    -- those whose row is gone have left the consent state with it).
    RETURN QUERY
      SELECT x FROM jsonb_array_elements_text(gdpr._owner_query(st, format(
        'SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t WHERE NOT t.%I::text = ANY ($1::text[])',
        sub.id_column, st, sub.id_column), restricted::text)) x
       WHERE NOT EXISTS (SELECT FROM gdpr.erasures e WHERE e.subject_table = st)
          OR gdpr._subject_ref(st, x) <> ALL (ARRAY(SELECT e.subject_ref FROM gdpr.erasures e WHERE e.subject_table = st));
  END IF;
END
$$;

CREATE FUNCTION gdpr._consent_proof_keep() RETURNS interval
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce(nullif(current_setting('crm_gdpr.consent_proof_keep', true), ''), '5 years')::interval;

-- The consent events and state of subjects who leave: reduced into the
-- archive (when a key makes the pseudonym and consent_proof_keep is
-- positive), then removed from the ledger, which opens for this transaction
-- as it does for an erasure.  Returns the events removed.  Called by
-- erase_subject and by the trigger on deleted subject rows (76_departures.sql).
CREATE FUNCTION gdpr._retire_consent(st regclass, subject_ids text[]) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  keep interval := gdpr._consent_proof_keep();
  n bigint;
BEGIN
  IF keep > interval '0' AND gdpr._has_key() THEN
    INSERT INTO gdpr.consent_proof_archive (id, subject_table, subject_ref, purpose, event, channel, at, recorded_at,
                                            notice_version, notice_digest, ended_at, keep_until)
      SELECT l.id, l.subject_table, gdpr._subject_ref(st, l.subject_id), l.purpose, l.event, l.channel, l.at,
             l.recorded_at, l.notice_version, l.notice_digest, e.ended_at, e.ended_at + keep
        FROM gdpr.consent_ledger l
        LEFT JOIN gdpr.consent_state s
          ON s.subject_table = l.subject_table AND s.subject_id = l.subject_id AND s.purpose = l.purpose
        LEFT JOIN gdpr.purposes p ON p.code = l.purpose
        CROSS JOIN LATERAL (SELECT least(now(), coalesce(s.withdrawn_at, s.objected_at,
                                                         s.granted_at + p.consent_valid_for, now())) AS ended_at) e
       WHERE l.subject_table = st AND l.subject_id = ANY (subject_ids)
      ON CONFLICT ON CONSTRAINT consent_proof_archive_pkey DO NOTHING;
  END IF;
  PERFORM gdpr._allow_ledger_erasure();
  DELETE FROM gdpr.consent_ledger l WHERE l.subject_table = st AND l.subject_id = ANY (subject_ids);
  GET DIAGNOSTICS n = ROW_COUNT;
  DELETE FROM gdpr.consent_state s WHERE s.subject_table = st AND s.subject_id = ANY (subject_ids);
  RETURN n;
END
$$;

-- The archive's rows past keep_until go; the purge calls it at the end of a run.
CREATE FUNCTION gdpr._expire_consent_proofs() RETURNS bigint
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  WITH d AS (DELETE FROM gdpr.consent_proof_archive a WHERE a.keep_until < now() RETURNING 1)
  SELECT count(*) FROM d;
$$;

-- All proof of one subject, ready to hand to an authority.
CREATE FUNCTION gdpr.consent_proof(subject_id text, subject_table regclass DEFAULT NULL) RETURNS jsonb
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  gone text := gdpr._subject_gone(st, subject_id);
BEGIN
  IF gone IS NOT NULL THEN
    -- He left: what the archive keeps of his events (no proof document).
    RETURN jsonb_build_object(
      'subject', jsonb_build_object('table', st::text, 'id', subject_id, 'status', gone),
      'generated_at', now(),
      'events', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'purpose', a.purpose, 'event', a.event, 'channel', a.channel, 'at', a.at,
                   'recorded_at', a.recorded_at, 'notice_version', a.notice_version,
                   'notice_sha256', encode(a.notice_digest, 'hex'), 'keep_until', a.keep_until) ORDER BY a.id), '[]')
                   FROM gdpr.consent_proof_archive a
                  WHERE a.subject_table = st AND a.subject_ref = gdpr._subject_ref(st, subject_id)));
  END IF;
  PERFORM gdpr._require_subject(st, subject_id);
  RETURN jsonb_build_object(
    'subject', jsonb_build_object('table', st::text, 'id', subject_id),
    'generated_at', now(),
    'events', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'id', l.id, 'purpose', l.purpose, 'event', l.event, 'channel', l.channel, 'at', l.at,
                 'recorded_at', l.recorded_at, 'recorded_by', l.recorded_by, 'proof', l.proof,
                 'notice_version', l.notice_version, 'notice_sha256', encode(l.notice_digest, 'hex'),
                 'notice', n.notice) ORDER BY l.id), '[]')
                 FROM gdpr.consent_ledger l
                 LEFT JOIN gdpr.purpose_notices n ON n.purpose = l.purpose AND n.version = l.notice_version
                WHERE l.subject_table = st AND l.subject_id = consent_proof.subject_id));
END
$$;

CREATE VIEW gdpr.consent_log AS
SELECT l.id, l.subject_table, l.subject_id, l.purpose, l.event, l.channel, l.at, l.proof, l.notice_version,
       encode(l.notice_digest, 'hex') AS notice_sha256, l.recorded_by, l.recorded_at
  FROM gdpr.consent_ledger l;
COMMENT ON VIEW gdpr.consent_log IS 'every consent event, with its proof and the notice version shown';

CREATE VIEW gdpr.consent_status AS
SELECT s.subject_table, s.subject_id, s.purpose, p.legal_basis,
       CASE WHEN s.objected_at IS NOT NULL THEN 'objected'
            WHEN s.withdrawn_at IS NOT NULL THEN 'withdrawn'
            WHEN s.granted_at IS NOT NULL AND p.requires_double_opt_in AND s.confirmed_at IS NULL THEN 'unconfirmed'
            WHEN s.granted_at IS NOT NULL AND p.consent_valid_for IS NOT NULL
                 AND s.granted_at + p.consent_valid_for <= now() THEN 'expired'
            WHEN s.granted_at IS NOT NULL THEN 'granted'
            WHEN s.informed_at IS NOT NULL THEN 'informed'
            ELSE s.last_event END AS state,
       s.granted_at, s.confirmed_at, s.withdrawn_at, s.objected_at, s.informed_at,
       s.granted_at + p.consent_valid_for AS expires_at,
       s.notice_version, n.version AS current_notice_version,
       (s.notice_version < n.version) AS stale,
       s.last_event, s.last_event_at
  FROM gdpr.consent_state s
  JOIN gdpr.purposes p ON p.code = s.purpose
  LEFT JOIN LATERAL (SELECT max(x.version) AS version FROM gdpr.purpose_notices x WHERE x.purpose = s.purpose) n ON true;
COMMENT ON VIEW gdpr.consent_status IS
  'current consent state per subject and purpose, with stale (older notice) and expires_at';

-- Subjects left without a legal basis (issue 23.5): every purpose the
-- ledger ties them to is based on consent, and each of those consents ended
-- (withdrawn, objected to, expired).  withdrawn_at: when the last one ended,
-- the date a retention period runs from (gdpr.set_no_basis_retention).  A
-- subject informed of a legitimate-interest purpose who did not object is
-- not listed: he still has a basis.
CREATE VIEW gdpr.no_legal_basis AS
SELECT s.subject_table, s.subject_id,
       array_agg(s.purpose ORDER BY s.purpose) AS purposes,
       max(coalesce(s.withdrawn_at, s.objected_at, s.granted_at + p.consent_valid_for)) AS withdrawn_at
  FROM gdpr.consent_state s
  JOIN gdpr.purposes p ON p.code = s.purpose
 GROUP BY s.subject_table, s.subject_id
HAVING bool_and(p.legal_basis = 'consent'
                AND (s.withdrawn_at IS NOT NULL OR s.objected_at IS NOT NULL
                     OR s.granted_at + p.consent_valid_for <= now()));
COMMENT ON VIEW gdpr.no_legal_basis IS
  'subjects whose every purpose is a consent that ended (withdrawn or expired), and since when';

-- How long the rows of a subject table's subjects are kept once they have
-- no legal basis left; applied by the purge through the table's whole-row
-- delete policy (gdpr._no_basis_due, called by gdpr._due_cond).
CREATE TABLE gdpr.no_basis_retention (
  subject_table  regclass PRIMARY KEY REFERENCES gdpr.subject_tables ON DELETE CASCADE,
  keep           interval NOT NULL CHECK (keep > interval '0'),
  set_at         timestamptz NOT NULL DEFAULT now(),
  set_by         name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.no_basis_retention IS
  'per subject table: rows of subjects without a legal basis are due this long after they lost it';
SELECT pg_catalog.pg_extension_config_dump('gdpr.no_basis_retention', '');

CREATE FUNCTION gdpr.set_no_basis_retention(subject_table regclass, keep interval) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._not_null(subject_table, 'subject_table');
  IF NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = set_no_basis_retention.subject_table) THEN
    RAISE EXCEPTION 'table % is not a registered subject table', subject_table
      USING ERRCODE = 'undefined_object',
            HINT = 'The period applies to the subjects of a table registered with gdpr.register_subject_table().';
  END IF;
  IF keep IS NULL THEN
    DELETE FROM gdpr.no_basis_retention n WHERE n.subject_table = set_no_basis_retention.subject_table;
    RETURN;
  END IF;
  IF keep <= interval '0' THEN
    RAISE EXCEPTION 'retention period must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT EXISTS (SELECT FROM gdpr.retention_policies p
                  WHERE p.tbl = set_no_basis_retention.subject_table AND p.col IS NULL AND p.action = 'delete') THEN
    RAISE EXCEPTION 'table % has no policy deleting its rows', subject_table
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set one first with gdpr.set_retention(tbl, NULL, keep, after_column, ''delete''): the subjects without a legal basis become due through it.';
  END IF;
  INSERT INTO gdpr.no_basis_retention AS n (subject_table, keep) VALUES (subject_table, keep)
    ON CONFLICT ON CONSTRAINT no_basis_retention_pkey DO UPDATE
      SET keep = excluded.keep, set_at = now(), set_by = session_user;
END
$$;

-- The due condition of a policy (built by gdpr._due_cond), widened to the
-- subjects without a legal basis for long enough when the policy deletes
-- the rows of a subject table that has such a period.  Their ids are taken
-- when the statement is built and written into it as a constant array (the
-- statement runs as the table's owner and reads nothing of schema gdpr;
-- PostgreSQL hashes a constant array for = ANY).
CREATE FUNCTION gdpr._no_basis_due(pol gdpr.retention_policies, due text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n gdpr.no_basis_retention;
  ids text[];
BEGIN
  SELECT * INTO n FROM gdpr.no_basis_retention x WHERE x.subject_table = pol.tbl;
  IF NOT FOUND OR pol.col IS NOT NULL OR pol.action <> 'delete' THEN
    RETURN due;
  END IF;
  ids := ARRAY(SELECT b.subject_id FROM gdpr.no_legal_basis b
                WHERE b.subject_table = pol.tbl AND b.withdrawn_at < now() - n.keep);
  IF cardinality(ids) = 0 THEN
    RETURN due;
  END IF;
  RETURN format('(%s OR %s = ANY (%L::text[]))', due, gdpr._subject_id_expr(pol.tbl, 't'), ids);
END
$$;

GRANT EXECUTE ON FUNCTION
  gdpr.grant_consent(text, text, text, jsonb, regclass), gdpr.confirm_consent(text, text, text, jsonb, regclass),
  gdpr.withdraw_consent(text, text, text, jsonb, regclass), gdpr.object(text, text, text, jsonb, regclass),
  gdpr.record_information(text, text, text, jsonb, regclass), gdpr.has_consent(text, text, regclass),
  gdpr.may_process(text, text, regclass), gdpr.contactable(text, regclass),
  gdpr.consent_events(), gdpr.consent_channels(), gdpr.proof_keys(text)
  TO gdpr_app, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.consent_proof(text, regclass), gdpr.set_purpose_options(text, interval, boolean, boolean, boolean),
  gdpr.set_subject_profile(regclass, name, name, text[], regclass)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.set_no_basis_retention(regclass, interval) TO gdpr_admin;
GRANT SELECT ON gdpr.consent_log, gdpr.consent_status, gdpr.no_legal_basis, gdpr.no_basis_retention,
  gdpr.consent_proof_archive TO gdpr_auditor, gdpr_admin;
