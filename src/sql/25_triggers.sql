-- The triggers the extension keeps on every registered table, created when a
-- table is registered and removed when it is unregistered.  pg_dump keeps
-- them with the tables; registering again replaces them.

-- The extension's own DDL on a CRM table (src/own_ddl.c): the guard of
-- 20_schema_sync.sql refuses anyone else's that touches these triggers.
CREATE FUNCTION gdpr._own_ddl(open boolean) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_own_ddl';
CREATE FUNCTION gdpr._own_ddl_active() RETURNS boolean
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_own_ddl_active';
CREATE FUNCTION gdpr._set_ddl_start_state(state text) RETURNS void
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_set_ddl_start_state';
CREATE FUNCTION gdpr._ddl_start_state() RETURNS text
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_ddl_start_state';

-- The names of the triggers the extension keeps on every registered table.
CREATE FUNCTION gdpr._trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_log_insert', 'gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate']::name[];

-- Those it keeps on registered subject tables only (76_departures.sql, issue 23).
CREATE FUNCTION gdpr._subject_trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_subject_departed']::name[];


-- Restriction stops reads (Art. 18): a RESTRICTIVE row-level security policy
-- on every registered table and its partitions and children, FOR SELECT, for
-- every role; src/restriction_reads.c answers it (nothing hidden from
-- gdpr_admin).  While nobody is restricted the policy is dormant, USING
-- (true), which costs nothing per row; the first restriction arms it on
-- every table, the last lift disarms it (src/restriction_dormant.c).  Row-level security
-- lets a role see nothing without a permissive policy: a table that had it
-- off gets one that lets everyone see every row (gdpr_restriction_open),
-- which is what it did before; a table that had it on keeps its own
-- policies and only gets the restrictive one.  Not FORCE: the table's owner
-- is not filtered (doc/rights.md says why).  The DDL guard
-- (20_schema_sync.sql) keeps the policy and the switch in place.
-- The policy's expression on a table: with its subject key column col when
-- its rows hold their subject's key ('' when they are reached through other
-- tables), so that no query is needed to tell a restricted subject's row.
CREATE FUNCTION gdpr._restriction_qual(col text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN 'gdpr.restriction_visible(tableoid, ctid' || CASE WHEN col <> '' THEN ', ' || quote_ident(col) ELSE '' END || ')';
-- The expression in a state: the one above while armed, true while dormant.
CREATE FUNCTION gdpr._restriction_policy_qual(col text, armed boolean) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE WHEN armed THEN gdpr._restriction_qual(col) ELSE 'true' END;

-- The policy is created in the state read under the lock of the flips
-- (gdpr._restriction_policy_armed, held to the end of the transaction): a
-- restriction placed meanwhile waits, then arms this table too.
CREATE FUNCTION gdpr._attach_restriction_policy(tbl regclass, col text) RETURNS void
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

-- Every registered table's policy (its partitions' and children's too) with
-- the expression its links call for now: after a link went with a column.
CREATE FUNCTION gdpr._refresh_restriction_policies() RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  was_open boolean := gdpr._own_ddl_active();
  x record;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR x IN SELECT y.t, gdpr._log_subject_column(y.reg) AS col
             FROM (SELECT r.tbl AS t, r.tbl AS reg FROM gdpr.registered_tables r
                   UNION SELECT gdpr._descendants(r.tbl), r.tbl FROM gdpr.registered_tables r) y LOOP
    PERFORM gdpr._attach_restriction_policy(x.t, x.col);
  END LOOP;
  IF NOT was_open THEN
    PERFORM gdpr._own_ddl(false);
  END IF;
END
$$;

-- Undone when the table is unregistered: row-level security goes off again
-- only if the extension switched it on and no other policy remains.
CREATE FUNCTION gdpr._detach_restriction_policy(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pol name;
  opened boolean := EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl AND p.polname = 'gdpr_restriction_open');
BEGIN
  FOR pol IN SELECT p.polname FROM pg_policy p
              WHERE p.polrelid = tbl AND p.polname IN ('gdpr_restriction', 'gdpr_restriction_open') LOOP
    EXECUTE format('DROP POLICY %I ON %s', pol, tbl);
  END LOOP;
  IF opened AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = tbl) THEN
    EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', tbl);
  END IF;
