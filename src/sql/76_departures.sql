-- Subjects who left: erased (75_erasure.sql) or whose row was deleted (the
-- purge, or the CRM itself).  A trigger on every registered subject table
-- records each deleted subject by a keyed pseudonym, so that an application
-- asking about him later learns "no" rather than an error, and only a
-- subject nobody ever knew is one (issue 23.8).

CREATE TABLE gdpr.departed_subjects (
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,            -- gdpr._subject_ref: the erasure ledger's pseudonym
  departed_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_table, subject_ref)
);
COMMENT ON TABLE gdpr.departed_subjects IS
  'subjects whose row was deleted, by keyed pseudonym only: they existed, they are gone';
SELECT pg_catalog.pg_extension_config_dump('gdpr.departed_subjects', '');

-- Whether the master key is configured: pseudonyms need it.  Without it
-- departures cannot be recorded, and nothing else is refused for that.
CREATE FUNCTION gdpr._has_key() RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN coalesce(current_setting('crm_gdpr.key_file', true), '') <> '';

-- 'erased' or 'deleted' when the subject is known to have left, else NULL.
CREATE FUNCTION gdpr._subject_gone(st regclass, subject_id text) RETURNS text
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

-- The subject table of a subject the caller asks about: NULL when he is
-- gone (erased, even if his row is kept anonymised for his invoices, or
-- deleted), P0002 when he is unknown.
CREATE FUNCTION gdpr._present_subject(subject_table regclass, subject_id text) RETURNS regclass
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

-- After a DELETE on a subject table, once per statement, over its
-- transition table: the subjects of the deleted rows are recorded as
-- departed, objectors' contact points go on the suppression list
-- (77_suppression.sql) and consent events follow them (50_consent.sql).
-- Without a key only the last is possible: the events are then removed.
CREATE FUNCTION gdpr._subjects_departed() RETURNS trigger
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
                      SELECT %L, gdpr._subject_ref(%L, gdpr._text(g.%I)) FROM gdpr_gone g
                    ON CONFLICT ON CONSTRAINT departed_subjects_pkey DO NOTHING', st, st, id_col);
    objectors := gdpr._suppress_objectors_sql(st, id_col);
    IF objectors IS NOT NULL AND EXISTS (SELECT FROM gdpr.consent_state s WHERE s.subject_table = st) THEN
      EXECUTE objectors;
    END IF;
  END IF;
  IF EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = st) THEN
    EXECUTE format('SELECT array_agg(gdpr._text(g.%1$I)) FROM gdpr_gone g
                     WHERE EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = %2$L::regclass
                                      AND l.subject_id = gdpr._text(g.%1$I))', id_col, st)
      INTO ids;
    IF ids IS NOT NULL THEN
      PERFORM gdpr._retire_consent(st, ids);
    END IF;
  END IF;
  RETURN NULL;
END
$$;

-- Before the purge anonymises rows of a subject table that kept rows refer
-- to (gdpr._purge_anonymise, issue 23.1): those subjects lose their identity,
-- so their consent events follow as if they had left (issue 23.2).  cond:
-- the purge's condition on alias t, with $1 = excluded (held, restricted).
CREATE FUNCTION gdpr._retire_consent_of_rows(tbl regclass, cond text, excluded text[]) RETURNS void
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

-- Called by _attach_triggers (25_triggers.sql) for every registered table:
-- the triggers of subject tables.
CREATE FUNCTION gdpr._attach_subject_triggers(tbl regclass) RETURNS void
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

GRANT SELECT ON gdpr.departed_subjects TO gdpr_auditor, gdpr_admin;
