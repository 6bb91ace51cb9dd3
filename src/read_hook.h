/*
 * read_hook.h — what the read hooks' files share: the registered tables a
 * query reads (read_subjects.c finds them and their subjects), the relation
 * cache (rel_cache.c), and the hooks themselves (read_hook.c).
 */
#ifndef CRM_GDPR_READ_HOOK_H
#define CRM_GDPR_READ_HOOK_H

#include "executor/execdesc.h"
#include "nodes/execnodes.h"
#include "utils/relcache.h"

#include "access_log.h"

/* One registered table a query reads. */
typedef struct ReadRel
{
	Oid			relid;
	Oid			registered_as;	/* RelInfo.registered_as */
	Index		rti;			/* its range table index */
	AttrNumber	subject_attnum; /* its subject key column, or 0 */
	AttrNumber	subject_resno;	/* result column with its subject key, or 0 */
	bool		returning;		/* read by UPDATE/DELETE ... RETURNING */
	int64		rows;			/* rows read from it so far (read_count.c) */
	int			nsubjects;
	char		columns[LOG_RECORD_COLUMNS];
	char		subjects[LOG_RECORD_SUBJECTS][LOG_RECORD_SUBJECT_LEN];
} ReadRel;

/* A plan node whose rows are counted as rows read from one ReadRel. */
typedef struct CountedNode
{
	PlanState  *node;
	ExecProcNodeMtd real;		/* its own ExecProcNode */
	int			rel;			/* index in QueryReads.rels */
} CountedNode;

/* What one running query reads; lives in its executor memory. */
typedef struct QueryReads
{
	DestReceiver wrapper;		/* first: the executor calls it as a DestReceiver */
	DestReceiver *inner;
	QueryDesc  *query;
	EState	   *estate;
	struct QueryReads *next;
	bool		linked;
	bool		recorded;		/* its records are sent */
	int64		limit;			/* crm_gdpr.max_rows_per_query for this reader, or 0 */
	NameData	role;			/* who reads, taken at its start */
	NameData	session_role;
	int			ncounted;
	CountedNode *counted;
	int			nrels;
	ReadRel		rels[FLEXIBLE_ARRAY_MEMBER];
} QueryReads;

/* rel_cache.c: whether a relation is registered, its subject key, column lists */
typedef struct RelInfo
{
	Oid			relid;
	bool		registered;
	Oid			registered_as;	/* the registered table it is, or is a partition or child of */
	AttrNumber	subject_attnum; /* 0 when unknown */
} RelInfo;

extern const RelInfo *crm_gdpr_rel_info(Oid relid);
extern const char *crm_gdpr_registered_subject_column(Relation rel);
extern void crm_gdpr_column_list(Relation rel, Bitmapset *selected, char *out);
extern void crm_gdpr_cached_column_list(Oid relid, Bitmapset *selected, char *out);

/* read_subjects.c: the registered tables and subjects of a query, the result wrapper */
extern QueryReads *crm_gdpr_find_reads(QueryDesc *query);
extern bool crm_gdpr_needs_wrapper(QueryReads *reads);
extern void crm_gdpr_record_query(QueryReads *reads, const char *detail);

/* read_count.c: rows read from registered tables, the row guard */
extern void crm_gdpr_count_reads(QueryReads *reads, PlanState *planstate);

/* read_hook.c: the queries running in this backend that read registered tables */
extern QueryReads *crm_gdpr_running_reads(void);

/* log_record.c: one read's record, to the queue or (on a standby) the server log */
extern void crm_gdpr_record_read(const char *operation, Oid relid, const char *columns, int64 rows,
								 int nsubjects, char subjects[][LOG_RECORD_SUBJECT_LEN], const char *refused);
extern void crm_gdpr_record_read_as(const char *role, const char *session_role, const char *operation, Oid relid,
									const char *columns, int64 rows, int nsubjects,
									char subjects[][LOG_RECORD_SUBJECT_LEN], const char *detail);

#endif							/* CRM_GDPR_READ_HOOK_H */
