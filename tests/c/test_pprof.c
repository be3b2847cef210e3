/* test_pprof.c: a by-stack report encoded as profile.proto, decoded back by
 * a small protobuf reader: sample types, one sample per stack with its
 * locations innermost first and its four values, locations, functions and
 * the string table. */
#include <stdint.h>
#include <string.h>

#include "ctest.h"
#include "pprof.h"

typedef struct {
    const uint8_t *p, *end;
} rd;

static uint64_t
varint(rd *r)
{
    uint64_t v = 0;
    for (int shift = 0; r->p < r->end && shift < 64; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    return v;
}

/* The next field: its number and either its varint or its bytes. */
static int
field(rd *r, unsigned *num, uint64_t *v, rd *sub)
{
    if (r->p >= r->end) {
        return 0;
    }
    uint64_t key = varint(r);
    *num = (unsigned)(key >> 3);
    if ((key & 7) == 0) {
        *v = varint(r);
    }
    else {
        uint64_t n = varint(r);
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
    }
    return 1;
}

static char strings[64][64];
static size_t n_strings;

static void
test_encode(void)
{
    /* a (root, line 1) -> b (line 2): stack 0 is b, stack 1 is a */
    pmt_st_func funcs[2] = {{.file = "m.py", .name = "a"}, {.file = "m.py", .name = "b"}};
    pmt_st_frame frames[2] = {{PMT_ST_NONE, 0, 1}, {0, 1, 2}};
    pmt_st_stack stacks[2] = {
        {.frame = 1, .alloc_bytes = 1000, .alloc_count = 3, .peak_bytes = 600, .peak_count = 2,
         .end_bytes = 100, .end_count = 1},
        {.frame = 0, .alloc_bytes = 50, .alloc_count = 1},
    };
    pmt_st_report r;
    memset(&r, 0, sizeof(r));
    r.funcs = funcs;
    r.n_funcs = 2;
    r.frames = frames;
    r.n_frames = 2;
    r.stacks = stacks;
    r.n_stacks = 2;
    for (int inuse = 0; inuse < 2; inuse++) {
        uint8_t *out;
        size_t len;
        CHECK_EQ_INT(pmt_pprof_encode(&r, inuse, 1234, &out, &len), 0);
        rd top = {out, out + len}, sub, sub2, sub3;
        unsigned num;
        uint64_t v;
        int n_types = 0, n_samples = 0, n_locs = 0, n_funcs = 0;
        uint64_t values[2][4] = {{0}}, locs[2][4] = {{0}}, loc_func[3] = {0}, loc_line[3] = {0};
        uint64_t func_name[3] = {0}, default_type = 0, time_ns = 0;
        size_t n_locs_of[2] = {0};
        n_strings = 0;
        while (field(&top, &num, &v, &sub)) {
            if (num == 1) {
                n_types++;
            }
            else if (num == 2) {
                while (field(&sub, &num, &v, &sub2)) {
                    size_t k = 0;
                    while (sub2.p < sub2.end && k < 4) {
                        if (num == 1) {
                            locs[n_samples][k++] = varint(&sub2);
                            n_locs_of[n_samples] = k;
                        }
                        else {
                            values[n_samples][k++] = varint(&sub2);
                        }
                    }
                }
                n_samples++;
            }
            else if (num == 4) {
                uint64_t id = 0;
                while (field(&sub, &num, &v, &sub2)) {
                    if (num == 1) {
                        id = v;
                    }
                    else if (num == 4) {
                        while (field(&sub2, &num, &v, &sub3)) {
                            (num == 1 ? loc_func : loc_line)[id < 3 ? id : 0] = v;
                        }
                    }
                }
                n_locs++;
            }
            else if (num == 5) {
                uint64_t id = 0;
                while (field(&sub, &num, &v, &sub2)) {
                    if (num == 1) {
                        id = v;
                    }
                    else if (num == 2 && id < 3) {
                        func_name[id] = v;
                    }
                }
                n_funcs++;
            }
            else if (num == 6 && n_strings < 64) {
                size_t n = (size_t)(sub.end - sub.p);
                memcpy(strings[n_strings], sub.p, n < 63 ? n : 63);
                strings[n_strings++][n < 63 ? n : 63] = '\0';
            }
            else if (num == 9) {
                time_ns = v;
            }
            else if (num == 14) {
                default_type = v;
            }
        }
        CHECK(top.p == top.end);
        CHECK_EQ_INT(n_types, 4);
        CHECK_EQ_INT(n_samples, 2);
        CHECK_EQ_INT(n_locs, 2);
        CHECK_EQ_INT(n_funcs, 2);
        CHECK_EQ_INT(time_ns, 1234);
        CHECK_EQ_STR(strings[0], "");
        CHECK_EQ_STR(strings[default_type], "inuse_space");
        CHECK_EQ_STR(strings[1], "alloc_objects");
        /* sample 0: b then a, innermost first */
        CHECK_EQ_INT(n_locs_of[0], 2);
        CHECK_EQ_INT(locs[0][0], 2);
        CHECK_EQ_INT(locs[0][1], 1);
        CHECK_EQ_INT(values[0][0], 3);
        CHECK_EQ_INT(values[0][1], 1000);
        CHECK_EQ_INT(values[0][2], inuse ? 1 : 2);
        CHECK_EQ_INT(values[0][3], inuse ? 100 : 600);
        CHECK_EQ_INT(n_locs_of[1], 1);
        CHECK_EQ_INT(values[1][1], 50);
        /* location 2 is b at line 2; function 2 is named b */
        CHECK_EQ_INT(loc_func[2], 2);
        CHECK_EQ_INT(loc_line[2], 2);
        CHECK_EQ_STR(strings[func_name[2]], "b");
        CHECK_EQ_STR(strings[func_name[1]], "a");
        CHECK_EQ_STR(strings[func_name[1] + 1], "m.py");
        free(out);
    }
    /* an empty report is still a valid profile */
    memset(&r, 0, sizeof(r));
    uint8_t *out;
    size_t len;
    CHECK_EQ_INT(pmt_pprof_encode(&r, 0, 0, &out, &len), 0);
    CHECK(len > 0);
    free(out);
}

int
main(void)
{
    test_encode();
    CTEST_MAIN_END();
}
