/* symbolize.h: name the native frames of a capture, from the files on disk.
 *
 * A native frame is a return address in the traced process.  The capture's
 * MODULE records say which object was loaded where (path, load bias, and for
 * native-stack captures the object's GNU build-id, file size and mtime); the
 * symbolizer finds the module, checks once per module that the file on disk
 * is still the one that was loaded (same build-id, or same size and mtime
 * when there is none) and looks the call site (address - 1) up in its
 * function symbols (elfsym.c).  A file that changed or vanished is not
 * trusted: its frames are named module+offset and it is counted.  No Python.h.
 */
#ifndef PMT_SYMBOLIZE_H
#define PMT_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "capture_read.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_symbolizer pmt_symbolizer;

/* A symbolizer over capture c (which must outlive it); NULL: out of memory. */
pmt_symbolizer *pmt_sym_new(const pmt_capture *c);
void pmt_sym_free(pmt_symbolizer *s);

typedef struct {
    const char *module;     /* the module's path ("" if no module holds the address) */
    const char *symbol;     /* the function (not NUL-terminated: symbol_len bytes; 0: none) */
    size_t symbol_len;
    uint64_t offset;        /* the call site (addr - 1) from the module's load bias,
                             * or the address itself when no module holds it */
    uint64_t delta;         /* the call site from the function's start */
} pmt_sym_frame;

/* Name the return address addr.  Returns 0, or -1 if no module holds it
 * (module "" and offset = addr).  Strings live as long as s. */
int pmt_sym_native(pmt_symbolizer *s, uint64_t addr, pmt_sym_frame *out);

/* Modules whose file is not the one traced (changed, rebuilt or gone), and
 * the path of the first (NULL if none).  Counted as frames are named. */
size_t pmt_sym_changed(const pmt_symbolizer *s, const char **first);

#ifdef __cplusplus
}
#endif
#endif
