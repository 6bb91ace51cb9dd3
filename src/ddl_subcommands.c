/*
 * ddl_subcommands.c — what an ALTER TABLE did, for the DDL record of
 * registered tables (issue 18.4).
 *
 * An event trigger in SQL sees only "ALTER TABLE": not whether it changed a
 * column's type with a USING expression, gave a column a default, added a
 * generated column or a CHECK constraint — each of which makes code run on
 * the table's rows (a function in it reads every row being rewritten or
 * checked, a leak like one in an index expression).  The collected command
 * (pg_event_trigger_ddl_commands().command) holds the subcommands' parse
 * trees; this names those that run code on rows, and nothing else.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "tcop/deparse_utility.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "crm_gdpr.h"

/* Whether a new column's definition carries an expression: a default or a generation. */
static bool
column_has_expression(ColumnDef *def)
{
	ListCell   *lc;

	if (def->raw_default || def->cooked_default)
		return true;
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst_node(Constraint, lc);

		if (c->contype == CONSTR_DEFAULT || c->contype == CONSTR_GENERATED)
			return true;
	}
	return false;
}

/* The name of a subcommand that makes code run on the rows, or NULL. */
static const char *
code_running_subcommand(AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_AlterColumnType:
			return "ALTER COLUMN TYPE";
		case AT_ColumnDefault:
		case AT_CookedColumnDefault:
			return cmd->def ? "ALTER COLUMN SET DEFAULT" : NULL;
		case AT_AddColumn:
		case AT_AddColumnToView:
#ifdef CRM_GDPR_HAS_RECURSE_SUBCOMMANDS
		case AT_AddColumnRecurse:
#endif
			return (cmd->def && IsA(cmd->def, ColumnDef) && column_has_expression((ColumnDef *) cmd->def))
				? "ADD COLUMN with an expression" : NULL;
		case AT_AddConstraint:
		case AT_ReAddConstraint:
#ifdef CRM_GDPR_HAS_RECURSE_SUBCOMMANDS
		case AT_AddConstraintRecurse:
#endif
			return (cmd->def && IsA(cmd->def, Constraint) && ((Constraint *) cmd->def)->contype == CONSTR_CHECK)
				? "ADD CONSTRAINT CHECK" : NULL;
#ifdef CRM_GDPR_HAS_SET_EXPRESSION
		case AT_SetExpression:
			return "ALTER COLUMN SET EXPRESSION";
#endif
		default:
			return NULL;
	}
}

/*
 * gdpr._alter_table_code(pg_ddl_command) → text[]: the subcommands of a
 * collected ALTER TABLE that make code run on its rows (empty when none, NULL
 * for another kind of command).
 */
PG_FUNCTION_INFO_V1(gdpr_alter_table_code);
Datum
gdpr_alter_table_code(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	ArrayBuildState *names = NULL;
	ListCell   *lc;

	if (cmd->type != SCT_AlterTable)
		PG_RETURN_NULL();
	names = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	foreach(lc, cmd->d.alterTable.subcmds)
	{
		CollectedATSubcmd *sub = (CollectedATSubcmd *) lfirst(lc);
		const char *name = code_running_subcommand(castNode(AlterTableCmd, sub->parsetree));

		if (name)
			accumArrayResult(names, CStringGetTextDatum(name), false, TEXTOID, CurrentMemoryContext);
	}
	PG_RETURN_DATUM(makeArrayResult(names, CurrentMemoryContext));
}
