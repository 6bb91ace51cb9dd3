-- A key file changed (issue 16.6): verify_access_log() tells what it could
-- not check (made under a master key that is not loaded) from what was
-- altered, and never reports the former as the latter.
CREATE OR REPLACE FUNCTION gdpr.verify_access_log()
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
  seal_mac bytea;
  unverified_seals bigint := 0;
  unverified_rows bigint := 0;
  unverified_keys text[] := '{}';
  row_keys text[];
BEGIN
  -- The chain.
  FOR s IN SELECT * FROM gdpr.access_log_seals x ORDER BY x.seal_id LOOP
    IF s.seal_id <> coalesce(prev.seal_id, 0) + 1 THEN
      bad_why := format('seal %s is missing', coalesce(prev.seal_id, 0) + 1);
    ELSIF s.prev_hash IS DISTINCT FROM prev.hash OR s.from_at IS DISTINCT FROM coalesce(prev.upto_at, s.from_at) THEN
      bad_why := format('seal %s does not follow seal %s', s.seal_id, prev.seal_id);
    ELSE
      -- NULL: made under a master key that is not loaded here, which says
      -- nothing of the seal (a key changed); it is counted, not reported.
      seal_mac := gdpr._log_keyed_hash(gdpr._seal_text(s), substr(s.hash, 1, 8));
      IF seal_mac IS NULL THEN
        unverified_seals := unverified_seals + 1;
        unverified_keys := unverified_keys || encode(substr(s.hash, 1, 8), 'hex');
      ELSIF seal_mac <> s.hash THEN
        bad_why := format('seal %s was altered (its MAC does not match)', s.seal_id);
      END IF;
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
  SELECT count(*), min(l.id) FILTER (WHERE l.mac IS NULL OR x.mac <> l.mac),
         count(*) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL),
         coalesce(array_agg(DISTINCT encode(substr(l.mac, 1, 8), 'hex')) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL), '{}')
    INTO n, bad_mac, unverified_rows, row_keys
    FROM gdpr.access_log l, LATERAL (SELECT gdpr._log_row_mac(l) AS mac) x;
  IF bad_mac IS NOT NULL AND (bad_id IS NULL OR bad_mac <= bad_id) THEN
    bad_id := bad_mac;
    bad_why := format('row %s was altered or forged: its MAC does not match', bad_id);
  END IF;
  IF bad_id IS NULL AND unverified_seals + unverified_rows > 0 THEN
    -- Nothing found altered, but not everything could be checked: not a clean bill, not an alarm.
    RETURN QUERY SELECT NULL::boolean, n, NULL::bigint,
      format('%s rows, %s seals: nothing altered among those checked; %s seals and %s rows were made under master keys that are not loaded (%s): name their files in crm_gdpr.retired_key_files to verify them',
             n, coalesce(prev.seal_id, 0), unverified_seals, unverified_rows,
             (SELECT string_agg(DISTINCT k, ', ') FROM unnest(unverified_keys || row_keys) k));
    RETURN;
  END IF;
  RETURN QUERY SELECT bad_id IS NULL, n, bad_id, coalesce(bad_why, format('%s rows, %s seals: intact', n,
                                                                     coalesce(prev.seal_id, 0)));
END
$$;
