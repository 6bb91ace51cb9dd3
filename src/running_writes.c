/*
 * running_writes.c — the UPDATE, DELETE, MERGE and upsert statements running
 * in this backend, and the record of one that fails.
 *
 * The restriction's policy (restriction_reads.c) refuses a restricted row in
 * an UPDATE, DELETE or MERGE rather than hide it: it asks here whether the
 * statement it filters for writes.  A write of a registered table that fails
 * is logged (its trigger never fires), naming the rows it failed on
 * (read_failing.c).  An entry goes with the statement's executor memory.
 */
#include "postgres.h"

#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "utils/memutils.h"

#include "access_log.h"
#include "read_hook.h"

/* A running UPDATE, DELETE, MERGE or upsert: its executor memory, and what a failure's record needs. */
typedef struct RunningWrite
{
	MemoryContext cxt;
	struct RunningWrite *next;
	MemoryContextCallback callback;
	/*
	 * A write of a registered table that fails is logged (its trigger never
	 * fires): its condition may have read rows, and an error raised by it
	 * names their values ("invalid input syntax for type integer: \"<e-mail>
	 * <phone>\"").  What the record needs, taken at the start: no catalog
	 * can be read while the statement's transaction aborts.
	 */
	Oid			relid;			/* the registered table written, or InvalidOid */
	bool		ended;			/* ExecutorEnd came: the statement did not fail */
	bool		upsert;			/* INSERT ... ON CONFLICT DO UPDATE: kept for its failure only */
	const char *operation;
	NameData	role;
	NameData	session_role;
	FailingWrite failing;		/* the rows it failed on (read_failing.c), when relid is valid */
} RunningWrite;

static RunningWrite *running_writes = NULL;

static void
write_memory_freed(void *arg)
{
	RunningWrite *w = (RunningWrite *) arg;

	for (RunningWrite **p = &running_writes; *p; p = &(*p)->next)
		if (*p == w)
		{
			*p = (*p)->next;
			break;
		}
	if (OidIsValid(w->relid) && !w->ended)
	{
		const char *few[4];
		const char **subjects = w->failing.subjects.count <= lengthof(few) ? few :
			palloc(sizeof(char *) * w->failing.subjects.count);
		int			n = crm_gdpr_subject_set_texts(&w->failing.subjects, subjects);

		crm_gdpr_record_read_as(NameStr(w->role), NameStr(w->session_role), w->operation, w->relid,
								NULL, "", w->failing.rows, n, subjects,
								w->failing.subjects.truncated ? "{\"failed\": true, \"subjects_truncated\": true}" :
								"{\"failed\": true}");
	}
}

void
crm_gdpr_note_running_write(QueryDesc *query)
{
	RunningWrite *w;
	List	   *results = query->plannedstmt->resultRelations;
	const RelInfo *info;

	bool		upsert = query->operation == CMD_INSERT && IsA(query->planstate, ModifyTableState) &&
		((ModifyTable *) query->planstate->plan)->onConflictAction == ONCONFLICT_UPDATE;

	if (query->operation != CMD_UPDATE && query->operation != CMD_DELETE && query->operation != CMD_MERGE && !upsert)
		return;
	w = MemoryContextAlloc(query->estate->es_query_cxt, sizeof(RunningWrite));
	w->cxt = query->estate->es_query_cxt;
	w->next = running_writes;
	w->callback.func = write_memory_freed;
	w->callback.arg = w;
	w->relid = InvalidOid;
	w->ended = false;
	w->upsert = upsert;
	if (results != NIL && crm_gdpr_reads_are_logged() &&
		(info = crm_gdpr_rel_info(exec_rt_fetch(linitial_int(results), query->estate)->relid)) != NULL &&
		info->registered)
	{
		w->relid = info->relid;
		w->operation = upsert ? "INSERT" : query->operation == CMD_UPDATE ? "UPDATE" :
			query->operation == CMD_DELETE ? "DELETE" : "MERGE";
		memcpy(&w->role, crm_gdpr_role_name(GetUserId(), 0), NAMEDATALEN);
		memcpy(&w->session_role, crm_gdpr_role_name(GetSessionUserId(), 1), NAMEDATALEN);
		crm_gdpr_failing_write_init(&w->failing, query);
	}
	running_writes = w;
	MemoryContextRegisterResetCallback(w->cxt, &w->callback);
}

/* The failing rows of the running write of a registered table with this executor memory, or NULL. */
FailingWrite *
crm_gdpr_failing_write_of(MemoryContext es_query_cxt)
{
	for (RunningWrite *w = running_writes; w; w = w->next)
		if (w->cxt == es_query_cxt)
			return OidIsValid(w->relid) ? &w->failing : NULL;
	return NULL;
}

/* The statement with this executor memory ended well: its write is logged by its trigger. */
void
crm_gdpr_note_write_ended(MemoryContext es_query_cxt)
{
	for (RunningWrite *w = running_writes; w; w = w->next)
		if (w->cxt == es_query_cxt)
			w->ended = true;
}

bool
crm_gdpr_query_writes(MemoryContext es_query_cxt)
{
	for (RunningWrite *w = running_writes; w; w = w->next)
		if (w->cxt == es_query_cxt)
			return !w->upsert;
	return false;
}
