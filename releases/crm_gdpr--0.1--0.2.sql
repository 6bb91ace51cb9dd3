-- crm_gdpr 0.1 -> 0.2 as released (frozen: never edit)
\echo Use "ALTER EXTENSION crm_gdpr UPDATE" to load this file. \quit

CREATE OR REPLACE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  col text;
BEGIN
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
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND NOT g.tgisinternal
              AND g.tgname IN ('gdpr_restrict_update', 'gdpr_restrict_delete', 'gdpr_log_insert',
                               'gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.decrypt(ciphertext bytea, context text DEFAULT '') RETURNS text
  LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  kid bigint := gdpr._ciphertext_subject_key(ciphertext);
  k gdpr.subject_keys;
  s gdpr.shredded_keys;
BEGIN
  PERFORM gdpr._note_decrypt();   -- one DECRYPT row per statement (read_hook.c)
  IF kid IS NULL THEN
    RETURN gdpr._decrypt_raw(ciphertext, context, NULL, NULL);
  END IF;
  SELECT * INTO k FROM gdpr.subject_keys x WHERE x.id = kid;
  IF NOT FOUND THEN
    SELECT * INTO s FROM gdpr.shredded_keys x WHERE x.key_id = kid;
    IF FOUND THEN
      RAISE EXCEPTION 'the data key of this subject was shredded'
        USING ERRCODE = 'GD001',
              DETAIL = format('Shredded at %s: the value can no longer be decrypted.', s.shredded_at);
    END IF;
    RAISE EXCEPTION 'the data key of this ciphertext does not exist' USING ERRCODE = 'undefined_object';
  END IF;
  RETURN gdpr._decrypt_raw(ciphertext, 'subject:' || k.subject_ref, k.wrapped, k.subject_ref);
END
$$;

CREATE OR REPLACE FUNCTION gdpr.shred_subject(subject_id text, subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  ref text;
  k gdpr.subject_keys;
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  ref := gdpr._subject_key_ref(st, subject_id);
  DELETE FROM gdpr.subject_keys x WHERE x.subject_table = st AND x.subject_ref = ref RETURNING * INTO k;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" has no data key', subject_id
      USING ERRCODE = 'undefined_object',
            HINT = 'Only values written with gdpr.encrypt_for_subject() have a key to shred.';
  END IF;
  INSERT INTO gdpr.shredded_keys (key_id, subject_table, subject_ref) VALUES (k.id, st, ref);
  PERFORM gdpr._log_event('SHRED', st, ARRAY[subject_id], 1, jsonb_build_object('key_id', k.id));
END
$$;

CREATE OR REPLACE FUNCTION gdpr._record_consent(subject_id text, purpose text, event text, channel text, proof jsonb,
                                     subject_table regclass) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  p gdpr.purposes := gdpr._purpose(purpose);
  needs_proof boolean := event IN ('grant', 'confirm', 'informed');
  at timestamptz := gdpr._check_proof(channel, proof, needs_proof);
  notice gdpr.purpose_notices;
  eid bigint;
BEGIN
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
  SELECT * INTO notice FROM gdpr.purpose_notices n WHERE n.purpose = p.code ORDER BY n.version DESC LIMIT 1;
  IF needs_proof AND notice.version IS NULL THEN
    RAISE EXCEPTION 'purpose "%" has no information notice', p.code
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'A person must know what he consents to: give the purpose a notice with gdpr.define_purpose().';
  END IF;
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

CREATE OR REPLACE FUNCTION gdpr._due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(pol.tbl);
  due text;
  held text;
  blocked text;
BEGIN
  IF pol.after_table = pol.tbl THEN
    due := format('t.%I < now() - %L::interval', pol.after_column, pol.keep);
  ELSE
    due := format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND s.%I < now() - %L::interval)',
                  pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                  gdpr._subject_id_expr(pol.tbl, 't'), pol.after_column, pol.keep);
  END IF;
  -- The holds in force are read once per statement (InitPlans), so that the
  -- check costs a comparison per row, not a probe; with no hold in force (the
  -- usual case) not even the row's subject key is computed.
  held := format('(NOT EXISTS (SELECT FROM gdpr.holds h
                     WHERE h.subject_table = %2$L::regclass AND h.released_at IS NULL
                       AND (h.until IS NULL OR h.until > now()))
                   OR NOT coalesce(%1$s = ANY (ARRAY(SELECT h.subject_id FROM gdpr.holds h
                     WHERE h.subject_table = %2$L::regclass AND h.released_at IS NULL
                       AND (h.until IS NULL OR h.until > now()))), false))',
                 gdpr._subject_id_expr(pol.tbl, 't'), r.subject_table);
  IF pol.col IS NULL AND pol.action = 'delete' THEN
    SELECT string_agg(format('NOT EXISTS (SELECT FROM %s c WHERE c.%I = t.%I)', c.conrelid::regclass,
                             (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
                             (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attnum = c.confkey[1])),
                      ' AND ')
      INTO blocked
      FROM pg_constraint c
     WHERE c.confrelid = pol.tbl AND c.contype = 'f' AND c.confdeltype IN ('a', 'r') AND cardinality(c.conkey) = 1;
  END IF;
  RETURN concat_ws(' AND ', due, held, blocked);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._cascade_deleted(tbl regclass) RETURNS bigint
  LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(c.conrelid)), 0)::bigint
    FROM pg_constraint c
   WHERE c.confrelid = tbl AND c.contype = 'f' AND c.confdeltype = 'c' AND cardinality(c.conkey) = 1;
$$;

CREATE OR REPLACE FUNCTION gdpr._policy_sql(pol gdpr.retention_policies, batch_size int, dry_run boolean) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cond text := gdpr._due_cond(pol) || ' AND ' || gdpr._todo_cond(pol);
  key name := coalesce(gdpr._key_column(pol.tbl), 'ctid');  -- no single-column key: nothing cascades by it
  typ text;
  expr text;
