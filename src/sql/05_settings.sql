-- Settings.  Every crm_gdpr.* setting is defined in C (src/guc.c), with its
-- default and its checks; the extension's SQL reads them only through
-- gdpr.setting(), which loads the library first: a session that has not
-- loaded it yet still gets the setting's value (or its default), never an
-- error or a NULL.

-- A crm_gdpr.* setting, also in sessions that have not loaded the module yet.
CREATE FUNCTION gdpr.setting(name text) RETURNS text
  LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'gdpr_setting';
COMMENT ON FUNCTION gdpr.setting(text) IS 'the value of setting crm_gdpr.<name>, or its default where the module is not loaded';
