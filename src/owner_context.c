/*
 * owner_context.c — run SQL as someone else, in a security-restricted context.
 *
 * Two uses, one mechanism (that of VACUUM, ANALYZE and REFRESH MATERIALIZED
 * VIEW): switch the current user, forbid what a restricted operation forbids
 * (SET ROLE, temporary objects, ...), and pin a safe search_path.
 *
 * - Triggers on registered tables fire for whoever writes to the CRM, and
 *   that role has no privilege in schema gdpr.  Like a SECURITY DEFINER
 *   function, the trigger switches to the owner of its own function for the
 *   queries it makes; unlike one, it can first read GetUserId().
 * - Every statement the extension runs on a CRM table (purge, erasure,
 *   export, key rotation, subject look-ups) goes through gdpr._owner_exec()
 *   or gdpr._owner_query(): it runs as the table's owner, never as the
 *   superuser who owns the extension, so that the owner's triggers, index
 *   expressions, defaults, RLS policies, rules and CHECK functions never run
 *   with rights the owner does not have.  Those statements call nothing of
 *   schema gdpr: what the extension computes (pseudonyms, decryption) is done
 *   before or after, and passed in as parameters.
 *
 * On error, (sub)transaction abort restores the user and the GUC nest level.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "crm_gdpr.h"

#define SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/* > 0 while a statement of the extension runs as a table's owner. */
int			crm_gdpr_owner_exec_depth = 0;
int			crm_gdpr_owner_exec_level = 0;
/* The utility statements under way when it started, and its table. */
static int	owner_utility_level = 0;
static Oid	owner_relid = InvalidOid;
/* Kept plans being run (owner_plans.c drops none while one runs). */
static int	kept_plans_running = 0;

static Oid
function_owner(Oid fn_oid)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);
	return owner;
}

/* The owner of a CRM table; 42P01 when it no longer exists. */
static Oid
table_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

