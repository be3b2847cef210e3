/* capture_format.h: the on-disk format of a `pymemtrace malloc` capture.
 *
 * The one definition of its layout, shared by the writer (the preload
 * library, src/preload/) and the reader (capture_read.c, then
 * capture_aggregate.c), with the varint helpers both use.
 *
 * Format version 4 (older versions are refused by name; 4 added the TIME
 * record and packs each chunk as its own zlib stream):
 *
 *   [header, PMT_MC_HEADER_SIZE bytes][zeros to data_offset][chunk 0][chunk 1]...
 *
 * The writer maps its header and each chunk of chunk_size bytes MAP_SHARED
 * from the file (space reserved with fallocate first), and each thread
 * writes its records straight into its own chunk: what a thread recorded is
 * in the kernel's page cache at once, so a process killed by SIGKILL loses
 * at most the record being written, and the tracer keeps no descriptor
 * open.  A chunk holds whole records; a zero byte where a record would start
 * ends its records (the rest of the chunk is zeros).  A record's kind byte is
 * stored after its body, so a record cut short by a kill reads as the end of
 * its chunk.
 *
 * Records: a kind byte (never 0), then unsigned LEB128 varints ("uv") and
 * zigzag varints ("zz", signed).  Events are delta-encoded against the
 * previous event of the same chunk (the state starts at 0 in every chunk,
 * so each chunk decodes alone), and their kind byte carries two flags:
 * PMT_MC_SEQ_NEXT (the number is the previous one plus 1: no seq field) and,
 * for allocations, PMT_MC_SAME_SITE (the previous allocation's code and
 * line: no code and line fields):
 *   allocation  kind, [zz seq,] zz addr, zz size, [zz code, zz line,] [zz native]
 *   FREE, REALLOC_FREE  kind, [zz seq,] zz addr [, zz native]
 *   MUNMAP      kind, [zz seq,] zz addr, uv length [, zz native]
 *   CODE        kind, uv id, zz firstlineno, uv plen, payload: file NUL function NUL
 *   STACK       kind, uv id, uv parent, uv code, zz line
 *   NATIVE_FRAME kind, uv id, uv parent, uv addr   (--native: a native node of the
 *               stack tree, addr a return address; Python frames interleaved as STACK)
 *   THREAD      kind, uv id, uv tid, uv plen, payload: name (the root of a thread's
 *               stacks: every STACK / NATIVE_FRAME path starts at one)
 *   MODULE      kind, uv lo, uv bias, uv hi, uv plen, payload: path NUL, then
 *               optionally (--native) a build-id length byte n, n bytes of GNU
 *               build-id, 8-byte file size, 8-byte mtime (ns)
 *   TIME        kind, uv ns, uv rss, uv seq: monotonic clock ns since the capture
 *               opened and the process's RSS in bytes (0: unread), taken when
 *               the next sequence number was seq (written at each new chunk
 *               and every >= 10 ms of allocating, never per event)
 * seq: a global sequence number (one atomic counter) so events of different
 * threads can be put back in order: a free is numbered before the memory goes
 * back and an allocation after it came out.  code: a code object id, or with
 * PMT_MC_FLAG_STACKS the innermost node of the stack tree (STACK records);
 * 0: no Python frame.  native: the caller's return address (PMT_MC_FLAG_NATIVE).
 *
 * The header's end fields (state, events, stop) are written in place when the
 * process exits or execs, or when writing stops (disk full): a capture whose
 * state is still RUNNING was cut short by a kill or a crash.
 *
 * A packed capture (PMT_MC_FLAG_PACKED, made by `pymemtrace malloc` after
 * the run) holds the header, a 4-byte count n of chunks, n 4-byte lengths,
 * then n zlib streams of those lengths: stream k inflates to chunk k of the
 * bytes from data_offset on (packed_len of them in all; every chunk is
 * chunk_size bytes but the last).  Each chunk inflates alone, so a reader
 * holds one inflated chunk per thread it is merging, never the whole
 * capture.  Integers are in the byte order of the writing machine (the
 * header's `endian` word says which).
 *
 * Aggregated captures (PMT_MC_FLAG_AGGREGATE, `pymemtrace malloc --aggregate`,
 * always with PMT_MC_FLAG_STACKS) hold no events: the chunks hold only the
 * definitions (CODE, STACK, THREAD, NATIVE_FRAME, MODULE), and the totals
 * per stack are written as checkpoints into two slots, each an extent of
 * whole chunks whose first bytes are a pmt_mc_ckpt_head (its kind byte
 * PMT_MC_CHECKPOINT and its length in chunks are written when the extent is
 * made, so a reader walking the chunks skips it).  A checkpoint is written
 * into the slot the header does not name, then the header's ckpt_slot[] (the
 * slot's offset from data_offset) and last ckpt_commit (its number: slot
 * number & 1) are set: a process killed at any moment leaves the last
 * committed checkpoint whole.  A checkpoint's payload, after its head:
 *   pmt_mc_tally sizes[PMT_MC_SIZE_CLASSES], kinds[PMT_MC_KINDS]
 *   pmt_mc_ckpt_point points[n_points]   (the heap at past checkpoints)
 *   pmt_mc_ckpt_stack stacks[n_stacks]   (every stack that allocated)
 * and the head's sum is pmt_mc_ckpt_sum() of the payload.
 */
