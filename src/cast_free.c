/*
 * cast_free.c — a CRM value as text or jsonb, without running code its
 * owner wrote.
 *
 * `x::text` and `to_jsonb(row)` look in pg_cast first: a cast from the
 * value's type to text (or to json, for to_jsonb) is called when one exists,
 * whatever the search_path.  CREATE CAST needs only the ownership of one of
 * the two types, so a CRM table's owner can give a column his own enum type
 * and a cast of it written in PL/pgSQL.  Where the extension reads CRM rows
 * as its own owner (a superuser) — the transition tables of its statement
 * triggers, which only the trigger's own queries can see — that cast would
 * run as the superuser (issue 10's escalation, by another door).
 *
 * gdpr._text(x) is x::text, except that a cast function of a type the
 * server did not create is never called: its output function is (output
 * functions are C, only a superuser can make them).  gdpr._row_jsonb(r) is
 * to_jsonb(r) with the same rule for each column.  For built-in types and
 * for types without such a cast both give exactly what ::text and to_jsonb
 * give.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/*
 * Whether the cast from source to target, if the server would call a
 * function for it, calls one that cannot be its owner's code: C or internal
 * (only a superuser makes those: citext's, PostGIS's), not SQL or PL/pgSQL.
 */
static bool
trusted_cast(Oid source, Oid target)
{
	Oid			castfunc = InvalidOid;
	Oid			lang;
	HeapTuple	tp;

	if (find_coercion_pathway(target, source, COERCION_EXPLICIT, &castfunc) != COERCION_PATH_FUNC ||
		!OidIsValid(castfunc))
		return true;
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(castfunc));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", castfunc);
	lang = ((Form_pg_proc) GETSTRUCT(tp))->prolang;
	ReleaseSysCache(tp);
	return lang == ClanguageId || lang == INTERNALlanguageId;
}

/*
 * Whether to_jsonb of a value of this type runs only the server's code: it
 * looks for a cast to json of every type not built in, down a domain's base,
 * an array's element and a composite's columns.
 */
static bool
safe_for_jsonb(Oid type)
{
	Oid			elem;

	check_stack_depth();
	type = getBaseType(type);
	if (type < FirstNormalObjectId)
		return true;
	if (OidIsValid(elem = get_element_type(type)))
		return safe_for_jsonb(elem);
	if (type_is_rowtype(type))
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(type, -1);
		bool		safe = true;

		for (int i = 0; i < desc->natts && safe; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				safe = safe_for_jsonb(TupleDescAttr(desc, i)->atttypid);
		ReleaseTupleDesc(desc);
		return safe;
	}
	return trusted_cast(type, JSONOID);
}

/* What one argument type needs, cached in fn_extra. */
typedef struct TextWay
{
	Oid			type;
	bool		by_cast;		/* the server's cast; else the output function */
	int			nargs;			/* of the cast function: 1, or 3 (typmod, explicit) */
	FmgrInfo	fn;
} TextWay;

/* A call of the polymorphic fn_oid with an argument of argtype, as the planner would make it. */
static void
polymorphic_call(Oid fn_oid, Oid argtype, Oid rettype, FmgrInfo *fn, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	/* The expression lives as long as fn: both in cxt. */
	fmgr_info_cxt(fn_oid, fn, cxt);
	fmgr_info_set_expr((Node *) makeFuncExpr(fn_oid, rettype, list_make1(makeNullConst(argtype, -1, InvalidOid)),
											 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL), fn);
	MemoryContextSwitchTo(old);
}

static text *
value_text(Datum value, Oid type, TextWay *way, MemoryContext cxt)
{
	if (way->type != type)
	{
		Oid			castfunc = InvalidOid;
		CoercionPathType path = find_coercion_pathway(TEXTOID, type, COERCION_EXPLICIT, &castfunc);

		way->type = type;
		way->by_cast = path == COERCION_PATH_FUNC && trusted_cast(type, TEXTOID);
		if (way->by_cast)
		{
			fmgr_info_cxt(castfunc, &way->fn, cxt);
			way->nargs = get_func_nargs(castfunc);
		}
		else
		{
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(type, &out, &varlena);
			fmgr_info_cxt(out, &way->fn, cxt);
		}
	}
	if (way->by_cast && way->nargs == 3)
		return DatumGetTextPP(FunctionCall3(&way->fn, value, Int32GetDatum(-1), BoolGetDatum(true)));
	if (way->by_cast)
		return DatumGetTextPP(FunctionCall1(&way->fn, value));
	return cstring_to_text(OutputFunctionCall(&way->fn, value));
}