BEGIN
  IF pol.action = 'keep' OR (dry_run AND pol.action <> 'delete') THEN
    RETURN format('SELECT count(*), 0::bigint FROM %s t WHERE %s', pol.tbl, cond);
  END IF;
  IF dry_run THEN
    RETURN format('WITH v AS (SELECT t.%I AS k FROM %s t WHERE %s) SELECT (SELECT count(*) FROM v), %s',
                  key, pol.tbl, cond, gdpr._cascade_count_sql(pol.tbl, 'v'));
  END IF;
  -- A plain DELETE or UPDATE, counted by its ROW_COUNT and the cascade by the
  -- transaction's statistics (_purge_batch): a RETURNING list would
  -- materialise every row of the batch, and counting the children before the
  -- delete probed their indexes twice.
  IF pol.action = 'delete' THEN
    RETURN format('DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))',
                  pol.tbl, pol.tbl, cond, batch_size);
  END IF;
  typ := (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = pol.tbl AND a.attname = pol.col);
  expr := CASE pol.action
    WHEN 'nullify' THEN 'NULL'
    WHEN 'pseudonymise' THEN format('gdpr.pseudonymise(%I::text, %L)::%s', pol.col, 'retention', typ)
    WHEN 'generalise' THEN CASE WHEN gdpr._is_date_column(pol.tbl, pol.col)
                                THEN format('gdpr.generalise(%I::timestamptz, %L)::%s', pol.col, 'year', typ)
                                ELSE format('gdpr.generalise_postcode(%I::text)::%s', pol.col, typ) END END;
  RETURN format('UPDATE %s SET %I = %s WHERE ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))',
                pol.tbl, pol.col, expr, pol.tbl, cond, batch_size);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_step(pol gdpr.retention_policies, sql text, OUT n bigint, OUT cascaded bigint)
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM set_config('lock_timeout', coalesce(nullif(current_setting('crm_gdpr.purge_lock_timeout', true), ''), '1s'), true);
  IF sql ~ '^DELETE ' THEN
    cascaded := gdpr._cascade_deleted(pol.tbl);
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    cascaded := gdpr._cascade_deleted(pol.tbl) - cascaded;
  ELSIF sql ~ '^UPDATE ' THEN
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    cascaded := 0;
  ELSE
    EXECUTE sql INTO n, cascaded;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_record(run_id bigint, pol gdpr.retention_policies, n bigint, cascaded bigint,
                                    batches int, dry_run boolean) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE gdpr.purge_results r SET rows = r.rows + n, cascaded = r.cascaded + _purge_record.cascaded
   WHERE r.run_id = _purge_record.run_id AND r.policy_id = pol.id;
  IF n > 0 AND NOT dry_run AND pol.action <> 'keep' THEN
    PERFORM gdpr._log_event('PURGE', pol.tbl, NULL, n,
                            jsonb_build_object('run_id', run_id, 'policy_id', pol.id, 'action', pol.action,
                                               'column', pol.col, 'cascaded', cascaded, 'batches', batches),
                            CASE WHEN pol.col IS NOT NULL THEN ARRAY[pol.col] END);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_statement(pol gdpr.retention_policies, batch_size int) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._policy_sql(pol, batch_size, false);
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_batch(run_id bigint, policy_id int, batch_size int, dry_run boolean,
                                   prepared text DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  r record;
BEGIN
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.id = _purge_batch.policy_id;
  IF NOT FOUND THEN
    RETURN 0;                    -- the policy was removed meanwhile
  END IF;
  BEGIN
    r := gdpr._purge_step(pol, coalesce(prepared, gdpr._policy_sql(pol, batch_size, dry_run)));
  EXCEPTION WHEN OTHERS THEN
    UPDATE gdpr.purge_results x SET error = SQLSTATE || ': ' || SQLERRM
     WHERE x.run_id = _purge_batch.run_id AND x.policy_id = _purge_batch.policy_id;
    RETURN -1;
  END;
  PERFORM gdpr._purge_record(run_id, pol, r.n, r.cascaded, 1, dry_run);
  RETURN CASE WHEN dry_run OR pol.action = 'keep' THEN 0 ELSE r.n END;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._purge_policy(run_id bigint, policy_id int, batch_size int, dry_run boolean) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol gdpr.retention_policies;
  sql text;
  r record;
  n bigint := 0;
  cascaded bigint := 0;
  batches int := 0;
BEGIN
  SELECT * INTO pol FROM gdpr.retention_policies p WHERE p.id = _purge_policy.policy_id;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  BEGIN
    sql := gdpr._policy_sql(pol, batch_size, dry_run);
    LOOP
      r := gdpr._purge_step(pol, sql);
      n := n + r.n;
      cascaded := cascaded + r.cascaded;
      batches := batches + 1;
      EXIT WHEN r.n = 0 OR dry_run OR pol.action = 'keep';
    END LOOP;
  EXCEPTION WHEN OTHERS THEN
    UPDATE gdpr.purge_results x SET error = SQLSTATE || ': ' || SQLERRM
     WHERE x.run_id = _purge_policy.run_id AND x.policy_id = _purge_policy.policy_id;
    RETURN -1;
  END;
  PERFORM gdpr._purge_record(run_id, pol, n, cascaded, batches, dry_run);
  RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.purge(dry_run boolean DEFAULT false)
  RETURNS TABLE (tbl regclass, col name, action text, rows bigint)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rid bigint;
  pid int;
BEGIN
  PERFORM gdpr._not_null(dry_run, 'dry_run');
  rid := gdpr._purge_begin('manual: ' || session_user, dry_run);
  IF rid IS NULL THEN
    RAISE NOTICE 'another purge is running; this one does nothing';
    RETURN;
  END IF;
  FOR pid IN SELECT * FROM gdpr._purge_order(rid) LOOP
    PERFORM gdpr._purge_policy(rid, pid, gdpr._purge_batch_size(), dry_run);
  END LOOP;
  PERFORM gdpr._purge_finish(rid);
  RETURN QUERY SELECT r.tbl, r.col, r.action, r.rows FROM gdpr.purge_results r
                WHERE r.run_id = rid ORDER BY r.policy_id;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.restrict_subject(subject_id text, reason text, subject_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
BEGIN
  PERFORM gdpr._not_blank(reason, 'a restriction needs a reason',
    'Art. 18(1): accuracy contested, unlawful processing, needed for a legal claim, or objection pending.');
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is already restricted', subject_id USING ERRCODE = 'duplicate_object';
  END IF;
  INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES (st, subject_id, reason);
  PERFORM gdpr._log_event('RESTRICT', st, ARRAY[subject_id], 1, jsonb_build_object('reason', reason));
END
$$;

CREATE OR REPLACE FUNCTION gdpr.lift_restriction(subject_id text, reason text DEFAULT NULL,
                                      subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  UPDATE gdpr.restrictions r SET lifted_at = now(), lifted_by = session_user, lift_reason = lift_restriction.reason
   WHERE r.subject_table = st AND r.subject_id = lift_restriction.subject_id AND r.lifted_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" is not restricted', subject_id USING ERRCODE = 'undefined_object';
  END IF;
  PERFORM gdpr._log_event('LIFT RESTRICTION', st, ARRAY[subject_id], 1, jsonb_build_object('reason', reason));
END
$$;

CREATE OR REPLACE FUNCTION gdpr.export_subject(subject_id text, subject_table regclass DEFAULT NULL,
                                    portability boolean DEFAULT false, request_id bigint DEFAULT NULL)
  RETURNS jsonb
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  doc jsonb;
  erased gdpr.erasures;
BEGIN
  PERFORM gdpr._not_null(portability, 'portability');
  IF NOT gdpr._subject_exists(st, subject_id) THEN
    -- An erased person gets the one thing still held about him: that he was
    -- erased and is on the suppression list (under a pseudonym).
    SELECT * INTO erased FROM gdpr.erasures e WHERE e.subject_table = st AND e.subject_ref = gdpr._subject_ref(st, subject_id);
    IF NOT FOUND THEN
      RAISE EXCEPTION 'subject "%" does not exist in %', subject_id, st USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM gdpr._answer_request(request_id, st, subject_id, ARRAY['access', 'portability']);
    RETURN jsonb_build_object('format', 'crm_gdpr.subject_export', 'format_version', 1, 'generated_at', now(),
                              'kind', 'erased', 'subject', jsonb_build_object('table', st::text, 'id', subject_id),
                              'erasure', jsonb_build_object('erased_at', erased.erased_at, 'certificate', erased.id,
                                                            'suppressed', true));
  END IF;
  doc := jsonb_build_object(
    'format', 'crm_gdpr.subject_export',
    'format_version', 1,
    'generated_at', now(),
    'kind', CASE WHEN portability THEN 'portability' ELSE 'access' END,
    'controller_database', current_database(),
    'subject', jsonb_build_object('table', st::text, 'id', subject_id),
    'data', gdpr._subject_data(st, subject_id, portability),
    'processing', gdpr._subject_information(st, portability),
    'restricted', gdpr.is_restricted(subject_id, st),
    'consent', (gdpr.consent_proof(subject_id, st) -> 'events'),
    'sources', gdpr._subject_sources(st, subject_id),
    'requests', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'kind', r.kind,
                          'received_at', r.received_at, 'due_at', r.due_at, 'closed_at', r.closed_at,
                          'outcome', r.outcome) ORDER BY r.id), '[]')
                   FROM gdpr.requests r WHERE r.subject_table = st AND r.subject_id = export_subject.subject_id));
  PERFORM gdpr._answer_request(request_id, st, subject_id,
                               CASE WHEN portability THEN ARRAY['portability'] ELSE ARRAY['access', 'portability'] END);
  PERFORM gdpr._log_event('EXPORT', st, ARRAY[subject_id], 1,
                          jsonb_build_object('kind', doc ->> 'kind', 'request_id', request_id));
  RETURN doc;
