/* gotpatch.c: rewrite and restore the GOT entries of loaded ELF objects (see gotpatch.h). */
#define _GNU_SOURCE
#include "gotpatch.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define PMT_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define PMT_R_GLOB_DAT R_X86_64_GLOB_DAT
#define PMT_GOT_SUPPORTED 1
#elif defined(__aarch64__)
#define PMT_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define PMT_R_GLOB_DAT R_AARCH64_GLOB_DAT
#define PMT_GOT_SUPPORTED 1
#else
#define PMT_GOT_SUPPORTED 0
#endif

#if defined(__LP64__)
#define PMT_R_SYM(i) ELF64_R_SYM(i)
#define PMT_R_TYPE(i) ELF64_R_TYPE(i)
#else
#define PMT_R_SYM(i) ELF32_R_SYM(i)
#define PMT_R_TYPE(i) ELF32_R_TYPE(i)
#endif

int pmt_got_init(pmt_got_patch *p, const pmt_got_hook *hooks, size_t nhooks, const void *own_code)
{
    memset(p, 0, sizeof *p);
    if (hooks == NULL || nhooks == 0) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < nhooks; i++) {
        if (hooks[i].name == NULL || hooks[i].replacement == NULL) {
            errno = EINVAL;
            return -1;
        }
    }
    if (own_code != NULL) {
        Dl_info info;
        if (dladdr(own_code, &info) == 0 || info.dli_fbase == NULL) {
            errno = EINVAL;
            return -1;
        }
        p->own_base = (uintptr_t)info.dli_fbase;
        p->skip_own = 1;
    }
    p->hooks = hooks;
    p->nhooks = nhooks;
    return 0;
}

void pmt_got_free(pmt_got_patch *p)
{
    if (p->slots != NULL) {
        (void)munmap(p->slots, p->cap * sizeof *p->slots);
    }
    p->slots = NULL;
    p->nslots = p->cap = 0;
}

/* Room for one more slot: the table lives in its own mapping (no malloc: the
 * caller may be replacing malloc). */
static int reserve_slot(pmt_got_patch *p)
{
    if (p->nslots < p->cap) {
        return 0;
    }
    size_t cap = p->cap ? p->cap * 2 : 1024;
    void *m = mmap(NULL, cap * sizeof *p->slots, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return -1;
    }
    if (p->slots != NULL) {
        memcpy(m, p->slots, p->nslots * sizeof *p->slots);
        (void)munmap(p->slots, p->cap * sizeof *p->slots);
    }
    p->slots = m;
    p->cap = cap;
    return 0;
}

static int skip_object(const struct dl_phdr_info *info, const pmt_got_patch *p)
{
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (p->skip_own && (uintptr_t)info->dlpi_addr == p->own_base) {
        return 1;
    }
    if (strncmp(name, "linux-vdso", 10) == 0 || strncmp(name, "linux-gate", 10) == 0) {
        return 1;
    }
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    return strncmp(base, "ld-linux", 8) == 0 || strncmp(base, "ld64.so", 7) == 0;
}

/* The object's dynamic table entries: glibc has relocated d_ptr values to
 * addresses on these architectures; an unrelocated one (smaller than the
 * load address) is taken as an offset. */
static uintptr_t dyn_addr(const struct dl_phdr_info *info, ElfW(Addr) v)
{
    return v < info->dlpi_addr ? (uintptr_t)info->dlpi_addr + v : (uintptr_t)v;
}

typedef struct {
    pmt_got_patch *p;
    long patched;
    int failed;
} apply_ctx;

typedef struct {
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    uintptr_t relro_lo, relro_hi;
    long pagesize;
} obj_view;

static const pmt_got_hook *hook_for(const pmt_got_patch *p, const char *name)
{
    for (size_t i = 0; i < p->nhooks; i++) {
        if (strcmp(p->hooks[i].name, name) == 0) {
            return &p->hooks[i];
        }
    }
    return NULL;
}

