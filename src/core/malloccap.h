/* malloccap.h: the capture format of `pymemtrace malloc`, and its reader.
 *
 * The preload library (src/preload/malloc_preload.c) writes a capture; this
 * header is the one definition of its layout, shared by the writer and by
 * the reader/aggregator in malloccap.c (which has no Python.h: the
 * _malloccap extension is a thin binding over it).
 *
 * A capture is a 64-byte header followed by fixed-size records (the header
 * says how big: 32 bytes, or 40 with native call sites).  Every record
 * starts with a 64-bit word whose low 8 bits are its kind; for events the
 * upper 56 bits are a global sequence number taken from one atomic counter,
 * so events written by different threads (each thread fills its own buffer
 * and hands whole buffers to write(2)) can be put back in order.  A free is
 * numbered before the memory goes back to the allocator and an allocation
 * after it came out, so an address reused by another thread is always freed
 * before it is allocated again in sequence order.  Definition records
 * (code objects, modules, metadata) carry a payload of payload_len bytes in
 * the following records (padded to a whole record).  A reader stops at the
 * last whole record: a capture cut short by a crash is still readable.
 * Integers are in the byte order of the machine that wrote the capture
 * (the header's `endian` word says which).
 */
#ifndef PMT_MALLOCCAP_H
#define PMT_MALLOCCAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_MC_MAGIC "PMTMALC\0"
#define PMT_MC_VERSION 1
#define PMT_MC_HEADER_SIZE 64
#define PMT_MC_ENDIAN 0x01020304u
#define PMT_MC_FLAG_NATIVE 1u   /* records carry the native return address */

typedef struct {
    char magic[8];          /* "PMTMALC\0" */
    uint32_t version;       /* PMT_MC_VERSION */
    uint32_t header_size;   /* 64 */
    uint32_t record_size;   /* 32, or 40 with PMT_MC_FLAG_NATIVE */
    uint32_t flags;
    uint32_t pid;           /* the traced process */
    uint32_t ppid;
    uint64_t start_ns;      /* CLOCK_REALTIME when the capture was opened */
    uint32_t endian;        /* PMT_MC_ENDIAN as written */
    uint32_t page_size;
    uint8_t reserved[16];
} pmt_mc_header;

/* Record kinds (low 8 bits of the first word). */
enum {
    /* allocations (a = address, b = size in bytes, code/line = Python site) */
    PMT_MC_MALLOC = 1,
    PMT_MC_CALLOC = 2,
    PMT_MC_REALLOC = 3,         /* the new block of a realloc */
    PMT_MC_MEMALIGN = 4,        /* posix_memalign, aligned_alloc, memalign, valloc, pvalloc */
    PMT_MC_MMAP = 5,            /* an anonymous mmap (pymalloc arenas come this way) */
    /* releases (a = address; b = length for munmap) */
    PMT_MC_FREE = 16,
    PMT_MC_REALLOC_FREE = 17,   /* the old block of a realloc */
    PMT_MC_MUNMAP = 18,
    /* definitions: no sequence number.  CODE and MODULE: b = payload length
     * and the payload follows in the next records. */
    PMT_MC_CODE = 32,           /* a = code object address, code = id, line = co_firstlineno,
                                 * payload: filename NUL function NUL */
    PMT_MC_MODULE = 33,         /* a = lowest address, payload: 8-byte load bias,
                                 * 8-byte end address, path NUL */
    PMT_MC_META = 34,           /* a = Python version hex (0: none), code = attribution
                                 * status (PMT_MC_PY_*), payload: none */
    PMT_MC_END = 35,            /* clean end: a = events written, b = events dropped,
                                 * code = PMT_MC_END_* (why it ended) */
};

enum {
    PMT_MC_END_EXIT = 0,        /* exit, _exit or the end of the process */
    PMT_MC_END_EXEC = 1,        /* the process called exec: its next program writes on */
};

/* Python attribution status carried by PMT_MC_META. */
enum {
    PMT_MC_PY_NONE = 0,         /* no Python in this process (yet) */
    PMT_MC_PY_ON = 1,           /* Python frames attributed */
    PMT_MC_PY_MISMATCH = 2,     /* Python present but not the version built for */
};

