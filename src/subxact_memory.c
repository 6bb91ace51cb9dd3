/*
 * subxact_memory.c — a released savepoint that wrote a registered table
 * leaves no memory behind.
 *
 * The log triggers read transition tables, and PostgreSQL keeps those (their
 * tuplestores, its per-table trigger state) in the subtransaction's
 * CurTransactionContext.  It frees them at the end of the statement, but an
 * AllocSet that was ever allocated in no longer counts as "empty", and a
 * subtransaction that commits keeps a context that is not empty until the
 * whole transaction ends (AtSubCommit_Memory): 8 kB per released savepoint,
 * 327 MB for an import of 40,000 rows each in a savepoint (issue 24.1).
 * When such a context holds nothing any more (one block, every chunk free,
 * no child, no reset callback), resetting it changes nothing but that mark,
 * and PostgreSQL then drops it as it does for a savepoint that wrote nothing.
 */
#include "postgres.h"

#include "nodes/memnodes.h"
#include "utils/memutils.h"

#include "access_log.h"

/* What an AllocSet of the default sizes holds when every chunk is free. */
static Size
empty_used(void)
{
	static Size used = 0;

	if (used == 0)
	{
		MemoryContext probe = AllocSetContextCreate(TopMemoryContext, "crm_gdpr probe", ALLOCSET_DEFAULT_SIZES);
		MemoryContextCounters c = {0};

		pfree(MemoryContextAlloc(probe, 64));
		probe->methods->stats(probe, NULL, NULL, &c, false);
		used = c.totalspace - c.freespace;
		MemoryContextDelete(probe);
	}
	return used;
}

/* Called when a subtransaction commits, with its CurTransactionContext still current. */
void
crm_gdpr_release_empty_subxact_memory(void)
{
	MemoryContext cxt = CurTransactionContext;
	MemoryContextCounters c = {0};

	if (cxt == NULL || cxt == TopTransactionContext || !IsA(cxt, AllocSetContext) || cxt->isReset ||
		cxt->firstchild != NULL || cxt->reset_cbs != NULL)
		return;
	cxt->methods->stats(cxt, NULL, NULL, &c, false);
	if (c.nblocks == 1 && c.totalspace - c.freespace == empty_used())
		MemoryContextReset(cxt);
}
