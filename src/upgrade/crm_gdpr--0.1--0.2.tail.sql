-- 0.1 -> 0.2, after the new definitions of the changed functions, the access
-- log (80_access_log.sql) and the privileges (99_privileges.sql), which the
-- Makefile puts before and around this part.

-- Restrictions are cached per backend since 0.2 (restriction.c).
CREATE FUNCTION gdpr._restrictions_changed() RETURNS trigger
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_restrictions_changed';
CREATE TRIGGER restrictions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gdpr.restrictions
  FOR EACH STATEMENT EXECUTE FUNCTION gdpr._restrictions_changed();
