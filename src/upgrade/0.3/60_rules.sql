-- Issue 23 (the rules kept for real), items 8, 6, 7, 5, 3, 2: subjects who
-- left (src/sql/76_departures.sql), the suppression list where data enters
-- (77_suppression.sql), consent proofs that follow the person, pre-ticked
-- boxes and the notice shown, subjects without a legal basis (50_consent.sql),
-- the justification per column (10_registry.sql, 30_registry_views.sql).
-- Objects as a fresh install makes them; privileges at the end (and
-- 99_privileges.sql takes EXECUTE from PUBLIC).

------------------------------------------------------------------ tables
ALTER TABLE gdpr.suppressions
  ADD COLUMN reason text NOT NULL DEFAULT 'erasure' CHECK (reason IN ('erasure', 'objection')),
  ADD COLUMN objected_at timestamptz;
COMMENT ON COLUMN gdpr.suppressions.reason IS
  'erasure: the person was erased; objection: he objected (or unsubscribed) and his row was deleted';
CREATE INDEX consent_state_subject ON gdpr.consent_state (subject_table, subject_id);
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
CREATE TABLE gdpr.no_basis_retention (
  subject_table  regclass PRIMARY KEY REFERENCES gdpr.subject_tables ON DELETE CASCADE,
  keep           interval NOT NULL CHECK (keep > interval '0'),
  set_at         timestamptz NOT NULL DEFAULT now(),
  set_by         name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.no_basis_retention IS
  'per subject table: rows of subjects without a legal basis are due this long after they lost it';
SELECT pg_catalog.pg_extension_config_dump('gdpr.no_basis_retention', '');
CREATE TABLE gdpr.departed_subjects (
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,            -- gdpr._subject_ref: the erasure ledger's pseudonym
  departed_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_table, subject_ref)
);
COMMENT ON TABLE gdpr.departed_subjects IS
  'subjects whose row was deleted, by keyed pseudonym only: they existed, they are gone';
SELECT pg_catalog.pg_extension_config_dump('gdpr.departed_subjects', '');
CREATE TABLE gdpr.suppression_flags (
  id             bigserial PRIMARY KEY,
  flagged_at     timestamptz NOT NULL DEFAULT now(),
  subject_table  regclass NOT NULL,
  subject_id     text,
  col            name NOT NULL,
  ref            text NOT NULL,              -- the suppression list's entry (a keyed pseudonym)
  flagged_by     name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE gdpr.suppression_flags IS
  'rows written with a suppressed contact point under crm_gdpr.suppression_mode = flag';
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppression_flags', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.suppression_flags_id_seq', '');

------------------------------------------------------------------ functions
CREATE OR REPLACE FUNCTION gdpr._has_key() RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce(current_setting('crm_gdpr.key_file', true), '') <> '';

