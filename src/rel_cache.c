/*
 * rel_cache.c — whether a relation is registered, its subject key column,
 * and the column lists of its reads, cached per backend.
 *
 * The read hook asks for every relation of every query: the hot path of a
 * read opens nothing once a relation is known.  A relation is registered
 * when the registry (gdpr.registered_tables) holds it, or one of the tables
 * it is a partition or inheritance child of, present or future; its subject
 * key column is the argument of the registered table's INSERT log trigger
 * (register_table and unregister_table add and drop them, which
 * invalidates the relation).  A relcache invalidation of one relation (a
 * rename, a trigger added) forgets what is cached about that relation, or
 * everything when it is registered or unknown (its children may change);
 * a reset of the whole relcache forgets everything.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "nodes/bitmapset.h"
#include "parser/parse_relation.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "access_log.h"
#include "read_hook.h"

/* Whether relid is in the registry (gdpr.registered_tables, subject tables included). */
static bool
in_registry(Oid relid)
{
	Oid			nsp = get_namespace_oid("gdpr", true);
	Oid			registry = OidIsValid(nsp) ? get_relname_relid("registered_tables", nsp) : InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	if (!OidIsValid(registry))
		return false;			/* the extension is not installed in this database */
	rel = table_open(registry, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The registered table that relid is, or is a partition or inheritance child
 * of (at any depth), or InvalidOid.  The registry answers, never a trigger's
 * name: anyone can create a trigger named gdpr_log_insert on his own table.
 */
static Oid
registered_ancestor(Oid relid, int depth)
{
	Relation	inherits;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			found = InvalidOid;

	if (in_registry(relid))
		return relid;
	if (depth > 32)
		return InvalidOid;
	inherits = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(inherits, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (!OidIsValid(found) && HeapTupleIsValid(tup = systable_getnext(scan)))
		found = registered_ancestor(((Form_pg_inherits) GETSTRUCT(tup))->inhparent, depth + 1);
	systable_endscan(scan);
	table_close(inherits, AccessShareLock);
	return found;
}

/*
 * Whether a trigger calls the extension's gdpr._log_write(): anyone may name
 * a trigger of his own gdpr_log_insert (the DDL guard refuses it on a
 * registered table, 20_schema_sync.sql).
 */
static bool
calls_log_write(Oid fn)
{
	char	   *name = get_func_name(fn);
	bool		ours = name != NULL && strcmp(name, "_log_write") == 0 &&
		get_func_namespace(fn) == get_namespace_oid("gdpr", true);

	if (name)
		pfree(name);
	return ours;
}

/*
 * The subject key column a registered table's log triggers were given (""
 * when unknown): the INSERT trigger's argument.  Since 0.3 it is the only
 * one that has it: PostgreSQL copies every trigger's arguments for every
 * statement that writes the table (CopyTriggerDesc), so the other three
 * find it here, once per backend (log_write.c).
 */
static const char *
log_trigger_subject_column(Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	for (int i = 0; trigdesc && i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (strcmp(t->tgname, LOG_TRIGGER_PREFIX "insert") == 0 && calls_log_write(t->tgfoid))
			return t->tgnargs > 0 ? t->tgargs[0] : "";
	}
	return "";
}

/*
 * The subject key column of a registered table, or of the registered table
 * a partition or inheritance child belongs to, in the memory of the caller;
 * NULL when rel is not registered.
 */
static char *
subject_column_of(Relation rel, Oid *registered_as)
{
	Oid			ancestor = registered_ancestor(RelationGetRelid(rel), 0);
	Relation	arel;
	char	   *column;

	*registered_as = ancestor;
	if (!OidIsValid(ancestor))
		return NULL;
	if (ancestor == RelationGetRelid(rel))
		return pstrdup(log_trigger_subject_column(rel));
	arel = RelationIdGetRelation(ancestor);
	column = pstrdup(RelationIsValid(arel) ? log_trigger_subject_column(arel) : "");
	if (RelationIsValid(arel))
		RelationClose(arel);
	return column;
}

/* Whether rel is registered (in its own right or by a parent), and its subject key column ("" when unknown). */
const char *
crm_gdpr_registered_subject_column(Relation rel)
{
	Oid			registered_as;

	return subject_column_of(rel, &registered_as);
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
	int			length;			/* of columns, its terminator included */
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

/*
 * A relation changed: forget it.  Registering or unregistering a table adds
 * or drops its triggers, which invalidates it, but not its partitions and
 * children, which it does not know: any change to a registered table, or to
 * a table not cached (a new parent, perhaps), forgets every relation.
 */
static void
forget_relation(Datum arg, Oid relid)
{
	bool		all = !OidIsValid(relid);
	bool		cached = false;

	for (int i = 0; !all && i < REL_CACHE; i++)
		if (rel_cache[i].relid == relid)
		{
			cached = true;
			all = rel_cache[i].registered;
		}
	all = all || !cached;
	for (int i = 0; i < COLUMN_CACHE; i++)
		if (all || column_cache[i].relid == relid)
			column_cache[i].relid = InvalidOid;
	for (int i = 0; i < REL_CACHE; i++)
		if (all || rel_cache[i].relid == relid)
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
			/* Its length is known: no scan of it (strlcpy copies byte by byte). */
			memcpy(out, column_cache[i].columns, column_cache[i].length);
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
	e->length = strlen(out) + 1;
	memcpy(e->columns, out, e->length);
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
	subject_column = subject_column_of(rel, &e->registered_as);
	e->relid = relid;
	e->registered = subject_column != NULL;
	e->subject_attnum = subject_column && subject_column[0] ? attnameAttNum(rel, subject_column, false) : 0;
	e->nlinks = 0;
	e->links_partial = false;
	e->links_indirect = false;
	if (e->registered && e->subject_attnum <= 0)
		crm_gdpr_read_links(rel, e->registered_as, e);
	RelationClose(rel);
	return e;
}

/*
 * The registered table whose registry entry applies to relid: itself, or
 * the registered table it is a partition or inheritance child of; relid
 * when none (the caller's registry lookup then finds nothing, as before).
 */
Oid
crm_gdpr_registered_as(Oid relid)
{
	const RelInfo *info = crm_gdpr_rel_info(relid);

	return info && info->registered ? info->registered_as : relid;
}
