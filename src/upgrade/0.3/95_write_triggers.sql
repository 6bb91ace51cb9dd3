-- One trigger per write event (issues 18 and 24.8): the access log's UPDATE
-- and DELETE statement triggers refuse changes to a restricted subject's
-- rows themselves (src/restriction.c, called from src/log_write.c), so the
-- triggers gdpr_restrict_update and gdpr_restrict_delete of 0.1 and 0.2 go:
-- each cost the CRM's writes a trigger event, a copy of its descriptor per
-- statement and a pass over the old rows.  Runs after 90_merged.sql, whose
-- gdpr._attach_triggers_to() no longer creates them.

CREATE OR REPLACE FUNCTION gdpr._trigger_names() RETURNS name[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['gdpr_log_insert', 'gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate']::name[];

DO $$
DECLARE
  t record;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR t IN SELECT g.tgrelid::regclass AS rel, g.tgname
             FROM pg_trigger g
            WHERE g.tgfoid = 'gdpr._enforce_restriction()'::regprocedure AND NOT g.tgisinternal LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;

DROP FUNCTION gdpr._enforce_restriction();
