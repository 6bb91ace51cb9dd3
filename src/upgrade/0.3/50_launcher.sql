-- Issue 19.1-2: a launcher serves every database where crm_gdpr is installed
-- (C only: crm_gdpr.database is now a filter, empty by default); the read
-- queue is shared fairly between databases, and its drops are attributed.
CREATE FUNCTION gdpr.access_log_queue_drops() RETURNS TABLE (
    database text, role text, dropped bigint, last_dropped_at timestamptz)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_drops';
COMMENT ON FUNCTION gdpr.access_log_queue_drops() IS
  'reads dropped by the read queue since the server started, by database and role (role NULL: every role past the first 63)';
REVOKE EXECUTE ON FUNCTION gdpr.access_log_queue_drops() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.access_log_queue_drops() TO gdpr_auditor, gdpr_admin;
