-- Security review rounds 25 and 26 (read_hook.c, owner_context.c, restriction.c
-- and log_write.c do the rest, in C).
-- 25.2: a rule on a registered table ran its queries with the extension's
-- purge and erasure: a table with rules is not registered, CREATE RULE on a
-- registered one is refused.
CREATE OR REPLACE FUNCTION gdpr._check_table(tbl regclass) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c pg_class;
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  SELECT * INTO c FROM pg_class WHERE oid = tbl;
  IF c.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '% is not a table', tbl
      USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Only ordinary and partitioned tables can hold registered personal data.';
  END IF;
  IF c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                        'gdpr'::regnamespace)
     OR c.relpersistence = 't' THEN
    RAISE EXCEPTION 'table % cannot be registered', tbl
      USING ERRCODE = 'wrong_object_type',
            DETAIL = 'System tables, temporary tables and the extension''s own tables are not CRM data.';
  END IF;
  -- Rules would run their queries with the extension's own statements
  -- (security review round 25.2); CREATE RULE is refused once registered.
  IF EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = tbl OR w.ev_class IN (SELECT gdpr._descendants(tbl))) THEN
    RAISE EXCEPTION 'table % has rules', tbl
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = (SELECT string_agg(format('%I ON %s', w.rulename, w.ev_class::regclass), ', ' ORDER BY w.rulename)
                        FROM pg_rewrite w WHERE w.ev_class = tbl OR w.ev_class IN (SELECT gdpr._descendants(tbl))),
            HINT = 'A rule would run its queries with the extension''s purge and erasure: replace it by a trigger, then register the table.';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = tbl AND contype = 'p') THEN
    RAISE EXCEPTION 'table % has no primary key', tbl
      USING ERRCODE = 'invalid_table_definition',
            HINT = 'Rows of personal data must be addressable: add a primary key, then register the table.';
  END IF;
END
$$;
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
  -- A rule on a registered table would run its queries with every statement
  -- on it, the extension's purge and erasure included, at their level and
  -- with their exemptions (a DO ALSO copy of the table unlogged, a DO
  -- INSTEAD NOTHING erasure that erases nothing: security review round
  -- 25.2).  Only on a table whose triggers are all in place, as below: a
  -- restore creates rules before triggers.
  IF NOT gdpr._own_ddl_active() THEN
    SELECT string_agg(DISTINCT w.ev_class::regclass::text, ', ') INTO broken
      FROM pg_event_trigger_ddl_commands() x
      JOIN pg_rewrite w ON x.classid = 'pg_rewrite'::regclass AND w.oid = x.objid
     WHERE x.command_tag = 'CREATE RULE' AND w.ev_class = ANY (gdpr._whole_tables());
    IF broken IS NOT NULL THEN
      RAISE EXCEPTION 'rules cannot be created on registered tables'
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s holds registered personal data: a rule would run its queries with every statement on it, the extension''s purge and erasure included.', broken),
              HINT = 'Use a trigger, or unregister the table with gdpr.unregister_table() if it no longer holds personal data.';
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
-- 25.4, 26.3: a type change rewrites every row: refused to all but
-- gdpr_admin while a subject of the table is restricted, by the role that
-- runs it.
CREATE FUNCTION gdpr._ddl_runner() RETURNS name
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_ddl_runner';
CREATE OR REPLACE FUNCTION gdpr._record_alter_code() RETURNS event_trigger
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
    -- A new type or generation expression rewrites every row: while a
    -- subject is restricted (Art. 18: his rows may only be stored), only a
    -- gdpr_admin may (security review round 25.4): the role running it, not
    -- the one whose erasure fired the owner's trigger that runs it (26.3).
    IF c.what && ARRAY['ALTER COLUMN TYPE', 'ALTER COLUMN SET EXPRESSION']
       AND gdpr._restriction_active((SELECT r.tbl FROM gdpr.registered_tables r
                                      WHERE r.tbl = c.tbl OR r.tbl IN (SELECT gdpr._ancestors(c.tbl)) LIMIT 1)) IS NOT NULL
       AND NOT (SELECT a.rolsuper FROM pg_roles a WHERE a.rolname = coalesce(gdpr._ddl_runner(), gdpr._caller()))
       AND NOT pg_has_role(coalesce(gdpr._ddl_runner(), gdpr._caller()), 'gdpr_admin', 'USAGE') THEN
      RAISE EXCEPTION 'ALTER TABLE % would rewrite the rows of a restricted subject', c.tbl
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s changes every row of %s, and a subject of its subject table is restricted (Art. 18): his rows may only be stored.',
                              array_to_string(c.what, ', '), c.tbl),
              HINT = 'Ask a gdpr_admin, or wait until the restriction is lifted.';
    END IF;
    PERFORM gdpr._note_change('ddl on a registered table', c.tbl::text,
                              format('ALTER TABLE (%s) by %s', array_to_string(c.what, ', '), gdpr._caller()));
    PERFORM gdpr._log_event('DDL', c.tbl, NULL, 0, jsonb_build_object('command', 'ALTER TABLE', 'subcommands', to_jsonb(c.what)));
  END LOOP;
END
$$;
