/*
 * read_hook.h — what the read hooks' files share: the registered tables a
 * query reads (read_subjects.c finds them and their subjects), the relation
 * cache (rel_cache.c), the rows read and their subjects (read_count.c,
 * read_subject_set.c), and the hooks themselves (read_hook.c).
 */
#ifndef CRM_GDPR_READ_HOOK_H
#define CRM_GDPR_READ_HOOK_H

#include "executor/execdesc.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/relcache.h"

#include "access_log.h"

/*
 * The distinct subject keys of the rows a query read from one table
 * (read_subject_set.c): an open-addressing set of at most
 * crm_gdpr.log_subjects_max keys, in the set itself while it holds one key
 * (a read by key allocates nothing), then allocated and grown by doubling;
 * one copy per distinct key (none for a key passed by value) and its text,
 * nothing per row.
 */
typedef struct SubjectKey
{
	Datum		value;			/* the key (a copy), valid when used */
	char	   *text;			/* put out once (into digits for an integer) */
	uint32		hash;
	bool		used;
	char		digits[MAXINT8LEN + 1];
} SubjectKey;

#define SUBJECT_SET_INLINE 4	/* entries in the set itself (one key: at most half full) */

typedef struct SubjectSet
{
	int			max;			/* crm_gdpr.log_subjects_max when the query started */
	int			count;
	bool		truncated;		/* more subjects than max, or rows whose key could not be read */
	int16		typlen;			/* the key's type, from its first row */
	bool		typbyval;
	Oid			typid;
	FmgrInfo	output;			/* the key type's output function (not for an integer) */
	Datum		last;			/* the last key met (passed by value), once count > 0 */
	uint32		mask;			/* entries: mask + 1 of them, at most half used */
	SubjectKey *entries;		/* first, or allocated in cxt when it grew */
	MemoryContext cxt;			/* the query's */
	SubjectKey	first[SUBJECT_SET_INLINE];
} SubjectSet;

/* One registered table a query reads. */
typedef struct ReadRel
{
	Oid			relid;
	Oid			registered_as;	/* RelInfo.registered_as */
	Index		rti;			/* its range table index */
	bool		returning;		/* read by UPDATE/DELETE ... RETURNING */
	bool		write_scan;		/* a write's own table, read because the write passes values on (read_leaks.c) */
	int64		rows;			/* rows read from it so far (read_count.c) */
	int64		failing_rows;	/* rows under examination at the last error or message (read_failing.c) */
	struct SubjectSet *failing; /* their subjects, or NULL */
	char	   *table_name;		/* on a standby, its name taken at the start; NULL */
	SubjectSet	subjects;
	char		columns[LOG_RECORD_COLUMNS];
} ReadRel;

/*
 * A link of a table whose row carries its subject's key (rel_links.c):
 * column key_attnum, for the rows whose type column holds type_value (a
 * polymorphic link) or every row.
 */
#define MAX_READ_LINKS 4
typedef struct SubjectLink
{
	AttrNumber	key_attnum;
	AttrNumber	type_attnum;	/* 0: every row */
	int			type_len;
	char		type_value[NAMEDATALEN];
} SubjectLink;

/* Where a counted node's rows have their subject key. */
typedef enum KeySource
{
	KEY_NONE,					/* the table has no subject key column: nobody is named */
	KEY_UNKNOWN,				/* it has one, but this node's rows do not carry it */
	KEY_SCAN,					/* the node's scan tuple, column key_attnum */
	KEY_LINKS,					/* the node's scan tuple, the columns of its links */
	KEY_RETURNING				/* the row UPDATE/DELETE ... RETURNING returned (its result relation's) */
} KeySource;

/* A plan node whose rows are counted as rows read from one ReadRel. */
typedef struct CountedNode
{
	PlanState  *node;
	ExecProcNodeMtd real;		/* its own ExecProcNode */
	int			rel;			/* index in QueryReads.rels */
	KeySource	key;
	AttrNumber	key_attnum;		/* KEY_SCAN: in the scan tuple */
	int			nlinks;			/* KEY_LINKS: the table's links (a copy) */
	SubjectLink *links;
	bool		links_indirect; /* RelInfo.links_indirect */
	bool		count_all;		/* qual is ON CONFLICT's (node NULL): every row it is evaluated on is a read */
	ExprState  *qual;			/* its condition, when that passes values on: the rows it rejects are reads too */
	ExprStateEvalFunc real_qual;
	bool		running;		/* inside node's ExecProcNode: its scan tuple is not counted yet */
} CountedNode;

