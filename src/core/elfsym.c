/* elfsym.c: function symbol lookup in ELF files (see elfsym.h). */
#include "elfsym.h"

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_FILES 256
#define BUILD_ID_MAX 64

typedef struct {
    uint64_t value, size;
    uint32_t name;          /* offset in the string table */
    uint32_t global;
} func_sym;

typedef struct {
    const uint8_t *map;
    size_t len;
} mapping;

typedef struct {
    char *path;
    mapping file, debug;    /* debug: the separate debug file, if one was used */
    int ok;                 /* mapped and ELF */
    func_sym *funcs;        /* sorted by value */
    size_t nfuncs;
    const char *strtab;
    size_t strtab_len;
    uint8_t build_id[BUILD_ID_MAX];
    size_t build_id_len;
} elf_file;

struct pmt_elfsym_cache {
    elf_file files[CACHE_FILES];
    size_t n;
};

pmt_elfsym_cache *
pmt_elfsym_cache_new(void)
{
    return calloc(1, sizeof(pmt_elfsym_cache));
}

static void
unmap(mapping *m)
{
    if (m->map) {
        munmap((void *)m->map, m->len);
    }
    m->map = NULL;
}

void
pmt_elfsym_cache_free(pmt_elfsym_cache *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        unmap(&c->files[i].file);
        unmap(&c->files[i].debug);
        free(c->files[i].funcs);
        free(c->files[i].path);
    }
    free(c);
}

/* Map a regular file that starts like 64-bit ELF; 0 or -1. */
static int
map_elf(const char *path, mapping *m)
{
    m->map = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return -1;
    }
    const Elf64_Ehdr *eh = p;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
        munmap(p, (size_t)st.st_size);
        return -1;
    }
    m->map = p;
    m->len = (size_t)st.st_size;
    return 0;
}

static const Elf64_Shdr *
sections(const mapping *m, size_t *n)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)(const void *)m->map;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff % 8 != 0 ||
        eh->e_shoff > m->len || (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > m->len - eh->e_shoff) {
        *n = 0;
        return NULL;
    }
    *n = eh->e_shnum;
    return (const Elf64_Shdr *)(const void *)(m->map + eh->e_shoff);
}

/* The GNU build-id from the file's SHT_NOTE sections. */
static size_t
read_build_id(const mapping *m, uint8_t *out, size_t cap)
{
    size_t nsh;
    const Elf64_Shdr *sh = sections(m, &nsh);
    for (size_t i = 0; i < nsh; i++) {
        if (sh[i].sh_type != SHT_NOTE || sh[i].sh_offset > m->len ||
            sh[i].sh_size > m->len - sh[i].sh_offset) {
            continue;
        }
        size_t align = sh[i].sh_addralign == 8 ? 8 : 4;
        const uint8_t *p = m->map + sh[i].sh_offset;
        size_t left = sh[i].sh_size;
        while (left >= sizeof(Elf64_Nhdr)) {
            Elf64_Nhdr nh;
            memcpy(&nh, p, sizeof(nh));
            size_t name = ((size_t)nh.n_namesz + align - 1) & ~(align - 1);
            size_t desc = ((size_t)nh.n_descsz + align - 1) & ~(align - 1);
            if (name > left || desc > left || sizeof(nh) + name + desc > left) {
                break;
            }
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp(p + sizeof(nh), "GNU", 4) == 0) {
                size_t n = nh.n_descsz < cap ? nh.n_descsz : cap;
                memcpy(out, p + sizeof(nh) + name, n);
                return n;
            }
            p += sizeof(nh) + name + desc;
            left -= sizeof(nh) + name + desc;
        }
    }
    return 0;
}

static int
cmp_func(const void *a, const void *b)
{
    const func_sym *x = a, *y = b;
    if (x->value != y->value) {
        return x->value < y->value ? -1 : 1;
    }
    return (int)x->global - (int)y->global;     /* a global name last: it wins */
}

