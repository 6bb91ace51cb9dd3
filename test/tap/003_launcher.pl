# The launcher (issue 19.1-2): three databases, two with crm_gdpr (crm1,
# crm2), one without (plain).  Each database's expired rows are purged by its
# own purge worker, its reads are logged and sealed in its own log by its own
# log writer; a flood of unfoldable reads in crm2 and a hostile table in
# plain lose nothing of crm1's reads, the drops are attributed; dropping crm2
# stops its workers and leaves crm1's running; CREATE EXTENSION starts the
# workers at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('launcher');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'crm_gdpr'
crm_gdpr.key_file = '$ENV{CRM_GDPR_KEY_FILE}'
crm_gdpr.purge_naptime = '1s'
crm_gdpr.launcher_naptime = '60s'
crm_gdpr.log_flush_interval = '200ms'
crm_gdpr.log_seal_interval = '1s'
crm_gdpr.log_queue_size = 1024
listen_addresses = ''
});
$node->start;

sub workers
{
	my ($db) = @_;
	return $node->safe_psql('postgres', qq{SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY backend_type)
	  FROM pg_stat_activity WHERE datname = '$db' AND backend_type IN ('crm_gdpr log writer', 'crm_gdpr purge worker')});
}

sub wait_for
{
	my ($db, $sql, $seconds) = @_;
	my $until = time + ($seconds || 20);
	while (time < $until)
	{
		return 1 if $node->safe_psql($db, $sql) eq 't';
		select(undef, undef, undef, 0.2);
	}
	return 0;
}

$node->safe_psql('postgres', 'CREATE DATABASE plain');
for my $db ('crm1', 'crm2')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my $t0 = time;
	$node->safe_psql($db, q{
	  SET client_min_messages = warning;
	  CREATE EXTENSION crm_gdpr;
	  CREATE TABLE contacts (id bigint PRIMARY KEY, email text, seen_at timestamptz);
	  INSERT INTO contacts SELECT i, 'c' || i || '@example.fr',
	    now() - CASE WHEN i > 5 THEN interval '5 years' ELSE interval '1 day' END FROM generate_series(1, 10) i;
	  SELECT gdpr.register_subject_table('contacts', 'id');
	  SELECT gdpr.define_purpose('support', 'Support', 'contract', 'Notice v1');
	  SELECT gdpr.classify('contacts', 'email', 'contact', 'support', 'contract');
	});
	ok(wait_for('postgres', qq{SELECT count(*) = 2 FROM pg_stat_activity WHERE datname = '$db'
	  AND backend_type IN ('crm_gdpr log writer', 'crm_gdpr purge worker')}, 5),
	   "CREATE EXTENSION in $db starts its two workers at once (launcher_naptime is 60 s)");
	note sprintf('%s: workers after %.1f s', $db, time - $t0);
	$node->safe_psql($db, q{SELECT gdpr.set_retention('contacts', NULL, '3 years', 'seen_at', 'delete')});
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'plain'}), '0',
   'no worker stays in the database without the extension');

for my $db ('crm1', 'crm2')
{
	ok(wait_for($db, q{SELECT count(*) = 5 FROM contacts}), "$db: expired rows purged");
	is($node->safe_psql($db, q{SELECT count(*) > 0 FROM gdpr.purge_history WHERE started_by = 'worker' AND rows > 0}), 't',
	   "$db: by its own purge worker");
}

# Reads in each database, logged in its own log and sealed.
for my $db ('crm1', 'crm2')
{
	$node->safe_psql($db, "SET application_name = 'reader_$db'; SELECT email FROM contacts WHERE id = 2");
}
for my $db ('crm1', 'crm2')
{
	my $other = $db eq 'crm1' ? 'crm2' : 'crm1';
	ok(wait_for($db, qq{SELECT count(*) = 1 FROM gdpr.access_log WHERE application_name = 'reader_$db'}),
	   "$db: its read is in its own log");
	is($node->safe_psql($db, qq{SELECT count(*) FROM gdpr.access_log WHERE application_name = 'reader_$other'}), '0',
	   "$db: and not the other database's");
	ok(wait_for($db, qq{SELECT sealed_upto >= (SELECT max(at) FROM gdpr.access_log WHERE application_name = 'reader_$db')
	  FROM gdpr.access_log_status}), "$db: sealed");
	is($node->safe_psql($db, 'SELECT ok FROM gdpr.verify_access_log()'), 't', "$db: the log verifies");
}

