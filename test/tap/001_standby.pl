# Hot standby: the registry is readable on a streaming standby, functions that
# write fail there with SQLSTATE 25006, and they work again after promotion.
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

$standby->stop;
$primary->stop;
done_testing();
