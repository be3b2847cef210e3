/* symbolize.c: name the native frames of a capture (see symbolize.h). */
#include "symbolize.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "elfsym.h"

enum { UNCHECKED = 0, SAME = 1, CHANGED = 2 };

struct pmt_symbolizer {
    const pmt_capture *cap;
    pmt_elfsym_cache *elf;
    unsigned char *state;   /* per module: UNCHECKED, SAME or CHANGED */
    size_t changed;
    const char *first_changed;
};

pmt_symbolizer *
pmt_sym_new(const pmt_capture *c)
{
    pmt_symbolizer *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->cap = c;
    s->elf = pmt_elfsym_cache_new();
    s->state = calloc(c->n_mods ? c->n_mods : 1, 1);
    if (!s->elf || !s->state) {
        pmt_sym_free(s);
        return NULL;
    }
    return s;
}

void
pmt_sym_free(pmt_symbolizer *s)
{
    if (!s) {
        return;
    }
    pmt_elfsym_cache_free(s->elf);
    free(s->state);
    free(s);
}

/* Is the file at m's path the object that was traced? */
static int
same_file(pmt_symbolizer *s, const pmt_cap_module *m, const char *path)
{
    if (m->build_id_len) {
        uint8_t id[sizeof(m->build_id)];
        int n = pmt_elfsym_build_id(s->elf, path, id, sizeof(id));
        return n > 0 && (uint32_t)n >= m->build_id_len &&
               memcmp(id, m->build_id, m->build_id_len) == 0;
    }
    if (m->file_size == 0 && m->mtime_ns == 0) {
        return 1;   /* nothing recorded to check (an older capture) */
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        return 0;
    }
    uint64_t mt = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    return (uint64_t)st.st_size == m->file_size && mt == m->mtime_ns;
}

int
pmt_sym_native(pmt_symbolizer *s, uint64_t addr, pmt_sym_frame *out)
{
    memset(out, 0, sizeof(*out));
    out->module = "";
    out->offset = addr;
    const pmt_cap_module *m = pmt_capture_module_of(s->cap, addr);
    if (!m) {
        return -1;
    }
    const char *path = pmt_strpool_at(&s->cap->strs, m->path);
    size_t i = (size_t)(m - s->cap->mods);
    out->module = path;
    out->offset = addr - 1 - m->bias;
    if (s->state[i] == UNCHECKED) {
        s->state[i] = same_file(s, m, path) ? SAME : CHANGED;
        if (s->state[i] == CHANGED && path[0] != '\0' && strncmp(path, "linux-vdso", 10) != 0) {
            if (s->changed++ == 0) {
                s->first_changed = path;
            }
        }
    }
    if (s->state[i] == SAME) {
        pmt_elfsym_find(s->elf, path, out->offset, &out->symbol, &out->symbol_len, &out->delta);
    }
    return 0;
}

size_t
pmt_sym_changed(const pmt_symbolizer *s, const char **first)
{
    if (first) {
        *first = s->first_changed;
    }
    return s->changed;
}
