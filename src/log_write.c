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
 * crm_gdpr.log_subjects_max of them.  The transaction folds its statements'
 * records and writes them into the journal (log_write_fold.c).
 *
 * Trigger argument, of the INSERT trigger only (the others find it there):
 * the subject column of the table ('' when the subject is reached through
 * several tables: the registry's SQL then finds it).  The
 * read hook (read_hook.c) recognises registered tables by these triggers.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "access/xact.h"
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
#include "utils/inval.h"
#include "utils/timestamp.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "access_log.h"
#include "crm_gdpr.h"
#include "settings.h"

static void forget_tables(Datum arg, Oid relid);

void
crm_gdpr_log_write_init(void)
{
	CacheRegisterRelcacheCallback(forget_tables, (Datum) 0);
	crm_gdpr_write_fold_init();
}

/*
 * What one statement did, gathered from its transition tables.  Most CRM
 * statements touch one subject: the first few are kept inline, a hash table
 * is made only past them.
 */
#define INLINE_SUBJECTS 8

typedef struct SubjectEntry
{
	char		id[NAMEDATALEN];
} SubjectEntry;

typedef struct WriteSummary
{
	int64		rows;
	Bitmapset  *columns;		/* attribute numbers */
	int			ninline;
	SubjectEntry inline_ids[INLINE_SUBJECTS];
	HTAB	   *subjects;		/* the rest, up to the maximum, or NULL */
	bool		overflow;		/* more subjects than that */
} WriteSummary;

/*
 * What a log trigger needs of its table, statement after statement: the
 * table's quoted name, its subject column and that column's output function.
 * Per trigger (0.2's triggers each have the subject column as argument),
 * forgotten at any change of a table, as is the journal's oid.
 */
#define TABLE_CACHE_SIZE 32

typedef struct LoggedTable
{
	Oid			trigger;
	Oid			relid;
	char	   *name;			/* schema.table, quoted; in TopMemoryContext */
	int			subject_attnum; /* 0: reached through other tables; -1: none */
	Oid			subject_type;
	Oid			typoutput;
	/*
	 * Slots to read the transition tables, made once: a slot made per
	 * statement cost more than the reading.  Over a copy of the table's row
	 * type, which no resource owner pins, so they outlive transactions.
	 */
	TupleDesc	desc;
	TupleTableSlot *slot;
	TupleTableSlot *old_slot;
	/* The last statement's columns and their names, joined: most repeat. */
	Bitmapset  *columns;
	char	   *joined;
	/* The columns not dropped: 0-based, and as attribute numbers. */
	int		   *live;
	int			nlive;
	Bitmapset  *live_set;
} LoggedTable;

static LoggedTable tables[TABLE_CACHE_SIZE];
static int	n_tables = 0;
static bool tables_stale = false;

/*
 * A change of one table (a rename) forgets what is cached when that table
 * is cached; a reset of every relation forgets all.  Freed at the next
 * lookup, not here: a trigger may be using an entry.
 */
static void
forget_tables(Datum arg, Oid relid)
{
	for (int i = 0; i < n_tables && !tables_stale; i++)
		if (!OidIsValid(relid) || tables[i].relid == relid)
			tables_stale = true;
}

static void
forget_table(LoggedTable *t)
{
	pfree(t->name);
	bms_free(t->columns);
	if (t->joined)
		pfree(t->joined);
	pfree(t->live);
	bms_free(t->live_set);
	ExecDropSingleTupleTableSlot(t->slot);
	ExecDropSingleTupleTableSlot(t->old_slot);
	FreeTupleDesc(t->desc);
}

static LoggedTable *
logged_table(TriggerData *td)
{
	Relation	rel = td->tg_relation;
	LoggedTable *t;
	const char *subject_column;
	bool		varlena;
	MemoryContext old;

	if (tables_stale || n_tables == TABLE_CACHE_SIZE)
	{
		for (int i = 0; i < n_tables; i++)
			forget_table(&tables[i]);
		n_tables = 0;
		tables_stale = false;
	}
	for (int i = 0; i < n_tables; i++)
		if (tables[i].trigger == td->tg_trigger->tgoid)
			return &tables[i];
	/*
	 * The INSERT trigger's argument (the others' too, as 0.2 made them), on
	 * this table or on the registered table it belongs to.
	 */
	subject_column = td->tg_trigger->tgnargs > 0 ? td->tg_trigger->tgargs[0] : crm_gdpr_registered_subject_column(rel);
	if (subject_column == NULL)
		subject_column = "";
	t = &tables[n_tables];
	t->name = MemoryContextStrdup(TopMemoryContext, crm_gdpr_qualified_relname(RelationGetRelid(rel)));
	t->subject_attnum = subject_column[0] ? SPI_fnumber(RelationGetDescr(rel), subject_column) : 0;
	if (subject_column[0] && t->subject_attnum <= 0)
		t->subject_attnum = -1; /* gone: the rows are counted, no one is named */
	t->typoutput = InvalidOid;
	t->subject_type = InvalidOid;
	if (t->subject_attnum > 0)
	{
		t->subject_type = TupleDescAttr(RelationGetDescr(rel), t->subject_attnum - 1)->atttypid;
		getTypeOutputInfo(t->subject_type, &t->typoutput, &varlena);
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	/* With the missing values of columns added since a row was written: a copy without them reads NULL. */
	t->desc = CreateTupleDescCopyConstr(RelationGetDescr(rel));
	t->slot = MakeSingleTupleTableSlot(t->desc, &TTSOpsMinimalTuple);
	t->old_slot = MakeSingleTupleTableSlot(t->desc, &TTSOpsMinimalTuple);
	t->columns = NULL;
	t->joined = NULL;
	t->live = palloc(sizeof(int) * Max(t->desc->natts, 1));
	t->nlive = 0;
	t->live_set = NULL;
	for (int i = 0; i < t->desc->natts; i++)
		if (!TupleDescAttr(t->desc, i)->attisdropped)
		{
			t->live[t->nlive++] = i;
			t->live_set = bms_add_member(t->live_set, i + 1);
		}
	MemoryContextSwitchTo(old);
	t->trigger = td->tg_trigger->tgoid;
	t->relid = RelationGetRelid(rel);
	n_tables++;
	return t;
}

static long
subject_count(WriteSummary *sum)
{
	return sum->ninline + (sum->subjects ? hash_get_num_entries(sum->subjects) : 0);
}

static void
add_written_subject(WriteSummary *sum, char *id)
{
	bool		found;

	if (strlen(id) >= NAMEDATALEN)
		id[NAMEDATALEN - 1] = '\0';
	for (int i = 0; i < sum->ninline; i++)
		if (strcmp(sum->inline_ids[i].id, id) == 0)
			return;
	if (sum->subjects && hash_search(sum->subjects, id, HASH_FIND, NULL) != NULL)
		return;
	if (subject_count(sum) >= crm_gdpr_log_subjects_max)
	{
		sum->overflow = true;
		return;
	}
	if (sum->ninline < INLINE_SUBJECTS)
	{
		strlcpy(sum->inline_ids[sum->ninline++].id, id, NAMEDATALEN);
		return;
	}
	if (sum->subjects == NULL)
	{
		HASHCTL		hctl;

		memset(&hctl, 0, sizeof(hctl));
		hctl.keysize = NAMEDATALEN;
		hctl.entrysize = sizeof(SubjectEntry);
		hctl.hcxt = CurrentMemoryContext;
		sum->subjects = hash_create("crm_gdpr subjects", 64, &hctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	(void) hash_search(sum->subjects, id, HASH_ENTER, &found);
}

/*
 * A row's subject, as text.  Integer keys (most CRMs') are written straight
 * into a buffer: an output function call and its allocation per row cost as
 * much as the rest of reading the row.  The slot is deformed already.
 */
static void
note_written_subject(WriteSummary *sum, TupleTableSlot *slot, const LoggedTable *t)
{
	int			i = t->subject_attnum - 1;
	Datum		value = slot->tts_values[i];
	char		digits[MAXINT8LEN + 1];

	if (slot->tts_isnull[i] || sum->overflow)
		return;
	switch (t->subject_type)
	{
		case INT8OID:
			pg_lltoa(DatumGetInt64(value), digits);
			add_written_subject(sum, digits);
			break;
		case INT4OID:
			pg_ltoa(DatumGetInt32(value), digits);
			add_written_subject(sum, digits);
			break;
		default:
			add_written_subject(sum, OidOutputFunctionCall(t->typoutput, value));
	}
}

/* Whether column i differs between two deformed rows. */
static bool
same_value(TupleTableSlot *a, TupleTableSlot *b, Form_pg_attribute att, int i)
{
	if (a->tts_isnull[i] || b->tts_isnull[i])
		return a->tts_isnull[i] == b->tts_isnull[i];
	return datumIsEqual(a->tts_values[i], b->tts_values[i], att->attbyval, att->attlen);
}

/*
 * Whether an UPDATE can have changed only the columns it sets
 * (tg_updatedcols, with the generated columns PostgreSQL recomputes from
 * them).  Not when a BEFORE ROW trigger may have changed others, on the
 * table or on a child or partition reached through it; nor unless the
 * statement is known to write the table through one node (two UPDATEs of it
 * in WITH clauses share the transition tables, and tg_updatedcols holds the
 * last one's columns only).
 */
static bool
only_updated_columns(TriggerData *td)
{
	Relation	rel = td->tg_relation;

	return crm_gdpr_finishing == FINISHING_ONE && td->tg_updatedcols != NULL &&
		rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhassubclass &&
		(rel->trigdesc == NULL || !rel->trigdesc->trig_update_before_row);
}

/*
 * The columns a statement's rows are looked at for (0-based, in *cols, their
 * count returned) and how many of a row's columns must be deformed for them
 * and the subject (*deform).  A DELETE writes every column: none is looked
 * at, they are all in sum already.  Deforming a row costs as much as the
 * rest of reading it: an UPDATE of one column of a wide table deforms as
 * far as that column, not the whole row.
 */
static int
columns_to_read(TriggerData *td, LoggedTable *table, WriteSummary *sum, int *cols, int *deform)
{
	TupleDesc	desc = table->desc;
	const Bitmapset *updated = TRIGGER_FIRED_BY_UPDATE(td->tg_event) && only_updated_columns(td) ? td->tg_updatedcols : NULL;
	int			n = 0;
	int			m = -1;

	*deform = Max(table->subject_attnum, 0);
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		sum->columns = bms_add_members(sum->columns, table->live_set);
		return 0;
	}
	if (updated == NULL)
	{
		memcpy(cols, table->live, sizeof(int) * table->nlive);
		n = table->nlive;
	}
	else
		while ((m = bms_next_member(updated, m)) >= 0)
		{
			int			attnum = m + FirstLowInvalidHeapAttributeNumber;

			if (attnum > 0 && attnum <= desc->natts && !TupleDescAttr(desc, attnum - 1)->attisdropped)
				cols[n++] = attnum - 1;
		}
	if (n > 0)
		*deform = Max(*deform, cols[n - 1] + 1);
	return n;
}

/*
 * Read the transition tables of one statement into sum.  Each row is
 * deformed once, as far as needed; a column already known to be written is
 * not looked at again.
 */
static void
summarise(TriggerData *td, LoggedTable *table, WriteSummary *sum)
{
	TupleDesc	desc = table->desc;
	bool		is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	Tuplestorestate *main_store = td->tg_newtable ? td->tg_newtable : td->tg_oldtable;
	TupleTableSlot *slot = table->slot;
	TupleTableSlot *old_slot = table->old_slot;
	int		   *cols = palloc(sizeof(int) * Max(desc->natts, 1));
	int			ncols;
	int			deform;
	int			main_ptr;
	int			old_ptr = 0;

	ncols = columns_to_read(td, table, sum, cols, &deform);
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
		if (deform > 0)
			slot_getsomeattrs(slot, deform);
		if (is_update && deform > 0)
			slot_getsomeattrs(old_slot, deform);
		for (int k = 0; k < ncols; k++)
		{
			int			i = cols[k];

			if (is_update ? same_value(slot, old_slot, TupleDescAttr(desc, i), i) : slot->tts_isnull[i])
				continue;
			sum->columns = bms_add_member(sum->columns, i + 1);
			/* Written: not looked at again. */
			cols[k--] = cols[--ncols];
		}
		if (table->subject_attnum > 0)
		{
			int			s = table->subject_attnum - 1;

			note_written_subject(sum, slot, table);
			/* The old row's subject, unless it is the new row's (most UPDATEs). */
			if (is_update && !same_value(slot, old_slot, TupleDescAttr(desc, s), s))
				note_written_subject(sum, old_slot, table);
		}
	}
	tuplestore_select_read_pointer(main_store, 0);
	if (is_update)
		tuplestore_select_read_pointer(td->tg_oldtable, 0);
	ExecClearTuple(slot);
	ExecClearTuple(old_slot);
	pfree(cols);
}

/* Subjects reached through several tables: the registry's SQL finds them. */
static void
summarise_far_subjects(TriggerData *td, WriteSummary *sum)
{
	Oid			registered = crm_gdpr_registered_as(RelationGetRelid(td->tg_relation));
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1] = {ObjectIdGetDatum(registered)};
	const char *source = td->tg_newtable ? "gdpr_new" : "gdpr_old";
	char	   *ids_sql;

	crm_gdpr_spi_check(SPI_register_trigger_data(td), SPI_OK_TD_REGISTER, "registering the transition tables");
	crm_gdpr_spi_check(SPI_execute_with_args(psprintf("SELECT gdpr._subject_ids_sql($1, '%s')", source),
											 1, argtypes, args, NULL, true, 1),
					   SPI_OK_SELECT, "building the query of a write's subjects");
	ids_sql = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	if (ids_sql == NULL)
		return;					/* the registry names no way to the subjects */
	/* Built as the extension's owner, run as the table's (owner_context.c). */
	crm_gdpr_spi_read_as_table_owner(registered, psprintf("%s LIMIT %d", ids_sql, crm_gdpr_log_subjects_max + 1),
									 "finding a write's subjects");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (id != NULL)
			add_written_subject(sum, id);
	}
}

