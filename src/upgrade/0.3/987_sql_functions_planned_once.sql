-- Functions an erasure or an export calls hundreds of times, in PL/pgSQL
-- (its plans kept for the session) instead of SQL: an SQL function with SET
-- cannot be inlined, and PostgreSQL parses and plans it again at every call
-- (qualified_name 133 us a call, _subject_key_type 80, _active_hold 111:
-- some 2 ms of an erasure's 10.8 on the benchmark's machine, by
-- pg_stat_user_functions over 100 erasures).

CREATE OR REPLACE FUNCTION gdpr.qualified_name(tbl regclass) RETURNS text
  LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT format('%I.%I', n.nspname, c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = qualified_name.tbl);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._subject_key_type(subject_table regclass) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT format_type(a.atttypid, a.atttypmod)
            FROM gdpr.subject_tables s JOIN pg_attribute a ON a.attrelid = s.tbl AND a.attname = s.id_column
           WHERE s.tbl = _subject_key_type.subject_table);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._contact_columns(st regclass) RETURNS name[]
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN ARRAY(SELECT DISTINCT pc.col FROM gdpr.personal_columns pc
                WHERE pc.tbl = _contact_columns.st AND pc.category = 'contact' ORDER BY pc.col);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._active_hold(st regclass, subject_id text) RETURNS gdpr.holds
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT h FROM gdpr.holds h
           WHERE h.subject_table = _active_hold.st AND h.subject_id = _active_hold.subject_id AND h.released_at IS NULL
             AND (h.until IS NULL OR h.until > now())
           ORDER BY h.id LIMIT 1);
END
$$;

CREATE OR REPLACE FUNCTION gdpr._link_cols(l gdpr.subject_links, prefix text, parent boolean) RETURNS text
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT string_agg(_link_cols.prefix || quote_ident(x.c), ', ' ORDER BY x.i)
            FROM unnest(CASE WHEN _link_cols.parent THEN _link_cols.l.parent_column || _link_cols.l.extra_parent_columns
                             ELSE _link_cols.l.link_column || _link_cols.l.extra_link_columns END) WITH ORDINALITY x(c, i));
END
$$;
