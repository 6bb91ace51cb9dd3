# Crash safety: the postmaster is killed with SIGKILL in the middle of an
# erasure, of a purge and of a burst of logged writes and reads, CYCLES times
# (3 in make test; make crash-loop runs 20).  After each restart: no
# half-erased subject, committed erasures are whole, the purge resumes and
# finishes, the interrupted run is marked as such, every committed write has
# its access log row, the log verifies, and the reads lost with the queue are
# counted (printed) and stay within its capacity.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $cycles = $ENV{CYCLES} || 3;
my $fixtures = $ENV{CRM_GDPR_FIXTURES} or die 'CRM_GDPR_FIXTURES is not set';
my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'crm_gdpr'
crm_gdpr.key_file = '$ENV{CRM_GDPR_KEY_FILE}'
crm_gdpr.purge_naptime = '1s'
crm_gdpr.purge_batch_size = 5
crm_gdpr.enable_worker = off
});
$node->start;
$node->safe_psql('postgres', "SET client_min_messages = warning; CREATE EXTENSION crm_gdpr;
  \\i $fixtures/crm.sql
  SELECT crm.generate(3000);
  \\i $fixtures/registry.sql
  CREATE TABLE crash_marks (cycle int, i int, contact_id bigint);
  CREATE PROCEDURE crash_burst(cyc int, n int) LANGUAGE plpgsql AS \$\$
  DECLARE c bigint; e text;
  BEGIN
    FOR i IN 1..n LOOP
      SELECT id INTO c FROM crm.contacts ORDER BY id OFFSET (i % 1000) LIMIT 1;
      UPDATE crm.contacts SET city = 'burst ' || cyc || ' ' || i WHERE id = c;
      SELECT email INTO e FROM crm.contacts WHERE id = c;
      INSERT INTO crash_marks VALUES (cyc, i, c);
      COMMIT;
    END LOOP;
  END \$\$;");

# SIGKILL the postmaster and wait until it is gone before starting again:
# the lock file check refuses while the old PID still exists.
# A backend in a loop that never waits would outlive the postmaster: the
# pids given are killed with it (the whole server dies, as in a power cut).
sub children_of
{
	my ($parent) = @_;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh>;
		close $fh;
		push @pids, $1 if $line && $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $parent;
	}
	return @pids;
}

sub crash_and_restart
{
	my @backends = @_;
	my $pid = $node->{_pid};
	# Every process of the server dies at once, as in a power cut: a backend
	# or a vacuum that has not yet looked for its postmaster would otherwise
	# keep the shared memory and the restart would be refused.
	my @children = children_of($pid);
	$node->kill9;
	kill 'KILL', @backends, @children;
	for (1 .. 100) { last unless kill(0, $pid, @children); select(undef, undef, undef, 0.1); }
	$node->start;
}

