/* mallocstats_parse.h: parse CPython's small-object allocator statistics
 * (the text sys._debugmallocstats() writes) into a fixed struct; the diff
 * of two is mallocstats_diff.h's.
 *
 * The text is what _PyObject_DebugMallocStats() writes (pymalloc: the size
 * class table, the arenas lines, the byte accounting, the arena map; or
 * mimalloc's summary in 3.13 builds that use it) followed by what
 * _PyObject_DebugTypeStats() writes (the free lists).  The parser accepts the
 * layouts of CPython 3.8 to 3.13 (see tests/fixtures/mallocstats/).
 *
 * Parsing works on caller-provided memory: it fills a fixed-size struct and
 * never allocates.
 * No Python.h.
 */
#ifndef PMT_MALLOCSTATS_PARSE_H
#define PMT_MALLOCSTATS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_MS_MAX_CLASSES 128
#define PMT_MS_MAX_VALUES 48
#define PMT_MS_MAX_FREELISTS 96
#define PMT_MS_LABEL 64

/* One row of the size class table. */
typedef struct {
    uint32_t index;
    uint32_t size;
    int64_t num_pools;
    int64_t blocks_in_use;
    int64_t avail_blocks;
} pmt_ms_class_t;

/* Which block of "label = value" lines a value belongs to. */
typedef enum {
    PMT_MS_SEC_OTHER = 0,
    PMT_MS_SEC_ARENAS,           /* "# arenas ...", "N arenas * S bytes/arena" */
    PMT_MS_SEC_BYTES,            /* "# bytes in ...", "N unused pools * S bytes", Total */
    PMT_MS_SEC_ARENA_MAP_COUNTS, /* "# arena map mid/bot nodes" */
    PMT_MS_SEC_ARENA_MAP_BYTES,  /* "# bytes lost to arena map ...", Total */
    PMT_MS_SEC_MIMALLOC,         /* mimalloc's summary lines */
    PMT_MS_SEC_COUNT
} pmt_ms_section_t;

/* One "label = value" line.  Lines that start with a count ("3 arenas *
 * 1048576 bytes/arena", "6 unused pools * 16384 bytes") keep the count
 * apart and the rest of the text as the label. */
typedef struct {
    char label[PMT_MS_LABEL];
    int64_t value;
    int64_t count;
    uint8_t has_count;
    uint8_t section;
} pmt_ms_value_t;

/* One free-list line: "COUNT NAME * SIZE bytes each = TOTAL", where NAME is
 * e.g. "free PyDictObjects" or "free 2-sized PyTupleObjects". */
typedef struct {
    char name[PMT_MS_LABEL];
    int64_t count;
    int64_t size_each;
    int64_t total;
} pmt_ms_freelist_t;

typedef struct {
    int pymalloc;               /* the pymalloc statistics were present */
    int mimalloc;               /* mimalloc's statistics were present */
    int64_t small_block_threshold;
    int64_t num_size_classes;
    int nclasses;
    pmt_ms_class_t classes[PMT_MS_MAX_CLASSES];
    int nvalues;
    pmt_ms_value_t values[PMT_MS_MAX_VALUES];
    int nfreelists;
    pmt_ms_freelist_t freelists[PMT_MS_MAX_FREELISTS];
    int nunparsed;              /* non-blank lines not understood */
    int ntruncated;             /* entries dropped because a table was full */
} pmt_mallocstats_t;

/* Parse len bytes of text (need not be NUL-terminated) into *out.  Never
 * fails: lines that are not understood are counted in nunparsed, entries
 * beyond the fixed capacity in ntruncated.  Returns the number of lines
 * understood. */
int pmt_ms_parse(const char *text, size_t len, pmt_mallocstats_t *out);

/* Whether text (parsed into *s) is allocator statistics at all: it holds
 * pymalloc's "Small block threshold" line, mimalloc's summary or a free-list
 * line (the interpreter always writes its free lists).  Returns 0 if so;
 * otherwise -1 with err saying what was wrong (empty, only blank lines, or
 * which line it starts with).  The parser itself never refuses text. */
int pmt_ms_check(const char *text, size_t len, const pmt_mallocstats_t *s, char *err,
                 size_t errlen);

/* Lookups; NULL if absent.  section < 0 matches any section. */
const pmt_ms_class_t *pmt_ms_find_class(const pmt_mallocstats_t *s, uint32_t index);
const pmt_ms_value_t *pmt_ms_find_value(const pmt_mallocstats_t *s, int section,
                                        const char *label);
const pmt_ms_freelist_t *pmt_ms_find_freelist(const pmt_mallocstats_t *s, const char *name,
                                              int64_t size_each);

/* The name of a section ("arenas", "bytes", "arena_map_counts", ...). */
const char *pmt_ms_section_name(int section);

#ifdef __cplusplus
}
#endif
#endif /* PMT_MALLOCSTATS_PARSE_H */
