/* capture_read.h: decode a `pymemtrace malloc` capture's records.
 *
 * Checks the header (format version 4 only: another version is refused
 * with a line naming both), then reads every chunk once (capture_format.h):
 * the definitions (code objects, stack nodes, threads, modules, times) are
 * kept, and each chunk's place, first sequence number and events noted, but
 * not the events themselves.  Events are handed out in sequence order by an
 * iterator (capture_merge.c): a k-way merge of the chunks (each thread's
 * events are in order within its chunk), holding one chunk per thread that
 * is running at that point of the capture.  So the reader's memory grows
 * with definitions and threads, never with events; a report replays the
 * iterator as often as it needs (one more pass at open counts the events).
 * A chunk cut short or corrupt from some record on is read up to the last
 * record that makes sense (trailing_bytes counts what was not); the other
 * chunks are unaffected.  No Python.h.
 */
#ifndef PMT_CAPTURE_READ_H
#define PMT_CAPTURE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "capture_format.h"
#include "hashtab.h"
#include "strpool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t id;            /* the key */
    uint32_t file, name;    /* string offsets */
} pmt_cap_code;

/* What a node of the stack tree is. */
enum {
    PMT_CAP_NODE_PYTHON = 0,    /* a Python frame: code, line */
    PMT_CAP_NODE_NATIVE = 1,    /* a native frame: addr (a return address) */
    PMT_CAP_NODE_THREAD = 2,    /* the root of a thread's stacks: code = OS thread id, name */
};

/* A node of the stack tree (PMT_MC_FLAG_STACKS captures). */
typedef struct {
    uint32_t id;            /* the key */
    uint32_t parent;        /* node id, 0: the outermost frame (or a thread) */
    uint32_t code;          /* Python: code id; thread: OS thread id */
    int32_t line;           /* Python: line */
    uint32_t kind;          /* PMT_CAP_NODE_* */
    uint32_t name;          /* thread: string offset of its name */
    uint32_t thread;        /* the index of its thread (0: none; see pmt_capture_event_thread) */
    uint64_t addr;          /* native: return address */
} pmt_cap_node;

/* A thread (the THREAD node at the root of its stacks). */
typedef struct {
    uint64_t id;            /* OS thread id */
    uint32_t name;          /* string offset */
    uint32_t node;          /* its node id */
} pmt_cap_thread;

typedef struct {
    uint64_t lo, hi, bias;
    uint32_t path;          /* string offset */
    uint32_t build_id_len;  /* 0: none recorded */
    uint8_t build_id[20];   /* GNU build-id (its first 20 bytes) */
    uint64_t file_size;     /* st_size when traced (0: unknown) */
    uint64_t mtime_ns;      /* st_mtime when traced (0: unknown) */
} pmt_cap_module;

/* A chunk with events, in the order the merge takes them up. */
typedef struct {
    uint64_t off;           /* raw: where its bytes start in data; packed: its zlib stream */
    uint32_t src_len;       /* bytes at off */
    uint32_t len;           /* its bytes once inflated (raw: src_len) */
    uint64_t first_seq;     /* the lowest sequence number of its events */
    uint32_t index;         /* its place in the file (the same number twice: the first wins) */
    uint32_t unsorted;      /* its numbers are not in order (records of two writers in one
                             * chunk: not what the writer makes): sorted when merged */
    uint64_t events;
} pmt_cap_chunk;

/* A TIME record (capture_format.h), placed among the events. */
typedef struct {
    uint64_t ns;            /* since the capture opened */
    uint64_t rss;           /* bytes (0: not read) */
    uint64_t seq;           /* the next sequence number then */
    uint64_t pos;           /* events in sequence order before it */
} pmt_cap_time;

