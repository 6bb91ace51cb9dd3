-- Reads the read queue did not keep, by database and role (issue 19.2;
-- log_queue_share.c): a busy or hostile database fills its own share of the
-- queue, a backend at most half of its database's share between two takes.
CREATE FUNCTION gdpr.access_log_queue_drops() RETURNS TABLE (
    database text, role text, dropped bigint, last_dropped_at timestamptz)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_drops';
COMMENT ON FUNCTION gdpr.access_log_queue_drops() IS
  'reads dropped by the read queue since the server started, by database and role (role NULL: every role past the first 63)';