/* What one running query reads; lives in its executor memory. */
typedef struct QueryReads
{
	QueryDesc  *query;
	EState	   *estate;
	struct QueryReads *next;
	bool		linked;
	bool		recorded;		/* its records are sent */
	int64		limit;			/* crm_gdpr.max_rows_per_query for this reader, or 0 */
	NameData	role;			/* who reads, taken at its start */
	NameData	session_role;
	int			ncounted;
	CountedNode *counted;		/* first, or allocated when more nodes are counted */
	CountedNode first[2];		/* a query that scans one registered table allocates no more */
	MemoryContextCallback freed;	/* read_hook.c: the entry goes with the executor's memory */
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
	int			nlinks;			/* when subject_attnum is 0: the links whose column names the subject */
	bool		links_partial;	/* some such link cannot be followed by the read hook */
	bool		links_indirect; /* some link goes through another table: a row no link names may be someone's */
	SubjectLink links[MAX_READ_LINKS];
} RelInfo;

extern const RelInfo *crm_gdpr_rel_info(Oid relid);
extern void crm_gdpr_read_links(Relation rel, Oid registered_as, RelInfo *e);
extern void crm_gdpr_column_list(Relation rel, Bitmapset *selected, char *out);
extern void crm_gdpr_cached_column_list(Oid relid, Bitmapset *selected, char *out);

/* read_subjects.c: the registered tables a query reads, their records */
extern QueryReads *crm_gdpr_find_reads(QueryDesc *query);
extern void crm_gdpr_record_query(QueryReads *reads, const char *detail);

/* read_subject_set.c: the subjects of the rows read */
extern void crm_gdpr_subject_set_init(SubjectSet *set, MemoryContext cxt);
extern void crm_gdpr_subject_set_add(SubjectSet *set, TupleTableSlot *slot, AttrNumber attnum);
extern int	crm_gdpr_subject_set_texts(SubjectSet *set, const char **out);
extern void crm_gdpr_subject_set_prepare(SubjectSet *set, TupleDesc desc, AttrNumber attnum);
extern bool crm_gdpr_subject_set_prepared(const SubjectSet *set);
extern void crm_gdpr_subject_set_init_like(SubjectSet *set, const SubjectSet *like, MemoryContext cxt);
extern void crm_gdpr_subject_set_clear(SubjectSet *set);
extern void crm_gdpr_subject_set_merge(SubjectSet *into, const SubjectSet *from);

/* read_count.c: rows read from registered tables, the row guard */
extern void crm_gdpr_count_reads(QueryReads *reads, PlanState *planstate);
extern void crm_gdpr_note_subject(SubjectSet *set, const CountedNode *c);
/* read_failing.c: the rows under examination when a read or a write fails */
#define FAILING_WRITE_INLINE 2	/* result relations kept in FailingWrite itself */
typedef struct FailingWrite
{
	PlanState  *planstate;		/* the write's plan */
	int			nresults;		/* its result relations (a partitioned table's partitions) */
	Index	   *rtis;			/* their range table indexes */
	AttrNumber *key_attnums;	/* and their subject key columns, 0 where unknown */
	int64		rows;			/* rows under examination at the last message */
	SubjectSet	subjects;		/* theirs */
	Index		first_rtis[FAILING_WRITE_INLINE];
	AttrNumber	first_key_attnums[FAILING_WRITE_INLINE];
} FailingWrite;
extern void crm_gdpr_note_failing_rows(void *arg);
extern void crm_gdpr_add_failing_rows(QueryReads *reads);
extern void crm_gdpr_failing_write_init(FailingWrite *f, QueryDesc *query);
extern void crm_gdpr_note_failing_write(void *arg);
/* read_leaks.c: whether a condition or expression hands a row's values to a function that may pass them on */
extern bool crm_gdpr_expr_passes_values_on(Node *node);
extern bool crm_gdpr_on_conflict_passes_values_on(ModifyTable *mt);
/* read_leaks.c: whether any node of the plan does (a write's own scan is then a read) */
extern bool crm_gdpr_plan_passes_values_on(PlanState *planstate);

/* restriction_reads.c: the gdpr_restriction policy hid the row it was last asked about */
extern bool crm_gdpr_restriction_hid_row;

/* read_hook.c: the queries running in this backend that read registered tables */
extern QueryReads *crm_gdpr_running_reads(void);
/* read_hook.c: whether this backend's reads are logged now */
extern bool crm_gdpr_reads_are_logged(void);
/* running_writes.c: the writes running, a failed one's record */
extern void crm_gdpr_note_running_write(QueryDesc *query);
extern void crm_gdpr_note_write_ended(MemoryContext es_query_cxt);
extern FailingWrite *crm_gdpr_failing_write_of(MemoryContext es_query_cxt);
/* running_writes.c: whether the statement with this executor memory is an UPDATE, DELETE or MERGE */
extern bool crm_gdpr_query_writes(MemoryContext es_query_cxt);

/* log_record.c: one read's record, to the queue or (on a standby) the server log */
extern void crm_gdpr_record_read(const char *operation, Oid relid, const char *columns, int64 rows,
								 int nsubjects, const char *const *subjects, const char *refused);
extern void crm_gdpr_record_read_as(const char *role, const char *session_role, const char *operation, Oid relid,
									const char *table_name, const char *columns, int64 rows, int nsubjects,
									const char *const *subjects, const char *detail);

#endif							/* CRM_GDPR_READ_HOOK_H */