END
$$;

CREATE OR REPLACE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
                                   subject_table regclass DEFAULT NULL) RETURNS jsonb
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
  EXECUTE format('SELECT 1 FROM %s WHERE %s FOR UPDATE', st, gdpr._subject_rows_cond(st, key));
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

  INSERT INTO gdpr.erasures (subject_table, subject_ref, request_id, report, report_sha256)
    VALUES (st, ref, request_id, '{}', '\x') RETURNING id INTO eid;
  PERFORM gdpr._suppress_contacts(st, key, eid);
  -- His consent events go (the ledger opens for this transaction only); the
  -- suppression list now says what they said: never contact him again.
  PERFORM gdpr._allow_ledger_erasure();
  DELETE FROM gdpr.consent_ledger l WHERE l.subject_table = st AND l.subject_id = erase_subject.subject_id;
  GET DIAGNOSTICS n_consent = ROW_COUNT;
  DELETE FROM gdpr.consent_state s WHERE s.subject_table = st AND s.subject_id = erase_subject.subject_id;
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

  rep := jsonb_build_object('status', 'erased', 'erasure_id', eid, 'subject_table', gdpr._qualified(st),
                               'request_id', request_id, 'erased_at', now(), 'tables', tables,
                               'consent_events_removed', n_consent, 'subject_key_shredded', shredded IS NOT NULL);
  UPDATE gdpr.erasures e SET report = rep, report_sha256 = sha256(convert_to(rep::text, 'UTF8'))
   WHERE e.id = eid;
  PERFORM gdpr._log_event('ERASE', st, ARRAY[subject_id], 1,
                          jsonb_build_object('erasure_id', eid, 'request_id', request_id));
  RETURN rep;
EXCEPTION
  WHEN foreign_key_violation THEN
    -- All or nothing: a table outside the registry still refers to him.
    RAISE EXCEPTION 'cannot erase subject "%": %', subject_id, SQLERRM
      USING ERRCODE = 'foreign_key_violation',
            HINT = 'Register the table that refers to him (gdpr.register_table) so that its rows are erased too.';
END
$$;
-- 0.1 -> 0.2, after the new definitions of the changed functions, the access
-- log (80_access_log.sql) and the privileges (99_privileges.sql), which the
-- Makefile puts before and around this part.

-- Restrictions are cached per backend since 0.2 (restriction.c).
CREATE FUNCTION gdpr._restrictions_changed() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_restrictions_changed';
CREATE TRIGGER restrictions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.restrictions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._restrictions_changed();
-- The access log: who read or changed personal data, when, why.  Append-only
-- and tamper-evident.  Writes are logged by C statement triggers in the
-- writing transaction (log_write.c); reads are seen by an executor hook and
-- queued in shared memory (read_hook.c, log_queue.c), then written by the log
-- writer (log_worker.c) or by gdpr.flush_access_log().  Every row gets a keyed
-- MAC at insert (log_mac.c); the log writer seals settled rows into
-- hash-chained blocks; gdpr.verify_access_log() checks both.

-- The role a row names: the caller of the extension's SECURITY DEFINER
-- functions (the role set by SET ROLE or the session), not their owner.
CREATE FUNCTION gdpr._caller() RETURNS name
  LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'gdpr_caller';

-- A crm_gdpr.* setting, also in sessions that have not loaded the module yet.
CREATE FUNCTION gdpr._setting(name text) RETURNS text
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_setting';

CREATE SEQUENCE gdpr.access_log_id_seq;

