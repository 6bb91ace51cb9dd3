/*
 * log_record.c — the record of a read or of an event, and where it goes.
 *
 * A record's common fields (when, who, from where, for what purpose) are
 * filled here for every reader, with the role names and the client's address
 * cached per backend: a read costs a copy, not catalog lookups.  A record
 * goes to the shared-memory queue (log_queue.c); on a hot standby nothing
 * can be written, and it goes to the server log instead, as one line
 * "crm_gdpr read: {json}".
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"
#include "read_hook.h"
#include "settings.h"


char *
crm_gdpr_log_purpose(void)
{
	return crm_gdpr_purpose ? crm_gdpr_purpose : "";
}

bool
crm_gdpr_is_admin(Oid roleid)
{
	Oid			admin = get_role_oid("gdpr_admin", true);

	return superuser_arg(roleid) || (OidIsValid(admin) && has_privs_of_role(roleid, admin));
}


/* inet_client_addr(), once per backend ("" for a Unix socket). */
static const char *
client_address(void)
{
	static char addr[48] = "";
	static bool known = false;

	if (!known)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		inet;

		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		inet = inet_client_addr(fcinfo);
		if (!fcinfo->isnull)
			strlcpy(addr, DatumGetCString(DirectFunctionCall1(inet_out, inet)), sizeof(addr));
		known = true;
	}
	return addr;
}

/*
 * Role names, cached: a read costs a copy, not two catalog lookups.  Any
 * change to pg_authid (a rename) empties the cache.
 */
#define ROLE_SLOTS 3
static Oid	cached_role[ROLE_SLOTS] = {InvalidOid, InvalidOid, InvalidOid};
static NameData cached_role_name[ROLE_SLOTS];
static bool role_callback_registered = false;

static void
forget_role_names(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = 0; i < ROLE_SLOTS; i++)
		cached_role[i] = InvalidOid;
}

/*
 * A role's name, remembered per slot (the current user, the session user,
 * the writer of a logged write): the log names the same roles statement
 * after statement.  The name of a NameData, padded with zeros: a caller may
 * copy NAMEDATALEN bytes of it (read_subjects.c).
 */
const char *
crm_gdpr_role_name(Oid roleid, int slot)
{
	if (!role_callback_registered)
	{
		CacheRegisterSyscacheCallback(AUTHOID, forget_role_names, (Datum) 0);
		role_callback_registered = true;
	}
	if (cached_role[slot] != roleid)
	{
		namestrcpy(&cached_role_name[slot], GetUserNameFromId(roleid, false));
		cached_role[slot] = roleid;
	}
	return NameStr(cached_role_name[slot]);
}

void
crm_gdpr_fill_log_record(LogRecord *rec, const char *operation, Oid relid)
{
	crm_gdpr_fill_log_record_as(rec, operation, relid, crm_gdpr_role_name(GetUserId(), 0),
								crm_gdpr_role_name(GetSessionUserId(), 1));
}

/*
 * The same with the role names given: a read that fails is recorded while
 * its transaction aborts, when no catalog can be read (the names were
 * taken when it started).
 */
void
crm_gdpr_fill_log_record_as(LogRecord *rec, const char *operation, Oid relid, const char *role,
							const char *session_role)
{
	/*
	 * The statement's start: no clock read per query.  It is never older than
	 * the start of the (still running) transaction, which is what the seal's
	 * horizon relies on.
	 */
	rec->at = GetCurrentStatementStartTimestamp();
	rec->dbid = MyDatabaseId;
	rec->relid = relid;
	rec->pid = MyProcPid;
	rec->nsubjects = 0;
	rec->subjects = NULL;
	rec->rows = 0;
	rec->query_id = pgstat_get_my_query_id();
	rec->operation = operation;
	rec->role = role;
	rec->session_role = session_role;
	rec->appname = application_name ? application_name : "";
	rec->client = client_address();
	rec->purpose = crm_gdpr_log_purpose();
	rec->detail = "";
	rec->columns = "";
	rec->table_name = NULL;
}

/* A list of names joined by LOG_LIST_SEPARATOR as a JSON array (a name may hold a comma). */
static void
append_json_names(StringInfo buf, const char *joined)
{
	char	   *names = pstrdup(joined);
	char	   *next;

	appendStringInfoChar(buf, '[');
	for (char *name = names; *name; name = next)
	{
		next = strchr(name, LOG_LIST_SEPARATOR);
		if (next)
			*next++ = '\0';
		else
			next = name + strlen(name);
		if (name != names)
			appendStringInfoString(buf, ", ");
		escape_json(buf, name);
	}
	appendStringInfoChar(buf, ']');
	pfree(names);
}

/*
 * On a standby nothing is written: the server log keeps the record.  The
 * table's name is looked up unless the record brings it (a read that failed
 * is recorded while its transaction aborts, when no catalog can be read).
 */
