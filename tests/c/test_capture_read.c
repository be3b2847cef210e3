/* test_capture_read.c: walking a capture's records: header checks, events in
 * sequence order, definitions, captures cut short or corrupt, file loading. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture_build.h"
#include "capture_read.h"
#include "ctest.h"

static uint64_t
seq_of(const pmt_capture *c, size_t i)
{
    return pmt_capture_event(c, i).seq_kind >> 8;
}

static void
test_order_and_definitions(void)
{
    header(PMT_MC_RECORD_BASE);
    code(2, "b.py", "g");
    ev(3, PMT_MC_MALLOC, 0x30, 1, 2, 5);
    ev(1, PMT_MC_MALLOC, 0x10, 1, 2, 5);
    ev(5, PMT_MC_FREE, 0x10, 0, 0, -1);        /* 4 never written: one gap */
    ev(3, PMT_MC_FREE, 0x99, 0, 0, -1);        /* 3 again: the first is kept */
    pmt_mc_record meta = {PMT_MC_META, 0x030b07f0, 0, PMT_MC_PY_ON, 0, 0};
    put(&meta, PMT_MC_RECORD_BASE);
    pmt_mc_record e = {PMT_MC_END, 0, 4, PMT_MC_END_EXEC, -1, 0};
    put(&e, PMT_MC_RECORD_BASE);
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 3);
    CHECK_EQ_INT(seq_of(&c, 0), 1);
    CHECK_EQ_INT(seq_of(&c, 1), 3);
    CHECK_EQ_INT(pmt_capture_event(&c, 1).a, 0x30);
    CHECK_EQ_INT(seq_of(&c, 2), 5);
    CHECK_EQ_INT(c.seq_gaps, 2);                /* 2 and 4 */
    CHECK_EQ_INT(c.python_hex, 0x030b07f0);
    CHECK_EQ_INT(c.python_status, PMT_MC_PY_ON);
    CHECK(c.complete && c.ended_by_exec);
    CHECK_EQ_INT(c.dropped, 4);
    CHECK_EQ_INT(c.trailing_bytes, 0);
    const pmt_cap_code *g = pmt_capture_code(&c, 2);
    CHECK(g != NULL && pmt_capture_code(&c, 1) == NULL && pmt_capture_code(&c, 1u << 30) == NULL);
    if (g) {
        CHECK_EQ_STR(pmt_strpool_at(&c.strs, g->file), "b.py");
        CHECK_EQ_STR(pmt_strpool_at(&c.strs, g->name), "g");
    }
    pmt_capture_close(&c);
}

static void
test_sparse_numbers(void)
{
    /* numbers too far apart for the counting placement: sorted instead */
    header(PMT_MC_RECORD_BASE);
    ev(1000000000, PMT_MC_MALLOC, 0x10, 1, 0, 0);
    ev(7, PMT_MC_MALLOC, 0x20, 1, 0, 0);
    ev(500, PMT_MC_FREE, 0x20, 0, 0, 0);
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 3);
    CHECK_EQ_INT(seq_of(&c, 0), 7);
    CHECK_EQ_INT(seq_of(&c, 1), 500);
    CHECK_EQ_INT(seq_of(&c, 2), 1000000000);
    CHECK_EQ_INT(c.seq_gaps, 1000000000 - 7 + 1 - 3);
    CHECK(!c.complete);
    pmt_capture_close(&c);
}

static void
test_native_records_and_modules(void)
{
    header(PMT_MC_RECORD_NATIVE);
    native_ev(1, PMT_MC_MALLOC, 0x10, 64, 0x7000123);
    module(0x7000000, 0x7000000, 0x7100000, "/lib/libfoo.so");
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.rs, PMT_MC_RECORD_NATIVE);
    CHECK_EQ_INT(c.n_ev, 1);
    CHECK_EQ_INT(pmt_capture_event(&c, 0).native, 0x7000123);
    const pmt_cap_module *mod = pmt_capture_module_of(&c, 0x7000123);
    CHECK(mod != NULL && pmt_capture_module_of(&c, 0x7100000) == NULL);
    if (mod) {
        CHECK_EQ_STR(pmt_strpool_at(&c.strs, mod->path), "/lib/libfoo.so");
        CHECK_EQ_INT(mod->bias, 0x7000000);
    }
    pmt_capture_close(&c);
}

