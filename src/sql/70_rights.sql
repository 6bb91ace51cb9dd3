-- Data subject rights (Art. 12-22): the requests register with its clocks,
-- restriction of processing (Art. 18), the subject export (Art. 15, 20), and
-- the breach register (Art. 33).

-- SQL that lists the subject ids (as text) of the rows in relation src, rows
-- of registered table tbl: every link up to tbl's subject table, joined
-- through the parents (src.link_column -> parent ... -> subject's id).
CREATE FUNCTION gdpr._subject_ids_sql(tbl regclass, src text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN coalesce(gdpr._subject_ids_sql(tbl, (gdpr._registered(tbl)).subject_table, src),
                  'SELECT NULL::text WHERE false');
END
$$;

-- The same towards subject table st; NULL when tbl does not lead to it.
CREATE FUNCTION gdpr._subject_ids_sql(tbl regclass, st regclass, src text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st);
  l gdpr.subject_links;
  typ text;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('SELECT t.%I::text FROM %s t', id_col, src);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _subject_ids_sql.tbl ORDER BY x.id LOOP
    typ := CASE WHEN l.type_column IS NOT NULL THEN format(' AND t.%I = %L', l.type_column, l.type_value) ELSE '' END;
    IF l.parent_table = st AND l.parent_column = id_col AND l.extra_link_columns IS NULL THEN
      parts := parts || format('SELECT t.%I::text FROM %s t WHERE t.%I IS NOT NULL%s', l.link_column, src, l.link_column, typ);
    ELSE
      up := gdpr._subject_ids_sql(l.parent_table, st, format('(SELECT p.* FROM %s p WHERE (%s) IN (SELECT %s FROM %s t WHERE true%s))',
                                                           l.parent_table, gdpr._link_cols(l, 'p.', true),
                                                           gdpr._link_cols(l, 't.', false), src, typ));
      IF up IS NOT NULL THEN
        parts := parts || up;
      END IF;
    END IF;
  END LOOP;
  IF cardinality(parts) = 0 THEN
    RETURN NULL;
  ELSIF cardinality(parts) = 1 THEN
    RETURN 'SELECT DISTINCT * FROM (' || parts[1] || ') ids';
  END IF;
  RETURN array_to_string(parts, ' UNION ');
END
$$;

-- SQL condition selecting the rows of tbl that belong to one subject of tbl's
-- own subject table (see the three-argument form).
CREATE FUNCTION gdpr._subject_rows_cond(tbl regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._subject_rows_cond(tbl, (gdpr._registered(tbl)).subject_table, key_literal);
END
$$;

-- SQL condition selecting the rows of tbl that belong to one subject of st,
-- by going down from the subject's key: each step uses the link column's
-- index.  Several links are OR-ed as a list of row ids (a plain OR of IN
-- subqueries would scan the table); 'false' when no link leads to st.
CREATE FUNCTION gdpr._subject_rows_cond(tbl regclass, st regclass, key_literal text) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  l gdpr.subject_links;
  up text;
  parts text[] := '{}';
BEGIN
  IF tbl = st THEN
    RETURN format('%I = %s', (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = st), key_literal);
  END IF;
  FOR l IN SELECT * FROM gdpr.subject_links x WHERE x.tbl = _subject_rows_cond.tbl ORDER BY x.id LOOP
    up := gdpr._subject_rows_cond(l.parent_table, st, key_literal);
    CONTINUE WHEN up = 'false';
    parts := parts || format('(%s) IN (SELECT %s FROM %s WHERE %s)%s', gdpr._link_cols(l, '', false),
                             gdpr._link_cols(l, '', true), l.parent_table, up,
                             CASE WHEN l.type_column IS NOT NULL THEN format(' AND %I = %L', l.type_column, l.type_value) ELSE '' END);
  END LOOP;
  IF cardinality(parts) = 0 THEN
    RETURN 'false';
  ELSIF cardinality(parts) = 1 THEN
    RETURN parts[1];
  END IF;
  RETURN format('ctid = ANY (ARRAY(%s))',
                (SELECT string_agg(format('SELECT ctid FROM %s WHERE %s', tbl, x), ' UNION ') FROM unnest(parts) x));
END
$$;

-- The registered tables of one subject table, parents before children: the
-- tables linked to it, to them, and so on (a table reached by several paths
-- comes once, at its deepest, so that an erasure does children first).
CREATE FUNCTION gdpr._subject_tree(subject_table regclass)
  RETURNS TABLE (tbl regclass, depth int)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- PL/pgSQL, not SQL: its plan is kept for the session (a SQL function with
  -- SET is planned again at every call, and export and erasure call this).
  RETURN QUERY
    WITH RECURSIVE tree AS (
      SELECT r.tbl, 0 AS depth, ARRAY[r.tbl::oid] AS path
        FROM gdpr.registered_tables r WHERE r.tbl = _subject_tree.subject_table
      UNION ALL
      SELECT l.tbl, tree.depth + 1, tree.path || l.tbl::oid
        FROM gdpr.subject_links l JOIN tree ON l.parent_table = tree.tbl
       WHERE l.tbl::oid <> ALL (tree.path))
    SELECT tree.tbl, max(tree.depth)::int FROM tree GROUP BY tree.tbl ORDER BY 2, tree.tbl::text;
END
$$;

---------------------------------------------------------------- requests

CREATE FUNCTION gdpr.request_kinds() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['access', 'rectification', 'erasure', 'restriction', 'portability', 'objection'];

CREATE FUNCTION gdpr.request_outcomes() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['fulfilled', 'partially_fulfilled', 'refused', 'withdrawn'];

CREATE TABLE gdpr.requests (
  id                bigserial PRIMARY KEY,
  subject_table     regclass NOT NULL,
  subject_id        text NOT NULL,
  kind              text NOT NULL CHECK (kind = ANY (gdpr.request_kinds())),
  received_at       timestamptz NOT NULL,
  due_at            timestamptz NOT NULL,
  extended_months   int NOT NULL DEFAULT 0 CHECK (extended_months BETWEEN 0 AND 2),
  extension_reason  text,
  subject_found     boolean NOT NULL,
  opened_by         name NOT NULL DEFAULT session_user,
  closed_at         timestamptz,
  outcome           text CHECK (outcome = ANY (gdpr.request_outcomes())),
  closed_by         name,
  CHECK ((closed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX ON gdpr.requests (subject_table, subject_id);
CREATE INDEX ON gdpr.requests (due_at) WHERE closed_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('gdpr.requests', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.requests_id_seq', '');
COMMENT ON TABLE gdpr.requests IS 'requests of data subjects (Art. 15-22) and their one-month clock (Art. 12(3))';

-- Reject a time in the future beyond a little clock skew between servers.
CREATE FUNCTION gdpr._not_future(at timestamptz, what text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF at > now() + interval '5 minutes' THEN
    RAISE EXCEPTION '% is in the future', what
      USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s; now is %s.', at, now());
  END IF;
END
$$;

CREATE FUNCTION gdpr.open_request(subject_id text, kind text, received_at timestamptz DEFAULT now(),
                                  subject_table regclass DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  rid bigint;
BEGIN
  PERFORM gdpr._one_of(kind, gdpr.request_kinds(), 'request kind');
  PERFORM gdpr._not_null(received_at, 'received_at');
  PERFORM gdpr._not_future(received_at, 'received_at');
  -- A person the CRM does not know may still ask (the answer is then "we hold
  -- nothing"): the request is recorded with subject_found = false.
  INSERT INTO gdpr.requests (subject_table, subject_id, kind, received_at, due_at, subject_found)
    VALUES (st, subject_id, kind, received_at, received_at + interval '1 month',
            gdpr._subject_exists(st, subject_id))
    RETURNING id INTO rid;
  RETURN rid;
END
$$;

-- The open request, locked; 42704 / 55000 otherwise.
CREATE FUNCTION gdpr._open_request(request_id bigint) RETURNS gdpr.requests
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests;
BEGIN
  PERFORM gdpr._not_null(request_id, 'request_id');
  SELECT * INTO r FROM gdpr.requests x WHERE x.id = request_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'request % does not exist', request_id USING ERRCODE = 'undefined_object';
  END IF;
  IF r.closed_at IS NOT NULL THEN
    RAISE EXCEPTION 'request % is already closed', request_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Closed at %s with outcome %s.', r.closed_at, r.outcome);
  END IF;
  RETURN r;
END
$$;

CREATE FUNCTION gdpr.extend_request(request_id bigint, months int, reason text) RETURNS timestamptz
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests := gdpr._open_request(request_id);
BEGIN
  PERFORM gdpr._not_null(months, 'months');
  PERFORM gdpr._not_blank(reason, 'an extension needs a reason',
                          'Art. 12(3): the person must be told why, within the first month.');
  IF months < 1 OR r.extended_months + months > 2 THEN
    RAISE EXCEPTION 'a request can be extended by two months at most'
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('Already extended by %s month(s); asked for %s more.', r.extended_months, months);
  END IF;
  IF now() > r.received_at + interval '1 month' THEN
    RAISE EXCEPTION 'request % can no longer be extended', request_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'Art. 12(3): the extension must be decided within one month of receipt.';
  END IF;
  UPDATE gdpr.requests x
     SET extended_months = x.extended_months + months,
         due_at = x.received_at + make_interval(months => 1 + x.extended_months + months),
         extension_reason = concat_ws('; ', x.extension_reason, reason)
   WHERE x.id = request_id
  RETURNING x.due_at INTO r.due_at;
  RETURN r.due_at;
END
$$;

CREATE FUNCTION gdpr.close_request(request_id bigint, outcome text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._open_request(request_id);
  PERFORM gdpr._one_of(outcome, gdpr.request_outcomes(), 'request outcome');
  UPDATE gdpr.requests x SET closed_at = now(), outcome = close_request.outcome, closed_by = session_user
   WHERE x.id = request_id;
END
$$;

-- Close the request an export or erasure answers, after checking it is his.
CREATE FUNCTION gdpr._answer_request(request_id bigint, st regclass, subject_id text, kinds text[]) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r gdpr.requests;
BEGIN
  IF request_id IS NULL THEN
    RETURN;
  END IF;
  r := gdpr._open_request(request_id);
  IF r.subject_table <> st OR r.subject_id <> subject_id THEN
    RAISE EXCEPTION 'request % is not a request of subject "%"', request_id, subject_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT r.kind = ANY (kinds) THEN
    RAISE EXCEPTION 'request % is a request of kind %', request_id, r.kind
      USING ERRCODE = 'invalid_parameter_value',
            HINT = format('This function answers requests of kind %s.', array_to_string(kinds, ' or '));
  END IF;
  UPDATE gdpr.requests x SET closed_at = now(), outcome = 'fulfilled', closed_by = session_user
   WHERE x.id = request_id;
END
$$;

CREATE VIEW gdpr.requests_due AS
SELECT r.id, r.subject_table, r.subject_id, r.kind, r.received_at, r.due_at, r.extended_months,
       r.extension_reason, r.subject_found,
       CASE WHEN now() > r.due_at THEN 'overdue'
            WHEN now() > r.due_at - interval '7 days' THEN 'due soon'
            ELSE 'open' END AS state,
       date_trunc('second', r.due_at - now()) AS time_left,
       -- Recipients to tell of a rectification, erasure or restriction (Art.
       -- 19): those of the purposes for which the subject's tables hold data.
       CASE WHEN r.kind IN ('rectification', 'erasure', 'restriction')
            THEN (SELECT coalesce(array_agg(DISTINCT format('%s (%s)', x.name, x.country)), '{}')
                    FROM gdpr.recipients x
                   WHERE EXISTS (SELECT FROM gdpr.personal_columns pc JOIN gdpr.registered_tables t ON t.tbl = pc.tbl
                                  WHERE pc.purpose = x.purpose AND t.subject_table = r.subject_table))
            ELSE '{}' END AS recipients_to_notify
  FROM gdpr.requests r
 WHERE r.closed_at IS NULL;
COMMENT ON VIEW gdpr.requests_due IS 'open requests with their deadline: open, due soon (7 days), overdue';

---------------------------------------------------------------- restriction

CREATE TABLE gdpr.restrictions (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_id     text NOT NULL,
  reason         text NOT NULL,
  restricted_at  timestamptz NOT NULL DEFAULT now(),
  restricted_by  name NOT NULL DEFAULT session_user,
  lifted_at      timestamptz,
  lifted_by      name,
  lift_reason    text
);
CREATE UNIQUE INDEX restrictions_active ON gdpr.restrictions (subject_table, subject_id) WHERE lifted_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('gdpr.restrictions', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.restrictions_id_seq', '');
COMMENT ON TABLE gdpr.restrictions IS 'restrictions of processing (Art. 18), current and lifted';
-- Each backend caches whether any restriction is in force (restriction.c):
-- every change tells them to look again.
CREATE FUNCTION gdpr._restrictions_changed() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_restrictions_changed';
CREATE TRIGGER restrictions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.restrictions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._restrictions_changed();

-- The gdpr_restriction policies are armed while a restriction is active,
-- dormant (USING (true): no cost per row read) while none is
-- (src/restriction_dormant.c): every change of gdpr.restrictions makes them
-- follow, whoever makes it.
CREATE FUNCTION gdpr._restrictions_active() RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.restrictions r WHERE r.lifted_at IS NULL);
-- The registered relations (partitions and children included) whose policy
-- is not yet in the state armed, with the expression it needs.
CREATE FUNCTION gdpr._restriction_policy_drift(armed boolean) RETURNS TABLE (tbl regclass, qual text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- STABLE: it reads with its caller's snapshot (a fresh one, restriction_dormant.c).
  RETURN QUERY
    SELECT y.t, q.qual
      FROM (SELECT r.tbl AS t, r.tbl AS reg FROM gdpr.registered_tables r
            UNION SELECT gdpr._descendants(r.tbl), r.tbl FROM gdpr.registered_tables r) y
      JOIN pg_policy p ON p.polrelid = y.t AND p.polname = 'gdpr_restriction'
      CROSS JOIN LATERAL (SELECT gdpr._restriction_policy_qual(gdpr._log_subject_column(y.reg), armed) AS qual) q
     WHERE pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM q.qual
     ORDER BY y.t;
END
$$;
CREATE FUNCTION gdpr._restriction_policy_armed() RETURNS boolean
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_armed';
CREATE FUNCTION gdpr._restriction_policy_follow() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_follow';
CREATE TRIGGER restrictions_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.restrictions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._restriction_policy_follow();
-- The purge worker's round: the policies brought to the state of
-- gdpr.restrictions (a disarm given up on a busy table, a restriction
-- written without triggers); how many were changed (src/restriction_dormant.c).
CREATE FUNCTION gdpr._restriction_policy_reconcile() RETURNS integer
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_reconcile';

CREATE FUNCTION gdpr.is_restricted(subject_id text, subject_table regclass DEFAULT NULL) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.restrictions r
                  WHERE r.subject_table = gdpr._subject_table(is_restricted.subject_table)
                    AND r.subject_id = is_restricted.subject_id AND r.lifted_at IS NULL);

CREATE FUNCTION gdpr.restrict_subject(subject_id text, reason text, subject_table regclass DEFAULT NULL)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  rid bigint;
BEGIN
  -- Restricting decides who may change his rows: it needs UPDATE on them.
  PERFORM gdpr._require_privilege(st, 'UPDATE', 'gdpr.restrict_subject()');
  PERFORM gdpr._not_blank(reason, 'a restriction needs a reason',
    'Art. 18(1): accuracy contested, unlawful processing, needed for a legal claim, or objection pending.');
  IF gdpr.is_restricted(subject_id, st) THEN
    RAISE EXCEPTION 'subject "%" is already restricted', subject_id USING ERRCODE = 'duplicate_object';
  END IF;
  INSERT INTO gdpr.restrictions (subject_table, subject_id, reason) VALUES (st, subject_id, reason)
    RETURNING id INTO rid;
  -- The append-only log names the restriction, never its free-text reason
  -- (which goes with the subject if he is erased).
  PERFORM gdpr._log_event('RESTRICT', st, ARRAY[subject_id], 1, jsonb_build_object('restriction_id', rid));
END
$$;

CREATE FUNCTION gdpr.lift_restriction(subject_id text, reason text DEFAULT NULL,
                                      subject_table regclass DEFAULT NULL) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  rid bigint;
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  PERFORM gdpr._require_privilege(st, 'UPDATE', 'gdpr.lift_restriction()');
  UPDATE gdpr.restrictions r SET lifted_at = now(), lifted_by = session_user, lift_reason = lift_restriction.reason
   WHERE r.subject_table = st AND r.subject_id = lift_restriction.subject_id AND r.lifted_at IS NULL
  RETURNING r.id INTO rid;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'subject "%" is not restricted', subject_id USING ERRCODE = 'undefined_object';
  END IF;
  PERFORM gdpr._log_event('LIFT RESTRICTION', st, ARRAY[subject_id], 1, jsonb_build_object('restriction_id', rid));
END
$$;

-- The subject table whose restrictions apply to tbl, when any is active.
CREATE FUNCTION gdpr._restriction_active(tbl regclass) RETURNS regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT r.subject_table FROM gdpr.registered_tables r
   WHERE r.tbl = _restriction_active.tbl
     AND EXISTS (SELECT FROM gdpr.restrictions x WHERE x.subject_table = r.subject_table AND x.lifted_at IS NULL)
$$;

-- The first of ids that is restricted, or NULL.
CREATE FUNCTION gdpr._first_restricted(subject_table regclass, ids text[]) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT min(x.subject_id) FROM gdpr.restrictions x
   WHERE x.subject_table = _first_restricted.subject_table AND x.subject_id = ANY (ids) AND x.lifted_at IS NULL
$$;

-- While a subject is restricted, his rows may be changed or deleted only by
-- gdpr_admin: the access log's UPDATE and DELETE statement triggers refuse
-- the others (src/restriction.c, called from src/log_write.c).

-- Restriction stops reads (src/restriction_reads.c): the expression of the
-- gdpr_restriction policy on every registered table (25_triggers.sql), with
-- the row's subject key when the table holds it.  Every role reading the
-- table executes it, as any policy's function.
CREATE FUNCTION gdpr.restriction_visible(tableoid oid, row_id tid) RETURNS boolean
  LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'gdpr_restriction_visible';
CREATE FUNCTION gdpr.restriction_visible(tableoid oid, row_id tid, subject_key anyelement) RETURNS boolean
  LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'gdpr_restriction_visible';

-- The tables whose owner switched the restriction's read filter off: they
-- carry no gdpr_restriction policy (25_triggers.sql).
CREATE TABLE gdpr.restriction_read_optouts (
  tbl     regclass PRIMARY KEY REFERENCES gdpr.registered_tables ON DELETE CASCADE,
  set_at  timestamptz NOT NULL DEFAULT now(),
  set_by  name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.restriction_read_optouts', '');
COMMENT ON TABLE gdpr.restriction_read_optouts IS
  'registered tables whose restricted subjects'' rows are not hidden from readers (gdpr.set_restriction_reads)';

-- Switch the read filter of one registered table (its partitions and
-- children with it): 'filter' (the default) or 'off'.  The table's owner's
-- rights are needed, as to register it; recorded in registry_changes.
CREATE FUNCTION gdpr.set_restriction_reads(tbl regclass, mode text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._registered(tbl);
  PERFORM gdpr._require_table_owner(tbl, 'gdpr.set_restriction_reads()');
  PERFORM gdpr._one_of(mode, ARRAY['filter', 'off'], 'restriction reads mode');
  IF mode = 'off' THEN
    INSERT INTO gdpr.restriction_read_optouts (tbl) VALUES (tbl) ON CONFLICT DO NOTHING;
  ELSE
    DELETE FROM gdpr.restriction_read_optouts o WHERE o.tbl = set_restriction_reads.tbl;
  END IF;
  PERFORM gdpr._refresh_restriction_policies();
  PERFORM gdpr._note_change('restriction reads', tbl::text, format('%s by %s', mode, gdpr._caller()));
END
$$;

-- SQL listing (tableoid, ctid, subject id) of the rows of registered table
-- tbl (its partitions and children included) that belong to a restricted
-- subject, one branch per restricted subject of its subject table; NULL when
-- none is restricted.  Run as the table's owner.
CREATE FUNCTION gdpr._restricted_rows_sql(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := (SELECT r.subject_table FROM gdpr.registered_tables r WHERE r.tbl = _restricted_rows_sql.tbl);
BEGIN
  RETURN (SELECT string_agg(format('SELECT t.tableoid, t.ctid, %L::text FROM %s t WHERE %s', x.subject_id, tbl,
                                   gdpr._subject_rows_cond(tbl, st, quote_literal(x.subject_id))), ' UNION ALL '
                            ORDER BY x.subject_id)
            FROM gdpr.restrictions x WHERE x.subject_table = st AND x.lifted_at IS NULL);
END
$$;

---------------------------------------------------------------- export

-- What Art. 15(1) says the person must be told, for the purposes for which
-- the tables of his subject table hold data.
CREATE FUNCTION gdpr._subject_information(subject_table regclass, portability boolean) RETURNS jsonb
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

-- A bytea value in an export: decrypted when it is a crm_gdpr ciphertext of
-- the subject's own key, or of the master key with the column's name as
-- context (the documented convention); otherwise as it is, in hex.
CREATE FUNCTION gdpr._export_bytea(value bytea, context text) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF value IS NULL THEN
    RETURN 'null';
  END IF;
  IF substr(value, 1, 2) = '\x4744'::bytea THEN
    BEGIN
      RETURN to_jsonb(gdpr.decrypt(value, CASE WHEN gdpr._ciphertext_subject_key(value) IS NULL THEN context ELSE '' END));
    EXCEPTION WHEN OTHERS THEN
      RETURN jsonb_build_object('encrypted', true, 'readable', false, 'reason', SQLERRM);
    END;
  END IF;
  RETURN to_jsonb(encode(value, 'hex'));
END
$$;

-- The subject's rows of one registered table, as a JSON array of objects
-- (column name: value).  Read as the table's owner with to_jsonb (any width:
-- no function-argument limit); bytea values come out as hex and are decrypted
-- here, outside the owner's statement.  The subject's key is the statement's
-- $1, so that its text is the same for every subject and its plan is kept
-- (gdpr._owner_query_kept).
CREATE FUNCTION gdpr._export_rows(tbl regclass, st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cols name[];
  bin_cols name[];
  rows jsonb;
  trashed text := gdpr._soft_deleted_cond(tbl, 't');
BEGIN
  -- The columns shown: all of them, or for portability (Art. 20) the keys
  -- and the columns classified under consent or contract.
  SELECT array_agg(a.attname ORDER BY a.attnum), coalesce(array_agg(a.attname) FILTER (WHERE a.atttypid = 'bytea'::regtype), '{}')
    INTO cols, bin_cols
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT portability
          OR EXISTS (SELECT FROM gdpr.personal_columns pc
                      WHERE pc.tbl = _export_rows.tbl AND pc.col = a.attname AND pc.legal_basis IN ('consent', 'contract'))
          OR EXISTS (SELECT FROM pg_constraint c
                      WHERE c.conrelid = _export_rows.tbl AND c.contype IN ('p', 'f') AND a.attnum = ANY (c.conkey)));
  -- Rows in the CRM's trash (gdpr.set_soft_delete) are marked "_deleted": true.
  -- c.*, the whole row: a bare c would be a column named c.
  rows := gdpr._owner_query_kept(tbl, format(
    'SELECT coalesce(jsonb_agg((SELECT to_jsonb(c.*) FROM (SELECT %s) c)%s ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
    (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
    CASE WHEN trashed IS NOT NULL
         THEN format(' || CASE WHEN %s THEN ''{"_deleted": true}''::jsonb ELSE ''{}''::jsonb END', trashed) ELSE '' END,
    tbl, gdpr._subject_rows_cond(tbl, st, gdpr._subject_key_param(st))), subject_id);
  IF cardinality(bin_cols) = 0 OR jsonb_array_length(rows) = 0 THEN
    RETURN rows;
  END IF;
  SELECT jsonb_agg(r || (SELECT jsonb_object_agg(b, gdpr._export_bytea(decode(substr(r ->> b, 3), 'hex'),
                                                                       gdpr.qualified_name(tbl) || '.' || b))
                           FROM unnest(bin_cols) b) ORDER BY i)
    INTO rows FROM jsonb_array_elements(rows) WITH ORDINALITY x(r, i);
  RETURN rows;
END
$$;

-- Every row of every registered table that belongs to the subject.  Each
-- table is reached from the subject's key through indexed foreign keys, so
-- the cost follows the subject's rows, not the size of the tables.
CREATE FUNCTION gdpr._subject_data(st regclass, subject_id text, portability boolean) RETURNS jsonb
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t record;
  data jsonb := '{}';
BEGIN
  PERFORM gdpr._not_null(subject_id, 'subject_id');
  -- A partition registered beside its parent is read through the parent
  -- only; keys are "schema.table" as documented, never quoted identifiers.
  FOR t IN SELECT tree.tbl, format('%s.%s', n.nspname, c.relname) AS label
             FROM gdpr._subject_tree(st) tree
             JOIN pg_class c ON c.oid = tree.tbl JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT EXISTS (SELECT FROM pg_partition_ancestors(tree.tbl) up
                               JOIN gdpr.registered_tables r ON r.tbl = up.relid
                              WHERE up.relid <> tree.tbl) LOOP
    -- Read-only: a table the caller may not read stops the export before
    -- anything is returned (all or nothing).
    PERFORM gdpr._require_privilege(t.tbl, 'SELECT', 'gdpr.export_subject()');
    data := data || jsonb_build_object(t.label, gdpr._export_rows(t.tbl, st, subject_id, portability));
  END LOOP;
  RETURN data;
END
$$;

-- Where his data came from (Art. 15(1)(g)): the channels of his consent
-- events, with the source and partner of imports.
CREATE FUNCTION gdpr._subject_sources(st regclass, subject_id text) RETURNS jsonb
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'channel', x.channel, 'source', x.source, 'partner', x.partner, 'first_at', x.first_at))
           ORDER BY x.first_at), '[]')
    FROM (SELECT l.channel, l.proof ->> 'source' AS source, l.proof ->> 'partner' AS partner, min(l.at) AS first_at
            FROM gdpr.consent_ledger l
           WHERE l.subject_table = st AND l.subject_id = _subject_sources.subject_id
           GROUP BY 1, 2, 3) x
$$;

CREATE FUNCTION gdpr.export_subject(subject_id text, subject_table regclass DEFAULT NULL,
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

---------------------------------------------------------------- breaches

CREATE TABLE gdpr.breaches (
  id           bigserial PRIMARY KEY,
  description  text NOT NULL CHECK (btrim(description) <> ''),
  detected_at  timestamptz NOT NULL,
  subjects     bigint CHECK (subjects >= 0),
  reported_at  timestamptz NOT NULL DEFAULT now(),
  reported_by  name NOT NULL DEFAULT session_user,
  notified_at  timestamptz,
  reference    text,
  notified_by  name,
  CHECK ((notified_at IS NULL) = (reference IS NULL)),
  CHECK (notified_at IS NULL OR notified_at >= detected_at)
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.breaches', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.breaches_id_seq', '');
COMMENT ON TABLE gdpr.breaches IS 'personal data breaches and their notification to the authority (Art. 33)';

CREATE FUNCTION gdpr.report_breach(description text, detected_at timestamptz DEFAULT now(),
                                   subjects bigint DEFAULT NULL) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  bid bigint;
BEGIN
  PERFORM gdpr._not_blank(description, 'a breach needs a description');
  PERFORM gdpr._not_null(detected_at, 'detected_at');
  PERFORM gdpr._not_future(detected_at, 'detected_at');
  IF subjects < 0 THEN
    RAISE EXCEPTION 'the number of subjects cannot be negative' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO gdpr.breaches (description, detected_at, subjects) VALUES (description, detected_at, subjects)
    RETURNING id INTO bid;
  RETURN bid;
END
$$;

CREATE FUNCTION gdpr.notify_breach(breach_id bigint, notified_at timestamptz, reference text) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  b gdpr.breaches;
BEGIN
  PERFORM gdpr._not_null(breach_id, 'breach_id');
  PERFORM gdpr._not_null(notified_at, 'notified_at');
  PERFORM gdpr._not_blank(reference, 'a notification needs the authority''s reference');
  SELECT * INTO b FROM gdpr.breaches x WHERE x.id = breach_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'breach % does not exist', breach_id USING ERRCODE = 'undefined_object';
  END IF;
  IF b.notified_at IS NOT NULL THEN
    RAISE EXCEPTION 'breach % was already notified', breach_id
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = format('Notified at %s, reference %s.', b.notified_at, b.reference);
  END IF;
  PERFORM gdpr._not_future(notified_at, 'notified_at');
  IF notified_at < b.detected_at THEN
    RAISE EXCEPTION 'notified_at is before the breach was detected' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE gdpr.breaches x SET notified_at = notify_breach.notified_at, reference = btrim(notify_breach.reference),
                             notified_by = session_user
   WHERE x.id = breach_id;
END
$$;

CREATE VIEW gdpr.breaches_due AS
SELECT b.id, b.description, b.detected_at, b.subjects,
       b.detected_at + interval '72 hours' AS notify_by,
       b.notified_at, b.reference,
       CASE WHEN b.notified_at IS NOT NULL AND b.notified_at <= b.detected_at + interval '72 hours' THEN 'notified'
            WHEN b.notified_at IS NOT NULL THEN 'notified late'
            WHEN now() > b.detected_at + interval '72 hours' THEN 'overdue'
            ELSE 'open' END AS state,
       CASE WHEN b.notified_at IS NULL THEN date_trunc('second', b.detected_at + interval '72 hours' - now()) END
         AS time_left,
       (b.notified_at IS NULL AND now() > b.detected_at + interval '72 hours')
         OR b.notified_at > b.detected_at + interval '72 hours' AS late
  FROM gdpr.breaches b;
COMMENT ON VIEW gdpr.breaches_due IS 'breaches and their 72-hour notification clock (Art. 33(1))';