#ifndef PMT_CAPTURE_FORMAT_H
#define PMT_CAPTURE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMT_MC_MAGIC "PMTMALC\0"
#define PMT_MC_VERSION 4
#define PMT_MC_HEADER_SIZE 128
#define PMT_MC_ENDIAN 0x01020304u
#define PMT_MC_FLAG_NATIVE 1u   /* events carry the native return address */
#define PMT_MC_FLAG_STACKS 2u   /* events name a STACK node (code = node id): whole stacks */
#define PMT_MC_FLAG_PACKED 4u   /* the chunks are zlib streams after the header and an index */
#define PMT_MC_FLAG_AGGREGATE 8u /* no events: totals per stack in checkpoints */
#define PMT_MC_EVENT_MAX 64     /* the longest event record */
#define PMT_MC_KIND_MASK 0x3fu  /* an event's kind byte: the kind ... */
#define PMT_MC_SEQ_NEXT 0x80u   /* ... and its flags */
#define PMT_MC_SAME_SITE 0x40u

typedef struct {
    char magic[8];          /* "PMTMALC\0" */
    uint32_t version;       /* PMT_MC_VERSION */
    uint32_t header_size;   /* PMT_MC_HEADER_SIZE */
    uint32_t record_size;   /* a decoded event: 32, or 40 with PMT_MC_FLAG_NATIVE */
    uint32_t flags;
    uint32_t pid;           /* the traced process */
    uint32_t ppid;
    uint64_t start_ns;      /* CLOCK_REALTIME when the capture was opened */
    uint32_t endian;        /* PMT_MC_ENDIAN as written */
    uint32_t page_size;
    uint32_t chunk_size;    /* bytes per chunk (a multiple of the page size) */
    uint32_t data_offset;   /* where chunk 0 starts */
    uint64_t python_hex;    /* Python's version (0: none) */
    uint32_t python_status; /* PMT_MC_PY_* */
    uint32_t state;         /* PMT_MC_STATE_* */
    uint64_t events;        /* events recorded (written at the end) */
    uint64_t dropped;       /* events that could not be recorded */
    uint64_t stop_events;   /* writing stopped after this many events ... */
    uint32_t stop_errno;    /* ... for this reason (0: it never stopped) */
    uint32_t ckpt_commit;   /* aggregated: the last whole checkpoint's number (0: none) */
    uint64_t packed_len;    /* PMT_MC_FLAG_PACKED: the inflated length */
    uint64_t ckpt_slot[2];  /* aggregated: each slot's offset from data_offset (0: none) */
} pmt_mc_header;

_Static_assert(sizeof(pmt_mc_header) == PMT_MC_HEADER_SIZE, "capture header size");

/* The header's state. */
enum {
    PMT_MC_STATE_RUNNING = 0,   /* no end written: the process was killed or crashed */
    PMT_MC_STATE_EXIT = 1,      /* exit, _exit or the end of the process */
    PMT_MC_STATE_EXEC = 2,      /* the process called exec: its next program writes on */
};

/* Record kinds. */
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
    /* definitions */
    PMT_MC_CODE = 32,
    PMT_MC_MODULE = 33,
    PMT_MC_STACK = 36,
    PMT_MC_NATIVE_FRAME = 37,
    PMT_MC_THREAD = 38,
    PMT_MC_CHECKPOINT = 39,     /* the first byte of a checkpoint slot's extent */
    PMT_MC_TIME = 40,
};