-- Partitioned by month (UTC) so that it can hold years of activity and old
-- months go with a DROP: monthly partitions are created ahead by
-- gdpr._log_maintain() (outside the extension, so that pg_dump copies them);
-- the default partition only catches rows no month was ready for.
CREATE TABLE gdpr.access_log (
  id                 bigint NOT NULL DEFAULT nextval('gdpr.access_log_id_seq'),
  at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_at            timestamptz,          -- folded reads: the last of them
  role_name          name NOT NULL DEFAULT gdpr._caller(),
  session_user_name  name NOT NULL DEFAULT session_user,
  application_name   text DEFAULT nullif(current_setting('application_name'), ''),
  client_addr        inet DEFAULT inet_client_addr(),
  backend_pid        int DEFAULT pg_backend_pid(),
  operation          text NOT NULL,
  tbl                regclass,
  table_name         text,                 -- tbl as it was named: what the MAC covers
  columns            name[],
  subject_refs       text[] COLLATE "C",    -- keyed pseudonyms of the subjects touched
  subjects           bigint,               -- how many; NULL when more than the refs kept
  row_count          bigint,
  times              int NOT NULL DEFAULT 1,   -- identical reads folded into this row
  query_id           bigint,
  purpose            text DEFAULT nullif(current_setting('crm_gdpr.purpose', true), ''),
  detail             jsonb,
  mac                bytea
) PARTITION BY RANGE (at);
ALTER SEQUENCE gdpr.access_log_id_seq OWNED BY gdpr.access_log.id;
-- A folded read names up to 100 people (LOG_FOLD_MAX): some 2.9 kB, past the
-- 2 kB at which PostgreSQL starts toasting a row.  Toasting would compress
-- the random pseudonyms for little gain and then move every other
-- variable-length column (columns, detail, mac) to the TOAST table, one
-- TOAST row and index entry each: that was a fifth of the log writer's time.
-- So the partitions toast only rows that do not fit in a page
-- (toast_tuple_target at its maximum, set by _log_partition_sql), and
-- subject_refs stays in the row (STORAGE MAIN, lz4 where the server has it)
-- even then.  Partitions inherit the storage and compression.
ALTER TABLE gdpr.access_log ALTER COLUMN subject_refs SET STORAGE MAIN;
ALTER TABLE gdpr.access_log ALTER COLUMN subject_refs SET STATISTICS 0;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_settings s
              WHERE s.name = 'default_toast_compression' AND 'lz4' = ANY (s.enumvals)) THEN
    ALTER TABLE gdpr.access_log ALTER COLUMN subject_refs SET COMPRESSION lz4;
  END IF;
END
$$;

-- CREATE TABLE of a partition of the log; bounds NULL: the default one.
-- toast_tuple_target's maximum is the page less its header and one item
-- pointer (8160 for 8 kB pages).  No statistics on subject_refs: ANALYZE of
-- a month sampled 30,000 rows of a hundred pseudonyms each, to rank elements
-- that are all distinct, two thirds of its time (autovacuum analyzes a
-- growing month every 10 % of growth); access_history's && needs none.
CREATE FUNCTION gdpr._log_partition_sql(part name, lo timestamptz, hi timestamptz) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT format('CREATE TABLE gdpr.%I PARTITION OF gdpr.access_log %s WITH (toast_tuple_target = %s); '
                'ALTER TABLE gdpr.%I ALTER COLUMN subject_refs SET STATISTICS 0', part,
                CASE WHEN lo IS NULL THEN 'DEFAULT' ELSE format('FOR VALUES FROM (%L) TO (%L)', lo, hi) END,
                current_setting('block_size')::int - 32, part)
