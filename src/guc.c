/*
 * guc.c — every crm_gdpr.* setting, defined in one place.
 *
 * _PG_init calls crm_gdpr_define_settings() first, preloaded or not, so
 * that SQL can read any setting (gdpr.setting) as soon as the library is
 * loaded; the two PGC_POSTMASTER settings exist only when preloading, since
 * only the postmaster can define them.  The interval-valued settings are
 * strings checked as intervals here: a typo is refused at SET or reload,
 * not later inside the purge or the log writer.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "keys.h"
#include "settings.h"

char	   *crm_gdpr_key_file = NULL;
char	   *crm_gdpr_retired_key_files = NULL;
bool		crm_gdpr_log_reads = true;
char	   *crm_gdpr_purpose = NULL;
int			crm_gdpr_max_rows_per_query = 0;
int			crm_gdpr_mass_read_rows = 10000;
char	   *crm_gdpr_mass_read_window = NULL;
char	   *crm_gdpr_access_log_keep = NULL;
int			crm_gdpr_log_subjects_max = 100;
int			crm_gdpr_log_queue_size = 16384;
char	   *crm_gdpr_database = NULL;
bool		crm_gdpr_enable_worker = true;
int			crm_gdpr_purge_naptime = 3600;	/* s */
int			crm_gdpr_purge_batch_size = 10000;
int			crm_gdpr_purge_lock_timeout = 1000; /* ms */
char	   *crm_gdpr_purge_history_keep = NULL;
bool		crm_gdpr_enable_log_writer = true;
int			crm_gdpr_log_flush_interval = 1000; /* ms */
int			crm_gdpr_log_seal_interval = 10;	/* s */
int			crm_gdpr_max_databases = 8;
int			crm_gdpr_launcher_naptime = 60;	/* s */
int			crm_gdpr_log_queue_full = LOG_QUEUE_FULL_DROP;
int			crm_gdpr_restriction_reads = RESTRICTION_READS_FILTER;
/* Read by SQL (77_suppression.sql, consent proofs): defined here so that they are checked. */
static int	suppression_mode = 0;
static char *consent_proof_keep = NULL;

static const struct config_enum_entry suppression_options[] = {
	{"refuse", 0, false},
	{"flag", 1, false},
	{"off", 2, false},
	{NULL, 0, false}
};

static const struct config_enum_entry restriction_reads_options[] = {
	{"filter", RESTRICTION_READS_FILTER, false},
	{"off", RESTRICTION_READS_OFF, false},
	{NULL, 0, false}
};

static const struct config_enum_entry queue_full_options[] = {
	{"wait", LOG_QUEUE_FULL_WAIT, false},
	{"drop", LOG_QUEUE_FULL_DROP, false},
	{"error", LOG_QUEUE_FULL_ERROR, false},
	{NULL, 0, false}
};

/*
 * Whether a string is an interval as interval_in reads it.  The datetime
 * parser returns its errors instead of raising them: a check hook must not
 * raise.  (Version-specific: the signatures of ParseDateTime and
 * DecodeInterval are those of PostgreSQL 15.)
 */
static bool
check_interval(char **newval, void **extra, GucSource source)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype = 0;
	struct pg_itm_in itm_in;
	Interval	interval;
	int			dterr;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("An interval is required, such as \"1 hour\" or \"5 years\".");
		return false;
	}
	dterr = ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm_in);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(*newval, &dtype, &itm_in);
	if (dterr != 0 || dtype != DTK_DELTA || itmin2interval(&itm_in, &interval) != 0)
	{
		GUC_check_errdetail("\"%s\" is not an interval, such as \"1 hour\" or \"5 years\".", *newval);
		return false;
	}
	return true;
}

/* A key setting changed: every process reloads its keys when it next uses one. */
static void
keys_changed(const char *newval, void *extra)
{
	crm_gdpr_keys_changed();
}

static void
define_key_settings(void)
{
	DefineCustomStringVariable("crm_gdpr.key_file",
							   "File holding the 32-byte master key as 64 hexadecimal characters.",
							   "Owned by the server's user, mode 0600 or 0400. Empty: no key.",
							   &crm_gdpr_key_file, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, keys_changed, NULL);
	DefineCustomStringVariable("crm_gdpr.retired_key_files",
							   "Comma-separated key files of former master keys, still used to decrypt.",
							   NULL, &crm_gdpr_retired_key_files, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_LIST_INPUT, NULL, keys_changed, NULL);
}

static void
define_read_settings(void)
{
	DefineCustomBoolVariable("crm_gdpr.log_reads", "Whether reads of registered tables are logged.",
							 "Needs crm_gdpr in shared_preload_libraries.",
							 &crm_gdpr_log_reads, true, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.purpose", "The purpose the application declares for what it does now.",
							   "Recorded with each access in gdpr.access_log.",
							   &crm_gdpr_purpose, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.max_rows_per_query",
							"Rows of a registered table one query may return to a role that is not gdpr_admin (0: no limit).",
							NULL, &crm_gdpr_max_rows_per_query, 0, 0, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.mass_read_rows",
							"Rows of personal data a role may read within crm_gdpr.mass_read_window before gdpr.mass_read_alarms lists it.",
							NULL, &crm_gdpr_mass_read_rows, 10000, 1, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.mass_read_window", "The window of gdpr.mass_read_alarms (an interval).",
							   NULL, &crm_gdpr_mass_read_window, "1 hour", PGC_SUSET, 0, check_interval, NULL, NULL);
	/*
	 * 1 year: the CNIL recommends keeping traceability logs 6 months to 1
	 * year (longer only for a stated reason); at 1,000 reads/s the log grows
	 * some 4 GiB a day, 5 years was 6-8 TiB.  A site with such a reason sets
	 * it longer.
	 */
	DefineCustomStringVariable("crm_gdpr.access_log_keep", "How long the access log keeps its rows (an interval).",
							   "Whole months older than that are dropped by the log writer.",
							   &crm_gdpr_access_log_keep, "1 year", PGC_SUSET, 0, check_interval, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.log_subjects_max",
							"Subjects a statement's log row names at most, per table.",
							"A read or write that touches more names the first ones and is marked (subjects_truncated, or subjects NULL for a write); access_history lists it as \"may include you\" to the others.",
							&crm_gdpr_log_subjects_max, 100, 0, 10000, PGC_SUSET, 0, NULL, NULL, NULL);
}

