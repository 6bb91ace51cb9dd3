-- Issue 18.4: ALTER TABLE subcommands that make code run on a registered
-- table's rows are recorded (ddl_subcommands.c).

-- ALTER TABLE on a registered table (or one of its partitions) that makes
-- code run on its rows — a column's new type with a USING expression, a
-- default, a column added with a default or a generation expression, a CHECK
-- constraint, a generated column's new expression — is recorded like an
-- expression index (issue 18.4): a function in it reads the rows.  The
-- subcommands are read from the collected command (ddl_subcommands.c).  Only
-- tables with all their log triggers: a restore is not DDL to record.
CREATE FUNCTION gdpr._alter_table_code(cmd pg_ddl_command) RETURNS text[]
  LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'gdpr_alter_table_code';

CREATE FUNCTION gdpr._record_alter_code() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
BEGIN
  IF gdpr._own_ddl_active() THEN
    RETURN;
  END IF;
  FOR c IN SELECT x.objid::regclass AS tbl, gdpr._alter_table_code(x.command) AS what
             FROM pg_event_trigger_ddl_commands() x
            WHERE x.command_tag = 'ALTER TABLE' AND x.classid = 'pg_class'::regclass AND x.objsubid = 0 LOOP
    CONTINUE WHEN coalesce(cardinality(c.what), 0) = 0 OR NOT c.tbl = ANY (gdpr._whole_tables());
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text,
                              format('ALTER TABLE (%s) by %s', array_to_string(c.what, ', '), gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', 'ALTER TABLE', 'subcommands', to_jsonb(c.what)));
  END LOOP;
END
$$;
CREATE EVENT TRIGGER crm_gdpr_alter_code ON ddl_command_end
  WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION gdpr._record_alter_code();
