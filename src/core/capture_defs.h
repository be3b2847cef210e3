/* capture_defs.h: what capture_read.c's scan hands to capture_defs.c: each
 * definition record a chunk holds (capture_cursor.h), kept in the capture's
 * tables (codes and nodes by id, threads, modules, times).  Internal to the
 * capture reader.  No Python.h. */
#ifndef PMT_CAPTURE_DEFS_H
#define PMT_CAPTURE_DEFS_H

#include "capture_cursor.h"
#include "capture_read.h"

/* The tables of code objects and stack nodes, empty (at open). */
void pmt_capture_defs_init(pmt_capture *c);

/* A definition: kept.  0, or -1 out of memory. */
int pmt_capture_keep_def(pmt_capture *c, const pmt_cap_def *d);

#endif