static void
define_worker_settings(bool preloading)
{
	DefineCustomIntVariable("crm_gdpr.purge_naptime", "Time between two purges of the worker.",
							NULL, &crm_gdpr_purge_naptime, 3600, 1, INT_MAX / 1000, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.purge_batch_size", "Rows a purge changes per batch (one transaction each in the worker).",
							NULL, &crm_gdpr_purge_batch_size, 10000, 1, INT_MAX, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("crm_gdpr.enable_worker", "Whether the purge worker purges.",
							 NULL, &crm_gdpr_enable_worker, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.purge_lock_timeout", "lock_timeout of each purge batch.",
							"A batch that cannot get its locks in time fails alone and is retried at the next purge.",
							&crm_gdpr_purge_lock_timeout, 1000, 1, INT_MAX, PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.purge_history_keep", "How long gdpr.purge_history keeps its runs (an interval).",
							   NULL, &crm_gdpr_purge_history_keep, "2 years", PGC_SUSET, 0, check_interval, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.log_flush_interval", "Time between two writes of the queued reads.",
							NULL, &crm_gdpr_log_flush_interval, 1000, 10, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.log_seal_interval", "Time between two seals of the access log.",
							NULL, &crm_gdpr_log_seal_interval, 10, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("crm_gdpr.enable_log_writer", "Whether the log writer writes, seals and maintains the access log.",
							 NULL, &crm_gdpr_enable_log_writer, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.database",
							   "The databases the launcher serves, as a comma-separated list of names (empty: every database where crm_gdpr is installed).",
							   NULL, &crm_gdpr_database, "", PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.launcher_naptime",
							"Time between two looks of the launcher for databases where crm_gdpr was installed.",
							"CREATE EXTENSION crm_gdpr wakes it at once.",
							&crm_gdpr_launcher_naptime, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomEnumVariable("crm_gdpr.log_queue_full",
							 "What a read does when its database's share of the read queue is full: wait, drop (counted) or error.",
							 NULL, &crm_gdpr_log_queue_full, LOG_QUEUE_FULL_DROP, queue_full_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	if (!preloading)
		return;
	/* A postmaster setting can only be defined while the server starts. */
	DefineCustomIntVariable("crm_gdpr.max_databases",
							"Databases the launcher serves at most (each with a purge worker and a log writer).",
							"max_worker_processes must hold 1 + 2 per database.",
							&crm_gdpr_max_databases, 8, 1, 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_gdpr.log_queue_size", "Slots of the shared-memory queue of reads (a read by key takes one).",
							"Each is 256 bytes of shared memory; a read naming many people takes several.",
							&crm_gdpr_log_queue_size, 16384, 16, 1024 * 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

/*
 * The rules' settings.  Superuser only: an importing application must not be
 * able to switch the suppression list off for its session.
 */
static void
define_rule_settings(void)
{
	DefineCustomEnumVariable("crm_gdpr.suppression_mode",
							 "What a write bringing back a suppressed e-mail or phone does: refuse, flag or off.",
							 NULL, &suppression_mode, 0, suppression_options, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("crm_gdpr.consent_proof_keep",
							   "How long the reduced proof of a departed subject's consent is kept after it ended (an interval).",
							   NULL, &consent_proof_keep, "5 years", PGC_SUSET, 0, check_interval, NULL, NULL);
	/* Superuser only, for the same reason: see doc/rights.md for letting gdpr_admin set it. */
	DefineCustomEnumVariable("crm_gdpr.restriction_reads",
							 "Whether reads of a restricted subject's rows by roles not in gdpr_admin are filtered out: filter or off.",
							 NULL, &crm_gdpr_restriction_reads, RESTRICTION_READS_FILTER, restriction_reads_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

void
crm_gdpr_define_settings(bool preloading)
{
	define_key_settings();
	define_read_settings();
	define_worker_settings(preloading);
	define_rule_settings();

	/*
	 * Reserving the prefix turns a mistyped crm_gdpr.* setting into a warning
	 * instead of silence: every setting is defined above this line.
	 */
	MarkGUCPrefixReserved("crm_gdpr");
}

/* The value of a crm_gdpr.* setting: how the extension's SQL reads them all. */
PG_FUNCTION_INFO_V1(gdpr_setting);
Datum
gdpr_setting(PG_FUNCTION_ARGS)
{
	char	   *name = psprintf("crm_gdpr.%s", text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_TEXT_P(cstring_to_text(GetConfigOptionByName(name, NULL, false)));
}
