/*
 * crm_gdpr.h — the module itself (crm_gdpr.c) and what every part uses.
 *
 * Each subsystem has a header of its own: settings.h (guc.c), keys.h
 * (keys.c, crypto.c), access_log.h (the access log's files), read_hook.h
 * (the read hooks' files), workers.h (the background workers).
 * doc/architecture.md says which file owns what.
 */
#ifndef CRM_GDPR_H
#define CRM_GDPR_H

/* Whether the library was loaded through shared_preload_libraries. */
extern bool crm_gdpr_preloaded(void);

/* Raise a clear error, with a hint, when a feature needs preloading. */
extern void crm_gdpr_require_preload(const char *feature);

/* Set in the extension's own workers: their reads are not logged. */
extern bool crm_gdpr_in_own_worker;

/* Run SPI as the owner of a trigger function (see owner_context.c). */
typedef struct OwnerContext
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nest_level;
	int			saved_owner_exec_level;
	int			saved_owner_utility_level;
	Oid			saved_owner_relid;
} OwnerContext;

extern void crm_gdpr_enter_owner_context(Oid fn_oid, OwnerContext *ctx);
extern void crm_gdpr_leave_owner_context(OwnerContext *ctx);
extern void crm_gdpr_enter_table_owner_context(Oid relid, OwnerContext *ctx);
extern void crm_gdpr_leave_table_owner_context(OwnerContext *ctx);
extern void crm_gdpr_spi_read_as_table_owner(Oid relid, const char *sql, const char *what);
/* owner_context.c: the types of a statement's $n, as its text implies them */
extern void crm_gdpr_infer_param_types(const char *query, Oid **types, int *ntypes);
/* owner_plans.c: the plan of a statement run as relid's owner, kept for the session (in SPI) */
struct _SPI_plan;
extern struct _SPI_plan *crm_gdpr_kept_owner_plan(Oid relid, const char *query, bool has_params, bool in_use,
												  Oid **types, int *ntypes);
/* > 0 while gdpr._owner_exec/_owner_query run a statement as a table's owner. */
extern int	crm_gdpr_owner_exec_depth;
/*
 * The executor nesting (read_hook.c) at which the innermost of them started:
 * its own statements start there; what they run nested (the owner's
 * triggers, functions) starts deeper and is logged as any read.
 */
extern int	crm_gdpr_owner_exec_level;
extern int	crm_gdpr_exec_nesting(void);
/*
 * Whether what runs now is the extension's statement itself (or its own
 * triggers, at its end), not code of the owner's it runs nested (security
 * review round 25.3).
 */
extern bool crm_gdpr_in_owner_statement(void);
/* The table whose owner runs the extension's innermost statement (InvalidOid when none). */
extern Oid	crm_gdpr_owner_statement_table(void);
/* read_hook.c: utility statements under way, and the role that runs the innermost one. */
extern int	crm_gdpr_utility_nesting(void);
extern Oid	crm_gdpr_utility_runner(void);
/* read_hook.c: a foreign key's query planned, started or run (returns what _end takes) */
extern int	crm_gdpr_foreign_key_begin(void);
extern void crm_gdpr_foreign_key_end(int fk);
/* The planner's check that a statement run as owner is still the extension's own (no rule). */
struct Query;
extern void crm_gdpr_check_owner_query(struct Query *parse);

/* Raise an internal error naming the statement when SPI returns another result than expected. */
extern void crm_gdpr_spi_check(int result, int expected, const char *what);

/* The subsystems' entry points, called by _PG_init. */
extern void crm_gdpr_read_hook_init(bool preloading);
extern void crm_gdpr_read_planner_init(bool preloading);
extern void crm_gdpr_restriction_init(void);
/* restriction.c: whether any restriction is in force (cached per backend), asked as fn_oid's owner */
extern bool crm_gdpr_restrictions_in_force(Oid fn_oid);
extern uint64 crm_gdpr_restrictions_generation(void);
/* restriction.c: refuse a write whose old rows (a transition table) belong to a restricted subject */
struct TriggerData;
extern void crm_gdpr_refuse_restricted_write(struct TriggerData *td, Oid fn_oid, const char *old_rows);
/* suppression_gate.c: whether the suppression list is empty (cached); check a statement's new rows */
extern bool crm_gdpr_suppression_list_empty(Oid fn_oid);
extern void crm_gdpr_check_suppression(struct TriggerData *td, Oid fn_oid, const char *key_column);
/* own_ddl.c: open or close the door of the extension's own DDL; its previous state */
extern bool crm_gdpr_set_own_ddl(bool open);

/* tree_guard.c: rows enter and leave a registered table's tree only through logged statements */
extern void crm_gdpr_guard_tree(Node *tree);
extern void crm_gdpr_guard_tree_after(Node *tree);
extern void crm_gdpr_tree_guard_init(bool preloading);

#endif							/* CRM_GDPR_H */
