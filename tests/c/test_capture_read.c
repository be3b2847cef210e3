/* test_capture_read.c: decoding a capture's records: header checks, events
 * in sequence order, deltas, definitions, captures cut short or corrupt,
 * stopped writers, packed captures, file loading. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture_build.h"
#include "capture_read.h"
#include "ctest.h"

/* The i-th event in sequence order (walked from the first: small tests). */
static pmt_mc_record
event_at(const pmt_capture *c, size_t i)
{
    pmt_capture_iter it;
    pmt_mc_record r = {0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(pmt_capture_iter_open(&it, c), 0);
    for (size_t k = 0; k <= i; k++) {
        CHECK_EQ_INT(pmt_capture_iter_next(&it, &r), 1);
    }
    pmt_capture_iter_close(&it);
    return r;
}

static uint64_t
seq_of(const pmt_capture *c, size_t i)
{
    return event_at(c, i).seq_kind >> 8;
}

static void
test_order_and_definitions(void)
{
    header(PMT_MC_RECORD_BASE);
    hdr()->python_hex = 0x030b07f0;
    hdr()->python_status = PMT_MC_PY_ON;
    code(2, "b.py", "g");
    ev(3, PMT_MC_MALLOC, 0x30, 1, 2, 5);
    ev(5, PMT_MC_FREE, 0x10, 0, 0, -1);        /* 4 never written: one gap */
    next_chunk();                               /* another thread's chunk */
    ev(1, PMT_MC_MALLOC, 0x10, 1, 2, 5);
    ev(3, PMT_MC_FREE, 0x99, 0, 0, -1);        /* 3 again: one is kept */
    hdr()->state = PMT_MC_STATE_EXEC;
    hdr()->dropped = 4;
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 3);
    CHECK_EQ_INT(seq_of(&c, 0), 1);
    CHECK_EQ_INT(event_at(&c, 0).line, 5);
    CHECK_EQ_INT(seq_of(&c, 1), 3);
    CHECK_EQ_INT(event_at(&c, 1).a, 0x30);
    CHECK_EQ_INT(event_at(&c, 1).b, 1);
    CHECK_EQ_INT(event_at(&c, 1).code, 2);
    CHECK_EQ_INT(seq_of(&c, 2), 5);
    CHECK_EQ_INT(event_at(&c, 2).a, 0x10);
    CHECK_EQ_INT(event_at(&c, 2).code, 0);
    CHECK_EQ_INT(event_at(&c, 2).line, -1);
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

/* The deltas: addresses going down, sizes and lines of every width, the
 * same site again (no site fields), big sequence jumps. */
static void
test_deltas_round_trip(void)
{
    header(PMT_MC_RECORD_NATIVE);
    static const uint64_t addrs[] = {0x7f0000001000, 0x1000, 0x7f0000001000, UINT64_MAX - 15, 16};
    static const uint64_t sizes[] = {0, 127, 128, 1ull << 40, UINT64_MAX};
    static const int32_t lines[] = {-1, 0, 1, INT32_MAX, INT32_MIN};
    uint64_t seq = 1;
    for (int i = 0; i < 5; i++) {
        seq += (uint64_t)i * 1000;
        event(seq, PMT_MC_MALLOC, addrs[i], sizes[i], (uint32_t)i * 77777, lines[i],
              addrs[4 - i]);
        event(seq + 1, PMT_MC_MALLOC, addrs[i] + 64, 8, (uint32_t)i * 77777, lines[i], 0);
        seq += 2;
    }
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 10);
    CHECK_EQ_INT(c.trailing_bytes, 0);
    for (int i = 0; i < 5 && c.n_ev == 10; i++) {
        pmt_mc_record r = event_at(&c, 2 * (size_t)i);
        CHECK(r.a == addrs[i] && r.b == sizes[i] && r.code == (uint32_t)i * 77777 &&
              r.line == lines[i] && r.native == addrs[4 - i]);
        pmt_mc_record r2 = event_at(&c, 2 * (size_t)i + 1);
        CHECK(r2.a == addrs[i] + 64 && r2.line == lines[i] && r2.native == 0 &&
              (r2.seq_kind >> 8) == (r.seq_kind >> 8) + 1);
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
    CHECK_EQ_INT(event_at(&c, 0).native, 0x7000123);
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
    size_t second = len;
    ev(2, PMT_MC_MALLOC, 0x7f0000000000, 600, 1, 1);
    pmt_capture c;
    /* cut inside the second event */
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len - 2), 0);
    CHECK_EQ_INT(c.complete, 0);
    CHECK_EQ_INT(c.n_ev, 1);
    CHECK_EQ_INT(c.trailing_bytes, len - 2 - second);
    pmt_capture_close(&c);
    /* cut inside the code definition's payload: nothing read after it */
    CHECK_EQ_INT(pmt_capture_open(&c, buf, PMT_MC_HEADER_SIZE + 6), 0);
    CHECK_EQ_INT(c.n_ev, 0);
    CHECK_EQ_INT(c.trailing_bytes, 6);
    CHECK(pmt_capture_code(&c, 1) == NULL);
    pmt_capture_close(&c);
    /* a record whose kind byte was never stored (killed while writing it):
     * zeros end the chunk, nothing is lost before it */
    size_t good = len;
    buf[second] = 0;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 1);
    CHECK_EQ_INT(c.trailing_bytes, 0);
    pmt_capture_close(&c);
    buf[second] = PMT_MC_MALLOC | PMT_MC_SEQ_NEXT | PMT_MC_SAME_SITE;
    /* an unknown kind stops its chunk there; the next chunk is read */
    buf[len++] = 99;
    buf[len++] = 1;
    next_chunk();
    ev(4, PMT_MC_MALLOC, 0x30, 7, 1, 1);
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK_EQ_INT(c.n_ev, 3);
    CHECK_EQ_INT(c.trailing_bytes, CB_CHUNK - (good - PMT_MC_HEADER_SIZE));
    pmt_capture_close(&c);
    /* an event numbered 0, a site on a free, a payload past its chunk */
    static const uint8_t bad[][4] = {
        {PMT_MC_FREE, 1, 2, 0},                         /* seq 1 - 1 */
        {PMT_MC_FREE | PMT_MC_SAME_SITE, 2, 2, 0},
        {PMT_MC_CODE, 9, 2, 0x7f},                      /* 127 bytes of payload: no */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        header(PMT_MC_RECORD_BASE);
        ev(1, PMT_MC_MALLOC, 0x10, 5, 0, -1);
        size_t at = len;
        memset(&cb_d, 0, sizeof(cb_d));
        put(bad[i], 4);
        CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
        CHECK_EQ_INT(c.n_ev, 1);
        CHECK_EQ_INT(c.trailing_bytes, len - at);
        pmt_capture_close(&c);
    }
}

