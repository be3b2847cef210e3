/* elfsym.h: find the function symbol containing an address in an ELF file.
 *
 * Used at report time to name the native callers a capture recorded (as an
 * offset from a module's load bias).  Files are mapped read-only once and
 * kept in a small cache; .symtab is used when present, else .dynsym.  Only
 * 64-bit ELF of the host's byte order.  No Python.h.
 */
#ifndef PMT_ELFSYM_H
#define PMT_ELFSYM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pmt_elfsym_cache pmt_elfsym_cache;

pmt_elfsym_cache *pmt_elfsym_cache_new(void);
void pmt_elfsym_cache_free(pmt_elfsym_cache *c);

/* Name of the function in `path` whose [value, value+size) holds `offset`
 * (an address relative to the load bias).  Returns 0 and writes the name
 * (truncated to cap-1) with "+0x<delta>" appended, or -1 if none. */
int pmt_elfsym_lookup(pmt_elfsym_cache *c, const char *path, uint64_t offset, char *out,
                      size_t cap);

#ifdef __cplusplus
}
#endif
#endif
