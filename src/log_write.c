/*
 * log_write.c — log every write to a registered table, in the writing
 * transaction.
 *
 * gdpr._log_write() is an AFTER ... FOR EACH STATEMENT trigger (INSERT,
 * UPDATE and DELETE with their transition tables, and TRUNCATE), attached by
 * register_table (25_triggers.sql).  One log row per statement and table,
 * never one per changed row: the transition tables are read once to count the
 * rows, collect the columns written (for UPDATE, only those whose value
 * changed in some row) and the subjects touched, up to
 * crm_gdpr.log_subjects_max of them; the row is inserted through one saved
 * plan, as the extension's owner.
 *
 * Trigger arguments: the subject column of the table ('' when the subject is
 * reached through several tables: the registry's SQL then finds it).  The
 * read hook (read_hook.c) recognises registered tables by these triggers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "crm_gdpr.h"

static int	log_subjects_max = 100;
static SPIPlanPtr insert_plan = NULL;

void
crm_gdpr_log_write_init(void)
{
	DefineCustomIntVariable("crm_gdpr.log_subjects_max",
							"Subjects a log row names at most (the rest are counted as rows only).",
							NULL, &log_subjects_max, 100, 0, 10000, PGC_SUSET, 0, NULL, NULL, NULL);
}

/* What one statement did, gathered from its transition tables. */
typedef struct WriteSummary
{
	int64		rows;
	Bitmapset  *columns;		/* attribute numbers */
	HTAB	   *subjects;		/* distinct subject ids, up to the maximum */
	bool		overflow;		/* more subjects than that */
} WriteSummary;

typedef struct SubjectEntry
{
	char		id[NAMEDATALEN];
} SubjectEntry;

static void
note_subject(WriteSummary *sum, TupleTableSlot *slot, int attnum, Oid typoutput)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);
	char	   *id;
	bool		found;

	if (isnull || sum->overflow)
		return;
	id = OidOutputFunctionCall(typoutput, value);
	if (strlen(id) >= NAMEDATALEN)
		id[NAMEDATALEN - 1] = '\0';
	if (hash_get_num_entries(sum->subjects) >= log_subjects_max &&
		hash_search(sum->subjects, id, HASH_FIND, NULL) == NULL)
	{
		sum->overflow = true;
		return;
	}
	(void) hash_search(sum->subjects, id, HASH_ENTER, &found);
	pfree(id);
}

static bool
same_value(TupleTableSlot *a, TupleTableSlot *b, Form_pg_attribute att)
{
	bool		anull;
	bool		bnull;
	Datum		av = slot_getattr(a, att->attnum, &anull);
	Datum		bv = slot_getattr(b, att->attnum, &bnull);

	if (anull || bnull)
		return anull == bnull;
	return datumIsEqual(av, bv, att->attbyval, att->attlen);
}

/* Read the transition tables of one statement into sum. */
static void
summarise(TriggerData *td, int subject_attnum, WriteSummary *sum)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	bool		is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	Tuplestorestate *main_store = td->tg_newtable ? td->tg_newtable : td->tg_oldtable;
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	TupleTableSlot *old_slot = is_update ? MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple) : NULL;
	Oid			typoutput = InvalidOid;
	bool		varlena;
	int			main_ptr;
	int			old_ptr = 0;

	if (subject_attnum > 0)
		getTypeOutputInfo(TupleDescAttr(desc, subject_attnum - 1)->atttypid, &typoutput, &varlena);
	/* Other triggers read the same tuplestores: use read pointers of our own. */
	main_ptr = tuplestore_alloc_read_pointer(main_store, 0);
	tuplestore_select_read_pointer(main_store, main_ptr);
	tuplestore_rescan(main_store);
	if (is_update)
	{
		old_ptr = tuplestore_alloc_read_pointer(td->tg_oldtable, 0);
		tuplestore_select_read_pointer(td->tg_oldtable, old_ptr);
		tuplestore_rescan(td->tg_oldtable);
	}
	while (tuplestore_gettupleslot(main_store, true, false, slot))
	{
		if (is_update && !tuplestore_gettupleslot(td->tg_oldtable, true, false, old_slot))
			elog(ERROR, "the transition tables of an UPDATE differ in length");
		sum->rows++;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attisdropped || bms_is_member(att->attnum, sum->columns))
				continue;
			if (TRIGGER_FIRED_BY_DELETE(td->tg_event) ||
				(is_update ? !same_value(slot, old_slot, att) : !slot_attisnull(slot, att->attnum)))
				sum->columns = bms_add_member(sum->columns, att->attnum);
		}
		if (subject_attnum > 0)
		{
			note_subject(sum, slot, subject_attnum, typoutput);
			if (is_update)
				note_subject(sum, old_slot, subject_attnum, typoutput);
		}
	}
	tuplestore_select_read_pointer(main_store, 0);
	if (is_update)
		tuplestore_select_read_pointer(td->tg_oldtable, 0);
	ExecDropSingleTupleTableSlot(slot);
	if (old_slot)
		ExecDropSingleTupleTableSlot(old_slot);
}

/* Subjects reached through several tables: the registry's SQL finds them. */
static void
summarise_far_subjects(TriggerData *td, WriteSummary *sum)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(RelationGetRelid(td->tg_relation))};
	const char *source = td->tg_newtable ? "gdpr_new" : "gdpr_old";
	char	   *ids_sql;

	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition tables");
	SPI_execute_with_args(psprintf("SELECT gdpr._subject_ids_sql($1, '%s')", source),
						  1, argtypes, args, NULL, true, 1);
	ids_sql = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	SPI_execute(psprintf("%s LIMIT %d", ids_sql, log_subjects_max + 1), true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		found;

		if (id == NULL)
			continue;
		if (i >= (uint64) log_subjects_max)
		{
			sum->overflow = true;
			break;
		}
		if (strlen(id) >= NAMEDATALEN)
			id[NAMEDATALEN - 1] = '\0';
		(void) hash_search(sum->subjects, id, HASH_ENTER, &found);
	}
}

