/*
 * read_subject_set.c — the subjects of a read: the distinct subject keys of
 * the rows it read from one registered table.
 *
 * read_count.c hands every row a scan of a registered table passes on to
 * crm_gdpr_subject_set_add(): whatever the query's conditions look like,
 * the subjects are those of the rows actually read.  Per row this is a
 * slot_getattr() of the key column and a probe of an open-addressing set
 * that holds at most crm_gdpr.log_subjects_max keys: no allocation, no
 * output function (the set grows, by doubling, with the distinct keys).  A
 * new key is copied (when it is not passed by value) and put out as text
 * once; a key past the maximum marks the set truncated, after which rows
 * are only counted.  A 20 M row read naming one person thus costs one key,
 * where a text per row made it 486 MB (issue 24.2).
 *
 * A read by key is most of what a CRM reads, and its set costs next to
 * nothing: its one key stays in the set's own table (no allocation), an
 * integer key is put out without its output function, and other types'
 * output functions are known per backend, not looked up per query.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "read_hook.h"
#include "settings.h"

/* An empty set; the rest is set at its first key. */
void
crm_gdpr_subject_set_init(SubjectSet *set, MemoryContext cxt)
{
	set->max = crm_gdpr_log_subjects_max;
	set->count = 0;
	set->truncated = false;
	set->entries = NULL;
	set->cxt = cxt;
}

/*
 * The output functions of the last few key types, per backend: a read by
 * key would otherwise look its key's type up in the catalog at every
 * query.  Any change to pg_type forgets them.
 */
#define OUTPUT_CACHE 8
static struct
{
	Oid			typid;
	Oid			typoutput;
} output_cache[OUTPUT_CACHE];
static int	output_cache_next = 0;

static void
forget_outputs(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = 0; i < OUTPUT_CACHE; i++)
		output_cache[i].typid = InvalidOid;
}

static Oid
output_function(Oid typid)
{
	static bool callback_registered = false;
	bool		varlena;
	int			i;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(TYPEOID, forget_outputs, (Datum) 0);
		callback_registered = true;
	}
	for (i = 0; i < OUTPUT_CACHE; i++)
		if (output_cache[i].typid == typid)
			return output_cache[i].typoutput;
	i = output_cache_next;
	output_cache_next = (output_cache_next + 1) % OUTPUT_CACHE;
	output_cache[i].typid = InvalidOid;
	getTypeOutputInfo(typid, &output_cache[i].typoutput, &varlena);
	output_cache[i].typid = typid;
	return output_cache[i].typoutput;
}

/*
 * At the first key: its type (an integer is put out by hand, as its
 * output function would), and the set's own small table (a read by key
 * names one person), grown as keys come (kept at most half full) up to
 * twice the maximum.
 */
static void
first_key(SubjectSet *set, Form_pg_attribute att)
{
	set->typid = att->atttypid;
	set->typlen = att->attlen;
	set->typbyval = att->attbyval;
	if (set->typid != INT8OID && set->typid != INT4OID && set->typid != INT2OID)
		fmgr_info_cxt(output_function(set->typid), &set->output, set->cxt);
	for (int i = 0; i < SUBJECT_SET_INLINE; i++)
		set->first[i].used = false;
	set->entries = set->first;
	set->mask = SUBJECT_SET_INLINE - 1;
}

/* Twice the room, the keys moved over (a key's place depends on the size). */
static void
grow(SubjectSet *set)
{
	SubjectKey *old = set->entries;
	uint32		old_size = set->mask + 1;

	set->mask = 2 * old_size - 1;
	set->entries = MemoryContextAllocZero(set->cxt, sizeof(SubjectKey) * (set->mask + 1));
	for (uint32 i = 0; i < old_size; i++)
	{
		uint32		k;

		if (!old[i].used)
			continue;
		for (k = old[i].hash & set->mask; set->entries[k].used; k = (k + 1) & set->mask)
			;
		set->entries[k] = old[i];
		if (old[i].text == old[i].digits)
			set->entries[k].text = set->entries[k].digits;
	}
	if (old != set->first)
		pfree(old);
}

static uint32
key_hash(const SubjectSet *set, Datum value)
{
	if (set->typbyval)
		return murmurhash32((uint32) value ^ (uint32) (((uint64) value) >> 32));
	if (set->typlen > 0)
		return hash_bytes((const unsigned char *) DatumGetPointer(value), set->typlen);
	if (set->typlen == -1)
		return hash_bytes((const unsigned char *) VARDATA_ANY(DatumGetPointer(value)),
						  VARSIZE_ANY_EXHDR(DatumGetPointer(value)));
	return hash_bytes((const unsigned char *) DatumGetCString(value), strlen(DatumGetCString(value)));
}

/* Same bytes (a varlena's short or long header aside). */
static bool
key_equal(const SubjectSet *set, Datum a, Datum b)
{
	if (set->typbyval)
		return a == b;
	if (set->typlen > 0)
		return memcmp(DatumGetPointer(a), DatumGetPointer(b), set->typlen) == 0;
	if (set->typlen == -1)
		return VARSIZE_ANY_EXHDR(DatumGetPointer(a)) == VARSIZE_ANY_EXHDR(DatumGetPointer(b)) &&
			memcmp(VARDATA_ANY(DatumGetPointer(a)), VARDATA_ANY(DatumGetPointer(b)),
				   VARSIZE_ANY_EXHDR(DatumGetPointer(a))) == 0;
	return strcmp(DatumGetCString(a), DatumGetCString(b)) == 0;
}

