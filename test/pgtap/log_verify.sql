-- Verification checkpoints and verification by range (issue 24.6): a daily
-- verify_access_log(since => ...) recomputes the rows since, trusting the
-- chain up to a MACed checkpoint; tampering before it is for the full verify.
BEGIN;
SELECT plan(24);

\set QUIET on
SET client_min_messages = warning;
SET application_name = 'tap_log_verify';
SELECT gdpr.flush_access_log() >= 0 AS flushed \gset
-- Rows as the log's own writers add them (the mac trigger MACs them), at the
-- time they are inserted, sealed round by round.
CREATE FUNCTION pg_temp.round(n int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM gdpr._log_mac_door(true);
  INSERT INTO gdpr.access_log (operation, table_name, row_count, subject_refs)
    SELECT 'SELECT', 'crm.contacts', i, gdpr._log_subject_refs(i::text) FROM generate_series(1, n) i;
  PERFORM gdpr._log_mac_door(false);
  PERFORM pg_sleep(1.1);        -- settled: older than the seal's one-second margin
  RETURN gdpr.seal_access_log();
END $$;
CREATE FUNCTION pg_temp.checkpoints() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM gdpr.access_log_checkpoints';
RESET client_min_messages;

SELECT has_table('gdpr', 'access_log_checkpoints', 'the checkpoints table exists');
SELECT ok(pg_temp.round(5) >= 5, 'a first round of rows is sealed');
SELECT pg_temp.checkpoints() AS cp0 \gset
SELECT ok((SELECT ok AND detail ~ 'checkpoint recorded' FROM gdpr.verify_access_log()), 'a full verify is intact and records a checkpoint');
SELECT is(pg_temp.checkpoints(), (:cp0 + 1)::bigint, 'one checkpoint more');
SELECT is((SELECT (c.upto_seal, c.chain_head, c.verified_upto) FROM gdpr.access_log_checkpoints c ORDER BY c.id DESC LIMIT 1),
          (SELECT (s.seal_id, s.hash, s.upto_at) FROM gdpr.access_log_seals s ORDER BY s.seal_id DESC LIMIT 1),
          'the checkpoint names the last seal, its hash and its end');
SELECT is((SELECT verified_upto FROM gdpr.access_log_status),
          (SELECT max(upto_at) FROM gdpr.access_log_seals), 'access_log_status says how far the log is verified');
SELECT ok((SELECT ok FROM gdpr.verify_access_log(record_checkpoint => false)) AND pg_temp.checkpoints() = :cp0 + 1,
          'record_checkpoint => false records none');

SELECT verified_upto AS cp1_upto FROM gdpr.access_log_status \gset
SELECT min(id) AS first_row FROM gdpr.access_log WHERE application_name = 'tap_log_verify' \gset
SELECT ok(pg_temp.round(3) >= 3, 'a second round is sealed');
SELECT count(*) AS since_rows FROM gdpr.access_log WHERE at >= :'cp1_upto' \gset
SELECT count(*) AS all_rows FROM gdpr.access_log \gset
SELECT is((SELECT (ok, checked) FROM gdpr.verify_access_log(since => :'cp1_upto')), (true, :since_rows::bigint),
          'since the checkpoint: only the rows since are recomputed');
SELECT ok(:since_rows < :all_rows, 'which is fewer than the whole log');
SELECT is(pg_temp.checkpoints(), (:cp0 + 2)::bigint, 'contiguous with the checkpoint: a new checkpoint');
SELECT is((SELECT verified_upto FROM gdpr.access_log_status), (SELECT max(upto_at) FROM gdpr.access_log_seals),
          'verified up to the last seal');
SELECT verified_upto AS cp2_upto FROM gdpr.access_log_status \gset

-- A range that starts later than a checkpoint checks its rows but records none.
SELECT ok(pg_temp.round(2) >= 2, 'a third round is sealed');
SELECT ok((SELECT ok FROM gdpr.verify_access_log(since => clock_timestamp() - interval '1 second')) AND pg_temp.checkpoints() = :cp0 + 2,
          'a range with a gap after the checkpoint records none');
-- A range with an end: the months of a long log, one session each.
SELECT is((SELECT (ok, checked) FROM gdpr.verify_access_log(since => :'cp1_upto', upto => :'cp2_upto')),
          (true, (SELECT count(*) FROM gdpr.access_log WHERE at >= :'cp1_upto' AND at < :'cp2_upto')),
          'since and upto: the rows of that range');
SELECT throws_ok($$SELECT * FROM gdpr.verify_access_log(since => now(), upto => now() - interval '1 day')$$, '22023', NULL,
                 'an empty range is refused');

-- Tampering before the checkpoint: the daily verify trusts it, the full verify does not.
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log SET row_count = row_count + 1 WHERE id = :first_row;
SELECT is((SELECT ok FROM gdpr.verify_access_log(since => :'cp2_upto')), true,
          'a row altered before the checkpoint is not recomputed by the daily verify');
SELECT is((SELECT first_bad_id FROM gdpr.verify_access_log()), :first_row::bigint, 'the full verify finds it');
ROLLBACK TO SAVEPOINT t;
-- The checkpoint's own seal altered, or replaced: found from the checkpoint on.
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log_seals SET row_count = row_count + 1 WHERE upto_at = :'cp2_upto';
SELECT ok((SELECT NOT ok AND detail ~ 'altered' FROM gdpr.verify_access_log(since => :'cp2_upto')),
          'the checkpoint''s seal altered: reported');
ROLLBACK TO SAVEPOINT t;
SAVEPOINT t;
SET LOCAL session_replication_role = replica;
UPDATE gdpr.access_log_seals SET hash = sha256(hash) WHERE upto_at = :'cp2_upto';
SELECT ok((SELECT NOT ok AND detail ~ 'not the one checkpoint' FROM gdpr.verify_access_log(since => :'cp2_upto')),
          'the checkpoint''s seal replaced: reported');
ROLLBACK TO SAVEPOINT t;
-- A checkpoint made by hand (to skip tampered rows) is a forgery.
SAVEPOINT t;
INSERT INTO gdpr.access_log_checkpoints (upto_seal, chain_head, verified_upto, rows_checked)
  SELECT s.seal_id, s.hash, s.upto_at, 0 FROM gdpr.access_log_seals s ORDER BY s.seal_id DESC LIMIT 1;
SELECT ok((SELECT NOT ok AND detail ~ 'checkpoint record' FROM gdpr.verify_access_log(since => now())),
          'a checkpoint inserted by hand is reported as forged');
ROLLBACK TO SAVEPOINT t;
SELECT throws_ok($$UPDATE gdpr.access_log_checkpoints SET verified_upto = 'infinity'$$, '42501', NULL,
                 'checkpoints are append-only');
-- A read-only transaction (a standby, an auditor's session) verifies without writing.
SAVEPOINT t;
SET LOCAL transaction_read_only = on;
SELECT is((SELECT ok FROM gdpr.verify_access_log()), true, 'a read-only transaction verifies');
ROLLBACK TO SAVEPOINT t;
SELECT is(pg_temp.checkpoints(), (:cp0 + 2)::bigint, 'and records no checkpoint');

SELECT * FROM finish();
ROLLBACK;
