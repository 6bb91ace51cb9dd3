-- Privileges last, so that they cover every object of every part.
-- PUBLIC gets nothing: functions are executable by PUBLIC by default.
REVOKE ALL ON ALL TABLES IN SCHEMA gdpr FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gdpr FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA gdpr FROM PUBLIC;

-- The administrator's interface.
GRANT EXECUTE ON FUNCTION
  gdpr.register_subject_table(regclass, name),
  gdpr.register_table(regclass, name, regclass),
  gdpr.link_table(regclass, name, regclass, name, name, text, name[], name[]),
  gdpr.unlink_table(regclass, name, regclass),
  gdpr.set_soft_delete(regclass, name, boolean),
  gdpr.unregister_table(regclass),
  gdpr.classify(regclass, name, text, text, text, text),
  gdpr.set_retention(regclass, name, interval, name, text, name, text[], boolean),
  gdpr.define_purpose(text, text, text, text),
  gdpr.add_recipient(text, text, text, text)
  TO gdpr_admin;

-- What both roles may call: status, vocabularies, and what the views call
-- (a function in a view runs with the privileges of the reader).
GRANT EXECUTE ON FUNCTION
  gdpr.preloaded(), gdpr.security_measures(text), gdpr.qualified_name(regclass), gdpr.data_categories(), gdpr.legal_bases(), gdpr.retention_actions(),
  gdpr.iso_countries(), gdpr.eea_countries(), gdpr.adequate_countries(), gdpr.transfer_safeguards()
  TO gdpr_admin, gdpr_auditor;

-- Auditors read; they never write.
GRANT SELECT ON gdpr.personal_data, gdpr.processing_register, gdpr.registry_changes, gdpr.personal_columns,
                gdpr.subject_tables, gdpr.registered_tables, gdpr.purposes, gdpr.purpose_notices,
                gdpr.recipients, gdpr.retention_policies
  TO gdpr_auditor, gdpr_admin;

-- Data subject rights: requests, restriction, export, breaches.
GRANT EXECUTE ON FUNCTION
  gdpr.open_request(text, text, timestamptz, regclass),
  gdpr.extend_request(bigint, int, text),
  gdpr.close_request(bigint, text),
  gdpr.restrict_subject(text, text, regclass),
  gdpr.lift_restriction(text, text, regclass),
  gdpr.is_restricted(text, regclass),
  gdpr.export_subject(text, regclass, boolean, bigint),
  gdpr.report_breach(text, timestamptz, bigint),
  gdpr.notify_breach(bigint, timestamptz, text)
  TO gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.request_kinds(), gdpr.request_outcomes()
  TO gdpr_admin, gdpr_auditor;
GRANT SELECT ON gdpr.requests_due, gdpr.breaches_due, gdpr.requests, gdpr.breaches, gdpr.restrictions
  TO gdpr_auditor, gdpr_admin;

-- Crypto and masking.  Pseudonymising and masking are for everyone who may
-- process personal data; decrypting and managing keys is for gdpr_admin.
GRANT EXECUTE ON FUNCTION
  gdpr.pseudonymise(text, text), gdpr.encrypt(text, text), gdpr.mask(text, int, int), gdpr.mask_email(text),
  gdpr.mask_phone(text), gdpr.generalise(timestamptz, text), gdpr.age_band(date, int),
  gdpr.generalise_postcode(text), gdpr.ciphertext_key(bytea)
  TO gdpr_admin, gdpr_auditor;
GRANT EXECUTE ON FUNCTION
  gdpr.decrypt(bytea, text), gdpr.encrypt_for_subject(text, text, regclass),
  gdpr.shred_subject(text, regclass), gdpr.rotate_key(regclass, name, text, int),
  gdpr.rotate_subject_keys(int), gdpr.key_status()
  TO gdpr_admin;

-- The access log: auditors and administrators read it and verify it; the
-- administrator may also write the queued reads and seal now.
GRANT SELECT ON gdpr.access_log, gdpr.access_log_seals, gdpr.access_log_retention, gdpr.access_log_losses, gdpr.access_log_checkpoints,
                gdpr.read_volume,
                gdpr.mass_read_alarms, gdpr.access_violations, gdpr.access_log_status
  TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION
  gdpr.verify_access_log(timestamptz, timestamptz, boolean), gdpr.access_history(text, regclass), gdpr.access_log_queue(), gdpr.setting(text)
  TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.access_log_queue_drops(), gdpr.access_log_queue_pressure(), gdpr.access_log_key_problem() TO gdpr_auditor, gdpr_admin;
-- gdpr.access_log_status counts the journals' rows through it.
GRANT EXECUTE ON FUNCTION gdpr.access_log_journals() TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.log_queue_alarms TO gdpr_auditor, gdpr_admin;
GRANT SELECT ON gdpr.restriction_violations, gdpr.restriction_read_optouts TO gdpr_auditor, gdpr_admin;
GRANT EXECUTE ON FUNCTION gdpr.set_restriction_reads(regclass, text) TO gdpr_admin;
-- The gdpr_restriction policy's expression runs as whoever reads a registered
-- table (PostgreSQL checks EXECUTE on a policy's functions for the reader):
-- every role may execute it.  It tells a role only whether a row it reads is
-- hidden from it (restriction_reads.c).
GRANT EXECUTE ON FUNCTION gdpr.restriction_visible(oid, tid), gdpr.restriction_visible(oid, tid, anyelement) TO PUBLIC;
GRANT EXECUTE ON FUNCTION gdpr.flush_access_log(), gdpr.seal_access_log() TO gdpr_admin;
