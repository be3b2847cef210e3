/* capture_format.h: the on-disk format of a `pymemtrace malloc` capture.
 *
 * The one definition of its layout, shared by the writer (the preload
 * library, src/preload/) and the reader (capture_read.c, then
 * capture_aggregate.c).  No code here beyond two kind tests.
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
#ifndef PMT_CAPTURE_FORMAT_H
#define PMT_CAPTURE_FORMAT_H

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
#define PMT_MC_FLAG_STACKS 2u   /* events name a STACK node (code = node id): whole stacks */
#define PMT_MC_VERSION_STACKS 2 /* the version of a capture with PMT_MC_FLAG_STACKS */

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
    PMT_MC_STACK = 36,          /* a node of the stack tree (PMT_MC_FLAG_STACKS): a = node id,
                                 * b = parent node id (0: outermost frame), code = code id,
                                 * line = line; no payload */
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

#ifdef __cplusplus
}
#endif
#endif
