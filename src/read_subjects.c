/*
 * read_subjects.c — the registered tables a query reads, and their records.
 *
 * At ExecutorStart the range table gives the registered tables read (SELECT
 * privilege checked) with their columns (for UPDATE/DELETE ... RETURNING,
 * the columns returned).  While the query runs, read_count.c counts the
 * rows its scans read from each and collects their subject keys
 * (read_subject_set.c): the subjects of a read are those of the rows it
 * read, whatever its conditions look like.  At its end (or when it fails
 * after reading rows) each table read is one record.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "optimizer/optimizer.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "read_hook.h"
#include "settings.h"

/*
 * The columns UPDATE or DELETE ... RETURNING returns of result relation rti,
 * or NULL (INSERT ... RETURNING gives back what it was given).
 */
static Bitmapset *
returned_columns(PlannedStmt *stmt, Index rti)
{
	ModifyTable *mt = (ModifyTable *) stmt->planTree;
	Bitmapset  *cols = NULL;
	ListCell   *rel,
			   *ret;

	if (stmt->commandType == CMD_INSERT || mt == NULL || !IsA(mt, ModifyTable) || mt->returningLists == NIL)
		return NULL;
	forboth(rel, mt->resultRelations, ret, mt->returningLists)
		if (lfirst_int(rel) == rti)
			pull_varattnos(lfirst(ret), rti, &cols);
	return cols;
}

/*
 * The QueryReads of a query that reads one or two registered tables is the
 * backend's spare, unless a query running already has it (a nested one):
 * a read by key then allocates none (some 100 instructions a read, the
 * 900 bytes often needing a new block of the query's memory).  It is free
 * again when the query's memory goes, at its end or abort, after the read
 * hook's own callback (callbacks run last registered first).
 */
#define SPARE_RELS 2
static QueryReads *spare = NULL;
static bool spare_in_use = false;
static MemoryContextCallback spare_freed;

static void
release_spare(void *arg)
{
	spare_in_use = false;
}

static QueryReads *
new_reads(EState *estate, int nrtes)
{
	QueryReads *reads;

	if (nrtes <= SPARE_RELS && !spare_in_use)
	{
		if (spare == NULL)
			spare = MemoryContextAlloc(TopMemoryContext, offsetof(QueryReads, rels) + sizeof(ReadRel) * SPARE_RELS);
		reads = spare;
		spare_in_use = true;
		spare_freed.func = release_spare;
		spare_freed.arg = NULL;
		MemoryContextRegisterResetCallback(estate->es_query_cxt, &spare_freed);
	}
	else
		reads = MemoryContextAlloc(estate->es_query_cxt, offsetof(QueryReads, rels) + sizeof(ReadRel) * nrtes);
	/* Not zeroed: a ReadRel is 600 bytes, most of them for its columns and subjects. */
	memset(reads, 0, offsetof(QueryReads, rels));
	return reads;
}

/* The registered tables a query reads, without their subjects yet. */
static QueryReads *
registered_tables_read(QueryDesc *query)
{
	PlannedStmt *stmt = query->plannedstmt;
	QueryReads *reads = NULL;
	int			rti = 0;
	int			passes_on = -1; /* whether a condition passes values on: asked once, when needed */
	ListCell   *lc;

	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		const RelInfo *info;
		ReadRel    *r;

		Bitmapset  *returned = NULL;
		bool		write_scan;

		rti++;
		if (rte->rtekind != RTE_RELATION || !(rte_required_perms(stmt, rte) & ACL_SELECT))
			continue;
		/*
		 * The write is logged by the write trigger; what it returns is a
		 * read, and so are the rows of its own scan that a condition passing
		 * values on examined (read_count.c): a read kept apart, recorded only
		 * when it has rows.
		 */
		write_scan = query->operation != CMD_SELECT && list_member_int(stmt->resultRelations, rti) &&
			(returned = returned_columns(stmt, rti)) == NULL;
		info = crm_gdpr_rel_info(rte->relid);
		if (info == NULL || !info->registered)
			continue;
		if (write_scan && passes_on < 0)
			passes_on = crm_gdpr_plan_passes_values_on(query->planstate);
		if (write_scan && !passes_on)
			continue;
		if (reads == NULL)
			reads = new_reads(query->estate, list_length(stmt->rtable));
		r = &reads->rels[reads->nrels++];
		r->relid = rte->relid;
		r->registered_as = info->registered_as;
		r->rti = rti;
		r->rows = 0;
		r->failing_rows = 0;
		r->failing = NULL;
		r->returning = returned != NULL;
		r->write_scan = write_scan;
		/* A standby's record names the table (log_record.c): named now, a failed read's too. */
		r->table_name = RecoveryInProgress() ?
			MemoryContextStrdup(query->estate->es_query_cxt, crm_gdpr_qualified_relname(rte->relid)) : NULL;
		crm_gdpr_subject_set_init(&r->subjects, query->estate->es_query_cxt);
		crm_gdpr_cached_column_list(rte->relid, returned ? returned : rte_selected_cols(stmt, rte), r->columns);
	}
	return reads;
}

/*
 * One record per registered table read, with the rows read from it and
 * their subjects; "subjects_truncated" when not all of them are named.
 * Runs at ExecutorEnd, or while a failed query's memory is freed.
 */
void
crm_gdpr_record_query(QueryReads *reads, const char *detail)
{
	reads->recorded = true;
	for (int i = 0; i < reads->nrels; i++)
	{
		ReadRel    *r = &reads->rels[i];
		const char *few[8];
		const char **subjects;
		int			n;
		char		with_truncated[160];

		if (r->write_scan && r->rows == 0)
			continue;			/* only written: the write trigger's record */
		subjects = r->subjects.count <= lengthof(few) ? few : palloc(sizeof(char *) * r->subjects.count);
		n = crm_gdpr_subject_set_texts(&r->subjects, subjects);

		if (r->subjects.truncated)
		{
			/* {"subjects_truncated": true}, or the detail given with it added */
			snprintf(with_truncated, sizeof(with_truncated), "%.*s%s\"subjects_truncated\": true}",
					 detail ? (int) strlen(detail) - 1 : 1, detail ? detail : "{", detail ? ", " : "");
		}
		crm_gdpr_record_read_as(NameStr(reads->role), NameStr(reads->session_role), "SELECT", r->relid,
								r->table_name, r->columns, r->rows, n, subjects, r->subjects.truncated ? with_truncated : detail);
		if (subjects != few)
			pfree(subjects);
	}
}

/*
 * The registered tables a query reads, or NULL when it reads none; the rows
 * read and their subjects are counted as they come (read_count.c).
 */
QueryReads *
crm_gdpr_find_reads(QueryDesc *query)
{
	QueryReads *reads = registered_tables_read(query);

	if (reads == NULL)
		return NULL;
	reads->query = query;
	reads->estate = query->estate;
	/*
	 * Taken now: a read that fails is recorded when no catalog can be read.
	 * Copied whole: crm_gdpr_role_name() gives a NameData's name, padded.
	 */
	memcpy(&reads->role, crm_gdpr_role_name(GetUserId(), 0), NAMEDATALEN);
	memcpy(&reads->session_role, crm_gdpr_role_name(GetSessionUserId(), 1), NAMEDATALEN);
	if (crm_gdpr_max_rows_per_query > 0 && !crm_gdpr_is_admin(GetUserId()))
		reads->limit = crm_gdpr_max_rows_per_query;
	return reads;
}