static Datum
column_names(Relation rel, Bitmapset *columns, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = bms_num_members(columns);
	Datum	   *names = palloc(sizeof(Datum) * Max(n, 1));
	int			k = 0;
	int			attnum = -1;

	*isnull = (n == 0);
	if (n == 0)
		return (Datum) 0;
	while ((attnum = bms_next_member(columns, attnum)) >= 0)
		names[k++] = NameGetDatum(&TupleDescAttr(desc, attnum - 1)->attname);
	return PointerGetDatum(construct_array(names, k, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
}

static Datum
subject_refs(WriteSummary *sum, bool *isnull)
{
	long		n = sum->subjects ? hash_get_num_entries(sum->subjects) : 0;
	Datum	   *refs = palloc(sizeof(Datum) * Max(n, 1));
	HASH_SEQ_STATUS seq;
	SubjectEntry *e;
	int			k = 0;

	*isnull = (n == 0);
	if (n == 0)
		return (Datum) 0;
	hash_seq_init(&seq, sum->subjects);
	while ((e = hash_seq_search(&seq)) != NULL)
		refs[k++] = PointerGetDatum(crm_gdpr_log_subject_ref(e->id, strlen(e->id)));
	return PointerGetDatum(construct_array(refs, k, TEXTOID, -1, false, TYPALIGN_INT));
}

static void
insert_log_row(Relation rel, const char *operation, WriteSummary *sum, const char *role, bool truncate)
{
	Oid			types[9] = {NAMEOID, TEXTOID, REGCLASSOID, TEXTOID, NAMEARRAYOID, TEXTARRAYOID,
	INT8OID, INT8OID, INT8OID};
	Datum		values[9];
	char		nulls[9];
	bool		isnull;
	int64		query_id = pgstat_get_my_query_id();
	NameData	role_name;

	memset(nulls, ' ', sizeof(nulls));
	namestrcpy(&role_name, role);
	values[0] = NameGetDatum(&role_name);
	values[1] = CStringGetTextDatum(operation);
	values[2] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[3] = CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															   RelationGetRelationName(rel)));
	values[4] = column_names(rel, sum->columns, &isnull);
	nulls[4] = isnull ? 'n' : ' ';
	values[5] = subject_refs(sum, &isnull);
	nulls[5] = isnull ? 'n' : ' ';
	values[6] = Int64GetDatum(sum->subjects ? hash_get_num_entries(sum->subjects) : 0);
	nulls[6] = (truncate || sum->overflow) ? 'n' : ' ';
	values[7] = Int64GetDatum(sum->rows);
	nulls[7] = truncate ? 'n' : ' ';
	values[8] = Int64GetDatum(query_id);
	nulls[8] = query_id == 0 ? 'n' : ' ';

	if (insert_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO gdpr.access_log (role_name, operation, tbl, table_name, "
									   "columns, subject_refs, subjects, row_count, query_id) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", 9, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the access log's insert: %s", SPI_result_code_string(SPI_result));
		insert_plan = plan;
	}
	if (SPI_execute_plan(insert_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write to the access log");
}

/*
 * Who writes: the current user, or inside a SECURITY DEFINER function (the
 * extension's erasure, an application's own) the role that called it; the
 * session user is recorded as well.
 */
static char *
writer_name(void)
{
	Oid			userid;
	int			sec_context;

	GetUserIdAndSecContext(&userid, &sec_context);
	if (sec_context & SECURITY_LOCAL_USERID_CHANGE)
		userid = GetOuterUserId();
	return GetUserNameFromId(userid, false);
}

PG_FUNCTION_INFO_V1(gdpr_log_write);
Datum
gdpr_log_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	WriteSummary sum = {0};
	const char *operation;
	const char *subject_column;
	bool		truncate;
	char	   *role;
	OwnerContext ctx;
	HASHCTL		hctl;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._log_write() must be an AFTER statement trigger")));
	trigger = td->tg_trigger;
	subject_column = trigger->tgnargs > 0 ? trigger->tgargs[0] : "";
	truncate = TRIGGER_FIRED_BY_TRUNCATE(td->tg_event);
	operation = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "INSERT" :
		TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE";
	if (!truncate && td->tg_newtable == NULL && td->tg_oldtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._log_write() needs the transition tables of %s", operation)));

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = NAMEDATALEN;
	hctl.entrysize = sizeof(SubjectEntry);
	hctl.hcxt = CurrentMemoryContext;
	sum.subjects = hash_create("crm_gdpr subjects", 64, &hctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	if (!truncate)
	{
		summarise(td, subject_column[0] ? SPI_fnumber(RelationGetDescr(td->tg_relation), subject_column) : 0,
				  &sum);
		if (sum.rows == 0)
			return PointerGetDatum(NULL);	/* nothing was written */
	}

	role = writer_name();
	crm_gdpr_enter_owner_context(fcinfo->flinfo->fn_oid, &ctx);
	SPI_connect();
	if (!truncate && subject_column[0] == '\0' && log_subjects_max > 0)
		summarise_far_subjects(td, &sum);
	insert_log_row(td->tg_relation, operation, &sum, role, truncate);
	SPI_finish();
	crm_gdpr_leave_owner_context(&ctx);
	return PointerGetDatum(NULL);
}

/* The role the extension's functions act for: see 80_access_log.sql. */
PG_FUNCTION_INFO_V1(gdpr_caller);
Datum
gdpr_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}
