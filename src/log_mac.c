/*
 * log_mac.c — the keyed MAC of every access log row.
 *
 * A BEFORE INSERT row trigger gives each row a MAC (BLAKE2b keyed with a
 * subkey of the master key, prefixed with the key's fingerprint) over its
 * fields in a canonical form; gdpr.verify_access_log() recomputes it with
 * gdpr._log_row_mac().  The canonical form names each field and gives its
 * length, so that no two rows share it, and writes timestamps as
 * microseconds: no session setting (time zone, date style) changes it, nor a
 * dump and restore.  tbl (an OID) is left out for that reason: table_name, the
 * name it had, is covered instead.  A row that arrives with a MAC keeps it:
 * that is a restore (a forged one fails verification).
 *
 * Only the extension's own writers get a MAC: the log writer's flush and the
 * event functions open the MAC door (gdpr._log_mac_door(true)) for their
 * INSERT and close it after; the door closes at the end of the transaction
 * in any case.  A row inserted by anyone else, a superuser included, is left
 * without a MAC, and verify reports it as forged (issue 18.8: the trigger
 * gave a plain INSERT of a fake row a valid MAC).
 *
 * Two forms, told apart by the row itself: rows of 0.2 name their subjects
 * in subject_refs and have no subject_keys (the column did not exist): their
 * form is that of 0.2, unchanged, so that they keep verifying after the
 * update.  Rows of 0.3 name them in subject_keys: their form adds
 * "subject_keys=..." at its end.  A row whose keys were removed, added or
 * changed has another form or another text: its MAC fails.
 */
#include "postgres.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "access_log.h"

/*
 * MAC of msg under the access log's subkey of the master key named by
 * fingerprint (NULL: the current key), written as fingerprint || MAC into out
 * (LOG_MAC_BYTES).  False when that key is not loaded.
 */
bool
crm_gdpr_log_mac(const unsigned char *msg, size_t len, const unsigned char *fingerprint,
				 unsigned char *out)
{
	const unsigned char *fps[1];
	const unsigned char *master;

	if (fingerprint == NULL)
	{
		if (crm_gdpr_key_fingerprints(fps, 1) == 0)
			return false;
		fingerprint = fps[0];
	}
	master = crm_gdpr_key_by_fingerprint(fingerprint);
	if (master == NULL)
		return false;
	memcpy(out, fingerprint, KEY_FINGERPRINT_BYTES);
	crypto_generichash(out + KEY_FINGERPRINT_BYTES, LOG_MAC_BYTES - KEY_FINGERPRINT_BYTES, msg, len,
					   crm_gdpr_derived_key(master, fingerprint, SUBKEY_LOG_MAC, NULL), 32);
	return true;
}

static bool mac_door_open = false;
static bool mac_callback_registered = false;

static void
close_mac_door(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		mac_door_open = false;
}

/* Opened by the log's own writers for their INSERT, closed after it. */
PG_FUNCTION_INFO_V1(gdpr_log_mac_door);
Datum
gdpr_log_mac_door(PG_FUNCTION_ARGS)
{
	if (!mac_callback_registered)
	{
		RegisterXactCallback(close_mac_door, NULL);
		mac_callback_registered = true;
	}
	mac_door_open = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	PG_RETURN_VOID();
}

static const char *const mac_fields[] = {
	"id", "at", "last_at", "role_name", "session_user_name", "application_name", "client_addr",
	"backend_pid", "operation", "table_name", "columns", "subject_refs", "subjects", "row_count",
	"times", "query_id", "purpose", "detail"
};

/* The column's number, 0 when the log has none of that name (subject_keys before 0.3). */
static int
attnum_if(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return 0;
}

static int
attnum_of(TupleDesc desc, const char *name)
{
	int			attnum = attnum_if(desc, name);

	if (attnum == 0)
		elog(ERROR, "gdpr.access_log has no column \"%s\"", name);
	return attnum;
}

/* The characters that make array_out quote a text element. */
static const bool quoted_char[256] = {
	['"'] = true, ['\\'] = true, ['{'] = true, ['}'] = true,
	[','] = true,				/* text's delimiter */
	[' '] = true, ['\t'] = true, ['\n'] = true, ['\r'] = true, ['\v'] = true, ['\f'] = true
};

/*
 * Whether array_out writes element s (len bytes) as it is, unquoted.  No
 * branch per character: pseudonyms are random letters, a test per character
 * was mispredicted half the time.
 */
static bool
plain_element(const char *s, int len)
{
	bool		quoted = false;

	if (len == 0 || (len == 4 && pg_strncasecmp(s, "NULL", 4) == 0))
		return false;
	for (int i = 0; i < len; i++)
		quoted |= quoted_char[(unsigned char) s[i]];
	return !quoted;
}