/* Writing stopped (the disk was full): the header says where and why. */
/* A native stacks capture: THREAD at the root, Python and native nodes
 * interleaved; an event's Python site is its innermost Python node, its
 * thread the root's; a MODULE carries its build-id, size and mtime. */
static void
test_native_stack_nodes(void)
{
    header(PMT_MC_RECORD_NATIVE);
    hdr()->flags |= PMT_MC_FLAG_STACKS;
    cb_room(64);
    buf[len++] = PMT_MC_THREAD;
    uv(1);
    uv(4242);
    uv(7);
    put("worker", 7);
    node(2, 1, 11, 9);                      /* a Python frame */
    uint64_t nat[][3] = {{3, 2, 0x7000}, {5, 4, 0x8000}, {6, 1, 0x9000}, {7, 7, 0x9000}};
    for (size_t i = 0; i < 4; i++) {       /* 7: its own parent, ignored */
        if (i == 1) {
            node(4, 3, 12, 4);              /* Python again, under native 3 */
        }
        cb_room(48);
        buf[len++] = PMT_MC_NATIVE_FRAME;
        uv(nat[i][0]);
        uv(nat[i][1]);
        uv(nat[i][2]);
    }
    uint8_t payload[64];
    memset(payload, 0, sizeof(payload));
    uint64_t size = 12345, mtime = 777;
    memcpy(payload, "libx.so", 8);
    payload[8] = 4;
    memcpy(payload + 9, "\xde\xad\xbe\xef", 4);
    memcpy(payload + 13, &size, 8);
    memcpy(payload + 21, &mtime, 8);
    cb_room(96);
    buf[len++] = PMT_MC_MODULE;
    uv(0x6000);
    uv(0x6000);
    uv(0xa000);
    uv(29);
    put(payload, 29);
    native_ev(1, PMT_MC_MALLOC, 0x10, 100, 0x8000);
    native_ev(2, PMT_MC_MALLOC, 0x20, 100, 0x7000);
    native_ev(3, PMT_MC_MALLOC, 0x30, 100, 0x9000);
    end();
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK(c.stacks && c.n_ev == 3);
    const pmt_cap_node *t = pmt_capture_node(&c, 1), *n5 = pmt_capture_node(&c, 5);
    CHECK(t != NULL && n5 != NULL && pmt_capture_node(&c, 7) == NULL);
    if (t && n5) {
        CHECK_EQ_INT(t->kind, PMT_CAP_NODE_THREAD);
        CHECK_EQ_INT(n5->kind, PMT_CAP_NODE_NATIVE);
        CHECK(n5->addr == 0x8000 && n5->parent == 4);
    }
    /* the events' code fields name nodes 5, 3 and 6 */
    pmt_mc_record e[3];
    uint32_t nodes[3] = {5, 3, 6};
    for (int i = 0; i < 3; i++) {
        e[i] = event_at(&c, (size_t)i);
        e[i].code = nodes[i];
    }
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e[0]), 12);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e[1]), 11);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e[2]), 0);
    CHECK_EQ_INT(pmt_capture_event_thread(&c, &e[0]), 1);
    CHECK_EQ_INT(pmt_capture_event_thread(&c, &e[2]), 1);
    const char *tname;
    CHECK(pmt_capture_thread_id(&c, 1, &tname) == 4242 && strcmp(tname, "worker") == 0);
    CHECK(pmt_capture_thread_id(&c, 2, &tname) == 0 && tname[0] == '\0');
    CHECK_EQ_INT(c.n_mods, 1);
    if (c.n_mods == 1) {
        CHECK_EQ_INT(c.mods[0].build_id_len, 4);
        CHECK(memcmp(c.mods[0].build_id, "\xde\xad\xbe\xef", 4) == 0);
        CHECK(c.mods[0].file_size == 12345 && c.mods[0].mtime_ns == 777);
        CHECK(strcmp(pmt_strpool_at(&c.strs, c.mods[0].path), "libx.so") == 0);
    }
    pmt_capture_close(&c);
}

