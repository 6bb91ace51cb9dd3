-- Reads the read queue did not keep, by database and role (issue 19.2;
-- log_queue_share.c): a busy or hostile database fills its own share of the
-- queue, a backend at most half of its database's share between two takes.
CREATE FUNCTION gdpr.access_log_queue_drops() RETURNS TABLE (
    database text, role text, dropped bigint, last_dropped_at timestamptz)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_drops';
COMMENT ON FUNCTION gdpr.access_log_queue_drops() IS
  'reads dropped by the read queue since the server started, by database and role (role NULL: every role past the first 63)';

-- The alarm on the queue (issue 19.2): like gdpr.mass_read_alarms, one row
-- per (database, role) whose reads were dropped, or had to wait for the log
-- writer (crm_gdpr.log_queue_full = wait), within the last
-- crm_gdpr.mass_read_window; the server log has a WARNING for each, at most
-- once a minute.  Counts run from the server's start.
CREATE FUNCTION gdpr.access_log_queue_pressure() RETURNS TABLE (
    database text, role text, dropped bigint, waited bigint, last_dropped_at timestamptz, last_waited_at timestamptz)
  LANGUAGE c AS 'MODULE_PATHNAME', 'gdpr_log_queue_pressure';
COMMENT ON FUNCTION gdpr.access_log_queue_pressure() IS
  'reads dropped and reads that waited for room in the read queue since the server started, by database and role';
CREATE VIEW gdpr.log_queue_alarms AS
  SELECT p.database, p.role, p.dropped, p.waited, p.last_dropped_at, p.last_waited_at,
         CASE WHEN p.dropped > 0 THEN 'reads dropped' ELSE 'reads waited for the log writer' END AS alarm,
         gdpr.setting('mass_read_window')::interval AS window_length
    FROM gdpr.access_log_queue_pressure() p
   WHERE greatest(p.last_dropped_at, p.last_waited_at) >= now() - gdpr.setting('mass_read_window')::interval;
COMMENT ON VIEW gdpr.log_queue_alarms IS
  'per database and role: reads the read queue dropped or made wait (since the server started), listed while the last is within crm_gdpr.mass_read_window';
