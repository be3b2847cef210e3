/* test_elfsym.c: symbol lookup in an ELF file (this test's own executable),
 * and files whose tables point outside themselves. */
#define _GNU_SOURCE 1 /* memmem */
#include <elf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctest.h"
#include "elfsym.h"

int
elfsym_target(int x)
{
    return x * 3 + 1;
}

static void
test_elfsym(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    CHECK(n > 0);
    if (n <= 0) {
        return;
    }
    exe[n] = '\0';
    pmt_elfsym_cache *c = pmt_elfsym_cache_new();
    char name[128];
    /* this test is built as a PIE or not; either way the symbol's value is
     * the offset from the load bias, which is what a capture records */
    extern char __executable_start;
    uint64_t off = (uint64_t)(uintptr_t)&elfsym_target - (uint64_t)(uintptr_t)&__executable_start;
    CHECK_EQ_INT(pmt_elfsym_lookup(c, exe, off + 2, name, sizeof(name)), 0);
    CHECK(strncmp(name, "elfsym_target+0x", 16) == 0);
    CHECK_EQ_INT(pmt_elfsym_lookup(c, "/nonexistent", 10, name, sizeof(name)), -1);
    /* the name and the distance into it, separately */
    const char *nm;
    size_t nl;
    uint64_t delta = 99;
    CHECK_EQ_INT(pmt_elfsym_find(c, exe, off + 2, &nm, &nl, &delta), 0);
    CHECK(nl == strlen("elfsym_target") && memcmp(nm, "elfsym_target", nl) == 0);
    CHECK(delta == 2);
    /* before the first function there is none */
    CHECK_EQ_INT(pmt_elfsym_find(c, exe, 0, &nm, &nl, &delta), -1);
    /* the build-id read from the file is the one loaded in memory (its note
     * is in the image's first pages) */
    uint8_t id[64];
    int idn = pmt_elfsym_build_id(c, exe, id, sizeof(id));
    CHECK(idn >= 8);
    if (idn >= 8) {
        const char *image = &__executable_start;
        __asm__("" : "+r"(image));  /* an image, not the one char the symbol declares */
        CHECK(memmem(image, 16384, id, (size_t)idn) != NULL);
    }
    CHECK_EQ_INT(pmt_elfsym_build_id(c, "/nonexistent", id, sizeof(id)), -1);
    CHECK_EQ_INT(pmt_elfsym_build_id(c, "/dev/null", id, sizeof(id)), -1);
    pmt_elfsym_cache_free(c);
}

/* A 512-byte file: an ELF header with the given section header
 * table, then one section header (a symbol table) and zeros. */
static int
write_elf(const char *path, uint64_t shoff, uint16_t shnum, uint64_t symoff, uint64_t symsize)
{
    unsigned char buf[512];
    memset(buf, 0, sizeof(buf));
    Elf64_Ehdr *eh = (Elf64_Ehdr *)(void *)buf;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_shoff = shoff;
    eh->e_shentsize = sizeof(Elf64_Shdr);
    eh->e_shnum = shnum;
    Elf64_Shdr *sh = (Elf64_Shdr *)(void *)(buf + 128);
    sh->sh_type = SHT_SYMTAB;
    sh->sh_entsize = sizeof(Elf64_Sym);
    sh->sh_offset = symoff;
    sh->sh_size = symsize;
    sh->sh_link = 0;
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    size_t n = fwrite(buf, 1, sizeof(buf), f);
    return (fclose(f) == 0 && n == sizeof(buf)) ? 0 : -1;
}

/* Offsets that wrap around 2^64 or are misaligned are refused, never
 * followed (before: e_shoff = 2^64 - 64 passed the bounds check and the
 * reader looked 64 bytes before the mapping; found by make fuzz). */
static void
test_elfsym_hostile_tables(void)
{
    char path[] = "/tmp/pmt-test-elfsym-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        return;
    }
    close(fd);
    struct {
        uint64_t shoff;
        uint16_t shnum;
        uint64_t symoff, symsize;
    } cases[] = {
        {UINT64_MAX - 63, 2, 256, 24},      /* table before the file (wraps) */
        {130, 1, 256, 24},                  /* misaligned section headers */
        {128, 1, UINT64_MAX - 7, 32},       /* symbols wrap around */
        {128, 1, 260, 24},                  /* misaligned symbols */
        {128, 1, 256, UINT64_MAX},          /* symbols longer than the file */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(write_elf(path, cases[i].shoff, cases[i].shnum, cases[i].symoff,
                               cases[i].symsize), 0);
        pmt_elfsym_cache *c = pmt_elfsym_cache_new();
        char name[64];
        CHECK_EQ_INT(pmt_elfsym_lookup(c, path, 0x10, name, sizeof(name)), -1);
        pmt_elfsym_cache_free(c);
    }
    unlink(path);
}

int
main(void)
{
    test_elfsym();
    test_elfsym_hostile_tables();
    CTEST_MAIN_END();
}
