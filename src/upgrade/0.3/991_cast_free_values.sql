-- A CRM value as text and a CRM row as jsonb without the table owner's casts
-- (src/cast_free.c): where the extension reads CRM rows as its own owner
-- (the transition tables of its triggers), x::text and to_jsonb(r) called
-- the cast of the owner's own type to text or json that CREATE CAST lets him
-- make, with the extension owner's rights: a table owner became superuser.
-- (gdpr._validate_contact(), new in 0.3, is made with _row_jsonb by
-- 50_registers.sql.)
CREATE FUNCTION gdpr._text(value anyelement) RETURNS text
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_text';
CREATE FUNCTION gdpr._row_jsonb(r record) RETURNS jsonb
  LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'gdpr_row_jsonb';
REVOKE EXECUTE ON FUNCTION gdpr._text(anyelement), gdpr._row_jsonb(record) FROM PUBLIC;


CREATE OR REPLACE FUNCTION gdpr._subjects_departed() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st regclass := TG_RELID::regclass;
  id_col name := (SELECT s.id_column FROM gdpr.subject_tables s WHERE s.tbl = TG_RELID);
  objectors text;
  ids text[];
BEGIN
  IF id_col IS NULL THEN
    RETURN NULL;
  END IF;
  IF gdpr._has_key() THEN
    EXECUTE format('INSERT INTO gdpr.departed_subjects (subject_table, subject_ref)
                      SELECT %L, gdpr._subject_ref(%L, gdpr._text(g.%I)) FROM gdpr_gone g
                    ON CONFLICT ON CONSTRAINT departed_subjects_pkey DO NOTHING', st, st, id_col);
    objectors := gdpr._suppress_objectors_sql(st, id_col);
    IF objectors IS NOT NULL AND EXISTS (SELECT FROM gdpr.consent_state s WHERE s.subject_table = st) THEN
      EXECUTE objectors;
    END IF;
  END IF;
  IF EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = st) THEN
    EXECUTE format('SELECT array_agg(gdpr._text(g.%1$I)) FROM gdpr_gone g
                     WHERE EXISTS (SELECT FROM gdpr.consent_ledger l WHERE l.subject_table = %2$L::regclass
                                      AND l.subject_id = gdpr._text(g.%1$I))', id_col, st)
      INTO ids;
    IF ids IS NOT NULL THEN
      PERFORM gdpr._retire_consent(st, ids);
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gdpr._suppress_objectors_sql(st regclass, id_col name) RETURNS text
  LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
  RETURN (SELECT format(
      'INSERT INTO gdpr.suppressions (ref, kind, reason, objected_at)
         SELECT gdpr._contact_ref(v.x), gdpr._contact_kind(v.x), %1$L, max(o.at)
           FROM gdpr_gone g
           CROSS JOIN LATERAL (VALUES %2$s) v (x)
           JOIN LATERAL (SELECT coalesce(s.objected_at, s.withdrawn_at) AS at
                           FROM gdpr.consent_state s JOIN gdpr.purposes p ON p.code = s.purpose
                          WHERE s.subject_table = %3$L::regclass AND s.subject_id = gdpr._text(g.%4$I)
                            AND (s.objected_at IS NOT NULL
                                 OR p.legal_basis = %5$L AND s.withdrawn_at IS NOT NULL)) o ON true
          WHERE gdpr._contact_kind(v.x) IS NOT NULL
          GROUP BY 1, 2
       ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING',
      'objection', string_agg(format('(gdpr._text(g.%I))', c), ', '), st, id_col, 'legitimate_interest')
            FROM unnest(gdpr._contact_columns(st)) c
          HAVING count(*) > 0);
