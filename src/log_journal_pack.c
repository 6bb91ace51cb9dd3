/*
 * log_journal_pack.c — a transaction's write records as the bytes of one
 * journal row.
 *
 * Since 0.3 a writing transaction (or a subtransaction that commits) puts
 * all the records it writes at once into ONE journal row, in its column
 * `records`: the other columns are NULL but the first time (`at`) and the
 * backend's pid.  One tuple formed and inserted instead of one per record of
 * seventeen columns: that was a third of what logging a two-statement write
 * transaction cost the CRM (doc/benchmarks.md).  The log writer unpacks the
 * rows (log_journal.c) and so does the view gdpr.access_log_journal
 * (gdpr._journal_records()), both as the columns of the journal.
 *
 * The format is the library's own and transient (rows live a second, the
 * journals are not dumped and a physical replica runs the same build):
 * a version byte, then records, each a fixed head followed by the
 * statement's strings (WriteString order, each ending in a zero byte, empty
 * for none) and its subjects' ids (each ending in a zero byte).  Numbers are
 * copied in and out with memcpy: nothing in the bytes is aligned.
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "access_log.h"

#define PACK_VERSION 1

#define HEAD_ROWS_KNOWN 1
#define HEAD_COUNTED 2

typedef struct PackedHead
{
	int32		len;			/* of the record, head included */
	int32		times;
	TimestampTz first_at;
	TimestampTz last_at;
	int64		rows;
	int64		query_id;
	Oid			relid;
	int32		nsubjects;
	int32		strings_len;
	uint8		flags;
} PackedHead;

/* Where each of a statement's strings goes among the journal's columns. */
static const JournalColumn string_column[WS_STRINGS] = {
	[WS_ROLE] = J_ROLE, [WS_SESSION_ROLE] = J_SESSION_ROLE, [WS_APPNAME] = J_APPNAME,
	[WS_CLIENT] = J_CLIENT, [WS_OPERATION] = J_OPERATION, [WS_TABLE_NAME] = J_TABLE_NAME,
	[WS_COLUMNS] = J_COLUMNS, [WS_PURPOSE] = J_PURPOSE
};

JournalColumn
crm_gdpr_journal_string_column(WriteString s)
{
	return string_column[s];
}

/* The records as one bytea, sized first then copied: the write path pays for one allocation. */
bytea *
crm_gdpr_journal_pack(const JournalRecord *records, int n)
{
	Size		total = VARHDRSZ + 1;
	bytea	   *packed;
	char	   *p;

	for (int i = 0; i < n; i++)
		total += sizeof(PackedHead) + records[i].strings_len + records[i].subjects_len;
	packed = palloc(total);
	SET_VARSIZE(packed, total);
	p = VARDATA(packed);
	*p++ = PACK_VERSION;
	for (int i = 0; i < n; i++)
	{
		const JournalRecord *r = &records[i];
		PackedHead	head;

		memset(&head, 0, sizeof(head));
		head.len = sizeof(head) + r->strings_len + r->subjects_len;
		head.times = r->times;
		head.first_at = r->first_at;
		head.last_at = r->last_at;
		head.rows = r->rows;
		head.query_id = r->query_id;
		head.relid = r->relid;
		head.nsubjects = r->nsubjects;
		head.strings_len = r->strings_len;
		head.flags = (r->rows_known ? HEAD_ROWS_KNOWN : 0) | (r->counted ? HEAD_COUNTED : 0);
		memcpy(p, &head, sizeof(head));
		p += sizeof(head);
		memcpy(p, r->strings, r->strings_len);
		p += r->strings_len;
		if (r->subjects_len > 0)
			memcpy(p, r->subjects, r->subjects_len);
		p += r->subjects_len;
	}
	Assert(p == (char *) packed + total);
	return packed;
}

static void
damaged(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("a row of the journal of writes is damaged: %s", what),
			 errhint("The row was not written by this build of crm_gdpr.")));
}

