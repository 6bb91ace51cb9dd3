/*
 * pg_compat.h — the differences between PostgreSQL majors that crm_gdpr
 * meets, in one place (15 is the oldest supported major; 17 and 18 are
 * tested, see doc/install.md).
 *
 * Each shim names what it stands for, so that the code using it reads the
 * same on every major and a new major adds lines here, not #ifs elsewhere.
 * The Makefile includes this file first in every C file (-include), so that
 * no file can miss a shim and no file names it.
 */
#ifndef CRM_GDPR_PG_COMPAT_H
#define CRM_GDPR_PG_COMPAT_H

#include "postgres.h"

#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "storage/proc.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"				/* 16 moved the varlena macros out of postgres.h */
#include "nodes/queryjumble.h"		/* 16 moved it from utils/ */
#include "parser/parse_relation.h"
#else
#include "utils/queryjumble.h"
#endif

/*
 * 18 names the module and its version in the magic block (shown by
 * pg_get_loaded_modules()); older majors have the bare block.  The Makefile
 * defines CRM_GDPR_VERSION from crm_gdpr.control.
 */
#if PG_VERSION_NUM >= 180000
#define CRM_GDPR_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "crm_gdpr", .version = CRM_GDPR_VERSION)
#else
#define CRM_GDPR_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * 17 moved the local transaction id into the backend's virtual transaction id.
 */
#if PG_VERSION_NUM >= 170000
#define MY_LOCAL_XID (MyProc->vxid.lxid)
#else
#define MY_LOCAL_XID (MyProc->lxid)
#endif

/*
 * 16 moved the permissions a query needs on a relation out of its range table
 * entry into RTEPermissionInfo (PlannedStmt.permInfos): the privileges it
 * requires and the columns it selects, NULL or 0 where it checks none (a view's
 * underlying relation, for one, still has an entry).
 */
static inline AclMode
rte_required_perms(PlannedStmt *stmt, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	return rte->perminfoindex == 0 ? 0 : getRTEPermissionInfo(stmt->permInfos, rte)->requiredPerms;
#else
	return rte->requiredPerms;
#endif
}

static inline Bitmapset *
rte_selected_cols(PlannedStmt *stmt, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	return rte->perminfoindex == 0 ? NULL : getRTEPermissionInfo(stmt->permInfos, rte)->selectedCols;
#else
	return rte->selectedCols;
#endif
}

/*
 * 18 dropped ExecutorRun's execute_once argument: a hook declares its
 * parameters with EXECUTOR_RUN_PARAMS and passes them on with EXECUTOR_RUN_ARGS.
 */
#if PG_VERSION_NUM >= 180000
#define EXECUTOR_RUN_PARAMS QueryDesc *query, ScanDirection direction, uint64 count
#define EXECUTOR_RUN_ARGS query, direction, count
#else
#define EXECUTOR_RUN_PARAMS QueryDesc *query, ScanDirection direction, uint64 count, bool execute_once
#define EXECUTOR_RUN_ARGS query, direction, count, execute_once
#endif

/* 16 replaced the per-class ownership checks by object_ownercheck(). */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#include "utils/acl.h"
#include "catalog/pg_class.h"
#define database_ownercheck(dboid, roleid) object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#define relation_ownercheck(relid, roleid) object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#include "utils/acl.h"
#define database_ownercheck(dboid, roleid) pg_database_ownercheck((dboid), (roleid))
#define relation_ownercheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#endif

/*
 * 17 added ALTER COLUMN ... SET EXPRESSION (a generated column's new
 * expression, computed on every row).
 */
#if PG_VERSION_NUM >= 170000
#define CRM_GDPR_HAS_SET_EXPRESSION 1
#endif

/*
 * 16 gave build_attrmap_by_name_if_req() a missing_ok argument; false keeps
 * 15's behaviour (a column of one descriptor missing from the other is an
 * error, which cannot happen between a partition and its parent).
 */
#if PG_VERSION_NUM >= 160000
#define attrmap_by_name_if_req(indesc, outdesc) build_attrmap_by_name_if_req((indesc), (outdesc), false)
#else
#define attrmap_by_name_if_req(indesc, outdesc) build_attrmap_by_name_if_req((indesc), (outdesc))
#endif

/*
 * Up to 15, ALTER TABLE turned ADD COLUMN / ADD CONSTRAINT that recurse to
 * children into subcommands of their own (16 dropped them).
 */
#if PG_VERSION_NUM < 160000
#define CRM_GDPR_HAS_RECURSE_SUBCOMMANDS 1
#endif

#endif							/* CRM_GDPR_PG_COMPAT_H */
