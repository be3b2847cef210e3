/* mallocstats_ext.h: what the files of the _mallocstats extension share.
 *
 * writer.c runs the interpreter's own statistics writer into memory;
 * snapshot.c is the Snapshot type (a parsed snapshot, parsed by
 * src/core/mallocstats_parse); diff.c is the Diff context manager with its
 * allocation-free __enter__/__exit__; module.c holds the module functions
 * and the init.  Not installed; CPython-version differences are compat.h's.
 */
#ifndef PMT_MALLOCSTATS_EXT_H
#define PMT_MALLOCSTATS_EXT_H

#include <stdio.h>

#include "compat.h"
#include "mallocstats_parse.h"

/* ---- writer.c ---- */

/* Run the interpreter's writer into *buf (capacity *cap, grown with the raw
 * allocator if the text does not fit).  On success sets *len and *pymalloc
 * (what _PyObject_DebugMallocStats returned) and returns 0; on failure sets
 * errno and returns -1.  Needs the GIL.  Creates no Python object. */
int msx_run_writer(char **buf, size_t *cap, size_t *len, int *pymalloc);

/* The writer alone into f (for bench/ext/_mallocstats_bench.c); returns what
 * _PyObject_DebugMallocStats returned. */
int msx_write_stats(FILE *f);

/* At import: remember pymalloc's allocator (see writer.c).  0 or -1. */
int msx_record_pymalloc_allocator(void);

/* ---- snapshot.c ---- */

typedef struct {
    PyObject_HEAD
    pmt_mallocstats_t *stats;
    char *text;
    size_t len;
    size_t cap;
    int taken;          /* stats hold a parsed text */
    int writer_true;    /* _PyObject_DebugMallocStats returned true */
} SnapshotObject;

extern PyTypeObject msx_Snapshot_Type;
#define Snapshot_Check(op) PyObject_TypeCheck(op, &msx_Snapshot_Type)

/* Take a snapshot into self: no Python object is created.  0 or -1. */
int msx_snapshot_take(SnapshotObject *self);
/* -1 with RuntimeError if self holds no statistics yet. */
int msx_snapshot_require(SnapshotObject *self);
/* The diff text of two snapshots as a str. */
PyObject *msx_format_diff_text(SnapshotObject *before, SnapshotObject *after);

/* ---- diff.c ---- */

extern PyTypeObject msx_Diff_Type;

/* PyType_Ready the Diff type and its helpers, with __enter__/__exit__. */
int msx_diff_types_ready(void);

#endif
