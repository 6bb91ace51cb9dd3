/*
 * log_queue_share.c — who may fill the read queue, and how much.
 *
 * The queue (log_queue.c) is one ring for the whole server; its room is
 * shared fairly.  A record needs room, reserved from its database's share
 * before the reader claims a slot:
 *
 * - only databases where crm_gdpr is installed have a share (a slot of
 *   db_workers.c): elsewhere nothing is queued, whatever a role builds
 *   there (a temporary table with triggers named like the extension's);
 * - a database's share is the capacity divided by the databases that have
 *   one: a busy or hostile database fills its own share, never another's;
 * - one backend holds at most half of its database's share between two
 *   takes of its log writer: a flood of records that cannot be folded
 *   (a purpose changed at every read) stops there, counted as drops.
 *
 * Room is reserved CHUNK at a time (one atomic operation on the database's
 * counter for several reads), and what a transaction did not use is given
 * back when it ends, so that idle sessions hold none.  When the share is
 * full, crm_gdpr.log_queue_full says what the read does: drop (counted),
 * wait for the log writer, or error.  Drops are counted per (database,
 * role) for gdpr.access_log_queue_drops().
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "crm_gdpr.h"
#include "log_queue.h"
#include "settings.h"
#include "workers.h"

#define CHUNK 16
#define DROP_ENTRIES 64
#define WAIT_MS 10

/* Drops by (database, role); the last entry takes whoever does not fit. */
typedef struct DropCount
{
	Oid			dboid;
	Oid			roleid;
	int64		dropped;
	TimestampTz last_at;
} DropCount;

typedef struct DropTable
{
	slock_t		mutex;
	DropCount	entries[DROP_ENTRIES];
} DropTable;

static DropTable *drops = NULL;

/* This backend's reserved room, from the share of slot. */
static DbSlot *credit_slot = NULL;
static int	credits = 0;
/* What this backend queued since its log writer last took (the per-backend bound). */
static uint64 seen_takes = 0;
static int	used_since_take = 0;

Size
crm_gdpr_log_share_bytes(void)
{
	return sizeof(DropTable);
}

void
crm_gdpr_log_share_init(void *at, bool fresh)
{
	drops = (DropTable *) at;
	if (fresh)
	{
		memset(drops, 0, sizeof(DropTable));
		SpinLockInit(&drops->mutex);
	}
}

static void
count_drop(void)
{
	Oid			role = GetUserId();
	DropCount  *e = NULL;

	pg_atomic_fetch_add_u64(&crm_gdpr_queue->dropped, 1);
	SpinLockAcquire(&drops->mutex);
	for (int i = 0; i < DROP_ENTRIES && e == NULL; i++)
		if ((drops->entries[i].dboid == MyDatabaseId && drops->entries[i].roleid == role) ||
			drops->entries[i].dropped == 0 || i == DROP_ENTRIES - 1)
			e = &drops->entries[i];
	if (e->dropped == 0)
	{
		e->dboid = MyDatabaseId;
		e->roleid = role;
	}
	else if (e->dboid != MyDatabaseId || e->roleid != role)
		e->dboid = e->roleid = InvalidOid;	/* the last entry: everyone else */
	e->dropped++;
	e->last_at = GetCurrentTimestamp();
	SpinLockRelease(&drops->mutex);
}

/*
 * This database's slot, when crm_gdpr is installed here.  The first reader
 * after a restart takes one for it (the launcher then starts its workers);
 * a database without the extension never gets one.
 */
static DbSlot *
my_database(void)
{
	static DbSlot *slot = NULL;

	if (slot && slot->dboid == MyDatabaseId && pg_atomic_read_u32(&slot->installed))
		return slot;
	slot = crm_gdpr_db_slot(MyDatabaseId, false);
	if (slot && pg_atomic_read_u32(&slot->installed))
		return slot;
	if (!IsTransactionState() || !OidIsValid(get_extension_oid("crm_gdpr", true)))
		return slot = NULL;
	if (slot == NULL && (slot = crm_gdpr_db_slot(MyDatabaseId, true)) == NULL)
		return NULL;			/* over crm_gdpr.max_databases: the launcher says so */
	pg_atomic_write_u32(&slot->installed, 1);
	crm_gdpr_wake_launcher();
	return slot;
}

/* Give back the room this backend reserved and did not use. */
static void
give_back(void)
{
	if (credits > 0 && credit_slot && credit_slot->dboid == MyDatabaseId)
		pg_atomic_fetch_sub_u64(&credit_slot->queued, credits);
	used_since_take -= credits;
	credits = 0;
}

static void
share_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		give_back();
}

/* Reserve up to CHUNK records of room in slot's share; false when there is none. */
static bool
reserve(DbSlot *slot)
{
	int64		share = crm_gdpr_queue->capacity / Max(crm_gdpr_db_slots_installed(), 1);
	int64		mine = Max(share / 2, 1);
	uint64		takes = pg_atomic_read_u64(&slot->takes);
	int64		n;
	int64		before;
	static bool callback_registered = false;

	if (!callback_registered)
	{
		RegisterXactCallback(share_xact_callback, NULL);
		callback_registered = true;
	}
	if (takes != seen_takes || slot != credit_slot)
	{
		seen_takes = takes;
		used_since_take = 0;
	}
	n = Min(CHUNK, mine - used_since_take);
	if (n <= 0)
		return false;
	before = (int64) pg_atomic_fetch_add_u64(&slot->queued, n);
	if (before + n > share)
	{
		int64		room = Max(share - before, 0);

		pg_atomic_fetch_sub_u64(&slot->queued, n - room);
		n = room;
	}
	if (n <= 0)
		return false;
	credit_slot = slot;
	credits = n;
	used_since_take += n;
	/* A quarter of the share used: the log writer should not wait for its next round. */
	if (before + n >= share / 4 && slot->writer_latch)
		SetLatch(slot->writer_latch);
	return true;
}

