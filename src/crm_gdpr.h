/*
 * crm_gdpr.h — what the module's C files share.
 */
#ifndef CRM_GDPR_H
#define CRM_GDPR_H

/* Whether the library was loaded through shared_preload_libraries. */
extern bool crm_gdpr_preloaded(void);

/* Raise a clear error, with a hint, when a feature needs preloading. */
extern void crm_gdpr_require_preload(const char *feature);


/* Run SPI as the owner of a trigger function (see owner_context.c). */
typedef struct OwnerContext
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nest_level;
} OwnerContext;

extern void crm_gdpr_enter_owner_context(Oid fn_oid, OwnerContext *ctx);
extern void crm_gdpr_leave_owner_context(OwnerContext *ctx);

#endif							/* CRM_GDPR_H */