/*
 * A text[] as array_out writes it, "V<length>:{a,b,c};", without calling it
 * for the common case (one dimension from 1, no NULL, nothing to quote): the
 * subjects of a folded row are a hundred pseudonyms, and array_out was a
 * tenth of the log writer's time.  Returns false, having written nothing,
 * for any other array.
 */
static bool
append_plain_text_array(StringInfo out, Datum value)
{
	ArrayType  *a = DatumGetArrayTypeP(value);
	int			n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	array_iter	it;
	size_t		len = 2 + Max(n - 1, 0);
	int			start PG_USED_FOR_ASSERTS_ONLY;

	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || (n > 0 && ARR_LBOUND(a)[0] != 1))
		return false;
	array_iter_setup(&it, (AnyArrayType *) a);
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		text	   *t = DatumGetTextPP(array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT));

		if (!plain_element(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
			return false;
		len += VARSIZE_ANY_EXHDR(t);
	}
	appendStringInfo(out, "V%zu:{", len);
	start = out->len;
	array_iter_setup(&it, (AnyArrayType *) a);
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		text	   *t = DatumGetTextPP(array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT));

		if (i > 0)
			appendStringInfoChar(out, ',');
		appendBinaryStringInfo(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	appendStringInfoString(out, "};");
	Assert(out->len - start + 1 == len);
	return true;
}

/*
 * A bigint[] as array_out writes it, "V<length>:{1,-2,3};", without calling
 * it for the common case (one dimension from 1, no NULL): a folded read
 * names two hundred subjects.  False, having written nothing, otherwise.
 */
static bool
append_plain_int8_array(StringInfo out, Datum value)
{
	ArrayType  *a = DatumGetArrayTypeP(value);
	int			n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	const int64 *keys = (const int64 *) ARR_DATA_PTR(a);
	StringInfoData list;

	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || (n > 0 && ARR_LBOUND(a)[0] != 1))
		return false;
	initStringInfo(&list);
	appendStringInfoChar(&list, '{');
	for (int i = 0; i < n; i++)
	{
		enlargeStringInfo(&list, MAXINT8LEN + 2);
		if (i > 0)
			list.data[list.len++] = ',';
		list.len += pg_lltoa(keys[i], list.data + list.len);
	}
	appendStringInfoChar(&list, '}');
	appendStringInfo(out, "V%d:%s;", list.len, list.data);
	pfree(list.data);
	return true;
}

/* One field of the canonical form: name=N; or name=V<length>:<text>; */
static void
canonical_field(StringInfo out, const char *name, Oid type, Datum value, bool isnull)
{
	char	   *text;

	appendStringInfo(out, "%s=", name);
	if (isnull)
	{
		appendStringInfoString(out, "N;");
		return;
	}
	if (type == TEXTARRAYOID && append_plain_text_array(out, value))
		return;
	if (type == INT8ARRAYOID && append_plain_int8_array(out, value))
		return;
	if (type == TIMESTAMPTZOID)
		text = psprintf(INT64_FORMAT, DatumGetTimestampTz(value));
	else
	{
		Oid			output;
		bool		varlena;

		getTypeOutputInfo(type, &output, &varlena);
		text = OidOutputFunctionCall(output, value);
	}
	appendStringInfo(out, "V%zu:%s;", strlen(text), text);
}

static void
canonical_row(HeapTuple tuple, TupleDesc desc, StringInfo out)
{
	int			keys_attnum = attnum_if(desc, "subject_keys");

	for (int i = 0; i < lengthof(mac_fields); i++)
	{
		int			attnum = attnum_of(desc, mac_fields[i]);
		bool		isnull;
		Datum		value = heap_getattr(tuple, attnum, desc, &isnull);

		canonical_field(out, mac_fields[i], TupleDescAttr(desc, attnum - 1)->atttypid, value, isnull);
	}
	/* The form of 0.3: with the subjects' keys (the header comment). */
	if (keys_attnum > 0)
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, keys_attnum, desc, &isnull);

		if (!isnull)
			canonical_field(out, "subject_keys", TupleDescAttr(desc, keys_attnum - 1)->atttypid, value, false);
	}
}

/* The MAC of a row under the key named by fingerprint (NULL: current), or NULL. */
static bytea *
row_mac(HeapTuple tuple, TupleDesc desc, const unsigned char *fingerprint)
{
	StringInfoData buf;
	bytea	   *mac = palloc(VARHDRSZ + LOG_MAC_BYTES);
	bool		made;

	initStringInfo(&buf);
	canonical_row(tuple, desc, &buf);
	made = crm_gdpr_log_mac((unsigned char *) buf.data, buf.len, fingerprint, (unsigned char *) VARDATA(mac));
	pfree(buf.data);
	if (!made)
		return NULL;
	SET_VARSIZE(mac, VARHDRSZ + LOG_MAC_BYTES);
	return mac;
}