# A flood: in crm2, reads that cannot be folded (a purpose per read) from
# three sessions; in plain, a hostile table named like a registered one.
# Meanwhile crm1 reads 200 times: none of its reads may be lost.
my @flood;
for my $i (1 .. 3)
{
	push @flood, $node->background_psql('crm2', on_error_stop => 1);
}
$_->query_until(qr/started/, q{
  \echo started
  DO $$ BEGIN FOR i IN 1..6000 LOOP
    PERFORM set_config('crm_gdpr.purpose', 'p' || i, false);
    PERFORM email FROM contacts WHERE id = 1 + i % 10;
  END LOOP; END $$;
}) for @flood;
my $hostile = $node->background_psql('plain', on_error_stop => 1);
$hostile->query_until(qr/started/, q{
  CREATE TEMP TABLE t (id int);
  CREATE FUNCTION pg_temp.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
  CREATE TRIGGER gdpr_log_insert AFTER INSERT ON pg_temp.t FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.f();
  INSERT INTO t SELECT generate_series(1, 10);
  \echo started
  DO $$ BEGIN FOR i IN 1..6000 LOOP PERFORM id FROM pg_temp.t WHERE id = 1 + i % 10; END LOOP; END $$;
});
$node->safe_psql('crm1', q{
  SET application_name = 'victim';
  DO $$ BEGIN FOR i IN 1..200 LOOP
    PERFORM set_config('crm_gdpr.purpose', 'v' || i, false);
    PERFORM email FROM contacts WHERE id = 1 + i % 10;
    PERFORM pg_sleep(0.005);
  END LOOP; END $$;
});
$_->quit for @flood;
$hostile->quit;
ok(wait_for('crm1', q{SELECT sum(times) = 200 FROM gdpr.access_log WHERE application_name = 'victim'}),
   'the flood in crm2 and in plain loses none of the 200 reads of crm1')
  or diag($node->safe_psql('crm1', 'SELECT * FROM gdpr.access_log_queue_drops()'));
my $drops = $node->safe_psql('crm1', q{SELECT string_agg(database || ':' || (dropped > 0), ',' ORDER BY database)
  FROM gdpr.access_log_queue_drops() WHERE database IN ('crm1', 'crm2')});
is($drops, 'crm2:true', "crm2's flood is bounded and its drops attributed to crm2 (crm1 dropped nothing)")
  or diag($node->safe_psql('crm1', 'SELECT * FROM gdpr.access_log_queue_drops()'));
is($node->safe_psql('crm1', q{SELECT role = current_user FROM gdpr.access_log_queue_drops() WHERE database = 'crm2'}), 't',
   'and to the role that flooded');
ok(wait_for('crm2', q{SELECT count(*) > 0 FROM gdpr.access_log WHERE application_name <> 'reader_crm2'}),
   'crm2 logs what its share held');
# The alarm (issue 19.2): a row of gdpr.log_queue_alarms, seen from crm1
# too, and a WARNING in the server log, both naming crm2 and its role.
is($node->safe_psql('crm1', q{SELECT string_agg(database || ':' || alarm || ':' || (role = current_user), ',' ORDER BY database)
  FROM gdpr.log_queue_alarms WHERE database IN ('crm1', 'crm2')}), 'crm2:reads dropped:true',
   'gdpr.log_queue_alarms: the flooding database and role, not the victim');
like(slurp_file($node->logfile), qr/WARNING:  crm_gdpr: reads of role "\w+" in database "crm2" are dropped/,
     'and a WARNING in the server log');

