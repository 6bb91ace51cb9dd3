/*
 * workers.h — the extension's background workers: the purge worker
 * (purge_worker.c), the log writer (log_writer.c) and what they share
 * (bgworker.c).
 */
#ifndef CRM_GDPR_WORKERS_H
#define CRM_GDPR_WORKERS_H

/* bgworker.c */
extern void crm_gdpr_worker_connect(const char *name);
extern void crm_gdpr_register_worker(const char *name, const char *function);
extern int64 crm_gdpr_run_int8(const char *sql, int nargs, Oid *types, Datum *values);
extern void crm_gdpr_begin_step(const char *activity);
extern void crm_gdpr_end_step(void);
extern bool crm_gdpr_extension_ready(bool *warned, const char *who);

/* purge_worker.c and log_writer.c: their entry points, registered by _PG_init when preloading */
PGDLLEXPORT extern void crm_gdpr_purge_worker_main(Datum arg);
PGDLLEXPORT extern void crm_gdpr_log_writer_main(Datum arg);

#endif							/* CRM_GDPR_WORKERS_H */
