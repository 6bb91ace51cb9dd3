-- Last, as in a fresh install (src/sql/99_privileges.sql): PUBLIC may execute
-- none of the functions the parts above created.  (Tables and sequences give
-- PUBLIC nothing by default; a REVOKE on all of them here would also stamp an
-- ACL on the access log's month partitions, which a fresh install leaves
-- without one.)
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA gdpr FROM PUBLIC;
-- But the gdpr_restriction policy's function, which every reader of a
-- registered table executes (62_restriction_reads.sql).
GRANT EXECUTE ON FUNCTION gdpr.restriction_visible(oid, tid), gdpr.restriction_visible(oid, tid, anyelement) TO PUBLIC;
