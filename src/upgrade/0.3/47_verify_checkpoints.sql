-- Verification checkpoints and verification by range (issue 24.6): a daily
-- verify_access_log(since => ...) costs a day's rows; months can be checked
-- in parallel sessions.  verify_access_log() gains arguments, so the 0.2
-- function is dropped and made anew (its grants are given again below).

-- Verification checkpoints (issue 24.6): each run of verify_access_log that
-- found intact every seal and every row from a previous checkpoint (or from
-- the first row) to the last seal records "verified up to seal N, whose hash
-- is H".  A later verify_access_log(since => ...) trusts the chain up to the
-- newest checkpoint before since and recomputes only what came after, so a
-- daily check costs a day's rows, not five years'.  MACed and chained like
-- the retention's records: a checkpoint added by hand is reported as forged.
CREATE TABLE gdpr.access_log_checkpoints (
  id              bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  upto_seal       bigint NOT NULL,       -- every seal up to this one, and its rows, verified
  chain_head      bytea NOT NULL,        -- that seal's hash
  verified_upto   timestamptz NOT NULL,  -- that seal's upto_at
  rows_checked    bigint NOT NULL,       -- rows whose MAC this run recomputed
  prev_hash       bytea,
  hash            bytea
);
COMMENT ON TABLE gdpr.access_log_checkpoints IS
  'verified up to seal N with chain head H: where an incremental verify_access_log starts (MACed, chained)';

CREATE FUNCTION gdpr._chain_text(r gdpr.access_log_checkpoints) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', r.id, extract(epoch FROM r.at), r.upto_seal, encode(r.chain_head, 'hex'),
                              (extract(epoch FROM r.verified_upto) * 1000000)::bigint, r.rows_checked,
                              coalesce(encode(r.prev_hash, 'hex'), '-')), 'UTF8');

SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_checkpoints_id_seq', '');
REVOKE ALL ON SEQUENCE gdpr.access_log_checkpoints_id_seq FROM PUBLIC;   -- as a fresh install's blanket REVOKE leaves it
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_checkpoints
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');
-- verify_access_log(since => ...) starts from the blocks that end after since.
CREATE INDEX access_log_seals_upto ON gdpr.access_log_seals (upto_at);

-- The newest checkpoint at or before since that verifies, for
-- verify_access_log: the chain is trusted up to its seal.
CREATE FUNCTION gdpr._log_checkpoint_before(since timestamptz) RETURNS gdpr.access_log_checkpoints
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT r.* FROM gdpr._chain_check('gdpr.access_log_checkpoints') x JOIN gdpr.access_log_checkpoints r ON r.id = x.id
   WHERE x.state = 'ok' AND r.verified_upto <= since
   ORDER BY r.id DESC LIMIT 1
$$;

-- Record that everything up to seal s verified (see access_log_checkpoints):
-- not on a standby or in a read-only transaction, not without the key, and
-- not twice for the same seal (two verifies at once: one appends).
CREATE FUNCTION gdpr._log_checkpoint(s gdpr.access_log_seals, rows_checked bigint) RETURNS boolean
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF s.seal_id IS NULL OR pg_is_in_recovery() OR current_setting('transaction_read_only')::boolean
     OR gdpr._log_keyed_hash('\x') IS NULL THEN
    RETURN false;
  END IF;
  PERFORM gdpr._lock_own_table('gdpr.access_log_checkpoints', 60000);
  IF (SELECT max(c.upto_seal) FROM gdpr.access_log_checkpoints c) >= s.seal_id THEN
    RETURN false;
  END IF;
  PERFORM gdpr._chain_append(ROW(NULL, NULL, s.seal_id, s.hash, s.upto_at, rows_checked, NULL, NULL)::gdpr.access_log_checkpoints);
  RETURN true;
END
$$;

-- Recompute every row's MAC and every seal: the chain, the rows each block
-- holds.  Reports the first problem by row id.  Blocks older than what the
-- log's retention removed are checked in the chain only.
-- since / upto (issue 24.6): recompute only the rows with since <= at < upto
-- and the blocks that hold some of them; the seal chain is checked from the
-- newest verification checkpoint at or before since (or from the first seal),
-- so that the cost follows the rows checked, not the log's age.  Months can be
-- checked in parallel sessions, one range each.  A run that finds intact
-- everything from a checkpoint (or from the first row) to the last seal
-- records a new checkpoint (unless record_checkpoint is false: the report,
-- which only reads); daily:
--   SELECT * FROM gdpr.verify_access_log(since => (SELECT verified_upto FROM gdpr.access_log_status));
DROP FUNCTION gdpr.verify_access_log();
CREATE FUNCTION gdpr.verify_access_log(since timestamptz DEFAULT NULL, upto timestamptz DEFAULT NULL,
                                       record_checkpoint boolean DEFAULT true)
  RETURNS TABLE (ok boolean, checked bigint, first_bad_id bigint, detail text)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  horizon timestamptz;
  lo timestamptz := coalesce(since, '-infinity');
  hi timestamptz := coalesce(upto, 'infinity');
  c record;
  cp gdpr.access_log_checkpoints;
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
  scope text := '';
