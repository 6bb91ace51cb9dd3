-- Demo: consent with proof, withdrawal, the prospecting rules, the proof for an authority.
\set QUIET on
\pset footer off
\set VERBOSITY default
\set SHOW_CONTEXT never
\echo
\echo '=== Consent with proof ======================================================='
SELECT gdpr.set_subject_profile('crm.contacts', 'segment', 'status') \g /dev/null
SELECT gdpr.set_purpose_options('newsletter', consent_valid_for => '3 years', requires_double_opt_in => true) \g /dev/null
SELECT gdpr.set_purpose_options('prospecting', electronic_marketing => true) \g /dev/null
\echo 'Contact 7 signs up to the newsletter on the web site; the form sends its proof:'
SELECT gdpr.grant_consent('7', 'newsletter', 'web',
         '{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux)", "form": "footer-signup-v3",
          "notice_version": 1}') AS event \gset
SELECT gdpr.may_process('7', 'newsletter') AS "may we mail him? (double opt-in pending)";
SELECT gdpr.confirm_consent('7', 'newsletter', 'email', '{"message_id": "<c7-confirm@mail.example.fr>"}') \g /dev/null
SELECT gdpr.may_process('7', 'newsletter') AS "and after he clicked the confirmation link?";
SELECT gdpr.grant_consent('8', 'newsletter', 'phone', '{"agent": "Julie (ventes)", "recording": "rec-2026-11-24-0012"}') \g /dev/null
SELECT gdpr.confirm_consent('8', 'newsletter', 'email', '{"message_id": "<c8-confirm@mail.example.fr>"}') \g /dev/null
\echo 'A grant without the proof the channel requires is refused:'
\set ON_ERROR_STOP off
SELECT gdpr.grant_consent('9', 'newsletter', 'web', '{"ip": "198.51.100.23"}');
\set ON_ERROR_STOP on
\echo
\echo 'The newsletter list before and after contact 8 unsubscribes (no proof needed to withdraw):'
SELECT array_agg(x ORDER BY x::int) AS contactable_before FROM gdpr.contactable('newsletter') x;
SELECT gdpr.withdraw_consent('8', 'newsletter', 'email', '{"via": "unsubscribe link"}') \g /dev/null
SELECT array_agg(x ORDER BY x::int) AS contactable_after FROM gdpr.contactable('newsletter') x;
\echo
\echo 'Prospecting by e-mail (legitimate interest): everybody got the notice with the general terms.'
SELECT gdpr.record_information(id::text, 'prospecting', 'paper', '{"document": "general terms 2026"}')
  FROM crm.contacts WHERE id IN (SELECT min(id) FROM crm.contacts GROUP BY segment, status) \g /dev/null
SELECT id, segment, status, gdpr.may_process(id::text, 'prospecting') AS may_prospect,
       CASE WHEN segment = 'b2c' AND status = 'prospect' THEN 'B2C prospect: needs consent'
            WHEN segment = 'b2c' THEN 'B2C customer: soft opt-in until he objects'
            ELSE 'B2B: allowed until he objects' END AS rule
  FROM crm.contacts WHERE id IN (SELECT min(id) FROM crm.contacts GROUP BY segment, status) ORDER BY id;
\echo
\echo 'What an auditor sees: the current state, and the proof to hand to the CNIL.'
SELECT subject_id, purpose, state, granted_at::timestamp(0), confirmed_at::timestamp(0), withdrawn_at::timestamp(0),
       expires_at::date, stale
  FROM gdpr.consent_status WHERE purpose = 'newsletter' ORDER BY subject_id;
\pset format unaligned
\pset tuples_only on
SELECT jsonb_pretty(gdpr.consent_proof('7'));
\pset format aligned
\pset tuples_only off
