/*
 * log_journal.c — the log writer's side of the journals of writes.
 *
 * Committed writes wait in the journals (log_journals.c): since 0.3 a row
 * holds the records a transaction wrote at once, packed (log_journal_pack.c),
 * each a statement or a fold of a transaction's identical statements
 * (log_write_fold.c); a row of 0.2 is one statement.
 * gdpr._log_journal_take() empties them all (truncated
 * or deleted: log_journals.c) and returns their rows folded (log_fold.c):
 * identical statements (same backend, roles, application, client,
 * operation, table, columns, query and purpose) become one row for up to
 * LOG_FOLD_MAX of them, with the union of their subjects' keys, in
 * order of their first time.  Done in SQL, the sorts and array functions
 * this takes cost the log writer more than the CRM's own statements cost the
 * CRM (doc/benchmarks.md).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "crm_gdpr.h"
#include "log_fold.h"

/* Every column, in table order (JournalColumn): the journal of 0.2 has fewer. */
#define TAKE_SQL "DELETE FROM gdpr.%s RETURNING *"
#define READ_SQL "SELECT * FROM gdpr.%s"
#define TRUNCATE_SQL "TRUNCATE gdpr.%s"

/* The identity of a statement: what two folded statements share. */
static const int identity_columns[] = {J_ROLE, J_SESSION_ROLE, J_APPNAME, J_CLIENT, J_PID, J_OPERATION, J_TBL,
J_COLUMNS, J_QUERY_ID, J_PURPOSE};

/*
 * Rows come to a DestReceiver and are folded as they come (log_fold.c): the
 * journal of a busy second is never held in memory, only one row per fold.
 */
#define JOURNAL_MEMO 4

typedef struct JournalReceiver
{
	DestReceiver pub;
	LogFoldTable *folds;		/* each fold's first row is its journal row's copy */
	StringInfoData identity;	/* scratch */
	TupleDesc	desc;			/* of the journal's rows */
	bool		keys;			/* subjects as keys (0.3), not references (0.2) */
	MemoryContext cxt;			/* the caller's: SPI frees its own */
	MemoryContext row_cxt;		/* a row's unpacking and pseudonyms, reset at each row */
	/*
	 * The folds of the last identities of packed records, most recent first
	 * (fold_packed_records): a backend's next transaction writes the same
	 * statements, found here without building and hashing their identity.
	 */
	int			memo[JOURNAL_MEMO];
	int			nmemo;
} JournalReceiver;

static text *
text_at(TupleTableSlot *slot, int column)
{
	return slot->tts_isnull[column] ? NULL : DatumGetTextPP(slot->tts_values[column]);
}

/* The identity's bytes: a null mark or the value, column after column. */
static void
journal_identity(TupleTableSlot *slot, StringInfo buf)
{
	resetStringInfo(buf);
	for (int i = 0; i < lengthof(identity_columns); i++)
	{
		int			c = identity_columns[i];
		Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, c);

		appendStringInfoChar(buf, slot->tts_isnull[c] ? 'n' : 'v');
		if (slot->tts_isnull[c])
			continue;
		if (att->attbyval)
			appendBinaryStringInfo(buf, (char *) &slot->tts_values[c], sizeof(Datum));
		else
		{
			text	   *t = text_at(slot, c);
			int32		len = VARSIZE_ANY_EXHDR(t);

			appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
			appendBinaryStringInfo(buf, VARDATA_ANY(t), len);
		}
	}
}

/*
 * Subjects' ids into a fold, each once, computed all at once (log_refs.c:
 * cached, prefetched): as their keys, 8 bytes each (0.3), or as their
 * references (the take function's declaration of 0.2).
 */
static void
add_journal_ids(LogFoldTable *t, LogFold *f, const char **ids, int n, bool keys)
{
	Datum	   *refs;

	if (keys)
	{
		int64	   *k = palloc(sizeof(int64) * n);

		crm_gdpr_log_subject_keys(ids, n, k);
		for (int i = 0; i < n; i++)
			log_fold_add_subject(t, f, (const char *) &k[i], sizeof(int64));
		return;
	}
	refs = palloc(sizeof(Datum) * n);
	crm_gdpr_log_subject_refs(ids, n, refs);
	for (int i = 0; i < n; i++)
	{
		text	   *ref = DatumGetTextPP(refs[i]);

		log_fold_add_subject(t, f, VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref));
	}
}

