#!/usr/bin/env bash
# crm_gdpr on two real CRMs' schemas (test/fixtures/twenty.sql and odoo.sql),
# each in its own database, registered as doc/recipes.md says: export,
# erasure, purge (several policies per table), consent, subject profiles,
# access log and discovery: every failure of issue 20 is a check here.
source "$(dirname "$0")/lib.sh"
checks=0
check() {  # check DB DESCRIPTION SQL: SQL must return t
  local got
  got=$(q -d "$1" -c "$3" 2>&1) || fail "$2: $got"
  [ "$got" = t ] || fail "$2 (got: $got)"
  checks=$((checks + 1))
}
consent_and_log() {  # consent_and_log DB CRM ID READ: his consent makes him contactable; READ is in his history
  check "$1" "$2: consent is recorded" \
    "SELECT gdpr.grant_consent('$3', 'newsletter', 'api', '{\"client\": \"$2 webhook\"}') > 0"
  check "$1" "$2: a consenting subject is contactable" "SELECT '$3' IN (SELECT gdpr.contactable('newsletter'))"
  q -d "$1" -c "$4" -c "SELECT gdpr.flush_access_log()" >/dev/null
  check "$1" "$2: a read of his row is in his access history" \
    "SELECT EXISTS (SELECT FROM gdpr.access_history('$3') WHERE operation = 'SELECT' AND NOT may_include_you)"
}
failed_read_named() {  # failed_read_named DB CRM ID SQL: SQL fails on his row's values; the failed read names him
  psql -X -q -d "$1" -c "$4" >/dev/null 2>&1 && fail "$2: the read meant to fail did not"
  q -d "$1" -c "SELECT gdpr.flush_access_log()" >/dev/null
  check "$1" "$2: a read failing on his row's values (its error shows them) counts and names him" \
    "SELECT EXISTS (SELECT FROM gdpr.access_log WHERE operation = 'SELECT' AND detail ->> 'failed' = 'true'
                     AND row_count >= 1 AND gdpr._log_subject_key('$3') = ANY (subject_keys))"
}
recipe() {  # recipe DB NAME: run the SQL blocks of doc/recipes.md's section "## NAME"
  awk -v s="## $2" '$0 == s { on = 1; next } /^## / { on = 0 } on' doc/recipes.md |
    awk '/^```sql$/ { on = 1; next } /^```$/ { on = 0 } on' |
    psql -X -q -v ON_ERROR_STOP=1 -d "$1" >/dev/null 2>&1 || fail "doc/recipes.md, $2: the registration does not run"
}

######################################################################## Twenty
db=real_twenty; W=workspace_3ixj3i1a5avy16ptijtb3lae3
dropdb --if-exists $db; createdb $db
q -d $db -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/twenty.sql \
  -c 'SELECT twenty.generate(1000)' >/dev/null
recipe $db Twenty
check $db "Twenty: person is the subject table, the tables with a personId and the notes, tasks and messages under it" \
  "SELECT count(*) = 10 FROM gdpr.registered_tables WHERE subject_table = '$W.person'::regclass"

