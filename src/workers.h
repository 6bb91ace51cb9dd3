/*
 * workers.h — the extension's background workers: the launcher
 * (launcher.c), which starts for each database where crm_gdpr is installed
 * its purge worker (purge_worker.c) and its log writer (log_writer.c), which
 * starts the log maintenance worker when a month waits for its index or its
 * removal (log_months.c); the
 * table of databases they serve (db_workers.c); what they share
 * (bgworker.c).
 */
#ifndef CRM_GDPR_WORKERS_H
#define CRM_GDPR_WORKERS_H

#include "port/atomics.h"
#include "storage/latch.h"

/* A database served by the workers (db_workers.c), in shared memory. */
typedef struct DbSlot
{
	Oid			dboid;			/* InvalidOid: a free slot */
	pg_atomic_uint32 installed; /* crm_gdpr is installed there */
	int			writer_pid;		/* 0: not running */
	int			purge_pid;
	TimestampTz paused_until;	/* a DROP/RENAME DATABASE holds the launcher off */
	pg_atomic_uint64 queued;	/* read-queue room its backends hold (log_queue_share.c) */
	pg_atomic_uint64 takes;		/* how many times its records were taken */
	Latch	   *writer_latch;	/* its log writer's, woken when its share fills */
} DbSlot;

/* db_workers.c */
extern void crm_gdpr_db_workers_init(bool preloading);
extern DbSlot *crm_gdpr_db_slot(Oid dboid, bool create);
extern int	crm_gdpr_db_slot_count(void);
extern DbSlot *crm_gdpr_db_slot_at(int i);
extern void crm_gdpr_db_slot_free(DbSlot *slot);
extern int	crm_gdpr_db_slots_installed(void);
extern void crm_gdpr_db_slot_set_pid(DbSlot *slot, bool writer, int pid);
extern bool crm_gdpr_db_slot_paused(DbSlot *slot);
extern void crm_gdpr_launcher_set_latch(Latch *latch);
extern void crm_gdpr_wake_launcher(void);

/* bgworker.c */
extern void crm_gdpr_worker_connect(const char *name, Datum arg, bool writer);
extern void crm_gdpr_worker_pin_settings(void);
extern void crm_gdpr_register_launcher(void);
extern int64 crm_gdpr_run_int8(const char *sql, int nargs, Oid *types, Datum *values);
extern void crm_gdpr_begin_step(const char *activity);
extern void crm_gdpr_end_step(void);
extern bool crm_gdpr_extension_ready(void);
extern void crm_gdpr_worker_stop_unless_installed(const char *who);
extern const char *crm_gdpr_worker_database(void);

/* log_months.c */
extern void crm_gdpr_log_start_months_worker(bool months_waiting);

/* the entry points: the launcher registered by _PG_init, the others started by it (the log maintenance worker by the log writer) */
PGDLLEXPORT extern void crm_gdpr_launcher_main(Datum arg);
PGDLLEXPORT extern void crm_gdpr_purge_worker_main(Datum arg);
PGDLLEXPORT extern void crm_gdpr_log_writer_main(Datum arg);
PGDLLEXPORT extern void crm_gdpr_log_months_main(Datum arg);

#endif							/* CRM_GDPR_WORKERS_H */
