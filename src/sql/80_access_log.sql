-- The access log: who read or changed personal data, when, why.  Append-only
-- and tamper-evident.  Writes are logged by C statement triggers in the
-- writing transaction (log_write.c); reads are seen by an executor hook and
-- queued in shared memory (read_hook.c, log_queue.c), then written by the log
-- writer (log_writer.c) or by gdpr.flush_access_log().  Every row gets a keyed
-- MAC at insert (log_mac.c); the log writer seals settled rows into
-- hash-chained blocks; gdpr.verify_access_log() checks both.

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
  subject_refs       text[] COLLATE "C",    -- rows of 0.2: keyed pseudonyms of the subjects touched
  subjects           bigint,               -- how many; NULL when more than the keys kept
  row_count          bigint,
  times              int NOT NULL DEFAULT 1,   -- identical reads folded into this row
  query_id           bigint,
  purpose            text DEFAULT nullif(gdpr.setting('purpose'), ''),
  detail             jsonb,
  mac                bytea,
  -- The subjects touched, as keys: 64-bit keyed hashes of their ids, sorted
  -- (log_refs.c; 8 bytes a subject where subject_refs took 28).  Last: the
  -- update to 0.3 adds it to the logs of 0.2 (their rows keep subject_refs).
  subject_keys       bigint[]
) PARTITION BY RANGE (at);
ALTER SEQUENCE gdpr.access_log_id_seq OWNED BY gdpr.access_log.id;
-- A folded read names up to 200 people, a write statement's fold more: past
-- the 2 kB at which PostgreSQL starts toasting a row.  Toasting would compress
-- the random keys (or pseudonyms) for nothing and then move every other
-- variable-length column (columns, detail, mac) to the TOAST table, one
-- TOAST row and index entry each: that was a fifth of the log writer's time.
-- So the partitions toast only rows that do not fit in a page
-- (toast_tuple_target at its maximum, set by _log_partition_sql), and the
-- subjects stay in the row (STORAGE MAIN, lz4 where the server has it) even
-- then.  columns, mostly the zeros of 64-byte names, is compressed by the log
-- writer (log_row.c).  Partitions inherit the storage and compression.
ALTER TABLE gdpr.access_log ALTER COLUMN subject_refs SET STORAGE MAIN,
  ALTER COLUMN subject_keys SET STORAGE MAIN;
ALTER TABLE gdpr.access_log ALTER COLUMN subject_refs SET STATISTICS 0,
  ALTER COLUMN subject_keys SET STATISTICS 0;
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
-- pointer (8160 for 8 kB pages).  No statistics on the subjects: ANALYZE of a month sampled 30,000 rows of a hundred pseudonyms
-- each, to rank elements that are all distinct, two thirds of its time
-- (autovacuum analyzes a growing month every 10 % of growth);
-- access_history's && needs none.
CREATE FUNCTION gdpr._log_partition_sql(part name, lo timestamptz, hi timestamptz) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT format('CREATE TABLE gdpr.%I PARTITION OF gdpr.access_log %s WITH (toast_tuple_target = %s); '
                'ALTER TABLE gdpr.%I ALTER COLUMN subject_refs SET STATISTICS 0, '
                'ALTER COLUMN subject_keys SET STATISTICS 0', part,
                CASE WHEN lo IS NULL THEN 'DEFAULT' ELSE format('FOR VALUES FROM (%L) TO (%L)', lo, hi) END,
                current_setting('block_size')::int - 32, part)
