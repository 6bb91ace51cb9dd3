-- The erasure's privilege check cheaper (make bench-rights: erase p50 at
-- 100,000 contacts 10.03 ms in a full make bench on a paravirtualised
-- two-core machine, goal 10): whether the erasure would update a table is
-- asked only of a caller who does not hold UPDATE on it.
-- 42501 unless the caller may do to every table of the subject's tree what
-- the erasure will: read it, delete its rows (unless the table is kept by a
-- 'keep' policy), update them (where kept rows have columns to anonymise).
-- Whether it would update a table is asked only of a caller without UPDATE
-- on it: the answer looks at the name of every column of the table
-- (_erasure_column_actions), half of this check's time, and a caller who
-- holds UPDATE passes either way.
CREATE OR REPLACE FUNCTION gdpr._require_erasure_privileges(st regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  t regclass;
BEGIN
  FOR t IN SELECT tree.tbl FROM gdpr._subject_tree(st) tree LOOP
    PERFORM gdpr._require_privilege(t, concat_ws(', ', 'SELECT',
      CASE WHEN NOT EXISTS (SELECT FROM gdpr.retention_policies p WHERE p.tbl = t AND p.col IS NULL AND p.action = 'keep')
           THEN 'DELETE' END,
      CASE WHEN NOT coalesce(gdpr._holds_privileges(who, t, 'UPDATE'), false)
            AND (EXISTS (SELECT FROM gdpr._erasure_column_actions(t) x WHERE x.action IS NOT NULL)
                 OR gdpr._unlink_sets(t, st) IS NOT NULL) THEN 'UPDATE' END),
      'gdpr.erase_subject()');
  END LOOP;
END
$$;