typedef struct {
    const uint8_t *data;
    size_t len;
    int file_mapped;        /* data is a private mapping of a file: pages read may be dropped */
    pmt_mc_header header;
    uint32_t rs;                /* decoded record size: 32, or 40 with native */
    pmt_strpool strs;           /* file, function and module names */
    pmt_hashtab codes;          /* pmt_cap_code by id (ids are the writer's: any
                                 * 32-bit value a corrupt capture holds) */
    pmt_cap_module *mods;
    size_t n_mods, mods_cap;
    pmt_hashtab nodes;          /* pmt_cap_node by id (stacks captures) */
    int stacks;                 /* events name a stack node, not a code id */
    pmt_cap_thread *threads;    /* index i + 1 is threads[i] */
    size_t n_threads, threads_cap;
    pmt_cap_chunk *chunks;      /* chunks with events, by first sequence number */
    size_t n_chunks, chunks_cap;
    pmt_cap_time *times;        /* TIME records in sequence order */
    size_t n_times, times_cap;
    size_t n_ev;                /* the events, in sequence order, the same number once */
    uint64_t seq_gaps;          /* numbers in [first, last] never seen (lost records) */
    uint64_t python_hex;        /* from the header */
    uint32_t python_status;
    int complete;               /* the header says the process ended (exit or exec) */
    int ended_by_exec;
    uint64_t dropped;           /* events the writer reported dropping */
    uint64_t stop_events;       /* writing stopped after this many events ... */
    uint32_t stop_errno;        /* ... for this reason (0: it never stopped; ENOSPC: disk full) */
    uint64_t trailing_bytes;    /* bytes of records that could not be read (cut short, corrupt) */
    char error[256];
    int aggregate;              /* no events: checkpoints (capture_checkpoint.h) */
    const uint8_t *area;        /* the bytes from data_offset on (a packed capture: only
                                 * when aggregated, inflated whole; else NULL) */
    size_t area_len;
    uint8_t *inflated;          /* that inflated area (owned) */
} pmt_capture;

/* Read the capture in data[0..len) (which must outlive c).  Returns 0, or -1
 * with c->error saying what was wrong; either way pmt_capture_close(c). */
int pmt_capture_open(pmt_capture *c, const uint8_t *data, size_t len);
/* The same with flags: PMT_CAP_MAPPED, data is a file mapped by
 * pmt_capture_file_load (the pages of a chunk read are given back to the
 * kernel after); PMT_CAP_NO_COUNT, no counting pass (n_ev, seq_gaps and each
 * TIME's pos stay 0: for a reader that counts in its own replay). */
enum { PMT_CAP_MAPPED = 1, PMT_CAP_NO_COUNT = 2 };
int pmt_capture_open_mapped(pmt_capture *c, const uint8_t *data, size_t len, int flags);
void pmt_capture_close(pmt_capture *c);

/* ---- the events in sequence order (capture_merge.c) ---------------------- */

typedef struct pmt_cap_source pmt_cap_source;

typedef struct {
    const pmt_capture *c;
    pmt_cap_source *heap;       /* the chunks being merged, by their next event */
    size_t n, cap;
    uint8_t **spare;            /* inflate buffers of finished chunks, for reuse */
    size_t n_spare, spare_cap;
    size_t next;                /* the next chunk of c->chunks to take up */
    uint64_t last;              /* the sequence number last handed out */
    int started;
} pmt_capture_iter;

/* From the first event.  Returns 0, or -1 out of memory. */
int pmt_capture_iter_open(pmt_capture_iter *it, const pmt_capture *c);
/* The next event: 1, 0 after the last, -1 out of memory. */
int pmt_capture_iter_next(pmt_capture_iter *it, pmt_mc_record *r);
void pmt_capture_iter_close(pmt_capture_iter *it);

/* Give back to the kernel the pages of data[p, p + n) of a mapped capture
 * (a no-op otherwise): a chunk read once is not kept in memory. */
void pmt_capture_drop_pages(const pmt_capture *c, const uint8_t *p, size_t n);

