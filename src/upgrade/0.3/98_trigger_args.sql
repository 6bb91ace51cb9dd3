-- The log triggers of 0.2 all had the subject column as argument; since 0.3
-- only the INSERT trigger has it (25_triggers.sql): PostgreSQL copies every
-- trigger's arguments at every statement that writes a table.  The three
-- others of every table that has them (registered tables, their partitions
-- and children) are made again without.
DO $$
DECLARE
  rel regclass;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR rel IN SELECT DISTINCT g.tgrelid::regclass FROM pg_trigger g
              WHERE g.tgfoid = 'gdpr._log_write()'::regprocedure AND NOT g.tgisinternal
                AND g.tgname IN ('gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate') AND g.tgnargs > 0 LOOP
    PERFORM gdpr._attach_argless_log_triggers(rel);
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;
