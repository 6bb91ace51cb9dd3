-- Demo: retention periods applied by the background worker.
\set QUIET on
\pset footer off
\echo
\echo '=== Retention: the database purges on its own ================================'
\echo 'What is past its period now (an auditor looks here first):'
SELECT policy_id, tbl, coalesce(col::text, '(rows)') AS col, action, keep, after_column, rows_due, oldest_due::date
  FROM gdpr.retention_status ORDER BY policy_id;
\echo
SELECT min(id) AS litigant FROM crm.contacts c WHERE last_contact_at < now() - interval '3 years'
   AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id) \gset
\echo 'A legal hold: contact' :litigant 'is in litigation; his data must not be purged although it is due.'
SELECT gdpr.place_hold(:'litigant', 'litigation: Tribunal de commerce de Paris, case 2026-117') AS hold \gset
SELECT * FROM gdpr.purge(dry_run => true);
\echo '(above: what a purge would do now, dry run)'
\echo
\echo 'The worker (crm_gdpr.purge_naptime = 2s in this demo) is switched on:'
ALTER SYSTEM SET crm_gdpr.enable_worker = on;
SELECT pg_reload_conf() \g /dev/null
DO $$
BEGIN
  FOR i IN 1..60 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM gdpr.retention_status WHERE rows_due > 0);
    PERFORM pg_sleep(0.5);
  END LOOP;
END
$$;
\echo 'A few seconds later, the purge history (no personal data in it):'
SELECT pid, backend_type, application_name FROM pg_stat_activity WHERE backend_type = 'crm_gdpr purge worker';
SELECT run_id, started_by, status, tbl, coalesce(col::text, '(rows)') AS col, action, rows
  FROM gdpr.purge_history WHERE NOT dry_run AND rows > 0 ORDER BY run_id, policy_id;
\echo 'Nothing is due any more, and the held contact is still there:'
SELECT policy_id, tbl, rows_due FROM gdpr.retention_status ORDER BY policy_id;
SELECT id, last_contact_at::date, (SELECT count(*) FROM crm.interactions i WHERE i.contact_id = c.id) AS interactions
  FROM crm.contacts c WHERE id = :litigant;
SELECT gdpr.release_hold(:hold) \g /dev/null