/* The code object with this id (NULL if never defined). */
static inline const pmt_cap_code *
pmt_capture_code(const pmt_capture *c, uint32_t id)
{
    return pmt_ht_find(&c->codes, &id);
}

/* The stack node with this id (NULL if never defined). */
static inline const pmt_cap_node *
pmt_capture_node(const pmt_capture *c, uint32_t id)
{
    return pmt_ht_find(&c->nodes, &id);
}

/* The code id of an event's innermost Python frame (0: no Python frame):
 * its code field, or in a stacks capture the code of the innermost Python
 * node on its stack (native frames inside it are passed over). */
static inline uint32_t
pmt_capture_event_code(const pmt_capture *c, const pmt_mc_record *r)
{
    if (!c->stacks || r->code == 0) {
        return r->code;
    }
    const pmt_cap_node *n = pmt_capture_node(c, r->code);
    while (n && n->kind == PMT_CAP_NODE_NATIVE) {
        n = n->parent ? pmt_capture_node(c, n->parent) : NULL;
        if (!n) {
            return 0;   /* a native stack without Python frames */
        }
    }
    if (!n) {
        return UINT32_MAX;  /* an undefined node */
    }
    return n->kind == PMT_CAP_NODE_PYTHON ? n->code : 0;
}

/* The thread that made an event: an index into the capture's threads (0:
 * not recorded: a capture without stacks, or an event with no stack).  The
 * writer roots each thread's stacks at a THREAD node; the reader gives every
 * node its thread's index as it reads it (a node's parent is always written
 * before it, by the same thread), so this is one lookup. */
static inline uint32_t
pmt_capture_event_thread(const pmt_capture *c, const pmt_mc_record *r)
{
    if (!c->stacks || r->code == 0) {
        return 0;
    }
    const pmt_cap_node *n = pmt_capture_node(c, r->code);
    return n ? n->thread : 0;
}

/* Thread index i's OS thread id (0: not recorded) and name ("" when none). */
static inline uint64_t
pmt_capture_thread_id(const pmt_capture *c, uint32_t i, const char **name)
{
    if (i == 0 || i > c->n_threads) {
        *name = "";
        return 0;
    }
    *name = pmt_strpool_at(&c->strs, c->threads[i - 1].name);
    return c->threads[i - 1].id;
}

/* The module whose range holds addr (NULL if none). */
const pmt_cap_module *pmt_capture_module_of(const pmt_capture *c, uint64_t addr);

/* A whole file's bytes, mapped (or read when it cannot be mapped). */
typedef struct {
    uint8_t *data;
    size_t len;
    int mapped;
} pmt_capture_file;

/* Load path: regular files only.  Returns 0, or -1 with err saying why. */
int pmt_capture_file_load(const char *path, pmt_capture_file *f, char *err, size_t errlen);
void pmt_capture_file_unload(pmt_capture_file *f);

/* capture_pack.c: a packed capture's index: for each chunk in file order,
 * its zlib stream's offset and length in data and its inflated length, to
 * each(c, off, src_len, len, ctx); a chunk whose stream is missing (the file
 * cut short) counts as trailing bytes.  Returns 0, or -1 with c->error
 * saying why (a corrupt index, or what each returned). */
int pmt_capture_packed_chunks(pmt_capture *c,
                              int (*each)(pmt_capture *, uint64_t, uint32_t, uint32_t, void *),
                              void *ctx);

/* A chunk's bytes: a pointer into the capture (raw), or inflated into buf
 * (chunk_size bytes; packed).  Returns how many bytes there are at *out
 * (fewer than len when a packed stream is cut short or corrupt). */
size_t pmt_capture_chunk_bytes(const pmt_capture *c, uint64_t off, uint32_t src_len,
                               uint32_t len, uint8_t *buf, const uint8_t **out);

/* Pack the capture at path in place (zlib level 1..9): 0, or -1 with err
 * saying why (the capture is then left as it was).  A packed capture is left
 * alone. */
int pmt_capture_pack(const char *path, int level, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
