-- Pseudonymisation, encryption and per-subject keys (src/crypto.c, src/keys.c).
-- The master key is in the file named by crm_gdpr.key_file, never in a table.

CREATE FUNCTION gdpr.pseudonymise(value text, domain text DEFAULT 'default') RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_pseudonymise_checked';
COMMENT ON FUNCTION gdpr.pseudonymise(text, text) IS
  'keyed BLAKE2b pseudonym (22 characters, base64url): deterministic per domain, one-way without the key; '
  'the extension''s own domains are reserved (doc/crypto.md)';

CREATE FUNCTION gdpr.encrypt(value text, context text DEFAULT '') RETURNS bytea
  LANGUAGE c VOLATILE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_encrypt';
COMMENT ON FUNCTION gdpr.encrypt(text, text) IS
  'XChaCha20-Poly1305 under the current master key; context is authenticated (e.g. the column)';

CREATE FUNCTION gdpr._decrypt_raw(ciphertext bytea, context text, wrapped bytea, ad text) RETURNS text
  LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_decrypt_raw';
CREATE FUNCTION gdpr._new_wrapped_key(ad text) RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_new_wrapped_key';
CREATE FUNCTION gdpr._rewrap_key(wrapped bytea, ad text) RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_rewrap_key';
CREATE FUNCTION gdpr._encrypt_with_subject_key(value text, context text, key_id bigint, wrapped bytea, ad text)
  RETURNS bytea
  LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'gdpr_encrypt_with_subject_key';
CREATE FUNCTION gdpr._ciphertext_subject_key(ciphertext bytea) RETURNS bigint
  LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_ciphertext_subject_key';
CREATE FUNCTION gdpr.ciphertext_key(ciphertext bytea) RETURNS text
  LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_ciphertext_key';
COMMENT ON FUNCTION gdpr.ciphertext_key(bytea) IS
  'fingerprint of the master key a ciphertext was made with (NULL for per-subject keys)';
CREATE FUNCTION gdpr._key_fingerprints() RETURNS text[]
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_key_fingerprints';

-- The loaded master keys, by fingerprint (never the keys themselves).
CREATE FUNCTION gdpr.key_status() RETURNS TABLE (fingerprint text, is_current boolean)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT f, o = 1 FROM unnest(gdpr._key_fingerprints()) WITH ORDINALITY u(f, o) ORDER BY o
$$;

