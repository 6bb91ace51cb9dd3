# Print, as CREATE OR REPLACE, the functions named in -v names="a b c" from
# the install script's parts: an upgrade script takes their new definitions
# from the one place they are written.  A definition ends with a line "$$;".
BEGIN { n = split(names, list, " "); for (i = 1; i <= n; i++) wanted[list[i]] = 1 }
/^CREATE FUNCTION gdpr\.[a-z_]+\(/ {
  name = $0; sub(/^CREATE FUNCTION gdpr\./, "", name); sub(/\(.*/, "", name)
  if (name in wanted) { printing = 1; print ""; sub(/^CREATE FUNCTION/, "CREATE OR REPLACE FUNCTION") }
}
printing { print }
printing && /^\$\$;$/ { printing = 0 }