END
$$;

-- The tables tbl is a partition or inheritance child of, at any depth
-- (pg_partition_ancestors sees partitions only).
CREATE FUNCTION gdpr._ancestors(tbl oid) RETURNS SETOF oid
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE a(rel) AS (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = tbl
                            UNION SELECT i.inhparent FROM pg_inherits i JOIN a ON i.inhrelid = a.rel)
  SELECT rel FROM a
$$;

-- Whether tbl's restriction policy is in place, switched on and unchanged
-- (tbl: a registered table or a partition or child of one: security review
-- round 24.4): armed, or dormant while
-- no restriction is active (an armed policy with nobody restricted is only
-- a disarm that has not happened yet: src/restriction_dormant.c).
CREATE FUNCTION gdpr._restriction_policy_whole(tbl oid) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  reg regclass := coalesce((SELECT r.tbl FROM gdpr.registered_tables r WHERE r.tbl = _restriction_policy_whole.tbl),
                           (SELECT r.tbl FROM gdpr.registered_tables r
                             WHERE r.tbl IN (SELECT gdpr._ancestors(_restriction_policy_whole.tbl))
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

-- A registered table's partitions and inheritance children, at any depth:
-- statement triggers fire only for the table a statement names, so each of
-- them carries the triggers too (issue 18.3).
CREATE FUNCTION gdpr._descendants(tbl regclass) RETURNS SETOF regclass
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE d(rel) AS (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = tbl
                            UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.rel)
  SELECT rel::regclass FROM d
$$;

-- The UPDATE, DELETE and TRUNCATE log triggers of one table, without
-- arguments (the INSERT trigger's is the subject column).
CREATE FUNCTION gdpr._attach_argless_log_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS gdpr_old NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS gdpr_old
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write()', tbl);
END
$$;

-- The triggers on one table (a registered one, or a partition or child of
-- it); col is the registered table's subject key column ('' when reached
-- through other tables).
CREATE FUNCTION gdpr._attach_triggers_to(tbl regclass, col text) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM gdpr._own_ddl(true);
  -- The access log (80_access_log.sql, log_write.c): one row per statement.
  -- The UPDATE and DELETE triggers also refuse changes to a restricted
  -- subject's rows (Art. 18, restriction.c).  Only the INSERT trigger has
  -- the subject column as its argument: PostgreSQL copies every trigger's
  -- arguments at every statement that writes the table, the others read it
  -- there (src/rel_cache.c).
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_log_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS gdpr_new
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._log_write(%L)', tbl, col);
  PERFORM gdpr._attach_argless_log_triggers(tbl);
  -- Subjects who leave (76_departures.sql) and contact points that come back (77_suppression.sql).
  PERFORM gdpr._attach_subject_triggers(tbl);
  -- Restriction stops reads (Art. 18, restriction_reads.c).
  PERFORM gdpr._attach_restriction_policy(tbl, col);
  PERFORM gdpr._own_ddl(false);
END
$$;

CREATE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- The argument is the subject key column, found here once rather than per
  -- statement ('' when the subject is reached through other tables).
  col text := gdpr._log_subject_column(tbl);
  child regclass;
BEGIN
  PERFORM gdpr._attach_triggers_to(tbl, col);
  FOR child IN SELECT gdpr._descendants(tbl) LOOP
    PERFORM gdpr._attach_triggers_to(child, col);
  END LOOP;
  -- The month partitions exist before anything is logged.
  IF to_regclass(format('gdpr.%I', gdpr._log_month_name(date_trunc('month', now() AT TIME ZONE 'UTC')))) IS NULL THEN
    PERFORM gdpr._log_maintain();
  END IF;
END
$$;

-- The tree guard's checks of what a statement did (tree_guard_after.c).
CREATE FUNCTION gdpr._check_new_member(rel regclass) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_check_new_member';
CREATE FUNCTION gdpr._check_tree_edges(rel regclass) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_check_tree_edges';

-- A partition or inheritance child that a registered table gains later
-- (CREATE TABLE ... PARTITION OF / INHERITS, ALTER TABLE ... ATTACH
-- PARTITION / INHERIT) gets the triggers at the end of that DDL.  Costs a
-- look at pg_inherits for any other table.
CREATE FUNCTION gdpr._on_new_child() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  obj oid;
  reg regclass;
  rel regclass;
BEGIN
  -- The extension's own DDL (register_table, which attaches to every table
  -- of the tree itself) is not a new child.
  IF gdpr._own_ddl_active() THEN
    RETURN;
  END IF;
  FOR obj IN SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() c
              WHERE c.classid = 'pg_class'::regclass AND c.object_type = 'table'
                AND EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = c.objid OR i.inhrelid = c.objid) LOOP
    -- The table as PostgreSQL resolved its name (a rename committed while
    -- the statement waited for its lock may have changed which one it is:
    -- security review round 24): no registered table under a parent that
    -- is not (tree_guard_after.c).
    PERFORM gdpr._check_tree_edges(obj::regclass);
    -- The DDL names the child (CREATE TABLE ... PARTITION OF, INHERIT) or
    -- the parent (ATTACH PARTITION): its tables without the triggers and
    -- the policy, whole, get them (a trigger of the owner's named like one
    -- of them is replaced: security review round 23.2).
    FOR reg IN SELECT r.tbl FROM gdpr.registered_tables r
                WHERE r.tbl::oid = obj OR obj IN (SELECT gdpr._descendants(r.tbl)) LOOP
      FOR rel IN SELECT d FROM (SELECT obj::regclass AS d UNION SELECT gdpr._descendants(obj::regclass)) x
                  WHERE NOT (gdpr._triggers_whole(x.d, gdpr._trigger_names(), to_regprocedure('gdpr._log_write()'))
                             AND gdpr._restriction_policy_whole(x.d)) LOOP
        -- A table that joins: empty, not temporary nor foreign, no parent
        -- outside the tree, looked at under a lock that waits for the
        -- writes in progress.
        PERFORM gdpr._check_new_member(rel);
        PERFORM gdpr._attach_triggers_to(rel, gdpr._log_subject_column(reg));
      END LOOP;
    END LOOP;
  END LOOP;