static void record(pmt_got_patch *p, void **addr, void *old, uintptr_t base, unsigned relro)
{
    for (size_t i = 0; i < p->nslots; i++) {       /* an address seen before (an object */
        if (p->slots[i].addr == addr) {             /* unloaded, another loaded there) */
            p->slots[i] = (pmt_got_slot){addr, old, base, relro};
            return;
        }
    }
    p->slots[p->nslots++] = (pmt_got_slot){addr, old, base, relro};
}

/* Point one entry at `to`, opening a read-only-after-relocation page for the
 * write and closing it again.  Returns 0 or -1 with errno. */
static int write_slot(void **addr, void *to, int relro, long pagesize)
{
    void *page = (void *)((uintptr_t)addr & ~((uintptr_t)pagesize - 1));
    if (relro && mprotect(page, (size_t)pagesize, PROT_READ | PROT_WRITE) != 0) {
        return -1;
    }
    __atomic_store_n(addr, to, __ATOMIC_SEQ_CST);
    if (relro && mprotect(page, (size_t)pagesize, PROT_READ) != 0) {
        return -1;
    }
    return 0;
}

static void patch_relocs(apply_ctx *c, const struct dl_phdr_info *info, const obj_view *v,
                         uintptr_t rel, size_t relsz, int rela)
{
    size_t ent = rela ? sizeof(ElfW(Rela)) : sizeof(ElfW(Rel));
    if (rel == 0 || relsz < ent) {
        return;
    }
    for (size_t off = 0; off + ent <= relsz && !c->failed; off += ent) {
        /* Rel and Rela begin alike: r_offset, r_info */
        const ElfW(Rel) *r = (const ElfW(Rel) *)(rel + off);
        unsigned long type = (unsigned long)PMT_R_TYPE(r->r_info);
        if (type != PMT_R_JUMP_SLOT && type != PMT_R_GLOB_DAT) {
            continue;
        }
        size_t symi = (size_t)PMT_R_SYM(r->r_info);
        if (symi == 0) {
            continue;
        }
        ElfW(Word) name_off = v->symtab[symi].st_name;
        if (name_off >= v->strsz) {
            continue;
        }
        const pmt_got_hook *h = hook_for(c->p, v->strtab + name_off);
        if (h == NULL) {
            continue;
        }
        void **slot = (void **)((uintptr_t)info->dlpi_addr + r->r_offset);
        void *old = __atomic_load_n(slot, __ATOMIC_SEQ_CST);
        if (old == h->replacement) {
            continue;
        }
        unsigned relro = (uintptr_t)slot >= v->relro_lo && (uintptr_t)slot < v->relro_hi;
        if (reserve_slot(c->p) != 0 || write_slot(slot, h->replacement, (int)relro, v->pagesize) != 0) {
            c->p->error = errno;
            c->failed = 1;
            return;
        }
        record(c->p, slot, old, (uintptr_t)info->dlpi_addr, relro);
        c->patched++;
    }
}