static void
log_to_server_log(const LogRecord *rec)
{
	StringInfoData buf;
	const char *table_name;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"at\": \"%s\", \"operation\": ", timestamptz_to_str(rec->at));
	escape_json(&buf, rec->operation);
	appendStringInfoString(&buf, ", \"role\": ");
	escape_json(&buf, rec->role);
	appendStringInfoString(&buf, ", \"session_user\": ");
	escape_json(&buf, rec->session_role);
	appendStringInfoString(&buf, ", \"application_name\": ");
	escape_json(&buf, rec->appname);
	appendStringInfoString(&buf, ", \"table\": ");
	table_name = rec->table_name ? rec->table_name : crm_gdpr_qualified_relname(rec->relid);
	escape_json(&buf, table_name ? table_name : "");
	appendStringInfoString(&buf, ", \"columns\": ");
	append_json_names(&buf, rec->columns);
	appendStringInfo(&buf, ", \"rows\": " INT64_FORMAT ", \"subjects\": %d, \"purpose\": ", rec->rows, rec->nsubjects);
	escape_json(&buf, rec->purpose);
	if (rec->detail[0])
		appendStringInfo(&buf, ", \"detail\": %s", rec->detail);
	appendStringInfoChar(&buf, '}');
	ereport(LOG, (errmsg("crm_gdpr read: %s", buf.data), errhidestmt(true)));
	crm_gdpr_log_queue_count_server_log();
	pfree(buf.data);
}

/* To the queue, or on a standby to the server log. */
void
crm_gdpr_send_log_record(const LogRecord *rec)
{
	if (RecoveryInProgress())
		log_to_server_log(rec);
	else
		crm_gdpr_log_enqueue(rec);
}

void
crm_gdpr_record_read(const char *operation, Oid relid, const char *columns, int64 rows,
					 int nsubjects, const char *const *subjects, const char *refused)
{
	char	   *detail = NULL;

	if (refused)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"refused\": ");
		escape_json(&buf, refused);
		appendStringInfoChar(&buf, '}');
		detail = buf.data;
	}
	crm_gdpr_record_read_as(crm_gdpr_role_name(GetUserId(), 0), crm_gdpr_role_name(GetSessionUserId(), 1),
							operation, relid, NULL, columns, rows, nsubjects, subjects, detail);
}

/*
 * A read's record with its roles and detail (JSON, or NULL) given, and the
 * table's qualified name when it must not be looked up (or NULL).
 */
void
crm_gdpr_record_read_as(const char *role, const char *session_role, const char *operation, Oid relid,
						const char *table_name, const char *columns, int64 rows, int nsubjects,
						const char *const *subjects, const char *detail)
{
	LogRecord	rec;

	crm_gdpr_fill_log_record_as(&rec, operation, relid, role, session_role);
	rec.rows = rows;
	rec.columns = columns;
	rec.nsubjects = nsubjects;
	rec.subjects = subjects;
	rec.table_name = table_name;
	if (detail)
		rec.detail = detail;
	crm_gdpr_send_log_record(&rec);
}

/*
 * gdpr._log_event() where nothing can be written (a standby, a read-only
 * transaction): the event takes the readers' way, through the queue (or the
 * server log on a standby).  The role is the caller of the extension's
 * function.  A detail too long for the record is left out.
 */
PG_FUNCTION_INFO_V1(gdpr_log_enqueue);
Datum
gdpr_log_enqueue(PG_FUNCTION_ARGS)
{
	LogRecord	rec;

	crm_gdpr_fill_log_record(&rec, text_to_cstring(PG_GETARG_TEXT_PP(0)),
							 PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1));
	rec.role = GetUserNameFromId(GetOuterUserId(), false);
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(2);
		Datum	   *items;
		bool	   *nulls;
		int			n;

		const char **subjects;
		int			bytes = 0;

		deconstruct_array(ids, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
		subjects = palloc(sizeof(char *) * Max(n, 1));
		for (int i = 0; i < n && bytes < LOG_RECORD_SUBJECT_BYTES; i++)
			if (!nulls[i])
			{
				subjects[rec.nsubjects] = TextDatumGetCString(items[i]);
				bytes += strlen(subjects[rec.nsubjects++]) + 1;
			}
		rec.subjects = subjects;
	}
	rec.rows = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);
	if (!PG_ARGISNULL(4))
		rec.detail = text_to_cstring(PG_GETARG_TEXT_PP(4));	/* left out by the queue if too long */
	crm_gdpr_send_log_record(&rec);
	PG_RETURN_VOID();
}

/*
 * Who writes: the current user, or inside a SECURITY DEFINER function (the
 * extension's erasure, an application's own) the role that called it; the
 * session user is recorded as well.
 */
const char *
crm_gdpr_writer_name(void)
{
	Oid			userid;
	int			sec_context;

	GetUserIdAndSecContext(&userid, &sec_context);
	/*
	 * The role that called a SECURITY DEFINER function, or the extension's
	 * statement run as the table's owner; but a statement the owner's code
	 * makes during the latter is the owner's (security review round 25.3).
	 */
	if ((sec_context & SECURITY_LOCAL_USERID_CHANGE) &&
		(crm_gdpr_owner_exec_depth == 0 || crm_gdpr_in_owner_statement()))
		userid = GetOuterUserId();
	return crm_gdpr_role_name(userid, 2);
}

static Datum
role_name_datum(Oid roleid)
{
	return DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(roleid, false)));
}

/* The role the extension's functions act for: see 80_access_log.sql. */
PG_FUNCTION_INFO_V1(gdpr_caller);
Datum
gdpr_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(role_name_datum(GetOuterUserId()));
}

/*
 * The role that runs the innermost utility statement (read_hook.c), NULL
 * without the module preloaded: the DDL guard's event triggers are SECURITY
 * DEFINER, and gdpr._caller() names the session's role, not the owner whose
 * trigger ran the ALTER TABLE during another role's erasure (security
 * review round 26.3).
 */
PG_FUNCTION_INFO_V1(gdpr_ddl_runner);
Datum
gdpr_ddl_runner(PG_FUNCTION_ARGS)
{
	Oid			runner = crm_gdpr_utility_runner();

	if (!OidIsValid(runner))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(role_name_datum(runner));
}
