/*
 * settings.h — every crm_gdpr.* setting (guc.c defines them all).
 *
 * The values live here; the files that use them read these variables.  Each
 * setting is documented in doc/reference.md.
 */
#ifndef CRM_GDPR_SETTINGS_H
#define CRM_GDPR_SETTINGS_H

/* Define every setting; the PGC_POSTMASTER ones only when preloading. */
extern void crm_gdpr_define_settings(bool preloading);

/* Keys (keys.c) */
extern char *crm_gdpr_key_file;
extern char *crm_gdpr_retired_key_files;

/* Reads (read_hook.c) and the access log's SQL */
extern bool crm_gdpr_log_reads;
extern char *crm_gdpr_purpose;
extern int	crm_gdpr_max_rows_per_query;
extern int	crm_gdpr_mass_read_rows;
extern char *crm_gdpr_mass_read_window;
extern char *crm_gdpr_access_log_keep;

/* Writes (log_write.c) and the read queue (log_queue.c) */
extern int	crm_gdpr_log_subjects_max;
extern int	crm_gdpr_log_queue_size;

/* The workers (bgworker.c, purge_worker.c, log_writer.c) and the purge's SQL */
extern char *crm_gdpr_database;
extern bool crm_gdpr_enable_worker;
extern int	crm_gdpr_purge_naptime;
extern int	crm_gdpr_purge_batch_size;
extern int	crm_gdpr_purge_lock_timeout;
extern char *crm_gdpr_purge_history_keep;
extern bool crm_gdpr_enable_log_writer;
extern int	crm_gdpr_log_flush_interval;
extern int	crm_gdpr_log_seal_interval;
extern int	crm_gdpr_max_databases;
extern int	crm_gdpr_launcher_naptime;

/* crm_gdpr.log_queue_full: what a read does when its database's share of the queue is full */
#define LOG_QUEUE_FULL_WAIT 0
#define LOG_QUEUE_FULL_DROP 1
#define LOG_QUEUE_FULL_ERROR 2
extern int	crm_gdpr_log_queue_full;

/* crm_gdpr.restriction_reads: whether a restricted subject's rows are hidden from readers (restriction_reads.c) */
#define RESTRICTION_READS_FILTER 0
#define RESTRICTION_READS_OFF 1
extern int	crm_gdpr_restriction_reads;

#endif							/* CRM_GDPR_SETTINGS_H */