PG_FUNCTION_INFO_V1(gdpr_text);
Datum
gdpr_text(PG_FUNCTION_ARGS)
{
	TextWay    *way = fcinfo->flinfo->fn_extra;

	if (way == NULL)
	{
		way = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(TextWay));
		fcinfo->flinfo->fn_extra = way;
	}
	PG_RETURN_TEXT_P(value_text(PG_GETARG_DATUM(0), get_fn_expr_argtype(fcinfo->flinfo, 0), way,
								fcinfo->flinfo->fn_mcxt));
}

/* The columns of one row type, and how each becomes jsonb. */
typedef struct RowWay
{
	Oid			type;
	int32		typmod;
	uint64		identifier;		/* of the row type's descriptor: changes with ALTER TABLE */
	TupleDesc	desc;
	bool	   *safe;			/* to_jsonb; else a string, its output */
	FmgrInfo   *fn;
} RowWay;

static RowWay *
row_way(FunctionCallInfo fcinfo, HeapTupleHeader row)
{
	RowWay	   *way = fcinfo->flinfo->fn_extra;
	Oid			type = HeapTupleHeaderGetTypeId(row);
	int32		typmod = HeapTupleHeaderGetTypMod(row);
	MemoryContext cxt = fcinfo->flinfo->fn_mcxt;
	MemoryContext old;
	TupleDesc	desc;
	uint64		identifier = assign_record_type_identifier(type, typmod);

	if (way != NULL && way->type == type && way->typmod == typmod && way->identifier == identifier)
		return way;
	way = MemoryContextAllocZero(cxt, sizeof(RowWay));
	desc = lookup_rowtype_tupdesc(type, typmod);
	old = MemoryContextSwitchTo(cxt);
	/* With the missing values of columns added since a row was written. */
	way->desc = CreateTupleDescCopyConstr(desc);
	MemoryContextSwitchTo(old);
	ReleaseTupleDesc(desc);
	way->type = type;
	way->typmod = typmod;
	way->identifier = identifier;
	way->safe = MemoryContextAllocZero(cxt, sizeof(bool) * Max(way->desc->natts, 1));
	way->fn = MemoryContextAllocZero(cxt, sizeof(FmgrInfo) * Max(way->desc->natts, 1));
	for (int i = 0; i < way->desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(way->desc, i);
		Oid			out;
		bool		varlena;

		if (att->attisdropped)
			continue;
		way->safe[i] = safe_for_jsonb(att->atttypid);
		if (way->safe[i])
			polymorphic_call(F_TO_JSONB, att->atttypid, JSONBOID, &way->fn[i], cxt);
		else
		{
			getTypeOutputInfo(att->atttypid, &out, &varlena);
			fmgr_info_cxt(out, &way->fn[i], cxt);
		}
	}
	fcinfo->flinfo->fn_extra = way;
	return way;
}

PG_FUNCTION_INFO_V1(gdpr_row_jsonb);
Datum
gdpr_row_jsonb(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	RowWay	   *way = row_way(fcinfo, row);
	HeapTupleData tuple;
	JsonbParseState *state = NULL;
	JsonbValue *result;
	Datum	   *values = palloc(sizeof(Datum) * Max(way->desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(way->desc->natts, 1));

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	heap_deform_tuple(&tuple, way->desc, values, nulls);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < way->desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(way->desc, i);
		JsonbValue	v;

		if (att->attisdropped)
			continue;
		v.type = jbvString;
		v.val.string.val = NameStr(att->attname);
		v.val.string.len = strlen(v.val.string.val);
		pushJsonbValue(&state, WJB_KEY, &v);
		if (nulls[i])
			v.type = jbvNull;
		else if (way->safe[i])
		{
			Jsonb	   *j = DatumGetJsonbP(FunctionCall1(&way->fn[i], values[i]));

			/* A scalar is pushed as one (a container is unpacked by pushJsonbValue). */
			if (!JB_ROOT_IS_SCALAR(j) || !JsonbExtractScalar(&j->root, &v))
			{
				v.type = jbvBinary;
				v.val.binary.data = &j->root;
				v.val.binary.len = VARSIZE(j) - VARHDRSZ;
			}
		}
		else
		{
			v.type = jbvString;
			v.val.string.val = OutputFunctionCall(&way->fn[i], values[i]);
			v.val.string.len = strlen(v.val.string.val);
		}
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}