PG_FUNCTION_INFO_V1(gdpr_log_mac_row);
Datum
gdpr_log_mac_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	int			mac_attnum;
	bool		isnull;
	bytea	   *mac;
	Datum		value;
	bool		null = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("gdpr._log_mac_row() must be a BEFORE INSERT row trigger")));
	desc = RelationGetDescr(td->tg_relation);
	mac_attnum = attnum_of(desc, "mac");
	(void) heap_getattr(td->tg_trigtuple, mac_attnum, desc, &isnull);
	if (!isnull || !mac_door_open)
		return PointerGetDatum(td->tg_trigtuple);	/* a restore, or not the log's writer */
	mac = row_mac(td->tg_trigtuple, desc, NULL);
	if (mac == NULL)
		return PointerGetDatum(td->tg_trigtuple);	/* no key: verify reports the row */
	value = PointerGetDatum(mac);
	return PointerGetDatum(heap_modify_tuple_by_cols(td->tg_trigtuple, desc, 1, &mac_attnum, &value, &null));
}

PG_FUNCTION_INFO_V1(gdpr_log_row_mac);
Datum
gdpr_log_row_mac(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row), HeapTupleHeaderGetTypMod(row));
	HeapTupleData tuple;
	bool		isnull;
	Datum		stored;
	const unsigned char *fingerprint = NULL;
	bytea	   *mac;

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	stored = heap_getattr(&tuple, attnum_of(desc, "mac"), desc, &isnull);
	if (!isnull && VARSIZE_ANY_EXHDR(DatumGetByteaPP(stored)) == LOG_MAC_BYTES)
		fingerprint = (unsigned char *) VARDATA_ANY(DatumGetByteaPP(stored));
	mac = row_mac(&tuple, desc, fingerprint);
	ReleaseTupleDesc(desc);
	if (mac == NULL)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(mac);
}

/* For seals: fingerprint || MAC of data; NULL when the key is not loaded. */
PG_FUNCTION_INFO_V1(gdpr_log_keyed_hash);
Datum
gdpr_log_keyed_hash(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	const unsigned char *fingerprint = NULL;
	bytea	   *mac = palloc(VARHDRSZ + LOG_MAC_BYTES);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	data = PG_GETARG_BYTEA_PP(0);
	if (!PG_ARGISNULL(1))
	{
		bytea	   *fp = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(fp) != KEY_FINGERPRINT_BYTES)
			PG_RETURN_NULL();
		fingerprint = (unsigned char *) VARDATA_ANY(fp);
	}
	if (!crm_gdpr_log_mac((unsigned char *) VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data), fingerprint,
						  (unsigned char *) VARDATA(mac)))
		PG_RETURN_NULL();
	SET_VARSIZE(mac, VARHDRSZ + LOG_MAC_BYTES);
	PG_RETURN_BYTEA_P(mac);
}

/* A subject's references under every loaded key (current and retired). */
PG_FUNCTION_INFO_V1(gdpr_log_subject_refs);
Datum
gdpr_log_subject_refs(PG_FUNCTION_ARGS)
{
	text	   *id = PG_GETARG_TEXT_PP(0);
	const unsigned char *fps[16];
	int			n = crm_gdpr_key_fingerprints(fps, lengthof(fps));
	Datum	   *refs = palloc(sizeof(Datum) * (n + 1));

	for (int i = 0; i < n; i++)
		refs[i] = PointerGetDatum(crm_gdpr_log_subject_ref_under(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id), fps[i]));
	refs[n] = PointerGetDatum(crm_gdpr_log_subject_ref_under(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id), NULL));
	PG_RETURN_ARRAYTYPE_P(construct_array(refs, n + 1, TEXTOID, -1, false, TYPALIGN_INT));
}

/* A subject's keys under every loaded key (current and retired), and unkeyed. */
PG_FUNCTION_INFO_V1(gdpr_log_subject_keys);
Datum
gdpr_log_subject_keys(PG_FUNCTION_ARGS)
{
	text	   *id = PG_GETARG_TEXT_PP(0);
	const unsigned char *fps[16];
	int			n = crm_gdpr_key_fingerprints(fps, lengthof(fps));
	int64	   *keys = palloc(sizeof(int64) * (n + 1));

	for (int i = 0; i < n; i++)
		keys[i] = crm_gdpr_log_subject_key_under(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id), fps[i]);
	keys[n] = crm_gdpr_log_subject_key_under(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id), NULL);
	PG_RETURN_DATUM(crm_gdpr_log_key_array(keys, n + 1));
}

/* A subject's key under the current key, as the log writer names him. */
PG_FUNCTION_INFO_V1(gdpr_log_subject_key);
Datum
gdpr_log_subject_key(PG_FUNCTION_ARGS)
{
	text	   *id = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64(crm_gdpr_log_subject_key(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id)));
}

PG_FUNCTION_INFO_V1(gdpr_log_subject_ref);
Datum
gdpr_log_subject_ref(PG_FUNCTION_ARGS)
{
	text	   *id = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(crm_gdpr_log_subject_ref(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id)));
}