static void
test_cut_short_and_corrupt(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "t.py", "h");
    ev(1, PMT_MC_MALLOC, 0x10, 5, 1, 1);
    ev(2, PMT_MC_MALLOC, 0x20, 6, 1, 1);
    pmt_capture c;
    /* cut inside the second event */
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len - 10), 0);
    CHECK_EQ_INT(c.complete, 0);
    CHECK_EQ_INT(c.n_ev, 1);
    CHECK_EQ_INT(c.trailing_bytes, 22);
    pmt_capture_close(&c);
    /* cut inside a code definition's payload: stop before it */
    CHECK_EQ_INT(pmt_capture_open(&c, buf, PMT_MC_HEADER_SIZE + 40), 0);
    CHECK_EQ_INT(c.n_ev, 0);
    CHECK_EQ_INT(c.trailing_bytes, 40);
    pmt_capture_close(&c);
    /* an unknown kind, or an event numbered 0, stops the reader there */
    size_t good = len;
    ev(3, 99, 0, 0, 0, 0);
    ev(4, PMT_MC_MALLOC, 0x30, 7, 1, 1);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 2);
    CHECK_EQ_INT(c.trailing_bytes, 64);
    pmt_capture_close(&c);
    len = good;
    ev(0, PMT_MC_FREE, 0x30, 0, 0, 0);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 2);
    CHECK_EQ_INT(c.trailing_bytes, 32);
    pmt_capture_close(&c);
    /* a payload length no writer makes */
    len = good;
    pmt_mc_record big = {PMT_MC_CODE, 0, 1u << 30, 9, 1, 0};
    put(&big, PMT_MC_RECORD_BASE);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.trailing_bytes, 32);
    pmt_capture_close(&c);
}

static void
expect_error(size_t n, const char *what)
{
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, n), -1);
    if (!strstr(c.error, what)) {
        fprintf(stderr, "error \"%s\" does not say \"%s\"\n", c.error, what);
        CHECK(0);
    }
    pmt_capture_close(&c);
}

static void
test_bad_headers(void)
{
    header(PMT_MC_RECORD_BASE);
    end();
    memcpy(buf, "NOTACAPT", 8);
    expect_error(len, "bad magic");
    expect_error(12, "bad magic");
    header(PMT_MC_RECORD_BASE);
    expect_error(0, "empty capture");
    expect_error(20, "cut short inside its header");
    header(48);
    expect_error(len, "record size");
    header(PMT_MC_RECORD_BASE);
    buf[8] = 3;     /* version */
    expect_error(len, "version 3 is not supported");
    header(PMT_MC_RECORD_BASE);
    buf[20] = 1;    /* flags: native, with 32-byte records */
    expect_error(len, "flags disagree");
    header(PMT_MC_RECORD_BASE);
    uint32_t other = 0x04030201;
    memcpy(buf + 40, &other, 4);
    expect_error(len, "other byte order");
}

static void
test_file_load(void)
{
    char err[256];
    pmt_capture_file f;
    CHECK_EQ_INT(pmt_capture_file_load("/nonexistent/capture", &f, err, sizeof(err)), -1);
    CHECK(strstr(err, "cannot open /nonexistent/capture") != NULL);
    CHECK_EQ_INT(pmt_capture_file_load("/dev/zero", &f, err, sizeof(err)), -1);
    CHECK(strstr(err, "/dev/zero is not a regular file") != NULL);
    char path[] = "/tmp/pmt-test-capture-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return;
    }
    header(PMT_MC_RECORD_BASE);
    end();
    CHECK_EQ_INT(write(fd, buf, len), (long long)len);
    close(fd);
    CHECK_EQ_INT(pmt_capture_file_load(path, &f, err, sizeof(err)), 0);
    CHECK_EQ_INT(f.len, len);
    CHECK(f.data && memcmp(f.data, buf, len) == 0);
    pmt_capture_file_unload(&f);
    unlink(path);
}