BEGIN
  IF lo >= hi THEN
    RAISE EXCEPTION 'nothing to verify between % and %', since, upto
      USING ERRCODE = 'invalid_parameter_value', HINT = 'since must be earlier than upto.';
  END IF;
  -- What the retention removed: a chain of MACed records; only those that
  -- verify tell which rows verify no longer looks for.
  -- The same for the record of losses and the verification checkpoints.
  FOR c IN SELECT 'retention' AS what, x.id, x.state, r.dropped_before, r.hash
             FROM gdpr._chain_check('gdpr.access_log_retention') x JOIN gdpr.access_log_retention r ON r.id = x.id
           UNION ALL
           SELECT 'loss', x.id, x.state, NULL, r.hash
             FROM gdpr._chain_check('gdpr.access_log_losses') x JOIN gdpr.access_log_losses r ON r.id = x.id
           UNION ALL
           SELECT 'checkpoint', x.id, x.state, NULL, r.hash
             FROM gdpr._chain_check('gdpr.access_log_checkpoints') x JOIN gdpr.access_log_checkpoints r ON r.id = x.id LOOP
    IF c.state = 'forged' THEN
      RETURN QUERY SELECT false, 0::bigint, NULL::bigint,
        format('%s record %s was forged or altered: its MAC or its chain does not match', c.what, c.id);
      RETURN;
    ELSIF c.state = 'unverified' THEN
      unverified_seals := unverified_seals + 1;
      unverified_keys := unverified_keys || encode(substr(c.hash, 1, 8), 'hex');
    ELSE
      horizon := greatest(horizon, c.dropped_before);
    END IF;
  END LOOP;

  -- The chain, from the checkpoint the range starts after.
  IF since IS NOT NULL THEN
    cp := gdpr._log_checkpoint_before(since);
  END IF;
  IF cp.id IS NOT NULL THEN
    SELECT * INTO prev FROM gdpr.access_log_seals x WHERE x.seal_id = cp.upto_seal;
    IF prev.hash IS DISTINCT FROM cp.chain_head THEN
      RETURN QUERY SELECT false, 0::bigint, lower(prev.ids),
        format('seal %s is not the one checkpoint %s verified: it was altered or replaced since', cp.upto_seal, cp.id);
      RETURN;
    ELSIF gdpr._log_keyed_hash(gdpr._seal_text(prev), substr(prev.hash, 1, 8)) <> prev.hash THEN
      RETURN QUERY SELECT false, 0::bigint, lower(prev.ids),
        format('seal %s was altered (its MAC does not match)', prev.seal_id);
      RETURN;
    END IF;
    scope := format(' (from checkpoint %s, seal %s)', cp.id, cp.upto_seal);
  END IF;
  FOR s IN SELECT * FROM gdpr.access_log_seals x WHERE x.seal_id > coalesce(cp.upto_seal, 0) ORDER BY x.seal_id LOOP
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

  -- Each block of the range against its rows.
  FOR s IN SELECT * FROM gdpr.access_log_seals x
            WHERE (horizon IS NULL OR x.upto_at > horizon) AND x.upto_at > lo AND x.from_at < hi
            ORDER BY x.seal_id LOOP
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

  -- Each row's MAC in the range (a block whose rows were altered in place
  -- ends up here).  lo and hi are plain bounds: months outside are pruned.
  SELECT count(*), min(l.id) FILTER (WHERE l.mac IS NULL OR x.mac <> l.mac),
         count(*) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL),
         coalesce(array_agg(DISTINCT encode(substr(l.mac, 1, 8), 'hex')) FILTER (WHERE l.mac IS NOT NULL AND x.mac IS NULL), '{}')
    INTO n, bad_mac, unverified_rows, row_keys
    FROM gdpr.access_log l, LATERAL (SELECT gdpr._log_row_mac(l) AS mac) x
   WHERE l.at >= lo AND l.at < hi;
  IF bad_mac IS NOT NULL AND (bad_id IS NULL OR bad_mac <= bad_id) THEN
    bad_id := bad_mac;
    bad_why := CASE WHEN (SELECT l.mac IS NULL FROM gdpr.access_log l WHERE l.id = bad_mac LIMIT 1)
                    THEN format('row %s has no MAC: it was not written by the log''s own writers (forged)', bad_id)
                    ELSE format('row %s was altered or forged: its MAC does not match', bad_id) END;
  END IF;
  IF since IS NOT NULL OR upto IS NOT NULL THEN
    scope := format(' between %s and %s%s', coalesce(since::text, 'the start'), coalesce(upto::text, 'now'), scope);
  END IF;
  IF bad_id IS NULL AND unverified_seals + unverified_rows > 0 THEN
    -- Nothing found altered, but not everything could be checked: not a clean bill, not an alarm.
    RETURN QUERY SELECT NULL::boolean, n, NULL::bigint,
      format('%s rows, %s seals%s: nothing altered among those checked; %s seals and %s rows were made under master keys that are not loaded (%s): name their files in crm_gdpr.retired_key_files to verify them',
             n, coalesce(prev.seal_id, 0), scope, unverified_seals, unverified_rows,
             (SELECT string_agg(DISTINCT k, ', ') FROM unnest(unverified_keys || row_keys) k));
    RETURN;
  END IF;
  -- Everything from a checkpoint (or the start) to the last seal is intact:
  -- the next run may start here.
  IF bad_id IS NULL AND upto IS NULL AND record_checkpoint
     AND (since IS NULL OR since <= greatest(cp.verified_upto, horizon,
                                             (SELECT x.from_at FROM gdpr.access_log_seals x WHERE x.seal_id = 1)))
     AND gdpr._log_checkpoint(prev, n) THEN
    scope := scope || format('; checkpoint recorded at seal %s', prev.seal_id);
  END IF;
  RETURN QUERY SELECT bad_id IS NULL, n, bad_id, coalesce(bad_why, format('%s rows, %s seals%s: intact', n,
                                                                     coalesce(prev.seal_id, 0), scope));