static void
enter_user_context(Oid userid, OwnerContext *ctx)
{
	GetUserIdAndSecContext(&ctx->saved_userid, &ctx->saved_sec_context);
	ctx->guc_nest_level = NewGUCNestLevel();
	SetUserIdAndSecContext(userid,
						   ctx->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/*
	 * The extension's functions already run with this search_path (their SET
	 * clause): setting it again would only make every later name look-up
	 * recompute the path.  The nest level above still undoes whatever the
	 * owner's code sets during the statement.
	 */
	if (namespace_search_path == NULL || strcmp(namespace_search_path, SAFE_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", SAFE_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

void
crm_gdpr_enter_owner_context(Oid fn_oid, OwnerContext *ctx)
{
	enter_user_context(function_owner(fn_oid), ctx);
}

void
crm_gdpr_leave_owner_context(OwnerContext *ctx)
{
	AtEOXact_GUC(true, ctx->guc_nest_level);
	SetUserIdAndSecContext(ctx->saved_userid, ctx->saved_sec_context);
}

/*
 * The same as the owner of a CRM table, counted as the extension's own
 * statement (crm_gdpr_owner_exec_depth): for C code that reads a CRM table
 * itself (restriction_reads.c).  The caller leaves in PG_FINALLY.
 */
/* Where the extension's statement on relid starts (saved in ctx, see crm_gdpr_in_owner_statement). */
static void
begin_owner_statement(Oid relid, OwnerContext *ctx)
{
	ctx->saved_owner_exec_level = crm_gdpr_owner_exec_level;
	ctx->saved_owner_utility_level = owner_utility_level;
	ctx->saved_owner_relid = owner_relid;
	crm_gdpr_owner_exec_level = crm_gdpr_exec_nesting();
	owner_utility_level = crm_gdpr_utility_nesting();
	owner_relid = relid;
	crm_gdpr_owner_exec_depth++;
}

static void
end_owner_statement(OwnerContext *ctx)
{
	crm_gdpr_owner_exec_depth--;
	crm_gdpr_owner_exec_level = ctx->saved_owner_exec_level;
	owner_utility_level = ctx->saved_owner_utility_level;
	owner_relid = ctx->saved_owner_relid;
}

void
crm_gdpr_enter_table_owner_context(Oid relid, OwnerContext *ctx)
{
	enter_user_context(table_owner(relid), ctx);
	begin_owner_statement(relid, ctx);
}

void
crm_gdpr_leave_table_owner_context(OwnerContext *ctx)
{
	end_owner_statement(ctx);
	crm_gdpr_leave_owner_context(ctx);
}

/*
 * The extension's statement starts at crm_gdpr_owner_exec_level; its rows
 * are read and written, and its AFTER triggers fire (those of a foreign
 * key's cascade too: the cascade's query fires none itself), one level
 * deeper.  Anything deeper is a statement that code of the owner's (a
 * trigger, a function) made: the owner's own, which the exemptions granted
 * to the extension's statement (restriction of processing, the writer
 * named in the log) do not cover.
 */
bool
crm_gdpr_in_owner_statement(void)
{
	/*
	 * A utility statement runs no executor: the owner's trigger's TRUNCATE
	 * or ALTER TABLE would seem to be the extension's statement by the
	 * executor's nesting alone (security review round 26.2).
	 */
	return crm_gdpr_owner_exec_depth > 0 && crm_gdpr_exec_nesting() <= crm_gdpr_owner_exec_level + 1 &&
		crm_gdpr_utility_nesting() == owner_utility_level;
}

Oid
crm_gdpr_owner_statement_table(void)
{
	return crm_gdpr_owner_exec_depth > 0 ? owner_relid : InvalidOid;
}

/*
 * A rule of the owner's on a table the extension's statement writes would
 * run at the statement's own level, with its exemptions: a DO ALSO rule's
 * query (copying the table, the erased person's row included, where its
 * owner reads it unlogged), a DO INSTEAD one's in its place (an erasure
 * that erases nothing).  The DDL guard refuses CREATE RULE on registered
 * tables; this is the backstop: the planner sees every query the rewriter
 * made of the statement (security review round 25.2).
 */
void
crm_gdpr_check_owner_query(Query *parse)
{
	if (crm_gdpr_owner_exec_depth == 0 || crm_gdpr_exec_nesting() != crm_gdpr_owner_exec_level ||
		parse->querySource == QSRC_ORIGINAL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("a rule changes a statement that crm_gdpr runs as a table's owner"),
			 errdetail("A rule on a table of personal data would run its own queries in place of, or with, the extension's purge, erasure or export."),
			 errhint("Drop the rule (CREATE RULE is refused on registered tables).")));
}

/*
 * Run a read-only query on CRM rows as the owner of CRM table relid, in the
 * caller's SPI connection, so that a trigger's transition tables are seen
 * (log_write.c, restriction.c: the subjects of a statement's rows, through
 * the registry's links).  Made as the extension's owner, that query would
 * call with its rights whatever a cast in it leads to: the table owner's own
 * cast of his own type to text (CREATE CAST) included.  Results in
 * SPI_tuptable.
 */
void
crm_gdpr_spi_read_as_table_owner(Oid relid, const char *sql, const char *what)
{
	OwnerContext ctx;

	crm_gdpr_enter_table_owner_context(relid, &ctx);
	PG_TRY();
	{
		crm_gdpr_spi_check(SPI_execute(sql, true, 0), SPI_OK_SELECT, what);
	}
	PG_FINALLY();
	{
		crm_gdpr_leave_table_owner_context(&ctx);
	}
	PG_END_TRY();
}

/*
 * Parameters: the caller passes text ($1, $2, ... as the elements of a
 * text[]), the statement says their types by how it uses them ($1::text[],
 * $2::tid[], decode($1, 'hex')), as PREPARE without types does.  Each value
 * is then converted by its type's input function and given to the planner as
 * a constant: "cardinality($1::text[]) = 0" is folded once, not cast again
 * for every row (array_in is only STABLE).
 */
typedef struct VariableParams
{
	Oid		   *types;
	int			ntypes;
} VariableParams;

/* The types of the parameters of query, as its text implies them (text when it does not). */
void
crm_gdpr_infer_param_types(const char *query, Oid **types, int *ntypes)
{
	List	   *raw = raw_parser(query, RAW_PARSE_DEFAULT);

	if (list_length(raw) != 1)
		elog(ERROR, "crm_gdpr: a statement run as owner must be one statement");
	(void) parse_analyze_varparams(linitial_node(RawStmt, raw), query, types, ntypes, NULL);
	for (int i = 0; i < *ntypes; i++)
		if ((*types)[i] == InvalidOid || (*types)[i] == UNKNOWNOID)
			(*types)[i] = TEXTOID;
}

/* The values of params, converted to the types the statement gives them. */
static void
typed_params(ArrayType *params, VariableParams *vp, Datum **values, char **nulls)
{
	Datum	   *elems = NULL;
	bool	   *isnull = NULL;
	int			n = 0;

	if (params != NULL)
	{
		if (ARR_NDIM(params) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("statement parameters must be a one-dimensional text array")));
		deconstruct_array(params, TEXTOID, -1, false, TYPALIGN_INT, &elems, &isnull, &n);
	}
	if (vp->ntypes > n)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("statement uses $%d but %d parameter(s) were given", vp->ntypes, n)));
	*values = palloc0(sizeof(Datum) * Max(vp->ntypes, 1));
	*nulls = palloc0(Max(vp->ntypes, 1));
	for (int i = 0; i < vp->ntypes; i++)
	{
		Oid			input;
		Oid			ioparam;

		(*nulls)[i] = isnull[i] ? 'n' : ' ';
		if (!isnull[i])
		{
			getTypeInputInfo(vp->types[i], &input, &ioparam);
			(*values)[i] = OidInputFunctionCall(input, TextDatumGetCString(elems[i]), ioparam, -1);
		}
	}
}

