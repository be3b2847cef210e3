/* mallocstats_diff.c: what changed between two parsed allocator statistics,
 * in sys._debugmallocstats()'s layout with signed deltas (see
 * mallocstats_diff.h).  Nothing here allocates: the formatter writes into
 * the caller's buffer, like snprintf.
 */
#include "mallocstats_diff.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

/* ---- formatting ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t cap;
    size_t len;     /* length the whole text needs */
} appender_t;

/* after - before, held at the ends of int64_t where the true difference is
 * past them (the parser takes any int64_t a text holds; real ones are small) */
static int64_t
delta(int64_t after, int64_t before)
{
    int64_t d;
    if (__builtin_sub_overflow(after, before, &d)) {
        return after > before ? INT64_MAX : INT64_MIN;
    }
    return d;
}

static void
append(appender_t *a, const char *s, size_t n)
{
    if (a->len < a->cap) {
        size_t room = a->cap - a->len;
        memcpy(a->buf + a->len, s, n < room ? n : room);
    }
    a->len += n;
}

static void
append_str(appender_t *a, const char *s)
{
    append(a, s, strlen(s));
}

static void
append_spaces(appender_t *a, size_t n)
{
    static const char spaces[] = "                                                  ";
    while (n) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        append(a, spaces, k);
        n -= k;
    }
}

/* v with thousands commas and an explicit sign: "+19,904", "-32", "+0". */
static size_t
format_signed_commas(int64_t v, char out[40])
{
    char tmp[40];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    int k = 0;
    do {
        if (k == 3) {
            tmp[n++] = ',';
            k = 0;
        }
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
        k++;
    } while (u);
    out[len++] = v < 0 ? '-' : '+';
    while (n) {
        out[len++] = tmp[--n];
    }
    out[len] = '\0';
    return len;
}

/* printone()'s layout: label padded to 35 columns, '=', value in 21 columns. */
static void
append_printone(appender_t *a, const char *label, int64_t value)
{
    char num[40];
    size_t l = strlen(label);
    append(a, label, l);
    if (l < 35) {
        append_spaces(a, 35 - l);
    }
    append(a, "=", 1);
    size_t n = format_signed_commas(value, num);
    if (n < 21) {
        append_spaces(a, 21 - n);
    }
    append(a, num, n);
    append(a, "\n", 1);
}

static void
group_break(appender_t *a, int *wrote_any, int *in_group)
{
    if (!*in_group) {
        if (*wrote_any) {
            append(a, "\n", 1);
        }
        *in_group = 1;
        *wrote_any = 1;
    }
}

static const pmt_ms_class_t zero_class;

