# crm_gdpr — PGXS build.  `make test` and `make demo` are the two entry points
# a newcomer needs (see README.md); the rest is the usual PGXS machinery.

EXTENSION   = crm_gdpr
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = crm_gdpr
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# src/pg_compat.h (what differs between PostgreSQL majors) is included
# first in every C file, so that no file can miss a shim.
PG_CPPFLAGS = -I$(srcdir)/src -include $(srcdir)/src/pg_compat.h -DCRM_GDPR_VERSION='"$(EXTVERSION)"'
# `make test` builds with WERROR=1: every warning of -Wall -Wextra is an
# error, less those that PostgreSQL's own headers and idioms raise.  Other
# builds keep the server's flags, so that another compiler does not fail.
STRICT_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# A function a newer major no longer declares must stop every build, not
# load as an undefined symbol.
PG_CFLAGS   = -Werror=implicit-function-declaration $(if $(WERROR),$(STRICT_CFLAGS))
SHLIB_LINK  = -lsodium

# Released versions are frozen files in releases/ that never change (a test
# checks their digests).  The version under development has its install
# script assembled from one file per concern in src/sql, in name order, and
# its upgrade from the last release written by hand in src/upgrade/<version>/
# (one part per concern, concatenated in name order).  `make upgrade-draft`
# lists what changed since the last release, to help write that upgrade.
SQL_PARTS     = $(sort $(wildcard src/sql/*.sql))
LAST_RELEASE  = 0.2
UPGRADE_PARTS = $(sort $(wildcard src/upgrade/$(EXTVERSION)/*.sql))
DATA_built    = $(EXTENSION)--$(EXTVERSION).sql $(EXTENSION)--$(LAST_RELEASE)--$(EXTVERSION).sql
DATA          = $(sort $(wildcard releases/$(EXTENSION)--*.sql))

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=plpgsql
# Isolation specs live under test/isolation (specs/ and expected/).
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso
EXTRA_CLEAN  = results regression.diffs regression.out output_iso .pg_version .tap_key
# `make installcheck` against an installed server runs every suite a packager
# needs (doc/install.md, "Testing an installed build"): pg_regress and the
# isolation specs, the pgTAP files (test/pgtap, with pg_prove, in a database
# it creates) and the TAP tests (test/tap, through PGXS's TAP_TESTS: each
# starts its own cluster from the installed binaries).  SUITES narrows it:
# `make test` runs `make installcheck SUITES=regress` and the others itself.
SUITES ?= regress pgtap tap
ifneq ($(filter tap,$(SUITES)),)
TAP_TESTS   = 1
PROVE_TESTS = $(sort $(wildcard test/tap/*.pl))
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

ifneq ($(filter pgtap,$(SUITES)),)
installcheck: installcheck-pgtap
endif
ifneq ($(filter tap,$(SUITES)),)
# The TAP tests read the fixtures and the committed TEST key, which the server
# accepts only with mode 0600 (git keeps 0644).
installcheck: export CRM_GDPR_FIXTURES = $(abspath test/fixtures)
installcheck: export CRM_GDPR_KEY_FILE = $(abspath .tap_key/test_master.key)
installcheck: tap-key
endif
.PHONY: installcheck-pgtap tap-key
installcheck-pgtap:
	@bash test/installcheck_pgtap.sh
tap-key:
	@mkdir -p .tap_key && install -m 0600 test/fixtures/test_master.key .tap_key/test_master.key

# PGXS does not track headers: every object depends on every header (a
# stale object with an old LogRecord layout corrupts what it queues).  Nor
# does it notice another server: objects also depend on a stamp holding the
# server's version, rewritten when PG_CONFIG points at another major (an
# object built for 15 links against 18 and fails to load).
PG_STAMP = .pg_version
$(shell echo '$(VERSION)' | cmp -s - $(PG_STAMP) 2>/dev/null || echo '$(VERSION)' > $(PG_STAMP))
$(OBJS): $(wildcard src/*.h) $(PG_STAMP)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) $(EXTENSION).control
	{ echo '-- generated from src/sql/*.sql by make: edit those files'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  for f in $(SQL_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

$(EXTENSION)--$(LAST_RELEASE)--$(EXTVERSION).sql: $(UPGRADE_PARTS) $(EXTENSION).control
	{ echo '-- assembled from src/upgrade/$(EXTVERSION)/*.sql by make: edit those files'; \
	  printf '%s\n' '\echo Use "ALTER EXTENSION $(EXTENSION) UPDATE" to load this file. \quit'; \
	  for f in $(UPGRADE_PARTS); do echo; echo "-- ==== $$f"; cat $$f; done; } > $@

# What changed in src/sql since the last release: functions, views and tables
# added, removed or redefined (a list to write the upgrade from, nothing more).
upgrade-draft: $(EXTENSION)--$(EXTVERSION).sql
	@bash test/upgrade_draft.sh releases/$(EXTENSION)--$(LAST_RELEASE).sql $(EXTENSION)--$(EXTVERSION).sql

# A fresh master key: make keygen KEY_FILE=/etc/postgresql/15/main/crm_gdpr.key
KEY_FILE ?= crm_gdpr.key
.PHONY: test test-all package-test demo deps keygen upgrade-draft bench bench-crypto bench-purge bench-rights bench-log bench-log-many bench-log-floor bench-log-cpu bench-log-volume bench-queue crash-loop
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
	@bash test/bench/log.sh && bash test/bench/log_many.sh
bench-log-many: deps
	@bash test/bench/log_many.sh
# Where a logged write's cost goes: PostgreSQL's statement triggers alone (a no-op function) vs the extension's own work.
bench-log-floor: deps
	@bash test/bench/log_floor.sh
# Who spends a logged transaction's extra time: CPU a transaction of the backends, pgbench, the log writer (W=select|write).
bench-log-cpu: deps
	@bash test/bench/cpu_per_tx.sh
# Bytes of the access log per logged read at 1,000 reads/s + 100 writes/s (throttled).
bench-log-volume: deps
	@bash test/bench/log_volume.sh
# The read queue under two databases, one flooding it: the victim's TPS and losses.
bench-queue: deps
	@bash test/bench/queue.sh
# Every benchmark in one invocation, then all their rows as one table.
bench: deps
	@rm -f /tmp/crm_gdpr_bench_summary.$$$$; export BENCH_SUMMARY=/tmp/crm_gdpr_bench_summary.$$$$; \
	  bash test/bench/crypto.sh && bash test/bench/purge.sh && bash test/bench/rights.sh && bash test/bench/log.sh && bash test/bench/log_many.sh && \
	  bash test/bench/log_volume.sh && bash test/bench/queue.sh; \
	  rc=$$?; echo; echo "== all benchmarks, $$(nproc) cores, $$(date -u +%Y-%m-%d), SCALE=$${SCALE:-default}"; \
	  printf '%-44s %14s %14s %9s  %s\n' workload crm_gdpr baseline ratio goal; cat $$BENCH_SUMMARY; \
	  rm -f $$BENCH_SUMMARY; exit $$rc
keygen:
	@test ! -e '$(KEY_FILE)' || { echo "$(KEY_FILE) exists: refusing to overwrite a key" >&2; exit 1; }
	@(umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > '$(KEY_FILE)'; echo >> '$(KEY_FILE)')
	@echo "wrote $(KEY_FILE) (mode 0600); chown it to the server's user and set crm_gdpr.key_file"

deps:
	@bash test/deps.sh

# make test PG=17 / PG=18 runs the suite on that major (its server is built
# once from Debian's source package, test/pg_build.sh); test-all on each.
PG ?= 15
TEST_MAJORS ?= 15 17 18
test: deps
	@PG=$(PG) bash test/run.sh

test-all: deps
	@rc=0; for v in $(TEST_MAJORS); do echo "==== PostgreSQL $$v"; PG=$$v bash test/run.sh || rc=1; done; exit $$rc

demo: deps
	@bash test/demo.sh

# The Debian package (debian/, pg_buildext): build it, unpack it over a
# private copy of the server and run the demo against it.
package-test:
	@bash test/package.sh
