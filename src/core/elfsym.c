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

#define CACHE_FILES 64

typedef struct {
    char *path;
    const uint8_t *map;     /* NULL: could not be read */
    size_t len;
    const Elf64_Sym *syms;
    size_t nsyms;
    const char *strtab;
    size_t strtab_len;
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

void
pmt_elfsym_cache_free(pmt_elfsym_cache *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->files[i].map) {
            munmap((void *)c->files[i].map, c->files[i].len);
        }
        free(c->files[i].path);
    }
    free(c);
}

/* Whether [off, off+len) lies inside the mapped file (no wrap-around). */
static int
in_file(const elf_file *f, uint64_t off, uint64_t len)
{
    return off <= f->len && len <= f->len - off;
}

/* Find a symbol table of the given type; returns 0 on success.  Every
 * offset and size comes from the file: each is checked against its length
 * and its alignment before anything is read through it. */
static int
find_table(elf_file *f, const Elf64_Ehdr *eh, uint32_t type)
{
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
        eh->e_shoff % _Alignof(Elf64_Shdr) != 0 ||
        !in_file(f, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr))) {
        return -1;
    }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(const void *)(f->map + eh->e_shoff);
    for (size_t i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != type || sh[i].sh_entsize != sizeof(Elf64_Sym) ||
            sh[i].sh_link >= eh->e_shnum) {
            continue;
        }
        const Elf64_Shdr *st = &sh[sh[i].sh_link];
        if (!in_file(f, sh[i].sh_offset, sh[i].sh_size) ||
            !in_file(f, st->sh_offset, st->sh_size) ||
            sh[i].sh_offset % _Alignof(Elf64_Sym) != 0) {
            continue;
        }
        f->syms = (const Elf64_Sym *)(const void *)(f->map + sh[i].sh_offset);
        f->nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
        f->strtab = (const char *)f->map + st->sh_offset;
        f->strtab_len = st->sh_size;
        return 0;
    }
    return -1;
}

static void
load(elf_file *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        return;
    }
    f->map = m;
    f->len = (size_t)st.st_size;
    const Elf64_Ehdr *eh = m;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        (find_table(f, eh, SHT_SYMTAB) < 0 && find_table(f, eh, SHT_DYNSYM) < 0)) {
        f->syms = NULL;
        f->nsyms = 0;
    }
}

int
pmt_elfsym_lookup(pmt_elfsym_cache *c, const char *path, uint64_t offset, char *out, size_t cap)
{
    elf_file *f = NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->files[i].path, path) == 0) {
            f = &c->files[i];
            break;
        }
    }
    if (!f) {
        if (c->n == CACHE_FILES) {
            return -1;
        }
        f = &c->files[c->n];
        memset(f, 0, sizeof(*f));
        f->path = strdup(path);
        if (!f->path) {
            return -1;
        }
        c->n++;
        load(f);
    }
    const Elf64_Sym *best = NULL;
    for (size_t i = 0; i < f->nsyms; i++) {
        const Elf64_Sym *s = &f->syms[i];
        if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_value == 0) {
            continue;
        }
        if (offset >= s->st_value && offset < s->st_value + (s->st_size ? s->st_size : 1)) {
            best = s;
            if (ELF64_ST_BIND(s->st_info) == STB_GLOBAL) {
                break;
            }
        }
    }
    if (!best || best->st_name >= f->strtab_len || cap == 0) {
        return -1;
    }
    const char *name = f->strtab + best->st_name;
    size_t maxlen = f->strtab_len - best->st_name;
    snprintf(out, cap, "%.*s+0x%llx", (int)strnlen(name, maxlen), name,
             (unsigned long long)(offset + 1 - best->st_value));
    return 0;
}
