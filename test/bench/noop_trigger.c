/*
 * noop_trigger.c — a trigger function that does nothing, for
 * test/bench/log_floor.sh: the access log's triggers with it instead of
 * gdpr._log_write() measure what PostgreSQL's AFTER ... FOR EACH STATEMENT
 * triggers with transition tables cost by themselves, the floor under any
 * capture of writes made with them.  Built by the benchmark, never
 * installed.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(noop_trigger);

Datum
noop_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "noop_trigger() must be called as a trigger");
	return PointerGetDatum(NULL);
}
