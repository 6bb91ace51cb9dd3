-- The triggers the extension keeps on every registered table, created when a
-- table is registered and removed when it is unregistered.  pg_dump keeps
-- them with the tables; registering again replaces them.

CREATE FUNCTION gdpr._attach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Restriction of processing (Art. 18): see 70_rights.sql.
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
  EXECUTE format('CREATE OR REPLACE TRIGGER gdpr_restrict_delete AFTER DELETE ON %s
                    REFERENCING OLD TABLE AS changed_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION gdpr._enforce_restriction()', tbl);
END
$$;

CREATE FUNCTION gdpr._detach_triggers(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t name;
BEGIN
  FOR t IN SELECT g.tgname FROM pg_trigger g
             WHERE g.tgrelid = tbl AND g.tgname IN ('gdpr_restrict_update', 'gdpr_restrict_delete') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
  END LOOP;
END
$$;
