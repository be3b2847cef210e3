# pymemtrace: the README's two commands are `make demo` and `make test`.
# Every target bootstraps .venv by itself.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CC ?= cc
MESON := $(VENV)/bin/meson
# Meson builds everything: the package (through pip), the C unit tests
# (tests/c/meson.build, -Dtests=true) and the fuzz harnesses (fuzz/meson.build,
# -Dfuzz=true), each kind in its own build directory.
CTEST_NAMES := $(basename $(notdir $(wildcard tests/c/test_*.c)))
FUZZ_NAMES := $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))
# meson_setup DIR ARGS: configure DIR once, reconfigure it after (new test files are found then)
meson_setup = if [ -f $(1)/build.ninja ]; then $(MESON) setup --reconfigure $(1) $(2) >/dev/null; \
	else $(MESON) setup $(1) $(2) >/dev/null; fi
CTEST_ARGS := -Dtests=true -Dbuildtype=debugoptimized -Db_ndebug=false

.PHONY: all venv install demo test test-quick test-versions soak ctest ctest-build fuzz-build pytest bench sanitize valgrind clean system-deps test-original

all: install

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.deps

system-deps:
	@sh scripts/system-deps.sh

# Build every C part with meson and install the package into .venv.
install: system-deps venv
	$(VPY) -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/meson .

# The C unit tests of src/core, built by meson into build/ctest and run by `meson test`.
ctest-build: venv
	@$(call meson_setup,build/ctest,$(CTEST_ARGS))
	$(MESON) compile -C build/ctest $(CTEST_NAMES)

ctest: ctest-build
	$(MESON) test -C build/ctest --no-rebuild --suite ctest --print-errorlogs

pytest: install
	cd tests && ../$(VPY) -m pytest -q -rs $(PYTEST_ARGS)

# `make test` (what .ci/run runs) is everything: the C unit tests, a short
# fuzz run of every C parser, then the whole pytest suite on every supported
# CPython found (see test-versions).  `make test-quick` is the suite on
# python3 alone, for a fast loop while working.
test: system-deps ctest fuzz-short
	$(PYTHON) scripts/test_versions.py -- $(PYTEST_ARGS)

test-quick: system-deps install ctest fuzz-short pytest

# The original pymemtrace's own test suite, unchanged, against this package:
# its tests/ from its pinned release sdist (fetched once into build/, never
# committed; ORIGINAL=<checkout> uses a checkout's instead), skipped with the
# reason when they cannot be obtained.  tests/test_original_suite.py runs it in
# `make test` too.  What is not run, and why: tests/original_suite/deselect.txt.
test-original: install
	$(VPY) scripts/original_suite.py --python $(VPY) -- $(PYTEST_ARGS)

# The C unit tests once, then the whole pytest suite on every supported CPython
# found (pyenv's 3.9 to 3.13, Debian's /usr/bin/python3.11), each in its own
# .venv-TAG built from this checkout into build/meson-TAG; a summary table ends it.
# VERSIONS=3.9,3.13 picks some; VERSIONS_JOBS=2 runs two at a time.
test-versions: system-deps ctest
	$(PYTHON) scripts/test_versions.py -- $(PYTEST_ARGS)

# CPython's own regression tests (json, re, pickle, threading, subprocess, signal,
# mmap, ctypes, os, zlib, sqlite3, gc, tracemalloc) untraced and under each tool;
# outcomes compared, every log and capture read back (README "Soak").  Not part of
# `make test`.  SOAK_ARGS="--modules test_json --modes malloc" narrows it.
soak: install
	$(VPY) scripts/soak.py $(SOAK_ARGS)

# ---- fuzzing (issue 15): a libFuzzer harness for every C parser, fuzz/fuzz_*.c,
# with clang's -fsanitize=fuzzer,address,undefined; seeds in fuzz/corpus/NAME.
# `make fuzz` runs each FUZZ_SECONDS (60), `make test` a few seconds each.  Without
# clang's fuzzer runtime (scripts/system-deps.sh installs it as root on Debian)
# both say so and skip.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60

build/fuzz/.runtime:
	@mkdir -p build/fuzz
	@printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >build/fuzz/probe.c
	@if $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o build/fuzz/probe build/fuzz/probe.c >/dev/null 2>&1; \
	    then touch $@; fi

# the harnesses are built by meson (fuzz/meson.build) into build/fuzz-meson;
# scripts/fuzz.sh runs them, with corpora and logs under build/fuzz
fuzz-build: build/fuzz/.runtime venv
	@if [ -f build/fuzz/.runtime ]; then \
	    $(call meson_setup,build/fuzz-meson,-Dfuzz=true -Doptimization=1 -Ddebug=true --native-file build/fuzz/native.ini) \
	    && $(MESON) compile -C build/fuzz-meson $(FUZZ_NAMES); fi

build/fuzz/native.ini:
	@mkdir -p build/fuzz
	@printf "[binaries]\nc = '%s'\n" "$(FUZZ_CC)" >$@

fuzz-build: build/fuzz/native.ini

fuzz: system-deps fuzz-build
	@if [ -f build/fuzz/.runtime ]; then sh scripts/fuzz.sh $(FUZZ_SECONDS); \
	else echo "fuzz: SKIPPED: $(FUZZ_CC) with libFuzzer (-fsanitize=fuzzer) is not available (as root: make system-deps)"; fi

fuzz-short: fuzz-build
	@if [ -f build/fuzz/.runtime ]; then sh scripts/fuzz.sh 3; \
	else echo "fuzz: SKIPPED: $(FUZZ_CC) with libFuzzer (-fsanitize=fuzzer) is not available (as root: make system-deps)"; fi

demo: install
	$(VPY) examples/demo.py

bench: install
	$(VPY) bench/run_all.py

# Everything under AddressSanitizer + UndefinedBehaviorSanitizer: the C unit
# tests, then the whole pytest suite against a sanitized build in .venv-san.
sanitize: venv
	@$(call meson_setup,build/ctest-san,$(CTEST_ARGS) -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fno-sanitize-recover=all)
	$(MESON) compile -C build/ctest-san $(CTEST_NAMES)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(MESON) test -C build/ctest-san --no-rebuild --suite ctest --print-errorlogs
	test -x .venv-san/bin/python || $(PYTHON) -m venv .venv-san
	.venv-san/bin/python -m pip install -q -r requirements-dev.txt
	.venv-san/bin/python -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/meson-san \
	    -Csetup-args=-Db_sanitize=address,undefined -Csetup-args=-Db_lundef=false .
	cd tests && PYMEMTRACE_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	    ../.venv-san/bin/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

# The C unit tests under valgrind (memcheck): any error or definite leak fails.
valgrind: ctest-build
	@command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 2; }
	$(MESON) test -C build/ctest --no-rebuild --suite ctest --print-errorlogs -t 20 \
	    --wrapper 'valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite'

clean:
	rm -rf build .venv .venv-san .venv-3.* .venv-debian-*