$$;
DO $$ BEGIN EXECUTE gdpr._log_partition_sql('access_log_default', NULL, NULL); END $$;
-- Indexes per partition, not on the parent: a restored month partition
-- brings its own (an index on the parent would make a second set).  id and
-- at grow with time: BRIN indexes find a range at almost no cost per insert.
-- autosummarize: autovacuum summarises each page range as soon as it is
-- full, so that a seal's digest of the last seconds reads one range, not the
-- whole unsummarised tail of the month (issue 24.6: 16-19 ms a seal against
-- 2.9 ms once summarised).  The last, partial range stays unsummarised, so
-- that an insert never has to widen a summary.
-- The GIN indexes that find a person's rows for access_history are built
-- once a month is over (_log_index_month): kept up to date row by row, they
-- cost the log writer more than everything else; the current month is
-- scanned.  Two partial indexes, on the keys and on the references of rows
-- of 0.2: each holds only the rows that have them (access_history's &&
-- implies IS NOT NULL, so the planner uses both), and a month that has none
-- costs an empty index.
CREATE FUNCTION gdpr._log_index_partition(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX %I ON %s USING brin (id) WITH (autosummarize = on)', n || '_id', part);
  EXECUTE format('CREATE INDEX %I ON %s USING brin (at) WITH (autosummarize = on)', n || '_at', part);
END
$$;
SELECT gdpr._log_index_partition('gdpr.access_log_default');

CREATE FUNCTION gdpr._log_index_month(part regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n name := (SELECT c.relname FROM pg_class c WHERE c.oid = part);
BEGIN
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (subject_keys) WHERE subject_keys IS NOT NULL',
                 n || '_subject_keys', part);
  -- A month indexed by 0.2 has its index on subject_refs already (of every row).
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (subject_refs) WHERE subject_refs IS NOT NULL',
                 n || '_subjects', part);
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
-- verify_access_log(since => ...) starts from the blocks that end after since.
CREATE INDEX access_log_seals_upto ON gdpr.access_log_seals (upto_at);

-- The writes of committed transactions on their way to the log: a writing
-- transaction folds its statements' records and adds them just before it
-- commits, straight into the heap (log_write_fold.c: keep the columns in
-- step); gdpr.flush_access_log() moves them.  Lists are joined with chr(31).
-- subject_refs holds the subjects' ids as the CRM table has them (marked by a
-- leading chr(30)): the log writer computes their keyed pseudonyms when it
-- moves them, so that no write needs the key.  Personal data, transient
-- (moved within a second while the key can be read): nobody but the
-- extension's owner reads these tables.
-- Two journals (log_journals.c): a writing transaction inserts into either;
-- the log writer truncates one that grew (a long snapshot keeps VACUUM from
-- removing the rows it deleted) while the writers use the other.  Not in a
-- dump (no pg_extension_config_dump): pg_dump would keep a lock on them from
-- the moment it copies them until it ends, and no journal could be truncated
-- for the dump's duration (doc/operations.md).
CREATE TABLE gdpr.access_log_journal_1 (
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
  purpose            text,
  last_at            timestamptz,    -- a row folds the transaction's identical statements (log_write_fold.c):
  times              int,            -- the last one's time and how many (NULL and 1 for one)
  records            bytea           -- since 0.3: the records a transaction wrote at once, packed
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
-- Every row is deleted within a second: vacuumed early, its pages are reused
-- instead of the table growing by a page at a time under the writers.
CREATE TABLE gdpr.access_log_journal_2 (LIKE gdpr.access_log_journal_1)
  WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
COMMENT ON TABLE gdpr.access_log_journal_1 IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (one of two journals)';
COMMENT ON TABLE gdpr.access_log_journal_2 IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (one of two journals)';
-- What waits in the journals, one row per record (a statement or a fold of
-- a transaction's identical ones): since 0.3 a journal row holds the records
-- a transaction wrote at once, packed (log_journal_pack.c), unpacked here.
-- A lock on the journals until the reading transaction ends: the log writer
-- cannot truncate them meanwhile.
CREATE FUNCTION gdpr._journal_records(records bytea, backend_pid int)
  RETURNS SETOF gdpr.access_log_journal_1
  LANGUAGE c STRICT STABLE AS 'MODULE_PATHNAME', 'gdpr_journal_records';
COMMENT ON FUNCTION gdpr._journal_records(bytea, int) IS
  'the records packed in a row of the journal of writes, as rows of the journal (for gdpr.access_log_journal)';
CREATE VIEW gdpr.access_log_journal AS
  SELECT at, role_name, session_user_name, application_name, client_addr, backend_pid, operation, tbl,
         table_name, columns, subject_refs, subjects, row_count, query_id, purpose, last_at, times
    FROM (SELECT * FROM gdpr.access_log_journal_1 WHERE records IS NULL
          UNION ALL
          SELECT * FROM gdpr.access_log_journal_2 WHERE records IS NULL
          UNION ALL
          SELECT r.* FROM gdpr.access_log_journal_1 j, gdpr._journal_records(j.records, j.backend_pid) r
          UNION ALL
          SELECT r.* FROM gdpr.access_log_journal_2 j, gdpr._journal_records(j.records, j.backend_pid) r) journal;
COMMENT ON VIEW gdpr.access_log_journal IS 'logged writes of committed transactions, until the log writer moves them into gdpr.access_log (both journals)';

-- What the log's own retention removed: verify does not look for those rows.
-- Each record is MACed and chained to the previous one like a seal, so that
-- an INSERT by anyone but the retention (a dropped_before of 'infinity')
-- cannot make verify skip rows that were deleted: verify reports it.
CREATE TABLE gdpr.access_log_retention (
  id              bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  dropped_before  timestamptz NOT NULL,
  what            text NOT NULL,
  row_count       bigint,
  prev_hash       bytea,
  hash            bytea                  -- keyed MAC of all of the above
);
COMMENT ON TABLE gdpr.access_log_retention IS 'what the access log''s retention removed, and when (MACed, chained)';

-- The text a retention record's MAC covers, independent of session settings.
CREATE FUNCTION gdpr._chain_text(r gdpr.access_log_retention) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', r.id, extract(epoch FROM r.at), extract(epoch FROM r.dropped_before), r.what,
                              coalesce(r.row_count::text, '-'), coalesce(encode(r.prev_hash, 'hex'), '-')), 'UTF8');

