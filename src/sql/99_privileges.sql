-- Privileges last, so that they cover every object of every part.
-- PUBLIC gets nothing: functions are executable by PUBLIC by default.
REVOKE ALL ON ALL TABLES IN SCHEMA gdpr FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA gdpr FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA gdpr FROM PUBLIC;

-- The administrator's interface.
GRANT EXECUTE ON FUNCTION
  gdpr.register_subject_table(regclass, name),
  gdpr.register_table(regclass, name, regclass),
  gdpr.unregister_table(regclass),
  gdpr.classify(regclass, name, text, text, text, text),
  gdpr.set_retention(regclass, name, interval, name, text),
  gdpr.define_purpose(text, text, text, text),
  gdpr.add_recipient(text, text, text, text)
  TO gdpr_admin;

-- What both roles may call: status, vocabularies, and what the views call
-- (a function in a view runs with the privileges of the reader).
GRANT EXECUTE ON FUNCTION
  gdpr.preloaded(), gdpr._security_measures(text), gdpr.data_categories(), gdpr.legal_bases(), gdpr.retention_actions(),
  gdpr.iso_countries(), gdpr.eea_countries(), gdpr.adequate_countries(), gdpr.transfer_safeguards()
  TO gdpr_admin, gdpr_auditor;

-- Auditors read; they never write.
GRANT SELECT ON gdpr.personal_data, gdpr.processing_register, gdpr.registry_changes,
                gdpr.subject_tables, gdpr.registered_tables, gdpr.purposes, gdpr.purpose_notices,
                gdpr.recipients, gdpr.retention_policies
  TO gdpr_auditor, gdpr_admin;
