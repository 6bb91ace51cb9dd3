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
 * a version byte, then records, each a head followed by the statement's
 * strings (WriteString order, each ending in a zero byte, empty for none)
 * and its subjects' ids (each ending in a zero byte).  Numbers are copied
 * in and out byte by byte or with memcpy: nothing in the bytes is aligned.
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "access_log.h"

/*
 * Version 2 (since 0.3's compact journal): the head of a record is a flags
 * byte, a byte telling which strings repeat the record before's, then
 * numbers as varints (LEB128) where they are small: a two-statement
 * transaction's row went from 64 bytes of head a record, and its role,
 * session role, application, client and purpose twice, to some twenty
 * bytes and those strings once: a third less of the journal's bytes in the
 * WAL of every writing transaction (doc/benchmarks.md, fourteenth session).
 * Version 1 (the head below, copied as a struct) is still read: a journal
 * can hold rows an older build wrote before a restart.
 */
#define PACK_VERSION_1 1
#define PACK_VERSION 2

#define HEAD_ROWS_KNOWN 1
#define HEAD_COUNTED 2
#define HEAD_ONCE 4				/* times 1, last_at first_at: neither is written */
#define HEAD_QUERY_ID 8			/* a query id follows (8 bytes) */
#define HEAD_SESSION_IS_ROLE 16 /* the session role is the role: not written */

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

/* A record's repeated strings are bits of one byte. */
StaticAssertDecl(WS_STRINGS <= 8, "a journal record's strings must fit the bits of one byte");

#define VARINT_MAX 10			/* bytes of a uint64 */
/* The longest head: flags, repeats, seven numbers (the first time's 8 bytes or a varint) and a query id. */
#define HEAD_ROOM (2 + 7 * VARINT_MAX + sizeof(int64))

static char *
put_varint(char *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (char) (v | 0x80);
		v >>= 7;
	}
	*p++ = (char) v;
	return p;
}