$$;
DO $$ BEGIN EXECUTE gdpr._log_partition_sql('access_log_default', NULL, NULL); END $$;
-- Indexes per partition, not on the parent: a restored month partition
-- brings its own (an index on the parent would make a second set).  id and
-- at grow with time: BRIN indexes find a range at almost no cost per insert.
-- The GIN index that finds a person's rows for access_history is built once
-- a month is over (_log_index_month): kept up to date row by row, it cost
-- the log writer more than everything else; the current month is scanned.
CREATE FUNCTION gdpr._log_index_partition(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX %I ON %s USING brin (id)', n || '_id', part);
  EXECUTE format('CREATE INDEX %I ON %s USING brin (at)', n || '_at', part);
END
$$;
SELECT gdpr._log_index_partition('gdpr.access_log_default');

CREATE FUNCTION gdpr._log_index_month(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (subject_refs)', n || '_subjects', part);
END
$$;
COMMENT ON TABLE gdpr.access_log IS
  'every read and write of personal data: append-only, each row with a keyed MAC, sealed in hash-chained blocks';

-- Seals: blocks of settled rows (by time), each chained to the previous one.
CREATE TABLE gdpr.access_log_seals (
  seal_id      bigint PRIMARY KEY,
  sealed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  from_at      timestamptz NOT NULL,     -- the block holds the rows with from_at <= at < upto_at
  upto_at      timestamptz NOT NULL,
  row_count    bigint NOT NULL,
  ids          int8multirange NOT NULL,
  rows_hash    bytea NOT NULL,           -- SHA-256 of (id, mac) of its rows in id order
  prev_hash    bytea,
  hash         bytea NOT NULL            -- keyed MAC of all of the above
);
COMMENT ON TABLE gdpr.access_log_seals IS 'hash-chained blocks of the access log; written by one writer, append-only';

-- The writes of committed transactions on their way to the log: a writing
-- transaction adds its statements' records just before it commits, straight
-- into the heap (log_write.c: keep the columns in step);
-- gdpr.flush_access_log() moves them.  Lists are joined with chr(31).
CREATE TABLE gdpr.access_log_journal (
  at                 timestamptz NOT NULL,
  role_name          text,
  session_user_name  text,
  application_name   text,
  client_addr        text,
  backend_pid        int,
  operation          text,
  tbl                oid,
  table_name         text,
  columns            text,
  subject_refs       text,
  subjects           bigint,
  row_count          bigint,
  query_id           bigint,
  purpose            text
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
-- Every row is deleted within a second: vacuumed early, its pages are reused
-- instead of the table growing by a page at a time under the writers.
COMMENT ON TABLE gdpr.access_log_journal IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log';

-- What the log's own retention removed: verify does not look for those rows.
CREATE TABLE gdpr.access_log_retention (
  id              bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  dropped_before  timestamptz NOT NULL,
  what            text NOT NULL,
  row_count       bigint
);
COMMENT ON TABLE gdpr.access_log_retention IS 'what the access log''s retention removed, and when';

SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_default', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_journal', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_seals', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_retention', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_retention_id_seq', '');

-- C parts: the MAC, the keyed hash of seals, the write trigger, the queue.
CREATE FUNCTION gdpr._log_mac_row() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_mac_row';
CREATE FUNCTION gdpr._log_row_mac(r gdpr.access_log) RETURNS bytea
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_row_mac';
CREATE FUNCTION gdpr._log_keyed_hash(data bytea, fingerprint bytea DEFAULT NULL) RETURNS bytea
  LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'gdpr_log_keyed_hash';
CREATE FUNCTION gdpr._log_subject_ref(subject_id text) RETURNS text
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_ref';
CREATE FUNCTION gdpr._log_subject_refs(subject_id text) RETURNS text[]
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_refs';
CREATE FUNCTION gdpr._log_write() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_write';
CREATE FUNCTION gdpr._log_queue_take() RETURNS TABLE (
    at timestamptz, role_name name, session_user_name name, application_name text, client_addr inet,
    backend_pid int, operation text, tbl oid, columns name[], subject_refs text[], row_count bigint,
    query_id bigint, purpose text, detail jsonb, last_at timestamptz, times int, table_name text)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_take';
-- The journal's rows, deleted and folded (log_journal.c), oldest first.
CREATE FUNCTION gdpr._log_journal_take() RETURNS TABLE (
    at timestamptz, last_at timestamptz, role_name text, session_user_name text, application_name text,
    client_addr text, backend_pid int, operation text, tbl oid, table_name text, columns name[],
    subject_refs text[], subjects bigint, row_count bigint, query_id bigint, purpose text, times int)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_journal_take';
CREATE FUNCTION gdpr.access_log_queue() RETURNS TABLE (
    capacity int, queued int, enqueued bigint, written bigint, dropped bigint, logged_to_server_log bigint)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_stats';
COMMENT ON FUNCTION gdpr.access_log_queue() IS
  'the shared-memory queue of reads: capacity, waiting, and since the server started: queued, written, dropped';
CREATE FUNCTION gdpr._log_journal_pending() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_journal_pending';
CREATE FUNCTION gdpr._note_decrypt() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_note_decrypt';
CREATE FUNCTION gdpr._allow_log_maintenance(allow boolean) RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_allow_log_maintenance';
CREATE FUNCTION gdpr._protect_access_log() RETURNS event_trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_protect_access_log';

CREATE TRIGGER mac BEFORE INSERT ON gdpr.access_log
  FOR EACH ROW EXECUTE FUNCTION gdpr._log_mac_row();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
-- Statement triggers are not inherited: each partition gets its own.
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_default
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_seals
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_seals
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_retention
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_retention
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');

CREATE EVENT TRIGGER crm_gdpr_protect_access_log ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'DROP TABLE')
  EXECUTE FUNCTION gdpr._protect_access_log();

CREATE FUNCTION gdpr._log_enqueue(operation text, tbl regclass, subject_ids text[], row_count bigint,
                                  detail text) RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_enqueue';

-- Log one event of the extension's own functions (EXPORT, ERASE, PURGE,
-- CONSENT, ...).  The role is the caller of the SECURITY DEFINER function,
-- not its owner.  Where nothing can be written (an export on a standby or
-- in a read-only transaction) the event is queued like a read.
CREATE FUNCTION gdpr._log_event(operation text, tbl regclass, subject_ids text[], row_count bigint,
                                detail jsonb DEFAULT NULL, columns name[] DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean THEN
    PERFORM gdpr._log_enqueue(operation, tbl, subject_ids, row_count, detail::text);
    RETURN;
  END IF;
  INSERT INTO gdpr.access_log (operation, tbl, table_name, columns, subject_refs, subjects, row_count, detail)
    VALUES (operation, tbl, gdpr._qualified(tbl), columns,
            (SELECT array_agg(gdpr._log_subject_ref(s)) FROM unnest(subject_ids) s),
            cardinality(subject_ids), row_count, detail);
END
$$;

-- Move the journal's writes into the log, then write the queued reads of
-- this database (folded in C: log_queue.c).  The seal lock keeps it from
-- running while a block is being sealed.
-- The log writer moves the journal once per crm_gdpr.log_flush_interval but
-- the queued reads as often as they come (a burst of reads wakes it many
-- times a second; the journal's heap is scanned only when it is due).
CREATE FUNCTION gdpr._log_flush(journal boolean) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
  w bigint := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('crm_gdpr.access_log_seal'));
  PERFORM gdpr._log_journal_pending();
  IF journal THEN
    -- Identical statements (same backend, roles, query, table, columns, purpose)
    -- are folded, up to 100 a row, with the union of their subjects (log_journal.c).
    INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                                 backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                                 row_count, times, query_id, purpose)
      SELECT j.at, j.last_at, j.role_name, j.session_user_name, j.application_name, j.client_addr::inet,
             j.backend_pid, j.operation, j.tbl::regclass, j.table_name, j.columns, j.subject_refs, j.subjects,
             j.row_count, j.times, j.query_id, j.purpose
        FROM gdpr._log_journal_take() j;
    GET DIAGNOSTICS w = ROW_COUNT;
  END IF;
  INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                               backend_pid, operation, tbl, table_name, columns, subject_refs, subjects,
                               row_count, times, query_id, purpose, detail)
    SELECT q.at, q.last_at, q.role_name, q.session_user_name, q.application_name, q.client_addr, q.backend_pid,
           q.operation, nullif(q.tbl, 0)::regclass, q.table_name, q.columns,
           q.subject_refs, cardinality(q.subject_refs), q.row_count, q.times, q.query_id, q.purpose, q.detail
      FROM gdpr._log_queue_take() q;     -- without the reads of a table dropped meanwhile
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN w + n;
END
$$;
CREATE FUNCTION gdpr.flush_access_log() RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN gdpr._log_flush(true);
COMMENT ON FUNCTION gdpr.flush_access_log() IS
  'move the journal''s writes and the queued reads of this database into the log now (the log writer does it every crm_gdpr.log_flush_interval)';

-- Month partitions: this one and the next two; the log's retention.
CREATE FUNCTION gdpr._log_month_name(m timestamp) RETURNS name
  LANGUAGE sql IMMUTABLE RETURN ('access_log_' || to_char(m, 'YYYY_MM'))::name;