typedef struct {
    uint64_t seq_kind;      /* seq << 8 | kind */
    uint64_t a;
    uint64_t b;
    uint32_t code;          /* code object id (0: no Python frame) */
    int32_t line;           /* line number (-1: unknown) */
    uint64_t native;        /* return address; present only with PMT_MC_FLAG_NATIVE */
} pmt_mc_record;

#define PMT_MC_RECORD_BASE 32
#define PMT_MC_RECORD_NATIVE 40

static inline int
pmt_mc_is_alloc(unsigned kind)
{
    return kind >= PMT_MC_MALLOC && kind <= PMT_MC_MMAP;
}

static inline int
pmt_mc_is_release(unsigned kind)
{
    return kind >= PMT_MC_FREE && kind <= PMT_MC_MUNMAP;
}

/* ---- reader and aggregator (malloccap.c) -------------------------------- */

/* One aggregated site.  Python sites are (file, function, line); native
 * sites are a return address (file = module path, function = symbol or "",
 * line = -1, addr/offset set). */
typedef struct {
    const char *file;
    const char *function;
    int32_t line;
    uint64_t addr;          /* native: the return address in the traced process */
    uint64_t offset;        /* native: offset within the module */
    uint64_t bytes;         /* all allocations (malloc family + mmap) */
    uint64_t count;
    uint64_t malloc_bytes;
    uint64_t malloc_count;
    uint64_t mmap_bytes;
    uint64_t mmap_count;
    uint64_t live_bytes;    /* still allocated at the end of the capture */
    uint64_t live_count;
} pmt_mc_site;

/* One of the largest single allocations. */
typedef struct {
    uint64_t size;
    uint64_t seq;
    uint32_t kind;
    int freed;
    uint32_t py_site;       /* index into py_sites */
    uint32_t native_site;   /* index into native_sites (UINT32_MAX: none) */
} pmt_mc_big;

#define PMT_MC_NBIG 10

typedef struct pmt_mc_report {
    /* header */
    uint32_t version, flags, pid, ppid, record_size;
    uint64_t start_ns;
    uint64_t python_hex;
    uint32_t python_status;
    /* integrity */
    int complete;               /* an END record was found */
    int ended_by_exec;          /* ... saying the process called exec */
    uint64_t trailing_bytes;    /* bytes after the last whole record (cut short) */
    uint64_t seq_gaps;          /* sequence numbers never seen (lost buffers) */
    uint64_t dropped;           /* events the writer reported dropping */
    uint64_t unknown_frees;     /* releases of memory not allocated in the capture */
    /* totals */
    uint64_t events;
    uint64_t total_bytes, total_count;
    uint64_t malloc_bytes, malloc_count;
    uint64_t mmap_bytes, mmap_count;
    uint64_t peak_bytes;        /* peak of live malloc-family + mmap bytes */
    uint64_t peak_malloc_bytes, peak_mmap_bytes;
    uint64_t live_bytes, live_count;            /* at the end */
    uint64_t live_malloc_bytes, live_mmap_bytes;
    /* sites, sorted by bytes (descending) */
    pmt_mc_site *py_sites;
    size_t n_py_sites;
    pmt_mc_site *native_sites;
    size_t n_native_sites;
    pmt_mc_big big[PMT_MC_NBIG];
    size_t n_big;
    /* storage */
    char *strings;
    size_t strings_len, strings_cap;
    char error[256];
} pmt_mc_report;

/* Read and aggregate the capture at path.  Returns 0 and fills *r (release
 * with pmt_mc_report_free), or -1 with r->error saying what was wrong (the
 * report is then empty but still to be freed).  A capture cut short is not
 * an error: r->complete is 0 and r->trailing_bytes says how much was cut. */
int pmt_mc_read(const char *path, pmt_mc_report *r);

/* The same from a capture already in memory. */
int pmt_mc_read_buffer(const uint8_t *data, size_t len, pmt_mc_report *r);

void pmt_mc_report_free(pmt_mc_report *r);

#ifdef __cplusplus
}
#endif
#endif