/* A signed difference, zigzagged so that a small one of either sign is short. */
static uint64
zigzag(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

static int64
unzigzag(uint64 v)
{
	return (int64) (v >> 1) ^ -(int64) (v & 1);
}

/* A record's strings, split (pointers into r->strings). */
static void
split_strings(const JournalRecord *r, const char **str, int *len)
{
	const char *s = r->strings;

	for (int i = 0; i < WS_STRINGS; i++)
	{
		str[i] = s;
		len[i] = strlen(s);
		s += len[i] + 1;
	}
}

/* Which of a record's strings are not written: the same as the record before's, or the session role as the role. */
static uint8
repeated_strings(const char **str, const int *len, const char **prev, const int *prev_len, bool first,
				 uint8 *flags)
{
	uint8		same = 0;

	if (len[WS_SESSION_ROLE] == len[WS_ROLE] && memcmp(str[WS_SESSION_ROLE], str[WS_ROLE], len[WS_ROLE]) == 0)
		*flags |= HEAD_SESSION_IS_ROLE;
	if (first)
		return same;
	for (int i = 0; i < WS_STRINGS; i++)
		if (len[i] == prev_len[i] && memcmp(str[i], prev[i], len[i]) == 0)
			same |= 1 << i;
	return same;
}

/* One record at p (room checked by the caller); returns the end. */
static char *
pack_record(char *p, const JournalRecord *r, const char **str, const int *len, uint8 flags, uint8 same,
			TimestampTz prev_at, bool first)
{
	char	   *start PG_USED_FOR_ASSERTS_ONLY = p;

	if (r->rows_known)
		flags |= HEAD_ROWS_KNOWN;
	if (r->counted)
		flags |= HEAD_COUNTED;
	if (r->times == 1 && r->last_at == r->first_at)
		flags |= HEAD_ONCE;
	if (r->query_id != 0)
		flags |= HEAD_QUERY_ID;
	*p++ = (char) flags;
	*p++ = (char) same;
	if (first)
	{
		memcpy(p, &r->first_at, sizeof(r->first_at));
		p += sizeof(r->first_at);
	}
	else
		p = put_varint(p, zigzag(r->first_at - prev_at));
	if (!(flags & HEAD_ONCE))
	{
		p = put_varint(p, (uint64) r->times);
		p = put_varint(p, zigzag(r->last_at - r->first_at));
	}
	p = put_varint(p, (uint64) r->rows);
	if (flags & HEAD_QUERY_ID)
	{
		memcpy(p, &r->query_id, sizeof(r->query_id));
		p += sizeof(r->query_id);
	}
	p = put_varint(p, r->relid);
	p = put_varint(p, (uint64) r->nsubjects);
	p = put_varint(p, (uint64) r->subjects_len);
	for (int i = 0; i < WS_STRINGS; i++)
	{
		if ((same & (1 << i)) || (i == WS_SESSION_ROLE && (flags & HEAD_SESSION_IS_ROLE)))
			continue;
		memcpy(p, str[i], len[i] + 1);
		p += len[i] + 1;
	}
	if (r->subjects_len > 0)
		memcpy(p, r->subjects, r->subjects_len);
	p += r->subjects_len;
	Assert(p - start <= HEAD_ROOM + r->strings_len + r->subjects_len);
	return p;
}

/* The records as one bytea, sized for the longest head then copied: the write path pays for one allocation. */
bytea *
crm_gdpr_journal_pack(const JournalRecord *records, int n)
{
	Size		room = VARHDRSZ + 1;
	bytea	   *packed;
	char	   *p;
	const char *prev[WS_STRINGS] = {0};
	int			prev_len[WS_STRINGS] = {0};

	for (int i = 0; i < n; i++)
		room += HEAD_ROOM + records[i].strings_len + records[i].subjects_len;
	packed = palloc(room);
	p = VARDATA(packed);
	*p++ = PACK_VERSION;
	for (int i = 0; i < n; i++)
	{
		const char *str[WS_STRINGS];
		int			len[WS_STRINGS];
		uint8		flags = 0;
		uint8		same;

		split_strings(&records[i], str, len);
		same = repeated_strings(str, len, prev, prev_len, i == 0, &flags);
		p = pack_record(p, &records[i], str, len, flags, same, i > 0 ? records[i - 1].first_at : 0, i == 0);
		memcpy(prev, str, sizeof(prev));
		memcpy(prev_len, len, sizeof(prev_len));
	}
	SET_VARSIZE(packed, p - (char *) packed);
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
	memset(rd, 0, sizeof(*rd));
	rd->next = VARDATA_ANY(packed);
	rd->end = rd->next + VARSIZE_ANY_EXHDR(packed);
}

/* What a reader allocated (the strings of version 2's records). */
void
crm_gdpr_journal_reader_end(JournalReader *rd)
{
	for (int i = 0; i < 2; i++)
		if (rd->strings[i].data)
			pfree(rd->strings[i].data);
}

static const char *
get_varint(const char *p, const char *end, uint64 *v)
{
	uint64		x = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		b;

		if (p == end)
			damaged("a record is cut short");
		b = (uint8) *p++;
		x |= (uint64) (b & 0x7f) << shift;
		if (!(b & 0x80))
		{
			*v = x;
			return p;
		}
	}
	damaged("a number is too long");
	return NULL;				/* not reached */
}

static const char *
get_bytes(const char *p, const char *end, void *to, Size n)
{
	if (end - p < (long) n)
		damaged("a record is cut short");
	memcpy(to, p, n);
	return p + n;
}

