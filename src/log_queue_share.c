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
 * counter for several reads).  What a transaction did not use is given back
 * when it ends, unless its database's share is less than an eighth used:
 * then the session keeps it for its next transactions, so that a session
 * that reads transaction after transaction (a select by key each) touches
 * the counter, which every reader of its database and its log writer
 * write, once per CHUNK reads rather than twice per read.  Idle sessions
 * thus hold about an eighth of the share at most in all (each kept its
 * room while the share was under that, and past it every transaction's
 * end gives back), never enough to make the log writer think the share
 * busy (a quarter); a session gives back what it holds when it exits.  When the share is
 * full, crm_gdpr.log_queue_full says what the read does: drop (counted),
 * wait for the log writer, or error.  Drops are counted per (database,
 * role) for gdpr.access_log_queue_drops(), and so are the reads that had to
 * wait: both are the alarm of gdpr.log_queue_alarms, and a WARNING in the
 * server log at most once a minute per (database, role).
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
#include "storage/ipc.h"
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
/* At most one WARNING per (database, role) and minute: a flood says so once, not per read. */
#define WARN_EVERY_MS 60000

/* Drops and waits by (database, role); the last entry takes whoever does not fit. */
typedef struct DropCount
{
	Oid			dboid;
	Oid			roleid;
	int64		dropped;
	TimestampTz last_at;
	int64		waited;
	TimestampTz last_wait_at;
	TimestampTz warned_at;
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
static int64 credit_share = 0;	/* the share when they were reserved */
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

/* The alarm in the server log, for whoever's reads were dropped or waited. */
static void
warn_pressure(bool dropped)
{
	const char *db;
	const char *role;

	if (!IsTransactionState())
		return;					/* counted all the same; no catalog to name them */
	db = get_database_name(MyDatabaseId);
	role = GetUserNameFromId(GetUserId(), true);
	ereport(WARNING,
			(errmsg("crm_gdpr: reads of role \"%s\" in database \"%s\" %s: this database's share of the read queue is full",
					role ? role : "?", db ? db : "?", dropped ? "are dropped" : "wait for the log writer"),
			 errdetail("This warning is given at most once a minute per database and role."),
			 errhint("See gdpr.log_queue_alarms; raise crm_gdpr.log_queue_size, or find what floods the queue.")));
}

/* Count a dropped read (dropped) or a read that waits for room, by (database, role). */
static void
count_pressure(bool dropped)
{
	Oid			role = GetUserId();
	DropCount  *e = NULL;
	TimestampTz now = GetCurrentTimestamp();
	bool		warn;

	if (dropped)
		pg_atomic_fetch_add_u64(&crm_gdpr_queue->dropped, 1);
	SpinLockAcquire(&drops->mutex);
	for (int i = 0; i < DROP_ENTRIES && e == NULL; i++)
		if ((drops->entries[i].dboid == MyDatabaseId && drops->entries[i].roleid == role) ||
			(drops->entries[i].dropped == 0 && drops->entries[i].waited == 0) || i == DROP_ENTRIES - 1)
			e = &drops->entries[i];
	if (e->dropped == 0 && e->waited == 0)
	{
		e->dboid = MyDatabaseId;
		e->roleid = role;
	}
	else if (e->dboid != MyDatabaseId || e->roleid != role)
		e->dboid = e->roleid = InvalidOid;	/* the last entry: everyone else */
	if (dropped)
	{
		e->dropped++;
		e->last_at = now;
	}
	else
	{
		e->waited++;
		e->last_wait_at = now;
	}
	warn = TimestampDifferenceExceeds(e->warned_at, now, WARN_EVERY_MS);
	if (warn)
		e->warned_at = now;
	SpinLockRelease(&drops->mutex);
	if (warn)
		warn_pressure(dropped);
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

/* A transaction ends: its unused room goes back, or stays for the next while the share is little used. */
static void
share_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (credits > 0 && credit_slot && credit_slot->dboid == MyDatabaseId &&
			(int64) pg_atomic_read_u64(&credit_slot->queued) < credit_share / 8)
			return;
		give_back();
	}
}

static void
give_back_at_exit(int code, Datum arg)
{
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
		before_shmem_exit(give_back_at_exit, (Datum) 0);
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
	credit_share = share;
	used_since_take += n;
	/*
	 * A quarter of the share used: the log writer should not wait for its
	 * next round.  Not when it is switched off: it would reset its latch and
	 * sleep again, a system call and a wake-up at every claim.
	 */
	if (before + n >= share / 4 && slot->writer_latch && crm_gdpr_enable_log_writer)
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
	bool		waited = false;

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
		if (!waited)
			count_pressure(false);	/* once per read that waits */
		waited = true;
		if (slot->writer_latch)
			SetLatch(slot->writer_latch);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (!before_read)
		count_pressure(true);
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
	count_pressure(true);
}

/*
 * A record longer than a quarter of the ring (a small crm_gdpr.log_queue_size
 * and a read of hundreds of people): dropped, and counted as such.
 */
void
crm_gdpr_log_share_too_long(void)
{
	count_pressure(true);
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

/* A copy of the counts, taken under the lock. */
static void
copy_counts(DropCount *copy)
{
	SpinLockAcquire(&drops->mutex);
	memcpy(copy, drops->entries, sizeof(DropCount) * DROP_ENTRIES);
	SpinLockRelease(&drops->mutex);
}

/* The (database, role) columns of an entry: NULL for the catch-all last one. */
static void
put_names(const DropCount *e, Datum *v, bool *n)
{
	char	   *db = OidIsValid(e->dboid) ? get_database_name(e->dboid) : NULL;
	char	   *role = OidIsValid(e->roleid) ? GetUserNameFromId(e->roleid, true) : NULL;

	v[0] = db ? CStringGetTextDatum(db) : (Datum) 0;
	n[0] = db == NULL;
	v[1] = role ? CStringGetTextDatum(role) : (Datum) 0;
	n[1] = role == NULL;
}

/*
 * The counts since the server started, by database and role: the drops
 * (gdpr.access_log_queue_drops(): database, role, dropped, last_at) or, with
 * waits, the queue's pressure (gdpr.log_queue_alarms: database, role,
 * dropped, waited, last drop, last wait).
 */
static Datum
put_counts(FunctionCallInfo fcinfo, bool with_waits)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DropCount	copy[DROP_ENTRIES];

	InitMaterializedSRF(fcinfo, 0);
	if (drops == NULL)
		return (Datum) 0;
	copy_counts(copy);
	for (int i = 0; i < DROP_ENTRIES; i++)
	{
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};

		if (copy[i].dropped == 0 && (!with_waits || copy[i].waited == 0))
			continue;
		put_names(&copy[i], v, n);
		v[2] = Int64GetDatum(copy[i].dropped);
		if (with_waits)
		{
			v[3] = Int64GetDatum(copy[i].waited);
			v[4] = TimestampTzGetDatum(copy[i].last_at);
			n[4] = copy[i].dropped == 0;
			v[5] = TimestampTzGetDatum(copy[i].last_wait_at);
			n[5] = copy[i].waited == 0;
		}
		else
			v[3] = TimestampTzGetDatum(copy[i].last_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(gdpr_log_queue_drops);
Datum
gdpr_log_queue_drops(PG_FUNCTION_ARGS)
{
	return put_counts(fcinfo, false);
}

PG_FUNCTION_INFO_V1(gdpr_log_queue_pressure);
Datum
gdpr_log_queue_pressure(PG_FUNCTION_ARGS)
{
	return put_counts(fcinfo, true);
}
