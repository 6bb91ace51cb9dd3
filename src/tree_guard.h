/*
 * tree_guard.h — what tree_guard.c (before a utility statement runs) and
 * tree_guard_after.c (after PostgreSQL did it) share.
 */
#ifndef CRM_GDPR_TREE_GUARD_H
#define CRM_GDPR_TREE_GUARD_H

#include "nodes/pg_list.h"
#include "storage/lockdefs.h"

/* What tree_holds_rows() finds. */
typedef enum RowsSeen
{
	ROWS_NONE,
	ROWS_SOME,
	ROWS_NOT_OWNER				/* not looked at: the caller does not own it */
} RowsSeen;

extern bool tree_is_registered(Oid relid);
extern bool tree_registered_through_ancestor(Oid relid);
extern RowsSeen tree_holds_rows(Oid relid, LOCKMODE lockmode);
extern RowsSeen tree_scan_rows(Oid relid, LOCKMODE lockmode);
extern void tree_refuse_kind(const char *child, char persistence, char kind, Oid parent);
extern List *tree_parents_of(Oid relid);
extern void tree_refuse_unregistered_parent(Oid child, Oid parent);

#endif
