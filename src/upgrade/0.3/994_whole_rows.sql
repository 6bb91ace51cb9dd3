-- Round 18 of the hostile review (test/shell/security_round18.sh): a whole
-- row passed as a bare alias (to_jsonb(c), gdpr._row_jsonb(n)) is a column
-- when the table has one of that name: the export gave that column instead
-- of the row, and a column named n blinded the suppression check.  Now c.*
-- (_export_rows; the suppression check's query is in src/suppression_gate.c).


CREATE OR REPLACE FUNCTION gdpr._export_rows(tbl regclass, st regclass, key_literal text, portability boolean) RETURNS jsonb
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
  rows := gdpr._owner_query(tbl, format(
    'SELECT coalesce(jsonb_agg((SELECT to_jsonb(c.*) FROM (SELECT %s) c)%s ORDER BY t.ctid), ''[]'') FROM %s t WHERE %s',
    (SELECT string_agg(format('t.%I', c), ', ') FROM unnest(cols) c),
    CASE WHEN trashed IS NOT NULL
         THEN format(' || CASE WHEN %s THEN ''{"_deleted": true}''::jsonb ELSE ''{}''::jsonb END', trashed) ELSE '' END,
    tbl, gdpr._subject_rows_cond(tbl, st, key_literal)));
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