static void
test_stopped(void)
{
    header(PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_MALLOC, 0x10, 5, 0, -1);
    hdr()->stop_events = 1;
    hdr()->stop_errno = 28;
    end();
    hdr()->events = 1;
    hdr()->dropped = 1234;
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    CHECK(c.complete);
    CHECK_EQ_INT(c.stop_errno, 28);
    CHECK_EQ_INT(c.stop_events, 1);
    CHECK_EQ_INT(c.dropped, 1234);
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
    expect_error(0, "empty capture file");
    expect_error(20, "cut short inside its header");
    expect_error(100, "cut short inside its header");
    header(48);
    expect_error(len, "record size");
    for (uint32_t v = 1; v <= 5; v += v == 3 ? 2 : 1) {
        header(PMT_MC_RECORD_BASE);
        hdr()->version = v;
        char want[96];
        snprintf(want, sizeof(want), "version %u is not supported: this pymemtrace reads "
                 "version 4", v);
        expect_error(len, want);
        expect_error(48, want);     /* an old capture's shorter header: still named */
    }
    header(PMT_MC_RECORD_BASE);
    hdr()->flags = PMT_MC_FLAG_NATIVE;     /* with 32-byte decoded records */
    expect_error(len, "flags disagree");
    header(PMT_MC_RECORD_BASE);
    hdr()->flags = 64;
    expect_error(len, "unknown flags");
    header(PMT_MC_RECORD_BASE);
    hdr()->chunk_size = 0;
    expect_error(len, "chunk size");
    header(PMT_MC_RECORD_BASE);
    hdr()->data_offset = 8;
    expect_error(len, "chunk size");
    header(PMT_MC_RECORD_BASE);
    uint32_t other = 0x04030201;
    memcpy(buf + offsetof(pmt_mc_header, endian), &other, 4);
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

/* A stacks capture: events name nodes of the stack tree. */
static void
test_stack_nodes(void)
{
    header(PMT_MC_RECORD_BASE);
    hdr()->flags |= PMT_MC_FLAG_STACKS;
    code(1, "a.py", "<module>");
    code(2, "a.py", "f");
    node(1, 0, 1, 9);      /* <module>:9 */
    node(2, 1, 2, 4);      /* f:4 called from it */
    node(3, 3, 2, 5);      /* its own parent: ignored */
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
    pmt_mc_record e0 = event_at(&c, 0), e1 = event_at(&c, 1),
                  e2 = event_at(&c, 2);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e0), 2);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e1), 0);
    CHECK_EQ_INT(pmt_capture_event_code(&c, &e2), UINT32_MAX);
    pmt_capture_close(&c);
}

