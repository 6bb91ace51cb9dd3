-- Issue 18.7 / 24.2: the subjects of a read are those of the rows it read
-- (collected in C, read_subject_set.c); a read naming more than
-- crm_gdpr.log_subjects_max says "subjects_truncated" in its detail, and
-- gdpr.access_history() lists the reads and writes of a person's tables that
-- name not everyone they touched as rows that "may include you" (a new
-- column: the function's result type changes, so it is dropped and created).
DROP FUNCTION gdpr.access_history(text, regclass);
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
                 times int, query_id bigint, purpose text, detail jsonb, mac bytea, may_include_you boolean)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  st regclass := gdpr._subject_table(subject_table);
  refs text[];
BEGIN
  PERFORM gdpr._not_blank(access_history.subject_id, 'subject_id must not be null or blank');
  refs := gdpr._log_subject_refs(access_history.subject_id);   -- under every key loaded
  RETURN QUERY
    SELECT h.* FROM (
      SELECT l.*, false FROM gdpr.access_log l
       WHERE l.subject_refs && refs AND l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
      UNION ALL
      (SELECT l.*, true FROM gdpr.access_log l
        WHERE l.tbl IN (SELECT t.tbl FROM gdpr._subject_tree(st) t)
          AND l.operation IN ('SELECT', 'COPY', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'PURGE')
          AND (l.subjects IS NULL OR l.detail ? 'subjects_truncated') AND coalesce(l.row_count, 1) > 0
          AND NOT coalesce(l.subject_refs && refs, false)
        ORDER BY l.at DESC, l.id DESC LIMIT 1000)) h
     ORDER BY h.at, h.id;
END
$$;
GRANT EXECUTE ON FUNCTION gdpr.access_history(text, regclass) TO gdpr_auditor, gdpr_admin;
