/* mallocstats_parse.c: parse sys._debugmallocstats() text (see
 * mallocstats_parse.h).
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
 * Nothing here allocates: the parse fills a fixed struct.
 */
#include "mallocstats_parse.h"

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

/* The line at text[*i] (its length in *n, up to a NUL in it); *i moves past
 * its newline. */
static const char *
next_line(const char *text, size_t len, size_t *i, size_t *n)
{
    const char *line = text + *i;
    const char *end = memchr(line, '\n', len - *i);
    *n = end ? (size_t)(end - line) : len - *i;
    *i += *n + 1;
    const char *nul = memchr(line, '\0', *n);
    if (nul != NULL) {
        *n = (size_t)(nul - line);
    }
    return line;
}

int
pmt_ms_parse(const char *text, size_t len, pmt_mallocstats_t *out)
{
    int understood = 0;
    int current = PMT_MS_SEC_OTHER;
    memset(out, 0, sizeof(*out));
    size_t i = 0, n;
    while (i < len) {
        const char *line = next_line(text, len, &i, &n);
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

int
pmt_ms_check(const char *text, size_t len, const pmt_mallocstats_t *s, char *err, size_t errlen)
{
    if (s->pymalloc || s->mimalloc || s->nfreelists > 0) {
        return 0;
    }
    /* the first non-blank line, to say what the text is instead */
    size_t i = 0, n;
    while (i < len) {
        const char *line = next_line(text, len, &i, &n);
        trim(&line, &n);
        if (n == 0) {
            continue;
        }
        /* printable ASCII only in the message: the text may be anything */
        char first[64];
        size_t k = 0;
        for (size_t j = 0; j < n && k < sizeof(first) - 4; j++) {
            unsigned char c = (unsigned char)line[j];
            first[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        if (k < n) {
            memcpy(first + k, "...", 3);
            k += 3;
        }
        first[k] = '\0';
        snprintf(err, errlen,
                 "not the text sys._debugmallocstats() writes (no \"Small block threshold\" "
                 "line, mimalloc summary or free-list line); it starts \"%s\"", first);
        return -1;
    }
    snprintf(err, errlen, "%s: sys._debugmallocstats() writes at least its free lists",
             len == 0 ? "empty text" : "only blank lines");
    return -1;
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