/* A reference (a journal row of 0.2) into a fold: as its key (0.3), or as it is. */
static void
add_journal_ref(LogFoldTable *t, LogFold *f, const char *ref, bool keys)
{
	int64		key;

	if (!keys)
	{
		log_fold_add_subject(t, f, ref, strlen(ref));
		return;
	}
	if (!crm_gdpr_log_ref_key(ref, strlen(ref), &key))
		key = crm_gdpr_log_subject_key(ref, strlen(ref));	/* no token: never written so */
	log_fold_add_subject(t, f, (const char *) &key, sizeof(key));
}

/*
 * A journal row's subjects into its fold, each once.  Since 0.3 the writing
 * transaction stores its subjects' ids (marked LOG_IDS_MARK) and their keyed
 * hashes are computed here: the key is the log writer's business, not the
 * writer's of the CRM.  Rows written before hold references.
 */
static void
add_journal_refs(LogFoldTable *t, LogFold *f, text *joined, bool keys)
{
	const char *p = VARDATA_ANY(joined);
	const char *end = p + VARSIZE_ANY_EXHDR(joined);
	bool		ids = p < end && *p == LOG_IDS_MARK;
	List	   *items = NIL;
	ListCell   *lc;

	if (ids)
		p++;
	while (p < end)
	{
		const char *sep = memchr(p, LOG_LIST_SEPARATOR, end - p);
		size_t		len = (sep ? sep : end) - p;

		if (len > 0)
			items = lappend(items, pnstrdup(p, Min(len, NAMEDATALEN - 1)));
		p += len + 1;
	}
	if (ids && items != NIL)
	{
		int			n = list_length(items);
		const char **id = palloc(sizeof(char *) * n);

		for (int i = 0; i < n; i++)
			id[i] = list_nth(items, i);
		add_journal_ids(t, f, id, n, keys);
		return;
	}
	foreach(lc, items)
		add_journal_ref(t, f, lfirst(lc), keys);
}

/* How many statements a journal row folds already (one up to 0.2). */
static int
times_of(TupleTableSlot *slot)
{
	return slot->tts_tupleDescriptor->natts > J_TIMES && !slot->tts_isnull[J_TIMES] ?
		DatumGetInt32(slot->tts_values[J_TIMES]) : 1;
}

static void
fold_journal_row(LogFoldTable *t, LogFold *f, TupleTableSlot *slot, bool keys)
{
	TimestampTz at = DatumGetTimestampTz(slot->tts_values[J_AT]);
	TimestampTz last_at = slot->tts_tupleDescriptor->natts > J_LAST_AT && !slot->tts_isnull[J_LAST_AT] ?
		DatumGetTimestampTz(slot->tts_values[J_LAST_AT]) : at;

	log_fold_count(f, at, last_at, times_of(slot),
				   slot->tts_isnull[J_ROWS] ? 0 : DatumGetInt64(slot->tts_values[J_ROWS]), !slot->tts_isnull[J_ROWS],
				   !slot->tts_isnull[J_SUBJECTS]);
	if (!slot->tts_isnull[J_REFS])
		add_journal_refs(t, f, text_at(slot, J_REFS), keys);
}

/* A journal row (or one record of a packed row) into its fold. */
static void
fold_journal_slot(JournalReceiver *r, TupleTableSlot *slot)
{
	LogFold    *f;
	uint32		hash;

	r->nmemo = 0;				/* a 0.2 row's fold is never a record's: forget nothing by mistake */
	journal_identity(slot, &r->identity);
	hash = log_fold_hash(r->identity.data, r->identity.len);
	f = log_fold_find_hashed(r->folds, hash, r->identity.data, r->identity.len);
	/* A full fold closes: the next one starts. */
	if (f == NULL || !log_fold_fits(r->folds, f, times_of(slot), 0))
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		f = log_fold_start_hashed(r->folds, hash, r->identity.data, r->identity.len, ExecCopySlotHeapTuple(slot));
		MemoryContextSwitchTo(old);
	}
	fold_journal_row(r->folds, f, slot, r->keys);
}

