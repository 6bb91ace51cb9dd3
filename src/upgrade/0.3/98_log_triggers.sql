-- The registered tables and their partitions and inheritance children, at
-- any depth: each carries the triggers (25_triggers.sql).
CREATE OR REPLACE FUNCTION gdpr._registered_relations() RETURNS SETOF oid
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT r.tbl::oid FROM gdpr.registered_tables r
               UNION SELECT gdpr._descendants(r.tbl)::oid FROM gdpr.registered_tables r;
END
$$;

-- The log triggers of 0.2 all had the subject column as argument; since 0.3
-- only the INSERT trigger has it (25_triggers.sql): PostgreSQL copies every
-- trigger's arguments at every statement that writes a table.  The three
-- others of every table that has them (registered tables, their partitions
-- and children) are made again without, each in the state it was (CREATE OR
-- REPLACE TRIGGER makes it fire on origin only: one set to ENABLE ALWAYS on
-- a logical replica's subscriber would stop logging what is applied there).
DO $$
DECLARE
  rel regclass;
  was jsonb;
  t record;
BEGIN
  PERFORM gdpr._own_ddl(true);
  FOR rel IN SELECT DISTINCT g.tgrelid::regclass FROM pg_trigger g
              WHERE g.tgfoid = 'gdpr._log_write()'::regprocedure AND NOT g.tgisinternal
                AND g.tgname IN ('gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate') AND g.tgnargs > 0 LOOP
    was := (SELECT jsonb_object_agg(g.tgname, g.tgenabled) FROM pg_trigger g
             WHERE g.tgrelid = rel AND g.tgname IN ('gdpr_log_update', 'gdpr_log_delete', 'gdpr_log_truncate'));
    PERFORM gdpr._attach_argless_log_triggers(rel);
    FOR t IN SELECT e.key AS name, e.value AS state FROM jsonb_each_text(was) e WHERE e.value <> 'O' LOOP
      EXECUTE format('ALTER TABLE %s %s TRIGGER %I', rel,
                     CASE t.state WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'DISABLE' END, t.name);
    END LOOP;
  END LOOP;
  PERFORM gdpr._own_ddl(false);
END
$$;