static int apply_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    apply_ctx *c = data;
    if (c->failed || skip_object(info, c->p)) {
        return 0;
    }
    const ElfW(Dyn) *dyn = NULL;
    obj_view v = {0};
    v.pagesize = sysconf(_SC_PAGESIZE);
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)((uintptr_t)info->dlpi_addr + ph->p_vaddr);
        } else if (ph->p_type == PT_GNU_RELRO) {
            v.relro_lo = ((uintptr_t)info->dlpi_addr + ph->p_vaddr) & ~((uintptr_t)v.pagesize - 1);
            v.relro_hi = (uintptr_t)info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        }
    }
    if (dyn == NULL || v.pagesize <= 0) {
        return 0;
    }
    uintptr_t jmprel = 0, rela = 0, rel = 0;
    size_t pltrelsz = 0, relasz = 0, relsz = 0;
    long pltrel = DT_RELA;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: v.symtab = (const ElfW(Sym) *)dyn_addr(info, d->d_un.d_ptr); break;
        case DT_STRTAB: v.strtab = (const char *)dyn_addr(info, d->d_un.d_ptr); break;
        case DT_STRSZ: v.strsz = (size_t)d->d_un.d_val; break;
        case DT_JMPREL: jmprel = dyn_addr(info, d->d_un.d_ptr); break;
        case DT_PLTRELSZ: pltrelsz = (size_t)d->d_un.d_val; break;
        case DT_PLTREL: pltrel = (long)d->d_un.d_val; break;
        case DT_RELA: rela = dyn_addr(info, d->d_un.d_ptr); break;
        case DT_RELASZ: relasz = (size_t)d->d_un.d_val; break;
        case DT_REL: rel = dyn_addr(info, d->d_un.d_ptr); break;
        case DT_RELSZ: relsz = (size_t)d->d_un.d_val; break;
        default: break;
        }
    }
    if (v.symtab == NULL || v.strtab == NULL || v.strsz == 0) {
        return 0;
    }
    patch_relocs(c, info, &v, jmprel, pltrelsz, pltrel == DT_RELA);
    patch_relocs(c, info, &v, rela, relasz, 1);
    patch_relocs(c, info, &v, rel, relsz, 0);
    return 0;
}

long pmt_got_apply(pmt_got_patch *p)
{
#if !PMT_GOT_SUPPORTED
    p->error = ENOSYS;
    errno = ENOSYS;
    return -1;
#else
    if (p->hooks == NULL) {
        errno = EINVAL;
        return -1;
    }
    apply_ctx c = {p, 0, 0};
    (void)dl_iterate_phdr(apply_one, &c);
    if (c.failed) {
        errno = p->error;
        return -1;
    }
    return c.patched;
#endif
}

typedef struct {
    uintptr_t *bases;
    size_t n, cap;
} loaded_set;

static int collect_base(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    loaded_set *s = data;
    if (s->n < s->cap) {
        s->bases[s->n++] = (uintptr_t)info->dlpi_addr;
    }
    return 0;
}

static int is_loaded(const loaded_set *s, uintptr_t base)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->bases[i] == base) {
            return 1;
        }
    }
    return 0;
}

long pmt_got_restore(pmt_got_patch *p, long *left)
{
    long restored = 0, kept = 0;
    if (left != NULL) {
        *left = 0;
    }
    if (p->nslots == 0) {
        return 0;
    }
    long pagesize = sysconf(_SC_PAGESIZE);
    loaded_set s = {NULL, 0, 4096};
    s.bases = mmap(NULL, s.cap * sizeof *s.bases, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s.bases == MAP_FAILED || pagesize <= 0) {
        return -1;
    }
    (void)dl_iterate_phdr(collect_base, &s);
    for (size_t i = p->nslots; i-- > 0;) {
        pmt_got_slot *sl = &p->slots[i];
        if (!is_loaded(&s, sl->obj_base)) {
            continue;                           /* unloaded since: nothing to put back */
        }
        const pmt_got_hook *h = NULL;
        void *now = __atomic_load_n(sl->addr, __ATOMIC_SEQ_CST);
        for (size_t k = 0; k < p->nhooks && h == NULL; k++) {
            if (p->hooks[k].replacement == now) {
                h = &p->hooks[k];
            }
        }
        if (h == NULL) {
            kept++;                             /* someone else rewrote it: leave it */
            continue;
        }
        if (write_slot(sl->addr, sl->old, (int)sl->relro, pagesize) != 0) {
            p->error = errno;
            kept++;
            continue;
        }
        restored++;
    }
    (void)munmap(s.bases, s.cap * sizeof *s.bases);
    p->nslots = 0;
    if (left != NULL) {
        *left = kept;
    }
    return restored;
}
