-- The gdpr_restriction policy dormant while nobody is restricted (issue 23.4
-- follow-up, src/restriction_dormant.c): USING (true), which costs reads
-- nothing, until the first restriction arms it on every registered table; the
-- last lift disarms it.  The guard refuses any ALTER POLICY of it but the
-- extension's own.  Tables registered before get the state of the
-- restrictions present at the end of this part.

-- The expression in a state: the one above while armed, true while dormant.
CREATE FUNCTION gdpr._restriction_policy_qual(col text, armed boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN armed THEN gdpr._restriction_qual(col) ELSE 'true' END;

-- The policy is created in the state read under the lock of the flips
-- (gdpr._restriction_policy_armed, held to the end of the transaction): a
-- restriction placed meanwhile waits, then arms this table too.
CREATE OR REPLACE FUNCTION gdpr._attach_restriction_policy(tbl regclass, col text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  qual text := gdpr._restriction_policy_qual(col, gdpr._restriction_policy_armed());
  current_qual text := (SELECT pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p
                         WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction');
BEGIN
  -- A table whose owner switched the filter off (gdpr.set_restriction_reads).
  IF EXISTS (SELECT FROM gdpr.restriction_read_optouts o
              WHERE o.tbl = _attach_restriction_policy.tbl OR _attach_restriction_policy.tbl IN (SELECT gdpr._descendants(o.tbl))) THEN
    PERFORM gdpr._detach_restriction_policy(tbl);
    RETURN;
  ELSIF current_qual = qual THEN
    RETURN;
  ELSIF current_qual IS NOT NULL THEN
    -- The table's way to its subject changed (gdpr.link_table).
    EXECUTE format('ALTER POLICY gdpr_restriction ON %s USING (%s)', tbl, qual);
    RETURN;
  END IF;
  IF NOT (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = tbl) THEN
    EXECUTE format('CREATE POLICY gdpr_restriction_open ON %s USING (true) WITH CHECK (true)', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  END IF;
  EXECUTE format('CREATE POLICY gdpr_restriction ON %s AS RESTRICTIVE FOR SELECT USING (%s)', tbl, qual);
END
$$;

-- Whether tbl's restriction policy is in place, switched on and unchanged
-- (tbl: a registered table or a partition of one): armed, or dormant while
-- no restriction is active (an armed policy with nobody restricted is only
-- a disarm that has not happened yet: src/restriction_dormant.c).
CREATE OR REPLACE FUNCTION gdpr._restriction_policy_whole(tbl oid) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg regclass := coalesce((SELECT r.tbl FROM gdpr.registered_tables r WHERE r.tbl = _restriction_policy_whole.tbl),
                           (SELECT r.tbl FROM gdpr.registered_tables r
                             WHERE r.tbl IN (SELECT a.relid FROM pg_partition_ancestors(_restriction_policy_whole.tbl) a)
                             LIMIT 1));
BEGIN
  RETURN reg IS NULL OR EXISTS (SELECT FROM gdpr.restriction_read_optouts o WHERE o.tbl = reg)
      OR (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = tbl)
         AND EXISTS (SELECT FROM pg_policy p
                      WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction' AND NOT p.polpermissive
                        AND p.polcmd = 'r' AND p.polroles = '{0}'
                        AND pg_get_expr(p.polqual, p.polrelid)
                            IN (gdpr._restriction_qual(gdpr._log_subject_column(reg)),
                                gdpr._restriction_policy_qual('', gdpr._restrictions_active())));
END
$$;

-- The gdpr_restriction policies are armed while a restriction is active,
-- dormant (USING (true): no cost per row read) while none is
-- (src/restriction_dormant.c): every change of gdpr.restrictions makes them
-- follow, whoever makes it.
CREATE FUNCTION gdpr._restrictions_active() RETURNS boolean
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN EXISTS (SELECT FROM gdpr.restrictions r WHERE r.lifted_at IS NULL);
-- The registered relations (partitions and children included) whose policy
-- is not yet in the state armed, with the expression it needs.
CREATE FUNCTION gdpr._restriction_policy_drift(armed boolean) RETURNS TABLE (tbl regclass, qual text)
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- STABLE: it reads with its caller's snapshot (a fresh one, restriction_dormant.c).
  RETURN QUERY
    SELECT y.t, q.qual
      FROM (SELECT r.tbl AS t, r.tbl AS reg FROM gdpr.registered_tables r
            UNION SELECT gdpr._descendants(r.tbl), r.tbl FROM gdpr.registered_tables r) y
      JOIN pg_policy p ON p.polrelid = y.t AND p.polname = 'gdpr_restriction'
      CROSS JOIN LATERAL (SELECT gdpr._restriction_policy_qual(gdpr._log_subject_column(y.reg), armed) AS qual) q
     WHERE pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM q.qual
     ORDER BY y.t;
END
$$;
CREATE FUNCTION gdpr._restriction_policy_armed() RETURNS boolean
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_armed';
CREATE FUNCTION gdpr._restriction_policy_follow() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_follow';
CREATE TRIGGER restrictions_policy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.restrictions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._restriction_policy_follow();
-- The purge worker's round: the policies brought to the state of
-- gdpr.restrictions (a disarm given up on a busy table, a restriction
-- written without triggers); how many were changed (src/restriction_dormant.c).
CREATE FUNCTION gdpr._restriction_policy_reconcile() RETURNS integer
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_restriction_policy_reconcile';

CREATE OR REPLACE FUNCTION gdpr._guard_ddl_end() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  before oid[] := gdpr._ddl_start_state()::oid[];
  broken text;
  c record;
BEGIN
  PERFORM gdpr._set_ddl_start_state(NULL);
  IF before IS NOT NULL AND NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(b.t::regclass::text, ', ' ORDER BY b.t::regclass::text) INTO broken
      FROM (SELECT t FROM unnest(before) t
             WHERE NOT t = ANY (gdpr._whole_tables())
               AND EXISTS (SELECT FROM pg_class x WHERE x.oid = t)
               AND t IN (SELECT gdpr._registered_relations())
            -- Any ALTER POLICY of the extension's policies, even one that
            -- leaves the expression as it was (USING (true) while dormant):
            -- only the extension changes them, with the restrictions' state.
            UNION SELECT p.polrelid FROM pg_event_trigger_ddl_commands() x
                    JOIN pg_policy p ON x.classid = 'pg_policy'::regclass AND p.oid = x.objid
                   WHERE x.command_tag = 'ALTER POLICY' AND p.polname IN ('gdpr_restriction', 'gdpr_restriction_open')
                     AND p.polrelid IN (SELECT gdpr._registered_relations())) b;
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'the extension''s triggers and row-level security policy on registered tables cannot be dropped, renamed, changed or disabled'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('This statement would leave a trigger or the gdpr_restriction policy of %s missing, changed or disabled.', broken),
              HINT = 'Unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
    END IF;
  END IF;
  -- Code that will run on the rows: an index on an expression or with a
  -- predicate, a trigger (not the extension's), a rule, a policy.  Only on a
  -- table whose triggers are all in place: a restore, which creates indexes
  -- and rules before the triggers, is not recorded as DDL.
  FOR c IN SELECT x.command_tag, coalesce(i.indrelid, g.tgrelid, p.polrelid, w.ev_class)::regclass AS tbl
             FROM pg_event_trigger_ddl_commands() x
             LEFT JOIN pg_index i ON x.classid = 'pg_class'::regclass AND i.indexrelid = x.objid
             LEFT JOIN pg_trigger g ON x.classid = 'pg_trigger'::regclass AND g.oid = x.objid
             LEFT JOIN pg_policy p ON x.classid = 'pg_policy'::regclass AND p.oid = x.objid
             LEFT JOIN pg_rewrite w ON x.classid = 'pg_rewrite'::regclass AND w.oid = x.objid
            WHERE (x.command_tag = 'CREATE INDEX' AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
               OR (x.command_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER') AND NOT g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()))
               OR x.command_tag = 'CREATE RULE'
               OR (x.command_tag IN ('CREATE POLICY', 'ALTER POLICY') AND p.polname NOT IN ('gdpr_restriction', 'gdpr_restriction_open')) LOOP
    CONTINUE WHEN gdpr._own_ddl_active() OR NOT c.tbl = ANY (gdpr._whole_tables());
    CONTINUE WHEN NOT EXISTS (SELECT FROM gdpr.registered_tables r WHERE r.tbl = c.tbl);
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text, format('%s by %s', c.command_tag, gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', c.command_tag));
  END LOOP;
END
$$;

REVOKE EXECUTE ON FUNCTION gdpr._restriction_policy_qual(text, boolean), gdpr._restrictions_active(),
  gdpr._restriction_policy_drift(boolean), gdpr._restriction_policy_armed(), gdpr._restriction_policy_follow()
  FROM PUBLIC;

-- The tables registered before, their partitions and children: dormant
-- unless a restriction is active.
SELECT gdpr._refresh_restriction_policies();
