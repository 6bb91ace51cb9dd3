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
	Datum		names = name_array(joined, separator);
	Datum		compressed = toast_compress_datum(names, default_toast_compression);

	return compressed != (Datum) 0 ? compressed : names;
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

static int
by_key(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

/*
 * n keys (sorted in place) as a bigint[], each once: a set, whose order
 * does not depend on the order its reads or statements came in.
 */
Datum
crm_gdpr_log_key_array(int64 *keys, int n)
{
	Datum	   *items = palloc(sizeof(Datum) * Max(n, 1));
	int			m = 0;

	qsort(keys, n, sizeof(int64), by_key);
	for (int i = 0; i < n; i++)
		if (i == 0 || keys[i] != keys[i - 1])
			items[m++] = Int64GetDatum(keys[i]);
	return PointerGetDatum(construct_array(items, m, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
