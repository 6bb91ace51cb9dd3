# Hot standby: the registry is readable on a streaming standby, functions that
# write fail there with SQLSTATE 25006, and they work again after promotion.
# Reads on the standby reach the server log as "crm_gdpr read: {json}" lines;
# after promotion the log writer writes them to gdpr.access_log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# The worker is off on the primary, so that expired rows wait for the standby's promotion.
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'crm_gdpr'\ncrm_gdpr.purge_naptime = '1s'\ncrm_gdpr.enable_worker = off");
$primary->start;
$primary->safe_psql('postgres', q{
  CREATE EXTENSION crm_gdpr;
  CREATE TABLE contacts (id bigint PRIMARY KEY, email text, seen_at timestamptz);
  INSERT INTO contacts SELECT i, 'c' || i || '@example.fr', now() - CASE WHEN i > 5 THEN interval '5 years' ELSE interval '1 day' END
    FROM generate_series(1, 10) i;
  SELECT gdpr.register_subject_table('contacts', 'id');
  SELECT gdpr.define_purpose('support', 'Support', 'contract', 'Notice v1');
  SELECT gdpr.classify('contacts', 'email', 'contact', 'support', 'contract');
  SELECT gdpr.set_retention('contacts', NULL, '3 years', 'seen_at', 'delete');
});
$primary->backup('base');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "crm_gdpr.enable_worker = on");
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT purpose || ' . q{'|'} . ' || array_to_string(personal_data, \',\') FROM gdpr.processing_register'),
   'support|public.contacts.email', 'the Art. 30 register is readable on the standby');
is($standby->safe_psql('postgres', q{SELECT gdpr.export_subject('3') #>> '{data,public.contacts,0,email}'}),
   'c3@example.fr', 'a subject export works on the standby');

my ($ret, $out, $err) = $standby->psql('postgres',
  q{\set VERBOSITY verbose
SELECT gdpr.define_purpose('newsletter', 'Newsletter', 'consent')});
isnt($ret, 0, 'a registry change fails on the standby');
like($err, qr/25006/, 'with SQLSTATE 25006 (read_only_sql_transaction)');
($ret, $out, $err) = $standby->psql('postgres',
  q{\set VERBOSITY verbose
SELECT gdpr.open_request('3', 'access')});
like($err, qr/25006/, 'opening a request fails there too, with 25006');

$standby->safe_psql('postgres', q{SET application_name = 'standby_reader'; SELECT email FROM contacts WHERE id = 4});
my $log = slurp_file($standby->logfile);
like($log, qr/crm_gdpr read: \{"at": "[^"]+", "operation": "SELECT", "role": "[^"]+", "session_user": "[^"]+", "application_name": "standby_reader", "table": "public.contacts", "columns": \["id", "email"\], "rows": 1, "subjects": 1/,
     'a read on the standby is written to its server log, with who, what and how much');
like($log, qr/crm_gdpr read: \{.*"operation": "EXPORT".*"table": "public.contacts"/,
     'so is an export made on the standby');
is($standby->safe_psql('postgres', 'SELECT logged_to_server_log > 0 FROM gdpr.access_log_queue()'), 't',
   'and gdpr.access_log_queue() counts them');

# A read that fails after sending rows (issue 18.1: ids 1 to 4 went to the
# client before the division by zero) is recorded there too,
# with the names taken at its start: nothing can be looked up while it aborts.
($ret, $out, $err) = $standby->psql('postgres',
  q{SET application_name = 'standby_failed'; SELECT email, 1/(id - 5) FROM contacts ORDER BY id});
like($err, qr/division by zero/, 'a read that fails midway on the standby fails');
$log = slurp_file($standby->logfile);
like($log, qr/crm_gdpr read: \{[^\n]*"application_name": "standby_failed", "table": "public.contacts", "columns": \["id", "email"\], "rows": [1-9][0-9]*, [^\n]*"detail": \{"failed": true/,
     'it is in the standby\'s server log, naming the table, marked failed');

sleep 2;
is($standby->safe_psql('postgres', 'SELECT count(*) FROM contacts'), '10', 'the worker purges nothing on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM gdpr.purge_runs'), '0', 'and records no run there');

$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'standby was not promoted';
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 5 FROM contacts'),
   'after promotion the worker purges the expired rows');
is($standby->safe_psql('postgres', q{SELECT gdpr.define_purpose('newsletter', 'Newsletter', 'consent', 'v1')}),
   '1', 'after promotion the registry can be changed');
$standby->safe_psql('postgres', q{SET application_name = 'promoted_reader'; SELECT email FROM contacts WHERE id = 2});
ok($standby->poll_query_until('postgres',
     q{SELECT count(*) = 1 FROM gdpr.access_log WHERE application_name = 'promoted_reader' AND operation = 'SELECT'}),
   'after promotion the log writer writes reads to gdpr.access_log');
ok($standby->poll_query_until('postgres', q{SELECT count(*) > 0 FROM gdpr.access_log WHERE operation = 'PURGE'}),
   'and the worker\'s purges are logged');

$standby->stop;
$primary->stop;
done_testing();