/* A stacks capture (version 2): events name nodes of the stack tree. */
static void
test_stack_nodes(void)
{
    header(PMT_MC_RECORD_BASE);
    pmt_mc_header *h = (pmt_mc_header *)buf;
    h->version = PMT_MC_VERSION_STACKS;
    h->flags |= PMT_MC_FLAG_STACKS;
    code(1, "a.py", "<module>");
    code(2, "a.py", "f");
    pmt_mc_record n1 = {PMT_MC_STACK, 1, 0, 1, 9, 0};      /* <module>:9 */
    pmt_mc_record n2 = {PMT_MC_STACK, 2, 1, 2, 4, 0};      /* f:4 called from it */
    pmt_mc_record bad = {PMT_MC_STACK, 3, 3, 2, 5, 0};     /* its own parent: ignored */
    put(&n1, PMT_MC_RECORD_BASE);
    put(&n2, PMT_MC_RECORD_BASE);
    put(&bad, PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_MALLOC, 0x10, 100, 2, 4);
    ev(2, PMT_MC_MALLOC, 0x20, 100, 0, -1);                 /* no Python frame */
    ev(3, PMT_MC_MALLOC, 0x30, 100, 3, 5);                  /* an undefined node */
    end();
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK(c.stacks && c.complete);
    const pmt_cap_node *leaf = pmt_capture_node(&c, 2);
    CHECK(leaf != NULL && pmt_capture_node(&c, 3) == NULL);
    if (leaf) {
        CHECK_EQ_INT(leaf->parent, 1);
        CHECK_EQ_INT(leaf->code, 2);
        CHECK_EQ_INT(leaf->line, 4);
    }
    pmt_mc_record e0 = pmt_capture_event(&c, 0), e1 = pmt_capture_event(&c, 1),
                  e2 = pmt_capture_event(&c, 2);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e0), 2);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e1), 0);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e2), UINT32_MAX);
    pmt_capture_close(&c);
    /* the version and the flag must agree */
    h->flags &= ~PMT_MC_FLAG_STACKS;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), -1);
    CHECK(strstr(c.error, "stacks flag") != NULL);
    pmt_capture_close(&c);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Fuzzing found it (build/fuzz/crash-capture-timeout-*): a CODE record with
 * a large id (any 32-bit value in a corrupt capture) made the reader
 * allocate and clear an array indexed by id: 3 GiB for an id near 2^28, a
 * timeout, or "out of memory".  Ids are keys of a hash table now: a 1 KiB
 * capture reads in a few KiB.  The same for the node ids of a stacks
 * capture.  Checked in a child whose data segment is
 * limited to 64 MiB (not under ASan, whose shadow memory would not fit). */
static void
test_huge_code_ids(void)
{
    header(PMT_MC_RECORD_BASE);
    code(0x0fffffff, "big.py", "f");
    code(0xfffffff0, "bigger.py", "g");
    ev(1, PMT_MC_MALLOC, 0x10, 5, 0xfffffff0, 3);
    size_t plain = len;
    /* the same for the nodes of a stacks capture */
    header(PMT_MC_RECORD_BASE);
    pmt_mc_header *sh = (pmt_mc_header *)buf;
    sh->version = PMT_MC_VERSION_STACKS;
    sh->flags |= PMT_MC_FLAG_STACKS;
    code(7, "s.py", "h");
    pmt_mc_record node = {PMT_MC_STACK, 0xfffffff0, 0, 7, 2, 0};
    put(&node, PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_MALLOC, 0x10, 5, 0xfffffff0, 2);
    static uint8_t stacks[4096];
    size_t stacks_len = len;
    memcpy(stacks, buf, len);
    header(PMT_MC_RECORD_BASE);
    code(0x0fffffff, "big.py", "f");
    code(0xfffffff0, "bigger.py", "g");
    ev(1, PMT_MC_MALLOC, 0x10, 5, 0xfffffff0, 3);
    CHECK_EQ_INT(len, plain);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
#ifndef UNDER_ASAN
        struct rlimit lim = {64 << 20, 64 << 20};
        if (setrlimit(RLIMIT_DATA, &lim) != 0) {
            _exit(3);
        }
#endif
        pmt_capture c;
        int ok = pmt_capture_open(&c, buf, len) == 0 && c.n_ev == 1 &&
                 pmt_capture_code(&c, 0x0fffffff) != NULL &&
                 pmt_capture_code(&c, 0xfffffff0) != NULL &&
                 strcmp(pmt_strpool_at(&c.strs, pmt_capture_code(&c, 0xfffffff0)->file),
                        "bigger.py") == 0 &&
                 pmt_capture_code(&c, 0xfffffff1) == NULL;
        pmt_capture_close(&c);
        ok = ok && pmt_capture_open(&c, stacks, stacks_len) == 0 && c.n_ev == 1;
        if (ok) {
            pmt_mc_record e = pmt_capture_event(&c, 0);
            ok = pmt_capture_event_code(&c, &e) == 7;
        }
        pmt_capture_close(&c);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int
main(void)
{
    test_order_and_definitions();
    test_sparse_numbers();
    test_native_records_and_modules();
    test_cut_short_and_corrupt();
    test_bad_headers();
    test_file_load();
    test_stack_nodes();
    test_huge_code_ids();
    CTEST_MAIN_END();
}
