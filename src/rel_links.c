/*
 * rel_links.c — which columns of a linked table's row name its subject,
 * for the read hook (issue 20: reads of linked tables).
 *
 * A table registered with one plain link to its subject's key has that
 * column as its INSERT log trigger's argument (rel_cache.c).  A table linked by
 * gdpr.link_table() polymorphically (Odoo's mail_message: res_id when model
 * = 'res.partner') or by several links (a junction row such as Twenty's
 * "noteTarget", personId or companyId) has none: its links are read here
 * from gdpr.subject_links, once per relation (rel_cache.c keeps them), and
 * read_count.c takes the subject of each row from the link columns that
 * refer to its subject table's key, where the row's type column holds the
 * link's type value.  Links through other tables (content reached through
 * a junction: note <- "noteTarget"; Odoo's chatter on a lead) name nobody:
 * the row does not carry the key.  A row that no direct link names, of a
 * table that has such links, makes the read's subjects incomplete
 * ("subjects_truncated": access_history lists it as "may include you").
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "read_hook.h"

/* A column of a row of one of the extension's tables, by name. */
static Datum
column_of(Relation rel, HeapTuple tup, const char *column, bool *isnull)
{
	return heap_getattr(tup, attnameAttNum(rel, column, false), RelationGetDescr(rel), isnull);
}

/* The extension's table gdpr.name, opened, or NULL when it is not installed here. */
static Relation
open_registry(const char *name)
{
	Oid			nsp = get_namespace_oid("gdpr", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	return OidIsValid(relid) ? table_open(relid, AccessShareLock) : NULL;
}

/* column (an oid or a name, as text) of the row of gdpr.table whose tbl = relid; NULL when none. */
static char *
registry_value(const char *table, Oid relid, const char *column)
{
	Relation	rel = open_registry(table);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *value = NULL;

	if (rel == NULL)
		return NULL;
	ScanKeyInit(&key, attnameAttNum(rel, "tbl", false), BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = column_of(rel, tup, column, &isnull);
		Oid			type = TupleDescAttr(RelationGetDescr(rel), attnameAttNum(rel, column, false) - 1)->atttypid;

		if (!isnull)
			value = type == NAMEOID ? pstrdup(NameStr(*DatumGetName(d))) : psprintf("%u", DatumGetObjectId(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return value;
}

/* A link of rel, if its columns are such that a row names its subject. */
static bool
add_link(Relation rel, RelInfo *e, const char *link_column, const char *type_column, const char *type_value)
{
	SubjectLink *l = &e->links[e->nlinks];
	AttrNumber	key = attnameAttNum(rel, link_column, false);
	Oid			key_type;

	if (key <= 0 || e->nlinks == MAX_READ_LINKS)
		return false;
	key_type = TupleDescAttr(RelationGetDescr(rel), key - 1)->atttypid;
	/* One subject set per table read: its keys are of one type. */
	if (e->nlinks > 0 && key_type != TupleDescAttr(RelationGetDescr(rel), e->links[0].key_attnum - 1)->atttypid)
		return false;
	memset(l, 0, sizeof(SubjectLink));
	l->key_attnum = key;
	if (type_column)
	{
		Oid			type_type;

		l->type_attnum = attnameAttNum(rel, type_column, false);
		if (l->type_attnum <= 0)
			return false;
		type_type = TupleDescAttr(RelationGetDescr(rel), l->type_attnum - 1)->atttypid;
		/* Compared byte for byte: text and varchar only (Odoo's and Twenty's). */
		if ((type_type != TEXTOID && type_type != VARCHAROID) || strlen(type_value) >= sizeof(l->type_value))
			return false;
		l->type_len = strlen(type_value);
		memcpy(l->type_value, type_value, l->type_len);
	}
	e->nlinks++;
	return true;
}

/*
 * The links of rel (registered as registered_as) whose column refers to its
 * subject table's key, into e->links; e->links_partial when some such link
 * cannot be followed here (its subjects are then said to be incomplete).
 */
void
crm_gdpr_read_links(Relation rel, Oid registered_as, RelInfo *e)
{
	char	   *subject_table = registry_value("registered_tables", registered_as, "subject_table");
	char	   *id_column = subject_table ? registry_value("subject_tables", atooid(subject_table), "id_column") : NULL;
	Relation	links;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	e->nlinks = 0;
	e->links_partial = false;
	e->links_indirect = false;
	if (id_column == NULL || (links = open_registry("subject_links")) == NULL)
		return;
	ScanKeyInit(&key, attnameAttNum(links, "tbl", false), BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(registered_as));
	scan = systable_beginscan(links, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull,
					type_null;
		Oid			parent = DatumGetObjectId(column_of(links, tup, "parent_table", &isnull));
		Name		parent_column = DatumGetName(column_of(links, tup, "parent_column", &isnull));
		Name		link_column = DatumGetName(column_of(links, tup, "link_column", &isnull));
		Datum		type_column = column_of(links, tup, "type_column", &type_null);
		Datum		type_value = column_of(links, tup, "type_value", &isnull);

		if (parent != atooid(subject_table) || strcmp(NameStr(*parent_column), id_column) != 0)
		{
			e->links_indirect = true;	/* through another table: the row does not carry the key */
			continue;
		}
		if (!add_link(rel, e, NameStr(*link_column), type_null ? NULL : NameStr(*DatumGetName(type_column)),
					  type_null || isnull ? NULL : TextDatumGetCString(type_value)))
			e->links_partial = true;
	}
	systable_endscan(scan);
	table_close(links, AccessShareLock);
}