static void
format_classes(appender_t *a, const pmt_mallocstats_t *b, const pmt_mallocstats_t *f,
               int *wrote_any)
{
    int in_group = 0;
    /* Rows in index order over the union of both tables. */
    uint32_t last = 0;
    int first = 1;
    for (;;) {
        /* the smallest index greater than last present in either */
        int found = 0;
        uint32_t next = 0;
        for (int side = 0; side < 2; side++) {
            const pmt_mallocstats_t *s = side ? f : b;
            for (int i = 0; i < s->nclasses; i++) {
                uint32_t idx = s->classes[i].index;
                if ((first || idx > last) && (!found || idx < next)) {
                    next = idx;
                    found = 1;
                }
            }
        }
        if (!found) {
            break;
        }
        first = 0;
        last = next;
        const pmt_ms_class_t *cb = pmt_ms_find_class(b, next);
        const pmt_ms_class_t *cf = pmt_ms_find_class(f, next);
        uint32_t size = cf ? cf->size : cb->size;
        if (!cb) {
            cb = &zero_class;
        }
        if (!cf) {
            cf = &zero_class;
        }
        int64_t dp = delta(cf->num_pools, cb->num_pools);
        int64_t du = delta(cf->blocks_in_use, cb->blocks_in_use);
        int64_t da = delta(cf->avail_blocks, cb->avail_blocks);
        if (dp == 0 && du == 0 && da == 0) {
            continue;
        }
        if (!in_group) {
            group_break(a, wrote_any, &in_group);
            append_str(a, "class   size   num pools   blocks in use  avail blocks\n"
                          "-----   ----   ---------   -------------  ------------\n");
        }
        char line[128];
        int n = snprintf(line, sizeof(line), "%5" PRIu32 " %6" PRIu32 " %+11" PRId64
                         " %+15" PRId64 " %+13" PRId64 "\n", next, size, dp, du, da);
        if (n > 0) {
            append(a, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        }
    }
}

static void
format_value_delta(appender_t *a, const pmt_ms_value_t *vb, const pmt_ms_value_t *vf,
                   int *wrote_any, int *in_group)
{
    const pmt_ms_value_t *v = vf ? vf : vb;
    int64_t dv = delta(vf ? vf->value : 0, vb ? vb->value : 0);
    int64_t dc = delta(vf ? vf->count : 0, vb ? vb->count : 0);
    if (dv == 0 && dc == 0) {
        return;
    }
    group_break(a, wrote_any, in_group);
    char label[PMT_MS_LABEL + 48];
    if (v->has_count) {
        char num[40];
        format_signed_commas(dc, num);
        /* the writer prints counts without commas */
        size_t j = 0;
        for (size_t i = 0; num[i]; i++) {
            if (num[i] != ',') {
                num[j++] = num[i];
            }
        }
        num[j] = '\0';
        snprintf(label, sizeof(label), "%s %s", num, v->label);
    }
    else {
        snprintf(label, sizeof(label), "%s", v->label);
    }
    append_printone(a, label, dv);
}

static void
format_values(appender_t *a, const pmt_mallocstats_t *b, const pmt_mallocstats_t *f,
              int *wrote_any)
{
    static const int order[] = {PMT_MS_SEC_ARENAS, PMT_MS_SEC_BYTES, PMT_MS_SEC_ARENA_MAP_COUNTS,
                                PMT_MS_SEC_ARENA_MAP_BYTES, PMT_MS_SEC_MIMALLOC, PMT_MS_SEC_OTHER};
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
        int sec = order[k];
        int in_group = 0;
        for (int i = 0; i < f->nvalues; i++) {
            const pmt_ms_value_t *vf = &f->values[i];
            if (vf->section == sec) {
                format_value_delta(a, pmt_ms_find_value(b, sec, vf->label), vf, wrote_any,
                                   &in_group);
            }
        }
        for (int i = 0; i < b->nvalues; i++) {
            const pmt_ms_value_t *vb = &b->values[i];
            if (vb->section == sec && !pmt_ms_find_value(f, sec, vb->label)) {
                format_value_delta(a, vb, NULL, wrote_any, &in_group);
            }
        }
    }
}

static void
format_freelist_delta(appender_t *a, const pmt_ms_freelist_t *lb, const pmt_ms_freelist_t *lf,
                      int *wrote_any, int *in_group)
{
    const pmt_ms_freelist_t *l = lf ? lf : lb;
    int64_t dc = delta(lf ? lf->count : 0, lb ? lb->count : 0);
    int64_t dt = delta(lf ? lf->total : 0, lb ? lb->total : 0);
    if (dc == 0 && dt == 0) {
        return;
    }
    group_break(a, wrote_any, in_group);
    char inner[PMT_MS_LABEL + 64], label[PMT_MS_LABEL + 80];
    snprintf(inner, sizeof(inner), "%+" PRId64 " %s * %" PRId64 " bytes each",
             dc, l->name, l->size_each);
    snprintf(label, sizeof(label), "%48s ", inner);
    append_printone(a, label, dt);
}

/* Free-list lines in the order the seed's diff shows them: the sized ones
 * ("free 2-sized PyTupleObjects") by size first, then the rest by name. */