/* Collect the function symbols of the table of `type` in m; 0 or -1. */
static int
load_table(elf_file *f, const mapping *m, uint32_t type)
{
    size_t nsh;
    const Elf64_Shdr *sh = sections(m, &nsh);
    for (size_t i = 0; i < nsh; i++) {
        if (sh[i].sh_type != type || sh[i].sh_entsize != sizeof(Elf64_Sym) ||
            sh[i].sh_link >= nsh) {
            continue;
        }
        const Elf64_Shdr *st = &sh[sh[i].sh_link];
        if (sh[i].sh_offset > m->len || sh[i].sh_size > m->len - sh[i].sh_offset ||
            st->sh_offset > m->len || st->sh_size > m->len - st->sh_offset ||
            sh[i].sh_offset % 8 != 0 || st->sh_type == SHT_NOBITS) {
            continue;
        }
        const Elf64_Sym *syms = (const Elf64_Sym *)(const void *)(m->map + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof(Elf64_Sym), k = 0;
        func_sym *v = malloc((n ? n : 1) * sizeof(func_sym));
        if (!v) {
            return -1;
        }
        for (size_t j = 0; j < n; j++) {
            const Elf64_Sym *s = &syms[j];
            if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_value == 0 ||
                s->st_shndx == SHN_UNDEF || s->st_name >= st->sh_size) {
                continue;
            }
            v[k++] = (func_sym){s->st_value, s->st_size, s->st_name,
                                ELF64_ST_BIND(s->st_info) == STB_GLOBAL};
        }
        if (k == 0) {
            free(v);
            continue;
        }
        qsort(v, k, sizeof(func_sym), cmp_func);
        f->funcs = v;
        f->nfuncs = k;
        f->strtab = (const char *)m->map + st->sh_offset;
        f->strtab_len = st->sh_size;
        return 0;
    }
    return -1;
}

/* A stripped file's symbols may be in the debug file its build-id names. */
static void
load_debug(elf_file *f)
{
    if (f->build_id_len < 2) {
        return;
    }
    char path[64 + 2 * BUILD_ID_MAX];
    int n = snprintf(path, sizeof(path), "/usr/lib/debug/.build-id/%02x/", f->build_id[0]);
    for (size_t i = 1; i < f->build_id_len; i++) {
        n += snprintf(path + n, sizeof(path) - (size_t)n, "%02x", f->build_id[i]);
    }
    snprintf(path + n, sizeof(path) - (size_t)n, ".debug");
    if (map_elf(path, &f->debug) == 0 && load_table(f, &f->debug, SHT_SYMTAB) < 0) {
        unmap(&f->debug);
    }
}

static void
load(elf_file *f)
{
    if (map_elf(f->path, &f->file) < 0) {
        return;
    }
    f->ok = 1;
    f->build_id_len = read_build_id(&f->file, f->build_id, BUILD_ID_MAX);
    if (load_table(f, &f->file, SHT_SYMTAB) == 0) {
        return;
    }
    load_debug(f);
    if (!f->funcs) {
        load_table(f, &f->file, SHT_DYNSYM);
    }
}

static elf_file *
file_of(pmt_elfsym_cache *c, const char *path)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->files[i].path, path) == 0) {
            return &c->files[i];
        }
    }
    if (c->n == CACHE_FILES) {
        return NULL;
    }
    elf_file *f = &c->files[c->n];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path) {
        return NULL;
    }
    c->n++;
    load(f);
    return f;
}

int
pmt_elfsym_find(pmt_elfsym_cache *c, const char *path, uint64_t offset, const char **name,
                size_t *namelen, uint64_t *delta)
{
    elf_file *f = file_of(c, path);
    if (!f || f->nfuncs == 0) {
        return -1;
    }
    /* the last symbol starting at or below offset */
    size_t lo = 0, hi = f->nfuncs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->funcs[mid].value <= offset) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    /* a symbol may sit inside a bigger one: look back a little for a holder */
    for (size_t i = lo, tries = 0; i > 0 && tries < 8; i--, tries++) {
        const func_sym *s = &f->funcs[i - 1];
        if (offset < s->value + (s->size ? s->size : 1)) {
            const char *nm = f->strtab + s->name;
            *name = nm;
            *namelen = strnlen(nm, f->strtab_len - s->name);
            *delta = offset - s->value;
            return 0;
        }
    }
    return -1;
}

int
pmt_elfsym_lookup(pmt_elfsym_cache *c, const char *path, uint64_t offset, char *out, size_t cap)
{
    const char *name;
    size_t n;
    uint64_t delta;
    if (cap == 0 || pmt_elfsym_find(c, path, offset, &name, &n, &delta) < 0) {
        return -1;
    }
    snprintf(out, cap, "%.*s+0x%llx", (int)n, name, (unsigned long long)(delta + 1));
    return 0;
}

int
pmt_elfsym_build_id(pmt_elfsym_cache *c, const char *path, uint8_t *out, size_t cap)
{
    elf_file *f = file_of(c, path);
    if (!f || !f->ok) {
        return -1;
    }
    size_t n = f->build_id_len < cap ? f->build_id_len : cap;
    memcpy(out, f->build_id, n);
    return (int)n;
}
