/*
 * log_row.c — a row of the access log as the take functions return it.
 *
 * gdpr._log_queue_take() (log_queue_take.c) and gdpr._log_journal_take()
 * (log_journal.c) fold records into log rows; both fill a LogRow by column
 * name (access_log.h) and put it out here in the order of their SQL
 * declaration.  With it, what the two need to name a table and a list of
 * columns.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "access_log.h"

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

/* A list of column names joined by separator (changed in place) as name[]. */
Datum
crm_gdpr_name_array(char *joined, char separator)
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