END
$$;
COMMENT ON FUNCTION gdpr.verify_access_log(timestamptz, timestamptz, boolean) IS
  'recompute the MACs of the access log''s rows (those with since <= at < upto) and its seals: the first problem, or intact';

-- State of the log: queue, unsealed rows, partitions.
CREATE OR REPLACE VIEW gdpr.access_log_status AS
  SELECT q.capacity, q.queued, q.enqueued, q.written, q.dropped, q.logged_to_server_log,
         (SELECT max(s.seal_id) FROM gdpr.access_log_seals s) AS last_seal,
         (SELECT max(s.upto_at) FROM gdpr.access_log_seals s) AS sealed_upto,
         (SELECT count(*) FROM gdpr.access_log l
           WHERE l.at >= coalesce((SELECT max(s.upto_at) FROM gdpr.access_log_seals s), '-infinity')) AS unsealed_rows,
         (SELECT count(*) FROM gdpr.access_log_journal j) AS journal_rows,
         (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass) AS partitions,
         (SELECT coalesce(sum(x.lost), 0) FROM gdpr.access_log_losses x)::bigint AS lost_since_install,
         (SELECT coalesce(jsonb_object_agg(y.cause, y.lost), '{}') FROM
            (SELECT x.cause, sum(x.lost) AS lost FROM gdpr.access_log_losses x GROUP BY x.cause) y) AS losses_by_cause,
         (SELECT c.verified_upto FROM gdpr.access_log_checkpoints c ORDER BY c.id DESC LIMIT 1) AS verified_upto
    FROM gdpr.access_log_queue() q;
COMMENT ON VIEW gdpr.access_log_status IS 'the read queue, the last seal, rows waiting for a seal, writes waiting in the journal, partitions, reads lost since install by cause, verified up to';

GRANT SELECT ON gdpr.access_log_checkpoints TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.verify_access_log(timestamptz, timestamptz, boolean) TO gdpr_auditor, gdpr_admin;

-- The log's BRIN indexes summarise each full page range at once (autovacuum),
-- so that a seal reads the last range of the month, not its whole tail.
CREATE OR REPLACE FUNCTION gdpr._log_index_partition(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX %I ON %s USING brin (id) WITH (autosummarize = on)', n || '_id', part);
  EXECUTE format('CREATE INDEX %I ON %s USING brin (at) WITH (autosummarize = on)', n || '_at', part);
END
$$;
DO $$
DECLARE
  idx regclass;
BEGIN
  FOR idx IN SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid
              JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
             WHERE h.inhparent = 'gdpr.access_log'::regclass AND a.amname = 'brin' LOOP
    EXECUTE format('ALTER INDEX %s SET (autosummarize = on)', idx);
  END LOOP;
END
$$;