/*
 * The records of a packed row (since 0.3, log_journal_pack.c), read in
 * place: the identity is the record's own bytes (the backend, the table,
 * the query, then the statement's strings) and its ids are pseudonymised
 * where they lie; only a record that starts a fold is made a row (the log
 * row takes its columns).  A record's identity never equals a 0.2 row's
 * (journal_identity: another layout), so the two never fold together.
 */
/* Whether f's identity is the one fold_packed_records makes of rec written by pid. */
static bool
record_of_fold(const LogFold *f, const JournalRecord *rec, int32 pid)
{
	const char *id = f->identity;

	return f->identity_len == sizeof(pid) + sizeof(rec->relid) + sizeof(rec->query_id) + rec->strings_len &&
		memcmp(id, &pid, sizeof(pid)) == 0 &&
		memcmp(id + sizeof(pid), &rec->relid, sizeof(rec->relid)) == 0 &&
		memcmp(id + sizeof(pid) + sizeof(rec->relid), &rec->query_id, sizeof(rec->query_id)) == 0 &&
		memcmp(id + sizeof(pid) + sizeof(rec->relid) + sizeof(rec->query_id), rec->strings, rec->strings_len) == 0;
}

/* The memo's fold of rec's identity (moved first), or NULL. */
static LogFold *
memo_fold(JournalReceiver *r, const JournalRecord *rec, int32 pid)
{
	for (int m = 0; m < r->nmemo; m++)
	{
		LogFold    *f = &r->folds->folds[r->memo[m]];

		if (record_of_fold(f, rec, pid))
		{
			int			hit = r->memo[m];

			memmove(&r->memo[1], &r->memo[0], sizeof(int) * m);
			r->memo[0] = hit;
			return f;
		}
	}
	return NULL;
}

/* f first in the memo (the oldest goes when it is new). */
static void
memo_put(JournalReceiver *r, LogFold *f, bool known)
{
	if (!known)
	{
		memmove(&r->memo[1], &r->memo[0], sizeof(int) * Min(r->nmemo, JOURNAL_MEMO - 1));
		r->nmemo = Min(r->nmemo + 1, JOURNAL_MEMO);
	}
	/* Starting a fold closes the one before of its identity (log_fold.c): the memo follows. */
	r->memo[0] = log_fold_index(r->folds, f);
}

static void
fold_packed_records(JournalReceiver *r, bytea *packed, int32 pid)
{
	JournalReader rd;
	JournalRecord rec;

	crm_gdpr_journal_reader(&rd, packed);
	while (crm_gdpr_journal_next(&rd, &rec))
	{
		LogFold    *f = memo_fold(r, &rec, pid);
		bool		known = f != NULL;

		if (!known)
		{
			resetStringInfo(&r->identity);
			appendBinaryStringInfo(&r->identity, (char *) &pid, sizeof(pid));
			appendBinaryStringInfo(&r->identity, (char *) &rec.relid, sizeof(rec.relid));
			appendBinaryStringInfo(&r->identity, (char *) &rec.query_id, sizeof(rec.query_id));
			appendBinaryStringInfo(&r->identity, rec.strings, rec.strings_len);
			f = log_fold_find_hashed(r->folds, log_fold_hash(r->identity.data, r->identity.len),
									 r->identity.data, r->identity.len);
		}
		if (f == NULL || !log_fold_fits(r->folds, f, rec.times, 0))
		{
			Datum		values[J_COUNT];
			bool		nulls[J_COUNT];
			MemoryContext old;

			if (known)
			{
				resetStringInfo(&r->identity);
				appendBinaryStringInfo(&r->identity, f->identity, f->identity_len);
			}
			crm_gdpr_journal_values(&rec, pid, values, nulls);
			old = MemoryContextSwitchTo(r->cxt);
			f = log_fold_start_hashed(r->folds, log_fold_hash(r->identity.data, r->identity.len),
									  r->identity.data, r->identity.len,
									  heap_form_tuple(r->desc, values, nulls));
			MemoryContextSwitchTo(old);
		}
		memo_put(r, f, known);
		log_fold_count(f, rec.first_at, rec.times == 1 ? rec.first_at : rec.last_at, rec.times,
					   rec.rows, rec.rows_known, rec.counted);
		if (rec.nsubjects > 0)
		{
			const char **ids = palloc(sizeof(char *) * rec.nsubjects);

			crm_gdpr_journal_ids(&rec, ids);
			add_journal_ids(r->folds, f, ids, rec.nsubjects, r->keys);
		}
	}
	crm_gdpr_journal_reader_end(&rd);
}