-- The month partitions of the log and the end of their month (UTC).
CREATE FUNCTION gdpr._log_months(OUT part regclass, OUT relname name, OUT month_end timestamptz)
  RETURNS SETOF record
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT c.oid::regclass, c.relname,
         ((to_timestamp(substr(c.relname, 12), 'YYYY_MM') AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = 'gdpr.access_log'::regclass AND c.relname ~ '^access_log_[0-9]{4}_[0-9]{2}$'
   ORDER BY c.relname;
END;

CREATE FUNCTION gdpr._log_maintain() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  lo timestamptz;
  hi timestamptz;
  part name;
  cutoff timestamptz;
  n bigint;
  removed bigint := 0;
  p record;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('crm_gdpr.access_log_maintain'));
  PERFORM gdpr._allow_log_maintenance(true);
  FOR i IN 0..2 LOOP
    part := gdpr._log_month_name(this_month + make_interval(months => i));
    lo := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
    hi := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
    CONTINUE WHEN to_regclass(format('gdpr.%I', part)) IS NOT NULL;
    -- Rows that went to the default partition stay there: the month starts after them.
    lo := greatest(lo, (SELECT max(d.at) + interval '1 microsecond' FROM gdpr.access_log_default d
                         WHERE d.at >= lo AND d.at < hi));
    BEGIN
      EXECUTE gdpr._log_partition_sql(part, lo, hi);
      EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only(%L)', part, 'access log');
      PERFORM gdpr._log_index_partition(format('gdpr.%I', part)::regclass);
    EXCEPTION WHEN duplicate_table THEN
      NULL;   -- made meanwhile by the log writer or a registration
    END;
  END LOOP;

  -- Months that are over get their subject index.
  FOR p IN SELECT m.part FROM gdpr._log_months() m
            WHERE m.month_end <= now()
              AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                               WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subjects') LOOP
    PERFORM gdpr._log_index_month(p.part);
  END LOOP;

  cutoff := date_trunc('month', (now() - gdpr._setting('access_log_keep')::interval) AT TIME ZONE 'UTC')
            AT TIME ZONE 'UTC';
  FOR p IN SELECT m.part, m.relname FROM gdpr._log_months() m WHERE m.month_end <= cutoff LOOP
    EXECUTE format('SELECT count(*) FROM %s', p.part) INTO n;
    EXECUTE format('DROP TABLE %s', p.part);
    INSERT INTO gdpr.access_log_retention (dropped_before, what, row_count)
      VALUES (cutoff, 'partition ' || p.relname || ' dropped', n);
    removed := removed + n;
  END LOOP;
  DELETE FROM gdpr.access_log_default d WHERE d.at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    INSERT INTO gdpr.access_log_retention (dropped_before, what, row_count)
      VALUES (cutoff, 'rows of the default partition deleted', n);
  END IF;
  PERFORM gdpr._allow_log_maintenance(false);   -- the door closes with the maintenance
  RETURN removed + n;
END
$$;

-- The text a seal's MAC covers: every field, in a form independent of the
-- session's settings (time zone, date style).
CREATE FUNCTION gdpr._seal_text(s gdpr.access_log_seals) RETURNS bytea
  LANGUAGE sql IMMUTABLE
  RETURN convert_to(concat_ws('|', s.seal_id, (extract(epoch FROM s.from_at) * 1000000)::bigint,
                              (extract(epoch FROM s.upto_at) * 1000000)::bigint, s.row_count, s.ids::text,
                              encode(s.rows_hash, 'hex'), coalesce(encode(s.prev_hash, 'hex'), '-')), 'UTF8');

-- The digest of the rows of one block, as a seal records it.
CREATE FUNCTION gdpr._block_digest(from_at timestamptz, upto_at timestamptz,
                                   OUT row_count bigint, OUT ids int8multirange, OUT rows_hash bytea)
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT count(*), coalesce(range_agg(int8range(l.id, l.id, '[]')), '{}'),
         sha256(convert_to(coalesce(string_agg(l.id || ':' || coalesce(encode(l.mac, 'hex'), '-'), ','
                                                ORDER BY l.id), ''), 'UTF8'))
    FROM gdpr.access_log l WHERE l.at >= _block_digest.from_at AND l.at < _block_digest.upto_at;
END;

-- Seal the settled rows into the next block.  Settled: older than one second
-- and than the start of every transaction still running, so that no row can
-- still appear in the block's time range.  A block never spans two months, so
-- that the log's retention removes whole blocks.  One writer at a time.
CREATE FUNCTION gdpr.seal_access_log() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  prev gdpr.access_log_seals;
  s gdpr.access_log_seals;
  horizon timestamptz;
  sealed bigint := 0;
BEGIN
  IF gdpr._log_keyed_hash('\x') IS NULL THEN
    RAISE EXCEPTION 'the access log cannot be sealed without a key'
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set crm_gdpr.key_file (see doc/crypto.md).';
  END IF;
  PERFORM gdpr.flush_access_log();     -- takes the seal lock: queued reads are in before the horizon
  horizon := least(clock_timestamp() - interval '1 second',
                   (SELECT min(a.xact_start) FROM pg_stat_activity a
                     WHERE a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL));
  LOOP
    SELECT * INTO prev FROM gdpr.access_log_seals x ORDER BY x.seal_id DESC LIMIT 1;
    s.from_at := coalesce(prev.upto_at, (SELECT min(l.at) FROM gdpr.access_log l));
    EXIT WHEN s.from_at IS NULL OR s.from_at >= horizon;
    s.upto_at := least(horizon, (date_trunc('month', s.from_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
    s.seal_id := coalesce(prev.seal_id, 0) + 1;
    SELECT d.row_count, d.ids, d.rows_hash INTO s.row_count, s.ids, s.rows_hash
      FROM gdpr._block_digest(s.from_at, s.upto_at) d;
    s.prev_hash := prev.hash;
    s.sealed_at := clock_timestamp();
    s.hash := gdpr._log_keyed_hash(gdpr._seal_text(s));
    INSERT INTO gdpr.access_log_seals VALUES (s.*);
    sealed := sealed + s.row_count;
  END LOOP;
  RETURN sealed;
END
$$;
COMMENT ON FUNCTION gdpr.seal_access_log() IS
  'seal the settled rows of the access log into the next hash-chained block (the log writer does it)';

-- Recompute every row's MAC and every seal: the chain, the rows each block
-- holds.  Reports the first problem by row id.  Blocks older than what the
-- log's retention removed are checked in the chain only.
CREATE FUNCTION gdpr.verify_access_log()
  RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, detail text)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  horizon timestamptz := (SELECT max(r.dropped_before) FROM gdpr.access_log_retention r);
  s gdpr.access_log_seals;
  prev gdpr.access_log_seals;
  d record;
  bad_id bigint;
  bad_why text;
  n bigint;
  id_missing bigint;
  id_added bigint;
  bad_mac bigint;
BEGIN
  -- The chain.
  FOR s IN SELECT * FROM gdpr.access_log_seals x ORDER BY x.seal_id LOOP
    IF s.seal_id <> coalesce(prev.seal_id, 0) + 1 THEN
      bad_why := format('seal %s is missing', coalesce(prev.seal_id, 0) + 1);
    ELSIF s.prev_hash IS DISTINCT FROM prev.hash OR s.from_at IS DISTINCT FROM coalesce(prev.upto_at, s.from_at) THEN
      bad_why := format('seal %s does not follow seal %s', s.seal_id, prev.seal_id);
    ELSIF gdpr._log_keyed_hash(gdpr._seal_text(s), substr(s.hash, 1, 8)) IS DISTINCT FROM s.hash THEN
      bad_why := format('seal %s was altered (its MAC does not match)', s.seal_id);
    END IF;
    IF bad_why IS NOT NULL THEN
      RETURN QUERY SELECT false, 0::bigint, lower(s.ids), bad_why;
      RETURN;
    END IF;
    prev := s;
  END LOOP;

  -- Each block against its rows.
  FOR s IN SELECT * FROM gdpr.access_log_seals x
            WHERE horizon IS NULL OR x.upto_at > horizon ORDER BY x.seal_id LOOP
    SELECT * INTO d FROM gdpr._block_digest(s.from_at, s.upto_at);
    CONTINUE WHEN d.row_count = s.row_count AND d.ids = s.ids AND d.rows_hash = s.rows_hash;
    SELECT min(x.i) INTO id_missing
      FROM (SELECT generate_series(lower(r), upper(r) - 1) i FROM unnest(s.ids) r) x
     WHERE NOT EXISTS (SELECT FROM gdpr.access_log l WHERE l.id = x.i AND l.at >= s.from_at AND l.at < s.upto_at);
    SELECT min(l.id) INTO id_added FROM gdpr.access_log l
     WHERE l.at >= s.from_at AND l.at < s.upto_at AND NOT (l.id <@ s.ids);
    IF id_missing IS NOT NULL AND (id_added IS NULL OR id_missing < id_added) THEN
      bad_id := id_missing;
      bad_why := format('row %s is missing: seal %s holds it', id_missing, s.seal_id);
    ELSIF id_added IS NOT NULL THEN
      bad_id := id_added;
      bad_why := format('row %s was added after seal %s was made', id_added, s.seal_id);
    ELSE
      bad_id := lower(s.ids);
      bad_why := format('the rows of seal %s were altered', s.seal_id);
    END IF;
    EXIT;
  END LOOP;

  -- Each row's MAC (a block whose rows were altered in place ends up here).
  SELECT count(*), min(l.id) FILTER (WHERE l.mac IS NULL OR gdpr._log_row_mac(l) IS DISTINCT FROM l.mac)
    INTO n, bad_mac FROM gdpr.access_log l;
  IF bad_mac IS NOT NULL AND (bad_id IS NULL OR bad_mac <= bad_id) THEN
    bad_id := bad_mac;
    bad_why := format('row %s was altered or forged: its MAC does not match', bad_id);
  END IF;
  RETURN QUERY SELECT bad_id IS NULL, n, bad_id, coalesce(bad_why, format('%s rows, %s seals: intact', n,
                                                                     coalesce(prev.seal_id, 0)));
END
$$;

-- Who read or changed this person's data: rows naming his pseudonym in the
-- tables of his subject table, and the extension's events about him.
CREATE FUNCTION gdpr.access_history(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS SETOF gdpr.access_log
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
BEGIN
  PERFORM gdpr._not_blank(access_history.subject_id, 'subject_id must not be null or blank');
  RETURN QUERY
    SELECT l.* FROM gdpr.access_log l
     WHERE l.subject_refs && gdpr._log_subject_refs(access_history.subject_id)   -- under every key loaded
       AND l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
     ORDER BY l.at, l.id;
END
$$;

-- Per role and hour: how much personal data each role read.
CREATE VIEW gdpr.read_volume AS
  SELECT date_trunc('hour', l.at) AS hour, l.role_name, sum(l.times)::bigint AS reads,
         sum(l.row_count)::bigint AS rows_read, array_agg(DISTINCT l.table_name ORDER BY l.table_name) AS tables
    FROM gdpr.access_log l
   WHERE l.operation IN ('SELECT', 'COPY', 'EXPORT', 'DECRYPT')
   GROUP BY 1, 2;
COMMENT ON VIEW gdpr.read_volume IS 'per hour and role: reads and rows of personal data read';

-- Mass reads: roles that read more than crm_gdpr.mass_read_rows rows of
-- personal data within the last crm_gdpr.mass_read_window.
CREATE VIEW gdpr.mass_read_alarms AS
  SELECT l.role_name, sum(l.row_count)::bigint AS rows_read, sum(l.times)::bigint AS reads,
         min(l.at) AS first_at, max(coalesce(l.last_at, l.at)) AS last_at,
         array_agg(DISTINCT l.table_name ORDER BY l.table_name) AS tables,
         array_agg(DISTINCT l.application_name ORDER BY l.application_name) AS applications,
         gdpr._setting('mass_read_rows')::bigint AS threshold,
         gdpr._setting('mass_read_window')::interval AS window_length
    FROM gdpr.access_log l
   WHERE l.operation IN ('SELECT', 'COPY', 'EXPORT')
     AND l.at >= now() - gdpr._setting('mass_read_window')::interval
   GROUP BY l.role_name
  HAVING sum(l.row_count) > gdpr._setting('mass_read_rows')::bigint;
COMMENT ON VIEW gdpr.mass_read_alarms IS
  'roles that read more than crm_gdpr.mass_read_rows rows of personal data in the last crm_gdpr.mass_read_window';

-- Access violations: what the extension refused (the queue keeps them even
-- though the refused statement's transaction aborts).
CREATE VIEW gdpr.access_violations AS
  SELECT l.id, l.at, l.role_name, l.session_user_name, l.application_name, l.client_addr, l.operation,
         l.table_name, l.columns, l.row_count, l.purpose, l.detail ->> 'refused' AS refused
    FROM gdpr.access_log l
   WHERE l.detail ? 'refused';
COMMENT ON VIEW gdpr.access_violations IS 'reads and writes the extension refused, with who tried and why';

-- State of the log: queue, unsealed rows, partitions.
CREATE VIEW gdpr.access_log_status AS
  SELECT q.capacity, q.queued, q.enqueued, q.written, q.dropped, q.logged_to_server_log,
         (SELECT max(s.seal_id) FROM gdpr.access_log_seals s) AS last_seal,
         (SELECT max(s.upto_at) FROM gdpr.access_log_seals s) AS sealed_upto,
         (SELECT count(*) FROM gdpr.access_log l
           WHERE l.at >= coalesce((SELECT max(s.upto_at) FROM gdpr.access_log_seals s), '-infinity')) AS unsealed_rows,
         (SELECT count(*) FROM gdpr.access_log_journal j) AS journal_rows,
         (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass) AS partitions
    FROM gdpr.access_log_queue() q;
COMMENT ON VIEW gdpr.access_log_status IS 'the read queue, the last seal, rows waiting for a seal, writes waiting in the journal, partitions';

-- The column of tbl holding its subject's key, for the log triggers' argument:
-- '' when the subject is reached through other tables.
CREATE FUNCTION gdpr._log_subject_column(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.registered_tables := gdpr._registered(tbl);
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = r.subject_table);
BEGIN
  IF r.tbl = r.subject_table THEN
    RETURN id_col;
  ELSIF r.parent_table = r.subject_table AND r.parent_column = id_col THEN
    RETURN r.subject_column;
  END IF;
  RETURN '';
END
$$;
-- Privileges last, so that they cover every object of every part.
-- PUBLIC gets nothing: functions are executable by PUBLIC by default.
REVOKE ALL ON ALL TABLES IN SCHEMA gdpr FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gdpr FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA gdpr FROM PUBLIC;

-- The administrator's interface.
GRANT EXECUTE ON FUNCTION
  gdpr.register_subject_table(regclass, name),
  gdpr.register_table(regclass, name, regclass),
  gdpr.unregister_table(regclass),
  gdpr.classify(regclass, name, text, text, text, text),
  gdpr.set_retention(regclass, name, interval, name, text),
  gdpr.define_purpose(text, text, text, text),
  gdpr.add_recipient(text, text, text, text)
  TO gdpr_admin;

-- What both roles may call: status, vocabularies, and what the views call
-- (a function in a view runs with the privileges of the reader).
GRANT EXECUTE ON FUNCTION
  gdpr.preloaded(), gdpr._security_measures(text), gdpr._qualified(regclass), gdpr.data_categories(), gdpr.legal_bases(), gdpr.retention_actions(),
  gdpr.iso_countries(), gdpr.eea_countries(), gdpr.adequate_countries(), gdpr.transfer_safeguards()
  TO gdpr_admin, gdpr_auditor;

-- Auditors read; they never write.
GRANT SELECT ON gdpr.personal_data, gdpr.processing_register, gdpr.registry_changes, gdpr.personal_columns,
                gdpr.subject_tables, gdpr.registered_tables, gdpr.purposes, gdpr.purpose_notices,
                gdpr.recipients, gdpr.retention_policies
  TO gdpr_auditor, gdpr_admin;

-- Data subject rights: requests, restriction, export, breaches.
GRANT EXECUTE ON FUNCTION
  gdpr.open_request(text, text, timestamptz, regclass),
  gdpr.extend_request(bigint, int, text),
  gdpr.close_request(bigint, text),
  gdpr.restrict_subject(text, text, regclass),
  gdpr.lift_restriction(text, text, regclass),
  gdpr.is_restricted(text, regclass),
  gdpr.export_subject(text, regclass, boolean, bigint),
  gdpr.report_breach(text, timestamptz, bigint),
  gdpr.notify_breach(bigint, timestamptz, text)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.request_kinds(), gdpr.request_outcomes(), gdpr._recipients_of(regclass)
  TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.requests_due, gdpr.breaches_due, gdpr.requests, gdpr.breaches, gdpr.restrictions
  TO gdpr_auditor, gdpr_admin;

-- Crypto and masking.  Pseudonymising and masking are for everyone who may
-- process personal data; decrypting and managing keys is for gdpr_admin.
GRANT EXECUTE ON FUNCTION
  gdpr.pseudonymise(text, text), gdpr.encrypt(text, text), gdpr.mask(text, int, int), gdpr.mask_email(text),
  gdpr.mask_phone(text), gdpr.generalise(timestamptz, text), gdpr.age_band(date, int),
  gdpr.generalise_postcode(text), gdpr.ciphertext_key(bytea)
  TO gdpr_admin, gdpr_auditor;
GRANT EXECUTE ON FUNCTION
  gdpr.decrypt(bytea, text), gdpr.encrypt_for_subject(text, text, regclass),
  gdpr.shred_subject(text, regclass), gdpr.rotate_key(regclass, name, text, int),
  gdpr.rotate_subject_keys(int), gdpr.key_status()
  TO gdpr_admin;

-- The access log: auditors and administrators read it and verify it; the
-- administrator may also write the queued reads and seal now.
GRANT SELECT ON gdpr.access_log, gdpr.access_log_seals, gdpr.access_log_retention, gdpr.read_volume,
                gdpr.mass_read_alarms, gdpr.access_violations, gdpr.access_log_status
  TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION
  gdpr.verify_access_log(), gdpr.access_history(text, regclass), gdpr.access_log_queue(), gdpr._setting(text)
  TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.flush_access_log(), gdpr.seal_access_log() TO gdpr_admin;

-- Registered tables get the access log's triggers.
SELECT gdpr._attach_triggers(r.tbl) FROM gdpr.registered_tables r;
-- Month partitions belong to the data, not to the extension (as after a
-- fresh install): pg_dump then keeps them with their rows.
DO $$
DECLARE
  p regclass;
BEGIN
  FOR p IN SELECT i.inhrelid::regclass FROM pg_inherits i
            WHERE i.inhparent = 'gdpr.access_log'::regclass AND i.inhrelid <> 'gdpr.access_log_default'::regclass LOOP
    EXECUTE format('ALTER EXTENSION crm_gdpr DROP TABLE %s', p);
  END LOOP;
END
$$;
