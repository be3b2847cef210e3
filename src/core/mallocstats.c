/* mallocstats.c: parse, diff and format sys._debugmallocstats() text.
 *
 * The writer's line shapes (CPython 3.8 to 3.13, Objects/obmalloc.c and the
 * *_DebugMallocStats functions of the object types):
 *
 *   Small block threshold = 512, in 32 size classes.
 *   class   size   num pools   blocks in use  avail blocks     (header, rule)
 *       3     64          48           11539           701     ("%5u %6u %11zu %15zu %13zu")
 *   LABEL<pad to col 35>=<value with commas, right-aligned in 21>   (printone())
 *   arena map counts                                            (3.10+)
 *   COUNT free NAMEs * SIZE bytes each = TOTAL   (_PyDebugAllocatorStats(), "%48s ")
 *   Medium block threshold = N / "    Allocated Blocks: N"   (3.13 mimalloc)
 *
 * Nothing here allocates: the parse fills a fixed struct, the formatter
 * writes into the caller's buffer.
 */
#include "mallocstats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small string helpers ------------------------------------------------ */

static int
starts_with(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && memcmp(s, prefix, p) == 0;
}

static int
ends_with(const char *s, size_t n, const char *suffix)
{
    size_t p = strlen(suffix);
    return n >= p && memcmp(s + n - p, suffix, p) == 0;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Trim [*s, *s + *n) of spaces at both ends. */
static void
trim(const char **s, size_t *n)
{
    while (*n && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && is_space((*s)[*n - 1])) {
        (*n)--;
    }
}

/* Parse a signed integer with optional thousands commas at *s.  Advances *s
 * and *n past it.  Returns 0 on success, -1 if there is no digit. */
static int
parse_int(const char **s, size_t *n, int64_t *out)
{
    const char *p = *s;
    size_t left = *n;
    int neg = 0, digits = 0;
    uint64_t v = 0;
    if (left && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
        left--;
    }
    while (left && (is_digit(*p) ||
                    (*p == ',' && digits && left > 1 && is_digit(p[1])))) {
        if (*p != ',') {
            v = v * 10 + (uint64_t)(*p - '0');
            digits++;
        }
        p++;
        left--;
    }
    if (!digits) {
        return -1;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    *s = p;
    *n = left;
    return 0;
}

/* The whole of [s, s + n) is one integer (spaces around allowed). */
static int
parse_whole_int(const char *s, size_t n, int64_t *out)
{
    trim(&s, &n);
    if (parse_int(&s, &n, out) < 0) {
        return -1;
    }
    return n == 0 ? 0 : -1;
}

static void
copy_label(char *dst, const char *s, size_t n)
{
    if (n >= PMT_MS_LABEL) {
        n = PMT_MS_LABEL - 1;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ---- the line parsers ------------------------------------------------------ */

/* "    3     64          48           11539           701" */
static int
parse_class_row(const char *s, size_t n, pmt_mallocstats_t *out)
{
    int64_t v[5];
    for (int i = 0; i < 5; i++) {
        trim(&s, &n);
        if (n == 0 || !is_digit(*s) || parse_int(&s, &n, &v[i]) < 0) {
            return 0;
        }
        if (n && !is_space(*s)) {
            return 0;
        }
    }
    trim(&s, &n);
    if (n != 0) {
        return 0;
    }
    if (out->nclasses >= PMT_MS_MAX_CLASSES) {
        out->ntruncated++;
        return 1;
    }
    pmt_ms_class_t *c = &out->classes[out->nclasses++];
    c->index = (uint32_t)v[0];
    c->size = (uint32_t)v[1];
    c->num_pools = v[2];
    c->blocks_in_use = v[3];
    c->avail_blocks = v[4];
    return 1;
}

/* "Small block threshold = 512, in 32 size classes." */
static int
parse_threshold(const char *s, size_t n, pmt_mallocstats_t *out)
{
    static const char head[] = "Small block threshold =";
    if (!starts_with(s, n, head)) {
        return 0;
    }
    s += sizeof(head) - 1;
    n -= sizeof(head) - 1;
    trim(&s, &n);
    if (parse_int(&s, &n, &out->small_block_threshold) < 0) {
        return 0;
    }
    if (starts_with(s, n, ", in ")) {
        s += 5;
        n -= 5;
        (void)parse_int(&s, &n, &out->num_size_classes);
    }
    out->pymalloc = !out->mimalloc;
    return 1;
}

static int
section_of(const char *label, size_t n, int has_count, int current)
{
    if (n == 5 && memcmp(label, "Total", 5) == 0) {
        return current;
    }
    if (has_count) {
        if (starts_with(label, n, "arenas ")) {
            return PMT_MS_SEC_ARENAS;
        }
        if (starts_with(label, n, "unused pools")) {
            return PMT_MS_SEC_BYTES;
        }
        return PMT_MS_SEC_OTHER;
    }
    if (starts_with(label, n, "# arenas")) {
        return PMT_MS_SEC_ARENAS;
    }
    if (starts_with(label, n, "# arena map")) {
        return PMT_MS_SEC_ARENA_MAP_COUNTS;
    }
    if (starts_with(label, n, "# bytes lost to arena map")) {
        return PMT_MS_SEC_ARENA_MAP_BYTES;
    }
    if (starts_with(label, n, "# bytes")) {
        return PMT_MS_SEC_BYTES;
    }
    if (starts_with(label, n, "Medium block threshold") ||
        starts_with(label, n, "Large object max size")) {
        return PMT_MS_SEC_MIMALLOC;
    }
    return PMT_MS_SEC_OTHER;
}

/* "COUNT NAME * SIZE bytes each" (the label of a free-list line). */
static int
parse_freelist(const char *s, size_t n, int64_t total, pmt_mallocstats_t *out)
{
    int64_t count, size_each;
    if (!ends_with(s, n, " bytes each")) {
        return 0;
    }
    n -= strlen(" bytes each");
    if (parse_int(&s, &n, &count) < 0 || n == 0 || *s != ' ') {
        return 0;
    }
    trim(&s, &n);
    /* the name runs up to the last " * " */
    size_t star = n;
    while (star >= 3 && memcmp(s + star - 3, " * ", 3) != 0) {
        star--;
    }
    if (star < 3) {
        return 0;
    }
    const char *num = s + star;
    size_t numlen = n - star;
    if (parse_whole_int(num, numlen, &size_each) < 0) {
        return 0;
    }
    size_t namelen = star - 3;
    if (out->nfreelists >= PMT_MS_MAX_FREELISTS) {
        out->ntruncated++;
        return 1;
    }
    pmt_ms_freelist_t *f = &out->freelists[out->nfreelists++];
    copy_label(f->name, s, namelen);
    f->count = count;
    f->size_each = size_each;
    f->total = total;
    return 1;
}

static int
add_value(pmt_mallocstats_t *out, const char *label, size_t n, int64_t value,
          int has_count, int64_t count, int section)
{
    if (out->nvalues >= PMT_MS_MAX_VALUES) {
        out->ntruncated++;
        return 1;
    }
    pmt_ms_value_t *v = &out->values[out->nvalues++];
    copy_label(v->label, label, n);
    v->value = value;
    v->count = count;
    v->has_count = (uint8_t)has_count;
    v->section = (uint8_t)section;
    return 1;
}

/* "LABEL = VALUE" (printone() and the mimalloc header lines). */
static int
parse_equals(const char *s, size_t n, pmt_mallocstats_t *out, int *current)
{
    const char *eq = memchr(s, '=', n);
    if (eq == NULL) {
        return 0;
    }
    const char *label = s;
    size_t labellen = (size_t)(eq - s);
    int64_t value;
    trim(&label, &labellen);
    if (labellen == 0 || parse_whole_int(eq + 1, n - (size_t)(eq + 1 - s), &value) < 0) {
        return 0;
    }
    if (ends_with(label, labellen, " bytes each")) {
        return parse_freelist(label, labellen, value, out);
    }
    int has_count = 0;
    int64_t count = 0;
    if (is_digit(*label)) {
        const char *p = label;
        size_t left = labellen;
        if (parse_int(&p, &left, &count) == 0 && left && *p == ' ') {
            trim(&p, &left);
            label = p;
            labellen = left;
            has_count = 1;
        }
    }
    int section = section_of(label, labellen, has_count, *current);
    if (section == PMT_MS_SEC_MIMALLOC) {
        out->mimalloc = 1;
        out->pymalloc = 0;
    }
    if (section == PMT_MS_SEC_BYTES || section == PMT_MS_SEC_ARENA_MAP_BYTES ||
        section == PMT_MS_SEC_ARENAS) {
        *current = section;
    }
    return add_value(out, label, labellen, value, has_count, count, section);
}

/* mimalloc's "    Allocated Blocks: 123" */
static int
parse_colon(const char *s, size_t n, pmt_mallocstats_t *out)
{
    const char *colon = memchr(s, ':', n);
    int64_t value;
    if (colon == NULL) {
        return 0;
    }
    const char *label = s;
    size_t labellen = (size_t)(colon - s);
    trim(&label, &labellen);
    if (labellen == 0 || parse_whole_int(colon + 1, n - (size_t)(colon + 1 - s), &value) < 0) {
        return 0;
    }
    out->mimalloc = 1;
    out->pymalloc = 0;
    return add_value(out, label, labellen, value, 0, 0, PMT_MS_SEC_MIMALLOC);
}

static int
parse_line(const char *s, size_t n, pmt_mallocstats_t *out, int *current)
{
    trim(&s, &n);
    if (n == 0) {
        return -1;   /* blank: neither understood nor unparsed */
    }
    if (starts_with(s, n, "class ") || starts_with(s, n, "-----") ||
        (n == 16 && memcmp(s, "arena map counts", 16) == 0)) {
        return 1;
    }
    if (parse_threshold(s, n, out)) {
        return 1;
    }
    if (is_digit(*s) && parse_class_row(s, n, out)) {
        return 1;
    }
    if (parse_equals(s, n, out, current)) {
        return 1;
    }
    return parse_colon(s, n, out);
}

int
pmt_ms_parse(const char *text, size_t len, pmt_mallocstats_t *out)
{
    int understood = 0;
    int current = PMT_MS_SEC_OTHER;
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + 1;
        if (memchr(line, '\0', n) != NULL) {
            n = strlen(line);
        }
        int r = parse_line(line, n, out, &current);
        if (r > 0) {
            understood++;
        }
        else if (r == 0) {
            out->nunparsed++;
        }
    }
    return understood;
}

/* ---- lookups ------------------------------------------------------------------ */

const pmt_ms_class_t *
pmt_ms_find_class(const pmt_mallocstats_t *s, uint32_t index)
{
    for (int i = 0; i < s->nclasses; i++) {
        if (s->classes[i].index == index) {
            return &s->classes[i];
        }
    }
    return NULL;
}

const pmt_ms_value_t *
pmt_ms_find_value(const pmt_mallocstats_t *s, int section, const char *label)
{
    for (int i = 0; i < s->nvalues; i++) {
        if ((section < 0 || s->values[i].section == section) &&
            strcmp(s->values[i].label, label) == 0) {
            return &s->values[i];
        }
    }
    return NULL;
}

const pmt_ms_freelist_t *
pmt_ms_find_freelist(const pmt_mallocstats_t *s, const char *name, int64_t size_each)
{
    for (int i = 0; i < s->nfreelists; i++) {
        if ((size_each < 0 || s->freelists[i].size_each == size_each) &&
            strcmp(s->freelists[i].name, name) == 0) {
            return &s->freelists[i];
        }
    }
    return NULL;
}

const char *
pmt_ms_section_name(int section)
{
    switch (section) {
    case PMT_MS_SEC_ARENAS: return "arenas";
    case PMT_MS_SEC_BYTES: return "bytes";
    case PMT_MS_SEC_ARENA_MAP_COUNTS: return "arena_map_counts";
    case PMT_MS_SEC_ARENA_MAP_BYTES: return "arena_map_bytes";
    case PMT_MS_SEC_MIMALLOC: return "mimalloc";
    default: return "other";
    }
}

/* ---- formatting ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t cap;
    size_t len;     /* length the whole text needs */
} appender_t;

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
        int64_t dp = cf->num_pools - cb->num_pools;
        int64_t du = cf->blocks_in_use - cb->blocks_in_use;
        int64_t da = cf->avail_blocks - cb->avail_blocks;
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
    int64_t dv = (vf ? vf->value : 0) - (vb ? vb->value : 0);
    int64_t dc = (vf ? vf->count : 0) - (vb ? vb->count : 0);
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
    int64_t dc = (lf ? lf->count : 0) - (lb ? lb->count : 0);
    int64_t dt = (lf ? lf->total : 0) - (lb ? lb->total : 0);
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

static long
sized_prefix(const char *name)
{
    /* "free 12-sized ..." -> 12, otherwise -1 */
    if (strncmp(name, "free ", 5) != 0 || !is_digit(name[5])) {
        return -1;
    }
    long v = 0;
    for (const char *p = name + 5; is_digit(*p); p++) {
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
