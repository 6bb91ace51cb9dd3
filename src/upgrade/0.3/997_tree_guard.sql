-- Security review rounds 23 and 24 (tree_guard.c and tree_guard_after.c do
-- the rest, in C).
-- 23.6, 24.5: the extension's triggers are whole only calling its functions
-- and tied to no extension (ALTER TRIGGER ... DEPENDS ON EXTENSION), so the
-- DDL guard refuses what changes that; and it watches DROP EXTENSION.
CREATE FUNCTION gdpr._triggers_whole(t oid, names name[], fn regprocedure) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT count(*) FROM pg_trigger g
           WHERE g.tgrelid = t AND g.tgname = ANY (names) AND g.tgfoid = fn
             AND g.tgenabled IN ('O', 'A')
             AND NOT EXISTS (SELECT FROM pg_depend d
                              WHERE d.classid = 'pg_trigger'::regclass AND d.objid = g.oid AND d.deptype = 'x'))
         = cardinality(names);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._whole_tables() RETURNS oid[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- The log's and the restriction's triggers (calling the extension's
  -- function: the others read the subject column in the INSERT trigger's
  -- argument), the restriction's policy (25_triggers.sql), and on subject
  -- tables the departure and suppression triggers (76_departures.sql).
  RETURN ARRAY(SELECT t FROM gdpr._registered_relations() t
                WHERE gdpr._triggers_whole(t, gdpr._trigger_names(), to_regprocedure('gdpr._log_write()'))
                  AND gdpr._restriction_policy_whole(t)
                  AND (NOT EXISTS (SELECT FROM gdpr.subject_tables s WHERE s.tbl = t)
                       OR gdpr._triggers_whole(t, gdpr._subject_trigger_names(),
                                               to_regprocedure('gdpr._subjects_departed()'))));
END
$$;

DROP EVENT TRIGGER crm_gdpr_guard_start;
DROP EVENT TRIGGER crm_gdpr_guard_end;
CREATE EVENT TRIGGER crm_gdpr_guard_start ON ddl_command_start
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'ALTER POLICY', 'DROP POLICY',
               'DROP EXTENSION')
  EXECUTE FUNCTION gdpr._guard_ddl_start();
CREATE EVENT TRIGGER crm_gdpr_guard_end ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE TRIGGER', 'CREATE INDEX', 'CREATE RULE',
               'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY', 'DROP EXTENSION')
  EXECUTE FUNCTION gdpr._guard_ddl_end();

-- 24.4: an inheritance child's restriction policy is guarded like a
-- partition's (its registered table is found through pg_inherits).
CREATE FUNCTION gdpr._ancestors(tbl oid) RETURNS SETOF oid
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE a(rel) AS (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = tbl
                            UNION SELECT i.inhparent FROM pg_inherits i JOIN a ON i.inhrelid = a.rel)
  SELECT rel FROM a
$$;

CREATE OR REPLACE FUNCTION gdpr._restriction_policy_whole(tbl oid) RETURNS boolean
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

-- 23.2, 24.1-24.3: a partition or child that joins a registered tree gets
-- the triggers and the policy unless they are whole, once checked as
-- PostgreSQL resolved it.
CREATE FUNCTION gdpr._check_new_member(rel regclass) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_check_new_member';
CREATE FUNCTION gdpr._check_tree_edges(rel regclass) RETURNS void
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_check_tree_edges';

CREATE OR REPLACE FUNCTION gdpr._on_new_child() RETURNS event_trigger
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

-- 24 (found with it): a partition or child that leaves a registered tree is
-- checked empty as PostgreSQL resolved it, then loses the extension's
-- triggers and policy.
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
