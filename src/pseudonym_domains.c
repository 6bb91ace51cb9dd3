/*
 * pseudonym_domains.c — the pseudonym domains only the extension computes.
 *
 * A keyed pseudonym is one-way only for whoever cannot compute it: anyone who
 * may call gdpr.pseudonymise(candidate, 'erasure-ledger') can test every
 * customer id against the erasure ledger, every phone number against the
 * suppression list, every first name against a retention-pseudonymised
 * column.  So the domains the extension uses internally are reserved: the
 * public gdpr.pseudonymise() refuses them, and the extension's own code
 * calls gdpr._pseudonym() (the same function without the check), which no
 * role but the extension's owner may execute.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "crm_gdpr.h"

/* Keep in step with doc/crypto.md ("Reserved domains"). */
static const char *const reserved_domains[] = {
	"access-log", "erasure-ledger", "suppression", "subject-key", "retention", "erasure", "reason",
};

static bool
domain_is_reserved(text *domain)
{
	int			len = VARSIZE_ANY_EXHDR(domain);
	const char *s = VARDATA_ANY(domain);

	/* Every name of the extension's own, present and future: gdpr:... */
	if (len >= 5 && pg_strncasecmp(s, "gdpr:", 5) == 0)
		return true;
	for (int i = 0; i < lengthof(reserved_domains); i++)
		if (strlen(reserved_domains[i]) == len && pg_strncasecmp(s, reserved_domains[i], len) == 0)
			return true;
	return false;
}

extern Datum gdpr_pseudonymise(PG_FUNCTION_ARGS);

/* gdpr.pseudonymise(value, domain): a reserved domain is refused. */
PG_FUNCTION_INFO_V1(gdpr_pseudonymise_checked);
Datum
gdpr_pseudonymise_checked(PG_FUNCTION_ARGS)
{
	text	   *domain = PG_GETARG_TEXT_PP(1);

	if (domain_is_reserved(domain))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pseudonym domain \"%s\" is reserved for the extension", text_to_cstring(domain)),
				 errdetail("Pseudonyms of this domain identify people in the extension's own registers; "
						   "computing them would let anyone test candidates against those registers."),
				 errhint("Use a domain of your own, e.g. the name of your application or column.")));
	return gdpr_pseudonymise(fcinfo);
}
