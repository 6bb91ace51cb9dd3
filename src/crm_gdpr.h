/*
 * crm_gdpr.h — what the module's C files share.
 */
#ifndef CRM_GDPR_H
#define CRM_GDPR_H

/* Whether the library was loaded through shared_preload_libraries. */
extern bool crm_gdpr_preloaded(void);

/* Raise a clear error, with a hint, when a feature needs preloading. */
extern void crm_gdpr_require_preload(const char *feature);

#endif							/* CRM_GDPR_H */