/* --- to the transaction's fold (log_write_fold.c) ------------------------ */

/* The names of the columns written, joined; NULL for none. */
static const char *
joined_columns(LoggedTable *t, Bitmapset *columns)
{
	StringInfoData buf;
	int			attnum = -1;
	MemoryContext old;

	if (bms_is_empty(columns))
		return NULL;
	if (t->joined != NULL && bms_equal(columns, t->columns))
		return t->joined;
	old = MemoryContextSwitchTo(TopMemoryContext);
	initStringInfo(&buf);
	while ((attnum = bms_next_member(columns, attnum)) >= 0)
	{
		if (buf.len > 0)
			appendStringInfoChar(&buf, LOG_LIST_SEPARATOR);
		appendStringInfoString(&buf, NameStr(TupleDescAttr(t->desc, attnum - 1)->attname));
	}
	bms_free(t->columns);
	if (t->joined)
		pfree(t->joined);
	t->columns = bms_copy(columns);
	t->joined = buf.data;
	MemoryContextSwitchTo(old);
	return t->joined;
}

/* The subjects' ids as they are: the log writer pseudonymises them (issue 24.5). */
static const char **
subject_ids(WriteSummary *sum, int *n)
{
	const char **ids = palloc(sizeof(char *) * Max(subject_count(sum), 1));
	HASH_SEQ_STATUS seq;
	SubjectEntry *e;

	*n = 0;
	for (int i = 0; i < sum->ninline; i++)
		ids[(*n)++] = sum->inline_ids[i].id;
	if (sum->subjects)
	{
		hash_seq_init(&seq, sum->subjects);
		while ((e = hash_seq_search(&seq)) != NULL)
			ids[(*n)++] = e->id;
	}
	return ids;
}

