#!/bin/sh
# system-deps.sh: install the Debian packages the tests and benchmarks use
# (bpftrace, gnuplot, gdb, clang with its sanitizer and libFuzzer runtimes, valgrind, chromium,
# golang-go, libunwind for the malloc tracer's native stacks) and mount tracefs,
# when running as root on Debian.  Best effort: anything it cannot do leaves
# the tests that need it to skip with a reason; it never fails the build.
set -u
want=""
command -v bpftrace >/dev/null 2>&1 || want="$want bpftrace"
command -v gnuplot >/dev/null 2>&1 || want="$want gnuplot-nox"
command -v valgrind >/dev/null 2>&1 || want="$want valgrind"
# pymemtrace malloc attach PID loads the tracer into a running process with gdb
command -v gdb >/dev/null 2>&1 || want="$want gdb"
# the malloc flame graph page is rendered in headless Chromium; pprof exports are read by go tool pprof
command -v chromium >/dev/null 2>&1 || want="$want chromium"
command -v go >/dev/null 2>&1 || want="$want golang-go"
# libunwind: the malloc tracer's native stacks (--native); meson finds it with pkg-config
command -v pkg-config >/dev/null 2>&1 || want="$want pkg-config"
pkg-config --exists libunwind 2>/dev/null || want="$want libunwind-dev"
# clang with libFuzzer's runtime, for the fuzz harnesses (make fuzz, make test)
if ! command -v clang >/dev/null 2>&1; then
    want="$want clang"
fi
if command -v clang >/dev/null 2>&1; then
    probe=$(mktemp -d)
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$probe/p.c"
    if ! clang -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" >/dev/null 2>&1; then
        major=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
        [ -n "$major" ] && want="$want libclang-rt-$major-dev"
    fi
    rm -rf "$probe"
fi
if [ "$(id -u)" != 0 ]; then
    [ -n "$want" ] && echo "system-deps: not root; not installing:$want (tests needing them will skip)"
    exit 0
fi
if [ -n "$want" ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing:$want"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $want) >/tmp/pymemtrace-apt.log 2>&1 \
        || echo "system-deps: apt-get failed (see /tmp/pymemtrace-apt.log); tests needing$want will skip"
fi
if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/trace ]; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "system-deps: could not mount tracefs"
fi
exit 0
