/* mallocstats_fixture.h: read the allocator statistics texts under
 * tests/fixtures/mallocstats/ for the C tests of mallocstats_parse and
 * mallocstats_diff. */
#ifndef PMT_MALLOCSTATS_FIXTURE_H
#define PMT_MALLOCSTATS_FIXTURE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "mallocstats_parse.h"

#ifndef FIXTURES
#define FIXTURES "tests/fixtures/mallocstats/"
#endif

static inline char *
read_file(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", FIXTURES, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (run from the repository root)\n", path);
        exit(2);
    }
    char *buf = malloc(1 << 20);
    if (buf == NULL) {
        exit(2);
    }
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static inline int64_t
value_of(const pmt_mallocstats_t *s, int section, const char *label)
{
    const pmt_ms_value_t *v = pmt_ms_find_value(s, section, label);
    return v ? v->value : INT64_MIN;
}

#endif