static bool
receive_journal_row(TupleTableSlot *slot, DestReceiver *self)
{
	JournalReceiver *r = (JournalReceiver *) self;
	MemoryContext old;

	MemoryContextReset(r->row_cxt);
	old = MemoryContextSwitchTo(r->row_cxt);
	slot_getallattrs(slot);
	/* Since 0.3 a row holds the records a transaction wrote at once. */
	if (r->desc->natts == J_COUNT && !slot->tts_isnull[J_RECORDS])
		fold_packed_records(r, DatumGetByteaPP(slot->tts_values[J_RECORDS]),
							slot->tts_isnull[J_PID] ? 0 : DatumGetInt32(slot->tts_values[J_PID]));
	else
		fold_journal_slot(r, slot);
	MemoryContextSwitchTo(old);
	return true;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc desc)
{
	JournalReceiver *r = (JournalReceiver *) self;
	MemoryContext old;

	if (desc->natts != J_COUNT && desc->natts != J_COUNT_0_2)
		elog(ERROR, "the journal of writes has %d columns, not %d", desc->natts, J_COUNT);
	old = MemoryContextSwitchTo(r->cxt);
	r->desc = CreateTupleDescCopy(desc);
	MemoryContextSwitchTo(old);
}

static void
receiver_nothing(DestReceiver *self)
{
}

static int
by_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The distinct keys (or references), sorted: a row's do not depend on the
 * order its statements came in.
 */
static Datum
subject_set(const LogFold *f, bool keys)
{
	const char **refs = palloc(sizeof(char *) * f->nsubjects);
	Datum	   *items;

	log_fold_subjects(f, refs);
	if (keys)
	{
		int64	   *k = palloc(sizeof(int64) * f->nsubjects);

		for (int i = 0; i < f->nsubjects; i++)
			memcpy(&k[i], refs[i], sizeof(int64));
		return crm_gdpr_log_key_array(k, f->nsubjects);
	}
	items = palloc(sizeof(Datum) * f->nsubjects);
	qsort(refs, f->nsubjects, sizeof(char *), by_text);
	for (int i = 0; i < f->nsubjects; i++)
		items[i] = CStringGetTextDatum(refs[i]);
	return PointerGetDatum(construct_array(items, f->nsubjects, TEXTOID, -1, false, TYPALIGN_INT));
}

/* What gdpr._log_journal_take() returns (80_access_log.sql), in this order. */
static const LogColumn journal_take_columns[] = {
	LOG_AT, LOG_LAST_AT, LOG_ROLE, LOG_SESSION_ROLE, LOG_APPNAME, LOG_CLIENT, LOG_PID, LOG_OPERATION, LOG_TBL,
	LOG_TABLE_NAME, LOG_COLUMNS, LOG_SUBJECT_REFS, LOG_SUBJECTS, LOG_ROW_COUNT, LOG_QUERY_ID, LOG_PURPOSE, LOG_TIMES
};

/* The journal's columns a folded row takes from its first statement as they are. */
static const struct
{
	LogColumn	to;
	int			from;
}			copied[] = {
	{LOG_ROLE, J_ROLE}, {LOG_SESSION_ROLE, J_SESSION_ROLE}, {LOG_APPNAME, J_APPNAME}, {LOG_CLIENT, J_CLIENT},
	{LOG_PID, J_PID}, {LOG_OPERATION, J_OPERATION}, {LOG_TBL, J_TBL}, {LOG_TABLE_NAME, J_TABLE_NAME},
	{LOG_QUERY_ID, J_QUERY_ID}, {LOG_PURPOSE, J_PURPOSE}
};