# Export of a person: 52 columns (issue 20.1), keys "schema.table" (20.11).
P=$(q -d $db -c "SELECT twenty.uid('person', 90)")
check $db "Twenty: export of a person of 52 columns" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P') -> 'data' -> '$W.person') = 1
      AND (gdpr.export_subject('$P') #>> '{data,$W.person,0,nameFirstName}') = 'Emma'"
check $db "Twenty: export keys are schema.table, unquoted" \
  "SELECT gdpr.export_subject('$P') -> 'data' ? '$W.noteTarget' AND NOT gdpr.export_subject('$P')::text LIKE '%\\\\\"noteTarget%'"
check $db "Twenty: the export holds his note targets and calendar participations" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P') #> '{data,$W.noteTarget}') > 0
      AND jsonb_array_length(gdpr.export_subject('$P') #> '{data,$W.calendarEventParticipant}') > 0"
check $db "Twenty: portability keeps the keys and the consent/contract columns" \
  "SELECT (gdpr.export_subject('$P', portability => true) #> '{data,$W.person,0}') ?& ARRAY['id', 'emailsPrimaryEmail', 'companyId']
      AND NOT (gdpr.export_subject('$P', portability => true) #> '{data,$W.person,0}') ? 'birthDate'"

# A partition registered beside its parent: listed once (20.11).
q -d $db -c "SET client_min_messages = warning" -c "SET search_path = $W" \
  -c 'CREATE TABLE "personVisit" (id uuid DEFAULT gen_random_uuid(), "personId" uuid REFERENCES person ON DELETE CASCADE,
        "visitedAt" timestamptz NOT NULL, page text, PRIMARY KEY (id, "visitedAt")) PARTITION BY RANGE ("visitedAt")' \
  -c 'CREATE TABLE "personVisit2025" PARTITION OF "personVisit" FOR VALUES FROM (MINVALUE) TO (MAXVALUE)' \
  -c "INSERT INTO \"personVisit\" (\"personId\", \"visitedAt\", page) VALUES ('$P', now(), '/pricing')" \
  -c "SELECT gdpr.register_table('\"personVisit\"', 'personId')" \
  -c "SELECT gdpr.register_table('\"personVisit2025\"', 'personId')" >/dev/null
check $db "Twenty: a partition registered beside its parent is exported once" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P') #> '{data,$W.personVisit}') = 1
      AND NOT gdpr.export_subject('$P') -> 'data' ? '$W.personVisit2025'"

# Consent and the access log.
consent_and_log $db Twenty "$P" "SELECT \"emailsPrimaryEmail\" FROM $W.person WHERE id = '$P'"
failed_read_named $db Twenty "$P" "SELECT (coalesce(\"emailsPrimaryEmail\", '') || ' ' || coalesce(\"phonesPrimaryPhoneNumber\", ''))::int FROM $W.person WHERE id = '$P'"

# The trash (20.6): a person with a "deletedAt" is never contactable, even
# with his consent, and his row is marked in his export.
T=$(q -d $db -c "SELECT twenty.uid('person', 91)")
q -d $db -c "SELECT gdpr.grant_consent('$T', 'newsletter', 'api', '{\"client\": \"x\"}')" \
  -c "UPDATE $W.person SET \"deletedAt\" = now() WHERE id = '$T'" >/dev/null
check $db "Twenty: a person in the trash is never contactable" \
  "SELECT NOT EXISTS (SELECT FROM $W.person p WHERE p.\"deletedAt\" IS NOT NULL
                       AND p.id::text IN (SELECT gdpr.contactable('newsletter', '$W.person')))
      AND '$P' IN (SELECT gdpr.contactable('newsletter', '$W.person')) AND NOT gdpr.may_process('$T', 'newsletter')"
check $db "Twenty: ... and his row is marked in his export" \
  "SELECT (gdpr.export_subject('$T') #> '{data,$W.person,0,_deleted}') = 'true'
      AND NOT (gdpr.export_subject('$P') #> '{data,$W.person,0}') ? '_deleted'"

# Subject profile from the columns Twenty has (20.10): "jobTitle" cannot say
# customer or prospect; "companyId" set means B2B.
out=$(psql -X -q -d $db -c "SELECT gdpr.set_subject_profile('$W.person', 'companyId', 'jobTitle')" 2>&1) || true
grep -q 'column "jobTitle" of .*person cannot say customer or prospect' <<<"$out" \
  || fail "Twenty: set_subject_profile with \"jobTitle\" as the status was not refused: $out"
checks=$((checks + 1))
q -d $db -c "SELECT gdpr.set_subject_profile('$W.person', 'companyId', NULL)" \
  -c "SELECT gdpr.set_purpose_options('prospecting', electronic_marketing => true)" >/dev/null
B2C=$(q -d $db -c "SELECT min(id::text) FROM $W.person WHERE \"companyId\" IS NULL AND \"deletedAt\" IS NULL")
B2B=$(q -d $db -c "SELECT min(id::text) FROM $W.person WHERE \"companyId\" IS NOT NULL AND \"deletedAt\" IS NULL")
q -d $db -c "SELECT gdpr.record_information('$B2C', 'prospecting', 'api', '{\"client\": \"x\"}')" \
  -c "SELECT gdpr.record_information('$B2B', 'prospecting', 'api', '{\"client\": \"x\"}')" >/dev/null
check $db "Twenty: a B2C prospect only informed may not get e-mail marketing, a B2B contact (\"companyId\" set) may" \
  "SELECT NOT gdpr.may_process('$B2C', 'prospecting') AND gdpr.may_process('$B2B', 'prospecting')
      AND '$B2B' IN (SELECT gdpr.contactable('prospecting')) AND NOT '$B2C' IN (SELECT gdpr.contactable('prospecting'))"

# The status from the stage of his deals (20.10): a B2C person is a customer
# once a deal of his (point of contact) is at stage CUSTOMER; an unknown
# stage cannot say it.
out=$(psql -X -q -d $db -c "SELECT gdpr.set_subject_profile('$W.person', 'companyId', 'stage', ARRAY['WON'], '$W.opportunity')" 2>&1) || true
grep -q 'ERROR:  value .WON. is not a value of column "stage"' <<<"$out" || fail "Twenty: a stage that is no label was not refused: $out"
out=$(psql -X -q -d $db -c "SELECT gdpr.set_subject_profile('$W.person', 'companyId', 'name', ARRAY['Acme'], '$W.company')" 2>&1) || true
grep -q 'ERROR:  the status cannot be derived from .*company: it is not linked to' <<<"$out" || fail "Twenty: an unlinked status table was not refused: $out"
checks=$((checks + 2))
q -d $db -c "SELECT gdpr.set_subject_profile('$W.person', 'companyId', 'stage', ARRAY['CUSTOMER'], '$W.opportunity')" >/dev/null
WON=$(q -d $db -c "SELECT min(p.id::text) FROM $W.person p WHERE p.\"companyId\" IS NULL AND p.\"deletedAt\" IS NULL
                     AND EXISTS (SELECT FROM $W.opportunity o WHERE o.\"pointOfContactId\" = p.id AND o.stage = 'CUSTOMER')")
NEW=$(q -d $db -c "SELECT min(p.id::text) FROM $W.person p WHERE p.\"companyId\" IS NULL AND p.\"deletedAt\" IS NULL
                     AND NOT EXISTS (SELECT FROM $W.opportunity o WHERE o.\"pointOfContactId\" = p.id AND o.stage = 'CUSTOMER')")
q -d $db -c "SELECT gdpr.record_information('$WON', 'prospecting', 'api', '{\"client\": \"x\"}')" \
  -c "SELECT gdpr.record_information('$NEW', 'prospecting', 'api', '{\"client\": \"x\"}')" >/dev/null
check $db "Twenty: a B2C person whose deal is won is a customer (e-mail marketing once informed), one without is a prospect" \
  "SELECT gdpr.may_process('$WON', 'prospecting') AND NOT gdpr.may_process('$NEW', 'prospecting')"

# Content through a junction (20.4): his notes are reached through their targets.
check $db "Twenty: his notes, reached through \"noteTarget\", are in his export" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P') #> '{data,$W.note}')
          = (SELECT count(DISTINCT \"noteId\") FROM $W.\"noteTarget\" WHERE \"personId\" = '$P') AND
          (SELECT count(DISTINCT \"noteId\") FROM $W.\"noteTarget\" WHERE \"personId\" = '$P') > 0"

# Erasure with a kept table that has a generated column (20.8): the kept
# opportunity is anonymised and its "searchVector" follows.
E=$(q -d $db -c "SELECT \"pointOfContactId\" FROM $W.opportunity WHERE name = 'Deal 7'")
notes=$(q -d $db -c "SELECT string_agg(quote_literal(\"noteId\"), ',') FROM $W.\"noteTarget\" WHERE \"personId\" = '$E'")
# Several e-mails in a jsonb array (20.9): each reaches the suppression list.
q -d $db -c "UPDATE $W.person SET \"emailsAdditionalEmails\" = '[\"Emma.Perso@Gmail.example\", \"0696944398\"]' WHERE id = '$E'" >/dev/null
q -d $db -c "UPDATE $W.opportunity SET name = (SELECT \"nameLastName\" || ' renewal' FROM $W.person WHERE id = '$E')
              WHERE \"pointOfContactId\" = '$E'" >/dev/null
# The access log names the columns an UPDATE changed: one of person's 52, and
# the opportunity's name with the search vector generated from it.
q -d $db -c "SELECT gdpr.flush_access_log()" >/dev/null
check $db "Twenty: an UPDATE of one of person's columns is logged as that column" \
  "SELECT columns = '{emailsAdditionalEmails}' FROM gdpr.access_log WHERE operation = 'UPDATE' AND tbl = '$W.person'::regclass ORDER BY id DESC LIMIT 1"
check $db "Twenty: an UPDATE of an opportunity's name is logged with its generated search vector" \
  "SELECT columns = '{name,searchVector}' FROM gdpr.access_log WHERE operation = 'UPDATE' AND tbl = '$W.opportunity'::regclass ORDER BY id DESC LIMIT 1"
last=$(q -d $db -c "SELECT \"nameLastName\" FROM $W.person WHERE id = '$E'")
mail=$(q -d $db -c "SELECT \"emailsPrimaryEmail\" FROM $W.person WHERE id = '$E'")
check $db "Twenty: erasure of a point of contact whose opportunity is kept" \
  "SELECT gdpr.erase_subject('$E') ->> 'status' = 'erased'"
check $db "Twenty: the kept opportunity is anonymised, its search vector recomputed" \
  "SELECT count(*) > 0 AND bool_and(name NOT LIKE '%$last%' AND NOT \"searchVector\"::text LIKE '%' || lower(public.unaccent_immutable('$last')) || '%')
     FROM $W.opportunity WHERE \"pointOfContactId\" = '$E'"
check $db "Twenty: his person row, pinned by the kept opportunity, is anonymised" \
  "SELECT \"nameLastName\" <> '$last' AND \"emailsPrimaryEmail\" <> '$mail' AND NOT \"searchVector\"::text LIKE '%' || split_part('$mail', '@', 1) || '%'
     FROM $W.person WHERE id = '$E'"
check $db "Twenty: his note targets, attachments and participations are gone" \
  "SELECT NOT EXISTS (SELECT FROM $W.\"noteTarget\" WHERE \"personId\" = '$E') AND NOT EXISTS (SELECT FROM $W.attachment WHERE \"personId\" = '$E')
      AND NOT EXISTS (SELECT FROM $W.\"messageParticipant\" WHERE \"personId\" = '$E')"
check $db "Twenty: his primary e-mail is suppressed" "SELECT gdpr.is_suppressed('$mail')"
check $db "Twenty: his additional addresses in the jsonb array are suppressed, normalised" \
  "SELECT gdpr.is_suppressed('emma.perso@gmail.example') AND gdpr.is_suppressed('EMMA.PERSO@GMAIL.EXAMPLE')
      AND gdpr.is_suppressed('06 96 94 43 98') AND NOT gdpr.is_suppressed('[\"Emma.Perso@Gmail.example\", \"0696944398\"]')"
check $db "Twenty: the notes he was the target of are gone" \
  "SELECT NOT EXISTS (SELECT FROM $W.note WHERE id IN ($notes))"

# Purge: people without contact for three years go, with their targets.
q -d $db -c "UPDATE $W.person SET \"lastContactAt\" = now() - interval '4 years' WHERE position::int % 10 = 1" >/dev/null
check $db "Twenty: the purge deletes the people past their retention" \
  "SELECT sum(rows) > 0 FROM gdpr.purge() WHERE tbl = '$W.person'::regclass"
check $db "Twenty: nobody past the retention is left, nor their note targets" \
  "SELECT NOT EXISTS (SELECT FROM $W.person WHERE \"lastContactAt\" < now() - interval '3 years')
      AND NOT EXISTS (SELECT FROM $W.\"noteTarget\" t WHERE t.\"personId\" IS NOT NULL
                       AND NOT EXISTS (SELECT FROM $W.person p WHERE p.id = t.\"personId\"))"

# Several policies on person (20.6): the trash is emptied 30 days after
# "deletedAt", beside the 3 years after the last contact; one row per policy
# in retention_status.
X1=$(q -d $db -c "SELECT id FROM $W.person WHERE \"deletedAt\" IS NULL ORDER BY id LIMIT 1 OFFSET 5")
X2=$(q -d $db -c "SELECT id FROM $W.person WHERE \"deletedAt\" IS NULL ORDER BY id LIMIT 1 OFFSET 6")
q -d $db -c "UPDATE $W.person SET \"deletedAt\" = now() - interval '40 days', \"lastContactAt\" = now() WHERE id = '$X1'" \
  -c "UPDATE $W.person SET \"deletedAt\" = now() - interval '10 days', \"lastContactAt\" = now() WHERE id = '$X2'" >/dev/null
check $db "Twenty: retention_status shows person's two policies, the trash one with its due rows" \
  "SELECT count(*) = 2 AND sum(rows_due) FILTER (WHERE scope_column = 'deletedAt')
            = (SELECT count(*) FROM $W.person WHERE \"deletedAt\" < now() - interval '30 days')
      AND sum(rows_due) FILTER (WHERE scope_column = 'deletedAt') >= 1 AND sum(rows_due) FILTER (WHERE scope_column IS NULL) = 0
     FROM gdpr.retention_status WHERE tbl = '$W.person'::regclass AND col IS NULL"
check $db "Twenty: the purge empties the trash of the rows trashed 30 days ago" \
  "SELECT sum(rows) >= 1 FROM gdpr.purge() WHERE tbl = '$W.person'::regclass"
check $db "Twenty: ... the person trashed 40 days ago is gone, the one trashed 10 days ago stays" \
  "SELECT NOT EXISTS (SELECT FROM $W.person WHERE id = '$X1') AND EXISTS (SELECT FROM $W.person WHERE id = '$X2')"

# Discovery (20.11): a new table and a new column that look personal warn;
# discover() finds unregistered tables and unclassified columns by name and
# by their values, only where the caller may read.
out=$(psql -X -q -d $db -c "CREATE TABLE $W.lead (id uuid PRIMARY KEY, email text, phone text, ip inet)" \
        -c "ALTER TABLE $W.person ADD COLUMN \"mobilePerso\" text" 2>&1)
grep -q 'lead has columns that look personal.*email, phone, ip' <<<"$out" || fail "Twenty: no notice for the new table: $out"
grep -q 'person has columns that look personal.*mobilePerso' <<<"$out" || fail "Twenty: no notice for the new column: $out"
checks=$((checks + 2))
check $db "Twenty: the new table and column are in registry_changes" \
  "SELECT count(*) = 4 FROM gdpr.registry_changes WHERE event = 'personal-looking column'
      AND object IN ('$W.lead.email', '$W.lead.phone', '$W.lead.ip', '$W.person.\"mobilePerso\"')"
q -d $db -c "ALTER TABLE $W.company ADD COLUMN \"customField1\" text" \
  -c "UPDATE $W.company SET \"customField1\" = 'FR76 3000 6000 0112 3456 7890 189'" \
  -c "UPDATE $W.\"calendarEvent\" SET description = 'organiser: ' || id || '@calendar.example'" >/dev/null
check $db "Twenty: discover() suggests registering the unregistered tables" \
  "SELECT bool_and(suggestion LIKE 'SELECT gdpr.register_%') AND count(*) >= 3 FROM gdpr.discover('workspace\\_%')
    WHERE column_name IS NULL AND table_name IN ('lead', 'company', 'calendarEvent')"
check $db "Twenty: discover() finds columns by name, English and camelCase" \
  "SELECT count(*) = 3 FROM gdpr.discover('workspace\\_%')
    WHERE (table_name, column_name, looks_like) IN (('person', 'mobilePerso', 'phone'), ('lead', 'ip', 'ip'), ('company', 'addressAddressCity', 'address'))"
check $db "Twenty: discover() finds an IBAN and e-mails by their values" \
  "SELECT count(*) = 2 FROM gdpr.discover('workspace\\_%')
    WHERE (table_name, column_name, found_by) IN (('company', 'customField1', 'values (iban)'), ('calendarEvent', 'description', 'values (email)'))"
check $db "Twenty: suggestions are classify() calls with the schema's usual purpose" \
  "SELECT suggestion = format('SELECT gdpr.classify(%L, %L, %L, %L, %L);', '$W.person', 'mobilePerso', 'contact', 'customer_management', 'contract')
     FROM gdpr.discover('workspace\\_%') WHERE table_name = 'person' AND column_name = 'mobilePerso'"
q -d $db -c "DROP ROLE IF EXISTS real_crm_dpo" -c "CREATE ROLE real_crm_dpo IN ROLE gdpr_admin" \
  -c "GRANT USAGE ON SCHEMA $W TO real_crm_dpo" >/dev/null
check $db "Twenty: discover() samples only what the caller may read" \
  "SET ROLE real_crm_dpo; SELECT NOT EXISTS (SELECT FROM gdpr.discover('workspace\\_%') WHERE column_name = 'customField1')
      AND EXISTS (SELECT FROM gdpr.discover('workspace\\_%') WHERE column_name = 'mobilePerso')"
q -d $db -c "GRANT SELECT ON $W.company TO real_crm_dpo" >/dev/null
check $db "Twenty: ... and samples once it may" \
  "SET ROLE real_crm_dpo; SELECT EXISTS (SELECT FROM gdpr.discover('workspace\\_%') WHERE column_name = 'customField1')"
check $db "Twenty: the auditor's view lists the unclassified columns of registered tables" \
  "SET ROLE gdpr_auditor; SELECT EXISTS (SELECT FROM gdpr.unclassified_columns WHERE table_name = 'person' AND column_name = 'mobilePerso'
      AND suggested_category = 'contact') AND NOT EXISTS (SELECT FROM gdpr.unclassified_columns WHERE column_name IN ('id', 'searchVector'))"
q -d $db -c "DROP OWNED BY real_crm_dpo" -c "DROP ROLE real_crm_dpo" >/dev/null

# Several links on one table (20.3): company becomes a subject table too, and
# a note target is its company's as well as its person's.
q -d $db -c "SET client_min_messages = warning" -c "SELECT gdpr.register_subject_table('$W.company', 'id')" \
  -c "SELECT gdpr.link_table('$W.\"noteTarget\"', 'companyId', '$W.company')" >/dev/null
C=$(q -d $db -c "SELECT \"companyId\" FROM $W.\"noteTarget\" WHERE \"companyId\" IS NOT NULL LIMIT 1")
P2=$(q -d $db -c "SELECT \"personId\" FROM $W.\"noteTarget\" WHERE \"personId\" IS NOT NULL LIMIT 1")
check $db "Twenty: a note target is in its person's export and in its company's" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P2', '$W.person') #> '{data,$W.noteTarget}')
          = (SELECT count(*) FROM $W.\"noteTarget\" WHERE \"personId\" = '$P2')
      AND jsonb_array_length(gdpr.export_subject('$C', '$W.company') #> '{data,$W.noteTarget}')
          = (SELECT count(*) FROM $W.\"noteTarget\" WHERE \"companyId\" = '$C')"
check $db "Twenty: ... and the company's notes in its export, through the same junction" \
  "SELECT jsonb_array_length(gdpr.export_subject('$C', '$W.company') #> '{data,$W.note}')
          = (SELECT count(DISTINCT \"noteId\") FROM $W.\"noteTarget\" WHERE \"companyId\" = '$C')"

# ON DELETE SET NULL (20.7): without the keep policy, an erased point of
# contact's opportunity is unlinked and anonymised, not deleted.
q -d $db -c "DELETE FROM gdpr.retention_policies WHERE tbl = '$W.opportunity'::regclass" >/dev/null
O=$(q -d $db -c "SELECT id FROM $W.opportunity WHERE \"pointOfContactId\" IS NOT NULL AND name NOT LIKE '%renewal%' LIMIT 1")
E2=$(q -d $db -c "SELECT \"pointOfContactId\" FROM $W.opportunity WHERE id = '$O'")
oname=$(q -d $db -c "SELECT name FROM $W.opportunity WHERE id = '$O'")
check $db "Twenty: erasure of a point of contact whose opportunity has ON DELETE SET NULL" \
  "SELECT (SELECT sum((x ->> 'unlinked')::int) FROM jsonb_array_elements(gdpr.erase_subject('$E2', NULL, '$W.person') -> 'tables') x
            WHERE x ->> 'table' = '$W.opportunity') >= 1"
check $db "Twenty: ... the opportunity is still there, unlinked, its name anonymised" \
  "SELECT \"pointOfContactId\" IS NULL AND name <> '$oname' FROM $W.opportunity WHERE id = '$O'"

# An unregistered table with a SET NULL foreign key and personal-looking
# columns stops the erasure, naming it (20.7), until it is declared out of scope.
q -d $db -c "SET client_min_messages = warning" -c "SELECT gdpr.unregister_table('$W.\"calendarEventParticipant\"')" >/dev/null
E3=$(q -d $db -c "SELECT \"personId\" FROM $W.\"calendarEventParticipant\" WHERE \"personId\" IS NOT NULL LIMIT 1")
out=$(psql -X -q -d $db -c "SELECT gdpr.erase_subject('$E3', NULL, '$W.person')" 2>&1) || true
grep -q 'calendarEventParticipant" refers to the subject.s rows of .*person and is not registered' <<<"$out" \
  || fail "Twenty: an unregistered SET NULL table did not stop the erasure: $out"
checks=$((checks + 1))
check $db "Twenty: ... nothing was erased" "SELECT EXISTS (SELECT FROM $W.person WHERE id = '$E3')"
q -d $db -c "SELECT gdpr.declare_out_of_scope('$W.\"calendarEventParticipant\"', 'test: handles are pseudonymous')" >/dev/null
check $db "Twenty: ... declared out of scope, it no longer stops the erasure" \
  "SELECT gdpr.erase_subject('$E3', NULL, '$W.person') ->> 'status' = 'erased'"

# Default deny (20.11): a kept row's column nobody classified that looks
# personal is cleared by erasure, and the report says so.
q -d $db -c "SET client_min_messages = warning" \
  -c "SELECT gdpr.set_retention('$W.opportunity', NULL, '10 years', 'createdAt', 'keep')" >/dev/null
E4=$(q -d $db -c "SELECT \"pointOfContactId\" FROM $W.opportunity WHERE \"pointOfContactId\" IS NOT NULL LIMIT 1")
q -d $db -c "UPDATE $W.person SET \"mobilePerso\" = '06 11 22 33 44' WHERE id = '$E4'" >/dev/null
check $db "Twenty: erasure of a point of contact of a kept opportunity reports the unclassified column it cleared" \
  "SELECT EXISTS (SELECT FROM jsonb_array_elements(gdpr.erase_subject('$E4', NULL, '$W.person') -> 'tables') x
                   WHERE x ->> 'table' = '$W.person' AND x -> 'unclassified_cleared' ? 'mobilePerso')"
check $db "Twenty: ... his kept row's \"mobilePerso\" is cleared" \
  "SELECT \"mobilePerso\" IS NULL FROM $W.person WHERE id = '$E4'"
[ -n "${KEEP:-}" ] || dropdb $db

########################################################################## Odoo
db=real_odoo
dropdb --if-exists $db; createdb $db
q -d $db -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION crm_gdpr' -f test/fixtures/odoo.sql \
  -c 'SELECT odoo.generate(1000)' >/dev/null
# Before anything is registered, discover() finds the tables and the copies
# of e-mails, phones and bank accounts a DBA could miss.
check $db "Odoo: discover() finds the sanitized copies and the bank columns" \
  "SELECT count(*) = 5 FROM gdpr.discover('public')
    WHERE (table_name, column_name) IN (('res_partner', 'phone_sanitized'), ('res_partner', 'email_normalized'),
           ('res_partner_bank', 'acc_holder_name'), ('res_partner_bank', 'sanitized_acc_number'), ('crm_lead', 'email_normalized'))"
check $db "Odoo: discover() suggests res_partner as a subject table" \
  "SELECT bool_or(suggestion = 'SELECT gdpr.register_subject_table(''public.res_partner'', ''id'');')
     FROM gdpr.discover('public') WHERE column_name IS NULL"
recipe $db Odoo
check $db "Odoo: res_partner is the subject table, leads, bank accounts, chatter, activities, attachments under it" \
  "SELECT count(*) = 6 FROM gdpr.registered_tables WHERE subject_table = 'public.res_partner'::regclass"

# A person with a lead and a bank account: export of 55 and 61 columns (20.1).
P=$(q -d $db -c "SELECT min(l.partner_id) FROM crm_lead l JOIN res_partner_bank b ON b.partner_id = l.partner_id")
check $db "Odoo: export of a partner (55 columns) with his leads (61 columns) and bank account" \
  "SELECT jsonb_array_length(gdpr.export_subject('$P') #> '{data,public.res_partner}') = 1
      AND jsonb_array_length(gdpr.export_subject('$P') #> '{data,public.crm_lead}') >= 1
      AND (gdpr.export_subject('$P') #>> '{data,public.res_partner_bank,0,sanitized_acc_number}') LIKE 'FR%'"
# Polymorphic (model, res_id) links (20.2): a partner whose id is also a
# lead's, with chatter, activities and attachments on both.
P=$(q -d $db -c "SELECT min(p.id) FROM res_partner p WHERE NOT p.is_company AND p.id % 5 = 0
                    AND EXISTS (SELECT FROM crm_lead x WHERE x.partner_id = p.id)
                    AND (SELECT l.partner_id FROM crm_lead l WHERE l.id = p.id) IS DISTINCT FROM p.id")
# An attachment and an activity on him, and on the lead of the same id.
for m in res.partner crm.lead; do
  q -d $db -c "UPDATE ir_attachment SET res_id = $P WHERE id = (SELECT min(id) FROM ir_attachment WHERE res_model = '$m' AND res_id <> $P)" \
    -c "UPDATE mail_activity SET res_id = $P WHERE id = (SELECT min(id) FROM mail_activity WHERE res_model = '$m' AND res_id <> $P)" >/dev/null
done
check $db "Odoo: his chatter, activities and attachments are exported, not the lead's of the same id" \
  "WITH d AS (SELECT gdpr.export_subject('$P') -> 'data' AS d)
   SELECT jsonb_array_length(d #> '{public.mail_message}') = (SELECT count(*) FROM mail_message
            WHERE model = 'res.partner' AND res_id = $P OR model = 'crm.lead' AND res_id IN (SELECT id FROM crm_lead WHERE partner_id = $P))
      AND jsonb_array_length(d #> '{public.mail_activity}') > 0 AND jsonb_array_length(d #> '{public.ir_attachment}') > 0
      AND NOT EXISTS (SELECT FROM jsonb_array_elements((d #> '{public.ir_attachment}') || (d #> '{public.mail_activity}')) a
                       WHERE a ->> 'res_model' = 'crm.lead' AND (a ->> 'res_id')::int NOT IN (SELECT id FROM crm_lead WHERE partner_id = $P))
     FROM d"
others=$(q -d $db -c "SELECT count(*) FROM mail_activity WHERE res_id = $P AND res_model = 'crm.lead'")
leads=$(q -d $db -c "SELECT string_agg(id::text, ',') FROM crm_lead WHERE partner_id = $P")
consent_and_log $db Odoo "$P" "SELECT email FROM res_partner WHERE id = $P"
failed_read_named $db Odoo "$P" "SELECT (coalesce(email, '') || ' ' || coalesce(phone, ''))::int FROM res_partner WHERE id = $P"
# 20.2: a read of the chatter about him names him (model = 'res.partner', res_id).
q -d $db -c "SELECT body FROM mail_message WHERE model = 'res.partner' AND res_id = $P" -c "SELECT gdpr.flush_access_log()" >/dev/null
check $db "Odoo: a read of the chatter about him is in his access history, naming him" \
  "SELECT EXISTS (SELECT FROM gdpr.access_history('$P') WHERE operation = 'SELECT' AND tbl = 'public.mail_message'::regclass
                     AND NOT may_include_you)"
email=$(q -d $db -c "SELECT email FROM res_partner WHERE id = $P")
# Archived partners (20.6) are never contactable.
A=$(q -d $db -c "SELECT min(id) FROM res_partner WHERE NOT is_company AND active AND id <> $P")
q -d $db -c "SELECT gdpr.grant_consent('$A', 'newsletter', 'api', '{\"client\": \"x\"}')" \
  -c "UPDATE res_partner SET active = false WHERE id = $A" >/dev/null
q -d $db -c "SELECT gdpr.flush_access_log()" >/dev/null
check $db "Odoo: archiving a partner is logged as a write of active alone" \
  "SELECT columns = '{active}' FROM gdpr.access_log WHERE operation = 'UPDATE' AND tbl = 'res_partner'::regclass ORDER BY id DESC LIMIT 1"
check $db "Odoo: an archived partner is never contactable, even with his consent" \
  "SELECT NOT '$A' IN (SELECT gdpr.contactable('newsletter')) AND '$P' IN (SELECT gdpr.contactable('newsletter'))
      AND NOT gdpr.may_process('$A', 'newsletter')"
check $db "Odoo: erasure of a partner: his row, leads and bank accounts go" \
  "SELECT gdpr.erase_subject('$P') ->> 'status' = 'erased'"
check $db "Odoo: ... all gone" \
  "SELECT NOT EXISTS (SELECT FROM res_partner WHERE id = $P)
      AND NOT EXISTS (SELECT FROM crm_lead WHERE partner_id = $P) AND NOT EXISTS (SELECT FROM res_partner_bank WHERE partner_id = $P)"
check $db "Odoo: his e-mail is suppressed, in any case" \
  "SELECT gdpr.is_suppressed(upper('$email'))"
check $db "Odoo: the chatter about him is gone, the activities of the lead of the same id stay" \
  "SELECT NOT EXISTS (SELECT FROM mail_message WHERE model = 'res.partner' AND res_id = $P)
      AND (SELECT count(*) FROM mail_activity WHERE res_id = $P AND res_model = 'crm.lead') = $others"
check $db "Odoo: his leads (ON DELETE SET NULL) are unlinked and anonymised, not deleted" \
  "SELECT count(*) = cardinality('{$leads}'::int[]) AND bool_and(partner_id IS NULL AND email_from NOT LIKE '%@%')
     FROM crm_lead WHERE id = ANY ('{$leads}'::int[])"
q -d $db -c "UPDATE res_partner SET write_date = now() - interval '4 years' WHERE id % 10 = 3 AND NOT is_company" >/dev/null
# Archived partners (active = false) go a year after their last change,
# whatever their rank: an archived customer of 2 years goes, one of 6 months stays.
AC=$(q -d $db -c "SELECT min(id) FROM res_partner WHERE NOT active AND NOT is_company AND customer_rank <> 0")
AR=$(q -d $db -c "SELECT max(id) FROM res_partner WHERE NOT active AND NOT is_company")
q -d $db -c "UPDATE res_partner SET write_date = now() - interval '2 years' WHERE id = $AC" \
  -c "UPDATE res_partner SET write_date = now() - interval '6 months' WHERE id = $AR" >/dev/null
check $db "Odoo: retention_status counts the archived partners past a year under the archive policy" \
  "SELECT rows_due = (SELECT count(*) FROM res_partner WHERE NOT active AND write_date < now() - interval '1 year') AND rows_due >= 1
     FROM gdpr.retention_status WHERE tbl = 'public.res_partner'::regclass AND scope_column = 'active'"
check $db "Odoo: retention_status has a policy for prospects and one for customers, each with its due rows" \
  "SELECT count(*) = 2 AND sum(rows_due) FILTER (WHERE NOT scope_exclude)
            = (SELECT count(*) FROM res_partner WHERE customer_rank = 0 AND write_date < now() - interval '3 years')
      AND sum(rows_due) FILTER (WHERE NOT scope_exclude) > 0
      AND sum(rows_due) FILTER (WHERE scope_exclude)
            = (SELECT count(*) FROM res_partner WHERE customer_rank <> 0 AND write_date < now() - interval '5 years')
     FROM gdpr.retention_status WHERE tbl = 'public.res_partner'::regclass AND col IS NULL AND scope_column = 'customer_rank'"
check $db "Odoo: the purge deletes the partners past their retention" \
  "SELECT sum(rows) > 0 FROM gdpr.purge() WHERE tbl = 'public.res_partner'::regclass"
check $db "Odoo: the archived customer of 2 years is gone, the partner archived 6 months ago stays" \
  "SELECT NOT EXISTS (SELECT FROM res_partner WHERE id = $AC) AND EXISTS (SELECT FROM res_partner WHERE id = $AR)"
check $db "Odoo: prospects past 3 years are gone, customers of 4 years stay" \
  "SELECT NOT EXISTS (SELECT FROM res_partner WHERE customer_rank = 0 AND write_date < now() - interval '3 years')
      AND EXISTS (SELECT FROM res_partner WHERE customer_rank <> 0 AND write_date < now() - interval '3 years')"
C6=$(q -d $db -c "SELECT min(id) FROM res_partner WHERE customer_rank <> 0 AND write_date < now() - interval '3 years'")
q -d $db -c "UPDATE res_partner SET write_date = now() - interval '6 years' WHERE id = $C6" >/dev/null
check $db "Odoo: a customer past 5 years is purged under the customers' policy" \
  "SELECT sum(rows) = 1 FROM gdpr.purge() WHERE tbl = 'public.res_partner'::regclass"
check $db "Odoo: ... he is gone" "SELECT NOT EXISTS (SELECT FROM res_partner WHERE id = $C6)"
check $db "Odoo: discover() no longer lists the chatter and attachments: they are linked" \
  "SELECT count(*) = 0 FROM gdpr.discover('public') WHERE column_name IS NULL
      AND table_name IN ('mail_message', 'mail_activity', 'ir_attachment')"
# People outside the subject table (20.5): a lead is a subject of its own,
# and still his partner's.
q -d $db -c "SET client_min_messages = warning" -c "SELECT gdpr.register_subject_table('crm_lead', 'id')" >/dev/null
L=$(q -d $db -c "SELECT min(id) FROM crm_lead WHERE partner_id IS NOT NULL")
LP=$(q -d $db -c "SELECT partner_id FROM crm_lead WHERE id = $L")
check $db "Odoo: a lead is exported as a subject, with its chatter" \
  "SELECT jsonb_array_length(gdpr.export_subject('$L', 'crm_lead') #> '{data,public.crm_lead}') = 1
      AND jsonb_array_length(gdpr.export_subject('$L', 'crm_lead') #> '{data,public.mail_message}')
          = (SELECT count(*) FROM mail_message WHERE model = 'crm.lead' AND res_id = $L)"
# A lead's status from its stage (20.10): a lead without a partner (B2C) in a
# won stage is a customer, in another stage a prospect.
q -d $db -c "SET client_min_messages = warning" \
  -c "SELECT gdpr.define_purpose('prospecting', 'Prospecting', 'legitimate_interest', 'We may contact you.')" \
  -c "SELECT gdpr.set_purpose_options('prospecting', electronic_marketing => true)" \
  -c "SELECT gdpr.set_subject_profile('crm_lead', 'partner_id', 'stage_id', ARRAY(SELECT id::text FROM crm_stage WHERE is_won))" >/dev/null
out=$(psql -X -q -d $db -c "SELECT gdpr.set_subject_profile('crm_lead', 'partner_id', 'stage_id', ARRAY['won'])" 2>&1) || true
grep -q 'ERROR:  value .won. is not a value of column "stage_id"' <<<"$out" || fail "Odoo: a stage that is not an id was not refused: $out"
checks=$((checks + 1))
LW=$(q -d $db -c "SELECT min(l.id) FROM crm_lead l JOIN crm_stage s ON s.id = l.stage_id WHERE s.is_won AND l.partner_id IS NULL")
LN=$(q -d $db -c "SELECT min(l.id) FROM crm_lead l JOIN crm_stage s ON s.id = l.stage_id WHERE NOT s.is_won AND l.partner_id IS NULL")
q -d $db -c "SELECT gdpr.record_information('$LW', 'prospecting', 'api', '{\"client\": \"x\"}', 'crm_lead')" \
  -c "SELECT gdpr.record_information('$LN', 'prospecting', 'api', '{\"client\": \"x\"}', 'crm_lead')" >/dev/null
check $db "Odoo: a B2C lead in a won stage is a customer, one in another stage a prospect" \
  "SELECT gdpr.may_process('$LW', 'prospecting', 'crm_lead') AND NOT gdpr.may_process('$LN', 'prospecting', 'crm_lead')"
check $db "Odoo: ... and is still in his partner's export" \
  "SELECT EXISTS (SELECT FROM jsonb_array_elements(gdpr.export_subject('$LP', 'res_partner') #> '{data,public.crm_lead}') x
                   WHERE (x ->> 'id')::int = $L)"
# Sanitized copies nobody classified (20.9, default deny): a partner kept for
# his bank accounts (kept for the accounts) loses them with his erasure.
q -d $db -c "SET client_min_messages = warning" \
  -c "DELETE FROM gdpr.personal_columns WHERE (tbl, col) IN (('res_partner'::regclass, 'phone_sanitized'), ('res_partner'::regclass, 'email_normalized'),
        ('res_partner_bank'::regclass, 'sanitized_acc_number'), ('res_partner_bank'::regclass, 'acc_holder_name'))" \
  -c "SELECT gdpr.set_retention('res_partner_bank', NULL, '10 years', 'create_date', 'keep')" >/dev/null
B=$(q -d $db -c "SELECT min(b.partner_id) FROM res_partner_bank b JOIN res_partner p ON p.id = b.partner_id
                  WHERE p.phone_sanitized IS NOT NULL AND p.email_normalized IS NOT NULL AND b.acc_holder_name IS NOT NULL")
before=$(q -d $db -c "SELECT p.phone_sanitized || p.email_normalized || b.sanitized_acc_number || b.acc_holder_name
                       FROM res_partner p JOIN res_partner_bank b ON b.partner_id = p.id WHERE p.id = $B LIMIT 1")
check $db "Odoo: erasure of a partner kept for his bank account" \
  "SELECT gdpr.erase_subject('$B', NULL, 'res_partner') ->> 'status' = 'erased'"
check $db "Odoo: ... his unclassified sanitized copies are cleared on the kept rows" \
  "SELECT bool_and(p.phone_sanitized IS NULL AND p.email_normalized IS NULL AND b.sanitized_acc_number IS NULL
                   AND b.acc_holder_name IS NULL) AND count(*) > 0
     FROM res_partner p JOIN res_partner_bank b ON b.partner_id = p.id WHERE p.id = $B"
[ -n "${KEEP:-}" ] || dropdb $db

echo "real CRMs ok ($checks checks)"
