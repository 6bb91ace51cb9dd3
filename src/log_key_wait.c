/*
 * log_key_wait.c — the access log waits for its key; the CRM does not.
 *
 * Since 0.3 a write stores its subjects' ids in the journal and the log
 * writer computes their keyed pseudonyms, MACs and seals when it moves them
 * (issue 24.5): a missing or unreadable key file (deleted, a wrong mode, a
 * reload naming a file that is not there) no longer makes a single write to
 * a registered table fail.  The log writer then waits: it moves nothing
 * (reads stay in the queue, writes in the journal, which grows), says so in
 * the server log (a WARNING at most once a minute) and in
 * gdpr.access_log_status (key_problem, journal_oldest), and catches up as
 * soon as the key can be read again.  Without any key configured
 * (crm_gdpr.key_file = '') there is nothing to wait for: the log uses its
 * unkeyed references, as documented.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "access_log.h"

#define WARNING_INTERVAL_MS (60 * 1000L)

/*
 * Why the current key cannot be used now, or NULL when it can (or none is
 * configured).  Loading the keys raises an error when a file is refused: it
 * is caught in a subtransaction of its own.  In a transaction.
 */
char *
crm_gdpr_log_key_problem(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile problem = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		const unsigned char *fps[1];

		(void) crm_gdpr_key_fingerprints(fps, 1);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		problem = edata->message;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return problem;
}

/*
 * The log writer, before it moves anything: false while the key cannot be
 * used, with a WARNING at most once a minute (and a LOG line when the key
 * is back).
 */
bool
crm_gdpr_log_key_ready(void)
{
	static TimestampTz warned_at = 0;
	static bool waiting = false;
	char	   *problem = crm_gdpr_log_key_problem();
	TimestampTz now = GetCurrentTimestamp();

	if (problem == NULL)
	{
		if (waiting)
			ereport(LOG, (errmsg("crm_gdpr log writer: the master key can be read again: the access log catches up")));
		waiting = false;
		warned_at = 0;
		return true;
	}
	if (!waiting || TimestampDifferenceExceeds(warned_at, now, WARNING_INTERVAL_MS))
	{
		ereport(WARNING,
				(errmsg("crm_gdpr log writer: the access log waits for its key: %s", problem),
				 errdetail("Writes to registered tables go on and wait in gdpr.access_log_journal; reads wait in the queue (dropped and counted when it is full)."),
				 errhint("Restore the key file named by crm_gdpr.key_file (owned by the server's user, mode 0600 or 0400): the log writer catches up by itself.")));
		warned_at = now;
	}
	waiting = true;
	return false;
}

/* gdpr._log_key_problem(): for gdpr.access_log_status. */
PG_FUNCTION_INFO_V1(gdpr_log_key_problem);
Datum
gdpr_log_key_problem(PG_FUNCTION_ARGS)
{
	char	   *problem = crm_gdpr_log_key_problem();

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}