/* Who, from where, why (as the read hook sees them), and what: to the fold. */
static void
fold_statement(Relation rel, LoggedTable *table, const char *operation, WriteSummary *sum, const char *role,
			   bool truncate)
{
	LogRecord	session;
	WriteStatement st;

	crm_gdpr_fill_log_record(&session, operation, RelationGetRelid(rel));
	st.relid = RelationGetRelid(rel);
	st.query_id = session.query_id;
	st.strings[WS_ROLE] = role;
	st.strings[WS_SESSION_ROLE] = session.session_role;
	st.strings[WS_APPNAME] = session.appname;
	st.strings[WS_CLIENT] = session.client;
	st.strings[WS_OPERATION] = operation;
	st.strings[WS_TABLE_NAME] = table->name;
	st.strings[WS_COLUMNS] = joined_columns(table, sum->columns);
	st.strings[WS_PURPOSE] = session.purpose;
	st.truncate = truncate;
	st.rows = sum->rows;
	st.counted = !truncate && !sum->overflow;
	st.ids = subject_ids(sum, &st.nids);
	crm_gdpr_write_fold_add(&st);
}

/* gdpr.flush_access_log(): this transaction's own writes go to the journal now. */
PG_FUNCTION_INFO_V1(gdpr_log_journal_pending);
Datum
gdpr_log_journal_pending(PG_FUNCTION_ARGS)
{
	crm_gdpr_write_fold_flush();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(gdpr_log_write);
Datum
gdpr_log_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	LoggedTable *table;
	WriteSummary sum;
	const char *operation;
	bool		truncate;
	const char *role;
	OwnerContext ctx;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._log_write() must be an AFTER statement trigger")));
	/* Not "= {0}": the inline ids (half a kilobyte) are read only as far as ninline. */
	sum.rows = 0;
	sum.columns = NULL;
	sum.ninline = 0;
	sum.subjects = NULL;
	sum.overflow = false;
	table = logged_table(td);
	truncate = TRIGGER_FIRED_BY_TRUNCATE(td->tg_event);
	operation = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "INSERT" :
		TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE";
	if (!truncate && td->tg_newtable == NULL && td->tg_oldtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._log_write() needs the transition tables of %s", operation)));

	/* Restriction of processing (Art. 18, restriction.c) refuses first. */
	if (truncate || td->tg_oldtable != NULL)
		crm_gdpr_refuse_restricted_write(td, fcinfo->flinfo->fn_oid, "gdpr_old");
	/* Then the suppression list, on subject tables (suppression_gate.c). */
	if (!truncate && td->tg_newtable != NULL && table->subject_attnum > 0 &&
		!crm_gdpr_suppression_list_empty(fcinfo->flinfo->fn_oid))
		crm_gdpr_check_suppression(td, fcinfo->flinfo->fn_oid,
								   NameStr(TupleDescAttr(table->desc, table->subject_attnum - 1)->attname));
	if (!truncate)
	{
		summarise(td, table, &sum);
		if (sum.rows == 0)
			return PointerGetDatum(NULL);	/* nothing was written */
	}

	role = crm_gdpr_writer_name();
	if (!truncate && table->subject_attnum == 0 && crm_gdpr_log_subjects_max > 0)
	{
		crm_gdpr_enter_owner_context(fcinfo->flinfo->fn_oid, &ctx);
		crm_gdpr_spi_check(SPI_connect(), SPI_OK_CONNECT, "connecting to SPI");
		summarise_far_subjects(td, &sum);
		crm_gdpr_spi_check(SPI_finish(), SPI_OK_FINISH, "finishing with SPI");
		crm_gdpr_leave_owner_context(&ctx);
	}
	fold_statement(td->tg_relation, table, operation, &sum, role, truncate);
	return PointerGetDatum(NULL);
}
