/*
 * crm_gdpr.c — module entry point.
 *
 * The module is meant to be loaded through shared_preload_libraries: the
 * background worker and the shared-memory queues of later features can only
 * be set up by the postmaster.  It also loads on demand (CREATE EXTENSION
 * without preloading) so that the SQL-only parts work everywhere; features
 * that need preloading call crm_gdpr_require_preload() and fail with a hint.
 */
#include "postgres.h"

#include <sodium.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "access_log.h"
#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

CRM_GDPR_MODULE_MAGIC;

/* True when _PG_init ran inside the postmaster (shared_preload_libraries). */
static bool loaded_at_startup = false;

void		_PG_init(void);

void
_PG_init(void)
{
	loaded_at_startup = process_shared_preload_libraries_in_progress;
	if (sodium_init() < 0)
		ereport(ERROR, (errmsg("could not initialise libsodium")));
	crm_gdpr_define_settings(loaded_at_startup);
	crm_gdpr_log_queue_init(loaded_at_startup);
	crm_gdpr_db_workers_init(loaded_at_startup);
	crm_gdpr_read_hook_init(loaded_at_startup);
	crm_gdpr_tree_guard_init(loaded_at_startup);
	crm_gdpr_read_planner_init(loaded_at_startup);
	crm_gdpr_log_write_init();
	crm_gdpr_restriction_init();
	/* The launcher (launcher.c), which starts the other workers (only the postmaster can register it). */
	if (loaded_at_startup)
		crm_gdpr_register_launcher();
}

bool
crm_gdpr_preloaded(void)
{
	return loaded_at_startup;
}

void
crm_gdpr_require_preload(const char *feature)
{
	if (!loaded_at_startup)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires crm_gdpr to be loaded at server start", feature),
				 errhint("Add crm_gdpr to shared_preload_libraries in postgresql.conf and restart the server.")));
}

PG_FUNCTION_INFO_V1(gdpr_preloaded);
Datum
gdpr_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(crm_gdpr_preloaded());
}

PG_FUNCTION_INFO_V1(gdpr_require_preload);
Datum
gdpr_require_preload(PG_FUNCTION_ARGS)
{
	crm_gdpr_require_preload(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

void
crm_gdpr_spi_check(int result, int expected, const char *what)
{
	if (result != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("crm_gdpr: %s failed", what),
				 errdetail("SPI returned %s where %s was expected.", SPI_result_code_string(result),
						   SPI_result_code_string(expected))));
}
