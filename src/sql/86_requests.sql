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