/* Packing: the same events back; a packed capture cut short reads in part;
 * an inflated length no stream can give is refused, not allocated. */
static void
test_packed(void)
{
    header(PMT_MC_RECORD_BASE);
    code(1, "p.py", "f");
    for (uint64_t i = 1; i <= 2000; i++) {
        ev(i, i % 3 ? PMT_MC_MALLOC : PMT_MC_FREE, 0x10000 + (i / 3) * 64, i % 300, 1,
           (int32_t)(i % 7));
    }
    end();
    size_t raw_len = len;
    char path[] = "/tmp/pmt-test-pack-XXXXXX";
    if (cb_write_temp(path) < 0) {
        CHECK(!"cannot write a capture in /tmp");
        return;
    }
    char err[256];
    CHECK_EQ_INT(pmt_capture_pack(path, 6, err, sizeof(err)), 0);
    CHECK_EQ_INT(pmt_capture_pack(path, 6, err, sizeof(err)), 0);     /* packed: left alone */
    pmt_capture_file f;
    CHECK_EQ_INT(pmt_capture_file_load(path, &f, err, sizeof(err)), 0);
    CHECK(f.len < raw_len / 4);
    pmt_capture raw, c;
    CHECK_EQ_INT(pmt_capture_open(&raw, buf, raw_len), 0);
    CHECK_EQ_INT(pmt_capture_open(&c, f.data, f.len), 0);
    CHECK(c.header.flags & PMT_MC_FLAG_PACKED);
    CHECK(c.complete);
    CHECK_EQ_INT(c.n_ev, 2000);
    CHECK_EQ_INT(c.n_ev, raw.n_ev);
    pmt_capture_iter a, b;
    pmt_mc_record ra, rb;
    CHECK_EQ_INT(pmt_capture_iter_open(&a, &raw), 0);
    CHECK_EQ_INT(pmt_capture_iter_open(&b, &c), 0);
    size_t same = 0;
    while (pmt_capture_iter_next(&a, &ra) == 1 && pmt_capture_iter_next(&b, &rb) == 1 &&
           memcmp(&ra, &rb, sizeof(ra)) == 0) {
        same++;
    }
    CHECK_EQ_INT(same, 2000);
    CHECK_EQ_INT(pmt_capture_iter_next(&b, &rb), 0);
    pmt_capture_iter_close(&a);
    pmt_capture_iter_close(&b);
    CHECK_EQ_INT(c.trailing_bytes, 0);
    pmt_capture_close(&c);
    /* cut short in the stream: fewer events, the rest counted as not read */
    CHECK_EQ_INT(pmt_capture_open(&c, f.data, PMT_MC_HEADER_SIZE + (f.len - PMT_MC_HEADER_SIZE) / 2), 0);
    CHECK(c.n_ev > 0 && c.n_ev < 2000 && c.trailing_bytes > 0);
    pmt_capture_close(&c);
    /* an absurd inflated length */
    static uint8_t bad[8192];
    memcpy(bad, f.data, f.len < sizeof(bad) ? f.len : sizeof(bad));
    ((pmt_mc_header *)bad)->packed_len = 1ull << 50;
    CHECK_EQ_INT(pmt_capture_open(&c, bad, f.len < sizeof(bad) ? f.len : sizeof(bad)), -1);
    CHECK(strstr(c.error, "corrupt packed capture") != NULL);
    pmt_capture_close(&c);
    pmt_capture_close(&raw);
    pmt_capture_file_unload(&f);
    unlink(path);
    /* not a capture: refused, left alone */
    CHECK_EQ_INT(pmt_capture_pack("/nonexistent/x.cap", 6, err, sizeof(err)), -1);
    CHECK(strstr(err, "cannot open") != NULL);
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
    hdr()->flags |= PMT_MC_FLAG_STACKS;
    code(7, "s.py", "h");
    node(0xfffffff0, 0, 7, 2);
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
            pmt_mc_record e = event_at(&c, 0);
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
    test_deltas_round_trip();
    test_sparse_numbers();
    test_native_records_and_modules();
    test_cut_short_and_corrupt();
    test_bad_headers();
    test_file_load();
    test_stack_nodes();
    test_native_stack_nodes();
    test_stopped();
    test_packed();
    test_huge_code_ids();
    CTEST_MAIN_END();
}