/* ---- checkpoints of aggregated captures ------------------------------------- */

#define PMT_MC_SIZE_CLASSES 65  /* sizes[k]: 2^(k-1) < size <= 2^k (sizes[0]: 0 and 1) */
#define PMT_MC_KINDS 6          /* kinds[k]: PMT_MC_MALLOC .. PMT_MC_MMAP (0: unused) */

typedef struct {
    uint8_t kind;           /* PMT_MC_CHECKPOINT */
    uint8_t pad[3];
    uint32_t chunks;        /* the extent's length in chunks */
    uint64_t seq;           /* this checkpoint's number (0: none written yet) */
    uint64_t len;           /* payload bytes after this head */
    uint64_t sum;           /* pmt_mc_ckpt_sum of the payload */
    uint64_t time_ns;       /* CLOCK_REALTIME when taken */
    uint32_t final;         /* 1: taken as the process exited or exec'd */
    uint32_t n_points;
    uint64_t n_stacks;
    uint64_t events;        /* allocations and releases counted in */
    uint64_t heap;          /* live bytes now */
    uint64_t peak;          /* the high-water mark of live bytes */
    uint64_t peak_events;   /* ... reached after this many events */
    uint64_t unknown;       /* releases of memory not seen allocated */
    uint64_t dropped;       /* events that could not be counted (no memory) */
    uint64_t reserved[4];
} pmt_mc_ckpt_head;

typedef struct {
    uint64_t count, bytes;
} pmt_mc_tally;

typedef struct {
    uint64_t time_ns, events;   /* when it was taken */
    uint64_t heap;              /* the highest live bytes since the checkpoint before */
    uint64_t peak;              /* the high-water mark so far */
} pmt_mc_ckpt_point;

typedef struct {
    uint32_t node;          /* the innermost stack node (0: no Python frame) */
    uint32_t pad;
    uint64_t alloc_bytes, alloc_count;  /* ever allocated */
    uint64_t live_bytes, live_count;    /* live now */
    uint64_t peak_bytes, peak_count;    /* live at the high-water mark */
} pmt_mc_ckpt_stack;

_Static_assert(sizeof(pmt_mc_ckpt_head) == 136, "checkpoint head size");
_Static_assert(sizeof(pmt_mc_ckpt_stack) == 56, "checkpoint stack size");

/* The checksum of a checkpoint's payload (n a multiple of 8). */
static inline uint64_t
pmt_mc_ckpt_sum(const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, b + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

/* Python attribution status (the header's python_status). */
enum {
    PMT_MC_PY_NONE = 0,         /* no Python in this process (yet) */
    PMT_MC_PY_ON = 1,           /* Python frames attributed */
    PMT_MC_PY_MISMATCH = 2,     /* Python present but not the version built for */
};

/* An event as the reader hands it out (decoded; not the on-disk layout). */
typedef struct {
    uint64_t seq_kind;      /* seq << 8 | kind */
    uint64_t a;
    uint64_t b;
    uint32_t code;          /* code object id or stack node id (0: no Python frame) */
    int32_t line;           /* line number (-1: unknown) */
    uint64_t native;        /* return address (0 without PMT_MC_FLAG_NATIVE) */
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

/* ---- varints ---------------------------------------------------------------- */

static inline uint64_t
pmt_zz(uint64_t delta)      /* delta: a difference taken modulo 2^64 */
{
    return delta << 1 ^ (uint64_t)-(int64_t)(delta >> 63);
}

static inline uint64_t
pmt_unzz(uint64_t u)
{
    return u >> 1 ^ (uint64_t)-(int64_t)(u & 1);
}

static inline unsigned char *
pmt_put_uv(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Decode one varint from [p, end): the byte after it, or NULL if it runs
 * past end or past 10 bytes. */
static inline const uint8_t *
pmt_get_uv(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && p < end; shift += 7) {
        uint8_t b = *p++;
        v |= shift < 64 ? (uint64_t)(b & 0x7f) << shift : 0;
        if (!(b & 0x80)) {
            *out = v;
            return p;
        }
    }
    return NULL;
}

#ifdef __cplusplus
}
#endif
#endif