/* A version 1 record: its head, then its strings and subjects. */
static void
next_v1(JournalReader *rd, JournalRecord *r)
{
	const char *p = rd->next;
	PackedHead	head;

	p = get_bytes(p, rd->end, &head, sizeof(head));
	if (head.len < (int32) sizeof(head) || head.len > rd->end - rd->next || head.strings_len < WS_STRINGS ||
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
	r->strings = p;
	r->strings_len = head.strings_len;
	r->nsubjects = head.nsubjects;
	r->subjects = r->strings + r->strings_len;
	r->subjects_len = head.len - sizeof(head) - head.strings_len;
	rd->next += head.len;
}

/*
 * A version 2 record's strings, whole again in one of the reader's two
 * buffers (the other holds the record before's, which repeated ones come
 * from): log_journal.c compares and copies a record's strings as one block.
 */
static const char *
read_strings(JournalReader *rd, const char *p, uint8 flags, uint8 same)
{
	StringInfo	prev = &rd->strings[rd->current];
	StringInfo	cur = &rd->strings[1 - rd->current];
	int			offsets[WS_STRINGS];

	if (cur->data == NULL)
		initStringInfo(cur);
	resetStringInfo(cur);
	if (same != 0 && !rd->any)
		damaged("a first record repeats strings");
	for (int i = 0; i < WS_STRINGS; i++)
	{
		const char *s;
		int			len;

		offsets[i] = cur->len;
		if (same & (1 << i))
		{
			s = prev->data + rd->offsets[i];
			len = strlen(s);
		}
		else if (i == WS_SESSION_ROLE && (flags & HEAD_SESSION_IS_ROLE))
		{
			/* A copy of the role, within cur: made room for first, since that may move it. */
			len = strlen(cur->data + offsets[WS_ROLE]);
			enlargeStringInfo(cur, len + 1);
			s = cur->data + offsets[WS_ROLE];
		}
		else
		{
			s = p;
			len = strnlen(p, rd->end - p);
			if (p + len >= rd->end)
				damaged("a record's strings are cut short");
			p += len + 1;
		}
		appendBinaryStringInfo(cur, s, len + 1);
	}
	memcpy(rd->offsets, offsets, sizeof(offsets));
	rd->current = 1 - rd->current;
	return p;
}

static void
next_v2(JournalReader *rd, JournalRecord *r)
{
	const char *p = rd->next;
	uint8		flags;
	uint8		same;
	uint64		v;
	uint64		nsubjects;
	uint64		subjects_len;

	p = get_bytes(p, rd->end, &flags, 1);
	p = get_bytes(p, rd->end, &same, 1);
	if (!rd->any)
		p = get_bytes(p, rd->end, &r->first_at, sizeof(r->first_at));
	else
	{
		p = get_varint(p, rd->end, &v);
		r->first_at = rd->prev_at + unzigzag(v);
	}
	r->times = 1;
	r->last_at = r->first_at;
	if (!(flags & HEAD_ONCE))
	{
		p = get_varint(p, rd->end, &v);
		if (v < 1 || v > PG_INT32_MAX)
			damaged("a record's count is wrong");
		r->times = (int) v;
		p = get_varint(p, rd->end, &v);
		r->last_at = r->first_at + unzigzag(v);
	}
	p = get_varint(p, rd->end, &v);
	r->rows = (int64) v;
	r->query_id = 0;
	if (flags & HEAD_QUERY_ID)
		p = get_bytes(p, rd->end, &r->query_id, sizeof(r->query_id));
	p = get_varint(p, rd->end, &v);
	if (v > PG_UINT32_MAX)
		damaged("a record's table is wrong");
	r->relid = (Oid) v;
	p = get_varint(p, rd->end, &nsubjects);
	p = get_varint(p, rd->end, &subjects_len);
	if (nsubjects > subjects_len || subjects_len > (uint64) (rd->end - p))
		damaged("a record's length is wrong");
	r->rows_known = (flags & HEAD_ROWS_KNOWN) != 0;
	r->counted = (flags & HEAD_COUNTED) != 0;
	p = read_strings(rd, p, flags, same);
	r->strings = rd->strings[rd->current].data;
	r->strings_len = rd->strings[rd->current].len;
	r->nsubjects = (int) nsubjects;
	r->subjects_len = (int) subjects_len;
	if (rd->end - p < (long) subjects_len)
		damaged("a record's subjects are cut short");
	r->subjects = p;
	rd->next = p + subjects_len;
	rd->prev_at = r->first_at;
}

/* The next record of a reader, pointers into its bytes (or its buffers); false after the last. */
bool
crm_gdpr_journal_next(JournalReader *rd, JournalRecord *r)
{
	if (rd->version == 0)
	{
		if (rd->next == rd->end || (*rd->next != PACK_VERSION && *rd->next != PACK_VERSION_1))
			damaged("unknown version");
		rd->version = *rd->next++;
	}
	if (rd->next == rd->end)
		return false;
	if (rd->version == PACK_VERSION_1)
		next_v1(rd, r);
	else
		next_v2(rd, r);
	rd->any = true;
	if (r->strings[r->strings_len - 1] != '\0' ||
		(r->nsubjects > 0 && (r->subjects_len < r->nsubjects || r->subjects[r->subjects_len - 1] != '\0')))
		damaged("a record's strings or subjects are cut short");
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
	crm_gdpr_journal_reader_end(&rd);
	return (Datum) 0;
}
