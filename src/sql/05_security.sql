-- Who calls, what he may do, and how the extension touches CRM tables
-- (doc/crypto.md, "Threat model").  Three rules:
-- 1. The caller is the role that called the extension's SECURITY DEFINER
--    functions (the session's current user, as set by SET ROLE), never their
--    owner: every table a function names, by name or by OID, is checked
--    against the caller's own privileges (gdpr._require_privilege).
-- 2. Every statement on a CRM table runs as that table's owner in a
--    security-restricted context (gdpr._owner_exec, gdpr._owner_query,
--    src/owner_context.c), so that what the owner controls (triggers, index
--    expressions, defaults, RLS policies, rules, CHECK functions) never runs
--    with more rights than the owner's.  Those statements call nothing of
--    schema gdpr: values the extension computes are passed as parameters.
-- 3. Pseudonym domains used by the extension's registers are reserved
--    (src/pseudonym_domains.c): only its own code computes them.

-- The role a row names and privileges are checked for: the caller of the
-- extension's SECURITY DEFINER functions (the role set by SET ROLE or the
-- session), not their owner.
CREATE FUNCTION gdpr._caller() RETURNS name
  LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'gdpr_caller';

-- A CRM value as text (x::text) or a CRM row as jsonb (to_jsonb(r)) where the
-- extension reads CRM rows as its own owner: the transition tables of its
-- statement triggers, which only the trigger's own queries see.  A cast of
-- the table owner's own type to text or json, made with CREATE CAST, would
-- run there with the extension owner's rights: these call only the server's
-- code (a cast function in C, else the type's output function), otherwise
-- the same results (src/cast_free.c).
CREATE FUNCTION gdpr._text(value anyelement) RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_text';
CREATE FUNCTION gdpr._row_jsonb(r record) RETURNS jsonb
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_row_jsonb';

-- Run one statement on CRM table tbl as its owner; $1, $2, ... are params
-- (text: the statement casts them).  Rows processed / the one jsonb value
-- of its one row.
CREATE FUNCTION gdpr._owner_exec(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS bigint
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_exec';
CREATE FUNCTION gdpr._owner_query(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS jsonb
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_query';
-- The same, their plans kept for the session (src/owner_plans.c): for a
-- text that is the same whatever the subject, his values passed in params.
CREATE FUNCTION gdpr._owner_exec_kept(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS bigint
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_exec_kept';
CREATE FUNCTION gdpr._owner_query_kept(tbl regclass, sql text, VARIADIC params text[] DEFAULT '{}') RETURNS jsonb
  LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'gdpr_owner_query_kept';

-- The extension's own pseudonyms (reserved domains included).
CREATE FUNCTION gdpr._pseudonym(value text, domain text) RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_pseudonymise';

-- Whether role holds every privilege of the list on tbl, and USAGE on its schema.
CREATE FUNCTION gdpr._holds_table_privileges(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- has_table_privilege(..., 'A, B') is true when ANY is held: each is asked.
  -- (PL/pgSQL: its plan is kept; a SQL function with SET is planned at every
  -- call, and export and erasure ask this for every table.)
  RETURN role IS NOT NULL
         AND has_schema_privilege(role, (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl), 'USAGE')
         AND NOT EXISTS (SELECT FROM unnest(string_to_array(replace(privilege, ' ', ''), ',')) p
                          WHERE NOT has_table_privilege(role, tbl, p));
END
$$;

-- The same, and row-level security shows him every row (gdpr._rls_filters).
CREATE FUNCTION gdpr._holds_privileges(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN gdpr._holds_table_privileges(role, tbl, privilege) AND NOT gdpr._rls_filters(role, tbl, privilege);
END
$$;

-- Whether row-level security filters tbl's rows for role under one of the
-- privileges of the list: it is on and applies to him (not its owner unless
-- forced, neither superuser nor BYPASSRLS), and a restrictive policy of the
-- table's own applies to him, or no permissive one that lets every row
-- through (USING true) does.  The extension's own policies (gdpr_restriction,
-- which hides nothing from gdpr_admin, and gdpr_restriction_open) do not
-- count.  The extension reads CRM rows as their owner, whom the policies do
-- not filter: it would show such a caller rows he cannot read himself.
CREATE FUNCTION gdpr._rls_filters(role name, tbl regclass, privilege text) RETURNS boolean
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- The commands whose policies apply: SELECT's always (a DELETE or an
  -- UPDATE reads its rows), UPDATE's and DELETE's for those privileges.
  cmds "char"[] := ARRAY['r']::"char"[]
                   || CASE WHEN privilege ~* 'UPDATE' THEN ARRAY['w']::"char"[] ELSE '{}' END
                   || CASE WHEN privilege ~* 'DELETE' THEN ARRAY['d']::"char"[] ELSE '{}' END;
BEGIN
  -- Whatever row_security says: set to off, it does not show a role the
  -- rows, the server refuses his reads instead.
  IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_roles r ON r.rolname = role
                  WHERE c.oid = tbl AND c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
                    AND (c.relforcerowsecurity OR NOT pg_has_role(role, c.relowner, 'USAGE'))) THEN
    RETURN false;
  END IF;
  -- The policies that apply to him: to the roles whose privileges he has
  -- (USAGE: as the server decides, NOINHERIT memberships do not count), for
  -- those commands; a restrictive one of the table's own filters, and so
  -- does a command without a permissive one that lets every row through.
  RETURN (WITH pol AS (SELECT p.polpermissive, p.polcmd, pg_get_expr(p.polqual, p.polrelid) = 'true' AS all_rows
                         FROM pg_policy p
                        WHERE p.polrelid = tbl AND p.polname <> 'gdpr_restriction'
                          AND (p.polcmd = '*' OR p.polcmd = ANY (cmds))
                          AND (0::oid = ANY (p.polroles)
                               OR EXISTS (SELECT FROM unnest(p.polroles) x WHERE x <> 0 AND pg_has_role(role, x, 'USAGE'))))
          SELECT EXISTS (SELECT FROM pol WHERE NOT pol.polpermissive)
              OR EXISTS (SELECT FROM unnest(cmds) cmd
                          WHERE NOT EXISTS (SELECT FROM pol WHERE pol.polpermissive AND pol.all_rows
                                               AND (pol.polcmd = '*' OR pol.polcmd = cmd))));
END
$$;

-- 42501 unless the caller holds privilege (a has_table_privilege list, e.g.
-- 'DELETE') on tbl and USAGE on its schema; action says what needed it.
CREATE FUNCTION gdpr._require_privilege(tbl regclass, privilege text, action text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  ns oid := (SELECT c.relnamespace FROM pg_class c WHERE c.oid = tbl);
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  IF ns IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  IF NOT coalesce(gdpr._holds_table_privileges(who, tbl, privilege), false) THEN
    RAISE EXCEPTION 'permission denied for table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s needs %s on %s (and USAGE on its schema); role "%s" does not hold it.',
                            action, privilege, tbl, who),
            HINT = 'The extension never acts on a table with rights its caller does not have: '
                   'ask the table''s owner for the privilege.';
  END IF;
  IF who IS NOT NULL AND gdpr._rls_filters(who, tbl, privilege) THEN
    RAISE EXCEPTION 'permission denied for table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s reads the rows of %s as its owner; row-level security filters them for role "%s".',
                            action, tbl, who),
            HINT = 'The extension never shows a role rows it cannot read itself: ask the table''s owner for a policy '
                   'that lets every row through (USING (true)), or act as a role that BYPASSRLS.';
  END IF;
END
$$;

-- 42501 unless the caller has the rights of tbl's owner (what ALTER TABLE
-- needs): registering a table decides what the extension will do to it.
CREATE FUNCTION gdpr._require_table_owner(tbl regclass, action text) RETURNS void
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  who name := gdpr._caller();
  owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = tbl);
BEGIN
  PERFORM gdpr._not_null(tbl, 'table');
  IF owner IS NULL THEN
    RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid USING ERRCODE = 'undefined_table';
  END IF;
  PERFORM gdpr._require_privilege(tbl, 'SELECT', action);
  IF NOT pg_has_role(who, owner, 'USAGE') THEN
    RAISE EXCEPTION 'must be owner of table %', tbl
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('%s needs the rights of the table''s owner "%s"; role "%s" does not have them.',
                            action, pg_get_userbyid(owner), who),
            HINT = format('Run it as "%s", or GRANT "%s" TO "%s".', pg_get_userbyid(owner), pg_get_userbyid(owner), who);
  END IF;
END
$$;

-- The privileges a retention or erasure action needs on its table.
CREATE FUNCTION gdpr._action_privileges(action text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN CASE action WHEN 'delete' THEN 'SELECT, DELETE' WHEN 'keep' THEN 'SELECT' ELSE 'SELECT, UPDATE' END;