for my $cycle (1 .. $cycles)
{
	# An erasure in flight: all of his rows or none.  Each cycle brings its
	# own rows, so that 20 cycles never run out of data.
	my $id = $node->safe_psql('postgres', "SELECT min(id) FROM crm.contacts c
	  WHERE NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)");
	# Explicit ids, in a range of their own per cycle.
	my $base = 1000000 * $cycle;
	$node->safe_psql('postgres', "INSERT INTO crm.interactions (id, contact_id, kind, occurred_at)
	  SELECT $base + 900000 + g, $id, 'call', now() FROM generate_series(1, 5) g");
	my $before = $node->safe_psql('postgres', "SELECT count(*) FROM crm.interactions WHERE contact_id = $id");
	my $done = $node->safe_psql('postgres', "SELECT min(id) FROM crm.contacts c WHERE id > $id
	  AND NOT EXISTS (SELECT FROM crm.orders o WHERE o.contact_id = c.id)");
	$node->safe_psql('postgres', "SELECT gdpr.erase_subject('$done')");
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->query_until(qr/erased/, "BEGIN;\nSELECT gdpr.erase_subject('$id') ->> 'status';\n");
	crash_and_restart();
	eval { $session->quit; };
	is($node->safe_psql('postgres', "SELECT count(*) FROM crm.interactions WHERE contact_id = $id"), $before,
	   "cycle $cycle: an erasure cut by a crash left all of his rows");
	is($node->safe_psql('postgres', "SELECT count(*) FROM crm.contacts WHERE id = $id"), '1',
	   "cycle $cycle: and his contact row");
	is($node->safe_psql('postgres', "SELECT gdpr.erase_subject('$done') ->> 'status'"), 'already erased',
	   "cycle $cycle: a committed erasure stays whole");

	# A purge in flight: make rows due, let the worker start, kill everything.
	$node->safe_psql('postgres', "INSERT INTO crm.interactions (id, contact_id, kind, occurred_at)
	  SELECT $base + row_number() OVER (), c.id, 'call', now() - interval '5 years'
	    FROM crm.contacts c, generate_series(1, 2) ORDER BY c.id LIMIT 2000");
	$node->safe_psql('postgres', "ALTER SYSTEM SET crm_gdpr.enable_worker = on; SELECT pg_reload_conf();");
	$node->poll_query_until('postgres', "SELECT EXISTS (SELECT FROM gdpr.purge_runs WHERE status = 'running'
	  AND started_by = 'worker')") or die 'the worker did not start a purge';
	crash_and_restart();
	ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM gdpr.retention_status WHERE rows_due > 0"),
	   "cycle $cycle: after the crash the worker resumes and finishes the purge");
	ok($node->poll_query_until('postgres', "SELECT EXISTS (SELECT FROM gdpr.purge_runs WHERE status = 'interrupted')"),
	   "cycle $cycle: the run cut by the crash is marked interrupted");
	$node->safe_psql('postgres', "ALTER SYSTEM SET crm_gdpr.enable_worker = off; SELECT pg_reload_conf();");
	sleep 1;

	# A burst of logged writes and reads, each committed with its mark.
	my $burst = $node->background_psql('postgres', on_error_stop => 0);
	my $burst_pid = $burst->query_safe('SELECT pg_backend_pid()');
	$burst->query_until(qr/started/, "SET application_name = 'burst_$cycle';\n\\echo started\nCALL crash_burst($cycle, 1000000);\n");
	$node->poll_query_until('postgres', "SELECT count(*) > 3000 FROM crash_marks WHERE cycle = $cycle")
	  or die 'the burst did not start';
	crash_and_restart($burst_pid);
	eval { $burst->quit; };
	$node->safe_psql('postgres', 'SELECT gdpr.flush_access_log()');
	is($node->safe_psql('postgres', "SELECT count(*) FROM crash_marks m WHERE m.cycle = $cycle AND NOT EXISTS (
	      SELECT FROM gdpr.access_log l WHERE l.application_name = 'burst_$cycle' AND l.operation = 'UPDATE'
	         AND l.subject_keys @> ARRAY[gdpr._log_subject_key(m.contact_id::text)])"), '0',
	   "cycle $cycle: every committed write of the burst has its access log row");
	is($node->safe_psql('postgres', 'SELECT ok FROM gdpr.verify_access_log()'), 't',
	   "cycle $cycle: the access log verifies after the crash");
	my ($committed, $logged) = split /\|/, $node->safe_psql('postgres', "SELECT
	    (SELECT count(*) FROM crash_marks WHERE cycle = $cycle),
	    (SELECT coalesce(sum(times), 0) FROM gdpr.access_log WHERE application_name = 'burst_$cycle' AND operation = 'SELECT' AND columns = '{id,email}')");
	my $lost = $committed - $logged;
	note("cycle $cycle: $committed committed iterations, $logged reads logged, $lost lost with the queue");
	ok($logged > 0 && $lost >= 0 && $lost <= 16384,
	   "cycle $cycle: reads were logged while the burst ran, and those lost in the crash ($lost) stay within the queue's capacity");
}

$node->stop;
done_testing();
