-- Last of the 0.3 parts: the functions that several concerns of 0.3 changed
-- (read log: partitions; links: soft delete and several links; rules:
-- departures, suppression and duplicates), in their final form, as
-- src/sql defines them after those concerns were put together.

-- The UPDATE, DELETE and TRUNCATE log triggers of one table, without
-- arguments (the INSERT trigger's is the subject column).
CREATE FUNCTION gdpr._attach_argless_log_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS gdpr_old NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS gdpr_old
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
END
$$;

-- The triggers on one table (a registered one, or a partition or child of
-- it); col is the registered table's subject key column ('' when reached
-- through other tables).
CREATE OR REPLACE FUNCTION gdpr._attach_triggers_to(tbl regclass, col text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._own_ddl(true);
  -- The access log (80_access_log.sql, log_write.c): one row per statement.
  -- The UPDATE and DELETE triggers also refuse changes to a restricted
  -- subject's rows (Art. 18, restriction.c).  Only the INSERT trigger has
  -- the subject column as its argument: PostgreSQL copies every trigger's
  -- arguments at every statement that writes the table, the others read it
  -- there (src/rel_cache.c).
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  PERFORM gdpr._attach_argless_log_triggers(tbl);
  -- Subjects who leave (76_departures.sql) and contact points that come back (77_suppression.sql).
  PERFORM gdpr._attach_subject_triggers(tbl);
  -- Restriction stops reads (Art. 18, restriction_reads.c).
  PERFORM gdpr._attach_restriction_policy(tbl, col);
  PERFORM gdpr._own_ddl(false);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- The argument is the subject key column, found here once rather than per
  -- statement ('' when the subject is reached through other tables).
  col text := gdpr._log_subject_column(tbl);
  child regclass;
BEGIN
  PERFORM gdpr._attach_triggers_to(tbl, col);
  FOR child IN SELECT gdpr._descendants(tbl) LOOP
    PERFORM gdpr._attach_triggers_to(child, col);
  END LOOP;
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
  rel regclass;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t, rel IN SELECT g.tgname, g.tgrelid::regclass FROM pg_trigger g
                  WHERE g.tgrelid IN (SELECT tbl UNION SELECT gdpr._descendants(tbl))
                    AND NOT g.tgisinternal AND g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, rel);
  END LOOP;
  FOR rel IN SELECT tbl UNION SELECT gdpr._descendants(tbl) LOOP
    PERFORM gdpr._detach_restriction_policy(rel);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

-- The subject ids that may be processed for a purpose now: what a marketing
-- export must use.  Reads the current-state table through its primary key's
-- leading columns (subject_table, purpose), never the ledger.  Where the
-- answer needs the subject table (the B2C prospect rule, purposes without
-- consent), the caller needs SELECT on it and it is read as its owner, the
-- restricted subjects passed in as a parameter.
CREATE OR REPLACE FUNCTION gdpr.contactable(purpose text, subject_table regclass DEFAULT NULL) RETURNS SETOF text
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

CREATE OR REPLACE FUNCTION gdpr.erase_subject(subject_id text, request_id bigint DEFAULT NULL,
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
  PERFORM gdpr._refuse_unregistered_referrers(st, key);
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
    tables := tables || gdpr._erase_table(t.tbl, st, key);
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

-- What may be done with his data for a purpose now; see doc/consent.md.
CREATE OR REPLACE FUNCTION gdpr.may_process(subject_id text, purpose text, subject_table regclass DEFAULT NULL) RETURNS boolean
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

-- What Art. 15(1) says the person must be told, for the purposes for which
-- the tables of his subject table hold data.
CREATE OR REPLACE FUNCTION gdpr._subject_information(subject_table regclass, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL: the plan of this query over the register is kept for the
  -- session (as SQL with SET it was planned again at every export).
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object(
             'purpose', pr.purpose,
             'description', pr.description,
             'legal_basis', pr.legal_basis,
             'notice_version', pr.notice_version,
             'data_categories', to_jsonb(pr.data_categories),
             'personal_data', to_jsonb(pr.personal_data),
             'recipients', to_jsonb(pr.recipients),
             'transfers_outside_eea', to_jsonb(pr.transfers_outside_eea),
             'retention', to_jsonb(pr.retention)) ORDER BY pr.purpose), '[]')
      FROM gdpr.processing_register pr
     WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr._subject_tree(_subject_information.subject_table) t
                                                        ON t.tbl = pc.tbl
                    WHERE pc.purpose = pr.purpose)
       AND (NOT portability OR pr.legal_basis IN ('consent', 'contract')));
END
$$;



-- The suppression list's cache in every backend (src/suppression_gate.c).
CREATE FUNCTION gdpr._suppressions_changed() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_suppressions_changed';
CREATE TRIGGER suppressions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.suppressions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._suppressions_changed();
-- Called by _attach_triggers (25_triggers.sql) for every registered table:
-- the triggers of subject tables.
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
    -- The suppression list, where data enters (77_suppression.sql), is checked
    -- by the access log's INSERT and UPDATE triggers (log_write.c).
    IF NOT was_open THEN
      PERFORM gdpr._own_ddl(false);
    END IF;
  END IF;
END
$$;

SELECT gdpr._attach_subject_triggers(s.tbl) FROM gdpr.subject_tables s;

-- The state of the access log: the queue and seals (45), verification checkpoints (47),
-- the writes waiting in the journal and why the log writer waits for its key (46), in both journals (49).
CREATE OR REPLACE VIEW gdpr.access_log_status AS
  SELECT q.capacity, q.queued, q.enqueued, q.written, q.dropped, q.logged_to_server_log,
         (SELECT max(s.seal_id) FROM gdpr.access_log_seals s) AS last_seal,
         (SELECT max(s.upto_at) FROM gdpr.access_log_seals s) AS sealed_upto,
         (SELECT count(*) FROM gdpr.access_log l
           WHERE l.at >= coalesce((SELECT max(s.upto_at) FROM gdpr.access_log_seals s), '-infinity')) AS unsealed_rows,
         js.journal_rows,
         (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass) AS partitions,
         (SELECT coalesce(sum(x.lost), 0) FROM gdpr.access_log_losses x)::bigint AS lost_since_install,
         (SELECT coalesce(jsonb_object_agg(y.cause, y.lost), '{}') FROM
            (SELECT x.cause, sum(x.lost) AS lost FROM gdpr.access_log_losses x GROUP BY x.cause) y) AS losses_by_cause,
         (SELECT c.verified_upto FROM gdpr.access_log_checkpoints c ORDER BY c.id DESC LIMIT 1) AS verified_upto,
         js.journal_oldest,
         gdpr.access_log_key_problem() AS key_problem
    FROM gdpr.access_log_queue() q, gdpr.access_log_journals() js;
COMMENT ON VIEW gdpr.access_log_status IS 'the read queue, the last seal, rows waiting for a seal, writes waiting in the journal (and since when), partitions, reads lost since install by cause, verified up to, and why the log writer waits for its key (NULL: it does not)';