END
$$;
CREATE EVENT TRIGGER crm_gdpr_new_child ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE') EXECUTE FUNCTION gdpr._on_new_child();

CREATE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
  rel regclass;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t, rel IN SELECT g.tgname, g.tgrelid::regclass FROM pg_trigger g
                  WHERE g.tgrelid IN (SELECT tbl UNION SELECT gdpr._descendants(tbl))
                    AND NOT g.tgisinternal AND g.tgname = ANY (gdpr._trigger_names() || gdpr._subject_trigger_names()) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, rel);
  END LOOP;
  FOR rel IN SELECT tbl UNION SELECT gdpr._descendants(tbl) LOOP
    PERFORM gdpr._detach_restriction_policy(rel);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

-- A partition or child that leaves a registered tree (DETACH PARTITION, NO
-- INHERIT: the statement holds it AccessExclusive, and it still carries the
-- log's triggers) must be empty (tree_guard_after.c), then loses the
-- extension's triggers and policy: its writes are no longer logged, nor
-- refused as those of a table that is not registered.
CREATE FUNCTION gdpr._check_left(rel regclass) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_check_left';
CREATE FUNCTION gdpr._on_tree_left() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t regclass;
BEGIN
  IF gdpr._own_ddl_active() OR NOT EXISTS (
       SELECT FROM pg_event_trigger_ddl_commands() c
        WHERE c.classid = 'pg_class'::regclass
          AND (c.objid IN (SELECT gdpr._registered_relations())
               OR EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = c.objid AND g.tgname = 'gdpr_log_insert'))) THEN
    RETURN;
  END IF;
  FOR t IN SELECT DISTINCT g.tgrelid::regclass FROM pg_trigger g
            WHERE g.tgfoid = 'gdpr._log_write()'::regprocedure
              AND g.tgrelid NOT IN (SELECT gdpr._registered_relations())
              AND g.tgrelid IN (SELECT l.relation FROM pg_locks l
                                 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
                                   AND l.mode = 'AccessExclusiveLock' AND l.granted) LOOP
    PERFORM gdpr._check_left(t);
    PERFORM gdpr._detach_triggers(t);
  END LOOP;
END
$$;
CREATE EVENT TRIGGER crm_gdpr_tree_left ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION gdpr._on_tree_left();
