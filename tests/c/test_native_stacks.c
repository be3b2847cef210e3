/* test_native_stacks.c: allocations by whole stack, frames innermost first,
 * live bytes from the replayed frees, the thread at the root. */
#include <stdint.h>
#include <string.h>

#include "capture_build.h"
#include "capture_frames.h"
#include "ctest.h"
#include "native_stacks.h"

static void
def_node(unsigned kind, uint64_t id, uint64_t parent, uint64_t x, int32_t line)
{
    cb_room(64);
    buf[len++] = (uint8_t)kind;
    uv(id);
    uv(parent);
    uv(x);
    if (kind == PMT_MC_STACK) {
        uv(pmt_zz((uint64_t)(int64_t)line));
    }
}

static void
build_native_capture(void)
{
    header(PMT_MC_RECORD_NATIVE);
    hdr()->flags |= PMT_MC_FLAG_STACKS;
    cb_room(64);
    buf[len++] = PMT_MC_THREAD;
    uv(1);
    uv(77);
    uv(5);
    put("main", 5);
    code(5, "app.py", "main");
    code(6, "app.py", "leak");
    def_node(PMT_MC_STACK, 2, 1, 5, 10);               /* main:10 */
    def_node(PMT_MC_NATIVE_FRAME, 3, 2, 0x4444, 0);    /* C called from it */
    def_node(PMT_MC_STACK, 4, 3, 6, 20);               /* leak:20 called back */
    def_node(PMT_MC_NATIVE_FRAME, 5, 4, 0x5555, 0);    /* allocating C */
    def_node(PMT_MC_NATIVE_FRAME, 6, 2, 0x6666, 0);    /* another C from main */
    /* stack 5: 3 x 100 bytes, one freed; stack 6: 1 x 250, freed */
    event(1, PMT_MC_MALLOC, 0xa0, 100, 5, 20, 0x5555);
    event(2, PMT_MC_MALLOC, 0xb0, 100, 5, 20, 0x5555);
    event(3, PMT_MC_CALLOC, 0xc0, 100, 5, 20, 0x5555);
    event(4, PMT_MC_FREE, 0xb0, 0, 0, -1, 0x1);
    event(5, PMT_MC_MALLOC, 0xd0, 250, 6, 10, 0x6666);
    event(6, PMT_MC_FREE, 0xd0, 0, 0, -1, 0x1);
    end();
}

static void
test_by_stack(void)
{
    build_native_capture();
    pmt_ns_report r;
    CHECK_EQ_INT(pmt_ns_read(buf, len, 10, &r), 0);
    CHECK(r.has_stacks && r.native);
    CHECK_EQ_INT(r.distinct, 2);
    CHECK_EQ_INT(r.n_stacks, 2);
    CHECK(r.total_bytes == 550 && r.total_count == 4);
    if (r.n_stacks == 2) {
        const pmt_ns_stack *a = &r.stacks[0], *b = &r.stacks[1];
        CHECK(a->bytes == 300 && a->count == 3 && a->live_bytes == 200 && a->live_count == 2);
        CHECK(b->bytes == 250 && b->count == 1 && b->live_bytes == 0 && b->live_count == 0);
        CHECK(a->thread_id == 77 && strcmp(a->thread_name, "main") == 0);
        CHECK_EQ_INT(a->n, 4);
        if (a->n == 4) {
            const pmt_ns_frame *f = &r.frames[a->first];
            CHECK(f[0].kind == PMT_CAP_NODE_NATIVE && f[0].addr == 0x5555);
            CHECK(f[0].file[0] == '\0' && f[0].offset == 0x5555);   /* no module holds it */
            CHECK(f[1].kind == PMT_CAP_NODE_PYTHON && f[1].line == 20);
            CHECK(strcmp(f[1].function, "leak") == 0 && strcmp(f[1].file, "app.py") == 0);
            CHECK(f[2].kind == PMT_CAP_NODE_NATIVE && f[2].addr == 0x4444);
            CHECK(f[3].kind == PMT_CAP_NODE_PYTHON && strcmp(f[3].function, "main") == 0);
        }
        CHECK_EQ_INT(b->n, 2);
    }
    pmt_ns_free(&r);
    /* top 1 keeps the biggest */
    CHECK_EQ_INT(pmt_ns_read(buf, len, 1, &r), 0);
    CHECK(r.n_stacks == 1 && r.distinct == 2 && r.stacks[0].bytes == 300);
    pmt_ns_free(&r);
}

static void
test_without_stacks(void)
{
    header(PMT_MC_RECORD_BASE);
    ev(1, PMT_MC_MALLOC, 0x10, 64, 0, -1);
    end();
    pmt_ns_report r;
    CHECK_EQ_INT(pmt_ns_read(buf, len, 10, &r), 0);
    CHECK(!r.has_stacks && !r.native && r.n_stacks == 1 && r.stacks[0].n == 0);
    pmt_ns_free(&r);
    /* a file that is not a capture: the reader's one line */
    memset(buf, 'x', 100);
    CHECK_EQ_INT(pmt_ns_read(buf, 100, 10, &r), -1);
    CHECK(strstr(r.error, "bad magic") != NULL);
    pmt_ns_free(&r);
}

/* The reports' frame tree (capture_frames.c) takes native nodes as frames
 * (module, symbol or offset, line -1) and stops at the thread. */
static void
test_frames_of_a_native_stack(void)
{
    build_native_capture();
    pmt_capture c;
    CHECK_EQ_INT(pmt_capture_open(&c, buf, len), 0);
    pmt_frames f;
    CHECK_EQ_INT(pmt_frames_init(&f, &c), 0);
    uint32_t leaf = pmt_frames_of(&f, 5, 20);
    CHECK(leaf != PMT_ST_NONE);
    const char *names[8];
    int32_t lines[8];
    size_t n = 0;
    for (uint32_t fr = leaf; fr != PMT_ST_NONE && n < 8; fr = f.frames[fr].parent, n++) {
        names[n] = pmt_strpool_at(&c.strs, f.funcs[f.frames[fr].func].name);
        lines[n] = f.frames[fr].line;
    }
    CHECK_EQ_INT(n, 4);     /* no frame for the thread */
    if (n == 4) {
        CHECK(strcmp(names[0], "0x5555") == 0 && lines[0] == -1);  /* no module: its address */
        CHECK(strcmp(names[1], "leak") == 0 && lines[1] == 20);
        CHECK(strcmp(names[2], "0x4444") == 0 && lines[2] == -1);
        CHECK(strcmp(names[3], "main") == 0 && lines[3] == 10);
    }
    CHECK_EQ_INT(pmt_capture_event_thread(&c, &(pmt_mc_record){.code = 5}), 1);
    pmt_frames_free(&f);
    pmt_capture_close(&c);
}

int
main(void)
{
    test_frames_of_a_native_stack();
    test_by_stack();
    test_without_stacks();
    CTEST_MAIN_END();
}
