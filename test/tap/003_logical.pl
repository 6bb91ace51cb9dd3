# Logical replication (doc/scale-out.md): a publisher and a subscriber on
# loopback, both with crm_gdpr and the same registered table.  What this
# measures: the apply worker runs with session_replication_role = replica, so
# the subscriber's own triggers on the table (write log, restriction) do not
# fire for replicated changes, and even ENABLE ALWAYS does not make the apply
# worker fire statement triggers; reads on the
# subscriber are logged there; an erasure on the publisher reaches the
# subscriber as an ordinary UPDATE; the registry and the consent ledger are
# not replicated unless published.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = qq{shared_preload_libraries = 'crm_gdpr'
crm_gdpr.key_file = '$ENV{CRM_GDPR_KEY_FILE}'
crm_gdpr.log_flush_interval = '100ms'
crm_gdpr.enable_worker = off
};
my $setup = q{
  CREATE EXTENSION crm_gdpr;
  CREATE TABLE contacts (id bigint PRIMARY KEY, email text, seen_at timestamptz);
  SELECT gdpr.register_subject_table('contacts', 'id');
  SELECT gdpr.define_purpose('support', 'Support', 'contract', 'Notice v1');
  SELECT gdpr.classify('contacts', 'email', 'contact', 'support', 'contract');
};

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', $conf);
$pub->start;
$pub->safe_psql('postgres', $setup);
$pub->safe_psql('postgres', q{CREATE PUBLICATION crm FOR TABLE contacts});

my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', $conf);
$sub->start;
$sub->safe_psql('postgres', $setup);
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', qq{CREATE SUBSCRIPTION crm CONNECTION '$connstr' PUBLICATION crm});
$sub->wait_for_subscription_sync($pub, 'crm');

# Writes on the publisher: logged there by its statement triggers.
$pub->safe_psql('postgres', q{SET application_name = 'crm_app';
  INSERT INTO contacts SELECT i, 'c' || i || '@example.fr', now() FROM generate_series(1, 10) i});
$pub->wait_for_catchup('crm');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM contacts'), '10', 'the rows reach the subscriber');
ok($pub->poll_query_until('postgres',
     q{SELECT count(*) = 1 FROM gdpr.access_log WHERE operation = 'INSERT' AND application_name = 'crm_app'}),
   'the publisher logs the INSERT');
sleep 1;
is($sub->safe_psql('postgres', q{SELECT count(*) FROM gdpr.access_log WHERE operation IN ('INSERT', 'UPDATE', 'DELETE')}),
   '0', 'the subscriber logs no write for applied changes (its triggers do not fire under session_replication_role = replica)');

# ENABLE ALWAYS does not help: the apply worker fires row triggers only (and
# TRUNCATE's), never the statement triggers with transition tables that the
# write log is made of.
$sub->safe_psql('postgres', q{ALTER TABLE contacts ENABLE ALWAYS TRIGGER gdpr_log_insert});
$pub->safe_psql('postgres', q{INSERT INTO contacts VALUES (11, 'c11@example.fr', now())});
$pub->wait_for_catchup('crm');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM contacts'), '11', 'the next row reaches the subscriber');
sleep 2;
is($sub->safe_psql('postgres', q{SELECT count(*) FROM gdpr.access_log WHERE operation = 'INSERT'}),
   '0', 'even with ENABLE ALWAYS TRIGGER the subscriber does not log the applied INSERT');

# Reads on the subscriber are the subscriber's to log.
$sub->safe_psql('postgres', q{SET application_name = 'report'; SELECT email FROM contacts WHERE id = 4});
ok($sub->poll_query_until('postgres',
     q{SELECT count(*) = 1 FROM gdpr.access_log WHERE operation = 'SELECT' AND application_name = 'report'}),
   'a read on the subscriber is logged in the subscriber\'s access log');
is($pub->safe_psql('postgres', q{SELECT count(*) FROM gdpr.access_log WHERE application_name = 'report'}),
   '0', 'and not on the publisher');

# Erasure on the publisher: the subscriber receives the erased row.
$pub->safe_psql('postgres', q{SELECT gdpr.erase_subject('3')});
$pub->wait_for_catchup('crm');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM contacts WHERE email = 'c3@example.fr'}),
   '0', 'an erasure on the publisher reaches the subscriber');

# Restriction: the subscriber's restriction trigger does not stop applied changes.
$sub->safe_psql('postgres', q{SELECT gdpr.restrict_subject('5', 'contested accuracy')});
$pub->safe_psql('postgres', q{UPDATE contacts SET email = 'new5@example.fr' WHERE id = 5});
$pub->wait_for_catchup('crm');
is($sub->safe_psql('postgres', q{SELECT email FROM contacts WHERE id = 5}), 'new5@example.fr',
   'a restriction set on the subscriber only does not stop a change applied from the publisher');

# The registry and the ledger are each node's own: nothing crosses unless published.
$pub->safe_psql('postgres', q{SELECT gdpr.define_purpose('newsletter', 'Newsletter', 'consent', 'v1')});
$pub->wait_for_catchup('crm');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM gdpr.purposes WHERE code = 'newsletter'}),
   '0', 'a purpose defined on the publisher is not on the subscriber');

$sub->stop;
$pub->stop;
done_testing();
