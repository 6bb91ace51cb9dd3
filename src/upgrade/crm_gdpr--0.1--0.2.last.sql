
-- Registered tables get the access log's triggers.
SELECT gdpr._attach_triggers(r.tbl) FROM gdpr.registered_tables r;
-- Month partitions belong to the data, not to the extension (as after a
-- fresh install): pg_dump then keeps them with their rows.
DO $$
DECLARE
  p regclass;
BEGIN
  FOR p IN SELECT i.inhrelid::regclass FROM pg_inherits i
            WHERE i.inhparent = 'gdpr.access_log'::regclass AND i.inhrelid <> 'gdpr.access_log_default'::regclass LOOP
    EXECUTE format('ALTER EXTENSION crm_gdpr DROP TABLE %s', p);
  END LOOP;
END
$$;
