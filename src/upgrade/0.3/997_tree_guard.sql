-- Security review round 23 (tree_guard.c does the rest, in C).
-- 23.6: the extension's triggers tied to another extension (ALTER TRIGGER
-- ... DEPENDS ON EXTENSION) are not whole, so the DDL guard refuses the
-- ALTER TRIGGER; and it watches DROP EXTENSION.
CREATE FUNCTION gdpr._triggers_whole(t oid, names name[], fn regprocedure) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT count(*) FROM pg_trigger g
           WHERE g.tgrelid = t AND g.tgname = ANY (names) AND (fn IS NULL OR g.tgfoid = fn)
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
                       OR gdpr._triggers_whole(t, gdpr._subject_trigger_names(), NULL)));
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

-- 23.2: a partition or child that joins a registered tree gets the triggers
-- and the policy unless they are whole (a trigger of the owner's named
-- gdpr_log_insert no longer stands for them).
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
    -- The DDL names the child (CREATE TABLE ... PARTITION OF, INHERIT) or
    -- the parent (ATTACH PARTITION): its tables without the triggers and
    -- the policy, whole, get them (a trigger of the owner's named like one
    -- of them is replaced: security review round 23.2).
    FOR reg IN SELECT r.tbl FROM gdpr.registered_tables r
                WHERE r.tbl::oid = obj OR obj IN (SELECT gdpr._descendants(r.tbl)) LOOP
      FOR rel IN SELECT d FROM (SELECT obj::regclass AS d UNION SELECT gdpr._descendants(obj::regclass)) x
                  WHERE NOT (gdpr._triggers_whole(x.d, gdpr._trigger_names(), to_regprocedure('gdpr._log_write()'))
                             AND gdpr._restriction_policy_whole(x.d)) LOOP
        PERFORM gdpr._attach_triggers_to(rel, gdpr._log_subject_column(reg));
      END LOOP;
    END LOOP;
  END LOOP;
END
$$;