typedef struct {
    const pmt_ms_freelist_t *before;
    const pmt_ms_freelist_t *after;
} freelist_pair_t;

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static long
sized_prefix(const char *name)
{
    /* "free 12-sized ..." -> 12, otherwise -1 */
    if (strncmp(name, "free ", 5) != 0 || !is_digit(name[5])) {
        return -1;
    }
    long v = 0;
    for (const char *p = name + 5; is_digit(*p); p++) {
        if (v > (LONG_MAX - 9) / 10) {
            return LONG_MAX;    /* absurdly large: sorts last among the sized */
        }
        v = v * 10 + (*p - '0');
    }
    return v;
}

static int
compare_pairs(const void *x, const void *y)
{
    const pmt_ms_freelist_t *a = ((const freelist_pair_t *)x)->after
        ? ((const freelist_pair_t *)x)->after : ((const freelist_pair_t *)x)->before;
    const pmt_ms_freelist_t *b = ((const freelist_pair_t *)y)->after
        ? ((const freelist_pair_t *)y)->after : ((const freelist_pair_t *)y)->before;
    long sa = sized_prefix(a->name), sb = sized_prefix(b->name);
    if ((sa < 0) != (sb < 0)) {
        return sa < 0 ? 1 : -1;
    }
    if (sa != sb) {
        return sa < sb ? -1 : 1;
    }
    int c = strcmp(a->name, b->name);
    if (c) {
        return c;
    }
    return (a->size_each > b->size_each) - (a->size_each < b->size_each);
}

static void
format_freelists(appender_t *a, const pmt_mallocstats_t *b, const pmt_mallocstats_t *f,
                 int *wrote_any)
{
    freelist_pair_t pairs[2 * PMT_MS_MAX_FREELISTS];
    size_t n = 0;
    int in_group = 0;
    for (int i = 0; i < f->nfreelists; i++) {
        const pmt_ms_freelist_t *lf = &f->freelists[i];
        pairs[n].before = pmt_ms_find_freelist(b, lf->name, lf->size_each);
        pairs[n++].after = lf;
    }
    for (int i = 0; i < b->nfreelists; i++) {
        const pmt_ms_freelist_t *lb = &b->freelists[i];
        if (!pmt_ms_find_freelist(f, lb->name, lb->size_each)) {
            pairs[n].before = lb;
            pairs[n++].after = NULL;
        }
    }
    qsort(pairs, n, sizeof(pairs[0]), compare_pairs);
    for (size_t i = 0; i < n; i++) {
        format_freelist_delta(a, pairs[i].before, pairs[i].after, wrote_any, &in_group);
    }
}

size_t
pmt_ms_diff_format(const pmt_mallocstats_t *before, const pmt_mallocstats_t *after,
                   char *buf, size_t cap)
{
    appender_t a = {buf, cap, 0};
    int wrote_any = 0;
    format_classes(&a, before, after, &wrote_any);
    format_values(&a, before, after, &wrote_any);
    format_freelists(&a, before, after, &wrote_any);
    if (!wrote_any) {
        append_str(&a, "No change.\n");
    }
    if (cap) {
        buf[a.len < cap ? a.len : cap - 1] = '\0';
    }
    return a.len;
}

int
pmt_ms_classes_changed(const pmt_mallocstats_t *before, const pmt_mallocstats_t *after)
{
    int changed = 0;
    for (int side = 0; side < 2; side++) {
        const pmt_mallocstats_t *s = side ? after : before;
        const pmt_mallocstats_t *o = side ? before : after;
        for (int i = 0; i < s->nclasses; i++) {
            const pmt_ms_class_t *mine = &s->classes[i];
            const pmt_ms_class_t *theirs = pmt_ms_find_class(o, mine->index);
            if (theirs == NULL) {
                /* counted once, from whichever side has it */
                changed += mine->blocks_in_use != 0;
            }
            else if (side == 0 && theirs->blocks_in_use != mine->blocks_in_use) {
                changed++;
            }
        }
    }
    return changed;
}
