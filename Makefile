# pymemtrace: the README's two commands are `make demo` and `make test`.
# Every target bootstraps .venv by itself.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CC ?= cc
CFLAGS_C := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Isrc/core
CORE_SRC := $(wildcard src/core/*.c)
CTESTS := $(patsubst tests/c/%.c,build/ctest/%,$(wildcard tests/c/test_*.c))

.PHONY: all venv install demo test test-quick test-versions soak ctest pytest bench sanitize valgrind clean system-deps test-original

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
install: venv
	$(VPY) -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/meson .

build/ctest/%: tests/c/%.c $(CORE_SRC) $(wildcard src/core/*.h) tests/c/ctest.h
	@mkdir -p build/ctest
	$(CC) $(CFLAGS_C) -o $@ $< $(CORE_SRC) -lm -lpthread

ctest: $(CTESTS)
	@for t in $(CTESTS); do echo "== $$t"; $$t || exit 1; done

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
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Isrc/core -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
FUZZ_OBJ := $(patsubst src/core/%.c,build/fuzz/obj/%.o,$(CORE_SRC))
FUZZ_BIN := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))

build/fuzz/obj/%.o: src/core/%.c $(wildcard src/core/*.h)
	@mkdir -p build/fuzz/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJ) -lm -lpthread

.PRECIOUS: build/fuzz/obj/%.o

build/fuzz/.runtime:
	@mkdir -p build/fuzz
	@printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >build/fuzz/probe.c
	@if $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o build/fuzz/probe build/fuzz/probe.c >/dev/null 2>&1; \
	    then touch $@; fi

fuzz-build: build/fuzz/.runtime
	@if [ -f build/fuzz/.runtime ]; then $(MAKE) --no-print-directory $(FUZZ_BIN); fi

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
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
sanitize: venv
	rm -rf build/ctest-san
	@mkdir -p build/ctest-san
	@for t in $(wildcard tests/c/test_*.c); do \
	    b=build/ctest-san/$$(basename $$t .c); \
	    $(CC) $(CFLAGS_C) $(SAN_FLAGS) -o $$b $$t $(CORE_SRC) -lm -lpthread || exit 1; \
	    echo "== $$b"; $$b || exit 1; done
	test -x .venv-san/bin/python || $(PYTHON) -m venv .venv-san
	.venv-san/bin/python -m pip install -q -r requirements-dev.txt
	.venv-san/bin/python -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/meson-san \
	    -Csetup-args=-Db_sanitize=address,undefined -Csetup-args=-Db_lundef=false .
	cd tests && PYMEMTRACE_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	    ../.venv-san/bin/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

# The C unit tests under valgrind (memcheck): any error or definite leak fails.
valgrind: $(CTESTS)
	@command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 2; }
	@for t in $(CTESTS); do echo "== valgrind $$t"; \
	    valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite $$t || exit 1; done

clean:
	rm -rf build .venv .venv-san .venv-3.* .venv-debian-*