/* The ids, marked as ids (LOG_IDS_MARK) and joined: the journal's subject_refs as log_journal.c reads it. */
static Datum
marked_ids(const char *ids, int len, int n)
{
	text	   *t = palloc(VARHDRSZ + 1 + len);
	char	   *p = VARDATA(t);

	*p = LOG_IDS_MARK;
	memcpy(p + 1, ids, len);
	/* Each id ends in a zero byte: all but the last become separators. */
	for (int i = 1, seen = 0; i <= len && seen < n - 1; i++)
		if (p[i] == '\0')
		{
			p[i] = LOG_LIST_SEPARATOR;
			seen++;
		}
	SET_VARSIZE(t, VARHDRSZ + len);		/* the last id's zero byte dropped */
	return PointerGetDatum(t);
}

/* One record as the values of the journal's columns (J_COUNT of them). */
static const char *
unpack_record(const char *p, const char *end, int32 pid, Datum *values, bool *nulls)
{
	PackedHead	head;
	const char *s;

	if (end - p < (long) sizeof(head))
		damaged("a record is cut short");
	memcpy(&head, p, sizeof(head));
	if (head.len < (int32) sizeof(head) || head.len > end - p || head.strings_len < WS_STRINGS ||
		head.strings_len > head.len - (int32) sizeof(head))
		damaged("a record's length is wrong");
	memset(nulls, 1, sizeof(bool) * J_COUNT);
	values[J_AT] = TimestampTzGetDatum(head.first_at);
	values[J_PID] = Int32GetDatum(pid);
	values[J_TBL] = ObjectIdGetDatum(head.relid);
	values[J_SUBJECTS] = Int64GetDatum(head.nsubjects);
	values[J_ROWS] = Int64GetDatum(head.rows);
	values[J_QUERY_ID] = Int64GetDatum(head.query_id);
	values[J_LAST_AT] = TimestampTzGetDatum(head.last_at);
	values[J_TIMES] = Int32GetDatum(head.times);
	nulls[J_AT] = nulls[J_PID] = nulls[J_TBL] = nulls[J_TIMES] = false;
	nulls[J_SUBJECTS] = !(head.flags & HEAD_COUNTED);
	nulls[J_ROWS] = !(head.flags & HEAD_ROWS_KNOWN);
	nulls[J_QUERY_ID] = head.query_id == 0;
	nulls[J_LAST_AT] = head.times == 1;
	s = p + sizeof(head);
	for (int i = 0; i < WS_STRINGS; i++)
	{
		int			len = strnlen(s, p + sizeof(head) + head.strings_len - s);

		if (s + len >= p + sizeof(head) + head.strings_len)
			damaged("a record's strings are cut short");
		nulls[string_column[i]] = len == 0;
		if (len > 0)
			values[string_column[i]] = PointerGetDatum(cstring_to_text_with_len(s, len));
		s += len + 1;
	}
	s = p + sizeof(head) + head.strings_len;
	if (head.nsubjects > 0)
	{
		int			len = p + head.len - s;

		if (len < head.nsubjects || s[len - 1] != '\0')
			damaged("a record's subjects are cut short");
		values[J_REFS] = marked_ids(s, len, head.nsubjects);
		nulls[J_REFS] = false;
	}
	return p + head.len;
}

/* Every record of a journal row's `records`, one call of each() apiece. */
int
crm_gdpr_journal_unpack(bytea *packed, int32 pid, void (*each) (Datum *values, bool *nulls, void *arg), void *arg)
{
	const char *p = VARDATA_ANY(packed);
	const char *end = p + VARSIZE_ANY_EXHDR(packed);
	Datum		values[J_COUNT];
	bool		nulls[J_COUNT];
	int			n = 0;

	if (p == end || *p != PACK_VERSION)
		damaged("unknown version");
	for (p++; p < end; n++)
	{
		p = unpack_record(p, end, pid, values, nulls);
		each(values, nulls, arg);
	}
	return n;
}

static void
put_record(Datum *values, bool *nulls, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * gdpr._journal_records(records bytea, backend_pid int): a packed row's
 * records as rows of the journal, for the view gdpr.access_log_journal.
 */
PG_FUNCTION_INFO_V1(gdpr_journal_records);
Datum
gdpr_journal_records(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != J_COUNT)
		elog(ERROR, "gdpr._journal_records() must return the %d columns of the journal", J_COUNT);
	if (!PG_ARGISNULL(0))
		crm_gdpr_journal_unpack(PG_GETARG_BYTEA_PP(0), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1), put_record, rsinfo);
	return (Datum) 0;
}
