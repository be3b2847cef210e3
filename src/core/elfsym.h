/* elfsym.h: find the function symbol containing an address in an ELF file.
 *
 * Used at report time to name the native frames a capture recorded (as an
 * offset from a module's load bias).  Files are mapped read-only once and
 * kept in a small cache; a file's function symbols (.symtab when present,
 * else .dynsym; the separate debug file /usr/lib/debug/.build-id/xx/yyyy.debug
 * when the file is stripped and one is installed) are sorted once, so a
 * lookup is a binary search.  Only 64-bit ELF of the host's byte order.
 * No Python.h.
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

/* The function in `path` whose [value, value+size) holds `offset` (an
 * address relative to the load bias).  Returns 0 with *name (not
 * NUL-terminated: *namelen bytes, valid until the cache is freed) and
 * *delta = offset - value, or -1 if none. */
int pmt_elfsym_find(pmt_elfsym_cache *c, const char *path, uint64_t offset, const char **name,
                    size_t *namelen, uint64_t *delta);

/* The same, written as "name+0x<delta + 1>" (truncated to cap-1): offset is
 * a return address minus one, the delta printed is the return address's. */
int pmt_elfsym_lookup(pmt_elfsym_cache *c, const char *path, uint64_t offset, char *out,
                      size_t cap);

/* The GNU build-id of `path` (at most cap bytes): its length, 0 if the file
 * has none, -1 if it cannot be read as ELF. */
int pmt_elfsym_build_id(pmt_elfsym_cache *c, const char *path, uint8_t *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
