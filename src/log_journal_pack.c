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

void
crm_gdpr_journal_reader(JournalReader *rd, bytea *packed)
{
	rd->next = VARDATA_ANY(packed);
	rd->end = rd->next + VARSIZE_ANY_EXHDR(packed);
	rd->version_read = false;
}

/* The next record of a reader, pointers into its bytes; false after the last. */
bool
crm_gdpr_journal_next(JournalReader *rd, JournalRecord *r)
{
	const char *p = rd->next;
	PackedHead	head;

	if (!rd->version_read)
	{
		if (p == rd->end || *p != PACK_VERSION)
			damaged("unknown version");
		rd->version_read = true;
		p++;
	}
	if (p == rd->end)
		return false;
	if (rd->end - p < (long) sizeof(head))
		damaged("a record is cut short");
	memcpy(&head, p, sizeof(head));
	if (head.len < (int32) sizeof(head) || head.len > rd->end - p || head.strings_len < WS_STRINGS ||
		head.strings_len > head.len - (int32) sizeof(head) || head.nsubjects < 0)
		damaged("a record's length is wrong");
	r->first_at = head.first_at;
	r->last_at = head.last_at;
	r->times = head.times;
	r->rows = head.rows;
	r->rows_known = (head.flags & HEAD_ROWS_KNOWN) != 0;
	r->counted = (head.flags & HEAD_COUNTED) != 0;
	r->relid = head.relid;
	r->query_id = head.query_id;
	r->strings = p + sizeof(head);
	r->strings_len = head.strings_len;
	r->nsubjects = head.nsubjects;
	r->subjects = r->strings + r->strings_len;
	r->subjects_len = head.len - sizeof(head) - head.strings_len;
	if (r->strings[r->strings_len - 1] != '\0' ||
		(r->nsubjects > 0 && (r->subjects_len < r->nsubjects || r->subjects[r->subjects_len - 1] != '\0')))
		damaged("a record's strings or subjects are cut short");
	rd->next = p + head.len;
	return true;
}

/* A record's subjects' ids: pointers into its bytes (r->nsubjects of them). */
void
crm_gdpr_journal_ids(const JournalRecord *r, const char **ids)
{
	const char *s = r->subjects;

	for (int i = 0; i < r->nsubjects; i++)
	{
		ids[i] = s;
		s += strlen(s) + 1;
	}
}

/* A record as the values of the journal's columns (J_COUNT of them), as a row of 0.2 holds one. */
void
crm_gdpr_journal_values(const JournalRecord *r, int32 pid, Datum *values, bool *nulls)
{
	const char *s = r->strings;
	const char *end = r->strings + r->strings_len;

	memset(nulls, 1, sizeof(bool) * J_COUNT);
	values[J_AT] = TimestampTzGetDatum(r->first_at);
	values[J_PID] = Int32GetDatum(pid);
	values[J_TBL] = ObjectIdGetDatum(r->relid);
	values[J_SUBJECTS] = Int64GetDatum(r->nsubjects);
	values[J_ROWS] = Int64GetDatum(r->rows);
	values[J_QUERY_ID] = Int64GetDatum(r->query_id);
	values[J_LAST_AT] = TimestampTzGetDatum(r->last_at);
	values[J_TIMES] = Int32GetDatum(r->times);
	nulls[J_AT] = nulls[J_PID] = nulls[J_TBL] = nulls[J_TIMES] = false;
	nulls[J_SUBJECTS] = !r->counted;
	nulls[J_ROWS] = !r->rows_known;
	nulls[J_QUERY_ID] = r->query_id == 0;
	nulls[J_LAST_AT] = r->times == 1;
	for (int i = 0; i < WS_STRINGS; i++)
	{
		int			len = strnlen(s, end - s);

		if (s + len >= end)
			damaged("a record's strings are cut short");
		nulls[string_column[i]] = len == 0;
		if (len > 0)
			values[string_column[i]] = PointerGetDatum(cstring_to_text_with_len(s, len));
		s += len + 1;
	}
	if (r->nsubjects > 0)
	{
		values[J_REFS] = marked_ids(r->subjects, r->subjects_len, r->nsubjects);
		nulls[J_REFS] = false;
	}
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
	JournalReader rd;
	JournalRecord r;
	Datum		values[J_COUNT];
	bool		nulls[J_COUNT];

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != J_COUNT)
		elog(ERROR, "gdpr._journal_records() must return the %d columns of the journal", J_COUNT);
	crm_gdpr_journal_reader(&rd, PG_GETARG_BYTEA_PP(0));
	while (crm_gdpr_journal_next(&rd, &r))
	{
		crm_gdpr_journal_values(&r, PG_GETARG_INT32(1), values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
