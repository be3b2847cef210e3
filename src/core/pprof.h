/* pprof.h: a capture aggregated by stack (capture_stacks.h) as a pprof
 * profile: the profile.proto message that `go tool pprof`, Pyroscope, Parca
 * and Grafana read, before compression (the caller gzips it).
 *
 * Four sample types, as Go's heap profiles: alloc_objects and alloc_space
 * (everything allocated in the range), inuse_objects and inuse_space (live
 * at the high-water mark, or at the end of the range).  One sample per
 * stack, one location per frame (a function at a line), one function per
 * (file, name).  No Python.h.
 */
#ifndef PMT_PPROF_H
#define PMT_PPROF_H

#include <stddef.h>
#include <stdint.h>

#include "capture_stacks.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PMT_PPROF_INUSE_PEAK = 0,   /* in use = live at the high-water mark */
    PMT_PPROF_INUSE_END = 1,    /* in use = live at the end of the range */
};

/* Encode r into *out (malloc'd, the caller frees it) of *len bytes; time_ns
 * is the profile's time (the capture's start).  0, or -1 out of memory. */
int pmt_pprof_encode(const pmt_st_report *r, int inuse, uint64_t time_ns, uint8_t **out,
                     size_t *len);

#ifdef __cplusplus
}
#endif
#endif
