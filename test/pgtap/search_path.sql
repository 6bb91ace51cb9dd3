-- search_path hijacking: a schema placed first with look-alike functions and
-- operators must never be called by the extension's functions.
BEGIN;
SELECT plan(4);

CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text);
CREATE FUNCTION evil.record(what text) RETURNS void LANGUAGE sql AS $$ INSERT INTO evil.calls VALUES (what) $$;
CREATE FUNCTION evil.btrim(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('btrim'); RETURN pg_catalog.btrim($1); END $$;
CREATE FUNCTION evil.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('format'); RETURN 'x'; END $$;
CREATE FUNCTION evil.sha256(bytea) RETURNS bytea LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('sha256'); RETURN pg_catalog.sha256($1); END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.upper(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM evil.record('upper'); RETURN pg_catalog.upper($1); END $$;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;

CREATE ROLE crm_gdpr_t_writer;
GRANT USAGE ON SCHEMA crm TO crm_gdpr_t_writer;
GRANT UPDATE, SELECT ON crm.contacts TO crm_gdpr_t_writer;
CREATE TEMP TABLE outcome (step text, result text);
GRANT INSERT ON outcome TO crm_gdpr_t_writer;

-- The calls run outside pgTAP (whose own functions follow search_path).
SET search_path = evil, crm, pg_catalog, public;
DO $$
BEGIN
  PERFORM gdpr.register_subject_table('contacts', 'id');
  PERFORM gdpr.register_table('orders');
  PERFORM gdpr.define_purpose('support', 'Support', 'contract', 'Notice');
  PERFORM gdpr.classify('contacts', 'email', 'contact', 'support', 'contract', 'why');
  PERFORM gdpr.set_retention('contacts', 'email', '1 year', 'last_contact_at', 'nullify');
  PERFORM gdpr.add_recipient('Acme', 'us', 'support', 'scc');
  PERFORM gdpr.open_request('5', 'access');
  PERFORM gdpr.restrict_subject('6', 'contested');
  PERFORM gdpr.export_subject('5');
  PERFORM gdpr.report_breach('test', pg_catalog.now(), 1);
  PERFORM gdpr.define_purpose('letters', 'Letters', 'consent', 'I want letters');
  PERFORM gdpr.grant_consent('5', 'letters', 'web', '{"ip": "203.0.113.1", "user_agent": "x", "form": "f", "notice_version": 1}');
  PERFORM gdpr.may_process('5', 'letters');
  PERFORM * FROM gdpr.contactable('letters');
  PERFORM gdpr.place_hold('7', 'audit');
  PERFORM * FROM gdpr.purge(true);
  PERFORM * FROM gdpr.retention_status;
  PERFORM gdpr.decrypt(gdpr.encrypt('x', 'c'), 'c');
  PERFORM gdpr.pseudonymise('x');
  PERFORM gdpr.erase_subject('9');
  PERFORM * FROM gdpr.processing_register;
  PERFORM * FROM gdpr.requests_due;
  PERFORM gdpr.flush_access_log();
  PERFORM gdpr.seal_access_log();
  PERFORM * FROM gdpr.verify_access_log();
  PERFORM * FROM gdpr.access_history('5');
  PERFORM * FROM gdpr.mass_read_alarms;
  PERFORM gdpr._log_maintain();
  ALTER TABLE crm.contacts RENAME COLUMN notes TO remarks;
  INSERT INTO pg_temp.outcome VALUES ('calls', 'ok');
END
$$;
SET ROLE crm_gdpr_t_writer;
DO $$
BEGIN
  UPDATE crm.contacts SET phone = 'x' WHERE id = 6;
  INSERT INTO pg_temp.outcome VALUES ('trigger', 'no error');
EXCEPTION WHEN insufficient_privilege THEN
  INSERT INTO pg_temp.outcome VALUES ('trigger', SQLERRM);
END
$$;
RESET ROLE;
RESET search_path;

SELECT is((SELECT result FROM outcome WHERE step = 'calls'), 'ok',
          'every function works with a hostile schema first in search_path');
SELECT is((SELECT result FROM outcome WHERE step = 'trigger'), 'processing of subject "6" is restricted',
          'the restriction trigger works under a hostile search_path');
SELECT is((SELECT string_agg(DISTINCT what, ', ') FROM evil.calls), NULL,
          'no look-alike function or operator was called');
SELECT is((SELECT count(*) FROM gdpr.purposes WHERE code = 'support'), 1::bigint, 'and the calls took effect');

SELECT * FROM finish();
ROLLBACK;