CREATE OR REPLACE FUNCTION gdpr._subject_gone(st regclass, subject_id text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ref text;
BEGIN
  IF NOT gdpr._has_key() THEN
    RETURN NULL;
  END IF;
  ref := gdpr._subject_ref(st, subject_id);
  IF EXISTS (SELECT FROM gdpr.erasures e WHERE e.subject_table = st AND e.subject_ref = ref) THEN
    RETURN 'erased';
  ELSIF EXISTS (SELECT FROM gdpr.departed_subjects d WHERE d.subject_table = st AND d.subject_ref = ref) THEN
    RETURN 'deleted';
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._present_subject(subject_table regclass, subject_id text) RETURNS regclass
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  gone text := gdpr._subject_gone(st, subject_id);
BEGIN
  IF gone IS NOT NULL THEN
    RETURN NULL;
  ELSIF NOT gdpr._subject_exists(st, subject_id) THEN
    RAISE EXCEPTION 'subject "%" does not exist in %, and no erasure or deletion of him is recorded', subject_id, st
      USING ERRCODE = 'no_data_found',
            HINT = 'Check the id: an erased or deleted subject is answered with false, not with this error.';
  END IF;
  RETURN st;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._contact_kind(value text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN value LIKE '%@%' THEN 'email'
              WHEN length(regexp_replace(value, '[^0-9]', '', 'g')) >= 6 THEN 'phone' END;

CREATE OR REPLACE FUNCTION gdpr._contact_kind(tbl regclass, col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce((SELECT v.kind FROM gdpr.validations v WHERE v.tbl = _contact_kind.tbl AND v.col = _contact_kind.col),
                  CASE WHEN col ~* '(^|_)e?-?mail' THEN 'email'
                       WHEN col ~* 'phone|mobile|(^|_)tel($|_)|fax' THEN 'phone'
                       WHEN col ~* 'post(al)?_?code|(^|_)zip' THEN 'postcode' END);

CREATE OR REPLACE FUNCTION gdpr._contact_ref(value text) RETURNS text
  LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
  RETURN gdpr._pseudonym(gdpr._normalise_contact(value), 'suppression');

CREATE OR REPLACE FUNCTION gdpr._contact_columns(st regclass) RETURNS name[]
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN ARRAY(SELECT DISTINCT pc.col FROM gdpr.personal_columns pc
                WHERE pc.tbl = st AND pc.category = 'contact' ORDER BY pc.col);

CREATE OR REPLACE FUNCTION gdpr._suppression_mode() RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  mode text := coalesce(nullif(current_setting('crm_gdpr.suppression_mode', true), ''), 'refuse');
BEGIN
  RETURN gdpr._one_of(mode, ARRAY['refuse', 'flag', 'off'], 'crm_gdpr.suppression_mode');
END
$$;

CREATE OR REPLACE FUNCTION gdpr._suppression_reason(s gdpr.suppressions) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN s.reason = 'objection'
              THEN format('The person objected on %s and his data was deleted on %s: do not import him again.',
                          s.objected_at::date, s.created_at::date)
              ELSE (SELECT format('The person was erased on %s under request %s: do not import him again.',
                                  coalesce(e.erased_at, s.created_at)::date, coalesce(e.request_id::text, '(none recorded)'))
                      FROM (SELECT) one LEFT JOIN gdpr.erasures e ON e.id = s.erasure_id) END;

CREATE OR REPLACE FUNCTION gdpr._enforce_suppression() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  new_row jsonb := to_jsonb(NEW);
  old_row jsonb := CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END;
  cols name[] := TG_ARGV::name[];
  brought text[] := '{}';       -- contact columns whose new value is an e-mail address or a phone
  mode text;
  c name;
  v text;
  s gdpr.suppressions;
BEGIN
  IF cols IS NULL OR EXISTS (SELECT FROM unnest(cols) x WHERE NOT new_row ? x) THEN
    cols := gdpr._contact_columns(TG_RELID);
  END IF;
  FOREACH c IN ARRAY cols LOOP
    v := new_row ->> c;
    IF v IS DISTINCT FROM old_row ->> c AND (v LIKE '%@%' OR length(regexp_replace(v, '[^0-9]', '', 'g')) >= 6) THEN
      brought := brought || c::text;
    END IF;
  END LOOP;
  IF cardinality(brought) = 0 THEN
    RETURN NEW;
  END IF;
  mode := gdpr._suppression_mode();
  IF mode = 'off' OR NOT EXISTS (SELECT FROM gdpr.suppressions) OR NOT gdpr._has_key() THEN
    RETURN NEW;
  END IF;
  FOREACH c IN ARRAY brought LOOP
    v := new_row ->> c;
    SELECT * INTO s FROM gdpr.suppressions x WHERE x.ref = gdpr._contact_ref(v);
    CONTINUE WHEN NOT FOUND;
    IF mode = 'refuse' THEN
      RAISE EXCEPTION '%.% is on the suppression list', gdpr.qualified_name(TG_RELID), c
        USING ERRCODE = 'check_violation',
              DETAIL = format('This %s belongs to a person who must not be contacted or recorded again (%s).',
                              CASE s.kind WHEN 'email' THEN 'e-mail address' ELSE 'phone number' END, s.reason),
              HINT = gdpr._suppression_reason(s);
    END IF;
    INSERT INTO gdpr.suppression_flags (subject_table, subject_id, col, ref)
      VALUES (TG_RELID, new_row ->> (SELECT st.id_column FROM gdpr.subject_tables st WHERE st.tbl = TG_RELID), c, s.ref);
    RAISE WARNING '%.% is on the suppression list: the row is flagged', gdpr.qualified_name(TG_RELID), c
      USING HINT = gdpr._suppression_reason(s);
  END LOOP;
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._suppress_objectors_sql(st regclass, id_col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format(
      'INSERT INTO gdpr.suppressions (ref, kind, reason, objected_at)
         SELECT gdpr._contact_ref(v.x), gdpr._contact_kind(v.x), %1$L, max(o.at)
           FROM gdpr_gone g
           CROSS JOIN LATERAL (VALUES %2$s) v (x)
           JOIN LATERAL (SELECT coalesce(s.objected_at, s.withdrawn_at) AS at
                           FROM gdpr.consent_state s JOIN gdpr.purposes p ON p.code = s.purpose
                          WHERE s.subject_table = %3$L::regclass AND s.subject_id = g.%4$I::text
                            AND (s.objected_at IS NOT NULL
                                 OR p.legal_basis = %5$L AND s.withdrawn_at IS NOT NULL)) o ON true
          WHERE gdpr._contact_kind(v.x) IS NOT NULL
          GROUP BY 1, 2
       ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING',
      'objection', string_agg(format('(g.%I::text)', c), ', '), st, id_col, 'legitimate_interest')
            FROM unnest(gdpr._contact_columns(st)) c
          HAVING count(*) > 0);

CREATE OR REPLACE FUNCTION gdpr._phone_variants(norm text, raw text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
  RETURN ARRAY(SELECT DISTINCT v FROM unnest(ARRAY[
    raw, norm, '+' || norm,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN '0' || substr(norm, 3) END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN '+33 ' || regexp_replace(substr(norm, 3), '^(.)(..)(..)(..)(..)$', '\1 \2 \3 \4 \5') END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN regexp_replace('0' || substr(norm, 3), '^(..)(..)(..)(..)(..)$', '\1 \2 \3 \4 \5') END,
    CASE WHEN norm ~ '^33[0-9]{9}$' THEN regexp_replace('0' || substr(norm, 3), '^(..)(..)(..)(..)(..)$', '\1.\2.\3.\4.\5') END]) v
    WHERE v IS NOT NULL);

CREATE OR REPLACE FUNCTION gdpr._duplicate_search(st regclass, col name, v text, OUT pred text, OUT param text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  small boolean := pg_relation_size(st) < 16 * 1024 * 1024;
  attnum smallint := (gdpr._column(st, col)).attnum;
BEGIN
  IF gdpr._contact_kind(v) = 'email' THEN
    IF small OR EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st
                          AND pg_get_expr(i.indexprs, i.indrelid) ~ format('^lower\(\(?%s\M', quote_ident(col))) THEN
      pred := format('lower(t.%I::text) = $2', col);
      param := gdpr._normalise_contact(v);
    END IF;
  ELSIF gdpr._contact_kind(v) = 'phone' THEN
    IF small THEN
      pred := format('regexp_replace(regexp_replace(t.%I::text, ''[^0-9]'', '''', ''g''), ''^0'', ''33'') = $2', col);
      param := gdpr._normalise_contact(v);
    ELSIF EXISTS (SELECT FROM pg_index i WHERE i.indrelid = st AND i.indkey[0] = attnum) THEN
      pred := format('t.%I::text = ANY ($2::text[])', col);
      param := gdpr._phone_variants(gdpr._normalise_contact(v), v)::text;
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.find_duplicates(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS TABLE (duplicate_id text, matched text[])
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(find_duplicates.subject_table, find_duplicates.subject_id);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  cols name[] := gdpr._contact_columns(st);
  mine jsonb;
  found jsonb := '[]';            -- [id, column] pairs
  c name;
  q record;
BEGIN
  IF cardinality(cols) = 0 THEN
    RETURN;
  END IF;
  PERFORM gdpr._require_privilege(st, 'SELECT', 'gdpr.find_duplicates()');
  mine := gdpr._owner_query(st, format('SELECT jsonb_build_object(%s) FROM %s WHERE %I = $1::%s',
                                       (SELECT string_agg(format('%L, %I::text', x, x), ', ') FROM unnest(cols) x),
                                       st, id_col, gdpr._subject_key_type(st)), find_duplicates.subject_id);
  FOREACH c IN ARRAY cols LOOP
    CONTINUE WHEN gdpr._contact_kind(mine ->> c) IS NULL;
    q := gdpr._duplicate_search(st, c, mine ->> c);
    IF q.pred IS NULL THEN
      RAISE NOTICE 'duplicates: column "%" of % is not searched (a big table without an index on it)', c, st
        USING HINT = format('CREATE INDEX ON %s (%s) lets it be searched.', st,
                            CASE gdpr._contact_kind(mine ->> c) WHEN 'email' THEN format('lower(%I)', c) ELSE quote_ident(c) END);
      CONTINUE;
    END IF;
    found := found || gdpr._owner_query(st, format(
               'SELECT coalesce(jsonb_agg(jsonb_build_array(t.%1$I::text, %2$L)), ''[]'') FROM %3$s t
                 WHERE t.%1$I <> $1::%4$s AND %5$s',
               id_col, c, st, gdpr._subject_key_type(st), q.pred), find_duplicates.subject_id, q.param);
  END LOOP;
  RETURN QUERY SELECT d ->> 0, array_agg(DISTINCT d ->> 1 ORDER BY d ->> 1)
                 FROM jsonb_array_elements(found) d GROUP BY d ->> 0 ORDER BY d ->> 0;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._erase_duplicates(st regclass, dups jsonb, include_duplicates boolean) RETURNS jsonb
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  d jsonb;
  rep jsonb;
  out jsonb := '[]';
BEGIN
  FOR d IN SELECT * FROM jsonb_array_elements(coalesce(dups, '[]')) LOOP
    rep := NULL;
    IF include_duplicates THEN
      BEGIN
        rep := gdpr.erase_subject(d ->> 'subject_id', NULL, st);
      EXCEPTION WHEN OTHERS THEN
        rep := jsonb_build_object('status', 'not erased', 'error', SQLSTATE || ': ' || SQLERRM);
      END;
    ELSE
      RAISE NOTICE 'subject "%" shares his % and is not erased', d ->> 'subject_id', d ->> 'matched'
        USING HINT = 'Erase the duplicates with gdpr.erase_subject(..., include_duplicates => true) when the request covers them.';
    END IF;
    out := out || jsonb_build_object('subject_ref', gdpr._subject_ref(st, d ->> 'subject_id'), 'matched', d -> 'matched',
                                     'status', coalesce(rep ->> 'status', 'found'), 'erasure_id', rep -> 'erasure_id',
                                     'error', rep -> 'error');
  END LOOP;
  RETURN jsonb_build_object('duplicates', out);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._duplicates_json(st regclass, subject_id text) RETURNS jsonb
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('subject_id', d.duplicate_id, 'matched', to_jsonb(d.matched))), '[]')
            FROM gdpr.find_duplicates(subject_id, st) d);

CREATE OR REPLACE FUNCTION gdpr._consent_proof_keep() RETURNS interval
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce(nullif(current_setting('crm_gdpr.consent_proof_keep', true), ''), '5 years')::interval;

CREATE OR REPLACE FUNCTION gdpr._retire_consent(st regclass, subject_ids text[]) RETURNS bigint
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

CREATE OR REPLACE FUNCTION gdpr._expire_consent_proofs() RETURNS bigint
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  WITH d AS (DELETE FROM gdpr.consent_proof_archive a WHERE a.keep_until < now() RETURNING 1)
  SELECT count(*) FROM d;
$$;

CREATE OR REPLACE FUNCTION gdpr._subjects_departed() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := TG_RELID::regclass;
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = TG_RELID);
  objectors text;
  ids text[];
BEGIN
  IF id_col IS NULL THEN
    RETURN NULL;
  END IF;
  IF gdpr._has_key() THEN
    EXECUTE format('INSERT INTO gdpr.departed_subjects (subject_table, subject_ref)
                      SELECT %L, gdpr._subject_ref(%L, g.%I::text) FROM gdpr_gone g
                    ON CONFLICT ON CONSTRAINT departed_subjects_pkey DO NOTHING', st, st, id_col);
    objectors := gdpr._suppress_objectors_sql(st, id_col);
    IF objectors IS NOT NULL AND EXISTS (SELECT FROM gdpr.consent_state s WHERE s.subject_table = st) THEN
      EXECUTE objectors;
    END IF;
  END IF;
  IF EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = st) THEN
    EXECUTE format('SELECT array_agg(g.%1$I::text) FROM gdpr_gone g
                     WHERE EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = %2$L::regclass
                                      AND l.subject_id = g.%1$I::text)', id_col, st)
      INTO ids;
    IF ids IS NOT NULL THEN
      PERFORM gdpr._retire_consent(st, ids);
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._attach_subject_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  was_open boolean := gdpr._own_ddl_active();   -- inside _attach_triggers, or on its own (classify)
BEGIN
  IF EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = _attach_subject_triggers.tbl) THEN
    PERFORM gdpr._own_ddl(true);
    EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_subject_departed AFTER DELETE ON %s
                      REFERENCING OLD TABLE AS gdpr_gone
                      FOR EACH STATEMENT EXECUTE FUNCTION gdpr._subjects_departed()', tbl);
    -- The suppression list, where data enters (77_suppression.sql).
    EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_suppression BEFORE INSERT OR UPDATE ON %s
                      FOR EACH ROW EXECUTE FUNCTION gdpr._enforce_suppression(%s)', tbl,
                   (SELECT string_agg(quote_literal(x), ', ') FROM unnest(gdpr._contact_columns(tbl)) x));
    IF NOT was_open THEN
      PERFORM gdpr._own_ddl(false);
    END IF;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_subject_departed', 'gdpr_suppression']::name[];

CREATE OR REPLACE FUNCTION gdpr._guard_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  before oid[] := gdpr._ddl_start_state()::oid[];
  broken text;
  c record;
BEGIN
  PERFORM gdpr._set_ddl_start_state(NULL);
  IF before IS NOT NULL AND NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(t::regclass::text, ', ' ORDER BY t::regclass::text) INTO broken
      FROM unnest(before) t
     WHERE NOT t = ANY (gdpr._whole_tables())
       AND EXISTS (SELECT FROM pg_class x WHERE x.oid = t)
       AND t IN (SELECT gdpr._registered_relations());
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'the access log''s triggers on registered tables cannot be dropped, renamed or disabled'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('This statement would leave a trigger of %s missing or disabled.', broken),
              HINT = 'Unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
    END IF;
  END IF;
  -- Code that will run on the rows: an index on an expression or with a
  -- predicate, a trigger (not the extension's), a rule, a policy.  Only on a
  -- table whose triggers are all in place: a restore, which creates indexes
  -- and rules before the triggers, is not recorded as DDL.
  FOR c IN SELECT x.command_tag, coalesce(i.indrelid, g.tgrelid, p.polrelid, w.ev_class)::regclass AS tbl
             FROM pg_event_trigger_ddl_commands() x
             LEFT JOIN pg_index i ON x.classid = 'pg_class'::regclass AND i.indexrelid = x.objid
             LEFT JOIN pg_trigger g ON x.classid = 'pg_trigger'::regclass AND g.oid = x.objid
             LEFT JOIN pg_policy p ON x.classid = 'pg_policy'::regclass AND p.oid = x.objid
             LEFT JOIN pg_rewrite w ON x.classid = 'pg_rewrite'::regclass AND w.oid = x.objid
            WHERE (x.command_tag = 'CREATE INDEX' AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
               OR (x.command_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER') AND NOT g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()))
               OR x.command_tag IN ('CREATE RULE', 'CREATE POLICY', 'ALTER POLICY') LOOP
    CONTINUE WHEN gdpr._own_ddl_active() OR NOT c.tbl = ANY (gdpr._whole_tables());
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.tbl);
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text, format('%s by %s', c.command_tag, gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', c.command_tag));
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  col text;
BEGIN
  PERFORM gdpr._own_ddl(true);
  -- Restriction of processing (Art. 18): see 70_rights.sql.
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_delete AFTER DELETE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  -- The access log (80_access_log.sql, log_write.c): one row per statement.
  -- The argument is the subject key column, found here once rather than per
  -- statement ('' when the subject is reached through other tables).
  col := gdpr._log_subject_column(tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS gdpr_old NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS gdpr_old
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  -- Subjects who leave (76_departures.sql) and contact points that come back (77_suppression.sql).
  PERFORM gdpr._attach_subject_triggers(tbl);
  PERFORM gdpr._own_ddl(false);
  -- The month partitions exist before anything is logged.
  IF to_regclass(format('gdpr.%I', gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC')))) IS NULL THEN
    PERFORM gdpr._log_maintain();
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND NOT g.tgisinternal AND g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

CREATE OR REPLACE FUNCTION gdpr.classify(tbl regclass, col name, category text, purpose text,
                              legal_basis text, justification text DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  was_contact boolean := EXISTS (SELECT FROM gdpr.personal_columns x WHERE x.tbl = classify.tbl
                                    AND x.col = classify.col AND x.category = 'contact');
BEGIN
  justification := nullif(btrim(justification), '');
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.classify()');
  PERFORM gdpr._column(tbl, col);
  PERFORM gdpr._one_of(category, gdpr.data_categories(), 'category');
  PERFORM gdpr._one_of(legal_basis, gdpr.legal_bases(), 'legal basis');
  purpose := (gdpr._subject_purpose(purpose, tbl)).code;   -- the tenant's purpose of that name, else the global one
  IF category = 'sensitive' AND coalesce(btrim(justification), '') = '' THEN
    RAISE EXCEPTION 'a sensitive column needs a justification'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Special categories of data (Art. 9) may only be processed under one of its exceptions.',
            HINT = 'Say which Art. 9(2) condition applies in the justification argument.';
  ELSIF justification IS NULL THEN
    RAISE NOTICE 'column "%" of % is classified without a justification: the register shows it as not justified', col, tbl
      USING HINT = format('Say why purpose %s needs this column (data minimisation, Art. 5(1)(c)) in the justification argument.', purpose);
  END IF;
  -- One column has one category, whatever the purposes it serves.
  UPDATE gdpr.personal_columns c SET category = classify.category
   WHERE c.tbl = classify.tbl AND c.col = classify.col AND c.category <> classify.category;
  INSERT INTO gdpr.personal_columns AS c (tbl, col, purpose, category, legal_basis, justification)
    VALUES (tbl, col, purpose, category, legal_basis, justification)
    ON CONFLICT ON CONSTRAINT personal_columns_pkey DO UPDATE
      SET category = excluded.category, legal_basis = excluded.legal_basis,
          justification = excluded.justification, classified_at = now(), classified_by = session_user;
  -- Issue 23.3: the suppression trigger of a subject table names its contact columns (76_departures.sql).
  IF category = 'contact' OR was_contact THEN
    PERFORM gdpr._attach_subject_triggers(tbl);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.proof_keys(channel text) RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE channel
    WHEN 'web' THEN ARRAY['ip', 'user_agent', 'form', 'notice_version']
    WHEN 'email' THEN ARRAY['message_id']
    WHEN 'phone' THEN ARRAY['agent', 'recording']
    WHEN 'paper' THEN ARRAY['document']
    WHEN 'import' THEN ARRAY['source', 'partner']
    WHEN 'api' THEN ARRAY['client'] END;

CREATE OR REPLACE FUNCTION gdpr._notice_shown(p gdpr.purposes, proof jsonb, needs_notice boolean) RETURNS gdpr.purpose_notices
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

CREATE OR REPLACE FUNCTION gdpr._refuse_prechecked(event text, proof jsonb) RETURNS void
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

CREATE OR REPLACE FUNCTION gdpr._record_consent(subject_id text, purpose text, event text, channel text, proof jsonb,
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

CREATE OR REPLACE FUNCTION gdpr.has_consent(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
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

CREATE OR REPLACE FUNCTION gdpr.may_process(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._present_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._purpose(purpose);
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

CREATE OR REPLACE FUNCTION gdpr.contactable(purpose text, subject_table regclass DEFAULT NULL) RETURNS SETOF text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  p gdpr.purposes := gdpr._purpose(purpose);
  sub gdpr.subject_tables;
  cur int := gdpr._current_notice(p.code);
  restricted text[] := ARRAY(SELECT r.subject_id FROM gdpr.restrictions r
                              WHERE r.subject_table = st AND r.lifted_at IS NULL);
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
            WHERE t.%1$I = ANY ($1::%3$s[]) AND NOT (t.%4$I::text = ''b2c'' AND %5$s IS DISTINCT FROM ''customer'')',
          sub.id_column, st, gdpr._subject_key_type(st), sub.segment_column,
          coalesce('t.' || quote_ident(sub.status_column) || '::text', 'NULL')), ids::text)) x;
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

CREATE OR REPLACE FUNCTION gdpr.consent_proof(subject_id text, subject_table regclass DEFAULT NULL) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION gdpr.set_no_basis_retention(subject_table regclass, keep interval) RETURNS void
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

CREATE OR REPLACE FUNCTION gdpr._no_basis_due(pol gdpr.retention_policies, due text) RETURNS text
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

CREATE OR REPLACE FUNCTION gdpr._due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  -- Issue 23.5: subjects without a legal basis are due too (50_consent.sql).
  RETURN concat_ws(' AND ', gdpr._no_basis_due(pol, gdpr._past_due_cond(pol)), gdpr._unreferenced_cond(pol));

CREATE OR REPLACE FUNCTION gdpr._purge_finish(run_id bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  UPDATE gdpr.purge_runs x SET finished_at = clock_timestamp(),
         status = CASE WHEN EXISTS (SELECT FROM gdpr.purge_results r WHERE r.run_id = x.id AND r.error IS NOT NULL)
                       THEN 'failed' ELSE 'done' END
   WHERE x.id = _purge_finish.run_id;
  -- The history has a retention of its own.
  DELETE FROM gdpr.purge_runs x
   WHERE x.started_at < now() - gdpr.setting('purge_history_keep')::interval;
  -- Issue 23.2: reduced consent proofs past their time (50_consent.sql).
  SELECT gdpr._expire_consent_proofs();
$$;

CREATE OR REPLACE FUNCTION gdpr._retire_consent_of_rows(tbl regclass, cond text, excluded text[]) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = _retire_consent_of_rows.tbl);
  ids text[];
BEGIN
  IF id_col IS NULL OR NOT EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = tbl) THEN
    RETURN;
  END IF;
  ids := ARRAY(SELECT jsonb_array_elements_text(gdpr._owner_query(tbl,
           format('SELECT coalesce(jsonb_agg(t.%I::text), ''[]'') FROM %s t WHERE %s', id_col, tbl, cond),
           VARIADIC excluded)));
  IF cardinality(ids) > 0 THEN
    PERFORM gdpr._retire_consent(tbl, ids);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_anonymise(run_id bigint, pol gdpr.retention_policies) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  unreferenced text := gdpr._unreferenced_cond(pol);
  identified text := gdpr._identified_cond(pol.tbl);
  cond text;
  excluded text[];
  n bigint;
BEGIN
  IF unreferenced IS NULL OR identified IS NULL THEN
    RETURN 0;
  END IF;
  cond := format('%s AND NOT %s AND NOT (%s) AND %s', gdpr._past_due_cond(pol), gdpr._excluded_cond(pol.tbl, 1),
                 unreferenced, identified);
  excluded := ARRAY[gdpr._purge_excluded(pol.tbl)];
  n := gdpr._owner_query(pol.tbl, format('SELECT to_jsonb(count(*)) FROM %s t WHERE %s', pol.tbl, cond),
                         VARIADIC excluded)::bigint;
  IF n = 0 THEN
    RETURN 0;
  END IF;
  -- Issue 23.2: their consent proofs go as they lose their identity (76_departures.sql).
  PERFORM gdpr._retire_consent_of_rows(pol.tbl, cond, excluded);
  PERFORM gdpr._anonymise_rows(pol.tbl, cond, excluded);
  UPDATE gdpr.purge_results r SET anonymised = r.anonymised + n
   WHERE r.run_id = _purge_anonymise.run_id AND r.policy_id = pol.id;
  PERFORM gdpr._log_event('PURGE', pol.tbl, NULL, n,
                          jsonb_build_object('run_id', run_id, 'policy_id', pol.id, 'action', 'anonymise',
                                             'kept_because', 'referred to by kept rows'));
  RETURN n;
END
$$;

-- A new defaulted parameter: the calls of 0.2 (one to three arguments) work unchanged.
DROP FUNCTION gdpr.erase_subject(text, bigint, regclass);
CREATE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
                                   subject_table regclass DEFAULT NULL,
                                   include_duplicates boolean DEFAULT false) RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  key text := gdpr._subject_key_literal(st, subject_id);
  ref text := gdpr._subject_ref(st, subject_id);
  done gdpr.erasures;
  t record;
  tables jsonb := '[]';
  rep jsonb;
  n_consent bigint;
  shredded bigint;
  eid bigint;
  dups jsonb;                   -- issue 23.3: his duplicates (77_suppression.sql)
BEGIN
  -- Lock his row: a concurrent insert of a child row waits for the erasure
  -- and then fails its foreign key check, so it cannot escape.
  -- Erased already (his row gone, or kept anonymised for invoices): say so.
  SELECT * INTO done FROM gdpr.erasures e WHERE e.subject_table = st AND e.subject_ref = ref;
  IF FOUND THEN
    RETURN jsonb_build_object('status', 'already erased', 'erasure_id', done.id, 'erased_at', done.erased_at);
  END IF;
  IF NOT gdpr._subject_exists(st, subject_id) THEN
    RAISE EXCEPTION 'subject "%" does not exist in %', subject_id, st USING ERRCODE = 'no_data_found';
  END IF;
  PERFORM gdpr._require_erasure_privileges(st);
  PERFORM gdpr._owner_exec(st, format('SELECT 1 FROM %s WHERE %s FOR UPDATE', st, gdpr._subject_rows_cond(st, key)));
  IF (gdpr._active_hold(st, subject_id)).id IS NOT NULL THEN
    RAISE EXCEPTION 'subject "%" is under a legal hold', subject_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Hold %s: %s', (gdpr._active_hold(st, subject_id)).id, (gdpr._active_hold(st, subject_id)).reason),
            HINT = 'Release the hold (gdpr.release_hold) when the obligation it serves has ended.';
  END IF;
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is restricted', subject_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = (SELECT format('Restricted since %s: %s', r.restricted_at, r.reason) FROM gdpr.restrictions r
                       WHERE r.subject_table = st AND r.subject_id = erase_subject.subject_id AND r.lifted_at IS NULL),
            HINT = 'Lift the restriction with gdpr.lift_restriction() once its reason is settled.';
  END IF;
  PERFORM gdpr._answer_request(request_id, st, subject_id, ARRAY['erasure']);
  dups := gdpr._duplicates_json(st, subject_id);    -- found while his contact points are there

  INSERT INTO gdpr.erasures (subject_table, subject_ref, request_id, report, report_sha256)
    VALUES (st, ref, request_id, '{}', '\x') RETURNING id INTO eid;
  PERFORM gdpr._suppress_contacts(st, key, eid);
  -- His consent events go (the ledger opens for this transaction only); the
  -- suppression list now says what they said: never contact him again.
  -- Issue 23.2: reduced to a pseudonym and dates for consent_proof_keep (50_consent.sql).
  n_consent := gdpr._retire_consent(st, ARRAY[subject_id]);
  -- His own data key goes: what was encrypted for him is unreadable everywhere.
  DELETE FROM gdpr.subject_keys k WHERE k.subject_table = st AND k.subject_ref = gdpr._subject_key_ref(st, subject_id)
    RETURNING k.id INTO shredded;
  IF shredded IS NOT NULL THEN
    INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref)
      VALUES (shredded, st, gdpr._subject_key_ref(st, subject_id));
  END IF;
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree ORDER BY tree.depth DESC, tree.tbl::text LOOP
    tables := tables || gdpr._erase_table(t.tbl, key);
  END LOOP;

  rep := jsonb_build_object('status', 'erased', 'erasure_id', eid, 'subject_table', gdpr.qualified_name(st),
                               'request_id', request_id, 'erased_at', now(), 'tables', tables,
                               'consent_events_removed', n_consent, 'subject_key_shredded', shredded IS NOT NULL)
         || gdpr._erase_duplicates(st, dups, include_duplicates);
  UPDATE gdpr.erasures e SET report = rep, report_sha256 = sha256(convert_to(rep::text, 'UTF8'))
   WHERE e.id = eid;
  PERFORM gdpr._log_event('ERASE', st, ARRAY[subject_id], 1,
                          jsonb_build_object('erasure_id', eid, 'request_id', request_id));
  PERFORM gdpr._forget_subject(st, subject_id, ref);
  RETURN rep;
EXCEPTION
  WHEN foreign_key_violation THEN
    -- All or nothing: a table outside the registry still refers to him.
    RAISE EXCEPTION 'cannot erase subject "%": %', subject_id, SQLERRM
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Register the table that refers to him (gdpr.register_table) so that its rows are erased too.';
END
$$;

------------------------------------------------------------------ views
CREATE OR REPLACE VIEW gdpr.personal_data AS
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

------------------------------------------------------------------ privileges
REVOKE ALL ON SEQUENCE gdpr.suppression_flags_id_seq FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.erase_subject(text, bigint, regclass, boolean), gdpr.find_duplicates(text, regclass),
  gdpr.set_no_basis_retention(regclass, interval) TO gdpr_admin;
GRANT SELECT ON gdpr.departed_subjects, gdpr.consent_proof_archive, gdpr.no_legal_basis, gdpr.no_basis_retention,
  gdpr.suppression_flags TO gdpr_auditor, gdpr_admin;

------------------------------------------------------------------ triggers
-- Subject tables registered before the update get the departure and suppression triggers.
SELECT gdpr._attach_subject_triggers(s.tbl) FROM gdpr.subject_tables s;