/*
 * Run sql as the owner of relid: the rows it processed, and in *result the
 * first column of its first row when want_result (copied out of SPI).  With
 * keep_plan, its plan is kept for the session (owner_plans.c).
 */
static uint64
run_as_owner(Oid relid, text *sql, ArrayType *params, bool want_result, bool keep_plan,
			 Datum *result, bool *result_null)
{
	Oid			owner = table_owner(relid);
	VariableParams vp = {NULL, 0};
	Datum	   *values;
	char	   *nulls;
	char	   *query = text_to_cstring(sql);
	OwnerContext ctx;
	volatile uint64 processed = 0;
	int			rc;
	bool		has_params = params != NULL && ArrayGetNItems(ARR_NDIM(params), ARR_DIMS(params)) > 0;
	SPIPlanPtr	plan = NULL;
	int			running = kept_plans_running;

	*result_null = true;
	enter_user_context(owner, &ctx);
	begin_owner_statement(relid, &ctx);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "crm_gdpr: SPI_connect failed");
		/* Only a statement given parameters is parsed once more for their types. */
		if (keep_plan)
			plan = crm_gdpr_kept_owner_plan(relid, query, has_params, kept_plans_running > 0,
											&vp.types, &vp.ntypes);
		if (plan == NULL && has_params)
			crm_gdpr_infer_param_types(query, &vp.types, &vp.ntypes);
		typed_params(params, &vp, &values, &nulls);
		if (plan != NULL)
		{
			kept_plans_running++;
			rc = SPI_execute_plan(plan, values, nulls, false, 0);
			kept_plans_running--;
		}
		else
			rc = SPI_execute_with_args(query, vp.ntypes, vp.types, values, nulls, false, 0);
		if (rc < 0)
			elog(ERROR, "crm_gdpr: statement on %u failed: %s", relid, SPI_result_code_string(rc));
		processed = SPI_processed;
		if (want_result && SPI_tuptable != NULL && SPI_processed > 0)
		{
			TupleDesc	desc = SPI_tuptable->tupdesc;
			Datum		d;

			if (desc->natts != 1 || TupleDescAttr(desc, 0)->atttypid != JSONBOID)
				elog(ERROR, "crm_gdpr: a statement run as owner must return one jsonb column");
			d = SPI_getbinval(SPI_tuptable->vals[0], desc, 1, result_null);
			if (!*result_null)
				*result = SPI_datumTransfer(d, false, -1);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		end_owner_statement(&ctx);
		kept_plans_running = running;
	}
	PG_END_TRY();
	crm_gdpr_leave_owner_context(&ctx);
	pfree(query);
	return processed;
}

static Datum
owner_exec(FunctionCallInfo fcinfo, bool keep_plan)
{
	Datum		unused;
	bool		isnull;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table and statement must not be NULL")));
	PG_RETURN_INT64((int64) run_as_owner(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1),
										 PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
										 false, keep_plan, &unused, &isnull));
}

static Datum
owner_query(FunctionCallInfo fcinfo, bool keep_plan)
{
	Datum		result = (Datum) 0;
	bool		isnull;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table and statement must not be NULL")));
	(void) run_as_owner(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1),
						PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), true, keep_plan, &result, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* gdpr._owner_exec(tbl regclass, sql text, VARIADIC params text[]): rows processed. */
PG_FUNCTION_INFO_V1(gdpr_owner_exec);
Datum
gdpr_owner_exec(PG_FUNCTION_ARGS)
{
	return owner_exec(fcinfo, false);
}

/* gdpr._owner_query(tbl regclass, sql text, VARIADIC params text[]): the jsonb it returns. */
PG_FUNCTION_INFO_V1(gdpr_owner_query);
Datum
gdpr_owner_query(PG_FUNCTION_ARGS)
{
	return owner_query(fcinfo, false);
}

/*
 * gdpr._owner_exec_kept / gdpr._owner_query_kept: the same, the statement's
 * plan kept for the session (owner_plans.c): for a text that is the same
 * whatever the subject, his values passed in params.
 */
PG_FUNCTION_INFO_V1(gdpr_owner_exec_kept);
Datum
gdpr_owner_exec_kept(PG_FUNCTION_ARGS)
{
	return owner_exec(fcinfo, true);
}

PG_FUNCTION_INFO_V1(gdpr_owner_query_kept);
Datum
gdpr_owner_query_kept(PG_FUNCTION_ARGS)
{
	return owner_query(fcinfo, true);
}