-- Per-subject data keys, stored only wrapped by the master key.  The subject
-- is named by a keyed pseudonym, so that the table never re-identifies him.
CREATE TABLE gdpr.subject_keys (
  id             bigserial PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  wrapped        bytea NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (subject_table, subject_ref)
);
-- Shredded keys leave a trace, so that decrypt can say why it fails.
CREATE TABLE gdpr.shredded_keys (
  key_id         bigint PRIMARY KEY,
  subject_table  regclass NOT NULL,
  subject_ref    text NOT NULL,
  shredded_at    timestamptz NOT NULL DEFAULT now(),
  shredded_by    name NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.subject_keys_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('gdpr.shredded_keys', '');

CREATE FUNCTION gdpr._subject_key_ref(st regclass, subject_id text) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN gdpr._pseudonym(subject_id, 'subject-key');  -- scoped by the subject_table column

CREATE FUNCTION gdpr.encrypt_for_subject(value text, subject_id text, subject_table regclass DEFAULT NULL)
  RETURNS bytea
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := gdpr._require_subject(subject_table, subject_id);
  ref text := gdpr._subject_key_ref(st, subject_id);
  k gdpr.subject_keys;
BEGIN
  IF value IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO k FROM gdpr.subject_keys x WHERE x.subject_table = st AND x.subject_ref = ref;
  IF NOT FOUND THEN
    INSERT INTO gdpr.subject_keys AS x (subject_table, subject_ref, wrapped)
      VALUES (st, ref, gdpr._new_wrapped_key(ref))
      ON CONFLICT ON CONSTRAINT subject_keys_subject_table_subject_ref_key
      DO UPDATE SET subject_ref = excluded.subject_ref   -- a concurrent first use: take its key
      RETURNING * INTO k;
  END IF;
  RETURN gdpr._encrypt_with_subject_key(value, 'subject:' || ref, k.id, k.wrapped, ref);
END
$$;

CREATE FUNCTION gdpr.decrypt(ciphertext bytea, context text DEFAULT '') RETURNS text
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
COMMENT ON FUNCTION gdpr.decrypt(bytea, text) IS 'decrypt a value of gdpr.encrypt or gdpr.encrypt_for_subject';

CREATE FUNCTION gdpr.shred_subject(subject_id text, subject_table regclass DEFAULT NULL) RETURNS void
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

-- Re-encrypt under the current key the values of one column made with an
-- older key, batch_size rows per call; returns the number of rows changed
-- (0: done).  Call it until it returns 0, each call in its own transaction.
-- The caller needs SELECT and UPDATE on the table; the rows are read and
-- written as the table's owner, the decryption done outside that statement.
CREATE FUNCTION gdpr.rotate_key(tbl regclass, col name, context text DEFAULT '', batch_size int DEFAULT 10000)
  RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  typ regtype;
  rows jsonb;
  fresh text[];
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  PERFORM gdpr._require_privilege(tbl, 'SELECT, UPDATE', 'gdpr.rotate_key()');
  typ := (gdpr._column(tbl, col)).typ;
  PERFORM gdpr._not_null(context, 'context');
  IF typ <> 'bytea'::regtype THEN
    RAISE EXCEPTION 'column "%" of % is of type %, not bytea', col, tbl, typ USING ERRCODE = 'datatype_mismatch';
  END IF;
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'batch_size must be positive' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Ciphertexts of the master key ('GD', version, 'M', fingerprint) under
  -- another key than the current one, locked until the update below.
  rows := gdpr._owner_query(tbl, format(
    'SELECT jsonb_build_object(''c'', coalesce(jsonb_agg(x.ctid::text), ''[]''), ''v'', coalesce(jsonb_agg(encode(x.v, ''hex'')), ''[]''))
       FROM (SELECT t.ctid, t.%1$I AS v FROM %2$s t
              WHERE substr(t.%1$I, 1, 2) = ''\x4744''::bytea AND substr(t.%1$I, 4, 1) = ''\x4d''::bytea
                AND substr(t.%1$I, 5, 8) <> decode($1, ''hex'')
              LIMIT %3$s FOR UPDATE) x', col, tbl, batch_size),
    (gdpr._key_fingerprints())[1]);
  IF jsonb_array_length(rows -> 'c') = 0 THEN
    RETURN 0;
  END IF;
  SELECT array_agg(encode(gdpr.encrypt(gdpr._decrypt_raw(decode(v, 'hex'), context, NULL, NULL), context), 'hex') ORDER BY i)
    INTO fresh FROM jsonb_array_elements_text(rows -> 'v') WITH ORDINALITY AS x(v, i);
  RETURN gdpr._owner_exec(tbl, format(
    'UPDATE %s t SET %I = decode(v.n, ''hex'') FROM unnest($1::tid[], $2::text[]) v(c, n) WHERE t.ctid = v.c',
    tbl, col), (SELECT array_agg(c ORDER BY i) FROM jsonb_array_elements_text(rows -> 'c') WITH ORDINALITY AS x(c, i))::text,
    fresh::text);
END
$$;

-- Wrap the subject data keys made under an older master key again.
CREATE FUNCTION gdpr.rotate_subject_keys(batch_size int DEFAULT 10000) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  UPDATE gdpr.subject_keys k SET wrapped = gdpr._rewrap_key(k.wrapped, k.subject_ref)
   WHERE k.id IN (SELECT x.id FROM gdpr.subject_keys x
                   WHERE encode(substr(x.wrapped, 1, 8), 'hex') <> (gdpr._key_fingerprints())[1]
                   LIMIT batch_size);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
