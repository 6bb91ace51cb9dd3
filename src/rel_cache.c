/*
 * rel_cache.c — whether a relation is registered, its subject key column,
 * and the column lists of its reads, cached per backend.
 *
 * The read hook asks for every relation of every query: the hot path of a
 * read opens nothing once a relation is known.  A relation is registered
 * when it carries the extension's log triggers (register_table and
 * unregister_table add and drop them, which invalidates the relation).  A
 * relcache invalidation of one relation (a rename, a trigger added) forgets
 * what is cached about that relation; a reset of the whole relcache
 * forgets everything.
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "nodes/bitmapset.h"
#include "parser/parse_relation.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "read_hook.h"

/*
 * Whether rel is registered (it has the extension's log triggers), and if so
 * its subject key column ("" when unknown).
 */
const char *
crm_gdpr_registered_subject_column(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	if (trigdesc == NULL)
		return NULL;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (strcmp(t->tgname, LOG_TRIGGER_PREFIX "insert") == 0)
			return t->tgnargs > 0 ? t->tgargs[0] : "";
	}
	return NULL;
}

void
crm_gdpr_column_list(Relation rel, Bitmapset *selected, char *out)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, selected);
	size_t		used = 0;

	out[0] = '\0';
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped ||
			!(whole_row || bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, selected)))
			continue;
		if (used + strlen(name) + 5 >= LOG_RECORD_COLUMNS)
		{
			strcpy(out + used, used ? LOG_LIST_SEPARATOR_STR "..." : "...");
			return;
		}
		/* Not a comma: a column may be named "Note, email" (issue 18.10). */
		used += sprintf(out + used, "%s%s", used ? LOG_LIST_SEPARATOR_STR : "", name);
	}
}


/*
 * The column list of the last few (table, selected columns) pairs: a CRM runs
 * the same queries again and again.
 */
#define COLUMN_CACHE 16
typedef struct ColumnListEntry
{
	Oid			relid;
	Bitmapset  *selected;		/* in TopMemoryContext */
	char		columns[LOG_RECORD_COLUMNS];
} ColumnListEntry;

/*
 * Whether a relation is registered, and its subject key column, for the last
 * few relations queried: the hot path of a read then opens nothing.
 * register_table and unregister_table add and drop triggers, which
 * invalidate the relation: the same callback as the column lists empties it.
 */
#define REL_CACHE 64

static RelInfo rel_cache[REL_CACHE];
static int	rel_cache_next = 0;

static ColumnListEntry column_cache[COLUMN_CACHE];
static int	column_cache_next = 0;
static bool cache_callback_registered = false;

static void
forget_relation(Datum arg, Oid relid)
{
	for (int i = 0; i < COLUMN_CACHE; i++)
		if (!OidIsValid(relid) || column_cache[i].relid == relid)
			column_cache[i].relid = InvalidOid;
	for (int i = 0; i < REL_CACHE; i++)
		if (!OidIsValid(relid) || rel_cache[i].relid == relid)
			rel_cache[i].relid = InvalidOid;
}

static void
register_callback(void)
{
	if (!cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_relation, (Datum) 0);
		cache_callback_registered = true;
	}
}

void
crm_gdpr_cached_column_list(Oid relid, Bitmapset *selected, char *out)
{
	ColumnListEntry *e;
	MemoryContext old;
	Relation	rel;

	register_callback();
	for (int i = 0; i < COLUMN_CACHE; i++)
		if (column_cache[i].relid == relid && bms_equal(column_cache[i].selected, selected))
		{
			strlcpy(out, column_cache[i].columns, LOG_RECORD_COLUMNS);
			return;
		}
	rel = RelationIdGetRelation(relid);
	crm_gdpr_column_list(rel, selected, out);
	RelationClose(rel);
	e = &column_cache[column_cache_next];
	column_cache_next = (column_cache_next + 1) % COLUMN_CACHE;
	bms_free(e->selected);
	old = MemoryContextSwitchTo(TopMemoryContext);
	e->selected = bms_copy(selected);
	MemoryContextSwitchTo(old);
	e->relid = relid;
	strlcpy(e->columns, out, LOG_RECORD_COLUMNS);
}

const RelInfo *
crm_gdpr_rel_info(Oid relid)
{
	RelInfo    *e;
	Relation	rel;
	const char *subject_column;

	register_callback();
	for (int i = 0; i < REL_CACHE; i++)
		if (rel_cache[i].relid == relid)
			return &rel_cache[i];
	rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(rel))
		return NULL;
	e = &rel_cache[rel_cache_next];
	rel_cache_next = (rel_cache_next + 1) % REL_CACHE;
	subject_column = crm_gdpr_registered_subject_column(rel);
	e->relid = relid;
	e->registered = subject_column != NULL;
	e->subject_attnum = subject_column && subject_column[0] ? attnameAttNum(rel, subject_column, false) : 0;
	RelationClose(rel);
	return e;
}
