/* test_elfsym.c: symbol lookup in an ELF file (this test's own executable). */
#include <stdint.h>
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
    pmt_elfsym_cache_free(c);
}

int
main(void)
{
    test_elfsym();
    CTEST_MAIN_END();
}
