/*
 * log_row.c — a row of the access log as the take functions return it.
 *
 * gdpr._log_queue_take() (log_queue_take.c) and gdpr._log_journal_take()
 * (log_journal.c) fold records into log rows; both fill a LogRow by column
 * name (access_log.h) and put it out here in the order of their SQL
 * declaration.  With it, what the two need to name a table, a list of
 * columns and a set of subjects' keys.
 */
#include "postgres.h"

#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "access_log.h"

static Datum name_array(char *joined, char separator);

void
crm_gdpr_put_log_row(Tuplestorestate *store, TupleDesc desc, const LogRow *row, const LogColumn *order,
					 int ncolumns)
{
	Datum		values[LOG_COLUMN_COUNT];
	bool		nulls[LOG_COLUMN_COUNT];

	Assert(ncolumns == desc->natts && ncolumns <= LOG_COLUMN_COUNT);
	for (int i = 0; i < ncolumns; i++)
	{
		values[i] = row->value[order[i]];
		nulls[i] = row->null[order[i]];
	}
	tuplestore_putvalues(store, desc, values, nulls);
}

/* schema.table of relid, quoted as needed, or NULL when it no longer exists. */
char *
crm_gdpr_qualified_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	return relname ? quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname) : NULL;
}

/*
 * The last lists made into name[] and their values: the log writer makes
 * one for every row it writes, most of them the same few lists (a CRM's
 * statements), and compressing one costs as much as the rest of the row
 * (pglz sets up its tables each time).  Lists longer than joined are made
 * every time.
 */
#define NAME_MEMO 8
typedef struct NameArrayMemo
{
	char		joined[256];	/* '\0': unused */
	char		separator;
	struct varlena *value;		/* in TopMemoryContext */
} NameArrayMemo;

static NameArrayMemo name_memo[NAME_MEMO];
static int	name_memo_next = 0;

static NameArrayMemo *
name_array_memo(const char *joined, char separator)
{
	for (int i = 0; i < NAME_MEMO; i++)
		if (name_memo[i].joined[0] != '\0' && name_memo[i].separator == separator &&
			strcmp(name_memo[i].joined, joined) == 0)
			return &name_memo[i];
	return NULL;
}

/*
 * A list of column names joined by separator (changed in place) as name[],
 * compressed (default_toast_compression) when that pays.  A name takes 64
 * bytes, mostly zeros: the columns of a read of five took 344 bytes of its
 * log row, a fifth of a row folding 200 reads and its keys (issue 24.7).
 * PostgreSQL compresses a value only in a row past 2 kB, which a log row
 * seldom is: handed over compressed, the value is stored so by the INSERT
 * (and read as any other).
 */
Datum
crm_gdpr_name_array(char *joined, char separator)
{
	NameArrayMemo *m = name_array_memo(joined, separator);
	char		key[sizeof(m->joined)];
	bool		memo = joined[0] != '\0' && strlen(joined) < sizeof(key);
	Datum		names;
	Datum		compressed;
	Size		size;

	if (m != NULL)
		return PointerGetDatum(memcpy(palloc(VARSIZE_ANY(m->value)), m->value, VARSIZE_ANY(m->value)));
	if (memo)
		strcpy(key, joined);	/* name_array cuts joined */
	names = name_array(joined, separator);
	compressed = toast_compress_datum(names, default_toast_compression);
	if (compressed != (Datum) 0)
		names = compressed;
	if (memo)
	{
		/* The slot is unused until its key and value are both in. */
		m = &name_memo[name_memo_next];
		m->joined[0] = '\0';
		if (m->value)
			pfree(m->value);
		m->value = NULL;
		size = VARSIZE_ANY(DatumGetPointer(names));
		m->value = memcpy(MemoryContextAlloc(TopMemoryContext, size), DatumGetPointer(names), size);
		strcpy(m->joined, key);
		m->separator = separator;
		name_memo_next = (name_memo_next + 1) % NAME_MEMO;
	}
	return names;
}

static Datum
name_array(char *joined, char separator)
{
	List	   *names = NIL;
	Datum	   *items;
	ListCell   *lc;
	int			n = 0;
	char	   *next;

	for (char *name = joined; name != NULL && *name; name = next)
	{
		next = strchr(name, separator);
		if (next)
			*next++ = '\0';
		names = lappend(names, name);
	}
	items = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
		items[n++] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc)));
	return PointerGetDatum(construct_array(items, n, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
}

/*
 * Whether a take function's declaration returns the subjects' keys (0.3:
 * bigint[]) or their references (0.2: text[]) in its subject column: the
 * library serves the declarations of every version, until the update.
 */
bool
crm_gdpr_log_takes_keys(TupleDesc desc, const LogColumn *order, int ncolumns)
{
	for (int i = 0; i < ncolumns && i < desc->natts; i++)
		if (order[i] == LOG_SUBJECT_REFS)
			return TupleDescAttr(desc, i)->atttypid == INT8ARRAYOID;
	return false;
}

/*
 * The keys' sort, specialised (PostgreSQL's sort template): the log writer
 * sorts every subject of every read it writes, and qsort's call of a
 * comparison function per comparison was half of that.
 */
#define ST_SORT sort_keys
#define ST_ELEMENT_TYPE int64
#define ST_COMPARE(a, b) (*(a) < *(b) ? -1 : *(a) > *(b))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * n keys (sorted in place) as a bigint[], each once: a set, whose order
 * does not depend on the order its reads or statements came in.
 */
Datum
crm_gdpr_log_key_array(int64 *keys, int n)
{
	Datum	   *items = palloc(sizeof(Datum) * Max(n, 1));
	int			m = 0;

	sort_keys(keys, n);
	for (int i = 0; i < n; i++)
		if (i == 0 || keys[i] != keys[i - 1])
			items[m++] = Int64GetDatum(keys[i]);
	return PointerGetDatum(construct_array(items, m, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
