-- Hostile and bad input: identifiers and text that reach dynamic SQL carry
-- injection attempts, NULLs, blanks, unknown codes, wrong types, impossible
-- dates.  Each call must fail with its SQLSTATE and change nothing: the
-- digest of every table of schemas gdpr and crm is the same before and after
-- (crm.orders is still there, no row moved).
BEGIN;
SELECT plan(211);

\set QUIET on
SET client_min_messages = warning;
\i test/fixtures/registry.sql
RESET client_min_messages;
SELECT gdpr.open_request('7', 'access') \g /dev/null
SELECT gdpr.report_breach('lost laptop', now() - interval '1 hour', 3) \g /dev/null

CREATE FUNCTION pg_temp.digest() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  t regclass;
  d text := '';
  x text;
BEGIN
  FOR t IN SELECT c.oid::regclass FROM pg_class c
            WHERE c.relnamespace IN ('gdpr'::regnamespace, 'crm'::regnamespace) AND c.relkind IN ('r', 'p')
              AND NOT c.relispartition ORDER BY c.oid::regclass::text LOOP
    EXECUTE format('SELECT md5(coalesce(string_agg(x::text, ''|'' ORDER BY x::text), '''')) FROM %s x', t) INTO x;
    d := d || t::text || ':' || x || ';';
  END LOOP;
  RETURN md5(d);
END
$$;

CREATE FUNCTION pg_temp.refused(q text, state text, what text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  before text := pg_temp.digest();
BEGIN
  RETURN NEXT throws_ok(q, state, NULL, what);
  RETURN NEXT is(pg_temp.digest(), before, what || ': nothing changed');
END
$$;

SELECT pg_temp.refused($q$SELECT gdpr.register_subject_table('crm.contacts', 'id; DROP TABLE crm.orders')$q$, '42703', 'gdpr.register_subject_table(''crm.contacts'', ''id; DROP TABLE crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_subject_table('crm.contacts', NULL)$q$, '22004', 'gdpr.register_subject_table(''crm.contacts'', NULL)');
SELECT pg_temp.refused($q$SELECT gdpr.register_subject_table(NULL, 'id')$q$, '22004', 'gdpr.register_subject_table(NULL, ''id'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_subject_table('crm.contacts', 'email')$q$, '42P16', 'gdpr.register_subject_table(''crm.contacts'', ''email'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('crm.orders', 'contact_id"; DROP TABLE crm.orders; --')$q$, '42703', 'gdpr.register_table(''crm.orders'', ''contact_id"; DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('crm.orders', 'amount')$q$, '42804', 'gdpr.register_table(''crm.orders'', ''amount'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('crm.companies')$q$, '42704', 'gdpr.register_table(''crm.companies'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('crm.orders', 'contact_id', 'crm.orders')$q$, '22023', 'gdpr.register_table(''crm.orders'', ''contact_id'', ''crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('pg_catalog.pg_class')$q$, '42809', 'gdpr.register_table(''pg_catalog.pg_class'')');
SELECT pg_temp.refused($q$SELECT gdpr.unregister_table('crm.companies')$q$, '42704', 'gdpr.unregister_table(''crm.companies'')');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', 'email"; DROP TABLE crm.orders; --', 'contact', 'newsletter', 'consent')$q$, '42703', 'gdpr.classify(''crm.contacts'', ''email"; DROP TABLE crm.orders; --'', ''contact'', ''newslett...');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', 'email', 'contact''); DROP TABLE crm.orders; --', 'newsletter', 'consent')$q$, '22023', 'gdpr.classify(''crm.contacts'', ''email'', ''contact''''); DROP TABLE crm.orders; --'', ''newsle...');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'newsletter''); DROP TABLE crm.orders; --', 'consent')$q$, '42704', 'gdpr.classify(''crm.contacts'', ''email'', ''contact'', ''newsletter''''); DROP TABLE crm.orders...');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', 'email', 'contact', 'newsletter', 'consent; DROP TABLE crm.orders')$q$, '22023', 'gdpr.classify(''crm.contacts'', ''email'', ''contact'', ''newsletter'', ''consent; DROP TABLE cr...');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.companies', 'name', 'contact', 'newsletter', 'consent')$q$, '42704', 'gdpr.classify(''crm.companies'', ''name'', ''contact'', ''newsletter'', ''consent'')');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', NULL, 'contact', 'newsletter', 'consent')$q$, '22004', 'gdpr.classify(''crm.contacts'', NULL, ''contact'', ''newsletter'', ''consent'')');
SELECT pg_temp.refused($q$SELECT gdpr.classify('crm.contacts', 'email', NULL, 'newsletter', 'consent')$q$, '22004', 'gdpr.classify(''crm.contacts'', ''email'', NULL, ''newsletter'', ''consent'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes"; DROP TABLE crm.orders; --', '1 year', 'last_contact_at', 'nullify')$q$, '42703', 'gdpr.set_retention(''crm.contacts'', ''notes"; DROP TABLE crm.orders; --'', ''1 year'', ''last...');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'last_contact_at"; DROP TABLE crm.orders; --', 'nullify')$q$, '42703', 'gdpr.set_retention(''crm.contacts'', ''notes'', ''1 year'', ''last_contact_at"; DROP TABLE crm...');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'last_contact_at', 'nullify; DROP TABLE crm.orders')$q$, '22023', 'gdpr.set_retention(''crm.contacts'', ''notes'', ''1 year'', ''last_contact_at'', ''nullify; DROP...');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes', '-1 year', 'last_contact_at', 'nullify')$q$, '22023', 'gdpr.set_retention(''crm.contacts'', ''notes'', ''-1 year'', ''last_contact_at'', ''nullify'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes', '1 year', 'email', 'nullify')$q$, '42804', 'gdpr.set_retention(''crm.contacts'', ''notes'', ''1 year'', ''email'', ''nullify'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'notes', NULL, 'last_contact_at', 'nullify')$q$, '22004', 'gdpr.set_retention(''crm.contacts'', ''notes'', NULL, ''last_contact_at'', ''nullify'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', 'id', '1 year', 'last_contact_at', 'nullify')$q$, '42704', 'gdpr.set_retention(''crm.contacts'', ''id'', ''1 year'', ''last_contact_at'', ''nullify'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.companies', NULL, '1 year', 'created_at', 'delete')$q$, '42704', 'gdpr.set_retention(''crm.companies'', NULL, ''1 year'', ''created_at'', ''delete'')');
SELECT pg_temp.refused($q$SELECT gdpr.define_purpose('', 'empty', 'consent')$q$, '22023', 'gdpr.define_purpose('''', ''empty'', ''consent'')');
SELECT pg_temp.refused($q$SELECT gdpr.define_purpose('x', 'x', 'consent''); DROP TABLE crm.orders; --')$q$, '22023', 'gdpr.define_purpose(''x'', ''x'', ''consent''''); DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.define_purpose(NULL, 'x', 'consent')$q$, '22004', 'gdpr.define_purpose(NULL, ''x'', ''consent'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('Acme', 'XX', 'newsletter')$q$, '22023', 'gdpr.add_recipient(''Acme'', ''XX'', ''newsletter'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('Acme', 'CN', 'newsletter')$q$, '22023', 'gdpr.add_recipient(''Acme'', ''CN'', ''newsletter'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('Acme', 'US', 'unknown purpose')$q$, '42704', 'gdpr.add_recipient(''Acme'', ''US'', ''unknown purpose'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('Acme', 'US', 'newsletter', 'scc''); DROP TABLE crm.orders; --')$q$, '22023', 'gdpr.add_recipient(''Acme'', ''US'', ''newsletter'', ''scc''''); DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('', 'FR', 'newsletter')$q$, '22004', 'gdpr.add_recipient('''', ''FR'', ''newsletter'')');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1; DROP TABLE crm.orders', 'newsletter', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, '22P02', 'gdpr.grant_consent(''1; DROP TABLE crm.orders'', ''newsletter'', ''web'', ''{"ip": "1.2.3.4", ...');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'newsletter''; DROP TABLE crm.orders; --', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, '42704', 'gdpr.grant_consent(''1'', ''newsletter''''; DROP TABLE crm.orders; --'', ''web'', ''{"ip": "1.2....');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'newsletter', 'web''; --', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, '22023', 'gdpr.grant_consent(''1'', ''newsletter'', ''web''''; --'', ''{"ip": "1.2.3.4", "user_agent": "x"...');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '{}')$q$, '22023', 'gdpr.grant_consent(''1'', ''newsletter'', ''web'', ''{}'')');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '[1, 2]')$q$, '22023', 'gdpr.grant_consent(''1'', ''newsletter'', ''web'', ''[1, 2]'')');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'accounting', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, '22023', 'gdpr.grant_consent(''1'', ''accounting'', ''web'', ''{"ip": "1.2.3.4", "user_agent": "x", "for...');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('99999999', 'newsletter', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, 'P0002', 'gdpr.grant_consent(''99999999'', ''newsletter'', ''web'', ''{"ip": "1.2.3.4", "user_agent": "x...');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent(NULL, 'newsletter', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f"}')$q$, '22004', 'gdpr.grant_consent(NULL, ''newsletter'', ''web'', ''{"ip": "1.2.3.4", "user_agent": "x", "fo...');
SELECT pg_temp.refused($q$SELECT gdpr.grant_consent('1', 'newsletter', 'web', '{"ip": "1.2.3.4", "user_agent": "x", "form": "f", "at": "2999-01-01"}')$q$, '22023', 'gdpr.grant_consent(''1'', ''newsletter'', ''web'', ''{"ip": "1.2.3.4", "user_agent": "x", "for...');
SELECT pg_temp.refused($q$SELECT gdpr.withdraw_consent('1 OR 1=1', 'newsletter', 'email', '{}')$q$, '22P02', 'gdpr.withdraw_consent(''1 OR 1=1'', ''newsletter'', ''email'', ''{}'')');
SELECT pg_temp.refused($q$SELECT gdpr.object('1', 'newsletter', 'email', '{}')$q$, '22023', 'gdpr.object(''1'', ''newsletter'', ''email'', ''{}'')');
SELECT pg_temp.refused($q$SELECT gdpr.has_consent('1); DROP TABLE crm.orders; --', 'newsletter')$q$, '22P02', 'gdpr.has_consent(''1); DROP TABLE crm.orders; --'', ''newsletter'')');
SELECT pg_temp.refused($q$SELECT gdpr.may_process('1', 'no such purpose')$q$, '42704', 'gdpr.may_process(''1'', ''no such purpose'')');
SELECT pg_temp.refused($q$SELECT * FROM gdpr.contactable('no such purpose')$q$, '42704', 'gdpr.contactable(''no such purpose'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_subject_profile('crm.contacts', 'segment"; DROP TABLE crm.orders; --', 'status')$q$, '42703', 'gdpr.set_subject_profile(''crm.contacts'', ''segment"; DROP TABLE crm.orders; --'', ''status'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_subject_profile('crm.contacts', 'segment', 'status; DROP TABLE crm.orders')$q$, '42703', 'gdpr.set_subject_profile(''crm.contacts'', ''segment'', ''status; DROP TABLE crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_purpose_options('no such purpose', '1 year')$q$, '42704', 'gdpr.set_purpose_options(''no such purpose'', ''1 year'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_purpose_options('newsletter', '-1 year')$q$, '22023', 'gdpr.set_purpose_options(''newsletter'', ''-1 year'')');
SELECT pg_temp.refused($q$SELECT gdpr.open_request('1', 'access''); DROP TABLE crm.orders; --')$q$, '22023', 'gdpr.open_request(''1'', ''access''''); DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.open_request('1 OR 1=1', 'access')$q$, '22P02', 'gdpr.open_request(''1 OR 1=1'', ''access'')');
SELECT pg_temp.refused($q$SELECT gdpr.open_request('1', 'access', now() + interval '1 year')$q$, '22023', 'gdpr.open_request(''1'', ''access'', now() + interval ''1 year'')');
SELECT pg_temp.refused($q$SELECT gdpr.extend_request(-1, 2, 'complex')$q$, '42704', 'gdpr.extend_request(-1, 2, ''complex'')');
SELECT pg_temp.refused($q$SELECT gdpr.extend_request(NULL, 2, 'complex')$q$, '22004', 'gdpr.extend_request(NULL, 2, ''complex'')');
SELECT pg_temp.refused($q$SELECT gdpr.close_request(-1, 'answered')$q$, '42704', 'gdpr.close_request(-1, ''answered'')');
SELECT pg_temp.refused($q$SELECT gdpr.export_subject('1) OR (1=1')$q$, '22P02', 'gdpr.export_subject(''1) OR (1=1'')');
SELECT pg_temp.refused($q$SELECT gdpr.export_subject('99999999')$q$, 'P0002', 'gdpr.export_subject(''99999999'')');
SELECT pg_temp.refused($q$SELECT gdpr.export_subject('1', 'crm.orders')$q$, '42704', 'gdpr.export_subject(''1'', ''crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.export_subject('1', NULL, NULL)$q$, '22004', 'gdpr.export_subject(''1'', NULL, NULL)');
SELECT pg_temp.refused($q$SELECT gdpr.erase_subject('1; DROP TABLE crm.orders')$q$, '22P02', 'gdpr.erase_subject(''1; DROP TABLE crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.erase_subject('99999999')$q$, 'P0002', 'gdpr.erase_subject(''99999999'')');
SELECT pg_temp.refused($q$SELECT gdpr.erase_subject('1', -5)$q$, '42704', 'gdpr.erase_subject(''1'', -5)');
SELECT pg_temp.refused($q$SELECT gdpr.restrict_subject('1', '')$q$, '22004', 'gdpr.restrict_subject(''1'', '''')');
SELECT pg_temp.refused($q$SELECT gdpr.restrict_subject('1''); DROP TABLE crm.orders; --', 'x')$q$, '22P02', 'gdpr.restrict_subject(''1''''); DROP TABLE crm.orders; --'', ''x'')');
SELECT pg_temp.refused($q$SELECT gdpr.lift_restriction('1', 'x')$q$, '42704', 'gdpr.lift_restriction(''1'', ''x'')');
SELECT pg_temp.refused($q$SELECT gdpr.place_hold('1; DROP TABLE crm.orders', 'litigation')$q$, '22P02', 'gdpr.place_hold(''1; DROP TABLE crm.orders'', ''litigation'')');
SELECT pg_temp.refused($q$SELECT gdpr.place_hold('1', '')$q$, '22004', 'gdpr.place_hold(''1'', '''')');
SELECT pg_temp.refused($q$SELECT gdpr.place_hold('1', 'litigation', now() - interval '1 day')$q$, '22023', 'gdpr.place_hold(''1'', ''litigation'', now() - interval ''1 day'')');
SELECT pg_temp.refused($q$SELECT gdpr.release_hold(-1)$q$, '42704', 'gdpr.release_hold(-1)');
SELECT pg_temp.refused($q$SELECT gdpr.report_breach('', now())$q$, '22004', 'gdpr.report_breach('''', now())');
SELECT pg_temp.refused($q$SELECT gdpr.report_breach('x', now() + interval '1 day')$q$, '22023', 'gdpr.report_breach(''x'', now() + interval ''1 day'')');
SELECT pg_temp.refused($q$SELECT gdpr.report_breach('x', now(), -3)$q$, '22023', 'gdpr.report_breach(''x'', now(), -3)');
SELECT pg_temp.refused($q$SELECT gdpr.notify_breach(-1, now(), 'ref')$q$, '42704', 'gdpr.notify_breach(-1, now(), ''ref'')');
SELECT pg_temp.refused($q$SELECT gdpr.encrypt_for_subject('x', '1; DROP TABLE crm.orders')$q$, '22P02', 'gdpr.encrypt_for_subject(''x'', ''1; DROP TABLE crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.shred_subject('1; DROP TABLE crm.orders')$q$, '42704', 'gdpr.shred_subject(''1; DROP TABLE crm.orders'')');
SELECT pg_temp.refused($q$SELECT gdpr.shred_subject('1')$q$, '42704', 'gdpr.shred_subject(''1'')');
SELECT pg_temp.refused($q$SELECT gdpr.rotate_key('crm.contacts', 'notes"; DROP TABLE crm.orders; --')$q$, '42703', 'gdpr.rotate_key(''crm.contacts'', ''notes"; DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.rotate_key('crm.contacts', 'notes', '', 0)$q$, '42804', 'gdpr.rotate_key(''crm.contacts'', ''notes'', '''', 0)');
SELECT pg_temp.refused($q$SELECT gdpr.decrypt('\x00'::bytea)$q$, '22P03', 'gdpr.decrypt(''\x00''::bytea)');
SELECT pg_temp.refused($q$SELECT gdpr.decrypt(gdpr.encrypt('x', 'a'), 'b')$q$, 'XX001', 'gdpr.decrypt(gdpr.encrypt(''x'', ''a''), ''b'')');
SELECT pg_temp.refused($q$SELECT gdpr.mask('abcdef', -1, 2)$q$, '22023', 'gdpr.mask(''abcdef'', -1, 2)');
SELECT pg_temp.refused($q$SELECT gdpr.generalise(now(), 'fortnight''; DROP TABLE crm.orders; --')$q$, '22023', 'gdpr.generalise(now(), ''fortnight''''; DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.age_band('1990-01-01', 0)$q$, '22023', 'gdpr.age_band(''1990-01-01'', 0)');
SELECT pg_temp.refused($q$SELECT gdpr.import_erasure_ledger('{"not": "a ledger"}')$q$, '22023', 'gdpr.import_erasure_ledger(''{"not": "a ledger"}'')');
SELECT pg_temp.refused($q$SELECT gdpr.import_erasure_ledger('[1, 2, 3]')$q$, '22023', 'gdpr.import_erasure_ledger(''[1, 2, 3]'')');
SELECT pg_temp.refused($q$SELECT * FROM gdpr.access_history('1', 'crm.orders')$q$, '42704', 'gdpr.access_history(''1'', ''crm.orders'')');
SELECT pg_temp.refused($q$SELECT * FROM gdpr.access_history('')$q$, '22004', 'gdpr.access_history('''')');
SELECT pg_temp.refused($q$SELECT * FROM gdpr.purge(NULL)$q$, '22004', 'gdpr.purge(NULL)');
SELECT pg_temp.refused($q$SELECT gdpr.extend_request((SELECT max(id) FROM gdpr.requests), -1, 'complex')$q$, '22023', 'gdpr.extend_request((max(id) FROM gdpr.requests), -1, ''complex'')');
SELECT pg_temp.refused($q$SELECT gdpr.extend_request((SELECT max(id) FROM gdpr.requests), 2, '')$q$, '22004', 'gdpr.extend_request((max(id) FROM gdpr.requests), 2, '''')');
SELECT pg_temp.refused($q$SELECT gdpr.close_request((SELECT max(id) FROM gdpr.requests), 'made up''); DROP TABLE crm.orders; --')$q$, '22023', 'gdpr.close_request((max(id) FROM gdpr.requests), ''made up''''); DROP TABLE crm.orders; --'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_purpose_options(NULL, '1 year')$q$, '22004', 'gdpr.set_purpose_options(NULL, ''1 year'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_subject_profile('crm.orders', 'amount', 'iban')$q$, '42704', 'gdpr.set_subject_profile(''crm.orders'', ''amount'', ''iban'')');
SELECT pg_temp.refused($q$SELECT gdpr.confirm_consent('1', 'newsletter', 'email', '[]')$q$, '55000', 'gdpr.confirm_consent(''1'', ''newsletter'', ''email'', ''[]'')');
SELECT pg_temp.refused($q$SELECT gdpr.record_information('1', 'newsletter', 'carrier pigeon', '{}')$q$, '22023', 'gdpr.record_information(''1'', ''newsletter'', ''carrier pigeon'', ''{}'')');
SELECT pg_temp.refused($q$SELECT gdpr.withdraw_consent('1', NULL, 'email', '{}')$q$, '22004', 'gdpr.withdraw_consent(''1'', NULL, ''email'', ''{}'')');
SELECT pg_temp.refused($q$SELECT gdpr.unregister_table(NULL)$q$, '22004', 'gdpr.unregister_table(NULL)');
SELECT pg_temp.refused($q$SELECT gdpr.register_table('crm.orders', NULL, 'crm.companies')$q$, '42704', 'gdpr.register_table(''crm.orders'', NULL, ''crm.companies'')');
SELECT pg_temp.refused($q$SELECT gdpr.set_retention('crm.contacts', NULL, '1 year', 'last_contact_at', 'generalise')$q$, '22023', 'gdpr.set_retention(''crm.contacts'', NULL, ''1 year'', ''last_contact_at'', ''generalise'')');
SELECT pg_temp.refused($q$SELECT gdpr.encrypt_for_subject('x', '99999999')$q$, 'P0002', 'gdpr.encrypt_for_subject(''x'', ''99999999'')');
SELECT pg_temp.refused($q$SELECT gdpr.add_recipient('Acme', 'FR', 'newsletter', 'made up safeguard')$q$, '22023', 'gdpr.add_recipient(''Acme'', ''FR'', ''newsletter'', ''made up safeguard'')');
SELECT pg_temp.refused($q$SELECT gdpr.notify_breach((SELECT max(id) FROM gdpr.breaches), now() - interval '10 years', 'ref')$q$, '22023', 'gdpr.notify_breach((max(id) FROM gdpr.breaches), now() - interval ''10 years'', ''ref'')');
SELECT pg_temp.refused($q$SELECT gdpr.place_hold('99999999', 'litigation')$q$, 'P0002', 'gdpr.place_hold(''99999999'', ''litigation'')');

SELECT has_table('crm', 'orders', 'after all that, crm.orders is still there');
SELECT * FROM finish();
ROLLBACK;