-- Reads the log lost, and why (issue 24.3), since install: one record per
-- flush that found new losses.  'queue full': reads dropped because the
-- queue was full (this database's in gdpr.access_log_queue_drops(), which a restart resets:
-- each record says which server start its count belongs to); 'flush failed':
-- reads taken from the queue by a round that then failed (log_losses.c);
-- 'not written at shutdown': what the log writer could not write before the
-- server stopped.  A crash loses what the queue held without a count (its
-- shared memory is gone).  MACed and chained like the retention's records.
CREATE TABLE gdpr.access_log_losses (
  id              bigserial PRIMARY KEY,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  server_started  timestamptz NOT NULL,
  cause           text NOT NULL,
  lost            bigint NOT NULL,
  prev_hash       bytea,
  hash            bytea
);
COMMENT ON TABLE gdpr.access_log_losses IS 'reads the access log lost, with the cause, since install (MACed, chained)';

CREATE FUNCTION gdpr._chain_text(r gdpr.access_log_losses) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN convert_to(concat_ws('|', r.id, extract(epoch FROM r.at), extract(epoch FROM r.server_started), r.cause,
                              r.lost, coalesce(encode(r.prev_hash, 'hex'), '-')), 'UTF8');

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

-- The records of a chained table (retention, losses) in order, each 'ok',
-- 'unverified' (made under a key not loaded here) or 'forged' (no MAC, a MAC
-- that does not match, or a broken chain: the first one ends the list).
CREATE FUNCTION gdpr._chain_check(tbl regclass) RETURNS TABLE (id bigint, state text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  prev bytea;
  mac bytea;
BEGIN
  FOR r IN EXECUTE format('SELECT x.id, x.hash, x.prev_hash, gdpr._chain_text(x) AS txt FROM %s x ORDER BY x.id', tbl) LOOP
    mac := gdpr._log_keyed_hash(r.txt, substr(r.hash, 1, 8));
    id := r.id;
    state := CASE WHEN r.hash IS NULL OR r.prev_hash IS DISTINCT FROM prev OR mac <> r.hash THEN 'forged'
                  WHEN mac IS NULL THEN 'unverified' ELSE 'ok' END;
    RETURN NEXT;
    EXIT WHEN state = 'forged';
    prev := r.hash;
  END LOOP;
END
$$;

-- Append a record to its chained table (retention, losses; the table is the
-- record's type): its id, time, link to the previous record and MAC are set
-- here.
CREATE FUNCTION gdpr._chain_append(r anyelement) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  tbl regclass := pg_typeof(r)::text::regclass;
  prev bytea;
BEGIN
  EXECUTE format('SELECT x.hash FROM %s x ORDER BY x.id DESC LIMIT 1', tbl) INTO prev;
  r := jsonb_populate_record(r, jsonb_build_object('id', nextval(pg_get_serial_sequence(tbl::text, 'id')),
                                                   'at', clock_timestamp(), 'prev_hash', '\x' || encode(prev, 'hex')));
  r := jsonb_populate_record(r, jsonb_build_object('hash', '\x' || encode(gdpr._log_keyed_hash(gdpr._chain_text(r)), 'hex')));
  EXECUTE format('INSERT INTO %s SELECT ($1).*', tbl) USING r;
END
$$;

-- Record reads lost.
CREATE FUNCTION gdpr._log_loss_record(cause text, lost bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp
  RETURN gdpr._chain_append(ROW(NULL, NULL, pg_postmaster_start_time(), cause, lost, NULL, NULL)::gdpr.access_log_losses);

-- Record a removal by the log's retention.
CREATE FUNCTION gdpr._log_retention_record(dropped_before timestamptz, what text, row_count bigint) RETURNS void
  LANGUAGE sql SET search_path = pg_catalog, pg_temp
  RETURN gdpr._chain_append(ROW(NULL, NULL, dropped_before, what, row_count, NULL, NULL)::gdpr.access_log_retention);

SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_default', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_seals', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_retention', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_retention_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_losses', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_losses_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.access_log_checkpoints_id_seq', '');

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
-- A subject's key under the current key; his keys under every loaded key (log_refs.c).
CREATE FUNCTION gdpr._log_subject_key(subject_id text) RETURNS bigint
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_key';
CREATE FUNCTION gdpr._log_subject_keys(subject_id text) RETURNS bigint[]
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_log_subject_keys';
CREATE FUNCTION gdpr._log_write() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_write';
CREATE FUNCTION gdpr._log_queue_take() RETURNS TABLE (
    at timestamptz, role_name name, session_user_name name, application_name text, client_addr inet,
    backend_pid int, operation text, tbl oid, columns name[], subject_keys bigint[], row_count bigint,
    query_id bigint, purpose text, detail jsonb, last_at timestamptz, times int, table_name text)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_take';
-- The journals' rows, truncated or deleted, and folded (log_journal.c), oldest first.
CREATE FUNCTION gdpr._log_journal_take() RETURNS TABLE (
    at timestamptz, last_at timestamptz, role_name text, session_user_name text, application_name text,
    client_addr text, backend_pid int, operation text, tbl oid, table_name text, columns name[],
    subject_keys bigint[], subjects bigint, row_count bigint, query_id bigint, purpose text, times int)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_journal_take';
-- The rows waiting in the journals and the oldest one's time, for
-- gdpr.access_log_status: each journal's lock released once it is counted, so
-- that a monitoring session idle in a transaction does not keep the log writer
-- from truncating them (log_journals.c).
CREATE FUNCTION gdpr.access_log_journals(OUT journal_rows bigint, OUT journal_oldest timestamptz)
  LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'gdpr_log_journal_status';
COMMENT ON FUNCTION gdpr.access_log_journals() IS
  'the writes waiting in the journals to be moved into the log, and the oldest one''s time (no lock kept on the journals)';
CREATE FUNCTION gdpr.access_log_queue() RETURNS TABLE (
    capacity int, queued int, enqueued bigint, written bigint, dropped bigint, logged_to_server_log bigint)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_stats';
COMMENT ON FUNCTION gdpr.access_log_queue() IS
  'the shared-memory queue of reads: capacity, waiting, and since the server started: queued, written, dropped';
CREATE FUNCTION gdpr._log_journal_pending() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_journal_pending';
-- gdpr.access_log_key_problem(): why the log writer cannot use the master key now (NULL: it can, or none is
-- configured): it then waits, and the CRM's writes go on (log_key_wait.c).
CREATE FUNCTION gdpr.access_log_key_problem() RETURNS text
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_log_key_problem';
COMMENT ON FUNCTION gdpr.access_log_key_problem() IS
  'why the log writer cannot use the master key now, or NULL: while it cannot, writes wait in the journal and reads in the queue';
CREATE FUNCTION gdpr._note_decrypt() RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_note_decrypt';
CREATE FUNCTION gdpr._allow_log_maintenance(allow boolean) RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_allow_log_maintenance';
-- Opened by the log's own writers around their INSERT: the mac trigger MACs
-- no other row (log_mac.c).
CREATE FUNCTION gdpr._log_mac_door(open boolean) RETURNS void
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_mac_door';
CREATE FUNCTION gdpr._log_lost_taken() RETURNS bigint
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_lost_taken';

-- Record the losses not recorded yet (see gdpr.access_log_losses): the
-- queue's drops of this database since this server started beyond those recorded, the reads
-- of this process's failed rounds, and at shutdown what is still queued.
CREATE FUNCTION gdpr._log_note_losses(shutdown boolean DEFAULT false) RETURNS bigint
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  q record;
  dropped bigint;
  failed bigint := gdpr._log_lost_taken();
  noted bigint := 0;
BEGIN
  SELECT * INTO q FROM gdpr.access_log_queue();
  dropped := coalesce((SELECT sum(d.dropped) FROM gdpr.access_log_queue_drops() d WHERE d.database = current_database()), 0)
             - coalesce((SELECT sum(x.lost) FROM gdpr.access_log_losses x
                                    WHERE x.server_started = pg_postmaster_start_time() AND x.cause = 'queue full'), 0);
  IF dropped > 0 THEN
    PERFORM gdpr._log_loss_record('queue full', dropped);
    noted := noted + dropped;
  END IF;
  IF failed > 0 THEN
    PERFORM gdpr._log_loss_record('flush failed', failed);
    noted := noted + failed;
  END IF;
  IF shutdown AND q.queued > 0 THEN
    PERFORM gdpr._log_loss_record('not written at shutdown', q.queued);
    noted := noted + q.queued;
  END IF;
  RETURN noted;
END
$$;
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
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_losses
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_losses
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON gdpr.access_log_checkpoints
  FOR EACH ROW EXECUTE FUNCTION gdpr._append_only('access log');
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON gdpr.access_log_checkpoints
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
  PERFORM gdpr._log_mac_door(true);
  INSERT INTO gdpr.access_log (operation, tbl, table_name, columns, subject_keys, subjects, row_count, detail)
    VALUES (operation, tbl, gdpr.qualified_name(tbl), columns,
            (SELECT array_agg(DISTINCT gdpr._log_subject_key(s) ORDER BY gdpr._log_subject_key(s)) FROM unnest(subject_ids) s),
            cardinality(subject_ids), row_count, detail);
  PERFORM gdpr._log_mac_door(false);
END
$$;

-- A lock nobody else can take (issue 19.3): SHARE UPDATE EXCLUSIVE on one of
-- the extension's tables, which only its owner may take (LOCK TABLE in that
-- mode needs UPDATE, DELETE or TRUNCATE on it; an advisory key can be taken
-- by any role).  It does not conflict with reads nor with inserts, only with
-- itself and with VACUUM or ANALYZE of that table (autovacuum gives way).
-- wait_ms 0: try only (false when busy); otherwise wait that long, then say
-- who holds it.  The function's SET clause restores lock_timeout on exit.
CREATE FUNCTION gdpr._lock_own_table(tbl regclass, wait_ms int) RETURNS boolean
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = 0 AS $$
DECLARE
  holders text;
BEGIN
  PERFORM set_config('lock_timeout', greatest(wait_ms, 1)::text, true);
  BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE%s', tbl, CASE WHEN wait_ms = 0 THEN ' NOWAIT' END);
  EXCEPTION WHEN lock_not_available THEN
    IF wait_ms = 0 THEN
      RETURN false;
    END IF;
    SELECT string_agg(format('pid %s (role %s, application %L, %s since %s)', l.pid, a.usename,
                             a.application_name, a.state, a.state_change), '; ')
      INTO holders
      FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = tbl AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
       AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                      'AccessExclusiveLock');
    RAISE EXCEPTION 'could not lock % within % ms', tbl, wait_ms
      USING ERRCODE = 'lock_not_available',
            DETAIL = format('Held by %s.', coalesce(holders, 'a process that is gone')),
            HINT = 'End that session (pg_terminate_backend) if it is not the extension''s own.';
  END;
  RETURN true;
END
$$;

-- A row that arrives after its time was sealed (a write committed by a
-- transaction that stayed open across seals, a read that ran longer than a
-- seal interval) goes into the open block: its at becomes the seal's end, and
-- detail.late keeps the times it had (issue 24.6), so that no open
-- transaction holds the seals back and nothing is lost or misdated.
CREATE FUNCTION gdpr._log_late_last_at(at timestamptz, last_at timestamptz, sealed timestamptz) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN at < sealed THEN nullif(greatest(last_at, sealed), sealed) ELSE last_at END;
CREATE FUNCTION gdpr._log_late_detail(detail jsonb, at timestamptz, last_at timestamptz, sealed timestamptz) RETURNS jsonb
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN CASE WHEN at < sealed
              THEN coalesce(detail, '{}') || jsonb_build_object('late', jsonb_strip_nulls(jsonb_build_object(
                     'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     'last_at', to_char(last_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))))
              ELSE detail END;

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
  sealed timestamptz;
BEGIN
  PERFORM gdpr._lock_own_table('gdpr.access_log_seals', 60000);   -- the seal lock
  sealed := (SELECT max(x.upto_at) FROM gdpr.access_log_seals x);   -- no seal moves it before we commit
  PERFORM gdpr._log_journal_pending();
  PERFORM gdpr._log_mac_door(true);
  IF journal THEN
    -- Identical statements (same backend, roles, query, table, columns, purpose)
    -- are folded, up to 100 a row, with the union of their subjects (log_journal.c).
    INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                                 backend_pid, operation, tbl, table_name, columns, subject_keys, subjects,
                                 row_count, times, query_id, purpose, detail)
      SELECT greatest(j.at, sealed), gdpr._log_late_last_at(j.at, j.last_at, sealed), j.role_name,
             j.session_user_name, j.application_name, j.client_addr::inet,
             j.backend_pid, j.operation, j.tbl::regclass, j.table_name, j.columns, j.subject_keys, j.subjects,
             j.row_count, j.times, j.query_id, j.purpose, gdpr._log_late_detail(NULL, j.at, j.last_at, sealed)
        FROM gdpr._log_journal_take() j;
    GET DIAGNOSTICS w = ROW_COUNT;
  END IF;
  INSERT INTO gdpr.access_log (at, last_at, role_name, session_user_name, application_name, client_addr,
                               backend_pid, operation, tbl, table_name, columns, subject_keys, subjects,
                               row_count, times, query_id, purpose, detail)
    SELECT greatest(q.at, sealed), gdpr._log_late_last_at(q.at, q.last_at, sealed), q.role_name, q.session_user_name,
           q.application_name, q.client_addr, q.backend_pid,
           q.operation, nullif(q.tbl, 0)::regclass, q.table_name, q.columns,
           q.subject_keys, cardinality(q.subject_keys), q.row_count, q.times, q.query_id, q.purpose,
           gdpr._log_late_detail(q.detail, q.at, q.last_at, sealed)
      FROM gdpr._log_queue_take() q;     -- without the reads of a table dropped meanwhile
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM gdpr._log_mac_door(false);
  IF journal THEN
    PERFORM gdpr._log_note_losses();
  END IF;
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
  LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN ('access_log_' || to_char(m, 'YYYY_MM'))::name;

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
BEGIN
  PERFORM gdpr._lock_own_table('gdpr.access_log_retention', 60000);
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

  cutoff := gdpr._log_retention_cutoff();
  -- Whole months past it are dropped by the log maintenance worker (_log_drop_months).
  DELETE FROM gdpr.access_log_default d WHERE d.at < cutoff;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    PERFORM gdpr._log_retention_record(cutoff, 'rows of the default partition deleted', n);
  END IF;
  PERFORM gdpr._allow_log_maintenance(false);   -- the door closes with the maintenance
  RETURN n;
END
$$;

-- The log's slow work on whole months is done by a worker the log writer
-- starts for it, the log maintenance worker (log_months.c), never by the
-- log writer: building a month's GIN index takes minutes to hours, counting
-- and dropping a month past retention reads the month (gigabytes on a busy
-- CRM) and waits for anyone reading the log; meanwhile the log writer,
-- had it done that, wrote nothing and the queue of reads filled.  The log
-- writer's maintenance only asks whether a month waits (these two queries).
--
-- The months over for a day that lack their subject indexes.  A day after
-- the month: CREATE INDEX keeps rows out of the partition while it runs,
-- and a month's last rows (a read at 23:59:59 written a second later, a
-- long transaction's statements) arrive after its end.
CREATE FUNCTION gdpr._log_months_to_index() RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT m.part FROM gdpr._log_months() m
   WHERE m.month_end <= now() - interval '1 day'
     AND NOT EXISTS (SELECT FROM pg_index x JOIN pg_class xc ON xc.oid = x.indexrelid
                      WHERE x.indrelid = m.part AND xc.relname = m.relname || '_subject_keys')
   ORDER BY m.month_end;
END;

-- Build them (a month of 0.2 its index on the keys, once), one month after
-- the other; a month another session is indexing is left to it (its lock,
-- which inserts into that month wait for as they would for the index).
-- Returns how many months it indexed.
CREATE FUNCTION gdpr._log_index_months() RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part regclass;
  n integer := 0;
BEGIN
  FOR part IN SELECT gdpr._log_months_to_index() LOOP
    BEGIN
      EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE NOWAIT', part);
      PERFORM gdpr._log_index_month(part);
      n := n + 1;
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
  END LOOP;
  RETURN n;
END
$$;

-- Where the log's retention (crm_gdpr.access_log_keep) starts, at a month's
-- start: rows before it go.  Without a key a removal cannot be recorded
-- tamper-evidently: then nothing goes.
CREATE FUNCTION gdpr._log_retention_cutoff() RETURNS timestamptz
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN CASE WHEN gdpr._log_keyed_hash('\x') IS NULL THEN '-infinity'::timestamptz
              ELSE date_trunc('month', (now() - gdpr.setting('access_log_keep')::interval) AT TIME ZONE 'UTC')
                   AT TIME ZONE 'UTC' END;

-- The months wholly before it.
CREATE FUNCTION gdpr._log_months_to_drop() RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT m.part FROM gdpr._log_months() m WHERE m.month_end <= gdpr._log_retention_cutoff() ORDER BY m.month_end;
END;

-- Drop them, each recorded in gdpr.access_log_retention with its rows.  The
-- rows are counted first, without the retention lock (nothing is added to a
-- month that old); a DROP waits 2 s at most for those reading the log (it
-- locks the whole log, and the log writer's inserts would queue behind it):
-- a month not dropped then is dropped at the next maintenance.  Returns the
-- rows removed.
CREATE FUNCTION gdpr._log_drop_months() RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
  cutoff timestamptz := gdpr._log_retention_cutoff();
  parts regclass[] := ARRAY(SELECT gdpr._log_months_to_drop());
  counts bigint[] := '{}';
  n bigint;
  name name;
  removed bigint := 0;
BEGIN
  IF cardinality(parts) = 0 THEN
    RETURN 0;
  END IF;
  FOR i IN 1..cardinality(parts) LOOP
    EXECUTE format('SELECT count(*) FROM %s', parts[i]) INTO n;
    counts := counts || n;
  END LOOP;
  PERFORM gdpr._lock_own_table('gdpr.access_log_retention', 60000);
  PERFORM gdpr._allow_log_maintenance(true);
  FOR i IN 1..cardinality(parts) LOOP
    name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[i]);
    BEGIN
      EXECUTE format('DROP TABLE %s', parts[i]);
      PERFORM gdpr._log_retention_record(cutoff, 'partition ' || name || ' dropped', counts[i]);
      removed := removed + counts[i];
    EXCEPTION WHEN lock_not_available THEN
      NULL;
    END;
  END LOOP;
  PERFORM gdpr._allow_log_maintenance(false);
  RETURN removed;
END
$$;

-- The text a seal's MAC covers: every field, in a form independent of the
-- session's settings (time zone, date style).
CREATE FUNCTION gdpr._seal_text(s gdpr.access_log_seals) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
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

-- The oldest time a row may still arrive with from a transaction that is
-- open (see seal_access_log); NULL when there is none.  Only transactions
-- that write the log itself count: the extension's events insert their row
-- at once, in the caller's transaction.  Writes to registered tables and
-- reads do not: they reach the log through _log_flush, which moves a row that
-- arrives after its time was sealed into the open block (issue 24.6).
CREATE FUNCTION gdpr._log_open_writes_since() RETURNS timestamptz
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT min(CASE WHEN l.pid IS NULL THEN '-infinity' ELSE a.xact_start END)
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'relation' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
     AND l.relation IN (SELECT c.oid FROM pg_class c
                         WHERE c.relnamespace = 'gdpr'::regnamespace AND c.relkind IN ('r', 'p')
                           AND (c.oid = 'gdpr.access_log'::regclass
                                OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = 'gdpr.access_log'::regclass)))
     AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
     AND l.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
$$;

-- Seal the settled rows into the next block.  Settled: no row can still
-- appear in the block's time range.  Rows come from the flush (which this
-- function runs first, under the seal lock) and from the extension's events,
-- which insert their row in the caller's transaction: only those
-- transactions, found by their locks on the log, hold the seal back (a
-- prepared one too: its start is unknown).  Writes to registered tables and
-- reads come through the flush, which puts a row whose time was sealed
-- meanwhile into the open block (_log_late_detail): an open transaction of a
-- CRM writer, an hour-long pg_dump, do not stop sealing (issues 18.9, 24.6).
-- One second of margin covers a read being queued.  A block never spans two
-- months, so that the log's retention removes whole blocks.  One writer at a
-- time.
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
  horizon := least(clock_timestamp() - interval '1 second', gdpr._log_open_writes_since());
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

-- Who read or changed this person's data: rows naming his pseudonym in the
-- tables of his subject table, and the extension's events about him; then,
-- marked may_include_you, the reads and writes of those tables that name
-- not everyone they touched (more subjects than crm_gdpr.log_subjects_max:
-- "subjects_truncated" in detail, or subjects NULL; or none named though rows
-- were touched: a COPY of the table, a table whose rows the log cannot
-- attribute) and do not name him: the most recent 1000 of them.
CREATE FUNCTION gdpr.access_history(subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS TABLE (id bigint, at timestamptz, last_at timestamptz, role_name name, session_user_name name,
                 application_name text, client_addr inet, backend_pid int, operation text, tbl regclass,
                 table_name text, columns name[], subject_refs text[], subjects bigint, row_count bigint,
                 times int, query_id bigint, purpose text, detail jsonb, mac bytea, subject_keys bigint[],
                 may_include_you boolean)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  refs text[];
  keys bigint[];
BEGIN
  PERFORM gdpr._not_blank(access_history.subject_id, 'subject_id must not be null or blank');
  refs := gdpr._log_subject_refs(access_history.subject_id);   -- under every key loaded: rows of 0.2
  keys := gdpr._log_subject_keys(access_history.subject_id);   -- and of 0.3
  RETURN QUERY
    SELECT h.* FROM (
      SELECT l.*, false FROM gdpr.access_log l
       WHERE (l.subject_keys && keys OR l.subject_refs && refs) AND l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
      UNION ALL
      (SELECT l.*, true FROM gdpr.access_log l
        WHERE l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
          AND l.operation IN ('SELECT', 'COPY', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'PURGE')
          AND (l.subjects IS NULL OR l.detail ? 'subjects_truncated') AND coalesce(l.row_count, 1) > 0
          AND NOT coalesce(l.subject_keys && keys OR l.subject_refs && refs, false)
        ORDER BY l.at DESC, l.id DESC LIMIT 1000)) h
     ORDER BY h.at, h.id;
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
         gdpr.setting('mass_read_rows')::bigint AS threshold,
         gdpr.setting('mass_read_window')::interval AS window_length
    FROM gdpr.access_log l
   WHERE l.operation IN ('SELECT', 'COPY', 'EXPORT')
     AND l.at >= now() - gdpr.setting('mass_read_window')::interval
   GROUP BY l.role_name
  HAVING sum(l.row_count) > gdpr.setting('mass_read_rows')::bigint;
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

-- Reads of restricted subjects' rows (Art. 18): what the gdpr_restriction
-- policy hid (filtered) or refused (in an UPDATE or DELETE), per scan, with
-- the rows and the subjects' keys (references in rows of 0.2; src/restriction_reads.c).
CREATE VIEW gdpr.restriction_violations AS
  SELECT l.id, l.at, l.role_name, l.session_user_name, l.application_name, l.client_addr, l.tbl, l.table_name,
         l.row_count AS rows_hidden, l.subject_refs, l.purpose,
         CASE WHEN l.detail ? 'refused' THEN 'refused' ELSE 'filtered' END AS outcome, l.subject_keys
    FROM gdpr.access_log l
   WHERE l.operation = 'RESTRICTED';
COMMENT ON VIEW gdpr.restriction_violations IS
  'reads of restricted subjects'' rows by roles not in gdpr_admin: hidden (filtered) or refused, with who tried';

-- State of the log: queue, unsealed rows, partitions.
CREATE VIEW gdpr.access_log_status AS
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
  ELSIF r.parent_table = r.subject_table AND r.parent_column = id_col
        AND NOT EXISTS (SELECT FROM gdpr.subject_links l WHERE l.tbl = _log_subject_column.tbl
                          AND (l.type_column IS NOT NULL OR l.link_column <> r.subject_column
                               OR l.parent_table <> r.parent_table)) THEN
    -- One plain link to the subject's id: the column holds his key.
    RETURN r.subject_column;
  END IF;
  RETURN '';
END
$$;
