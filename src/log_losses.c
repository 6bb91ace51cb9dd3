/*
 * log_losses.c — reads taken from the queue are counted when they are in.
 *
 * The taker frees the queue's slots as soon as it has copied them (readers
 * must not wait for an INSERT), but the rows are in the log only when the
 * taking transaction commits.  So `written` grows at commit; when the round
 * fails instead (a full disk, an error in a row), its records are lost: they
 * are counted here, reported in the server log, and recorded in
 * gdpr.access_log_losses by the next flush of this process
 * (gdpr._log_note_losses(), which reads them with gdpr._log_lost_taken()).
 * Issue 24.3: a failed round of 2,464 reads had been counted as written.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "port/atomics.h"

#include "access_log.h"
#include "log_queue.h"

/*
 * What this transaction took, by subtransaction: a savepoint rolled back over
 * a take (a manual flush) loses those records as well.  Subtransaction ids
 * grow: the takes at or above an aborted one's id were made inside it.
 */
#define MAX_TAKES 64
static struct
{
	SubTransactionId subid;
	int64		n;
}			takes[MAX_TAKES];
static int	ntakes = 0;
static int64 lost_unrecorded = 0;	/* taken by failed rounds, not yet in the table */
static int64 lost_recording = 0;	/* of those, what this transaction records */
static bool callback_registered = false;

static int64
taken_since(SubTransactionId subid)
{
	int64		n = 0;

	while (ntakes > 0 && takes[ntakes - 1].subid >= subid)
		n += takes[--ntakes].n;
	return n;
}

static void
at_end_of_xact(XactEvent event, void *arg)
{
	int64		taken;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	taken = taken_since(InvalidSubTransactionId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (taken > 0 && crm_gdpr_queue != NULL)
			pg_atomic_fetch_add_u64(&crm_gdpr_queue->written, taken);
		lost_unrecorded -= lost_recording;
	}
	else
	{
		if (taken > 0)
			ereport(LOG,
					(errmsg("crm_gdpr: %lld queued reads were lost: the transaction that took them from the queue failed",
							(long long) taken),
					 errhint("They are recorded in gdpr.access_log_losses by the next flush.")));
		lost_unrecorded += taken;
	}
	lost_recording = 0;
}

static void
at_end_of_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		lost_unrecorded += taken_since(mySubid);
}

static void
register_loss_callbacks(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(at_end_of_xact, NULL);
		RegisterSubXactCallback(at_end_of_subxact, NULL);
		callback_registered = true;
	}
}

/* n records were taken from the queue by the current (sub)transaction. */
void
crm_gdpr_log_taken(int n)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	register_loss_callbacks();
	if (ntakes > 0 && (takes[ntakes - 1].subid == subid || ntakes == MAX_TAKES))
		takes[ntakes - 1].n += n;
	else
	{
		takes[ntakes].subid = subid;
		takes[ntakes++].n = n;
	}
}

/* Reads this process lost in failed rounds and has not recorded yet. */
PG_FUNCTION_INFO_V1(gdpr_log_lost_taken);
Datum
gdpr_log_lost_taken(PG_FUNCTION_ARGS)
{
	register_loss_callbacks();
	lost_recording = lost_unrecorded;
	PG_RETURN_INT64(lost_recording);
}
