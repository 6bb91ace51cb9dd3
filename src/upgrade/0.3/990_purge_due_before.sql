-- The purge's due conditions compare each row's anchor date with a literal
-- computed once per statement instead of now() - keep computed per row
-- (make bench-purge: the purge at 1.15-1.22 x the same work by hand, its
-- goal 1.20).

-- The moment before which an anchor date is past a period of keep, as a
-- literal of the statement: now() - keep written into the condition was
-- computed again for every row a purge's scans look at (timestamptz_mi_interval,
-- 6 % of a purge's time in make bench-purge).  Written in ISO style, with
-- its offset, so that it reads back the same whatever the session's
-- DateStyle; the same value as now() - keep in the caller's transaction (its
-- TimeZone counts the months and years).
CREATE OR REPLACE FUNCTION gdpr._due_before(keep interval) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET datestyle = 'ISO'
  RETURN format('%L::timestamptz', now() - keep);

-- The condition selecting the rows of policy pol that are past their period
-- (counted from after_column, else from the policy's fallback column).
CREATE OR REPLACE FUNCTION gdpr._past_due_cond(pol gdpr.retention_policies) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  alias text := CASE WHEN pol.after_table = pol.tbl THEN 't' ELSE 's' END;
  anchor text := CASE WHEN pol.fallback_column IS NULL THEN format('%s.%I', alias, pol.after_column)
                      ELSE format('coalesce(%s.%I, %s.%I)', alias, pol.after_column, alias, pol.fallback_column) END;
  due text;
BEGIN
  IF pol.after_table = pol.tbl THEN
    due := format('%s < %s', anchor, gdpr._due_before(pol.keep));
  ELSIF gdpr._single_subject(pol.tbl) THEN
    due := format('EXISTS (SELECT FROM %s s WHERE s.%I::text = %s AND %s < %s)',
                  pol.after_table, (SELECT x.id_column FROM gdpr.subject_tables x WHERE x.tbl = pol.after_table),
                  gdpr._subject_id_expr(pol.tbl, 't'), anchor, gdpr._due_before(pol.keep));
  ELSE
    -- Every link: the row is due once the latest anchor among its subjects is.
    due := format('%s < %s', gdpr._latest_anchor_sql(pol, anchor), gdpr._due_before(pol.keep));
  END IF;
  RETURN concat_ws(' AND ', due, gdpr._scope_cond(pol, 't'));
END
$$;