static void
queue_full_error(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("crm_gdpr: this database's share of the read queue is full; the read cannot be logged"),
			 errdetail("crm_gdpr.log_queue_full is \"%s\".", crm_gdpr_log_queue_full == LOG_QUEUE_FULL_WAIT ?
					   "wait, and no log writer takes this database's reads now" : "error"),
			 errhint("See gdpr.access_log_queue_drops(); raise crm_gdpr.log_queue_size, or check the log writer.")));
}

/*
 * Room for one more record, as crm_gdpr.log_queue_full says.  before_read:
 * at the start of a read (nothing is dropped yet, the policy applies before
 * any row is returned); otherwise for the record itself.
 */
static bool
have_room(bool before_read)
{
	for (;;)
	{
		DbSlot	   *slot;

		if (credits > 0)
			return true;
		if ((slot = my_database()) == NULL)
			break;
		if (reserve(slot))
			return true;
		if (crm_gdpr_log_queue_full == LOG_QUEUE_FULL_DROP)
			break;
		if (crm_gdpr_log_queue_full == LOG_QUEUE_FULL_ERROR || slot->writer_pid == 0 || !crm_gdpr_enable_log_writer)
			queue_full_error();
		/* wait: the log writer is woken, and the room comes back with its next take. */
		if (slot->writer_latch)
			SetLatch(slot->writer_latch);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (!before_read)
		count_drop();
	return false;
}

/* At the start of a logged read (read_hook.c): room for its records, or the policy now. */
void
crm_gdpr_log_queue_reserve(void)
{
	if (crm_gdpr_queue != NULL && !RecoveryInProgress())
		(void) have_room(true);
}

/* Room for one record (log_queue.c, before it claims a slot); false: dropped and counted. */
bool
crm_gdpr_log_share_take(void)
{
	if (!have_room(false))
		return false;
	credits--;
	return true;
}

/* Room taken for the slots of a record that did not get them all: back to this backend's credits. */
void
crm_gdpr_log_share_untake(int n)
{
	credits += n;
}

/* A record that got room but no slot (the ring is full): its room back, counted as dropped. */
void
crm_gdpr_log_share_lost(void)
{
	if (credit_slot && credit_slot->dboid == MyDatabaseId)
		pg_atomic_fetch_sub_u64(&credit_slot->queued, 1);
	used_since_take--;
	count_drop();
}

/* The log writer took n records of this database: their room is free again. */
void
crm_gdpr_log_share_taken(int n)
{
	DbSlot	   *slot = crm_gdpr_db_slot(MyDatabaseId, false);

	if (slot == NULL)
		return;
	if (n > 0)
		pg_atomic_fetch_sub_u64(&slot->queued, n);
	pg_atomic_fetch_add_u64(&slot->takes, 1);
}

/* The log writer's latch, woken by readers of its database. */
void
crm_gdpr_log_share_set_writer(Latch *latch)
{
	DbSlot	   *slot = crm_gdpr_db_slot(MyDatabaseId, false);

	if (slot)
		slot->writer_latch = latch;
}

/* Whether this database's share is a quarter used or more (its log writer then goes on). */
bool
crm_gdpr_log_share_busy(void)
{
	DbSlot	   *slot = crm_gdpr_db_slot(MyDatabaseId, false);
	int64		share;

	if (slot == NULL || crm_gdpr_queue == NULL)
		return false;
	share = crm_gdpr_queue->capacity / Max(crm_gdpr_db_slots_installed(), 1);
	return (int64) pg_atomic_read_u64(&slot->queued) >= share / 4;
}

/* Drops since the server started, by database and role. */
PG_FUNCTION_INFO_V1(gdpr_log_queue_drops);
Datum
gdpr_log_queue_drops(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DropCount	copy[DROP_ENTRIES];

	InitMaterializedSRF(fcinfo, 0);
	if (drops == NULL)
		return (Datum) 0;
	SpinLockAcquire(&drops->mutex);
	memcpy(copy, drops->entries, sizeof(copy));
	SpinLockRelease(&drops->mutex);
	for (int i = 0; i < DROP_ENTRIES; i++)
	{
		Datum		v[4];
		bool		n[4] = {false, false, false, false};
		char	   *db = OidIsValid(copy[i].dboid) ? get_database_name(copy[i].dboid) : NULL;
		char	   *role = OidIsValid(copy[i].roleid) ? GetUserNameFromId(copy[i].roleid, true) : NULL;

		if (copy[i].dropped == 0)
			continue;
		v[0] = db ? CStringGetTextDatum(db) : (Datum) 0;
		n[0] = db == NULL;
		v[1] = role ? CStringGetTextDatum(role) : (Datum) 0;
		n[1] = role == NULL;
		v[2] = Int64GetDatum(copy[i].dropped);
		v[3] = TimestampTzGetDatum(copy[i].last_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}
