-- Purposes with their versioned notices, and recipients with transfers.

-- ISO 3166-1 alpha-2 country codes.
CREATE FUNCTION gdpr.iso_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array(
    'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ '
    'BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM '
    'DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS '
    'GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN '
    'KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ '
    'MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM '
    'PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV '
    'SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI '
    'VN VU WF WS YE YT ZA ZM ZW', ' ');

-- The EU member states and the three other EEA states: no transfer safeguard needed.
CREATE FUNCTION gdpr.eea_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array(
    'AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK IS LI NO', ' ');

-- Countries with a general adequacy decision of the Commission (Art. 45).
-- The United States is left out on purpose: its decision (EU-US Data Privacy
-- Framework) covers certified organisations only, so it must be stated.
CREATE FUNCTION gdpr.adequate_countries() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN string_to_array('AD AR CA CH FO GB GG IL IM JE JP KR NZ UY', ' ');

CREATE FUNCTION gdpr.transfer_safeguards() RETURNS text[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN ARRAY['adequacy_decision', 'scc', 'bcr', 'code_of_conduct', 'certification',
               'ad_hoc_clauses', 'art49_derogation'];

-- The purpose row, or 42704 with a hint.
CREATE FUNCTION gdpr._purpose(code text) RETURNS gdpr.purposes
  LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p gdpr.purposes;
BEGIN
  PERFORM gdpr._not_null(code, 'purpose');
  SELECT * INTO p FROM gdpr.purposes x WHERE x.code = _purpose.code;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'purpose "%" does not exist', code
      USING ERRCODE = 'undefined_object',
            HINT = 'Define it first with gdpr.define_purpose().';
  END IF;
  RETURN p;
END
$$;

CREATE FUNCTION gdpr.define_purpose(code text, description text, legal_basis text,
                                    notice text DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  old gdpr.purposes;
  latest gdpr.purpose_notices;
  digest bytea;
BEGIN
  PERFORM gdpr._not_null(code, 'code');
  IF code !~ '^([a-z][a-z0-9_]{0,62}:)?[a-z][a-z0-9_]{0,62}$' THEN
    RAISE EXCEPTION 'invalid purpose code "%"', code
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A purpose code is lower case letters, digits and underscores, starting with a letter (at most 63), '
                   'prefixed with ''tenant:'' for a purpose of one tenant.';
  END IF;
  -- A tenant's purpose (issue 19.4, 38_tenant_purposes.sql): 'tenant:code'.
  IF strpos(code, ':') > 0 AND NOT EXISTS (SELECT FROM gdpr.tenants t WHERE t.name = split_part(code, ':', 1)) THEN
    RAISE EXCEPTION 'tenant "%" does not exist', split_part(code, ':', 1)
      USING ERRCODE = 'undefined_object', HINT = 'Declare it first with gdpr.define_tenant().';
  END IF;
  PERFORM gdpr._not_blank(description, 'a purpose needs a description');
  PERFORM gdpr._one_of(legal_basis, gdpr.legal_bases(), 'legal basis');
  IF notice IS NOT NULL AND btrim(notice) = '' THEN
    RAISE EXCEPTION 'an information notice must not be empty' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT * INTO old FROM gdpr.purposes p WHERE p.code = define_purpose.code FOR UPDATE;
  IF FOUND AND old.legal_basis <> legal_basis THEN
    -- Art. 5 and the EDPB: a purpose may not swap its legal basis afterwards.
    RAISE EXCEPTION 'purpose "%" is based on %, not %', code, old.legal_basis, legal_basis
      USING ERRCODE = 'object_not_in_prerequisite_state',
            DETAIL = 'The legal basis of a processing cannot be changed once it has been declared.',
            HINT = 'Define a new purpose for processing on another legal basis.';
  END IF;
  INSERT INTO gdpr.purposes AS p (code, description, legal_basis, tenant)
    VALUES (code, description, legal_basis, nullif(split_part(code, ':', -2), ''))
    ON CONFLICT ON CONSTRAINT purposes_pkey DO UPDATE
      SET description = excluded.description, updated_at = now()
      WHERE p.description IS DISTINCT FROM excluded.description;

  SELECT * INTO latest FROM gdpr.purpose_notices n
   WHERE n.purpose = define_purpose.code ORDER BY n.version DESC LIMIT 1;
  IF notice IS NULL THEN
    RETURN coalesce(latest.version, 0);
  END IF;
  digest := sha256(convert_to(notice, 'UTF8'));
  IF latest.digest IS NOT DISTINCT FROM digest THEN
    RETURN latest.version;           -- the same text again is the same version
  END IF;
  INSERT INTO gdpr.purpose_notices (purpose, version, notice, digest)
    VALUES (code, coalesce(latest.version, 0) + 1, notice, digest);
  RETURN coalesce(latest.version, 0) + 1;
END
$$;

CREATE FUNCTION gdpr.add_recipient(name text, country text, purpose text,
                                   safeguard text DEFAULT NULL) RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cc text := upper(btrim(country));
  outside boolean;
  sg text := safeguard;
  rid int;
BEGIN
  PERFORM gdpr._not_blank(name, 'a recipient needs a name');
  PERFORM gdpr._not_null(country, 'country');
  IF NOT cc = ANY (gdpr.iso_countries()) THEN
    RAISE EXCEPTION 'unknown country code "%"', country
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an ISO 3166-1 alpha-2 code such as FR or US.';
  END IF;
  PERFORM gdpr._purpose(purpose);
  IF sg IS NOT NULL THEN
    PERFORM gdpr._one_of(sg, gdpr.transfer_safeguards(), 'transfer safeguard');
  END IF;
  outside := NOT cc = ANY (gdpr.eea_countries());
  IF outside AND sg IS NULL AND cc = ANY (gdpr.adequate_countries()) THEN
    sg := 'adequacy_decision';
  END IF;
  IF outside AND sg IS NULL THEN
    RAISE EXCEPTION 'recipient "%" in % is outside the EU/EEA and has no transfer safeguard', name, cc
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Chapter V of the GDPR allows a transfer only under an adequacy decision or appropriate safeguards.',
            HINT = format('Pass safeguard, one of: %s.', array_to_string(gdpr.transfer_safeguards(), ', '));
  END IF;
  INSERT INTO gdpr.recipients AS r (name, country, purpose, safeguard, outside_eea)
    VALUES (btrim(name), cc, purpose, sg, outside)
    ON CONFLICT ON CONSTRAINT recipients_name_purpose_key DO UPDATE
      SET country = excluded.country, safeguard = excluded.safeguard,
          outside_eea = excluded.outside_eea, updated_at = now()
    RETURNING r.id INTO rid;
  RETURN rid;
END
$$;
