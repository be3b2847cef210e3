/* capture_read.h: decode a `pymemtrace malloc` capture's records.
 *
 * Checks the header (format version 3 only: another version is refused
 * with a line naming both), then decodes every chunk (capture_format.h):
 * the definitions (code objects, stack nodes, modules) are kept and the
 * events decoded into one array, put in sequence order (already in order
 * for one thread; otherwise a counting placement when the numbers are
 * dense, as the writer makes them, or a sort).  A chunk cut short or corrupt
 * from some record on is read up to the last record that makes sense
 * (trailing_bytes counts what was not); the other chunks are unaffected.
 * capture_aggregate.c replays the ordered events.  No Python.h.
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

typedef struct {
    const uint8_t *data;
    size_t len;
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
    pmt_mc_record *ev;          /* the events, decoded, in sequence order */
    size_t n_ev, ev_cap;
    uint64_t seq_gaps;          /* numbers in [first, last] never seen (lost records) */
    uint64_t python_hex;        /* from the header */
    uint32_t python_status;
    int complete;               /* the header says the process ended (exit or exec) */
    int ended_by_exec;
    uint64_t dropped;           /* events the writer reported dropping */
    uint64_t stop_events;       /* writing stopped after this many events ... */
    uint32_t stop_errno;        /* ... for this reason (0: it never stopped; ENOSPC: disk full) */
    uint64_t trailing_bytes;    /* bytes of records that could not be read (cut short, corrupt) */
    uint8_t *inflated;          /* a packed capture's chunks, inflated (owned) */
    char error[256];
    int aggregate;              /* no events: checkpoints (capture_checkpoint.h) */
    const uint8_t *area;        /* the bytes from data_offset on (inflated if packed) */
    size_t area_len;
} pmt_capture;

/* Read the capture in data[0..len) (which must outlive c).  Returns 0, or -1
 * with c->error saying what was wrong; either way pmt_capture_close(c). */
int pmt_capture_open(pmt_capture *c, const uint8_t *data, size_t len);
void pmt_capture_close(pmt_capture *c);

/* The i-th event in sequence order. */
static inline pmt_mc_record
pmt_capture_event(const pmt_capture *c, size_t i)
{
    return c->ev[i];
}

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

/* capture_pack.c: a packed capture's chunks, inflated into c->inflated. */
int pmt_capture_inflate(pmt_capture *c, const uint8_t **area, size_t *n);

/* Pack the capture at path in place (zlib level 1..9): 0, or -1 with err
 * saying why (the capture is then left as it was).  A packed capture is left
 * alone. */
int pmt_capture_pack(const char *path, int level, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
