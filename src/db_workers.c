/*
 * db_workers.c — the databases the extension's workers serve, in shared
 * memory, and the DDL that must reach them at once.
 *
 * One slot per database served (crm_gdpr.max_databases of them): whether
 * crm_gdpr is installed there (set by its workers, which check it, and by
 * CREATE EXTENSION when it commits), the pids of its purge worker and log
 * writer, and its share of the read queue (log_queue.c).  The launcher
 * (launcher.c) fills and frees the slots; the workers and readers only
 * look theirs up.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE fail while anyone is connected to that database:
 * the utility hook below stops its workers first and holds the launcher off
 * it for a while (PAUSE_MS); after a failed command or a rename the
 * workers are started again at once.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"
#include "settings.h"
#include "workers.h"

#define PAUSE_MS (60 * 1000L)
#define STOP_WAIT_MS 5000

typedef struct WorkerTable
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	int			nslots;
	DbSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerTable;

static WorkerTable *table = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static bool created_here = false;	/* CREATE EXTENSION crm_gdpr in this transaction */

static Size
table_bytes(void)
{
	return add_size(offsetof(WorkerTable, slots), mul_size(crm_gdpr_max_databases, sizeof(DbSlot)));
}

static void
table_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(table_bytes());
}

static void
table_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	table = ShmemInitStruct("crm_gdpr databases", table_bytes(), &found);
	if (!found)
	{
		memset(table, 0, table_bytes());
		SpinLockInit(&table->mutex);
		table->nslots = crm_gdpr_max_databases;
		for (int i = 0; i < table->nslots; i++)
		{
			pg_atomic_init_u32(&table->slots[i].installed, 0);
			pg_atomic_init_u64(&table->slots[i].queued, 0);
			pg_atomic_init_u64(&table->slots[i].takes, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

int
crm_gdpr_db_slot_count(void)
{
	return table ? table->nslots : 0;
}

DbSlot *
crm_gdpr_db_slot_at(int i)
{
	return &table->slots[i];
}

/* The slot of a database; with create, a free one taken for it (NULL: none left). */
DbSlot *
crm_gdpr_db_slot(Oid dboid, bool create)
{
	DbSlot	   *found = NULL;
	DbSlot	   *free_slot = NULL;

	if (table == NULL || !OidIsValid(dboid))
		return NULL;
	SpinLockAcquire(&table->mutex);
	for (int i = 0; i < table->nslots && found == NULL; i++)
	{
		if (table->slots[i].dboid == dboid)
			found = &table->slots[i];
		else if (free_slot == NULL && !OidIsValid(table->slots[i].dboid))
			free_slot = &table->slots[i];
	}
	if (found == NULL && create && free_slot != NULL)
	{
		found = free_slot;
		found->dboid = dboid;
		found->writer_pid = found->purge_pid = 0;
		found->paused_until = 0;
		found->writer_latch = NULL;
		pg_atomic_write_u32(&found->installed, 0);
		pg_atomic_write_u64(&found->queued, 0);
	}
	SpinLockRelease(&table->mutex);
	return found;
}

void
crm_gdpr_db_slot_free(DbSlot *slot)
{
	SpinLockAcquire(&table->mutex);
	slot->dboid = InvalidOid;
	pg_atomic_write_u32(&slot->installed, 0);
	SpinLockRelease(&table->mutex);
}

/* Databases where crm_gdpr is installed and served: the read queue is shared among them. */
int
crm_gdpr_db_slots_installed(void)
{
	int			n = 0;

	for (int i = 0; table && i < table->nslots; i++)
		n += OidIsValid(table->slots[i].dboid) && pg_atomic_read_u32(&table->slots[i].installed);
	return n;
}

/* A worker's pid in its slot (0 when it exits). */
void
crm_gdpr_db_slot_set_pid(DbSlot *slot, bool writer, int pid)
{
	SpinLockAcquire(&table->mutex);
	if (writer)
		slot->writer_pid = pid;
	else
		slot->purge_pid = pid;
	SpinLockRelease(&table->mutex);
}

bool
crm_gdpr_db_slot_paused(DbSlot *slot)
{
	TimestampTz until;

	SpinLockAcquire(&table->mutex);
	until = slot->paused_until;
	SpinLockRelease(&table->mutex);
	return until != 0 && GetCurrentTimestamp() < until;
}

void
crm_gdpr_launcher_set_latch(Latch *latch)
{
	SpinLockAcquire(&table->mutex);
	table->launcher_latch = latch;
	SpinLockRelease(&table->mutex);
}

void
crm_gdpr_wake_launcher(void)
{
	Latch	   *latch;

	if (table == NULL)
		return;
	SpinLockAcquire(&table->mutex);
	latch = table->launcher_latch;
	SpinLockRelease(&table->mutex);
	if (latch)
		SetLatch(latch);
}

/* Whether pid is still a process connected to database dboid. */
static bool
connected_to(int pid, Oid dboid)
{
	PGPROC	   *proc = pid ? BackendPidGetProc(pid) : NULL;

	return proc != NULL && proc->databaseId == dboid;
}

/*
 * Stop the workers of a database (SIGTERM: PostgreSQL's die()) and keep the
 * launcher from starting them again for PAUSE_MS; waits until they are gone
 * (STOP_WAIT_MS at most: the command then fails as it would have).
 */
static DbSlot *
pause_database(Oid dboid)
{
	DbSlot	   *slot = crm_gdpr_db_slot(dboid, false);
	int			pids[2];

	if (slot == NULL)
		return NULL;
	SpinLockAcquire(&table->mutex);
	slot->paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PAUSE_MS);
	pids[0] = slot->writer_pid;
	pids[1] = slot->purge_pid;
	SpinLockRelease(&table->mutex);
	for (int i = 0; i < 2; i++)
		if (connected_to(pids[i], dboid))
			kill(pids[i], SIGTERM);
	for (int waited = 0; waited < STOP_WAIT_MS; waited += 10)
	{
		if (!connected_to(pids[0], dboid) && !connected_to(pids[1], dboid))
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
	}
	return slot;
}

static void
resume_database(DbSlot *slot, Oid dboid)
{
	SpinLockAcquire(&table->mutex);
	if (slot->dboid == dboid)
		slot->paused_until = 0;
	SpinLockRelease(&table->mutex);
	crm_gdpr_wake_launcher();
}

/* The database a command needs nobody connected to, or NULL. */
static const char *
database_to_leave(Node *stmt)
{
	ListCell   *lc;
	List	   *options = NIL;

	if (IsA(stmt, DropdbStmt))
		return ((DropdbStmt *) stmt)->dbname;
	if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		return ((RenameStmt *) stmt)->subname;
	if (IsA(stmt, AlterDatabaseStmt))
	{
		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				return ((AlterDatabaseStmt *) stmt)->dbname;
		return NULL;
	}
	if (IsA(stmt, CreatedbStmt))
		options = ((CreatedbStmt *) stmt)->options;
	foreach(lc, options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, "template") == 0)
			return defGetString((DefElem *) lfirst(lc));
	return NULL;
}

/* CREATE EXTENSION crm_gdpr committed: the launcher serves this database now. */
static void
created_callback(XactEvent event, void *arg)
{
	DbSlot	   *slot;

	if (!created_here || (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT))
		return;
	created_here = false;
	if (event == XACT_EVENT_COMMIT && (slot = crm_gdpr_db_slot(MyDatabaseId, true)) != NULL)
		pg_atomic_write_u32(&slot->installed, 1);
	crm_gdpr_wake_launcher();
}

static void
db_workers_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	const char *dbname = database_to_leave(stmt);
	Oid			dboid = dbname ? get_database_oid(dbname, true) : InvalidOid;
	DbSlot	   *slot = NULL;
	static bool callback_registered = false;

	/* Only who may run the command stops the workers (the others would only hold them off). */
	if (OidIsValid(dboid) && database_ownercheck(dboid, GetUserId()))
		slot = pause_database(dboid);
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (slot)
			resume_database(slot, dboid);
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* Dropped: the launcher frees the slot when the database is gone from pg_database. */
	if (slot)
		resume_database(slot, IsA(stmt, DropdbStmt) ? InvalidOid : dboid);
	if (IsA(stmt, CreateExtensionStmt) && strcmp(((CreateExtensionStmt *) stmt)->extname, "crm_gdpr") == 0)
	{
		if (!callback_registered)
			RegisterXactCallback(created_callback, NULL);
		callback_registered = true;
		created_here = true;
	}
}

void
crm_gdpr_db_workers_init(bool preloading)
{
	if (!preloading)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = table_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = table_shmem_startup;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = db_workers_utility;
}
