/*
 * owner_plans.c — the kept plans of the statements run as a table's owner.
 *
 * gdpr._owner_query_kept() runs a statement as gdpr._owner_query() does
 * (owner_context.c) but keeps its plan for the session, keyed by the table
 * and the statement's text: the export reads each table of a subject's tree
 * with the same statement, the subject's key passed as $1, and parsing and
 * planning it again for every subject cost as much as running it.  The
 * plans are PostgreSQL's plan cache entries (SPI_keepplan): a change of a
 * table, an index or a policy they depend on makes them planned again, and
 * the executor checks the current user's privileges at every run, so a plan
 * is never run with rights it was made with.  Only callers whose text does
 * not change with the subject use it; at most MAX_KEPT_PLANS are kept, all
 * dropped when one more is needed (a registry of thousands of tables).
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "crm_gdpr.h"

#define MAX_KEPT_PLANS 256

typedef struct KeptPlanKey
{
	Oid			relid;
	uint32		hash;			/* of the statement's text */
} KeptPlanKey;

typedef struct KeptPlan
{
	KeptPlanKey key;
	char	   *query;			/* the text, to tell two texts of one hash apart */
	Oid		   *types;
	int			ntypes;
	SPIPlanPtr	plan;
} KeptPlan;

static HTAB *kept_plans = NULL;
static MemoryContext kept_plans_cxt = NULL;

/* Drop every kept plan (the table is full). */
static void
forget_all(void)
{
	HASH_SEQ_STATUS seq;
	KeptPlan   *e;

	hash_seq_init(&seq, kept_plans);
	while ((e = hash_seq_search(&seq)) != NULL)
		SPI_freeplan(e->plan);
	hash_destroy(kept_plans);
	MemoryContextReset(kept_plans_cxt);
	kept_plans = NULL;
}

static void
ensure_table(void)
{
	HASHCTL		ctl;

	if (kept_plans != NULL)
		return;
	if (kept_plans_cxt == NULL)
		kept_plans_cxt = AllocSetContextCreate(CacheMemoryContext, "crm_gdpr kept owner plans",
											   ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(KeptPlanKey);
	ctl.entrysize = sizeof(KeptPlan);
	ctl.hcxt = kept_plans_cxt;
	kept_plans = hash_create("crm_gdpr kept owner plans", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * The kept plan of query on relid, prepared in the caller's SPI connection
 * the first time (its parameters' types inferred from its text when
 * has_params); *types and *ntypes are the parameters' types.  NULL when it
 * would have to drop plans while one of them runs (in_use: a kept plan's
 * statement led to this one): the caller runs the statement unkept.
 */
SPIPlanPtr
crm_gdpr_kept_owner_plan(Oid relid, const char *query, bool has_params, bool in_use,
						 Oid **types, int *ntypes)
{
	KeptPlanKey key;
	KeptPlan   *e;
	SPIPlanPtr	plan;
	Oid		   *t = NULL;
	int			n = 0;
	bool		found;

	ensure_table();
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.hash = hash_bytes((const unsigned char *) query, strlen(query));
	e = hash_search(kept_plans, &key, HASH_FIND, NULL);
	if (e != NULL && strcmp(e->query, query) == 0)
	{
		*types = e->types;
		*ntypes = e->ntypes;
		return e->plan;
	}

	if (in_use && (e != NULL || hash_get_num_entries(kept_plans) >= MAX_KEPT_PLANS))
		return NULL;			/* a plan dropped now might be the one running */
	/* Prepared before anything is entered: an error leaves the table as it was. */
	if (has_params)
		crm_gdpr_infer_param_types(query, &t, &n);
	plan = SPI_prepare(query, n, t);
	if (plan == NULL)
		elog(ERROR, "crm_gdpr: preparing a statement on %u failed: %s", relid,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "crm_gdpr: SPI_keepplan failed");

	if (e == NULL && hash_get_num_entries(kept_plans) >= MAX_KEPT_PLANS)
		forget_all(), ensure_table();
	e = hash_search(kept_plans, &key, HASH_ENTER, &found);
	if (found)
	{
		/* another text of the same hash: replaced */
		SPI_freeplan(e->plan);
		pfree(e->query);
		pfree(e->types);
	}
	e->query = MemoryContextStrdup(kept_plans_cxt, query);
	e->ntypes = n;
	e->types = MemoryContextAlloc(kept_plans_cxt, sizeof(Oid) * Max(n, 1));
	if (n > 0)
		memcpy(e->types, t, sizeof(Oid) * n);
	e->plan = plan;
	*types = e->types;
	*ntypes = n;
	return plan;
}