# crm_gdpr.log_queue_full = wait: a flood waits for the log writer, loses nothing.
$node->safe_psql('crm1', q{
  SET crm_gdpr.log_queue_full = wait; SET application_name = 'waiter';
  DO $$ BEGIN FOR i IN 1..3000 LOOP
    PERFORM set_config('crm_gdpr.purpose', 'w' || i, false);
    PERFORM email FROM contacts WHERE id = 1 + i % 10;
  END LOOP; END $$;
});
ok(wait_for('crm1', q{SELECT sum(times) = 3000 FROM gdpr.access_log WHERE application_name = 'waiter'}),
   'log_queue_full = wait: 3000 unfoldable reads in one statement, all logged');
is($node->safe_psql('crm1', q{SELECT count(*) FROM gdpr.access_log_queue_drops() WHERE database = 'crm1'}), '0',
   'none dropped');
is($node->safe_psql('crm1', q{SELECT waited > 0 AND dropped = 0 AND alarm = 'reads waited for the log writer'
  FROM gdpr.log_queue_alarms WHERE database = 'crm1'}), 't', 'the waits are an alarm of crm1');
like(slurp_file($node->logfile), qr/WARNING:  crm_gdpr: reads of role "\w+" in database "crm1" wait for the log writer/,
     'said in the server log');

# crm_gdpr.log_queue_full = error: when its share is full, the read fails.
$node->safe_psql('postgres', q{ALTER SYSTEM SET crm_gdpr.enable_log_writer = off; SELECT pg_reload_conf()});
sleep 1;
my ($ret, $out, $err) = $node->psql('crm1', q{
  SET crm_gdpr.log_queue_full = error;
  DO $$ BEGIN FOR i IN 1..2000 LOOP
    PERFORM set_config('crm_gdpr.purpose', 'e' || i, false);
    PERFORM email FROM contacts WHERE id = 1 + i % 10;
  END LOOP; END $$;
});
isnt($ret, 0, 'log_queue_full = error: a read that cannot be logged fails');
like($err, qr/share of the read queue is full/, 'and says why');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET crm_gdpr.enable_log_writer; SELECT pg_reload_conf()});

# Dropping crm2 stops its workers (DROP DATABASE would fail while they are
# connected) and leaves crm1's running.
my $crm1_workers = workers('crm1');
$node->safe_psql('postgres', 'DROP DATABASE crm2');
pass('DROP DATABASE crm2 succeeds while its workers ran');
ok(wait_for('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'crm2'}, 5), "crm2's workers are gone");
sleep 1;
is(workers('crm1'), $crm1_workers, "crm1's workers still run, the same processes");
$node->safe_psql('crm1', "SET application_name = 'after_drop'; SELECT email FROM contacts WHERE id = 3");
ok(wait_for('crm1', q{SELECT count(*) = 1 FROM gdpr.access_log WHERE application_name = 'after_drop'}),
   'and crm1 still logs its reads');

# DROP EXTENSION stops the database's workers.
$node->safe_psql('crm1', 'DROP EXTENSION crm_gdpr CASCADE');
ok(wait_for('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'crm1'
  AND backend_type LIKE 'crm_gdpr%'}, 10), 'DROP EXTENSION stops its workers');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_gdpr launcher'}), '1',
   'the launcher runs on');

# Budget: crm_gdpr.max_databases = 1 with two databases with the extension:
# one is served, the server log says which is not and why.
$node->safe_psql('crm1', 'CREATE EXTENSION crm_gdpr');
$node->safe_psql('postgres', 'CREATE DATABASE crm3');
$node->safe_psql('crm3', 'CREATE EXTENSION crm_gdpr');
$node->append_conf('postgresql.conf', 'crm_gdpr.max_databases = 1');
my $log_offset = -s $node->logfile;
$node->restart;
ok(wait_for('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type IN ('crm_gdpr log writer', 'crm_gdpr purge worker')
  AND datname IN ('crm1', 'crm3')}, 20), 'max_databases = 1: one database is served');
like(slurp_file($node->logfile, $log_offset), qr/is not served: all crm_gdpr.max_databases \(1\) slots are taken/,
     'the server log says another is not, and why');

$node->stop;
done_testing();