/* A new key: copied into the query's memory, and its text, once. */
static void
keep_key(SubjectSet *set, SubjectKey *entry, Datum value, uint32 hash)
{
	MemoryContext old = MemoryContextSwitchTo(set->cxt);

	entry->value = datumCopy(value, set->typbyval, set->typlen);
	entry->text = entry->digits;
	if (set->typid == INT8OID)
		pg_lltoa(DatumGetInt64(value), entry->digits);
	else if (set->typid == INT4OID)
		pg_ltoa(DatumGetInt32(value), entry->digits);
	else if (set->typid == INT2OID)
		pg_ltoa(DatumGetInt16(value), entry->digits);
	else
		entry->text = OutputFunctionCall(&set->output, entry->value);
	entry->hash = hash;
	entry->used = true;
	set->count++;
	MemoryContextSwitchTo(old);
}

/* A key of the set's type: kept unless the set has it, or is full (then truncated). */
static void
add_value(SubjectSet *set, Datum value)
{
	struct varlena *detoasted = NULL;
	uint32		hash;
	uint32		i;

	if (set->typlen == -1 && (VARATT_IS_EXTERNAL(DatumGetPointer(value)) ||
							  VARATT_IS_COMPRESSED(DatumGetPointer(value))))
		value = PointerGetDatum(detoasted = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value)));
	hash = key_hash(set, value);
	for (i = hash & set->mask; set->entries[i].used; i = (i + 1) & set->mask)
		if (set->entries[i].hash == hash && key_equal(set, set->entries[i].value, value))
			break;
	if (!set->entries[i].used)
	{
		if (set->count >= set->max)
			set->truncated = true;
		else
		{
			keep_key(set, &set->entries[i], value, hash);
			if (2 * set->count > set->mask)
				grow(set);
		}
	}
	if (set->typbyval)
		set->last = value;
	if (detoasted)
		pfree(detoasted);
}

/* The subject key of the row in slot (column attnum), unless the set is truncated. */
void
crm_gdpr_subject_set_add(SubjectSet *set, TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		value;

	if (set->truncated)
		return;
	value = slot_getattr(slot, attnum, &isnull);
	if (isnull || (set->count > 0 && set->typbyval && value == set->last))
		return;					/* the same person as the last row: reads by key, sorted reads */
	if (set->entries == NULL)
		first_key(set, TupleDescAttr(slot->tts_tupleDescriptor, attnum - 1));
	add_value(set, value);
}

/*
 * The key's type known before any row: a set filled while an error is being
 * reported (read_failing.c), or while a failed query's memory is freed,
 * must not look the catalog up.
 */
void
crm_gdpr_subject_set_prepare(SubjectSet *set, TupleDesc desc, AttrNumber attnum)
{
	if (set->entries == NULL && attnum > 0 && attnum <= desc->natts)
		first_key(set, TupleDescAttr(desc, attnum - 1));
}

/* Whether the set's key type is known (crm_gdpr_subject_set_prepare). */
bool
crm_gdpr_subject_set_prepared(const SubjectSet *set)
{
	return set->entries != NULL;
}

/* An empty set with like's key type (which must be known). */
void
crm_gdpr_subject_set_init_like(SubjectSet *set, const SubjectSet *like, MemoryContext cxt)
{
	crm_gdpr_subject_set_init(set, cxt);
	set->typid = like->typid;
	set->typlen = like->typlen;
	set->typbyval = like->typbyval;
	set->output = like->output;
	for (int i = 0; i < SUBJECT_SET_INLINE; i++)
		set->first[i].used = false;
	set->entries = set->first;
	set->mask = SUBJECT_SET_INLINE - 1;
}

/* The set emptied, its keys' copies freed (its type kept). */
void
crm_gdpr_subject_set_clear(SubjectSet *set)
{
	for (uint32 i = 0; set->entries && i <= set->mask; i++)
	{
		SubjectKey *e = &set->entries[i];

		if (!e->used)
			continue;
		if (!set->typbyval)
			pfree(DatumGetPointer(e->value));
		if (e->text != e->digits)
			pfree(e->text);
		e->used = false;
	}
	set->count = 0;
	set->truncated = false;
}

/* from's keys added to into (same key type; into's known). */
void
crm_gdpr_subject_set_merge(SubjectSet *into, const SubjectSet *from)
{
	into->truncated |= from->truncated;
	for (uint32 i = 0; from->entries && i <= from->mask && !into->truncated; i++)
		if (from->entries[i].used)
			add_value(into, from->entries[i].value);
}

/*
 * The keys as text into out (room for set->count), as many as
 * LOG_RECORD_SUBJECT_BYTES hold (past that the set is marked truncated);
 * returns how many.  Allocates nothing: it also runs while a failed query's
 * memory is being freed.
 */
int
crm_gdpr_subject_set_texts(SubjectSet *set, const char **out)
{
	int			n = 0;
	Size		bytes = 0;

	for (uint32 i = 0; set->entries && i <= set->mask; i++)
	{
		if (!set->entries[i].used)
			continue;
		bytes += Min(strlen(set->entries[i].text), LOG_RECORD_SUBJECT_LEN - 1) + 1;
		if (bytes > LOG_RECORD_SUBJECT_BYTES)
		{
			set->truncated = true;
			break;
		}
		out[n++] = set->entries[i].text;
	}
	return n;
}
