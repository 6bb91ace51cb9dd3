# crm_gdpr — PGXS build.  `make test` and `make demo` are the two entry points
# a newcomer needs (see README.md); the rest is the usual PGXS machinery.

EXTENSION   = crm_gdpr
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = crm_gdpr
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK  = -lsodium

# The install script is assembled from one file per concern, in name order.
SQL_PARTS   = $(sort $(wildcard src/sql/*.sql))
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*--*.sql))

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=plpgsql
# Isolation specs live under test/isolation (specs/ and expected/).
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso
EXTRA_CLEAN  = results regression.diffs regression.out output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) $(EXTENSION).control
	{ echo '-- generated from src/sql/*.sql by make: edit those files'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  for f in $(SQL_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# A fresh master key: make keygen KEY_FILE=/etc/postgresql/15/main/crm_gdpr.key
KEY_FILE ?= crm_gdpr.key
.PHONY: test demo deps keygen bench bench-crypto bench-purge bench-rights bench-log crash-loop
# The crash test of make test (3 cycles), 20 times over.
crash-loop: deps
	@CYCLES=20 bash test/run.sh
# Benchmarks print ratios against baselines measured in the same run.
bench-crypto: deps
	@bash test/bench/crypto.sh
bench-purge: deps
	@bash test/bench/purge.sh
bench-rights: deps
	@bash test/bench/rights.sh
bench-log: deps
	@bash test/bench/log.sh
bench: bench-crypto bench-purge bench-rights bench-log
keygen:
	@test ! -e '$(KEY_FILE)' || { echo "$(KEY_FILE) exists: refusing to overwrite a key" >&2; exit 1; }
	@(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > '$(KEY_FILE)'; echo >> '$(KEY_FILE)')
	@echo "wrote $(KEY_FILE) (mode 0600); chown it to the server's user and set crm_gdpr.key_file"

deps:
	@bash test/deps.sh

test: deps
	@bash test/run.sh

demo: deps
	@bash test/demo.sh