static void
put_journal_fold(Tuplestorestate *store, TupleDesc out, const LogFold *f, TupleDesc desc, bool keys)
{
	LogRow		row;
	Datum		first[J_COUNT];
	bool		firstnull[J_COUNT];

	heap_deform_tuple((HeapTuple) f->first, desc, first, firstnull);
	log_row_set(&row, LOG_AT, TimestampTzGetDatum(f->first_at), false);
	log_row_set(&row, LOG_LAST_AT, TimestampTzGetDatum(f->last_at), f->times == 1);
	for (int i = 0; i < lengthof(copied); i++)
		log_row_set(&row, copied[i].to, first[copied[i].from], firstnull[copied[i].from]);
	log_row_set(&row, LOG_COLUMNS,
				firstnull[J_COLUMNS] ? (Datum) 0 :
				crm_gdpr_name_array(TextDatumGetCString(first[J_COLUMNS]), LOG_LIST_SEPARATOR),
				firstnull[J_COLUMNS]);
	log_row_set(&row, LOG_SUBJECT_REFS, f->nsubjects ? subject_set(f, keys) : (Datum) 0, f->nsubjects == 0);
	log_row_set(&row, LOG_SUBJECTS, Int64GetDatum(f->nsubjects), !f->counted);
	log_row_set(&row, LOG_ROW_COUNT, Int64GetDatum(f->rows), !f->rows_known);
	log_row_set(&row, LOG_TIMES, Int32GetDatum(f->times), false);
	crm_gdpr_put_log_row(store, out, &row, journal_take_columns, lengthof(journal_take_columns));
}

/*
 * Every journal's rows to the receiver: a journal truncated is read, then
 * truncated (locked meanwhile); the others are deleted (log_journals.c).
 */
static void
take_journals(SPIExecuteOptions *options)
{
	Oid			oids[JOURNALS];
	bool		single;
	bool		truncating = false;
	int			n = crm_gdpr_journals(oids, &single);

	for (int i = 0; i < n; i++)
	{
		const char *name = quote_identifier(crm_gdpr_journal_name(i, single));

		if (crm_gdpr_journal_truncates(oids[i], i, single, &truncating))
		{
			/* SPI_OK_UTILITY: a SELECT whose rows go to a receiver of type DestNone. */
			if (SPI_execute_extended(psprintf(READ_SQL, name), options) != SPI_OK_UTILITY ||
				SPI_execute(psprintf(TRUNCATE_SQL, name), false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "could not take the journal of writes %s", name);
		}
		else if (SPI_execute_extended(psprintf(TAKE_SQL, name), options) != SPI_OK_DELETE_RETURNING)
			elog(ERROR, "could not take the journal of writes %s", name);
	}
}

PG_FUNCTION_INFO_V1(gdpr_log_journal_take);
Datum
gdpr_log_journal_take(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	JournalReceiver r;
	SPIExecuteOptions options;
	LogFold   **order;

	InitMaterializedSRF(fcinfo, 0);
	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = receive_journal_row;
	r.pub.rStartup = receiver_startup;
	r.pub.rShutdown = receiver_nothing;
	r.pub.rDestroy = receiver_nothing;
	r.pub.mydest = DestNone;
	r.cxt = CurrentMemoryContext;
	r.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "crm_gdpr journal row", ALLOCSET_DEFAULT_SIZES);
	r.keys = crm_gdpr_log_takes_keys(rsinfo->setDesc, journal_take_columns, lengthof(journal_take_columns));
	initStringInfo(&r.identity);
	r.folds = log_fold_table_create(CurrentMemoryContext, LOG_FOLD_MAX, 0);
	memset(&options, 0, sizeof(options));
	options.dest = (DestReceiver *) &r;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	take_journals(&options);
	SPI_finish();
	order = log_fold_by_first_time(r.folds);
	for (int i = 0; i < r.folds->nfolds; i++)
		put_journal_fold(rsinfo->setResult, rsinfo->setDesc, order[i], r.desc, r.keys);
	return (Datum) 0;
}
